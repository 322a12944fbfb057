//! The zoo (models/zoo/, made by models/make_fixtures.py): models from every exporter
//! users ship (scikit-learn pipelines over DataFrames, XGBoost, LightGBM, CatBoost, Keras)
//! and the ONNX package's own conformance cases for the ONNX-ML and text operators, each
//! served and answering as onnxruntime (or the specification) did — labels and strings
//! exactly, numbers within 1e-4 — through every route that takes it: `/v2` with JSON data
//! and with binary data (inputs in any order), and `/score` as rows or records.

use std::path::{Path, PathBuf};

use score_service::config::Limits;
use serde_json::{Map, Value, json};

use crate::support::{Response, TestServer, post};

fn zoo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/zoo")
}

fn index(dir: &Path) -> Map<String, Value> {
    let text = std::fs::read_to_string(dir.join("index.json")).expect("the zoo's index.json");
    serde_json::from_str(&text).expect("the zoo's index is JSON")
}

/// Every value of a nested array, in order.
fn flatten(value: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter().rev()),
            other => out.push(other),
        }
    }
    out
}

/// Compares values with the expected ones: strings, booleans and integers exactly,
/// floats within 1e-4 of the magnitude (NaN matching NaN, which JSON writes as null).
fn assert_same(actual: &[&Value], expected: &[&Value], what: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: counts differ\n  {actual:?}\n  {expected:?}"
    );
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        let same = match (a, e) {
            (Value::Number(a), Value::Number(e)) if e.is_f64() || a.is_f64() => {
                let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
                (a - e).abs() <= 1e-4 * e.abs().max(1.0)
            }
            (a, e) => a == e,
        };
        assert!(
            same,
            "{what}[{index}]: {a} against {e}\n  {actual:?}\n  {expected:?}"
        );
    }
}

/// A tensor of the index as the binary tensor format lays it out.
fn binary(tensor: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for value in flatten(&tensor["data"]) {
        let float = value.as_f64().unwrap_or(f64::NAN);
        match tensor["datatype"].as_str().unwrap() {
            "FP32" => out.extend((float as f32).to_le_bytes()),
            "FP64" => out.extend(float.to_le_bytes()),
            "INT64" => out.extend(value.as_i64().unwrap().to_le_bytes()),
            "INT32" => out.extend((value.as_i64().unwrap() as i32).to_le_bytes()),
            "BOOL" => out.push(u8::from(value.as_bool().unwrap())),
            "BYTES" => {
                let text = value.as_str().unwrap().as_bytes();
                out.extend((text.len() as u32).to_le_bytes());
                out.extend(text);
            }
            other => panic!("no binary form written for {other} in this test"),
        }
    }
    out
}

/// Values of one output from the binary part of a response.
fn from_binary(datatype: &str, bytes: &[u8]) -> Vec<Value> {
    let mut values = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (value, size) = match datatype {
            "FP32" => (json!(f32::from_le_bytes(rest[..4].try_into().unwrap())), 4),
            "FP64" => (json!(f64::from_le_bytes(rest[..8].try_into().unwrap())), 8),
            "INT64" => (json!(i64::from_le_bytes(rest[..8].try_into().unwrap())), 8),
            "INT32" => (json!(i32::from_le_bytes(rest[..4].try_into().unwrap())), 4),
            "INT16" => (json!(i16::from_le_bytes(rest[..2].try_into().unwrap())), 2),
            "BOOL" => (json!(rest[0] != 0), 1),
            "BYTES" => {
                let length = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                (
                    json!(std::str::from_utf8(&rest[4..4 + length]).unwrap()),
                    4 + length,
                )
            }
            other => panic!("no binary form read for {other} in this test"),
        };
        values.push(value);
        rest = &rest[size..];
    }
    values
}

/// POSTs an inference request whose inputs are all binary, asking for binary outputs.
async fn infer_binary(server: &TestServer, name: &str, inputs: &[(&String, &Value)]) -> Response {
    let mut tensors = Vec::new();
    let mut data = Vec::new();
    for (input, tensor) in inputs {
        let bytes = binary(tensor);
        tensors.push(
            json!({"name": input, "shape": tensor["shape"], "datatype": tensor["datatype"],
            "parameters": {"binary_data_size": bytes.len()}}),
        );
        data.extend(bytes);
    }
    let header = json!({"inputs": tensors, "parameters": {"binary_data_output": true}}).to_string();
    let mut request = format!(
        "POST /v2/models/{name}/infer HTTP/1.1\r\nHost: test\r\nInference-Header-Content-Length: {}\r\nContent-Length: {}\r\n\r\n{header}",
        header.len(),
        header.len() + data.len()
    )
    .into_bytes();
    request.extend(data);
    server.send(request).await
}

/// The outputs of a binary response, by name: datatype, shape and values.
fn binary_outputs(response: &Response) -> Vec<(String, String, Value, Vec<Value>)> {
    let length: usize = response
        .header("inference-header-content-length")
        .expect("a binary answer says where its JSON ends")
        .parse()
        .unwrap();
    assert_eq!(response.header("content-type"), Some("application/octet-stream"));
    let header: Value = serde_json::from_slice(&response.body[..length]).unwrap();
    let mut rest = &response.body[length..];
    let mut outputs = Vec::new();
    for output in header["outputs"].as_array().unwrap() {
        let size = output["parameters"]["binary_data_size"]
            .as_u64()
            .expect("binary_data_size") as usize;
        let datatype = output["datatype"].as_str().unwrap().to_owned();
        outputs.push((
            output["name"].as_str().unwrap().to_owned(),
            datatype.clone(),
            output["shape"].clone(),
            from_binary(&datatype, &rest[..size]),
        ));
        rest = &rest[size..];
    }
    assert!(rest.is_empty(), "bytes beyond the outputs");
    outputs
}

/// The `/score` body for an entry's inputs: rows of the one input, or records.
fn score_body(inputs: &Map<String, Value>) -> Value {
    if let [(_, tensor)] = inputs.iter().collect::<Vec<_>>().as_slice() {
        return json!({"X": tensor["data"]});
    }
    let rows = inputs.values().next().unwrap()["shape"][0].as_u64().unwrap() as usize;
    let records: Vec<Value> = (0..rows)
        .map(|row| {
            let record: Map<String, Value> = inputs
                .iter()
                .map(|(name, tensor)| (name.clone(), flatten(&tensor["data"][row])[0].clone()))
                .collect();
            Value::Object(record)
        })
        .collect();
    json!({ "X": records })
}

/// Each row's expected score: one value, or the row's nested values.
fn rows_of(tensor: &Value) -> Vec<Value> {
    let per_row: u64 = tensor["shape"].as_array().unwrap()[1..]
        .iter()
        .map(|d| d.as_u64().unwrap())
        .product();
    tensor["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            if per_row == 1 {
                flatten(row)[0].clone()
            } else {
                row.clone()
            }
        })
        .collect()
}

/// One zoo model through every route that takes it.
async fn check_model(dir: &Path, name: &str, entry: &Value) -> &'static str {
    let path = dir.join(format!("{name}.onnx"));
    if let Some(refusal) = entry.get("refused") {
        let error = score_service::model::load(path.to_str().unwrap(), &Default::default())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains(refusal.as_str().unwrap()) && error.contains(&*path.to_string_lossy()),
            "{name}: {error}"
        );
        return "refused";
    }
    let server = TestServer::serving(path.to_str().unwrap(), Limits::default()).await;
    let inputs = entry["inputs"].as_object().expect("inputs");
    let expected = entry["outputs"].as_object().expect("outputs");
    assert!(!expected.is_empty(), "{name}: onnxruntime gave outputs");
    let metadata = server.get(&format!("/v2/models/{name}")).await.json();
    let declared: Vec<&str> = metadata["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    let mut given: Vec<&str> = inputs.keys().map(String::as_str).collect();
    given.sort();
    let mut sorted = declared.clone();
    sorted.sort();
    assert_eq!(
        given, sorted,
        "{name}: the metadata declares the inputs the exporter made"
    );

    // /v2 with JSON data, the inputs in the reverse of the declared order; data that holds
    // NaN (a missing value) goes only as binary, since JSON cannot carry it.
    let carries_nan = inputs
        .values()
        .any(|t| flatten(&t["data"]).iter().any(|v| v.is_null()));
    let reversed: Vec<(&String, &Value)> = declared
        .iter()
        .rev()
        .map(|d| inputs.get_key_value(*d).unwrap())
        .collect();
    if !carries_nan {
        let request = json!({"inputs": reversed.iter().map(|(name, t)| json!({"name": name, "shape": t["shape"], "datatype": t["datatype"], "data": t["data"]})).collect::<Vec<_>>()});
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
        for output in served {
            let output_name = output["name"].as_str().unwrap();
            let want = &expected[output_name];
            assert_eq!(output["datatype"], want["datatype"], "{name}.{output_name}");
            assert_same(
                &flatten(&output["data"]),
                &flatten(&want["data"]),
                &format!("{name} /v2 {output_name}"),
            );
        }
    }
    // /v2 with binary inputs and outputs, as Triton's client sends by default.
    let response = infer_binary(&server, name, &reversed).await;
    assert_eq!(response.status, 200, "{name}: {response:?}");
    let outputs = binary_outputs(&response);
    assert_eq!(outputs.len(), expected.len(), "{name}");
    for (output_name, datatype, shape, values) in &outputs {
        let want = &expected[output_name];
        assert_eq!(json!(datatype), want["datatype"], "{name}.{output_name}");
        let count: u64 = shape
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .product();
        assert_eq!(
            count as usize,
            values.len(),
            "{name}.{output_name}: shape {shape}"
        );
        assert_same(
            &values.iter().collect::<Vec<_>>(),
            &flatten(&want["data"]),
            &format!("{name} /v2 binary {output_name}"),
        );
    }

    // /score, where it takes the model.
    let response = server.score(&score_body(inputs).to_string()).await;
    if response.status == 404 {
        let error = response.error();
        assert!(
            error.contains("/score cannot take model") && error.contains("/v2/models/"),
            "{name}: {error}"
        );
        return "/v2 only";
    }
    assert_eq!(response.status, 200, "{name}: {response:?}");
    let answer = response.json();
    let mut outputs = declared_outputs(&metadata);
    let (first, first_tensor) = (outputs.remove(0), &expected[&declared_outputs(&metadata)[0]]);
    let rows = rows_of(first_tensor);
    assert_eq!(
        answer["score"].as_array().unwrap().len(),
        rows.len(),
        "{name}: a score per row"
    );
    assert_same(
        &flatten(&answer["score"]),
        &rows.iter().flat_map(flatten).collect::<Vec<_>>(),
        &format!("{name} /score ({first})"),
    );
    match outputs.first() {
        Some(second) if second.contains("prob") && entry["task"] == "classification" => {
            let probabilities = answer
                .get("probabilities")
                .unwrap_or_else(|| panic!("{name}: {answer}"));
            assert_same(
                &flatten(probabilities),
                &flatten(&expected[second]["data"]),
                &format!("{name} /score probabilities"),
            );
        }
        _ => assert!(answer.get("probabilities").is_none(), "{name}: {answer}"),
    }
    "/score and /v2"
}

fn declared_outputs(metadata: &Value) -> Vec<String> {
    metadata["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_zoo_model_answers_like_onnxruntime_through_every_route() {
    let index = index(&zoo_dir());
    assert!(index.len() >= 55, "the zoo has {} models", index.len());
    let mut routes = std::collections::BTreeMap::<&str, usize>::new();
    let mut v2_only = Vec::new();
    for (name, entry) in &index {
        let route = check_model(&zoo_dir(), name, entry).await;
        if route == "/v2 only" {
            v2_only.push(name.as_str());
        }
        *routes.entry(route).or_default() += 1;
    }
    // Every exporter of the issue's list is here, served.
    for exporter in [
        "skl2onnx (DataFrame)",
        "Keras 3 (tf2onnx)",
        "CatBoost",
        "onnxmltools (XGBoost)",
        "onnxmltools (LightGBM)",
    ] {
        assert!(
            index
                .values()
                .any(|e| e["exporter"] == exporter && e.get("refused").is_none()),
            "no served model from {exporter}"
        );
    }
    eprintln!("zoo: {routes:?}");
    // Every exported model that is served has rows, so /score takes it too; the
    // FeatureVectorizer's inputs are matrices side by side, which only /v2 takes.
    assert_eq!(v2_only, ["feature_vectorizer"], "{routes:?}");
    assert!(routes["/score and /v2"] >= 50, "{routes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_onnx_packages_own_ml_and_text_cases_pass() {
    let dir = zoo_dir().join("onnx-node");
    let index = index(&dir);
    let ml = index
        .keys()
        .filter(|name| name.starts_with("test_ai_onnx_ml_"))
        .count();
    assert_eq!(ml, 8, "the ai.onnx.ml node cases of onnx 1.23");
    let mut routes = std::collections::BTreeMap::<&str, usize>::new();
    for (name, entry) in &index {
        *routes.entry(check_model(&dir, name, entry).await).or_default() += 1;
    }
    eprintln!("onnx node cases: {routes:?}");
    assert_eq!(routes.values().sum::<usize>(), index.len());
    assert!(!routes.contains_key("refused"), "{routes:?}");
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
