//! The accept loop, per-connection serving and its timeouts, and graceful drain.
//!
//! A connection is bounded four ways: at most `max_connections` are open (at the limit,
//! the idle connection open longest is closed for a new one; with none idle, the rest
//! wait in the kernel's backlog until one closes); a new connection must send its first
//! byte within `first_byte_timeout`; an idle keep-alive connection closes after
//! `idle_timeout`; a request whose headers started arriving must finish them within
//! `header_timeout` (answered 408), and its body within `body_timeout` (read with the
//! body, in `http.rs`). The operator port (metrics, health) has an accept loop and a
//! connection limit of its own, so a flood of public connections never blinds the
//! scraper, and both drain together.

use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};

use crate::app::App;
use crate::http::Port;
use crate::metrics::Timeout;

/// Connections the operator port serves at once: scrapers and probes, a few.
const OPERATOR_CONNECTIONS: usize = 64;

/// Serves `listener` until `shutdown` resolves, then drains: readiness turns 503, the
/// listener closes (new connections are refused), and requests in flight get up to the
/// drain deadline to finish. Returns whether every connection finished in time. Every
/// route is served on this one port, `/metrics` included.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) -> bool {
    serve(listener, None, app, shutdown).await
}

/// As [`run`], with the operator's routes (`/metrics`, and health) on `operator` too, and
/// `/metrics` there only: the app must have been built [`App::with_operator_port`].
pub async fn run_with_operator_port(
    public: TcpListener,
    operator: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> bool {
    serve(public, Some(operator), app, shutdown).await
}

async fn serve(
    public: TcpListener,
    operator: Option<TcpListener>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> bool {
    // Each connection holds a receiver, never read: the sender learns from their count
    // how many are open, and when the last one is dropped.
    let (drain_tx, drain_rx) = watch::channel(());
    let (stop_tx, stop_rx) = watch::channel(false);
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
    let listeners = std::iter::once((public, Port::Public, app.limits().max_connections))
        .chain(operator.map(|listener| (listener, Port::Operator, OPERATOR_CONNECTIONS)));
    let mut registries = Vec::new();
    let loops: Vec<_> = listeners
        .map(|(listener, port, limit)| {
            let open = Arc::new(Registry::default());
            registries.push(open.clone());
            let accepting = Acceptor {
                listener,
                port,
                permits: Arc::new(Semaphore::new(limit.max(1))),
                open,
                app: app.clone(),
                builder: builder.clone(),
                counted: drain_rx.clone(),
            };
            tokio::spawn(accepting.run(stop_rx.clone()))
        })
        .collect();
    shutdown.await;
    let _ = stop_tx.send(true);
    // Each loop drops its listener as it returns: new connections are refused.
    for accepting in loops {
        let _ = accepting.await;
    }

    app.start_draining();
    drop(drain_rx);
    let open = drain_tx.receiver_count();
    tracing::info!(open_connections = open, deadline = ?app.limits().drain_deadline, "draining");
    // The accept loops have ended, so every connection there will be is in a registry.
    for registry in &registries {
        for slot in registry.lock().values() {
            slot.ask_to_close();
        }
    }
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

/// One listener's accept loop, and the connections it has open.
struct Acceptor {
    listener: TcpListener,
    port: Port,
    /// A permit per open connection.
    permits: Arc<Semaphore>,
    open: Arc<Registry>,
    app: Arc<App>,
    builder: Arc<http1::Builder>,
    /// Cloned into each connection, so the drain can count them.
    counted: watch::Receiver<()>,
}

impl Acceptor {
    /// Accepts until `stop` turns true. At the connection limit, the idle connection open
    /// longest is closed for the new one (as nginx reclaims keep-alive connections); when
    /// none is idle, the new one waits for a connection to end, and those behind it wait
    /// in the listen backlog.
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // Usually out of file descriptors: back off instead of spinning, and
                    // keep serving the connections already open.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = loop {
                if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                    break Some(permit);
                }
                if self.open.reclaim_oldest_idle() {
                    self.app.connection_metrics().reclaimed();
                }
                // A connection ending frees a permit; one going idle can be reclaimed.
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => break None,
                    permit = self.permits.clone().acquire_owned() => break permit.ok(),
                    () = self.open.idle.notified() => {}
                }
            };
            let Some(permit) = permit else { break };
            let (id, slot) = self.open.insert();
            let connection = serve_connection(
                stream,
                self.port,
                self.app.clone(),
                self.builder.clone(),
                self.counted.clone(),
                slot,
            );
            let open = self.open.clone();
            tokio::spawn(async move {
                connection.await;
                open.remove(id);
                drop(permit);
            });
        }
    }
}

/// The connections a listener has open, in the order they were accepted.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
    /// Signalled when a connection goes idle: one the limit may now reclaim.
    idle: Arc<Notify>,
}

/// What the registry holds of a connection: what it is doing, and how to ask it to close.
struct Slot {
    activity: Arc<Activity>,
    /// Asked to close once the request in flight, if any, is answered: by the drain, or
    /// reclaimed at the connection limit.
    close: AtomicBool,
    /// The connection's task, woken to see `close`. A flag and a waker the task
    /// registers as it is polled cost it two uncontended atomics a poll, where a `Notify`
    /// or a `watch` receiver shared with every connection took a lock each time.
    waker: AtomicWaker,
    reclaimed: AtomicBool,
}

impl Slot {
    fn ask_to_close(&self) {
        self.close.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Whether the connection was asked to close, its task registered to be woken when
    /// it is (registered first, so an ask between the two is not missed).
    fn poll_asked_to_close(&self, cx: &Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.close.load(Ordering::SeqCst)
    }
}

impl Registry {
    fn insert(&self) -> (u64, Arc<Slot>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            activity: Arc::new(Activity {
                went_idle: Some(self.idle.clone()),
                ..Activity::default()
            }),
            close: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            reclaimed: AtomicBool::new(false),
        });
        self.lock().insert(id, slot.clone());
        (id, slot)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the idle connection open longest to close; false when none is idle, or one
    /// asked before has not closed yet (one new connection, one reclaimed).
    fn reclaim_oldest_idle(&self) -> bool {
        let open = self.lock();
        if open.values().any(|slot| slot.reclaimed.load(Ordering::Relaxed)) {
            return false;
        }
        let oldest = open
            .values()
            .find(|slot| slot.activity.is_idle() && !slot.reclaimed.load(Ordering::Relaxed));
        match oldest {
            Some(slot) => {
                slot.reclaimed.store(true, Ordering::Relaxed);
                slot.ask_to_close();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Slot>>> {
        // A panic while the lock was held leaves the map whole: keep using it.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a connection ended, when a timeout ended it.
enum Ending {
    Finished(hyper::Result<()>),
    /// A request's headers started arriving and did not finish in time.
    HeaderTimeout,
    /// The connection sent nothing at all in time.
    FirstByteTimeout,
}

async fn serve_connection(
    stream: TcpStream,
    port: Port,
    app: Arc<App>,
    builder: Arc<http1::Builder>,
    _counted: watch::Receiver<()>,
    slot: Arc<Slot>,
) {
    let metrics = app.connection_metrics();
    let _open = metrics.opened();
    let header_timeout = app.limits().header_timeout;
    // Responses are small and written whole: send them now rather than wait for more.
    let _ = stream.set_nodelay(true);
    let activity = slot.activity.clone();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    // A closure, not a type of ours: hyper keeps the request's future in a box it makes
    // once per connection, where a `Service` of ours would have to box each request's.
    let handler = {
        let (app, activity) = (app.clone(), activity.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            activity.serving();
            let (app, activity) = (app.clone(), activity.clone());
            async move {
                let response = app.handle(request, port).await;
                activity.answered();
                Ok::<_, io::Error>(response)
            }
        })
    };
    let mut connection = builder.serve_connection(io, handler);
    let mut first_byte = pin!(tokio::time::sleep(app.limits().first_byte_timeout));
    let mut closing = false;
    // The head being timed (by its number) and its deadline.
    let mut header_deadline: Option<(u64, Pin<Box<tokio::time::Sleep>>)> = None;
    let ending = poll_fn(|cx| {
        // Draining, or reclaimed at the connection limit: finish the request in flight
        // (with `Connection: close`), if any, then stop.
        if !closing && slot.poll_asked_to_close(cx) {
            closing = true;
            Pin::new(&mut connection).graceful_shutdown();
        }
        // Polled as a future (`poll_without_shutdown` would need the request's future to
        // be Unpin, so boxed): it shuts the socket's write side only when it ends well,
        // and an error leaves the stream to us for the 408 below.
        if let Poll::Ready(result) = Pin::new(&mut connection).poll(cx) {
            return Poll::Ready(Ending::Finished(result));
        }
        if !activity.ever_read() && first_byte.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ending::FirstByteTimeout);
        }
        // A request's head is being read: it has until the header timeout from the poll
        // that first saw its bytes (this one, or one before; the clock is read only then,
        // not for every request, most of which arrive whole).
        match activity.head_being_read() {
            Some(head) => {
                let sleep = match &mut header_deadline {
                    Some((timed, sleep)) if *timed == head => sleep,
                    Some((timed, sleep)) => {
                        *timed = head;
                        sleep.as_mut().reset(tokio::time::Instant::now() + header_timeout);
                        sleep
                    }
                    None => {
                        &mut header_deadline
                            .insert((head, Box::pin(tokio::time::sleep(header_timeout))))
                            .1
                    }
                };
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
        // Nothing was asked, so nothing is answered: the socket just closes.
        Ending::FirstByteTimeout => metrics.timed_out(Timeout::FirstByte),
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
    /// How many request heads have started arriving: which one is being read.
    heads: AtomicU64,
    /// Whether any byte has arrived on the connection.
    ever_read: AtomicBool,
    /// Whether the connection has been read from at all: until then, bytes it was sent
    /// may be waiting unread, and it is not known to be idle.
    polled: AtomicBool,
    /// Told when the connection goes idle (after its first read, and after each answer).
    went_idle: Option<Arc<Notify>>,
}

const IDLE: u8 = 0;
const READING_HEAD: u8 = 1;
const SERVING: u8 = 2;

impl Activity {
    fn ever_read(&self) -> bool {
        self.ever_read.load(Ordering::Relaxed)
    }

    /// Between requests (or, read from once, before the first): a connection the limit
    /// may reclaim.
    fn is_idle(&self) -> bool {
        self.polled.load(Ordering::Relaxed) && self.phase.load(Ordering::Relaxed) == IDLE
    }

    /// The connection was read from; the first time, with nothing there, it is idle.
    fn read_polled(&self) {
        if !self.polled.swap(true, Ordering::Relaxed) && self.phase.load(Ordering::Relaxed) == IDLE {
            self.signal_idle();
        }
    }

    fn signal_idle(&self) {
        if let Some(idle) = &self.went_idle {
            idle.notify_one();
        }
    }

    fn bytes_arrived(&self) {
        self.ever_read.store(true, Ordering::Relaxed);
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.heads.fetch_add(1, Ordering::Relaxed);
            self.phase.store(READING_HEAD, Ordering::Relaxed);
        }
    }

    fn serving(&self) {
        self.phase.store(SERVING, Ordering::Relaxed);
    }

    fn answered(&self) {
        self.phase.store(IDLE, Ordering::Relaxed);
        self.signal_idle();
    }

    /// The number of the head now being read, if one is.
    fn head_being_read(&self) -> Option<u64> {
        (self.phase.load(Ordering::Relaxed) == READING_HEAD).then(|| self.heads.load(Ordering::Relaxed))
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
        self.activity.read_polled();
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
