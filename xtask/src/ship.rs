//! `cargo xtask ship` and `cargo xtask down`: put the service on a target, take it off.

use clap::Args;
use xshell::Shell;

use crate::local::Local;
use crate::target::{Target, TargetArg};

#[derive(Args, Debug)]
pub(crate) struct ShipCmd {
    #[command(flatten)]
    target: TargetArg,

    /// Port to serve on (local target).
    #[arg(long, default_value_t = 5000)]
    port: u16,
}

impl ShipCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        match self.target.target {
            Target::Local => {
                let local = Local::new(sh);
                local.ship_plan(sh, self.port)?.execute(dry_run)
            }
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct DownCmd {
    #[command(flatten)]
    target: TargetArg,
}

impl DownCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        match self.target.target {
            Target::Local => {
                let local = Local::new(sh);
                local.down_plan(sh)?.execute(dry_run)
            }
        }
    }
}
