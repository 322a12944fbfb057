//! `cargo xtask bench --batching`: adaptive batching against none, in the same run. The
//! 100-tree forest in a repository, served once as it is and once with `max_batch_size`
//! and `max_batch_time`; each loaded in turn with 1-row `/score` requests (each the next
//! of 1,024 distinct rows) from `--connections` connections. Beside them: the same server
//! echoing the same requests (`--model identity`: what the HTTP path alone allows, the
//! most batching could reach) and MLServer's scikit-learn runtime on the same forest,
//! without and with its adaptive batching at the same settings (`/v2 … infer`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::core::plan::Plan;
use crate::steps::release::{release_build, release_dir};
use crate::steps::servers::{Contender, Probe, free_port};
use crate::tasks::bench::figures::Bench;
use crate::tasks::bench::memory::repository_contender;
use crate::tasks::bench::report::{REPORT_DIR, write_file};
use crate::tasks::bench::rows::write_model_requests;
use crate::tasks::bench::{BenchCmd, LARGE_MODELS, Load, write_mlserver_settings};

const FOREST: &str = "forest_100x10";
/// The batching under test: up to 32 rows, a request waiting at most 1 ms for others.
/// Half the default 64 connections, so that one batch fills while the other computes: a
/// batch as large as the connections waits for every client and stalls them all
/// (measured here: 76,700 requests/s at 64 rows, 79,900 at 32, 75,400 at 16).
const SETTINGS: &str = r#"{"max_batch_size": 32, "max_batch_time": 0.001}"#;
/// Each server's name: ours without and with batching, MLServer's alike.
const SERVERS: [(&str, Option<&str>); 2] = [
    ("score-service-unbatched", None),
    ("score-service-batched", Some(SETTINGS)),
];
const MLSERVERS: [(&str, Option<&str>); 2] =
    [("mlserver-unbatched", None), ("mlserver-batched", Some(SETTINGS))];
/// The same server answering the same requests with the identity echo.
const CEILING: &str = "score-service-identity";
const LOAD: &str = "1 row";

impl BenchCmd {
    pub(super) fn add_batching_bench<'a>(
        &self,
        sh: &'a Shell,
        plan: &mut Plan<'a, Bench>,
        venv: &Path,
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
        let models = crate::core::paths::project_root().join(LARGE_MODELS);
        let (onnx, joblib) = (
            models.join(format!("{FOREST}.onnx")),
            models.join(format!("{FOREST}.joblib")),
        );
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
        let score = root.join("score-1.lua");
        let load = |port: u16, path: &str, script: &Path| {
            vec![Load {
                label: LOAD.to_owned(),
                url: format!("http://127.0.0.1:{port}{path}"),
                script: script.to_owned(),
            }]
        };
        let port = free_port()?;
        let port_arg = port.to_string();
        let identity = Contender {
            name: CEILING,
            program: "score-service",
            command: cmd!(
                sh,
                "{binary} --host 127.0.0.1 --port {port_arg} --metrics-port {port_arg} --log-format text --model identity"
            ),
            port,
            ready: Probe::Get(format!("http://127.0.0.1:{port}/readyz")),
        };
        self.add_measurement(sh, plan, identity, "identity", load(port, "/score", &score));
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
            let port = contender.port;
            self.add_measurement(sh, plan, contender, FOREST, load(port, "/score", &score));
        }
        let (mlserver, infer) = (venv.join("mlserver"), root.join("infer-1.lua"));
        for (name, settings) in MLSERVERS {
            // MLServer also listens for gRPC and metrics: each needs a free port too.
            let ports = [free_port()?, free_port()?, free_port()?];
            let dir = root.join(name);
            plan.check(
                format!(
                    "write MLServer's settings for {FOREST} in {} ({})",
                    dir.display(),
                    settings.unwrap_or("no batching")
                ),
                {
                    let (dir, joblib) = (dir.clone(), joblib.clone());
                    move |_| {
                        let batching = settings.map(serde_json::from_str).transpose()?;
                        write_mlserver_settings(&dir, FOREST, &joblib, ports, batching)
                    }
                },
            );
            let contender = Contender {
                name,
                program: "mlserver",
                command: cmd!(sh, "{mlserver} start {dir}"),
                port: ports[0],
                ready: Probe::Get(format!("http://127.0.0.1:{}/v2/models/{FOREST}/ready", ports[0])),
            };
            let path = format!("/v2/models/{FOREST}/infer");
            self.add_measurement(sh, plan, contender, FOREST, load(ports[0], &path, &infer));
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
        "Adaptive batching: {FOREST}, 1-row requests (1,024 distinct rows in turn) from {connections} connections, each server in turn; score-service through /score, MLServer through /v2 infer. Batched: {SETTINGS}. The identity echo is score-service answering the same requests without a model: the most batching could reach.\n\n| server | requests/s | p50 (ms) | p99 (ms) | errors |\n|---|---:|---:|---:|---:|\n"
    );
    let of = |server: &str| {
        bench
            .measurements
            .iter()
            .find(|m| m.server == server && m.load == LOAD)
    };
    let servers = [CEILING]
        .into_iter()
        .chain(SERVERS.iter().chain(&MLSERVERS).map(|(name, _)| *name));
    for name in servers {
        if let Some(m) = of(name) {
            let f = &m.figures;
            let _ = writeln!(
                table,
                "| {name} | {:.0} | {:.2} | {:.2} | {} |",
                f.requests_per_second, f.p50_ms, f.p99_ms, f.errors
            );
        }
    }
    table.push('\n');
    for (who, [plain, batched]) in [("score-service", SERVERS), ("MLServer", MLSERVERS)] {
        if let (Some(plain), Some(batched)) = (of(plain.0), of(batched.0)) {
            let _ = writeln!(
                table,
                "{who}, batched / unbatched: {:.2}x the requests per second, p99 {:.2} ms against {:.2} ms",
                batched.figures.requests_per_second / plain.figures.requests_per_second,
                batched.figures.p99_ms,
                plain.figures.p99_ms
            );
        }
    }
    table.push_str("Goal for score-service: at least 1.5x the requests per second, p99 no worse.\n");
    if let (Some(ceiling), Some(plain)) = (of(CEILING), of(SERVERS[0].0)) {
        let _ = writeln!(
            table,
            "score-service, identity echo / unbatched forest: {:.2}x (the most any batching could give here: the rest is HTTP)",
            ceiling.figures.requests_per_second / plain.figures.requests_per_second
        );
    }
    table
}
