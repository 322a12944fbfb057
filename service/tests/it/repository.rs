//! A model repository in Triton's layout: models by name and version, the repository
//! routes in each control mode, and versions swapped under load with no failed request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use score_service::App;
use score_service::config::{Limits, ModelControl};
use serde_json::{Value, json};

use crate::support::{PATIENCE, TestServer, post};

const ROW: &str = r#"{"X": [[0.1, -0.2, 0.3, 0.4, -0.5, 0.6]]}"#;

fn zoo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../models/zoo/{name}.onnx"))
}

/// A fresh repository directory for one test.
fn repository_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("score-repository-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Puts the zoo's `zoo_name` in `dir` as `model`'s `version`.
fn put(dir: &Path, model: &str, version: u64, zoo_name: &str) {
    let version_dir = dir.join(model).join(version.to_string());
    std::fs::create_dir_all(&version_dir).unwrap();
    std::fs::copy(zoo(zoo_name), version_dir.join("model.onnx")).unwrap();
}

fn put_bytes(dir: &Path, model: &str, version: u64, bytes: &[u8]) {
    let version_dir = dir.join(model).join(version.to_string());
    std::fs::create_dir_all(&version_dir).unwrap();
    std::fs::write(version_dir.join("model.onnx"), bytes).unwrap();
}

async fn serve(dir: &Path, default: Option<&str>, control: ModelControl) -> TestServer {
    serve_vetted(dir, default, control, None).await
}

/// A server of `dir` that has `vet_with` load each file first, as the binary has itself.
async fn serve_vetted(
    dir: &Path,
    default: Option<&str>,
    control: ModelControl,
    vet_with: Option<PathBuf>,
) -> TestServer {
    let app = App::with_repository(
        dir,
        default.map(str::to_owned),
        control,
        Default::default(),
        Limits::default(),
        vet_with,
    )
    .unwrap();
    TestServer::with_app(app).await
}

/// What a server of the zoo's `zoo_name` alone answers `ROW` on `/score`.
async fn alone(zoo_name: &str) -> Value {
    let server = TestServer::serving(zoo(zoo_name).to_str().unwrap(), Limits::default()).await;
    let answer = server.score(ROW).await;
    assert_eq!(answer.status, 200);
    answer.json()
}

async fn score(server: &TestServer, path: &str) -> (u16, Value) {
    let answer = server.send(post(path, "application/json", ROW)).await;
    (answer.status, answer.json())
}

async fn control(server: &TestServer, path: &str, body: &str) -> (u16, Value) {
    let answer = server.send(post(path, "application/json", body)).await;
    (answer.status, answer.json())
}

fn state_of(index: &Value, model: &str, version: &str) -> (String, String) {
    let row = index
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == model && row["version"] == version)
        .unwrap_or_else(|| panic!("no {model} {version} in {index}"));
    (
        row["state"].as_str().unwrap().to_owned(),
        row["reason"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_served_by_name_and_version_and_a_bad_one_is_refused_by_name() {
    let dir = repository_dir("names");
    put(&dir, "fraud", 1, "linear_regression");
    put(&dir, "fraud", 2, "linear_svr");
    put(&dir, "classifier", 1, "logistic_multiclass");
    put_bytes(&dir, "broken", 1, b"not an onnx file");
    let (regression, svr) = (alone("linear_regression").await, alone("linear_svr").await);
    assert_ne!(
        regression, svr,
        "the two versions must answer differently to tell them apart"
    );

    let server = serve(&dir, None, ModelControl::None).await;
    // The newest version by default (Triton's `latest: 1`).
    let metadata = server.get("/v2/models/fraud").await;
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.json()["versions"], json!(["2"]));
    assert_eq!(score(&server, "/score/fraud").await, (200, svr.clone()));
    let old = score(&server, "/v2/models/fraud/versions/1/infer").await;
    assert_eq!(old.0, 404, "{}", old.1);
    assert!(old.1["error"].as_str().unwrap().contains("it has 2"), "{}", old.1);
    assert_eq!(score(&server, "/score/classifier").await.0, 200);

    // Several models and no default: /score says which to name.
    let (status, answer) = score(&server, "/score").await;
    assert_eq!(status, 404);
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("/score/{name}") && error.contains("\"classifier\", \"fraud\""),
        "{error}"
    );
    let (status, answer) = score(&server, "/score/nope").await;
    assert_eq!(status, 404);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("unknown model \"nope\""),
        "{answer}"
    );

    // Each model version's own series; a name from a request never becomes a label.
    let wrong_width = post("/score/fraud", "application/json", r#"{"X": [[1, 2]]}"#);
    assert_eq!(server.send(wrong_width).await.status, 400);
    let metrics = String::from_utf8(server.get("/metrics").await.body).unwrap();
    let series = |labels: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{labels} ")))
            .map(str::to_owned)
    };
    for (labels, count) in [
        (
            r#"model_requests_total{model="fraud",version="2",outcome="ok"}"#,
            "1",
        ),
        (
            r#"model_requests_total{model="fraud",version="2",outcome="client_error"}"#,
            "1",
        ),
        (
            r#"model_requests_total{model="classifier",version="1",outcome="ok"}"#,
            "1",
        ),
        (
            r#"model_request_duration_seconds_count{model="fraud",version="2"}"#,
            "2",
        ),
        (r#"model_batch_rows_count{model="fraud",version="2"}"#, "1"),
    ] {
        assert_eq!(series(labels).as_deref(), Some(count), "{labels} in:\n{metrics}");
    }
    assert!(!metrics.contains("nope"), "{metrics}");

    // The bad model is not served, and keeps the server out of the load balancer's
    // rotation (as Triton's strict readiness does) while the others answer.
    assert_eq!(server.get("/v2/models/broken").await.status, 404);
    let readyz = server.get("/readyz").await;
    assert_eq!(readyz.status, 503);
    let why = readyz.json()["error"].as_str().unwrap().to_owned();
    assert!(why.contains("no version of broken is loaded"), "{why}");
    assert_eq!(server.get("/v2/models/fraud/ready").await.status, 200);
    // The index reads; loading and unloading are off unless asked for.
    let (status, index) = control(&server, "/v2/repository/index", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        state_of(&index, "fraud", "1"),
        ("UNAVAILABLE".into(), "not loaded".into())
    );
    assert_eq!(state_of(&index, "fraud", "2").0, "READY");
    let (state, reason) = state_of(&index, "broken", "1");
    assert!(
        state == "UNAVAILABLE" && reason.contains("model.onnx"),
        "{reason}"
    );
    let (status, answer) = control(&server, "/v2/repository/models/fraud/unload", "").await;
    assert_eq!(status, 403);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("--model-control explicit"),
        "{answer}"
    );

    // A policy serving every version: each answers as its own file does.
    std::fs::remove_dir_all(dir.join("broken")).unwrap();
    std::fs::write(dir.join("fraud/settings.json"), r#"{"version_policy": "all"}"#).unwrap();
    let server = serve(&dir, Some("fraud"), ModelControl::None).await;
    assert_eq!(
        server.get("/v2/models/fraud").await.json()["versions"],
        json!(["1", "2"])
    );
    assert_eq!(server.get("/readyz").await.status, 200);
    assert_eq!(
        score(&server, "/score").await,
        (200, svr.clone()),
        "the default model's newest"
    );
    let infer = |version: u64| {
        let body = json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 6],
                                      "data": [0.1, -0.2, 0.3, 0.4, -0.5, 0.6]}]})
        .to_string();
        post(
            &format!("/v2/models/fraud/versions/{version}/infer"),
            "application/json",
            &body,
        )
    };
    let (v1, v2) = (
        server.send(infer(1)).await.json(),
        server.send(infer(2)).await.json(),
    );
    let number = |answer: &Value| answer["outputs"][0]["data"][0].as_f64().unwrap();
    let first = |answer: &Value| answer["score"][0].as_f64().unwrap();
    assert!(
        (number(&v1) - first(&regression)).abs() < 1e-6,
        "{v1} {regression}"
    );
    assert!((number(&v2) - first(&svr)).abs() < 1e-6, "{v2} {svr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_control_loads_and_unloads_and_a_failed_load_changes_nothing() {
    let dir = repository_dir("explicit");
    put(&dir, "fraud", 1, "linear_regression");
    put(&dir, "fraud", 2, "linear_svr");
    let (regression, svr) = (alone("linear_regression").await, alone("linear_svr").await);
    let server = serve(&dir, Some("fraud"), ModelControl::Explicit).await;

    let (status, index) = control(&server, "/v2/repository/index", "{}").await;
    assert_eq!(status, 200);
    assert_eq!(state_of(&index, "fraud", "2").0, "READY");
    assert_eq!(
        state_of(&index, "fraud", "1"),
        ("UNAVAILABLE".into(), "not loaded".into())
    );
    let (status, ready) = control(&server, "/v2/repository/index", r#"{"ready": true}"#).await;
    assert_eq!((status, ready.as_array().unwrap().len()), (200, 1), "{ready}");
    assert_eq!(state_of(&ready, "fraud", "2").0, "READY");
    let (status, _) = control(&server, "/v2/repository/index", "[null, null]").await;
    assert_eq!(status, 400, "a body that is not the protocol's is refused");
    let metadata = server.get("/v2").await.json();
    assert!(
        metadata["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("model_repository")),
        "{metadata}"
    );

    // One given version.
    let (status, answer) = control(
        &server,
        "/v2/repository/models/fraud/load",
        r#"{"parameters": {"version": 1}}"#,
    )
    .await;
    assert_eq!(
        (status, &answer),
        (200, &json!({"name": "fraud", "versions": ["1"]}))
    );
    assert_eq!(score(&server, "/score").await, (200, regression.clone()));

    // A new version that does not load: refused by name, and version 1 still answers.
    put_bytes(&dir, "fraud", 3, b"not an onnx file");
    // The policy asks for versions 2 and 3: 2 loads, 3 does not, and nothing changes, not
    // even /metrics, where version 2 would have had its series.
    std::fs::write(
        dir.join("fraud/settings.json"),
        r#"{"version_policy": {"latest": 2}}"#,
    )
    .unwrap();
    let (status, answer) = control(&server, "/v2/repository/models/fraud/load", "").await;
    assert_eq!(status, 400, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("\"fraud\" was not loaded") && error.contains("version 3"),
        "{error}"
    );
    assert_eq!(score(&server, "/score").await, (200, regression.clone()));
    let metrics = String::from_utf8(server.get("/metrics").await.body).unwrap();
    assert!(
        !metrics.contains(r#"model="fraud",version="2""#) && metrics.contains(r#"model="fraud",version="1""#),
        "{metrics}"
    );
    std::fs::remove_file(dir.join("fraud/settings.json")).unwrap();
    for (body, why) in [
        (r#"{"parameters": {"version": 7}}"#, "no version 7"),
        (r#"{"parameters": {"version": "x"}}"#, "give a version number"),
        (r#"{"version": 1}"#, "unknown field"),
    ] {
        let (status, answer) = control(&server, "/v2/repository/models/fraud/load", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(why),
            "{body}: {answer}"
        );
    }
    let (status, _) = control(&server, "/v2/repository/models/nope/load", "").await;
    assert_eq!(status, 400);

    // Back to what the policy chooses, once the bad file is gone.
    std::fs::remove_dir_all(dir.join("fraud/3")).unwrap();
    let (status, answer) = control(&server, "/v2/repository/models/fraud/load", "").await;
    assert_eq!((status, &answer["versions"]), (200, &json!(["2"])));
    assert_eq!(score(&server, "/score").await, (200, svr));

    let series = |metrics: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("model_") && l.contains("model=\"fraud\""))
            .count()
    };
    let metrics = String::from_utf8(server.get("/metrics").await.body).unwrap();
    assert!(series(&metrics) > 0, "{metrics}");
    let (status, _) = control(&server, "/v2/repository/models/fraud/unload", "").await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8(server.get("/metrics").await.body).unwrap();
    assert_eq!(series(&metrics), 0, "an unloaded model's series go: {metrics}");
    assert_eq!(server.get("/v2/models/fraud").await.status, 404);
    assert_eq!(score(&server, "/score").await.0, 404);
    let (_, index) = control(&server, "/v2/repository/index", "").await;
    assert_eq!(
        state_of(&index, "fraud", "2"),
        ("UNAVAILABLE".into(), "not loaded".into())
    );
    let (status, _) = control(&server, "/v2/repository/models/fraud/unload", "").await;
    assert_eq!(status, 404, "unloading what is not loaded");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_swapped_under_load_fail_no_request() {
    let dir = repository_dir("swap");
    put(&dir, "fraud", 1, "linear_regression");
    put(&dir, "fraud", 2, "linear_svr");
    let (regression, svr) = (alone("linear_regression").await, alone("linear_svr").await);
    let server = Arc::new(serve(&dir, Some("fraud"), ModelControl::Explicit).await);

    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (server, done) = (server.clone(), done.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    answers.push(score(&server, "/score/fraud").await);
                }
                answers
            })
        })
        .collect();
    for swap in 0..20 {
        let body = format!(r#"{{"parameters": {{"version": {}}}}}"#, 1 + swap % 2);
        let (status, answer) = control(&server, "/v2/repository/models/fraud/load", &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    done.store(true, Ordering::Relaxed);
    let mut seen = (0, 0);
    for client in clients {
        for (status, answer) in client.await.unwrap() {
            assert_eq!(status, 200, "{answer}");
            if answer == regression {
                seen.0 += 1;
            } else if answer == svr {
                seen.1 += 1;
            } else {
                panic!("an answer of neither version: {answer}");
            }
        }
    }
    assert!(
        seen.0 > 0 && seen.1 > 0,
        "both versions answered during the swaps: {seen:?}"
    );
    eprintln!(
        "answers during 20 swaps: {} by version 1, {} by version 2",
        seen.0, seen.1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Waits, within PATIENCE, until `path` answers `status`.
async fn until_status(server: &TestServer, path: &str, status: u16) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = server.get(path).await;
        if answer.status == status {
            return answer.json();
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_control_follows_the_directory() {
    let dir = repository_dir("poll");
    put(&dir, "fraud", 1, "linear_regression");
    let svr = alone("linear_svr").await;
    let server = serve(&dir, None, ModelControl::Poll).await;
    tokio::spawn(
        server
            .app
            .repository()
            .clone()
            .poll_every(Duration::from_millis(50)),
    );
    let (status, _) = control(&server, "/v2/repository/index", "").await;
    assert_eq!(status, 200, "poll mode shows the index");
    let (status, answer) = control(&server, "/v2/repository/models/fraud/unload", "").await;
    assert_eq!(status, 403, "{answer}");

    // A new version appears: it is loaded and answers.
    put(&dir, "fraud", 2, "linear_svr");
    let deadline = Instant::now() + PATIENCE;
    while server.get("/v2/models/fraud").await.json()["versions"] != json!(["2"]) {
        assert!(Instant::now() < deadline, "version 2 was not loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(score(&server, "/score").await, (200, svr));
    // Version 2's file replaced by one that keeps its modification time, as `cp -p`,
    // `rsync -t` or a tar leave it: it is still seen as changed, and reloaded.
    let file = dir.join("fraud/2/model.onnx");
    let kept_time = std::fs::metadata(&file).unwrap().modified().unwrap();
    let replacement = dir.join("replacement.onnx");
    std::fs::copy(zoo("linear_regression"), &replacement).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&replacement)
        .unwrap()
        .set_modified(kept_time)
        .unwrap();
    std::fs::rename(&replacement, &file).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), kept_time);
    let regression = alone("linear_regression").await;
    let deadline = Instant::now() + PATIENCE;
    while score(&server, "/score").await != (200, regression.clone()) {
        assert!(Instant::now() < deadline, "the replaced file was not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A newer version that does not load (an upload still being copied): version 2 keeps
    // answering, and the index says why 3 is not served.
    put_bytes(&dir, "fraud", 3, b"half a file");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, index) = control(&server, "/v2/repository/index", "").await;
        if state_of(&index, "fraud", "3").1 != "not loaded" {
            break;
        }
        assert!(Instant::now() < deadline, "version 3 was never tried: {index}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.get("/v2/models/fraud").await.json()["versions"],
        json!(["2"])
    );
    assert_eq!(score(&server, "/score").await, (200, regression));
    assert_eq!(server.get("/readyz").await.status, 200);
    std::fs::remove_dir_all(dir.join("fraud/3")).unwrap();
    // A model appears, then the first goes.
    put(&dir, "classifier", 1, "logistic_multiclass");
    until_status(&server, "/v2/models/classifier", 200).await;
    std::fs::remove_dir_all(dir.join("fraud")).unwrap();
    until_status(&server, "/v2/models/fraud", 404).await;
    assert_eq!(score(&server, "/score/classifier").await.0, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_merges_concurrent_requests_and_answers_each_as_alone() {
    let dir = repository_dir("batching");
    for (model, file) in [
        ("trees", "extra_trees_regressor"),
        ("linear", "linear_regression"),
    ] {
        put(&dir, model, 1, file);
        // A batch closes at 16 rows, or half a second after its first request.
        std::fs::write(
            dir.join(model).join("settings.json"),
            r#"{"max_batch_size": 16, "max_batch_time": 0.5}"#,
        )
        .unwrap();
    }
    put(&dir, "half", 1, "linear_regression");
    std::fs::write(dir.join("half/settings.json"), r#"{"max_batch_size": 16}"#).unwrap();
    let server = Arc::new(serve(&dir, None, ModelControl::None).await);
    let (_, index) = control(&server, "/v2/repository/index", "").await;
    let (state, reason) = state_of(&index, "half", "1");
    assert!(
        state == "UNAVAILABLE" && reason.contains("needs both"),
        "{reason}"
    );

    // Sixteen distinct rows.
    let rows: Vec<String> = (0..16)
        .map(|i| {
            let row: Vec<String> = (0..6)
                .map(|j| format!("{:.3}", (i * 7 + j) as f64 / 10.0 - 3.0))
                .collect();
            format!("{{\"X\": [[{}]]}}", row.join(", "))
        })
        .collect();
    for (model, file) in [
        ("trees", "extra_trees_regressor"),
        ("linear", "linear_regression"),
    ] {
        // What each row gets alone, from a server that does not batch.
        let alone = TestServer::serving(zoo(file).to_str().unwrap(), Limits::default()).await;
        let mut expected = Vec::new();
        for row in &rows {
            let answer = alone.score(row).await;
            assert_eq!(answer.status, 200);
            expected.push(answer.json());
        }
        let sent: Vec<_> = rows
            .iter()
            .map(|row| {
                let (server, request) = (
                    server.clone(),
                    post(&format!("/score/{model}"), "application/json", row),
                );
                tokio::spawn(async move { server.send(request).await })
            })
            .collect();
        for (index, sent) in sent.into_iter().enumerate() {
            let answer = sent.await.unwrap();
            assert_eq!(answer.status, 200);
            assert_eq!(
                answer.json(),
                expected[index],
                "{model}: row {index} answered as it would alone"
            );
        }
        let metrics = String::from_utf8(server.get("/metrics").await.body).unwrap();
        let series = |name: &str| {
            let prefix = format!("{name}{{model=\"{model}\",version=\"1\"}} ");
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
        };
        let (inferences, computed) = (series("model_batch_rows_count"), series("model_batch_rows_sum"));
        assert_eq!(computed, 16.0, "every row computed once");
        assert!(
            inferences < 16.0,
            "{model}: 16 requests ran as {inferences} inferences"
        );
        eprintln!("{model}: 16 one-row requests ran as {inferences} inference(s)");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_model_files_are_served_each_by_its_name() {
    let load =
        |name: &str| score_service::model::load(zoo(name).to_str().unwrap(), &Default::default()).unwrap();
    let (svr, classifier) = (alone("linear_svr").await, alone("logistic_multiclass").await);
    let both = || vec![load("linear_svr"), load("logistic_multiclass")];
    let server = TestServer::with_app(App::with_models(both(), None, Limits::default()).unwrap()).await;
    assert_eq!(score(&server, "/score/linear_svr").await, (200, svr.clone()));
    assert_eq!(
        score(&server, "/score/logistic_multiclass").await,
        (200, classifier)
    );
    let metadata = server.get("/v2/models/logistic_multiclass").await;
    assert_eq!(metadata.status, 200, "{metadata:?}");
    assert_eq!(metadata.json()["versions"], json!(["1"]));
    let (status, answer) = score(&server, "/score").await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("/score/{name}"),
        "{answer}"
    );
    let index = server
        .send(post("/v2/repository/index", "application/json", "{}"))
        .await
        .json();
    assert_eq!(state_of(&index, "linear_svr", "1").0, "READY");
    assert_eq!(state_of(&index, "logistic_multiclass", "1").0, "READY");

    let defaulted = App::with_models(both(), Some("linear_svr".into()), Limits::default()).unwrap();
    let server = TestServer::with_app(defaulted).await;
    assert_eq!(score(&server, "/score").await, (200, svr));

    let unknown = App::with_models(both(), Some("nope".into()), Limits::default())
        .err()
        .expect("a default that names no model is refused");
    assert!(
        unknown
            .to_string()
            .contains("--default-model \"nope\" is none of"),
        "{unknown}"
    );
}

#[test]
fn model_files_of_one_name_are_refused_at_start() {
    // SCORE_MODEL takes several paths joined by commas, as the xtask's containers set it.
    let scratch = repository_dir("same-name");
    for dir in ["a", "b"] {
        std::fs::create_dir_all(scratch.join(dir)).unwrap();
        std::fs::copy(zoo("linear_svr"), scratch.join(dir).join("model.onnx")).unwrap();
    }
    let paths = format!(
        "{},{}",
        scratch.join("a/model.onnx").display(),
        scratch.join("b/model.onnx").display()
    );
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_score-service"))
        .args(["--port", "0", "--log-format", "text"])
        .env("SCORE_MODEL", &paths)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A server that starts instead of refusing would never exit: stop it and say so.
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            server.kill().unwrap();
            panic!("two models named alike must not start, but the server ran for {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(r#"two --model files are named \"model\""#),
        "{stderr}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_models_name_is_found_through_its_escapes() {
    let dir = repository_dir("escaped");
    put(&dir, "fraud model", 1, "linear_svr");
    put(&dir, "churn", 1, "logistic_multiclass");
    let server = serve(&dir, None, ModelControl::Explicit).await;
    assert_eq!(
        score(&server, "/score/fraud%20model").await,
        (200, alone("linear_svr").await)
    );
    let metadata = server.get("/v2/models/fraud%20model").await;
    assert_eq!(metadata.status, 200, "{metadata:?}");
    assert_eq!(metadata.json()["name"], "fraud model");
    let (status, _) = control(&server, "/v2/repository/models/fraud%20model/load", "").await;
    assert_eq!(status, 200);
    for malformed in ["/score/fraud%2model", "/v2/models/fraud%zz/infer"] {
        let answer = server.send(post(malformed, "application/json", ROW)).await;
        assert_eq!(answer.status, 404, "{malformed}: {answer:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Where panics abort (the release binary), a file tract panics on would end the server
/// that loads it. The server has a process of its own binary load each file first
/// (`--vet-model -`, the bytes on its stdin); here a stand-in for that binary aborts on
/// the bytes "abort me", as the release binary does on the fuzzer's Transpose, so the
/// abort path runs in a test build that unwinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_ends_the_vetting_process_is_refused_and_the_others_are_served() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = repository_dir("vetted");
    put(&dir, "fraud", 1, "linear_svr");
    put_bytes(&dir, "broken", 1, b"abort me");
    let vetter = dir.join("vetter.sh");
    std::fs::write(
        &vetter,
        "#!/bin/sh\nif grep -q 'abort me'; then echo 'tract said no' >&2; kill -ABRT $$; fi\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&vetter, std::fs::Permissions::from_mode(0o755)).unwrap();

    let server = serve_vetted(&dir, None, ModelControl::Explicit, Some(vetter)).await;
    assert_eq!(
        score(&server, "/score/fraud").await,
        (200, alone("linear_svr").await)
    );
    let (_, index) = control(&server, "/v2/repository/index", "{}").await;
    let (state, reason) = state_of(&index, "broken", "1");
    assert_eq!(state, "UNAVAILABLE");
    assert!(
        reason.contains("broken/1/model.onnx: loading it ended the process vetting it")
            && reason.contains("SIGABRT")
            && reason.ends_with(": tract said no"),
        "{reason}"
    );

    // Loaded live, the same: refused by name, and the server goes on serving.
    put_bytes(&dir, "broken", 2, b"abort me too");
    let (status, answer) = control(&server, "/v2/repository/models/broken/load", "").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("ended the process vetting it"),
        "{answer}"
    );
    assert_eq!(score(&server, "/score/fraud").await.0, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The server's own binary as the vetting process, on the file the fuzzer found that
/// makes tract panic: refused by name with the panic's message, the others served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_vets_a_file_tract_panics_on_and_the_server_refuses_it_by_name() {
    let dir = repository_dir("vetted-by-the-binary");
    put(&dir, "fraud", 1, "linear_svr");
    let found =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/model_bytes-transpose-axis.bin");
    put_bytes(&dir, "broken", 1, &std::fs::read(found).unwrap());
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_score-service"));
    let server = serve_vetted(&dir, None, ModelControl::None, Some(binary)).await;
    assert_eq!(score(&server, "/score/fraud").await.0, 200);
    let (_, index) = control(&server, "/v2/repository/index", "{}").await;
    let (state, reason) = state_of(&index, "broken", "1");
    assert_eq!(state, "UNAVAILABLE");
    assert!(
        reason.contains("broken/1/model.onnx")
            && reason.contains("tract failed while building its graph (index out of bounds"),
        "{reason}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
