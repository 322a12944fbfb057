use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use score_service::config::Limits;
use score_service::{App, model};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every network wait in these tests is bounded by this, so a hang fails instead of stalling.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    /// The operator port (metrics, health), when the server has one of its own.
    pub operator: Option<SocketAddr>,
    pub app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<bool>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_limits(Limits::default()).await
    }

    pub async fn with_limits(limits: Limits) -> Self {
        Self::serving("identity", limits).await
    }

    /// A server for `model`: "identity" or a path to an .onnx file.
    pub async fn serving(model: &str, limits: Limits) -> Self {
        Self::with_model(model::load(model, &Default::default()).unwrap(), limits).await
    }

    /// A server for a model the test made.
    pub async fn with_model(model: Box<dyn model::Model>, limits: Limits) -> Self {
        Self::with_app(App::new(model, limits).unwrap()).await
    }

    /// A server for an app the test built.
    pub async fn with_app(app: App) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(app);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(score_service::run(listener, app.clone(), async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            operator: None,
            app,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The identity model, with `/metrics` (and health) on an operator port of its own,
    /// as the binary serves by default.
    pub async fn with_operator_port() -> Self {
        let bind = || TcpListener::bind("127.0.0.1:0");
        let (public, operator) = (bind().await.unwrap(), bind().await.unwrap());
        let (addr, operator_addr) = (public.local_addr().unwrap(), operator.local_addr().unwrap());
        let model = model::load("identity", &Default::default()).unwrap();
        let app = Arc::new(App::new(model, Limits::default()).unwrap().with_operator_port());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(score_service::run_with_operator_port(
            public,
            operator,
            app.clone(),
            async {
                let _ = rx.await;
            },
        ));
        TestServer {
            addr,
            operator: Some(operator_addr),
            app,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// GETs `path` on the operator port.
    pub async fn get_operator(&self, path: &str) -> Response {
        let mut stream = TcpStream::connect(self.operator.expect("an operator port"))
            .await
            .expect("connect to the operator port");
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        read_response(&mut stream).await
    }

    /// Starts the drain, as SIGTERM would.
    pub fn trigger_shutdown(&mut self) {
        self.shutdown
            .take()
            .expect("shutdown triggered once")
            .send(())
            .unwrap();
    }

    /// Waits for `run` to return; true when every connection drained in time.
    pub async fn finished(&mut self) -> bool {
        let task = self.task.take().expect("awaited once");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("server stops in time")
            .unwrap()
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr)
            .await
            .expect("connect to the test server")
    }

    /// Sends raw bytes on a new connection and reads one response.
    pub async fn send(&self, raw: impl AsRef<[u8]>) -> Response {
        let mut stream = self.connect().await;
        stream.write_all(raw.as_ref()).await.expect("send the request");
        read_response(&mut stream).await
    }

    /// POSTs `body` to /score as JSON.
    pub async fn score(&self, body: &str) -> Response {
        self.send(post("/score", "application/json", body)).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
            .await
    }
}

pub fn post(path: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "response: {self:?}"
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {:?}", self.text()))
    }

    /// The `error` string of a JSON error answer.
    pub fn error(&self) -> String {
        let json = self.json();
        json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" string in {json}"))
            .to_owned()
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body (the only kind the server sends).
pub async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> Response {
    tokio::time::timeout(PATIENCE, read_response_unbounded(stream))
        .await
        .expect("a response arrives in time")
}

async fn read_response_unbounded(stream: &mut (impl AsyncRead + Unpin)) -> Response {
    let mut buf = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = parsed.parse(&buf).expect("a valid HTTP response") {
            let status = parsed.code.unwrap();
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            while buf.len() < head_len + length {
                read_more(stream, &mut buf).await;
            }
            let body = buf[head_len..head_len + length].to_vec();
            return Response {
                status,
                headers,
                body,
            };
        }
        read_more(stream, &mut buf).await;
    }
}

async fn read_more(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.expect("read from the server");
    assert!(
        n > 0,
        "the server closed the connection; got so far: {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

/// True once the peer has closed: a read returns end-of-file or a reset.
pub async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

pub fn floats(value: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter().rev()),
            Value::Number(n) => out.push(n.as_f64().unwrap()),
            other => panic!("not a number: {other}"),
        }
    }
    out
}

/// Equal within 1e-5, relative to the magnitude (regression outputs are in the tens).
pub fn assert_close(actual: &Value, expected: &Value, what: &str) {
    let (actual, expected) = (floats(actual), floats(expected));
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: lengths differ\n  actual {actual:?}\n  expected {expected:?}"
    );
    for (a, e) in actual.iter().zip(&expected) {
        assert!(
            (a - e).abs() <= 1e-5 * e.abs().max(1.0),
            "{what}: {a} vs onnxruntime's {e}\n  actual {actual:?}\n  expected {expected:?}"
        );
    }
}

/// Runs a client program (a Python tool from the venv) off the test's runtime, so the
/// server it talks to keeps being served; returns whether it succeeded, and its stdout
/// then stderr.
pub async fn run_client(mut command: std::process::Command) -> (bool, String) {
    let output = tokio::task::spawn_blocking(move || command.output().expect("the client starts"))
        .await
        .expect("the client's thread finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}
