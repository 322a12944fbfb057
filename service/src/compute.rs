//! The compute pool: model inference runs on a few OS threads, never on the async
//! workers, so `/healthz`, `/readyz` and `/metrics` answer at once however long a batch
//! takes. The queue in front of the threads is bounded: when it is full a request is
//! refused at once (503 with `Retry-After`) instead of waiting without bound.

use std::fmt;
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

type Job = Box<dyn FnOnce() + Send>;

/// How the pool reports itself in /metrics.
#[derive(Clone, Default)]
pub struct PoolMetrics {
    /// Jobs accepted and not yet started.
    pub queued: Gauge,
    /// Jobs running now.
    pub running: Gauge,
    /// Jobs refused because the queue was full.
    pub rejected: Counter,
}

/// A handle on the pool: clones share its threads and queue.
#[derive(Clone)]
pub struct ComputePool {
    queue: mpsc::SyncSender<Job>,
    metrics: PoolMetrics,
}

/// Why a job did not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The queue is full: a moment's overload, worth a retry.
    Busy,
    /// The job ended without an answer: it panicked. Only where panics unwind (the
    /// tests); the release binary aborts on a panic, and its orchestrator restarts it.
    Lost,
    /// Every compute thread has ended (each died of a panic), so nothing will ever run
    /// again: not a reason to retry.
    Gone,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Busy => write!(f, "the compute queue is full"),
            PoolError::Lost => write!(f, "the computation ended without an answer"),
            PoolError::Gone => write!(
                f,
                "every compute thread has ended: this instance cannot compute and must be restarted"
            ),
        }
    }
}

impl std::error::Error for PoolError {}

impl ComputePool {
    /// `threads` workers behind a queue of `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize, metrics: PoolMetrics) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            thread::Builder::new()
                .name(format!("compute-{index}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match next {
                            Ok(job) => job(),
                            // The pool was dropped: no more work will come.
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(ComputePool {
            queue: sender,
            metrics,
        })
    }

    /// Runs `work` on a compute thread and waits for its result without blocking the
    /// async worker. If the caller stops waiting (the client went away) before a thread
    /// picks the job up, the job is skipped.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (answer, result) = tokio::sync::oneshot::channel();
        let metrics = self.metrics.clone();
        // Counted as queued until a thread starts it, or until it is dropped unrun: refused
        // at once, or discarded with the queue when the last thread has died.
        let mut waiting = Waiting::new(&self.metrics.queued);
        let job: Job = Box::new(move || {
            waiting.end();
            if answer.is_closed() {
                return;
            }
            metrics.running.inc();
            let value = work();
            metrics.running.dec();
            let _ = answer.send(value);
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.rejected.inc();
                return Err(PoolError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Gone),
        }
        result.await.map_err(|_| PoolError::Lost)
    }
}

/// A job's place in the `queued` gauge, given back once, however the job ends.
struct Waiting(Option<Gauge>);

impl Waiting {
    fn new(queued: &Gauge) -> Self {
        queued.inc();
        Waiting(Some(queued.clone()))
    }

    fn end(&mut self) {
        if let Some(queued) = self.0.take() {
            queued.dec();
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_recovers() {
        let metrics = PoolMetrics::default();
        let pool = Arc::new(ComputePool::new(1, 1, metrics.clone()).unwrap());
        let (release, blocked) = channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        // One job holds the only thread until released...
        let first = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    started_tx.send(()).unwrap();
                    blocked.recv().unwrap();
                    1
                })
                .await
            }
        });
        started.await.unwrap();
        // ...one waits in the queue (counted as queued once submitted)...
        let second = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 2).await }
        });
        while metrics.queued.get() < 1 {
            tokio::task::yield_now().await;
        }
        // ...and the next is refused at once, and counted.
        assert_eq!(pool.run(|| 3).await, Err(PoolError::Busy));
        assert_eq!(metrics.rejected.get(), 1);
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(second.await.unwrap(), Ok(2));
        assert_eq!(pool.run(|| 4).await, Ok(4));
        assert_eq!((metrics.queued.get(), metrics.running.get()), (0, 0));
    }

    #[tokio::test]
    async fn a_pool_whose_threads_died_says_so_instead_of_busy() {
        let metrics = PoolMetrics::default();
        let pool = ComputePool::new(1, 4, metrics.clone()).unwrap();
        // The test profile unwinds: the job's panic ends the only thread.
        let lost = pool.run(|| -> u8 { panic!("a job that panics") }).await;
        assert_eq!(lost, Err(PoolError::Lost));
        // The thread is gone once the receiver it shared is dropped; wait for that.
        let started = std::time::Instant::now();
        loop {
            match pool.run(|| 1).await {
                Err(PoolError::Gone) => break,
                Err(PoolError::Lost) | Ok(_) | Err(PoolError::Busy) => {
                    assert!(started.elapsed() < std::time::Duration::from_secs(10), "no Gone");
                    tokio::task::yield_now().await;
                }
            }
        }
        assert_eq!(metrics.rejected.get(), 0, "not counted as a full queue");
        assert_eq!(metrics.queued.get(), 0);
    }
}
