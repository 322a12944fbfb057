//! `cargo xtask push`: push the image, then record the digest the registry stored.

use anyhow::Context;
use clap::Args;
use xshell::{Shell, cmd};

use crate::core::plan::Plan;
use crate::core::settings::SettingsArgs;
use crate::core::target::PublishKind;
use crate::steps::engine::add_engine_check;
use crate::steps::image::Image;
use crate::steps::push::{self, Release};
use crate::targets::choose_publisher;

#[derive(Args, Debug)]
pub(crate) struct PushCmd {
    /// Whose registry to push to.
    #[arg(long, env = "XTASK_TARGET", value_enum, default_value_t = PublishKind::Docker)]
    target: PublishKind,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl PushCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let target = choose_publisher(self.target, sh, &self.settings)?;
        let image = Image::for_worktree(sh, target.image_repository()?)?;
        let mut plan: Plan<Release> = Plan::new();
        add_engine_check(sh, &mut plan);
        target.add_before_push(&mut plan)?;
        let reference = image.reference();
        plan.check(
            format!("check that {reference} was built (`cargo xtask image`)"),
            {
                let reference = reference.clone();
                move |_| {
                    let format = "{{.Id}}";
                    cmd!(sh, "docker image inspect --format {format} {reference}")
                        .ignore_stdout()
                        .run()
                        .with_context(|| format!("{reference} is not built: run `cargo xtask image` first"))
                }
            },
        );
        push::add_push(
            sh,
            &mut plan,
            &image.repository,
            image.tag(),
            push::record_path(sh, self.target.into()),
        );
        plan.execute(dry_run)
    }
}
