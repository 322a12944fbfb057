//! The container the Docker tests run: a static binary with no dependencies, built by the
//! tests with `rustc` and packaged `FROM scratch`. It answers HTTP on port 5000 (`/readyz`
//! and `/healthz` say ok; `/` names the pod), and with `CRASH=<code>` in its environment
//! it says so on stdout and stderr and exits with that code, for crash-loop tests.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn answer(mut stream: TcpStream, hostname: &str) {
    let mut request_line = String::new();
    if BufReader::new(&stream).read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let body = match path {
        "/readyz" | "/healthz" => "ok\n".to_string(),
        _ => format!("hello from {hostname}\n"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn main() {
    let hostname = std::env::var("HOSTNAME").unwrap_or_default();
    if let Ok(code) = std::env::var("CRASH") {
        println!("testapp on {hostname}: crashing on purpose with exit code {code}");
        eprintln!("testapp: CRASH={code} is set");
        std::process::exit(code.parse().unwrap_or(1));
    }
    let listener = TcpListener::bind("0.0.0.0:5000").expect("bind port 5000");
    println!("testapp on {hostname}: listening on :5000");
    for stream in listener.incoming().flatten() {
        let hostname = hostname.clone();
        std::thread::spawn(move || answer(stream, &hostname));
    }
}
