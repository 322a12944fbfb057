//! A benchmark that fails, or is interrupted, stops every server it started: the
//! service, the Flask dev server and gunicorn with its workers.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A stand-in for wrk: a report for the first calls, then, at call `at`, `then` (a
/// failure or a long wait). The xtask finds it first on PATH.
fn fake_wrk(dir: &Path, at: u32, then: &str) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let count = dir.join("calls");
    let script = format!(
        r#"#!/bin/sh
n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 ))
echo $n > {count}
if [ $n -ge {at} ]; then {then}; fi
cat <<'REPORT'
  Latency Distribution
     50%  600.00us
     99%    1.20ms
Requests/sec:  1000.00
REPORT
"#,
        count = count.display()
    );
    let path = bin.join("wrk");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    bin
}

/// The ports of the servers a plan's echoed start lines named.
fn started_ports(stderr: &str) -> Vec<u16> {
    stderr
        .lines()
        .filter(|line| line.starts_with("$ ") && line.ends_with("2>&1 &"))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |flag: &str| words.iter().position(|w| *w == flag).map(|i| words[i + 1]);
            after("--port")
                .or_else(|| after("--bind").and_then(|bind| bind.rsplit(':').next()))
                .or_else(|| after("bench/flask_app.py"))
                .or_else(|| {
                    let floor = words.iter().position(|w| w.ends_with("/hyper_floor"))?;
                    words.get(floor + 1).copied()
                })
                .and_then(|port| port.parse().ok())
        })
        .collect()
}

/// The wrk call that warms gunicorn up: the last contender, after two calls (a warm-up and
/// a run) for each of the service, the hyper floor and Flask.
const GUNICORN_WARM_UP: u32 = 7;

/// The first measured call of the alternation, while the service and the floor both run:
/// after gunicorn's two calls and a warm-up for each of the two.
const FIRST_ALTERNATING_RUN: u32 = 11;

fn bench_with_wrk(name: &str, at: u32, then: &str) -> (Command, PathBuf) {
    let state = scratch_dir(name);
    let bin = fake_wrk(&state, at, then);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["bench", "--duration", "1"])
        .env("XTASK_STATE_DIR", &state)
        .env("PATH", path)
        .env_remove("CARGO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (command, state)
}

/// Asserts that the plan started `started` servers, and nothing listens on their ports.
fn assert_all_stopped(stderr: &str, started: usize) {
    let ports = started_ports(stderr);
    assert_eq!(ports.len(), started, "servers started:\n{stderr}");
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something still listens on {port}:\n{stderr}"
        );
    }
}

#[test]
#[ignore = "needs Flask and gunicorn in target/venv and the release build (cargo xtask ci runs it)"]
fn a_failing_bench_stops_every_server_it_started() {
    // Calls 1-8 load the service, the hyper floor, Flask and gunicorn one at a time (a
    // warm-up and a run each); then the service and the floor run side by side, and the
    // first measured call of their alternation fails.
    let (mut command, _state) = bench_with_wrk(
        "bench-fails",
        FIRST_ALTERNATING_RUN,
        "echo 'wrk: boom' >&2; exit 3",
    );
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("wrk: boom"), "{stderr}");
    for server in ["score-service", "hyper_floor"] {
        assert!(
            stderr.contains(&format!("stop {server}, which this task started")),
            "{stderr}"
        );
    }
    // The four alone, then the service and the floor again, together.
    assert_all_stopped(&stderr, 6);
}

#[test]
#[ignore = "needs Flask and gunicorn in target/venv and the release build (cargo xtask ci runs it)"]
fn an_interrupted_bench_stops_every_server_it_started() {
    let (mut command, state) = bench_with_wrk("bench-interrupted", GUNICORN_WARM_UP, "exec sleep 120");
    // Its own process group, so the test can stop the fake wrk it leaves behind.
    command.process_group(0);
    let mut child = command.spawn().unwrap();
    let calls = state.join("calls");
    let deadline = Instant::now() + Duration::from_secs(900);
    while std::fs::read_to_string(&calls)
        .map(|n| n.trim() != GUNICORN_WARM_UP.to_string())
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "the bench never reached gunicorn's load"
        );
        assert!(child.try_wait().unwrap().is_none(), "the bench ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    // `--` first: procps-ng 4.0.2's kill reads `-KILL -1234` as signal options and sends
    // SIGKILL to group -1, that is to every process it may signal (the whole CI machine).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stop gunicorn, which this task started"),
        "{stderr}"
    );
    assert_all_stopped(&stderr, 4);
}
