//! The target: where `ship`, `smoke`, `down`, `status` and `logs` act, and the targets
//! that run images, where `image` and `push` publish.

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
    /// Any Kubernetes cluster of your kubeconfig (kind, minikube, k3d, EKS, AKS, …):
    /// --context (default: the current one) and --registry.
    Kube,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Local => "local",
            TargetKind::Docker => "docker",
            TargetKind::Gke => "gke",
            TargetKind::Kube => "kube",
        })
    }
}

/// The targets that run images: where `image` names them and `push` sends them.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum PublishKind {
    /// The local registry the docker target runs from.
    #[default]
    Docker,
    /// GKE's Artifact Registry repository (the deploy.yaml settings).
    Gke,
    /// The registry of --registry (or the local one, for a kind cluster).
    Kube,
}

impl From<PublishKind> for TargetKind {
    fn from(kind: PublishKind) -> Self {
        match kind {
            PublishKind::Docker => TargetKind::Docker,
            PublishKind::Gke => TargetKind::Gke,
            PublishKind::Kube => TargetKind::Kube,
        }
    }
}

/// The `--target` flag shared by every task that acts on a deployment.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct TargetArg {
    /// Where to act.
    #[arg(long, env = "XTASK_TARGET", value_enum, default_value_t)]
    pub(crate) target: TargetKind,
}

/// The targets that are Kubernetes clusters: what `render` and `deploy` act on.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ClusterKind {
    /// Google Kubernetes Engine (the deploy.yaml settings).
    #[default]
    Gke,
    /// Any cluster of your kubeconfig: --context and --registry.
    Kube,
}

impl From<ClusterKind> for TargetKind {
    fn from(kind: ClusterKind) -> Self {
        match kind {
            ClusterKind::Gke => TargetKind::Gke,
            ClusterKind::Kube => TargetKind::Kube,
        }
    }
}

/// The `--target` flag of the tasks that only act on clusters.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct ClusterTargetArg {
    /// Which cluster.
    #[arg(long, env = "XTASK_TARGET", value_enum, default_value_t)]
    pub(crate) target: ClusterKind,
}
