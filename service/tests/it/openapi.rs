//! The published contract, `service/openapi.json`, served at `GET /openapi.json`, kept in
//! step with the router: every route is documented with the methods it answers, and
//! every documented operation reaches a route.

use score_service::config::Limits;
use serde_json::{Value, json};

use crate::support::{TestServer, post};

fn document() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    serde_json::from_str(&text).expect("the document is JSON")
}

/// A documented path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{model_name}", "echo")
        .replace("{model_version}", "1")
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_is_served() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12, "{} paths", paths.len());
    let server = TestServer::start().await;
    for (path, operations) in paths {
        let concrete = concrete(path);
        let route = score_service::http::Route::of(&concrete);
        assert_ne!(
            route,
            score_service::http::Route::Unmatched,
            "{path} reaches no route"
        );
        let methods: Vec<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        assert_eq!(
            methods,
            [route.allow().split(", ").next().unwrap()],
            "{path}: the documented method is the one the route answers"
        );
        let response = if methods[0] == "GET" {
            server.get(&concrete).await
        } else {
            server.send(post(&concrete, "application/json", "{}")).await
        };
        assert!(
            ![404, 405].contains(&response.status)
                || concrete.contains("/v2/models/") && response.status == 404,
            "{path}: {response:?}"
        );
        for (status, answer) in operations.as_object().unwrap().values().next().unwrap()["responses"]
            .as_object()
            .unwrap()
        {
            assert!(status.parse::<u16>().is_ok(), "{path}: response {status}");
            assert!(answer.is_object());
        }
    }
    for route in score_service::http::Route::ALL {
        if route == score_service::http::Route::Unmatched {
            continue;
        }
        let documented = paths
            .keys()
            .any(|path| score_service::http::Route::of(&concrete(path)) == route);
        assert!(documented, "{route:?} ({}) is not documented", route.label());
    }
}

#[tokio::test]
async fn the_identity_model_is_served_the_committed_document_with_its_name() {
    let server = TestServer::start().await;
    let response = server.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    let mut expected = document();
    expected["components"]["parameters"]["ModelName"]["schema"] = json!({"type": "string", "enum": ["echo"]});
    assert_eq!(response.json(), expected);
}

fn zoo(name: &str) -> String {
    format!("{}/../models/zoo/{name}.onnx", env!("CARGO_MANIFEST_DIR"))
}

async fn served_document(model: &str) -> Value {
    let server = TestServer::serving(&zoo(model), Limits::default()).await;
    server.get("/openapi.json").await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_describes_the_loaded_models_inputs_and_outputs() {
    // Rows of six float32 features: exactly six per row, each within float32's range.
    let document = served_document("logistic_multiclass").await;
    let schemas = &document["components"]["schemas"];
    let forms = &schemas["ScoreRequest"]["properties"]["X"]["oneOf"];
    let row = &forms[0];
    assert_eq!(
        (row["minItems"].as_u64(), row["maxItems"].as_u64()),
        (Some(6), Some(6)),
        "{row}"
    );
    // (serde_json's reader is within an ulp of the written value, not exact.)
    let maximum = row["items"]["maximum"].as_f64().unwrap();
    assert!((maximum / f64::from(f32::MAX) - 1.0).abs() < 1e-15, "{maximum}");
    assert_eq!(forms[1]["items"], *row, "a batch is a list of such rows");
    assert_eq!(forms[1]["maxItems"], json!(Limits::default().max_batch));
    // The answer: an int64 label per row, and three probabilities per row.
    let answer = &schemas["ScoreResponse"];
    assert_eq!(
        answer["properties"]["score"]["items"]["type"], "integer",
        "{answer}"
    );
    assert_eq!(
        answer["properties"]["probabilities"]["items"]["maxItems"], 3,
        "{answer}"
    );
    // /v2: the one input by name, its shape [-1, 6], its datatype.
    let input = &schemas["InferenceRequest"]["properties"]["inputs"]["items"]["oneOf"][0];
    assert_eq!(input["properties"]["name"]["const"], "X");
    assert_eq!(input["properties"]["shape"]["prefixItems"][1]["const"], 6);
    assert_eq!(input["properties"]["datatype"]["const"], "FP32");
    assert_eq!(
        document["components"]["parameters"]["ModelName"]["schema"]["enum"],
        json!(["logistic_multiclass"])
    );

    // A DataFrame pipeline: records with one key per input, strings where strings go,
    // numbers (or null, a missing value) where numbers go, nothing else.
    let document = served_document("dataframe_one_hot_logistic").await;
    let record = &document["components"]["schemas"]["ScoreRequest"]["properties"]["X"]["oneOf"][0];
    assert_eq!(
        record["required"],
        json!(["age", "income", "city", "plan"]),
        "{record}"
    );
    assert_eq!(record["properties"]["city"]["type"], "string");
    assert_eq!(record["properties"]["income"]["type"], json!(["number", "null"]));
    assert_eq!(record["additionalProperties"], false);

    // An image model: 28x28x1 per row, and ten probabilities per score.
    let document = served_document("keras_cnn").await;
    let schemas = &document["components"]["schemas"];
    let row = &schemas["ScoreRequest"]["properties"]["X"]["oneOf"][0];
    assert_eq!(row["maxItems"], 28, "{row}");
    assert_eq!(row["items"]["maxItems"], 28);
    assert_eq!(row["items"]["items"]["maxItems"], 1);
    assert_eq!(
        schemas["ScoreResponse"]["properties"]["score"]["items"]["maxItems"],
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_score_cannot_take_is_documented_without_score_and_answers_404_saying_why() {
    let path = format!(
        "{}/../models/zoo/onnx-node/test_ai_onnx_ml_array_feature_extractor.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    let server = TestServer::serving(&path, Limits::default()).await;
    let document = server.get("/openapi.json").await.json();
    assert!(document["paths"].get("/score").is_none(), "{}", document["paths"]);
    assert!(
        document["info"]["description"]
            .as_str()
            .unwrap()
            .contains("/v2 only")
    );
    let response = server.score(r#"{"X": [[1, 2, 3, 4]]}"#).await;
    assert_eq!(response.status, 404, "{response:?}");
    let error = response.error();
    assert!(
        error.contains("/score cannot take model \"test_ai_onnx_ml_array_feature_extractor\"")
            && error.contains("it has 2 inputs")
            && error.contains("POST /v2/models/test_ai_onnx_ml_array_feature_extractor/infer serves it"),
        "{error}"
    );
}
