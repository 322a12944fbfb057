//! `cargo xtask deploy`: apply the manifests of the image pushed from this tree to the
//! cluster, and wait for the rollout.

use clap::Args;
use xshell::Shell;

use crate::core::model_file::ModelFile;
use crate::core::settings::SettingsArgs;
use crate::core::target::ClusterTargetArg;
use crate::steps::deploy::Rollout;
use crate::steps::push::Release;
use crate::targets::choose_cluster;

#[derive(Args, Debug)]
pub(crate) struct DeployCmd {
    #[command(flatten)]
    target: ClusterTargetArg,

    /// The model image shipped with `ship --model PATH`.
    #[arg(long, value_parser = ModelFile::parse)]
    model: Option<ModelFile>,

    /// Seconds to wait for the rollout.
    #[arg(long, default_value_t = 300)]
    timeout: u64,

    /// If the rollout fails, `kubectl rollout undo` back to the previous revision.
    #[arg(long)]
    rollback_on_failure: bool,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl DeployCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let cluster = choose_cluster(self.target.target, sh, &self.settings)?;
        let rollout = Rollout {
            timeout: self.timeout,
            rollback_on_failure: self.rollback_on_failure,
        };
        cluster
            .deploy_plan(self.model.as_ref(), rollout)?
            .execute_with(dry_run, &mut Release::default())
    }
}
