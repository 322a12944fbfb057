//! `score-service --check`, the container health probe, against a real server.

use std::process::Command;

use crate::support::TestServer;

fn check(port: u16) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_score-service"))
        .args(["--check", "--host", "127.0.0.1", "--port", &port.to_string()])
        .output()
        .expect("run score-service --check")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_follows_readiness() {
    let server = TestServer::start().await;
    let port = server.addr.port();
    let ready = tokio::task::spawn_blocking(move || check(port)).await.unwrap();
    assert!(ready.status.success(), "{ready:?}");

    server.app.start_draining();
    let draining = tokio::task::spawn_blocking(move || check(port)).await.unwrap();
    assert!(!draining.status.success());
    assert!(
        String::from_utf8_lossy(&draining.stderr).contains("answered \"HTTP/1.1 503\""),
        "{draining:?}"
    );
}

#[test]
fn check_fails_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = check(port);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Connection refused"),
        "{output:?}"
    );
}
