//! `cargo xtask bench`: load-test `POST /score` with wrk, against the tutorial's Flask app
//! measured in the same run (dev server, then gunicorn with 2 workers), so every figure
//! is a ratio to a baseline that saw the same machine at the same time.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use xshell::{Cmd, Shell, cmd};

use crate::image::Image;
use crate::local::target_dir;
use crate::plan::Plan;
use crate::ship::ModelFile;
use crate::smoke::{self, REQUEST};
use crate::tools::{ensure_apt_package, ensure_python_tools};

const REPORT_DIR: &str = "target/bench";

#[derive(Args, Debug)]
pub(crate) struct BenchCmd {
    /// Seconds of measured load per server (after a 2-second warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u32,

    /// Connections the load generator keeps open.
    #[arg(long, default_value_t = 64)]
    connections: u32,

    /// Bench this ONNX model instead: 1-row and 64-row requests through /score and the
    /// Open Inference Protocol, against Flask + onnxruntime serving the same file.
    #[arg(long, value_parser = ModelFile::parse)]
    model: Option<ModelFile>,
}

/// One kind of request a contender is loaded with.
struct Load {
    label: String,
    url: String,
    script: PathBuf,
}

/// Asks a starting server whether it answers yet: the status and body it got.
type ReadyProbe = Box<dyn Fn() -> Result<(u16, String), String>>;

/// One server's figures.
#[derive(Serialize, Debug, Clone)]
struct Measurement {
    server: &'static str,
    /// What was sent: the endpoint and how many rows.
    load: String,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mib: f64,
    /// Non-2xx answers plus socket errors: a fast server that fails requests is not fast.
    errors: u64,
}

/// What the image costs: its size, and how long a container takes to become ready.
#[derive(Serialize, Debug, Default, Clone)]
struct ContainerFigures {
    image_size_mib: f64,
    /// `docker run` to the first 200 from /readyz, each run.
    start_to_ready_ms: Vec<f64>,
    median_start_to_ready_ms: f64,
}

/// How many containers to start for the start-up figure.
const CONTAINER_STARTS: usize = 5;

#[derive(Serialize)]
struct Report<'a> {
    connections: u32,
    duration_seconds: u32,
    load_generator: &'static str,
    cores: usize,
    results: &'a [Measurement],
    container: &'a ContainerFigures,
    ratio_vs_flask_dev: f64,
    ratio_vs_gunicorn: f64,
}

struct Contender<'a> {
    name: &'static str,
    command: Cmd<'a>,
    port: u16,
}

impl BenchCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        if let Some(model) = self.model.clone() {
            return self.run_model(sh, dry_run, model);
        }
        let results = Rc::new(RefCell::new(Vec::new()));
        let mut plan = Plan::new();
        ensure_apt_package(sh, &mut plan, "wrk", "wrk")?;
        let venv_bin = ensure_python_tools(sh, &mut plan, "bench/requirements.txt");
        plan.run(
            cmd!(sh, "cargo build --release --locked --package score-service"),
            "fix the build error above, then run `cargo xtask bench` again",
        );
        for contender in contenders(sh, &venv_bin)? {
            let url = format!("http://127.0.0.1:{}/score", contender.port);
            let load = Load {
                label: "/score, the tutorial's request".into(),
                url: url.clone(),
                script: "bench/score.lua".into(),
            };
            let agent = smoke::agent(Duration::from_secs(2));
            let ready: ReadyProbe = Box::new(move || smoke::post_json(&agent, &url, REQUEST));
            self.add_measurement(sh, &mut plan, contender, ready, vec![load], results.clone());
        }
        let container = Rc::new(RefCell::new(ContainerFigures::default()));
        add_container_measurement(sh, &mut plan, container.clone())?;
        let (connections, duration) = (self.connections, self.duration);
        plan.check(
            format!("write {REPORT_DIR}/report.md and report.json"),
            move || report(&results.borrow(), &container.borrow(), connections, duration),
        );
        plan.execute(dry_run)
    }

    /// Adds: start the contender, wait until it answers, then for each load a warm-up
    /// and a measured wrk run; then stop it.
    fn add_measurement<'a>(
        &self,
        sh: &'a Shell,
        plan: &mut Plan<'a>,
        contender: Contender<'a>,
        ready: ReadyProbe,
        loads: Vec<Load>,
        results: Rc<RefCell<Vec<Measurement>>>,
    ) {
        let Contender { name, command, port } = contender;
        let pid = Rc::new(Cell::new(0));
        let log = PathBuf::from(REPORT_DIR).join(format!("{name}.log"));
        plan.start(command, log, {
            let pid = pid.clone();
            move |started| {
                pid.set(started);
                Ok(())
            }
        });
        plan.check(
            format!("wait up to 30s for {name} on port {port} to answer 200"),
            {
                let pid = pid.clone();
                move || wait_until_answering(name, ready, pid.get())
            },
        );
        // Two wrk threads: with one, wrk saturates its core before our server does
        // (measured here: ~97k vs ~130k requests/s), and the Python servers are unaffected.
        let connections = self.connections.to_string();
        let (warm_up, duration) = ("2s".to_owned(), format!("{}s", self.duration));
        for Load { label, url, script } in loads {
            let next = "check the server's log under target/bench/";
            plan.read(
                cmd!(
                    sh,
                    "wrk --threads 2 --connections {connections} --duration {warm_up} --script {script} {url}"
                ),
                next,
                |_| Ok(()),
            );
            plan.read(
                cmd!(sh, "wrk --threads 2 --connections {connections} --duration {duration} --latency --script {script} {url}"),
                next,
                {
                    let (pid, results) = (pid.clone(), results.clone());
                    move |output| {
                        let mut measurement = parse_wrk(name, &output)?;
                        measurement.load = label;
                        measurement.peak_rss_mib = peak_rss_kib(pid.get()) as f64 / 1024.0;
                        results.borrow_mut().push(measurement);
                        Ok(())
                    }
                },
            );
        }
        plan.check(
            format!("stop {name} (SIGTERM) and wait for it to exit"),
            move || stop(sh, pid.get()),
        );
    }
}

fn contenders<'a>(sh: &'a Shell, venv_bin: &Path) -> anyhow::Result<Vec<Contender<'a>>> {
    let binary = target_dir(sh).join("release/score-service");
    let python = venv_bin.join("python");
    let gunicorn = venv_bin.join("gunicorn");
    let [ours, flask, unicorn] = [free_port()?, free_port()?, free_port()?];
    let (ours_arg, flask_arg, bind) = (
        ours.to_string(),
        flask.to_string(),
        format!("127.0.0.1:{unicorn}"),
    );
    Ok(vec![
        Contender {
            name: "score-service",
            command: cmd!(
                sh,
                "{binary} --host 127.0.0.1 --port {ours_arg} --log-format text"
            ),
            port: ours,
        },
        Contender {
            name: "flask-dev-server",
            command: cmd!(sh, "{python} bench/flask_app.py {flask_arg}"),
            port: flask,
        },
        Contender {
            name: "gunicorn-2-workers",
            command: cmd!(
                sh,
                "{gunicorn} --workers 2 --bind {bind} --chdir bench --log-level warning flask_app:app"
            ),
            port: unicorn,
        },
    ])
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_until_answering(name: &str, ready: ReadyProbe, pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ready() {
            Ok((200, _)) => return Ok(()),
            outcome if Instant::now() > deadline || !crate::daemon::is_running(pid) => {
                bail!("{name} never answered 200 (last: {outcome:?}); see its log under {REPORT_DIR}/")
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn stop(sh: &Shell, pid: u32) -> anyhow::Result<()> {
    let pid_arg = pid.to_string();
    cmd!(sh, "kill -TERM {pid_arg}").run()?;
    crate::daemon::wait_for_exit(pid, None, Duration::from_secs(30))
}

/// Peak resident memory of `pid` and its direct children (gunicorn's workers), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let children = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let parent: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            (parent == pid).then_some(child)
        });
    std::iter::once(pid).chain(children).map(vm_hwm_kib).sum()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?;
            line.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Reads requests/s, p50, p99 and errors from wrk's `--latency` report.
fn parse_wrk(server: &'static str, output: &str) -> anyhow::Result<Measurement> {
    let field = |prefix: &str| {
        output
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    let requests_per_second: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{output}"))?;
    let latency = |percentile: &str| -> anyhow::Result<f64> {
        let text = field(percentile)
            .with_context(|| format!("no {percentile} latency in wrk's output:\n{output}"))?;
        parse_duration_ms(text)
    };
    let non_2xx: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let socket_errors: u64 = field("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Measurement {
        server,
        load: String::new(),
        requests_per_second,
        p50_ms: latency("50%")?,
        p99_ms: latency("99%")?,
        peak_rss_mib: 0.0,
        errors: non_2xx + socket_errors,
    })
}

/// wrk prints latencies as `612.00us`, `1.20ms` or `2.01s`.
fn parse_duration_ms(text: &str) -> anyhow::Result<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a wrk latency"))?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => bail!("{text:?} has an unknown unit"),
    })
}

/// Adds: build the image, read its size, time `docker run` → ready several times.
fn add_container_measurement<'a>(
    sh: &'a Shell,
    plan: &mut Plan<'a>,
    figures: Rc<RefCell<ContainerFigures>>,
) -> anyhow::Result<()> {
    crate::docker::add_engine_check(sh, plan);
    let image = Image::for_worktree(
        sh,
        crate::push::repository_for(sh, crate::target::Target::Docker, &Default::default())?,
    )?;
    image.add_build(sh, plan, false);
    let reference = image.reference();
    let format = "{{.Size}}";
    plan.read(
        cmd!(sh, "docker image inspect --format {format} {reference}"),
        "see `docker images`",
        {
            let figures = figures.clone();
            move |size| {
                let bytes: f64 = size
                    .trim()
                    .parse()
                    .with_context(|| format!("{size:?} is not an image size"))?;
                figures.borrow_mut().image_size_mib = bytes / (1024.0 * 1024.0);
                Ok(())
            }
        },
    );
    plan.check(
        format!(
            "start {reference} {CONTAINER_STARTS} times, timing `docker run` to the first 200 from /readyz"
        ),
        move || {
            let mut times = Vec::new();
            for _ in 0..CONTAINER_STARTS {
                times.push(time_container_start(sh, &reference)?.as_secs_f64() * 1000.0);
            }
            let mut sorted = times.clone();
            sorted.sort_by(f64::total_cmp);
            let mut figures = figures.borrow_mut();
            figures.median_start_to_ready_ms = sorted[sorted.len() / 2];
            figures.start_to_ready_ms = times;
            Ok(())
        },
    );
    Ok(())
}

fn time_container_start(sh: &Shell, reference: &str) -> anyhow::Result<Duration> {
    let port = free_port()?;
    let publish = format!("127.0.0.1:{port}:5000");
    let agent = smoke::agent(Duration::from_secs(1));
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    let id = crate::plan::query(cmd!(sh, "docker run --detach --publish {publish} {reference}"))?;
    let ready = loop {
        if let Ok((200, _)) = smoke::get(&agent, &readyz) {
            break Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(30) {
            break Err(anyhow::anyhow!("{reference} was not ready within 30s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let id = id.trim();
    crate::plan::query(cmd!(sh, "docker rm --force {id}"))?;
    ready
}

fn report(
    results: &[Measurement],
    container: &ContainerFigures,
    connections: u32,
    duration: u32,
) -> anyhow::Result<()> {
    let find = |name: &str| {
        results
            .iter()
            .find(|m| m.server == name)
            .with_context(|| format!("no measurement for {name}"))
    };
    let ours = find("score-service")?.requests_per_second;
    let ratio_vs_flask_dev = ours / find("flask-dev-server")?.requests_per_second;
    let ratio_vs_gunicorn = ours / find("gunicorn-2-workers")?.requests_per_second;

    let mut table = format!(
        "POST /score {REQUEST}, wrk with 2 threads and {connections} connections for {duration}s each, \
         on {} cores shared with the load generator.\n\n\
         | server | requests/s | p50 (ms) | p99 (ms) | peak RSS (MiB) | errors |\n|---|---:|---:|---:|---:|---:|\n",
        cores()
    );
    for m in results {
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.3} | {:.3} | {:.1} | {} |",
            m.server, m.requests_per_second, m.p50_ms, m.p99_ms, m.peak_rss_mib, m.errors
        );
    }
    let _ = writeln!(
        table,
        "\nscore-service vs Flask dev server: {ratio_vs_flask_dev:.1}x; vs gunicorn with 2 workers: {ratio_vs_gunicorn:.1}x"
    );
    let _ = writeln!(
        table,
        "\nImage: {:.1} MiB. Container start (`docker run` to the first 200 from /readyz), median of {}: {:.0} ms (runs: {}).",
        container.image_size_mib,
        container.start_to_ready_ms.len(),
        container.median_start_to_ready_ms,
        container
            .start_to_ready_ms
            .iter()
            .map(|ms| format!("{ms:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("\n{table}");

    let json = serde_json::to_string_pretty(&Report {
        connections,
        duration_seconds: duration,
        load_generator: "wrk",
        cores: cores(),
        results,
        container,
        ratio_vs_flask_dev,
        ratio_vs_gunicorn,
    })?;
    std::fs::create_dir_all(REPORT_DIR)?;
    std::fs::write(Path::new(REPORT_DIR).join("report.md"), &table)?;
    std::fs::write(Path::new(REPORT_DIR).join("report.json"), json)?;
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 10s test @ http://127.0.0.1:5000/score
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.33us  101.20us   5.01ms   90.00%
    Req/Sec    98.01k     2.00k  101.00k    70.00%
  Latency Distribution
     50%  600.00us
     75%  650.00us
     90%  700.00us
     99%    1.20ms
  980100 requests in 10.00s, 100.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  98010.00
Transfer/sec:     10.00MB
";

    #[test]
    fn wrk_reports_are_read() {
        let m = parse_wrk("x", WRK_OUTPUT).unwrap();
        assert_eq!(m.requests_per_second, 98010.0);
        assert_eq!((m.p50_ms, m.p99_ms), (0.6, 1.2));
        assert_eq!(m.errors, 12);
    }

    #[test]
    fn wrk_latency_units() {
        assert_eq!(parse_duration_ms("2.5s").unwrap(), 2500.0);
        assert_eq!(parse_duration_ms("250.00us").unwrap(), 0.25);
        assert!(parse_duration_ms("3 weeks").is_err());
    }
}

/// Deterministic feature values, the same the model_timing example feeds tract.
fn feature(index: usize) -> f64 {
    (index * 37 % 101) as f64 / 50.0 - 1.0
}

/// Writes target/bench/{score,infer}-{rows}.lua (wrk scripts) and score-1.json for a
/// model `width` features wide, with input named `input`.
fn write_model_scripts(width: usize, input: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(REPORT_DIR)?;
    for rows in MODEL_ROWS {
        let values: Vec<f64> = (0..rows * width).map(feature).collect();
        let matrix: Vec<&[f64]> = values.chunks(width).collect();
        let score = serde_json::json!({"X": matrix}).to_string();
        let infer = serde_json::json!({"inputs": [{"name": input, "shape": [rows, width], "datatype": "FP32", "data": values}]})
            .to_string();
        for (kind, body) in [("score", &score), ("infer", &infer)] {
            // A level-1 long string: JSON never contains "]=]".
            let script = format!(
                "-- Written by cargo xtask bench --model.\nwrk.method = \"POST\"\nwrk.body = [=[{body}]=]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
            );
            std::fs::write(Path::new(REPORT_DIR).join(format!("{kind}-{rows}.lua")), script)?;
        }
        if rows == 1 {
            std::fs::write(Path::new(REPORT_DIR).join("score-1.json"), &score)?;
        }
    }
    Ok(())
}

/// Rows per request in the model bench: one, and a batch.
const MODEL_ROWS: [usize; 2] = [1, 64];

/// tract's own mean time per run, by rows.
#[derive(Serialize, Debug, Clone)]
struct TractTiming {
    rows: usize,
    mean_us: f64,
}

impl BenchCmd {
    fn run_model(self, sh: &Shell, dry_run: bool, model: ModelFile) -> anyhow::Result<()> {
        let results = Rc::new(RefCell::new(Vec::new()));
        let timings = Rc::new(RefCell::new(Vec::new()));
        let mut plan = Plan::new();
        ensure_apt_package(sh, &mut plan, "wrk", "wrk")?;
        let venv_bin = ensure_python_tools(sh, &mut plan, "bench/requirements.txt");
        plan.run(
            cmd!(
                sh,
                "cargo build --release --locked --package score-service --bins --examples"
            ),
            "fix the build error above, then run `cargo xtask bench` again",
        );
        let release = target_dir(sh).join("release");
        let (binary, timing) = (
            release.join("score-service"),
            release.join("examples/model_timing"),
        );
        let path = model.path.clone();
        let name = model.name.clone();
        for rows in MODEL_ROWS {
            let rows_arg = rows.to_string();
            let timings = timings.clone();
            plan.read(
                cmd!(sh, "{timing} {path} {rows_arg}"),
                "the model does not load; see above",
                move |out| {
                    let mean_us = out
                        .split_whitespace()
                        .find_map(|field| field.strip_prefix("mean_us="))
                        .and_then(|v| v.parse().ok())
                        .with_context(|| format!("model_timing printed {out:?}"))?;
                    timings.borrow_mut().push(TractTiming { rows, mean_us });
                    Ok(())
                },
            );
        }

        let [ours, theirs] = [free_port()?, free_port()?];
        let ours_arg = ours.to_string();
        let metadata_url = format!("http://127.0.0.1:{ours}/v2/models/{name}");
        let agent = smoke::agent(Duration::from_secs(2));
        let ready: ReadyProbe = Box::new(move || {
            let (status, body) = smoke::get(&agent, &metadata_url)?;
            if status == 200 {
                // The model's own metadata says how wide and how named its input is.
                let meta: serde_json::Value = serde_json::from_str(&body).map_err(|err| err.to_string())?;
                let width = meta["inputs"][0]["shape"][1].as_u64().ok_or("no input width")? as usize;
                let input = meta["inputs"][0]["name"].as_str().ok_or("no input name")?;
                write_model_scripts(width, input).map_err(|err| err.to_string())?;
            }
            Ok((status, body))
        });
        let loads = |port: u16, with_infer: bool| -> Vec<Load> {
            let mut loads = Vec::new();
            for rows in MODEL_ROWS {
                loads.push(Load {
                    label: format!("/score, {rows} row(s)"),
                    url: format!("http://127.0.0.1:{port}/score"),
                    script: Path::new(REPORT_DIR).join(format!("score-{rows}.lua")),
                });
                if with_infer {
                    loads.push(Load {
                        label: format!("/v2 infer, {rows} row(s)"),
                        url: format!("http://127.0.0.1:{port}/v2/models/{name}/infer"),
                        script: Path::new(REPORT_DIR).join(format!("infer-{rows}.lua")),
                    });
                }
            }
            loads
        };
        let contender = Contender {
            name: "score-service",
            command: cmd!(
                sh,
                "{binary} --host 127.0.0.1 --port {ours_arg} --log-format text --model {path}"
            ),
            port: ours,
        };
        self.add_measurement(
            sh,
            &mut plan,
            contender,
            ready,
            loads(ours, true),
            results.clone(),
        );

        let gunicorn = venv_bin.join("gunicorn");
        let (bind, env) = (format!("127.0.0.1:{theirs}"), format!("MODEL={}", path.display()));
        let contender = Contender {
            name: "flask-onnxruntime-gunicorn-2-workers",
            command: cmd!(
                sh,
                "{gunicorn} --workers 2 --bind {bind} --chdir bench --log-level warning --env {env} flask_onnx_app:app"
            ),
            port: theirs,
        };
        let score_url = format!("http://127.0.0.1:{theirs}/score");
        let agent = smoke::agent(Duration::from_secs(2));
        let ready: ReadyProbe = Box::new(move || {
            let body = std::fs::read_to_string(Path::new(REPORT_DIR).join("score-1.json"))
                .map_err(|err| err.to_string())?;
            smoke::post_json(&agent, &score_url, &body)
        });
        self.add_measurement(
            sh,
            &mut plan,
            contender,
            ready,
            loads(theirs, false),
            results.clone(),
        );

        let (connections, duration) = (self.connections, self.duration);
        plan.check(
            format!("write {REPORT_DIR}/model-report.md and model-report.json"),
            move || model_report(&name, &results.borrow(), &timings.borrow(), connections, duration),
        );
        plan.execute(dry_run)
    }
}

fn model_report(
    model: &str,
    results: &[Measurement],
    timings: &[TractTiming],
    connections: u32,
    duration: u32,
) -> anyhow::Result<()> {
    let find = |server: &str, load: &str| {
        results
            .iter()
            .find(|m| m.server.starts_with(server) && m.load == load)
    };
    let mut table = format!(
        "Model {model}: wrk with 2 threads and {connections} connections for {duration}s per row, on {} cores shared with the load generator.\n\n\
         | request | score-service req/s | p99 (ms) | Flask + onnxruntime (gunicorn, 2 workers) req/s | p99 (ms) | ratio |\n\
         |---|---:|---:|---:|---:|---:|\n",
        cores()
    );
    for m in results.iter().filter(|m| m.server == "score-service") {
        let theirs = find("flask-onnxruntime", &m.load);
        let (their_rps, their_p99, ratio) = match theirs {
            Some(t) => (
                format!("{:.0}", t.requests_per_second),
                format!("{:.3}", t.p99_ms),
                format!("{:.1}x", m.requests_per_second / t.requests_per_second),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.3} | {their_rps} | {their_p99} | {ratio} |",
            m.load, m.requests_per_second, m.p99_ms
        );
    }
    let _ = writeln!(table, "\ntract alone (no HTTP), mean time per run:");
    for t in timings {
        let _ = writeln!(table, "- {} row(s): {:.1} µs", t.rows, t.mean_us);
    }
    let errors: u64 = results.iter().map(|m| m.errors).sum();
    let _ = writeln!(table, "\nErrors (non-2xx or socket) across all runs: {errors}.");
    println!("\n{table}");
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "model": model, "connections": connections, "duration_seconds": duration, "cores": cores(),
        "results": results, "tract": timings,
    }))?;
    std::fs::create_dir_all(REPORT_DIR)?;
    std::fs::write(Path::new(REPORT_DIR).join("model-report.md"), &table)?;
    std::fs::write(Path::new(REPORT_DIR).join("model-report.json"), json)?;
    Ok(())
}
