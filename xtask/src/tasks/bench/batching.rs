//! `cargo xtask bench --batching`: adaptive batching against none, in the same run. The
//! 100-tree forest in a repository, served once as it is and once with `max_batch_size`
//! and `max_batch_time`; each loaded in turn with 1-row `/score` requests (distinct rows)
//! from `--connections` connections.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::core::plan::Plan;
use crate::steps::release::{release_build, release_dir};
use crate::tasks::bench::figures::Bench;
use crate::tasks::bench::memory::repository_contender;
use crate::tasks::bench::report::{REPORT_DIR, write_file};
use crate::tasks::bench::rows::write_model_requests;
use crate::tasks::bench::{BenchCmd, LARGE_MODELS, Load};

const FOREST: &str = "forest_100x10";
/// The batching under test: up to 64 rows, a request waiting at most 1 ms for others.
const SETTINGS: &str = r#"{"max_batch_size": 64, "max_batch_time": 0.001}"#;
const SERVERS: [(&str, Option<&str>); 2] = [
    ("score-service-unbatched", None),
    ("score-service-batched", Some(SETTINGS)),
];
const LOAD: &str = "/score, 1 row";

impl BenchCmd {
    pub(super) fn add_batching_bench<'a>(
        &self,
        sh: &'a Shell,
        plan: &mut Plan<'a, Bench>,
    ) -> anyhow::Result<()> {
        plan.run(
            release_build(sh, &["--bins", "--examples"]),
            "fix the build error above, then run `cargo xtask bench --batching` again",
        );
        let release = release_dir(sh);
        let (binary, timing) = (
            release.join("score-service"),
            release.join("examples/model_timing"),
        );
        let onnx = crate::core::paths::project_root()
            .join(LARGE_MODELS)
            .join(format!("{FOREST}.onnx"));
        let root = crate::core::paths::project_root()
            .join(REPORT_DIR)
            .join("batching");
        plan.read(
            cmd!(sh, "{timing} {onnx} --row-size"),
            "the model does not load; see above",
            move |bench, out| {
                let size = out.trim().parse().context("model_timing printed no row size")?;
                bench.row_sizes.insert(FOREST.to_owned(), size);
                Ok(())
            },
        );
        plan.check(
            format!(
                "write the requests, as wide as its input, under {}",
                root.display()
            ),
            {
                let root = root.clone();
                move |bench| write_model_requests(&root, FOREST, bench.row_size(FOREST)?)
            },
        );
        for (name, settings) in SERVERS {
            let repository = root.join(name);
            plan.check(
                format!(
                    "write a repository of {FOREST} in {} ({})",
                    repository.display(),
                    settings.unwrap_or("no batching")
                ),
                {
                    let (repository, onnx) = (repository.clone(), onnx.clone());
                    move |_| write_repository(&repository, &onnx, settings)
                },
            );
            let contender = repository_contender(sh, name, &binary, &repository)?;
            let load = Load {
                label: LOAD.to_owned(),
                url: format!("http://127.0.0.1:{}/score", contender.port),
                script: root.join("score-1.lua"),
            };
            self.add_measurement(sh, plan, contender, FOREST, vec![load]);
        }
        let connections = self.connections;
        plan.check(format!("write {REPORT_DIR}/batching.md"), move |bench| {
            let table = report(bench, connections);
            print!("{table}");
            write_file(&Path::new(REPORT_DIR).join("batching.md"), &table)
        });
        Ok(())
    }
}

fn write_repository(dir: &Path, onnx: &Path, settings: Option<&str>) -> anyhow::Result<()> {
    let version: PathBuf = dir.join(FOREST).join("1");
    std::fs::create_dir_all(&version)?;
    let file = version.join("model.onnx");
    if !file.exists() {
        std::fs::copy(onnx, &file).with_context(|| format!("copy {}", onnx.display()))?;
    }
    let settings_file = dir.join(FOREST).join("settings.json");
    match settings {
        Some(settings) => std::fs::write(&settings_file, settings)?,
        None if settings_file.exists() => std::fs::remove_file(&settings_file)?,
        None => {}
    }
    Ok(())
}

fn report(bench: &Bench, connections: u32) -> String {
    let mut table = format!(
        "Adaptive batching: {FOREST}, 1-row /score requests (distinct rows) from {connections} connections, each server in turn. Batched: {SETTINGS}.\n\n| server | requests/s | p50 (ms) | p99 (ms) | errors |\n|---|---:|---:|---:|---:|\n"
    );
    let of = |server: &str| {
        bench
            .measurements
            .iter()
            .find(|m| m.server == server && m.load == LOAD)
    };
    for (name, _) in SERVERS {
        if let Some(m) = of(name) {
            let f = &m.figures;
            let _ = writeln!(
                table,
                "| {name} | {:.0} | {:.2} | {:.2} | {} |",
                f.requests_per_second, f.p50_ms, f.p99_ms, f.errors
            );
        }
    }
    if let (Some(plain), Some(batched)) = (of(SERVERS[0].0), of(SERVERS[1].0)) {
        let _ = writeln!(
            table,
            "\nbatched / unbatched: {:.2}x the requests per second (goal: at least 1.5x), p99 {:.2} ms against {:.2} ms (goal: no worse)",
            batched.figures.requests_per_second / plain.figures.requests_per_second,
            batched.figures.p99_ms,
            plain.figures.p99_ms
        );
    }
    table
}
