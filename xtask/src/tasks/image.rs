//! `cargo xtask image`: build and tag the container image.

use clap::Args;
use xshell::Shell;

use crate::core::plan::Plan;
use crate::core::settings::SettingsArgs;
use crate::core::target::PublishKind;
use crate::steps::engine::add_engine_check;
use crate::steps::image::Image;
use crate::steps::push::Release;
use crate::targets::choose_publisher;

#[derive(Args, Debug)]
pub(crate) struct ImageCmd {
    /// Whose registry the image is named for.
    #[arg(long, env = "XTASK_TARGET", value_enum, default_value_t = PublishKind::Docker)]
    target: PublishKind,

    /// Compile inside Docker (the self-contained build; pulls the Rust image) instead of
    /// packaging a binary built on this machine.
    #[arg(long)]
    from_source: bool,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl ImageCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let repository = choose_publisher(self.target, sh, &self.settings)?.image_repository()?;
        let image = Image::for_worktree(sh, repository)?;
        let mut plan: Plan<Release> = Plan::new();
        add_engine_check(sh, &mut plan);
        image.add_build(sh, &mut plan, self.from_source);
        let reference = image.reference();
        plan.check("print the image reference", move |_| {
            println!("{reference}");
            Ok(())
        });
        plan.execute(dry_run)
    }
}
