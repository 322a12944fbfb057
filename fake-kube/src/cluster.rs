//! The state every task of one fake cluster shares: the store, the options, the request
//! log, the shutdown signal, and what the kubelet knows that the API does not show (the
//! loopback ports its containers publish).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::error::ApiError;
use crate::store::Store;
use crate::{ClusterOptions, Fault, FaultAnswer};

/// One published container port: where the pod's port answers on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishedPort {
    pub(crate) container: String,
    pub(crate) name: Option<String>,
    pub(crate) container_port: u16,
    pub(crate) address: SocketAddr,
}

pub(crate) struct Shared {
    store: Mutex<Store>,
    pub(crate) options: ClusterOptions,
    requests: Mutex<Vec<String>>,
    /// Answers to give instead of doing requests (see `RunningCluster::inject`).
    faults: Mutex<Vec<Fault>>,
    shutdown: watch::Sender<bool>,
    /// Labels every container this cluster starts, so all of them can be found.
    pub(crate) cluster_id: String,
    /// Where ConfigMap and Secret volumes are written.
    pub(crate) work_dir: PathBuf,
    /// Published ports by pod uid.
    ports: Mutex<HashMap<String, Vec<PublishedPort>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves the data as consistent as any single write
    // made it; carrying on beats cascading panics in every other task.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(options: ClusterOptions, cluster_id: String, work_dir: PathBuf) -> Self {
        Shared {
            store: Mutex::new(Store::new()),
            options,
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            shutdown: watch::channel(false).0,
            cluster_id,
            work_dir,
            ports: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn log_request(&self, line: String) {
        lock(&self.requests).push(line);
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        lock(&self.requests).clone()
    }

    pub(crate) fn inject(&self, fault: Fault) {
        lock(&self.faults).push(fault);
    }

    /// The error to answer a request with instead of doing it, if an injected fault
    /// matches it; each answer spends one of the fault's times.
    pub(crate) fn take_fault(&self, method: &str, path: &str) -> Option<ApiError> {
        let mut faults = lock(&self.faults);
        let index = faults
            .iter()
            .position(|f| f.times > 0 && f.method == method && path.contains(&f.path_contains))?;
        faults[index].times -= 1;
        Some(match faults[index].answer {
            FaultAnswer::InternalError => {
                ApiError::Internal("Internal error occurred: the storage backend did not answer".into())
            }
            FaultAnswer::TooManyRequests { retry_after } => ApiError::TooManyRequests { retry_after },
            FaultAnswer::Timeout => ApiError::Timeout,
        })
    }

    pub(crate) fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.shutdown.subscribe())
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) fn set_ports(&self, pod_uid: &str, ports: Vec<PublishedPort>) {
        let mut all = lock(&self.ports);
        if ports.is_empty() {
            all.remove(pod_uid);
        } else {
            all.insert(pod_uid.to_string(), ports);
        }
    }

    pub(crate) fn ports(&self, pod_uid: &str) -> Vec<PublishedPort> {
        lock(&self.ports).get(pod_uid).cloned().unwrap_or_default()
    }
}

/// Resolves once the cluster shuts down.
pub(crate) struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    pub(crate) async fn wait(&mut self) {
        // An error means the sender is gone, which only happens at shutdown too.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}
