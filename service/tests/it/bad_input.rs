//! Everything a client can get wrong: each answer is a 4xx with a JSON `error` that names
//! the problem, and the server goes on answering afterwards.

use std::time::Duration;

use score_service::config::Limits;
use tokio::io::AsyncWriteExt;

use crate::support::{TestServer, post, read_response};

const TEN_MB: usize = 10 * 1024 * 1024;

fn json_post(body: &str) -> Vec<u8> {
    post("/score", "application/json", body).into_bytes()
}

/// (what, raw request, expected status, text the error must contain)
fn battery() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let deep = format!(r#"{{"X": {}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    let mut invalid_utf8 = br#"{"X": [1], ""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#"": 1}"#);
    let mut invalid_utf8_request = format!(
        "POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        invalid_utf8.len()
    )
    .into_bytes();
    invalid_utf8_request.extend_from_slice(&invalid_utf8);
    // The issue's body: the bad bytes sit in a string nobody reads.
    let with_bad_value = |path: &str, before: &[u8], after: &[u8]| {
        let mut body = before.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(after);
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    };
    let invalid_utf8_value = with_bad_value("/score", br#"{"X": [1, 2], "k": ""#, br#""}"#);
    let invalid_utf8_infer = with_bad_value(
        "/v2/models/echo/infer",
        br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}], "id": ""#,
        br#""}"#,
    );
    vec![
        ("truncated JSON", json_post(r#"{"X": [1, 2]"#), 400, "not valid JSON"),
        ("empty body", json_post(""), 400, "not valid JSON"),
        ("trailing comma", json_post(r#"{"X": [1, 2],}"#), 400, "not valid JSON"),
        ("trailing garbage", json_post(r#"{"X": [1]} x"#), 400, "trailing characters"),
        ("hex number", json_post(r#"{"X": [0x10]}"#), 400, "not valid JSON"),
        ("leading zero", json_post(r#"{"X": [01]}"#), 400, "not valid JSON"),
        ("NaN literal", json_post(r#"{"X": [NaN]}"#), 400, "not valid JSON"),
        ("Infinity literal", json_post(r#"{"X": [Infinity]}"#), 400, "not valid JSON"),
        ("-Infinity literal", json_post(r#"{"X": [1, -Infinity]}"#), 400, "not valid JSON"),
        ("1e999", json_post(r#"{"X": [1e999]}"#), 400, "X[0] is 1e999, beyond the range"),
        ("-1e400 in a batch", json_post(r#"{"X": [[1], [-1e400]]}"#), 400, "X[1][0] is -1e400"),
        ("invalid UTF-8 in a key", invalid_utf8_request, 400, "the request body is not UTF-8 (the byte at offset 12 "),
        ("invalid UTF-8 in an ignored string", invalid_utf8_value, 400, "the request body is not UTF-8 (the byte at offset 20 "),
        (
            "invalid UTF-8 in a /v2 request",
            invalid_utf8_infer,
            400,
            "the request body is not UTF-8",
        ),
        ("top-level array", json_post("[1, 2]"), 400, "invalid type: sequence"),
        ("top-level number", json_post("42"), 400, "invalid type: integer"),
        ("missing X", json_post(r#"{"x": [1, 2]}"#), 400, r#"missing key "X""#),
        ("duplicate X", json_post(r#"{"X": [1], "X": [2]}"#), 400, r#"duplicate key "X""#),
        ("X is a string", json_post(r#"{"X": "1, 2"}"#), 400, "X is a string, expected a row or a list of rows"),
        ("X is a number", json_post(r#"{"X": 1}"#), 400, "X is a number, expected a row or a list of rows"),
        ("X is null", json_post(r#"{"X": null}"#), 400, "X is null"),
        ("X is an object", json_post(r#"{"X": {"a": 1}}"#), 400, "X is an object"),
        ("X is empty", json_post(r#"{"X": []}"#), 400, "X is an empty array"),
        ("empty row", json_post(r#"{"X": [[]]}"#), 400, "X[0] is an empty array"),
        ("string in a row", json_post(r#"{"X": [1, "2"]}"#), 400, "X[1] is a string, expected a number"),
        ("string in a batch", json_post(r#"{"X": [[1], ["a"]]}"#), 400, "X[1][0] is a string, expected a number"),
        ("boolean", json_post(r#"{"X": [true]}"#), 400, "X[0] is a boolean"),
        ("null in a row", json_post(r#"{"X": [1, null]}"#), 400, "X[1] is null, expected a number"),
        ("ragged rows", json_post(r#"{"X": [[1, 2], [3]]}"#), 400, "X[1] has 1 elements but X[0] has 2"),
        ("row then number", json_post(r#"{"X": [[1], 2]}"#), 400, "X[1] is a number, expected an array"),
        ("number then row", json_post(r#"{"X": [1, [2]]}"#), 400, "X[1] is an array, expected a number"),
        ("three levels", json_post(r#"{"X": [[[1]]]}"#), 400, "X[0][0] is an array, expected a number"),
        ("100k-deep nesting", json_post(&deep), 400, "X[0][0] is an array"),
        (
            "10 MB declared",
            format!("POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {TEN_MB}\r\n\r\n")
                .into_bytes(),
            413,
            "larger than the limit of 1048576 bytes",
        ),
        (
            "body shorter than declared",
            b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"X\": [1]}".to_vec(),
            408,
            "did not arrive within",
        ),
        ("GET /score", b"GET /score HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 405, "GET is not allowed on /score: use POST"),
        ("PUT /score", post("/score", "application/json", r#"{"X": [1]}"#).replacen("POST", "PUT", 1).into_bytes(), 405, "use POST"),
        ("POST /healthz", post("/healthz", "application/json", "{}").into_bytes(), 405, "use GET, HEAD"),
        ("DELETE /readyz", b"DELETE /readyz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 405, "use GET, HEAD"),
        ("unknown path", post("/predict", "application/json", r#"{"X": [1]}"#).into_bytes(), 404, "no such path"),
        ("text/plain", post("/score", "text/plain", r#"{"X": [1]}"#).into_bytes(), 415, r#"Content-Type "text/plain" is not JSON"#),
        ("form encoded", post("/score", "application/x-www-form-urlencoded", "X=1").into_bytes(), 415, "is not JSON"),
        ("JSON Lines", post("/v2/models/echo/infer", "application/jsonl", "{}").into_bytes(), 415, r#"Content-Type "application/jsonl" is not JSON"#),
        ("latin-1 to /v2", post("/v2/models/echo/infer", "application/json; charset=latin1", "{}").into_bytes(), 415, "is not UTF-8"),
        ("latin-1 charset", post("/score", "application/json; charset=iso-8859-1", r#"{"X": [1]}"#).into_bytes(), 415, "is not UTF-8"),
        ("slow headers", b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: appl".to_vec(), 408, "headers did not arrive"),
    ]
}

/// Short timeouts so the slow-client cases answer quickly.
fn impatient() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

#[tokio::test]
async fn every_bad_request_gets_a_4xx_json_error_and_the_server_carries_on() {
    let server = TestServer::with_limits(impatient()).await;
    let cases = battery();
    assert!(cases.len() >= 30, "the battery has {} cases", cases.len());
    for (what, request, status, message) in cases {
        let response = server.send(&request).await;
        assert_eq!(response.status, status, "{what}: {response:?}");
        let error = response.error();
        assert!(
            error.contains(message),
            "{what}:\n  expected error containing {message:?}\n  got {error:?}"
        );
        let after = server.score(r#"{"X": [1, 2]}"#).await;
        assert_eq!(
            (after.status, after.text()),
            (200, r#"{"score":[1,2]}"#),
            "after {what}"
        );
    }
}

/// One Content-Type policy for every JSON route: none is read as JSON (the Open Inference
/// Protocol's clients send none), a wrong one is refused on /score and /v2 alike.
#[tokio::test]
async fn every_json_route_reads_a_body_without_content_type_as_json() {
    let server = TestServer::start().await;
    let without = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let score = server.send(without("/score", r#"{"X": [1]}"#)).await;
    assert_eq!((score.status, score.text()), (200, r#"{"score":[1]}"#));
    let infer = r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}"#;
    let infer = server.send(without("/v2/models/echo/infer", infer)).await;
    assert_eq!(infer.status, 200, "{infer:?}");
    for path in ["/score", "/v2/models/echo/infer"] {
        let refused = server.send(post(path, "application/jsonl", "{}")).await;
        assert_eq!(refused.status, 415, "{path}: {refused:?}");
    }
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    let server = TestServer::start().await;
    let response = server.get("/score").await;
    assert_eq!((response.status, response.header("allow")), (405, Some("POST")));
    let response = server.send(post("/metrics", "application/json", "{}")).await;
    assert_eq!(
        (response.status, response.header("allow")),
        (405, Some("GET, HEAD"))
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_off_with_413() {
    let server = TestServer::start().await;
    let stream = server.connect().await;
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let head = "POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        writer.write_all(head.as_bytes()).await?;
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "1".repeat(64 * 1024));
        for _ in 0..(TEN_MB / (64 * 1024)) {
            // The server stops reading at the limit; a write error after that is expected.
            writer.write_all(chunk.as_bytes()).await?;
        }
        std::io::Result::Ok(())
    });
    let response = read_response(&mut reader).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert!(response.error().contains("larger than the limit"), "{response:?}");
    sender.abort();
    let after = server.score(r#"{"X": [1]}"#).await;
    assert_eq!(after.status, 200);
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let server = TestServer::with_limits(Limits {
        body_limit: 16,
        ..Limits::default()
    })
    .await;
    assert_eq!(server.score(r#"{"X": [1, 2]}"#).await.status, 200);
    let response = server.score(r#"{"X": [1, 2, 3, 4, 5, 6]}"#).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert!(response.error().contains("limit of 16 bytes"), "{response:?}");
}
