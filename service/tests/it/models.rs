//! Real scikit-learn models exported to ONNX (models/, made by models/make_fixtures.py),
//! served through /score and the Open Inference Protocol, answering as onnxruntime did.

use std::path::PathBuf;

use score_service::config::Limits;
use serde_json::{Value, json};

use crate::support::{TestServer, assert_close, post};

const MODELS: [&str; 3] = ["linear_regression", "logistic_regression", "random_forest"];

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// onnxruntime's answers, recorded when the fixtures were made.
fn expected(model: &str) -> Value {
    let text = std::fs::read_to_string(models_dir().join("expected.json")).expect("models/expected.json");
    serde_json::from_str::<Value>(&text).unwrap()[model].clone()
}

async fn serve(model: &str) -> TestServer {
    serve_with(model, Limits::default()).await
}

async fn serve_with(model: &str, limits: Limits) -> TestServer {
    let path = models_dir().join(format!("{model}.onnx"));
    TestServer::serving(path.to_str().unwrap(), limits).await
}

fn infer_request(rows: &Value) -> String {
    let count = rows.as_array().unwrap().len();
    json!({
        "id": "request-7",
        "inputs": [{"name": "X", "shape": [count, 4], "datatype": "FP32", "data": rows}],
    })
    .to_string()
}

#[tokio::test]
async fn score_answers_like_onnxruntime() {
    for model in MODELS {
        let server = serve(model).await;
        let expected = expected(model);
        let inputs = &expected["inputs"];
        let response = server.score(&json!({"X": inputs}).to_string()).await;
        assert_eq!(response.status, 200, "{model}: {response:?}");
        let answer = response.json();
        match expected["outputs"].get("label") {
            Some(labels) => {
                assert_eq!(answer["score"], *labels, "{model}: labels are exact");
                assert_close(
                    &answer["probabilities"],
                    &expected["outputs"]["probabilities"],
                    model,
                );
            }
            None => {
                assert_close(&answer["score"], &expected["outputs"]["variable"], model);
                assert!(answer.get("probabilities").is_none());
            }
        }
        // One row in: a list of one score.
        let single = server.score(&json!({"X": inputs[0]}).to_string()).await.json();
        assert_eq!(
            single["score"].as_array().map(Vec::len),
            Some(1),
            "{model}: {single}"
        );
    }
}

#[tokio::test]
async fn infer_answers_like_onnxruntime() {
    for model in MODELS {
        let server = serve(model).await;
        let expected = expected(model);
        let request = infer_request(&expected["inputs"]);
        let response = server
            .send(post(
                &format!("/v2/models/{model}/infer"),
                "application/json",
                &request,
            ))
            .await;
        assert_eq!(response.status, 200, "{model}: {response:?}");
        let answer = response.json();
        assert_eq!(
            (answer["model_name"].as_str(), answer["id"].as_str()),
            (Some(model), Some("request-7"))
        );
        let outputs = answer["outputs"].as_array().unwrap();
        let wanted_outputs = expected["outputs"].as_object().unwrap();
        assert_eq!(
            outputs
                .iter()
                .map(|o| o["name"].as_str().unwrap())
                .collect::<Vec<_>>(),
            wanted_outputs.keys().map(String::as_str).collect::<Vec<_>>(),
            "{model}: every output onnxruntime gave, in its order"
        );
        for output in outputs {
            let name = output["name"].as_str().unwrap();
            let wanted = &expected["outputs"][name];
            if output["datatype"] == "INT64" {
                assert_eq!(output["data"], *wanted, "{model}.{name}");
            } else {
                assert_close(&output["data"], wanted, &format!("{model}.{name}"));
            }
            let rows = expected["inputs"].as_array().unwrap().len();
            assert_eq!(
                output["shape"][0].as_u64(),
                Some(rows as u64),
                "{model}.{name}: {output}"
            );
        }
    }
}

#[tokio::test]
async fn infer_takes_nested_data_and_returns_only_the_outputs_asked_for() {
    let server = serve("logistic_regression").await;
    let expected = expected("logistic_regression");
    let request = json!({
        "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [expected["inputs"][0], expected["inputs"][1]]}],
        "outputs": [{"name": "label"}],
    });
    let response = server
        .send(post(
            "/v2/models/logistic_regression/infer",
            "application/json",
            &request.to_string(),
        ))
        .await;
    let answer = response.json();
    assert_eq!(answer["outputs"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(
        answer["outputs"][0]["data"],
        json!(expected["outputs"]["label"].as_array().unwrap()[..2])
    );
    assert!(answer.get("id").is_none(), "no id asked, none echoed");
}

#[tokio::test]
async fn metadata_and_health_follow_the_protocol() {
    let server = serve("logistic_regression").await;
    let metadata = server.get("/v2/models/logistic_regression").await;
    assert_eq!(metadata.status, 200);
    assert_eq!(
        metadata.json(),
        json!({
            "name": "logistic_regression",
            "versions": ["1"],
            "platform": "onnx_onnxv1",
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            ],
        })
    );
    assert_eq!(server.get("/v2").await.json()["name"], "score-service");
    assert_eq!(server.get("/v2/health/live").await.json(), json!({"live": true}));
    assert_eq!(
        server.get("/v2/health/ready").await.json(),
        json!({"ready": true})
    );
    let ready = server.get("/v2/models/logistic_regression/ready").await;
    assert_eq!(
        (ready.status, ready.json()),
        (200, json!({"name": "logistic_regression", "ready": true}))
    );

    server.app.start_draining();
    let draining = server.get("/v2/health/ready").await;
    assert_eq!((draining.status, draining.json()), (503, json!({"ready": false})));
    assert_eq!(
        server.get("/v2/models/logistic_regression/ready").await.status,
        503
    );
    assert_eq!(server.get("/v2/health/live").await.status, 200);
}

#[tokio::test]
async fn the_identity_model_is_served_as_echo() {
    let server = TestServer::start().await;
    assert_eq!(server.get("/v2/models/echo").await.json()["platform"], "echo");
    let request = json!({"inputs": [{"name": "anything", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 12345678901234567_i64]]}]});
    let answer = server
        .send(post(
            "/v2/models/echo/infer",
            "application/json",
            &request.to_string(),
        ))
        .await
        .json();
    assert_eq!(
        answer["outputs"],
        json!([{"name": "output0", "datatype": "INT64", "shape": [2, 2], "data": [1, 2, 3, 12345678901234567_i64]}])
    );
}

#[tokio::test]
async fn bad_requests_to_a_model_are_4xx_json() {
    let limits = Limits {
        max_batch: 4,
        ..Limits::default()
    };
    let server = serve_with("logistic_regression", limits).await;
    let infer = |input: Value| json!({"inputs": [input]}).to_string();
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        ("score, wrong width", "/score".into(), r#"{"X": [[1, 2, 3]]}"#.into(), 400, "X holds rows of shape [3], but model \"logistic_regression\" takes rows of shape [4]"),
        ("score, too many rows", "/score".into(), json!({"X": vec![[0, 0, 0, 0]; 5]}).to_string(), 400, "has 5 rows; at most 4"),
        (
            "infer, wrong width",
            "/v2/models/logistic_regression/infer".into(),
            infer(json!({"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]})),
            400,
            "input \"X\" has shape [1, 3], but model \"logistic_regression\" takes [-1, 4]",
        ),
        (
            "infer, wrong datatype",
            "/v2/models/logistic_regression/infer".into(),
            infer(json!({"name": "X", "shape": [1, 4], "datatype": "BYTES", "data": ["1", "2", "3", "4"]})),
            400,
            "input \"X\": BYTES cannot be converted to FP32",
        ),
        (
            "infer, an integer float32 cannot hold",
            "/v2/models/logistic_regression/infer".into(),
            infer(json!({"name": "X", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 16777217, 4]})),
            400,
            "input \"X\": element 2 (16777217) would change from INT64 to FP32",
        ),
        (
            "infer, shape and data disagree",
            "/v2/models/logistic_regression/infer".into(),
            infer(json!({"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]})),
            400,
            "input \"X\" has shape [2, 4], but its data is shaped [6]",
        ),
        (
            "infer, rank 3",
            "/v2/models/logistic_regression/infer".into(),
            infer(json!({"name": "X", "shape": [1, 1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]})),
            400,
            "input \"X\" has shape [1, 1, 4], but model \"logistic_regression\" takes [-1, 4]",
        ),
        (
            "infer, a string in the data",
            "/v2/models/logistic_regression/infer".into(),
            infer(json!({"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, "3", 4]})),
            400,
            "input \"X\" data[2] is a string, expected a number",
        ),
        (
            "infer, wrong input name",
            "/v2/models/logistic_regression/infer".into(),
            infer(json!({"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]})),
            400,
            "unknown input \"features\": model \"logistic_regression\" takes \"X\"",
        ),
        (
            "infer, unknown output",
            "/v2/models/logistic_regression/infer".into(),
            json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "logits"}]}).to_string(),
            400,
            "unknown output \"logits\": model \"logistic_regression\" gives label, probabilities",
        ),
        ("infer, not a request", "/v2/models/logistic_regression/infer".into(), "[1, 2]".into(), 400, "not an inference request"),
        (
            "infer, unknown model",
            "/v2/models/resnet/infer".into(),
            infer(json!({"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]})),
            404,
            "unknown model \"resnet\": this server serves \"logistic_regression\"",
        ),
    ];
    for (what, path, body, status, message) in cases {
        let response = server.send(post(&path, "application/json", &body)).await;
        assert_eq!(response.status, status, "{what}: {response:?}");
        let error = response.error();
        assert!(
            error.contains(message),
            "{what}:\n  expected error containing {message:?}\n  got {error:?}"
        );
    }
    assert_eq!(server.get("/v2/models/resnet").await.status, 404);
    let wrong_method = server.get("/v2/models/logistic_regression/infer").await;
    assert_eq!(
        (wrong_method.status, wrong_method.header("allow")),
        (405, Some("POST"))
    );
}

#[test]
fn a_model_that_cannot_load_stops_start_up_with_one_line_naming_it() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad-models");
    std::fs::create_dir_all(&scratch).unwrap();
    let garbage = scratch.join("garbage.onnx");
    std::fs::write(&garbage, b"this is not protobuf").unwrap();
    let missing = scratch.join("missing.onnx");
    for (path, reason) in [(&missing, "no such file"), (&garbage, "garbage.onnx")] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_score-service"))
            .args(["--port", "0", "--log-format", "text", "--model"])
            .arg(path)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{path:?} must not start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|line| line.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains(&path.display().to_string()) && errors[0].contains(reason),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_the_model_cannot_compute_with_are_the_clients_mistake_not_null() {
    // Found by schemathesis: a float32 model given 3.9e101 answered `[null, null, null]`.
    let server = serve("logistic_regression").await;
    let beyond = server.score(r#"{"X": [[1e7, 3.9e101, 0.3, -5.8e166]]}"#).await;
    assert_eq!(beyond.status, 400, "{beyond:?}");
    assert!(
        beyond
            .error()
            .contains("X[0][1] is 3.9e101, beyond the range of the input's float type (FP32)"),
        "{}",
        beyond.error()
    );
    // Within float32, but too large for what the model computes: NaN out, refused.
    let overflow = server
        .score(r#"{"X": [[1, 2, 3, 4], [3e38, -3e38, 3e38, -3e38]]}"#)
        .await;
    assert_eq!(overflow.status, 400, "{overflow:?}");
    assert!(
        overflow.error().contains("for row 1, the model's output")
            && overflow.error().contains("is not a finite number"),
        "{}",
        overflow.error()
    );
    assert_eq!(server.score(r#"{"X": [[1, 2, 3, 4]]}"#).await.status, 200);
}
