//! `cargo xtask deploy`: apply the manifests of the image pushed from this tree to the
//! cluster, and wait for the rollout.

use clap::Args;
use xshell::Shell;

use crate::core::model_file::ModelArgs;
use crate::core::settings::SettingsArgs;
use crate::core::target::ClusterTargetArg;
use crate::steps::deploy::Rollout;
use crate::steps::push::Release;
use crate::targets::choose_cluster;

#[derive(Args, Debug)]
pub(crate) struct DeployCmd {
    #[command(flatten)]
    target: ClusterTargetArg,

    #[command(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    rollout: Rollout,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl DeployCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let cluster = choose_cluster(self.target.target, sh, &self.settings)?;
        cluster
            .deploy_plan(self.model.chosen()?.as_ref(), self.rollout)?
            .execute_with(dry_run, &mut Release::default())
    }
}
