//! The zoo (models/zoo/, made by models/make_fixtures.py): every estimator family users
//! ship, each served through /score and /v2 and answering as onnxruntime did — labels
//! exactly, numbers within 1e-5 — on rows that include features exactly on split
//! thresholds.

use std::path::PathBuf;

use score_service::config::Limits;
use serde_json::{Map, Value, json};

use crate::support::{TestServer, assert_close, post};

fn zoo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/zoo")
}

fn index() -> Map<String, Value> {
    let text = std::fs::read_to_string(zoo_dir().join("index.json")).expect("models/zoo/index.json");
    serde_json::from_str(&text).expect("the zoo's index is JSON")
}

/// Compares an answer with onnxruntime's: integers and strings exactly, floats closely.
fn assert_same(actual: &Value, expected: &Value, what: &str) {
    let exact = |v: &Value| match v {
        Value::Array(items) => items
            .first()
            .is_some_and(|first| first.is_string() || first.is_i64()),
        _ => false,
    };
    if exact(expected) {
        assert_eq!(actual, expected, "{what}: labels are exact");
    } else {
        assert_close(actual, expected, what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_zoo_model_answers_like_onnxruntime() {
    let index = index();
    assert!(index.len() >= 20, "the zoo has {} models", index.len());
    for (name, entry) in &index {
        let path = zoo_dir().join(format!("{name}.onnx"));
        if let Some(expect) = entry.get("expect") {
            let operator = expect
                .as_str()
                .unwrap()
                .strip_prefix("refused: ")
                .expect("refused: OPERATOR");
            let error = score_service::model::load(path.to_str().unwrap(), &Default::default())
                .err()
                .expect("refused")
                .to_string();
            assert!(
                error.contains(&format!("operator {operator} (node "))
                    && error.contains(&*path.to_string_lossy()),
                "{name}: {error}"
            );
            continue;
        }
        let server = TestServer::serving(path.to_str().unwrap(), Limits::default()).await;
        let inputs = &entry["inputs"];
        let rows = inputs.as_array().expect("inputs").len();
        let outputs = entry["outputs"].as_object().expect("outputs");
        let expected: Vec<(&String, &Value)> = outputs.iter().collect();
        assert!(!expected.is_empty(), "{name}: onnxruntime gave outputs");

        let response = server.score(&json!({"X": inputs}).to_string()).await;
        assert_eq!(response.status, 200, "{name}: {response:?}");
        let answer = response.json();
        assert_same(&answer["score"], expected[0].1, &format!("{name} /score"));
        if entry["task"] == "classification" {
            let (_, probabilities) = expected
                .get(1)
                .unwrap_or_else(|| panic!("{name}: a second output"));
            assert_close(
                &answer["probabilities"],
                probabilities,
                &format!("{name} /score probabilities"),
            );
        } else {
            assert!(answer.get("probabilities").is_none(), "{name}: {answer}");
        }

        let width = inputs[0].as_array().unwrap().len();
        let metadata = server.get(&format!("/v2/models/{name}")).await.json();
        let input_name = metadata["inputs"][0]["name"].as_str().unwrap().to_owned();
        let request = json!({"inputs": [{"name": input_name, "shape": [rows, width], "datatype": "FP32", "data": inputs}]});
        let response = server
            .send(post(
                &format!("/v2/models/{name}/infer"),
                "application/json",
                &request.to_string(),
            ))
            .await;
        assert_eq!(response.status, 200, "{name}: {response:?}");
        let answer = response.json();
        let served = answer["outputs"].as_array().expect("outputs");
        assert_eq!(served.len(), expected.len(), "{name}: {answer}");
        for (output, (expected_name, values)) in served.iter().zip(&expected) {
            assert_eq!(output["name"], json!(expected_name), "{name}");
            assert_eq!(
                output["shape"][0],
                json!(rows),
                "{name}.{expected_name}: {output}"
            );
            assert_same(
                &output["data"],
                &Value::Array(flatten(values)),
                &format!("{name} /v2 {expected_name}"),
            );
        }
    }
}

fn flatten(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        other => vec![other.clone()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_the_model_refuses_is_the_clients_mistake() {
    // OneHotEncoder(handle_unknown="error"): onnxruntime raises on an unknown category.
    let path = zoo_dir().join("one_hot_strict_linear.onnx");
    let server = TestServer::serving(path.to_str().unwrap(), Limits::default()).await;
    let response = server.score(r#"{"X": [[1, 2, 3], [9, 0, 1]]}"#).await;
    assert_eq!(response.status, 400, "{response:?}");
    let error = response.error();
    assert!(
        error.contains("the model refuses this input") && error.contains("9 is not one of its categories"),
        "{error}"
    );
    let request = json!({"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [0, 7, 1]}]});
    let response = server
        .send(post(
            "/v2/models/one_hot_strict_linear/infer",
            "application/json",
            &request.to_string(),
        ))
        .await;
    assert_eq!(response.status, 400, "{response:?}");
    assert!(
        response.error().contains("7 is not one of its categories"),
        "{response:?}"
    );
    // Known categories still answer.
    assert_eq!(server.score(r#"{"X": [[1, 2, 3]]}"#).await.status, 200);
}
