//! `cargo xtask render`: the final manifests, the image pinned to the pushed digest.

use clap::Args;
use xshell::Shell;

use crate::core::git;
use crate::core::plan::Plan;
use crate::core::settings::{Settings, SettingsArgs};
use crate::core::target::TargetKind;
use crate::steps::push::Release;
use crate::steps::render::Renderer;

#[derive(Args, Debug)]
pub(crate) struct RenderCmd {
    #[command(flatten)]
    settings: SettingsArgs,
}

impl RenderCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let (settings, _) = Settings::resolve(sh, &self.settings)?;
        let mut release = Release::recorded(sh, TargetKind::Gke)?;
        let commit = git::commit(sh)?;
        let mut plan = Plan::new();
        Renderer::new(sh, &settings).add_render(&mut plan, &commit, |yaml| {
            print!("{yaml}");
            Ok(())
        });
        plan.execute_with(dry_run, &mut release)
    }
}
