//! `cargo xtask fuzz`: run every fuzz target in `fuzz/` (cargo-fuzz, libFuzzer) for a
//! while, from the committed seed corpus, and report executions and findings per target.
//! Not part of CI: a fuzzer earns its keep over minutes, not in a CI budget.

use std::path::Path;

use clap::Args;
use xshell::{Shell, cmd};

use crate::core::plan::Plan;
use crate::core::tools::ensure_python_tools;

/// The targets in fuzz/fuzz_targets/.
const TARGETS: [&str; 3] = ["score_body", "infer_body", "model_bytes"];

#[derive(Args, Debug)]
pub(crate) struct FuzzCmd {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 600)]
    seconds: u32,

    /// Fuzz only this target.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
}

/// One target's outcome.
struct Outcome {
    target: &'static str,
    executions: String,
    findings: usize,
}

impl FuzzCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let mut plan: Plan<Vec<Outcome>> = Plan::new();
        let bin = ensure_python_tools(sh, &mut plan, "fuzz/requirements.txt");
        let cargo_fuzz = bin.join("cargo-fuzz");
        // Without a nightly compiler there is no AddressSanitizer; Rust's own checks
        // (bounds, overflow in debug assertions, panics) are what the fuzzer trips.
        let max_time = format!("-max_total_time={}", self.seconds);
        for target in TARGETS {
            if self.target.as_deref().is_some_and(|only| only != target) {
                continue;
            }
            // New inputs go to a working corpus under target/; the committed seeds stay as
            // they are.
            let (working, seeds) = (
                format!("target/fuzz/corpus/{target}"),
                format!("fuzz/corpus/{target}"),
            );
            plan.check(format!("create {working}"), {
                let working = working.clone();
                move |_| std::fs::create_dir_all(&working).map_err(Into::into)
            });
            plan.probe(
                cmd!(
                    sh,
                    "{cargo_fuzz} fuzz run --sanitizer none --debug-assertions -O {target} {working} {seeds} -- {max_time} -rss_limit_mb=4096 -timeout=10 -print_final_stats=1"
                ),
                move |outcomes, run| {
                    // libFuzzer reports on stderr; its last lines say how it ended.
                    let tail: Vec<&str> = run.stderr.lines().rev().take(12).collect();
                    for line in tail.iter().rev() {
                        eprintln!("  {line}");
                    }
                    let output = &run.stderr;
                    let findings = Path::new("fuzz/artifacts")
                        .join(target)
                        .read_dir()
                        .map_or(0, |entries| entries.count());
                    let executions = output
                        .lines()
                        .chain(std::iter::once(""))
                        .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
                        .unwrap_or("?")
                        .trim()
                        .to_owned();
                    outcomes.push(Outcome {
                        target,
                        executions,
                        findings,
                    });
                    Ok(())
                },
            );
        }
        plan.check("report executions and findings per target", |outcomes| {
            println!("| target | executions | findings (fuzz/artifacts/TARGET) |\n|---|---:|---:|");
            for outcome in outcomes.iter() {
                println!(
                    "| {} | {} | {} |",
                    outcome.target, outcome.executions, outcome.findings
                );
            }
            if outcomes.iter().any(|o| o.findings > 0) {
                anyhow::bail!("the fuzzer found inputs that crash: each becomes a regression test");
            }
            Ok(())
        });
        plan.execute(dry_run)
    }
}
