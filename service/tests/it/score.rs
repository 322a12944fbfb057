use serde_json::json;

use crate::support::{TestServer, post};

#[tokio::test]
async fn the_tutorial_request() {
    let server = TestServer::start().await;
    let response = server.score(r#"{"X": [1, 2]}"#).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), r#"{"score":[1,2]}"#);
}

#[tokio::test]
async fn batches_echo_every_row() {
    let server = TestServer::start().await;
    let response = server.score(r#"{"X": [[1, 2], [3, 4], [5.5, -6]]}"#).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({"score": [[1, 2], [3, 4], [5.5, -6]]}));
}

#[tokio::test]
async fn numbers_keep_their_exact_spelling() {
    let server = TestServer::start().await;
    let body = r#"{"X": [0.1, 12345678901234567890, 1e-7, -0.0, 1.0E+2, 3.141592653589793238462643], "extra": {"ignored": ["yes"]}}"#;
    let response = server.score(body).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.text(),
        r#"{"score":[0.1,12345678901234567890,1e-7,-0.0,1.0E+2,3.141592653589793238462643]}"#
    );
}

#[tokio::test]
async fn charset_and_case_variants_of_json_are_accepted() {
    let server = TestServer::start().await;
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json;charset=\"UTF-8\"",
    ] {
        let response = server.send(post("/score", content_type, r#"{"X": [1]}"#)).await;
        assert_eq!(response.status, 200, "{content_type}: {response:?}");
    }
}

#[tokio::test]
async fn chunked_bodies_within_the_limit_are_read() {
    let server = TestServer::start().await;
    let request = "POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{\"X\": \r\n7\r\n[1, 2]}\r\n0\r\n\r\n";
    let response = server.send(request).await;
    assert_eq!((response.status, response.text()), (200, r#"{"score":[1,2]}"#));
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let server = TestServer::start().await;
    let mut stream = server.connect().await;
    for i in 0..5 {
        let body = format!(r#"{{"X": [{i}]}}"#);
        tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            post("/score", "application/json", &body).as_bytes(),
        )
        .await
        .unwrap();
        let response = crate::support::read_response(&mut stream).await;
        assert_eq!(response.text(), format!(r#"{{"score":[{i}]}}"#));
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let live = server.get("/healthz").await;
    assert_eq!((live.status, live.json()), (200, json!({"status": "live"})));
    let ready = server.get("/readyz").await;
    assert_eq!((ready.status, ready.json()), (200, json!({"status": "ready"})));

    server.app.start_draining();
    let draining = server.get("/readyz").await;
    assert_eq!(draining.status, 503, "{draining:?}");
    assert!(draining.error().contains("draining"), "{draining:?}");
    let still_live = server.get("/healthz").await;
    assert_eq!(still_live.status, 200);
}
