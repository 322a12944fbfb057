//! `cargo xtask render`: the final manifests, the image pinned to the digest pushed from
//! this tree for these settings.

use clap::Args;
use xshell::Shell;

use crate::core::model_file::ModelArgs;
use crate::core::settings::SettingsArgs;
use crate::core::target::ClusterTargetArg;
use crate::steps::push::Release;
use crate::targets::choose_cluster;

#[derive(Args, Debug)]
pub(crate) struct RenderCmd {
    #[command(flatten)]
    target: ClusterTargetArg,

    #[command(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl RenderCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let cluster = choose_cluster(self.target.target, sh, &self.settings)?;
        cluster
            .render_plan(self.model.chosen()?.as_ref())?
            .execute_with(dry_run, &mut Release::default())
    }
}
