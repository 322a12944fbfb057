//! The accept loop, per-connection serving, and graceful drain.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::app::App;

/// Serves `listener` until `shutdown` resolves, then drains: readiness turns 503, the
/// listener closes (new connections are refused), and requests in flight get up to the
/// drain deadline to finish. Returns whether every connection finished in time.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) -> bool {
    // Each connection holds a receiver; the sender learns when the last one is dropped.
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.limits().header_timeout)
        // Answers are a few hundred bytes: copying head and body into one buffer and
        // writing once is cheaper than a writev of two tiny slices.
        .writev(false);
    let builder = Arc::new(builder);

    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let connection = serve_connection(stream, app.clone(), builder.clone(), drain_rx.clone());
                tokio::spawn(connection);
            }
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning, and keep
                // serving the connections already open.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    app.start_draining();
    drop(listener);
    drop(drain_rx);
    let open = drain_tx.receiver_count();
    tracing::info!(open_connections = open, deadline = ?app.limits().drain_deadline, "draining");
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(app.limits().drain_deadline, drain_tx.closed())
        .await
        .is_ok();
    if !drained {
        tracing::warn!(
            still_open = drain_tx.receiver_count(),
            "drain deadline passed; the connections still open end when the process exits"
        );
    }
    drained
}

async fn serve_connection(
    stream: TcpStream,
    app: Arc<App>,
    builder: Arc<http1::Builder>,
    mut drain: watch::Receiver<bool>,
) {
    // Responses are small and written whole: send them now rather than wait for more.
    let _ = stream.set_nodelay(true);
    let mut connection = builder.serve_connection(TokioIo::new(stream), Handler(app));
    let mut drain_started = pin!(drain.wait_for(|draining| *draining));
    let mut draining = false;
    let result = poll_fn(|cx| {
        if !draining && drain_started.as_mut().poll(cx).is_ready() {
            // Finish the request in flight (with `Connection: close`), then stop.
            draining = true;
            Pin::new(&mut connection).graceful_shutdown();
        }
        connection.poll_without_shutdown(cx)
    })
    .await;

    let parts = connection.into_parts();
    let mut stream = parts.io.into_inner();
    match result {
        Err(err) if err.is_timeout() && !parts.read_buf.is_empty() => {
            // The client started a request but its headers did not arrive in time. hyper
            // would close silently; a JSON 408 tells the client why.
            let timeout = parts.service.0.limits().header_timeout;
            let _ = stream.write_all(&request_timeout(timeout)).await;
        }
        Err(err) => tracing::debug!(error = %err, "connection ended with an error"),
        Ok(()) => {}
    }
    let _ = stream.shutdown().await;
}

fn request_timeout(timeout: Duration) -> Vec<u8> {
    let body = format!(r#"{{"error":"the request headers did not arrive within {timeout:?}"}}"#);
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The hyper service: hands each request to the shared [`App`].
struct Handler(Arc<App>);

impl Service<Request<Incoming>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let app = self.0.clone();
        Box::pin(async move { Ok(app.handle(request).await) })
    }
}
