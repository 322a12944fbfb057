//! `cargo xtask down`: take the service off the target.

use clap::Args;
use xshell::Shell;

use crate::core::settings::SettingsArgs;
use crate::core::target::TargetArg;
use crate::targets::choose;

#[derive(Args, Debug)]
pub(crate) struct DownCmd {
    #[command(flatten)]
    target: TargetArg,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl DownCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        choose(self.target.target, sh, &self.settings)?
            .down_plan()?
            .execute(dry_run)
    }
}
