//! `cargo xtask install-kustomize`: a pinned, checksum-verified kustomize in target/tools.

use clap::Args;
use xshell::Shell;

use crate::steps::kustomize;

#[derive(Args, Debug)]
pub(crate) struct InstallKustomizeCmd {
    /// Release to install.
    #[arg(long, default_value = "5.5.0")]
    version: String,

    /// Where releases are downloaded from (a mirror, or a test server).
    #[arg(
        long,
        env = "XTASK_KUSTOMIZE_BASE_URL",
        default_value = "https://github.com/kubernetes-sigs/kustomize/releases/download"
    )]
    base_url: String,
}

impl InstallKustomizeCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        kustomize::install_plan(sh, &self.version, &self.base_url)?.execute(dry_run)
    }
}
