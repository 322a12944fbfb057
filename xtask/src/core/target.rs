//! The target: where `ship`, `smoke`, `down`, `image` and `push` act.

use std::fmt;

use clap::{Args, ValueEnum};

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TargetKind {
    /// The release binary, run in the background on this machine. No cloud account needed.
    #[default]
    Local,
    /// The container image, pushed to a local registry and run from it by digest.
    Docker,
    /// Google Kubernetes Engine, behind a LoadBalancer Service (see deploy.yaml).
    Gke,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Local => "local",
            TargetKind::Docker => "docker",
            TargetKind::Gke => "gke",
        })
    }
}

/// The `--target` flag shared by every task that acts on a deployment.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct TargetArg {
    /// Where to act.
    #[arg(long, env = "XTASK_TARGET", value_enum, default_value_t)]
    pub(crate) target: TargetKind,
}
