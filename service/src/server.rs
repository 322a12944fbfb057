//! The accept loop, per-connection serving and its timeouts, and graceful drain.
//!
//! A connection is bounded three ways: at most `max_connections` are open (the rest
//! wait in the kernel's backlog until one closes); an idle keep-alive connection closes
//! after `idle_timeout`; a request whose headers started arriving must finish them
//! within `header_timeout` (answered 408), and its body within `body_timeout` (read
//! with the body, in `http.rs`).

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::app::App;
use crate::metrics::Timeout;

/// Serves `listener` until `shutdown` resolves, then drains: readiness turns 503, the
/// listener closes (new connections are refused), and requests in flight get up to the
/// drain deadline to finish. Returns whether every connection finished in time.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) -> bool {
    // Each connection holds a receiver; the sender learns when the last one is dropped.
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper starts this timer when a connection goes idle, waiting for the next
        // request's head: it is the keep-alive idle timeout. The header timeout proper,
        // from a request's first byte, is ours (see `serve_connection`).
        .header_read_timeout(app.limits().idle_timeout)
        // Answers are a few hundred bytes: copying head and body into one buffer and
        // writing once is cheaper than a writev of two tiny slices.
        .writev(false);
    let builder = Arc::new(builder);
    // A permit per open connection: at the limit, the loop stops accepting and new
    // connections wait in the listener's backlog.
    let permits = Arc::new(Semaphore::new(app.limits().max_connections.max(1)));

    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        match accepted {
            Ok((stream, permit)) => {
                let connection = serve_connection(stream, app.clone(), builder.clone(), drain_rx.clone());
                tokio::spawn(async move {
                    connection.await;
                    drop(permit);
                });
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

/// The next connection, once a permit to serve one is free.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> io::Result<(TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("the connection limit was closed"))?;
    let (stream, _peer) = listener.accept().await?;
    Ok((stream, permit))
}

/// How a connection ended, when a timeout ended it.
enum Ending {
    Finished(hyper::Result<()>),
    /// A request's headers started arriving and did not finish in time.
    HeaderTimeout,
}

async fn serve_connection(
    stream: TcpStream,
    app: Arc<App>,
    builder: Arc<http1::Builder>,
    mut drain: watch::Receiver<bool>,
) {
    let metrics = app.connection_metrics();
    let _open = metrics.opened();
    let header_timeout = app.limits().header_timeout;
    // Responses are small and written whole: send them now rather than wait for more.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let handler = Handler {
        app,
        activity: activity.clone(),
    };
    let mut connection = builder.serve_connection(io, handler);
    let mut drain_started = pin!(drain.wait_for(|draining| *draining));
    let mut draining = false;
    let mut header_deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let ending = poll_fn(|cx| {
        if !draining && drain_started.as_mut().poll(cx).is_ready() {
            // Finish the request in flight (with `Connection: close`), then stop.
            draining = true;
            Pin::new(&mut connection).graceful_shutdown();
        }
        if let Poll::Ready(result) = connection.poll_without_shutdown(cx) {
            return Poll::Ready(Ending::Finished(result));
        }
        // A request's first bytes arrived while we polled: its headers have until the
        // header timeout from then.
        match activity.head_started() {
            Some(started) => {
                let deadline = tokio::time::Instant::from_std(started + header_timeout);
                let sleep =
                    header_deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ending::HeaderTimeout);
                }
            }
            None => header_deadline = None,
        }
        Poll::Pending
    })
    .await;

    let parts = connection.into_parts();
    let mut stream = parts.io.into_inner().inner;
    match ending {
        Ending::HeaderTimeout => {
            metrics.timed_out(Timeout::Header);
            let _ = stream.write_all(&request_timeout(header_timeout)).await;
        }
        Ending::Finished(Err(err)) if err.is_timeout() && !parts.read_buf.is_empty() => {
            // hyper's own timer (the idle timeout) caught a request that had begun: a
            // JSON 408 tells the client why, where hyper would close silently.
            metrics.timed_out(Timeout::Header);
            let _ = stream.write_all(&request_timeout(header_timeout)).await;
        }
        Ending::Finished(Err(err)) if err.is_timeout() => metrics.timed_out(Timeout::Idle),
        Ending::Finished(Err(err)) => tracing::debug!(error = %err, "connection ended with an error"),
        Ending::Finished(Ok(())) => {}
    }
    let _ = stream.shutdown().await;
}

/// What a connection is doing, as the header timer needs to know: idle, reading a
/// request's head (since when), or serving a request.
#[derive(Default)]
struct Activity {
    phase: AtomicU8,
    /// When the head being read began, in nanoseconds after `EPOCH`.
    head_started: AtomicU64,
}

const IDLE: u8 = 0;
const READING_HEAD: u8 = 1;
const SERVING: u8 = 2;

/// A fixed instant the head times are counted from, so they fit an atomic.
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

impl Activity {
    fn bytes_arrived(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            let now = EPOCH.elapsed().as_nanos() as u64;
            self.head_started.store(now, Ordering::Relaxed);
            self.phase.store(READING_HEAD, Ordering::Relaxed);
        }
    }

    fn serving(&self) {
        self.phase.store(SERVING, Ordering::Relaxed);
    }

    fn answered(&self) {
        self.phase.store(IDLE, Ordering::Relaxed);
    }

    /// When the head now being read began, if one is.
    fn head_started(&self) -> Option<Instant> {
        (self.phase.load(Ordering::Relaxed) == READING_HEAD)
            .then(|| *EPOCH + Duration::from_nanos(self.head_started.load(Ordering::Relaxed)))
    }
}

/// The connection's socket, noting when a request's first bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        result
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn request_timeout(timeout: Duration) -> Vec<u8> {
    let body = format!(r#"{{"error":"the request headers did not arrive within {timeout:?}"}}"#);
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The hyper service: hands each request to the shared [`App`], noting on the
/// connection's activity that its head is complete.
struct Handler {
    app: Arc<App>,
    activity: Arc<Activity>,
}

impl Service<Request<Incoming>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.serving();
        let (app, activity) = (self.app.clone(), self.activity.clone());
        Box::pin(async move {
            let response = app.handle(request).await;
            activity.answered();
            Ok(response)
        })
    }
}
