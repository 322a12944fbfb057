//! `cargo xtask status`: what runs on the target — image, model, readiness, address.

use clap::Args;
use xshell::Shell;

use crate::core::settings::SettingsArgs;
use crate::core::target::TargetArg;
use crate::targets::choose;

#[derive(Args, Debug)]
pub(crate) struct StatusCmd {
    #[command(flatten)]
    target: TargetArg,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl StatusCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        choose(self.target.target, sh, &self.settings)?
            .status_plan()?
            .execute(dry_run)
    }
}
