//! `cargo xtask deploy`: apply the manifests to the cluster and wait for the rollout.

use clap::Args;
use xshell::Shell;

use crate::core::git;
use crate::core::plan::Plan;
use crate::core::settings::{Settings, SettingsArgs};
use crate::core::target::TargetKind;
use crate::steps::deploy::{Rollout, add_deploy};
use crate::steps::push::Release;
use crate::steps::render::Renderer;

#[derive(Args, Debug)]
pub(crate) struct DeployCmd {
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
        let (settings, _) = Settings::resolve(sh, &self.settings)?;
        let mut release = Release::recorded(sh, TargetKind::Gke)?;
        let commit = git::commit(sh)?;
        let renderer = Renderer::new(sh, &settings);
        let rollout = Rollout {
            timeout: self.timeout,
            rollback_on_failure: self.rollback_on_failure,
        };
        let mut plan = Plan::new();
        add_deploy(sh, &mut plan, &renderer, &settings, &commit, rollout);
        plan.execute_with(dry_run, &mut release)
    }
}
