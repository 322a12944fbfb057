//! Connections a client holds open cost the server nothing it cannot bound: thousands of
//! idle and slow connections are held while ordinary requests are answered, and the
//! timeouts release them all; past the connection limit, new ones wait their turn.

use std::time::{Duration, Instant};

use score_service::config::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{PATIENCE, TestServer, is_closed, post, read_response};

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_and_slow_connections_are_held_then_released_by_the_timeouts() {
    let limits = Limits {
        idle_timeout: Duration::from_secs(3),
        header_timeout: Duration::from_secs(3),
        body_timeout: Duration::from_secs(3),
        max_connections: 4000,
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(server.connect().await);
    }
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = server.connect().await;
        // Headers complete, a body promised and never sent in full.
        stream
            .write_all(b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"X\"")
            .await
            .unwrap();
        slow.push(stream);
    }
    let held = Instant::now();
    // Ordinary requests are answered all the while.
    for i in 0..50 {
        let response = server.score(&format!(r#"{{"X": [{i}]}}"#)).await;
        assert_eq!(response.status, 200, "{response:?}");
    }
    let metrics = server.get("/metrics").await.text().to_owned();
    assert!(
        metric(&metrics, "connections_open") >= 2200.0,
        "every held connection is open while the requests are answered:\n{metrics}"
    );
    assert!(
        held.elapsed() < Duration::from_secs(3),
        "answered before the timeouts"
    );

    // Then the timeouts release every one: idle ones closed, slow ones answered 408.
    for stream in &mut idle {
        assert!(is_closed(stream).await, "an idle connection stays open");
    }
    for stream in &mut slow {
        let response = read_response(stream).await;
        assert_eq!(response.status, 408, "{response:?}");
        assert!(response.error().contains("did not arrive within"), "{response:?}");
    }
    let metrics = server.get("/metrics").await.text().to_owned();
    assert!(metric(&metrics, "connections_open") <= 1.0, "{metrics}");
    assert!(
        metrics.contains(r#"connection_timeouts_total{phase="idle"} 2000"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"http_requests_total{route="/score",status="408"} 200"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn past_the_connection_limit_a_connection_waits_until_one_closes() {
    let limits = Limits {
        max_connections: 3,
        idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.connect().await);
    }
    // The kernel accepts the fourth into the backlog; the server does not serve it...
    let mut waiting = TcpStream::connect(server.addr).await.unwrap();
    waiting
        .write_all(post("/score", "application/json", r#"{"X": [7]}"#).as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.peek(&mut first)).await;
    assert!(early.is_err(), "answered while three connections were open");
    // ...until the held ones time out, and then it is answered.
    let response = read_response(&mut waiting).await;
    assert_eq!((response.status, response.text()), (200, r#"{"score":[7]}"#));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < PATIENCE);
    for stream in &mut held {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.unwrap_or(0),
            0,
            "closed by the idle timeout"
        );
    }
}
