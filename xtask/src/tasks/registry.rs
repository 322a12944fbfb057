//! `cargo xtask registry up|down`: the local OCI registry the docker target pushes to.

use clap::{Args, Subcommand};
use xshell::Shell;

use crate::core::plan::Plan;
use crate::steps::registry::{DEFAULT_PORT, LocalRegistry};

#[derive(Args, Debug)]
pub(crate) struct RegistryCmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Start the registry in the background (nothing happens if it already runs).
    Up {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
    },
    /// Stop it; the images it stores stay under target/ for next time.
    Down,
}

impl RegistryCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let registry = LocalRegistry::new(sh);
        let mut plan: Plan = Plan::new();
        match self.action {
            Action::Up { port } => {
                registry.add_up(sh, &mut plan, port)?;
            }
            Action::Down => registry.add_down(sh, &mut plan)?,
        }
        plan.execute(dry_run)
    }
}
