//! Requests to models of several named inputs, strings and integers, over both routes:
//! what is accepted (any order, datatypes converted where no value changes, records with
//! missing values) and what is refused, always as the client's 4xx naming the input.

use score_service::config::Limits;
use serde_json::{Value, json};

use crate::support::{Response, TestServer, post};

fn zoo(name: &str) -> String {
    format!("{}/../models/zoo/{name}.onnx", env!("CARGO_MANIFEST_DIR"))
}

async fn infer(server: &TestServer, model: &str, request: &Value) -> Response {
    server
        .send(post(
            &format!("/v2/models/{model}/infer"),
            "application/json",
            &request.to_string(),
        ))
        .await
}

/// A raw request with binary data after `header` (JSON), the header length as given.
async fn infer_binary(
    server: &TestServer,
    model: &str,
    header: &Value,
    binary: &[u8],
    length: &str,
) -> Response {
    let header = header.to_string();
    let mut request = format!(
        "POST /v2/models/{model}/infer HTTP/1.1\r\nHost: t\r\nInference-Header-Content-Length: {length}\r\nContent-Length: {}\r\n\r\n{header}",
        header.len() + binary.len()
    )
    .into_bytes();
    request.extend_from_slice(binary);
    server.send(request).await
}

fn frame_inputs() -> Vec<Value> {
    vec![
        json!({"name": "plan", "shape": [2, 1], "datatype": "BYTES", "data": [["pro"], ["basic"]]}),
        json!({"name": "city", "shape": [2, 1], "datatype": "BYTES", "data": ["paris", "nice"]}),
        json!({"name": "income", "shape": [2, 1], "datatype": "FP64", "data": [51.5, 40]}),
        json!({"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [31, 60]}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataframe_model_takes_named_inputs_in_any_order_and_records_alike() {
    let model = "dataframe_one_hot_logistic";
    let server = TestServer::serving(&zoo(model), Limits::default()).await;
    // Inputs in another order than declared; INT64 and FP64 values a float32 holds exactly.
    let response = infer(&server, model, &json!({"inputs": frame_inputs(), "id": "a"})).await;
    assert_eq!(response.status, 200, "{response:?}");
    let answer = response.json();
    assert_eq!(answer["id"], "a");
    let labels = answer["outputs"][0]["data"].clone();
    // The same rows as records, one key per input, as pandas writes them.
    let records = json!({"X": [
        {"age": 31, "income": 51.5, "city": "paris", "plan": "pro"},
        {"plan": "basic", "city": "nice", "income": 40, "age": 60.0},
    ]});
    let response = server.score(&records.to_string()).await;
    assert_eq!(response.status, 200, "{response:?}");
    let scored = response.json();
    assert_eq!(scored["score"], labels, "/score and /v2 agree");
    assert_eq!(scored["probabilities"].as_array().unwrap().len(), 2);
    // A missing income (null, as pandas writes NaN) is the imputer's to fill.
    let missing = json!({"X": {"age": 31, "income": null, "city": "paris", "plan": "pro"}});
    let response = server.score(&missing.to_string()).await;
    assert_eq!(response.status, 200, "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tensor_requests_are_the_clients_4xx_naming_the_input() {
    let model = "dataframe_one_hot_logistic";
    let server = TestServer::serving(&zoo(model), Limits::default()).await;
    let with = |edit: &dyn Fn(&mut Vec<Value>)| {
        let mut inputs = frame_inputs();
        edit(&mut inputs);
        json!({"inputs": inputs})
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing input",
            with(&|i| {
                i.remove(0);
            }),
            "input \"plan\" is missing: model \"dataframe_one_hot_logistic\" takes it",
        ),
        (
            "extra input",
            with(&|i| i.push(json!({"name": "zip", "shape": [2, 1], "datatype": "INT64", "data": [1, 2]}))),
            "unknown input \"zip\": model \"dataframe_one_hot_logistic\" takes \"age\", \"income\", \"city\", \"plan\"",
        ),
        (
            "input twice",
            with(&|i| {
                let again = i[1].clone();
                i.push(again);
            }),
            "input \"city\" is given twice",
        ),
        (
            "strings where numbers go",
            with(&|i| {
                i[3] = json!({"name": "age", "shape": [2, 1], "datatype": "INT64", "data": ["31", "60"]})
            }),
            "input \"age\" data[0] is a string, expected an integer",
        ),
        (
            "numbers where strings go",
            with(&|i| i[1] = json!({"name": "city", "shape": [2, 1], "datatype": "BYTES", "data": [1, 2]})),
            "input \"city\" data[0] is a number, expected a string",
        ),
        (
            "a value the type cannot hold",
            with(&|i| i[2]["data"] = json!([51.5, 0.1])),
            "input \"income\": element 1 (0.1) would change from FP64 to FP32",
        ),
        (
            "a shape against the declared one",
            with(&|i| i[3] = json!({"name": "age", "shape": [1, 2], "datatype": "INT64", "data": [31, 60]})),
            "input \"age\" has shape [1, 2], but model \"dataframe_one_hot_logistic\" takes [-1, 1]",
        ),
        (
            "a shape against its data",
            with(&|i| i[3]["shape"] = json!([3, 1])),
            "input \"age\" has shape [3, 1], but its data is shaped [2]",
        ),
        (
            "an unknown datatype",
            with(&|i| i[3]["datatype"] = json!("INT128")),
            "datatype \"INT128\", which is not one of the protocol's",
        ),
        (
            "a zero dimension",
            with(&|i| i[3]["shape"] = json!([0, 1])),
            "every dimension must be at least 1",
        ),
        (
            "no data",
            with(&|i| {
                i[3].as_object_mut().unwrap().remove("data");
            }),
            "input \"age\" has no data",
        ),
    ];
    for (what, request, message) in cases {
        let response = infer(&server, model, &request).await;
        assert_eq!(response.status, 400, "{what}: {response:?}");
        let error = response.error();
        assert!(
            error.contains(message),
            "{what}:\n  expected {message:?}\n  got {error:?}"
        );
    }
    let unknown_output = json!({"inputs": frame_inputs(), "outputs": [{"name": "logits"}]});
    let response = infer(&server, model, &unknown_output).await;
    assert_eq!(response.status, 400);
    assert!(response.error().contains("unknown output \"logits\": model \"dataframe_one_hot_logistic\" gives output_label, output_probability"), "{response:?}");

    // Records: a key missing, a key the model does not take, a string for a number.
    for (body, message) in [
        (
            json!({"X": [{"age": 31, "income": 1, "city": "paris"}]}),
            "X[0] has no \"plan\": every record names every input",
        ),
        (
            json!({"X": [{"age": 31, "income": 1, "city": "paris", "plan": "pro", "zip": 1}]}),
            "X[0] has \"zip\", which is not an input of the model",
        ),
        (
            json!({"X": [{"age": "old", "income": 1, "city": "paris", "plan": "pro"}]}),
            "X[0].age is a string, expected a number",
        ),
        (
            json!({"X": [{"age": 31, "income": 1, "city": null, "plan": "pro"}]}),
            "X[0].city is null, expected a string",
        ),
        (
            json!({"X": [[31, 1, "paris", "pro"]]}),
            "this model takes records",
        ),
        (json!({"X": []}), "X is an empty list, expected records"),
    ] {
        let response = server.score(&body.to_string()).await;
        assert_eq!(response.status, 400, "{body}: {response:?}");
        let error = response.error();
        assert!(
            error.contains(message),
            "{body}:\n  expected {message:?}\n  got {error:?}"
        );
    }
    let duplicate = r#"{"X": [{"age": 31, "age": 32, "income": 1, "city": "paris", "plan": "pro"}]}"#;
    let response = server.score(duplicate).await;
    assert_eq!(response.status, 400);
    assert!(response.error().contains("duplicate key \"age\""), "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_data_that_lies_about_its_lengths_is_refused() {
    let model = "dataframe_one_hot_logistic";
    let server = TestServer::serving(&zoo(model), Limits::default()).await;
    let strings = |values: &[&[u8]]| {
        let mut out = Vec::new();
        for value in values {
            out.extend((value.len() as u32).to_le_bytes());
            out.extend(*value);
        }
        out
    };
    let header = |city_size: usize| {
        json!({"inputs": [
            {"name": "age", "shape": [1, 1], "datatype": "INT64", "data": [31]},
            {"name": "income", "shape": [1, 1], "datatype": "FP32", "data": [1]},
            {"name": "plan", "shape": [1, 1], "datatype": "BYTES", "data": ["pro"]},
            {"name": "city", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": city_size}},
        ]})
    };
    let paris = strings(&[b"paris"]);
    // The honest request first.
    let honest = header(paris.len());
    let length = honest.to_string().len().to_string();
    let response = infer_binary(&server, model, &honest, &paris, &length).await;
    assert_eq!(response.status, 200, "{response:?}");
    /// What is wrong, the JSON part, the binary part, the header's value if not the
    /// JSON's length, and the error.
    type Case<'a> = (&'a str, Value, Vec<u8>, Option<String>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "a header length past the body",
            header(paris.len()),
            paris.clone(),
            Some("99999".into()),
            "Inference-Header-Content-Length is \"99999\"",
        ),
        (
            "a header length that is not a number",
            header(paris.len()),
            paris.clone(),
            Some("ten".into()),
            "Inference-Header-Content-Length is \"ten\"",
        ),
        (
            "a size past the binary data",
            header(64),
            paris.clone(),
            None,
            "claims 64 bytes (binary_data_size), but 9 are left",
        ),
        (
            "bytes beyond every input",
            header(paris.len()),
            [paris.clone(), vec![0; 3]].concat(),
            None,
            "holds 3 bytes beyond what the inputs' binary_data_size parameters claim",
        ),
        (
            "a string length past its data",
            header(paris.len()),
            [10u32.to_le_bytes().to_vec(), b"paris".to_vec()].concat(),
            None,
            "element 0 claims 10 bytes, but 5 are left",
        ),
        (
            "invalid UTF-8 in BYTES",
            header(9),
            strings(&[b"pa\xffis"]),
            None,
            "element 0 is not UTF-8",
        ),
    ];
    for (what, header, binary, length, message) in cases {
        let length = length.unwrap_or_else(|| header.to_string().len().to_string());
        let response = infer_binary(&server, model, &header, &binary, &length).await;
        assert_eq!(response.status, 400, "{what}: {response:?}");
        let error = response.error();
        assert!(
            error.contains(message),
            "{what}:\n  expected {message:?}\n  got {error:?}"
        );
    }
    // Only the JSON part must be UTF-8: binary data is bytes.
    let floats = json!({"inputs": [
        {"name": "age", "shape": [1, 1], "datatype": "INT64", "data": [31]},
        {"name": "income", "shape": [1, 1], "datatype": "FP32", "parameters": {"binary_data_size": 4}},
        {"name": "plan", "shape": [1, 1], "datatype": "BYTES", "data": ["pro"]},
        {"name": "city", "shape": [1, 1], "datatype": "BYTES", "data": ["nice"]},
    ]});
    let not_utf8 = f32::from_le_bytes([0xff, 0xfe, 0x00, 0x42]);
    assert!(not_utf8.is_finite());
    let length = floats.to_string().len().to_string();
    let response = infer_binary(&server, model, &floats, &[0xff, 0xfe, 0x00, 0x42], &length).await;
    assert_eq!(response.status, 200, "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_token_ids_and_images_go_through_score_as_nested_rows() {
    // An embedding over int32 token ids: integers in, JSON's 7 as INT32; a fraction refused.
    let server = TestServer::serving(&zoo("keras_embedding"), Limits::default()).await;
    let ids: Vec<i64> = (0..12).collect();
    let response = server.score(&json!({"X": [ids, ids]}).to_string()).await;
    assert_eq!(response.status, 200, "{response:?}");
    let scores = response.json()["score"].clone();
    assert_eq!(scores.as_array().unwrap().len(), 2, "{scores}");
    assert_eq!(
        scores[0].as_array().unwrap().len(),
        2,
        "a softmax's two values per row: {scores}"
    );
    let response = server.score(&json!({"X": ids}).to_string()).await;
    assert_eq!(
        (response.status, response.json()["score"][0].clone()),
        (200, scores[0].clone()),
        "a lone row"
    );
    let response = server
        .score(r#"{"X": [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1.5]]}"#)
        .await;
    assert_eq!(response.status, 400);
    assert!(
        response
            .error()
            .contains("X[0][11] is 1.5, not an integer (INT32)"),
        "{response:?}"
    );
    let response = server.score(r#"{"X": [[0, 1, 2]]}"#).await;
    assert_eq!(response.status, 400);
    assert!(
        response
            .error()
            .contains("X holds rows of shape [3], but model \"keras_embedding\" takes rows of shape [12]"),
        "{response:?}"
    );

    // A CNN over 28x28x1 images: each row nested three deep.
    let server = TestServer::serving(&zoo("keras_cnn"), Limits::default()).await;
    let image = vec![vec![vec![0.5f32]; 28]; 28];
    let response = server
        .score(&json!({"X": [image.clone(), image.clone()]}).to_string())
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["score"][0].as_array().unwrap().len(), 10);
    let response = server
        .score(&json!({"X": [[image[0].clone()]]}).to_string())
        .await;
    assert_eq!(response.status, 400);
    assert!(
        response.error().contains("takes rows of shape [28, 28, 1]"),
        "{response:?}"
    );
    let response = server.score(r#"{"X": [1, 2]}"#).await;
    assert_eq!(response.status, 400);
    assert!(
        response
            .error()
            .contains("X is nested 1 deep; the model takes rows of shape [28, 28, 1]"),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_ids_outside_the_vocabulary_are_the_clients_400() {
    // The embedding's table has 100 rows. Keras's take adds 100 to a negative id and ONNX's
    // Gather counts what is still negative from the end, so ids -200..100 index it; anything
    // else would have aborted the process inside tract.
    let server = TestServer::serving(&zoo("keras_embedding"), Limits::default()).await;
    let row = |last: &str| format!(r#"{{"X": [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, {last}]]}}"#);
    for edge in ["99", "-1", "-200"] {
        let response = server.score(&row(edge)).await;
        assert_eq!(response.status, 200, "{edge}: {response:?}");
    }
    for beyond in ["100", "100000", "-201"] {
        let response = server.score(&row(beyond)).await;
        assert_eq!(response.status, 400, "{beyond}: {response:?}");
        assert!(
            response
                .error()
                .contains("is outside the 100 entries of its table"),
            "{beyond}: {response:?}"
        );
    }
    // Past i64 (and INT32): refused as a value the type cannot hold, not saturated.
    let response = server.score(&row("9.223372036854775808e18")).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert!(
        response
            .error()
            .contains("beyond the range of the input's integer type (INT32)"),
        "{response:?}"
    );
    // The server still answers: the refusal did not take the process down.
    assert_eq!(server.score(&row("7")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_that_disagree_on_the_batch_are_refused() {
    let model = "dataframe_one_hot_logistic";
    let server = TestServer::serving(&zoo(model), Limits::default()).await;
    let mut inputs = frame_inputs();
    inputs[3] = json!({"name": "age", "shape": [1, 1], "datatype": "INT64", "data": [31]});
    let response = infer(&server, model, &json!({"inputs": inputs})).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert!(
        response.error().contains(
            "input \"age\" has 1 rows but input \"income\" has 2: the inputs' first dimension is one batch"
        ),
        "{response:?}"
    );
}
