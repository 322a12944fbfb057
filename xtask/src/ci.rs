//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use clap::Args;
use xshell::{Shell, cmd};

use crate::plan::Plan;

#[derive(Args, Debug)]
pub(crate) struct CiCmd {}

impl CiCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        plan(sh).execute(dry_run)
    }
}

fn plan(sh: &Shell) -> Plan<'_> {
    let mut plan = Plan::new();
    plan.run(
        cmd!(sh, "cargo fmt --all --check"),
        "run `cargo fmt --all`, then commit the result",
    )
    .run(
        cmd!(
            sh,
            "cargo clippy --workspace --all-targets --locked -- -D warnings"
        ),
        "fix the lints above (or, where a lint is wrong, allow it with a comment saying why)",
    )
    .run(
        cmd!(sh, "cargo test --workspace --locked --no-fail-fast"),
        "fix the failing tests above; rerun one with `cargo test -p PACKAGE NAME`",
    );
    plan
}
