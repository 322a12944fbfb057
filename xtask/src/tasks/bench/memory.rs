//! `cargo xtask bench --repository-memory`: what a model repository costs in memory.
//! The 100-tree forest under 1, 10 and 50 names, served by score-service (one process, every
//! model loaded once) and by MLServer's scikit-learn runtime (its default worker pool), each
//! measured once every model is loaded: peak resident memory of the server and its
//! direct children.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::core::plan::Plan;
use crate::steps::release::{release_build, release_dir};
use crate::steps::servers::{Contender, Probe, add_server, add_stop, free_port, peak_rss_kib};
use crate::tasks::bench::LARGE_MODELS;
use crate::tasks::bench::figures::Bench;
use crate::tasks::bench::report::{REPORT_DIR, write_file};

/// How many copies, and each server's name at that count (names key the servers' pids).
const COPIES: [(usize, &str, &str); 3] = [
    (1, "score-service-1-model", "mlserver-1-model"),
    (10, "score-service-10-models", "mlserver-10-models"),
    (50, "score-service-50-models", "mlserver-50-models"),
];
const FOREST: &str = "forest_100x10";

pub(super) fn add_repository_memory<'a>(
    sh: &'a Shell,
    plan: &mut Plan<'a, Bench>,
    venv: &Path,
) -> anyhow::Result<()> {
    plan.run(
        release_build(sh, &["--bins"]),
        "fix the build error above, then run `cargo xtask bench --repository-memory` again",
    );
    let binary = release_dir(sh).join("score-service");
    let mlserver = venv.join("mlserver");
    let models = crate::core::paths::project_root().join(LARGE_MODELS);
    let (onnx, joblib) = (
        models.join(format!("{FOREST}.onnx")),
        models.join(format!("{FOREST}.joblib")),
    );
    let root = crate::core::paths::project_root()
        .join(REPORT_DIR)
        .join("repository-memory");
    for (copies, ours, theirs) in COPIES {
        let repository = root.join(format!("score-service-{copies}"));
        plan.check(
            format!(
                "write a repository of {copies} copies of {FOREST} in {}",
                repository.display()
            ),
            {
                let (repository, onnx) = (repository.clone(), onnx.clone());
                move |_| write_repository(&repository, &onnx, copies)
            },
        );
        add_measured(
            sh,
            plan,
            repository_contender(sh, ours, &binary, &repository)?,
            copies,
        );

        let settings = root.join(format!("mlserver-{copies}"));
        let ports = [free_port()?, free_port()?, free_port()?];
        plan.check(
            format!(
                "write MLServer's settings for {copies} copies of {FOREST} in {}",
                settings.display()
            ),
            {
                let (settings, joblib) = (settings.clone(), joblib.clone());
                move |_| write_mlserver_repository(&settings, &joblib, copies, ports)
            },
        );
        add_measured(
            sh,
            plan,
            Contender {
                name: theirs,
                program: "mlserver",
                command: cmd!(sh, "{mlserver} start {settings}"),
                port: ports[0],
                // MLServer's server readiness waits for every model it loads at start-up.
                ready: Probe::Get(format!("http://127.0.0.1:{}/v2/health/ready", ports[0])),
            },
            copies,
        );
    }
    plan.check(format!("write {REPORT_DIR}/repository-memory.md"), |bench| {
        let table = report(&bench.memory);
        print!("{table}");
        write_file(&Path::new(REPORT_DIR).join("repository-memory.md"), &table)
    });
    Ok(())
}

/// score-service serving the repository `dir`, on a free port: ready only once every model
/// of the repository is loaded.
pub(super) fn repository_contender<'a>(
    sh: &'a Shell,
    name: &'static str,
    binary: &Path,
    dir: &Path,
) -> anyhow::Result<Contender<'a>> {
    let port = free_port()?;
    let port_arg = port.to_string();
    Ok(Contender {
        name,
        program: "score-service",
        command: cmd!(
            sh,
            "{binary} --host 127.0.0.1 --port {port_arg} --metrics-port {port_arg} --log-format text --model-repository {dir}"
        ),
        port,
        ready: Probe::Get(format!("http://127.0.0.1:{port}/v2/health/ready")),
    })
}

/// Adds: start `contender`, read its memory once ready, stop it.
fn add_measured<'a>(sh: &'a Shell, plan: &mut Plan<'a, Bench>, contender: Contender<'a>, copies: usize) {
    let (name, program) = (contender.name, contender.program);
    add_server(plan, contender, Path::new(REPORT_DIR));
    plan.check(format!("read the peak resident memory of {name}"), move |bench| {
        let pid = *bench.pids.get(name).context("the server's pid")?;
        let server = if program == "mlserver" {
            "mlserver-sklearn"
        } else {
            "score-service"
        };
        bench
            .memory
            .push((server, copies, peak_rss_kib(pid) as f64 / 1024.0));
        Ok(())
    });
    add_stop(sh, plan, name, program);
}

/// `dir/forest_I/1/model.onnx` for each copy: hard links, so the disk holds one file.
fn write_repository(dir: &Path, onnx: &Path, copies: usize) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("empty {}", dir.display()))?;
    }
    for copy in 0..copies {
        let version = dir.join(format!("{FOREST}_{copy}")).join("1");
        std::fs::create_dir_all(&version)?;
        let file = version.join("model.onnx");
        if std::fs::hard_link(onnx, &file).is_err() {
            std::fs::copy(onnx, &file).with_context(|| format!("copy {}", onnx.display()))?;
        }
    }
    Ok(())
}

/// MLServer's settings: its ports, and a model-settings file per copy naming the joblib.
fn write_mlserver_repository(
    dir: &Path,
    joblib: &Path,
    copies: usize,
    [http, grpc, metrics]: [u16; 3],
) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let server = serde_json::json!({
        "host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_port": metrics,
        "debug": false, "load_models_at_startup": true,
    });
    std::fs::write(dir.join("settings.json"), server.to_string())?;
    let uri: PathBuf = std::fs::canonicalize(joblib).with_context(|| format!("find {}", joblib.display()))?;
    for copy in 0..copies {
        let name = format!("{FOREST}_{copy}");
        let model_dir = dir.join(&name);
        std::fs::create_dir_all(&model_dir)?;
        let settings = serde_json::json!({
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": uri, "version": "1"},
        });
        std::fs::write(model_dir.join("model-settings.json"), settings.to_string())?;
    }
    Ok(())
}

fn report(memory: &[(&'static str, usize, f64)]) -> String {
    let mut table = format!(
        "Peak resident memory (MiB) once every model is loaded: {FOREST} under 1, 10 and 50 names. MLServer's figure includes its worker processes.\n\n| models | score-service | MLServer (sklearn) | MLServer / score-service |\n|---:|---:|---:|---:|\n"
    );
    for (copies, _, _) in COPIES {
        let of = |server: &str| {
            memory
                .iter()
                .find(|(s, c, _)| *s == server && *c == copies)
                .map(|(_, _, mib)| *mib)
        };
        if let (Some(ours), Some(theirs)) = (of("score-service"), of("mlserver-sklearn")) {
            let _ = writeln!(
                table,
                "| {copies} | {ours:.1} | {theirs:.1} | {:.1}x |",
                theirs / ours
            );
        }
    }
    table
}
