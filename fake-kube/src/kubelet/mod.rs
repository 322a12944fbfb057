//! The kubelet of the fake's one node: a worker per pod (see `pod`), started when a pod
//! appears and ending when its pod is gone, plus the pod log endpoint (`logs`).
//!
//! With [`Kubelet::Docker`](crate::Kubelet::Docker) each container runs in the local
//! Docker engine; with `Simulated` containers only appear to run, which is enough for
//! tests of the API and the controllers.

pub(crate) mod docker;
pub(crate) mod logs;
mod pod;
mod probe;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Shared;
use crate::resources::IDS;
use crate::store::ObjectKey;
use crate::util::uid_of;

/// How often the kubelet looks for new pods when nothing changes.
const TICK: Duration = Duration::from_millis(250);
/// How long shutdown waits for pod workers to stop their containers.
const WORKER_SHUTDOWN: Duration = Duration::from_secs(30);

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut started: HashSet<String> = HashSet::new();
    let mut workers = tokio::task::JoinSet::new();
    let mut revision = shared.store().watch_revision();
    let mut shutdown = shared.shutdown_signal();
    loop {
        let pods = shared.store().list(IDS.pods, None);
        for pod in &pods {
            let uid = uid_of(pod).to_string();
            if started.insert(uid.clone()) {
                let worker = pod::PodWorker::new(shared.clone(), ObjectKey::of(IDS.pods, pod), uid);
                workers.spawn(worker.run());
            }
        }
        // Forget pods that are gone, so the set does not grow without bound.
        started.retain(|uid| pods.iter().any(|pod| uid_of(pod) == uid));
        while workers.try_join_next().is_some() {}
        revision.mark_unchanged();
        tokio::select! {
            _ = revision.changed() => {}
            () = tokio::time::sleep(TICK) => {}
            () = shutdown.wait() => break,
        }
    }
    // Workers see the shutdown too and remove their containers; wait for them.
    let _ = tokio::time::timeout(WORKER_SHUTDOWN, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
}
