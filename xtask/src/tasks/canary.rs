//! `cargo xtask promote` and `cargo xtask abort`: finish a canary release by hand, as
//! `ship --canary` does when its analysis decides: promote (the stable Deployment takes
//! the canary's image and pod annotations, a rollout waited on, then the canary goes), or
//! abort (the canary goes, the stable track untouched). Each ends saying what the stable
//! track serves, read from the cluster.

use clap::Args;
use xshell::Shell;

use crate::core::settings::SettingsArgs;
use crate::core::target::ClusterTargetArg;
use crate::steps::push::Release;
use crate::targets::choose_cluster;

#[derive(Args, Debug)]
pub(crate) struct PromoteCmd {
    #[command(flatten)]
    target: ClusterTargetArg,

    /// Seconds to wait for the stable track's rollout.
    #[arg(long = "rollout-timeout", default_value_t = 300)]
    timeout: u64,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl PromoteCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let cluster = choose_cluster(self.target.target, sh, &self.settings)?;
        cluster
            .promote_plan(self.timeout)?
            .execute_with(dry_run, &mut Release::default())
    }
}

#[derive(Args, Debug)]
pub(crate) struct AbortCmd {
    #[command(flatten)]
    target: ClusterTargetArg,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl AbortCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let cluster = choose_cluster(self.target.target, sh, &self.settings)?;
        cluster
            .abort_plan()?
            .execute_with(dry_run, &mut Release::default())
    }
}
