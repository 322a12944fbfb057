//! `cargo xtask logs`: the service's log lines on the target, and with `--follow`, the
//! ones that follow.

use clap::Args;
use xshell::Shell;

use crate::core::settings::SettingsArgs;
use crate::core::target::TargetArg;
use crate::targets::choose;

#[derive(Args, Debug)]
pub(crate) struct LogsCmd {
    #[command(flatten)]
    target: TargetArg,

    /// Keep streaming new lines until interrupted.
    #[arg(long, short)]
    follow: bool,

    /// How many of the latest lines to show (per pod on a cluster).
    #[arg(long, default_value_t = 100)]
    tail: u32,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl LogsCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        choose(self.target.target, sh, &self.settings)?
            .logs_plan(self.follow, self.tail)?
            .execute(dry_run)
    }
}
