//! Graceful shutdown: requests already being sent complete, nothing new gets in.

use std::io::ErrorKind;
use std::time::Duration;

use score_service::config::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{PATIENCE, TestServer, is_closed, read_response};

const BODY: &str = r#"{"X": [[1, 2], [3, 4]]}"#;

/// Opens `count` connections, each with its headers and half its body sent.
async fn start_slow_requests(server: &TestServer, count: usize) -> Vec<TcpStream> {
    let head = format!(
        "POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    );
    let mut streams = Vec::new();
    for _ in 0..count {
        let mut stream = server.connect().await;
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
            .write_all(&BODY.as_bytes()[..BODY.len() / 2])
            .await
            .unwrap();
        streams.push(stream);
    }
    streams
}

/// Waits until the server reports `count` requests in flight (besides the asking one).
async fn wait_for_in_flight(server: &TestServer, count: usize) {
    let wanted = format!("http_requests_in_flight {}", count + 1);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = server.get("/metrics").await;
        if metrics.text().lines().any(|line| line == wanted) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw {wanted:?} in:\n{}",
            metrics.text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until connecting fails with "connection refused".
async fn wait_until_refused(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(server.addr).await {
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => return,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still accepting: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_complete_while_new_connections_are_refused() {
    let mut server = TestServer::start().await;
    let idle = server.connect().await;
    let mut slow = start_slow_requests(&server, 8).await;
    wait_for_in_flight(&server, 8).await;

    server.trigger_shutdown();
    wait_until_refused(&server).await;
    assert!(
        !server.app.is_ready(),
        "readiness (what /readyz reports) must be off while draining"
    );

    for stream in &mut slow {
        stream
            .write_all(&BODY.as_bytes()[BODY.len() / 2..])
            .await
            .unwrap();
        let response = read_response(stream).await;
        assert_eq!(
            (response.status, response.text()),
            (200, r#"{"score":[[1,2],[3,4]]}"#)
        );
        assert_eq!(
            response.header("connection"),
            Some("close"),
            "drain ends keep-alive"
        );
        assert!(
            is_closed(stream).await,
            "the connection closes after its last response"
        );
    }
    let mut idle = idle;
    assert!(is_closed(&mut idle).await, "idle connections are closed at once");
    assert!(
        server.finished().await,
        "every connection drained before the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_bounds_a_request_that_never_finishes() {
    let limits = Limits {
        drain_deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let mut server = TestServer::with_limits(limits).await;
    let _stuck = start_slow_requests(&server, 1).await;
    wait_for_in_flight(&server, 1).await;
    server.trigger_shutdown();
    assert!(
        !server.finished().await,
        "run reports that a connection was cut off"
    );
}
