//! A fake Kubernetes cluster, faked at the wire protocol, so that the real `kubectl` is
//! its client: an HTTPS API server (discovery, OpenAPI v3, get/list/watch, server-side
//! apply with field ownership and conflicts, JSON patches (what the plans send), Pod Security
//! admission), the controllers that move Deployments, ReplicaSets, autoscalers and
//! namespaces along, a kubelet that runs each pod's containers in the local Docker engine,
//! a load balancer per `LoadBalancer` Service on a loopback address, and a gateway per
//! Gateway API `Gateway` that splits requests by its routes' weights.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use fake_kube::{ClusterOptions, FakeCluster};
//! let cluster = FakeCluster::start(ClusterOptions::new("secret-token")).await?;
//! std::fs::write("kubeconfig", cluster.kubeconfig("fake", "secret-token"))?;
//! // KUBECONFIG=kubeconfig KUBECACHEDIR=$(mktemp -d) kubectl apply --server-side -f …
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Give each kubectl run against a fresh cluster its own `KUBECACHEDIR`: kubectl caches
//! discovery per host and port for hours.
//!
//! # Where it differs from a real cluster
//!
//! - Resources: core/v1 namespaces, pods (and `log`, and `proxy`, which forwards any
//!   request to a pod's port with no rewriting of links), services, events,
//!   serviceaccounts; apps/v1 deployments and replicasets (and `scale`);
//!   autoscaling/v2 horizontalpodautoscalers; policy/v1 poddisruptionbudgets;
//!   networking.k8s.io/v1 networkpolicies; gateway.networking.k8s.io/v1 gatewayclasses,
//!   gateways and httproutes (served built in, without CRDs); networking.gke.io/v1
//!   healthcheckpolicies (checked and stored, without effect); authorization.k8s.io/v1
//!   selfsubjectaccessreviews. No nodes, endpoints, jobs, RBAC roles, CRDs; no exec,
//!   attach or port-forward; no collection DELETE (`deletecollection`).
//! - Pod Security: `restricted` is enforced and warned about, `privileged` checks nothing,
//!   and a namespace asking for `baseline` is refused (422) rather than not enforced.
//! - Tables (`kubectl get` without `-o`): the API server's columns for events, NAME and
//!   AGE for every other kind.
//! - Authorization: everything is allowed but what `ClusterOptions::denied` names.
//! - OpenAPI v3 documents carry only what `kubectl apply` reads (a PATCH operation per kind
//!   declaring `fieldValidation`); `kubectl explain` and client-side validation do not work.
//! - Strict field validation knows the top level of every kind and, field by field, the
//!   Deployment/ReplicaSet spec, pod template, pod spec, containers, security contexts,
//!   probes and resources; deeper unknown fields pass. Values are validated as the API
//!   server does for what the plans write (each kind's strategy in `strategy.rs`): names per kind, ports, resource
//!   quantities and limits against requests, protocols, a Deployment's strategy and its
//!   selector against the template, a Service's type; not every field of every kind.
//! - Field ownership is tracked per leaf field and keyed list item, from a table of list
//!   keys rather than the schema; an apply's conflicts are leaf values only. Defaulting is
//!   limited to what the controllers and kubectl read (no pod-spec defaulting).
//! - Field selectors accept any dotted path (the apiserver allows a fixed few per kind).
//!   `limit` is ignored (no paging); watches keep the last 20,000 changes and send no
//!   bookmarks; deletion is always background (no foreground or orphan propagation).
//! - Deployments: template hashes have the real shape, not the real values.
//!   `ClusterOptions::progress_deadline` overrides every deployment's deadline.
//! - Autoscalers have no metrics: they keep the target within min and max replicas.
//! - The kubelet: one node, `fake-kube-node`; containers of a pod run as separate Docker
//!   containers (no shared network namespace or emptyDir between them); probe periods
//!   are capped at one second; crash-loop back-off runs 0 s, 1 s, 2 s, … up to 10 s;
//!   termination waits at most 2 s and runs no preStop hooks; no service environment
//!   variables. It runs what the project's manifests ask for and refuses the rest by
//!   name (`CreateContainerConfigError`): volumes are emptyDir (tmpfs) only, environment
//!   values literal only (no `valueFrom` or `envFrom`), no host network; probes are
//!   `httpGet` only (others are reported unsupported, and fail).
//! - LoadBalancer services listen on a loopback address of their own at the service's
//!   ports; node ports and cluster IPs are allocated but nothing listens on them.
//! - GatewayClasses: GKE's four single-cluster classes exist from the start; a Gateway of
//!   another class never gets an address, as no controller takes it. Gateways serve HTTP
//!   listeners only, at any port, on a loopback address of their own, and route HTTPRoutes of their own namespace by path (`Exact`, `PathPrefix`) and
//!   weight to Services; header, query and method matches, filters, and TLS are refused
//!   by name.

mod admission;
mod api;
mod authz;
mod cluster;
mod controller;
mod defaults;
mod error;
mod fields;
mod gateway;
mod kubelet;
mod loadbalancer;
mod managed;
mod patch;
mod ports;
mod proxy;
pub mod registry;
mod resources;
mod selector;
mod server;
mod storage;
mod store;
mod strategy;
mod table;
mod util;
mod validate;
mod values;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::cluster::Shared;

/// How pods' containers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kubelet {
    /// In the local Docker engine, through the `docker` CLI.
    #[default]
    Docker,
    /// Not at all: every container is reported running and ready at once, with empty
    /// logs and nothing to connect to. For tests of the API and the controllers on a
    /// machine without Docker.
    Simulated,
}

/// What the API server answers, instead of doing the request, to the next `times`
/// requests it matches: what failing, overloaded or slow control planes answer.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The request's method (`PATCH`) …
    pub method: String,
    /// … and text its path must hold (`/deployments/`).
    pub path_contains: String,
    pub times: usize,
    pub answer: FaultAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAnswer {
    /// 500 `InternalError`, as an apiserver whose storage failed answers.
    InternalError,
    /// 429 `TooManyRequests` with `Retry-After`, as API priority and fairness answers a
    /// client over its share.
    TooManyRequests { retry_after: u64 },
    /// 504 `Timeout`: the request did not complete within the apiserver's deadline.
    Timeout,
}

/// How to run a fake cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The bearer token every request must carry; anything else gets 401.
    pub token: String,
    /// Overrides every Deployment's `spec.progressDeadlineSeconds`, so a test sees
    /// `ProgressDeadlineExceeded` in seconds rather than minutes. The spec itself is left
    /// as applied.
    pub progress_deadline: Option<Duration>,
    /// Report LoadBalancer ingress as `hostname: localhost` (as EKS does) instead of an
    /// `ip` of its own; the proxies then listen on 127.0.0.1 (and ::1).
    pub load_balancer_hostname: bool,
    /// How pods' containers run.
    pub kubelet: Kubelet,
    /// What the user may not do, as `VERB RESOURCE[/SUBRESOURCE]` (`create pods/proxy`):
    /// refused 403 as RBAC refuses, and `kubectl auth can-i` is told no. Everything else is
    /// allowed: the fake has no roles.
    pub denied: Vec<String>,
}

impl ClusterOptions {
    pub fn new(token: impl Into<String>) -> Self {
        ClusterOptions {
            token: token.into(),
            progress_deadline: None,
            load_balancer_hostname: false,
            kubelet: Kubelet::Docker,
            denied: Vec::new(),
        }
    }
}

/// A running fake cluster on the current tokio runtime. Dropping it stops its tasks and
/// removes its containers; [`shutdown`](Self::shutdown) does the same and waits for it.
pub struct FakeCluster {
    shared: Arc<Shared>,
    url: String,
    ca_pem: String,
    tasks: JoinSet<()>,
}

impl FakeCluster {
    /// Starts the API server on 127.0.0.1 (a random port), the controllers, the kubelet
    /// and the load balancers, on the current tokio runtime.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<FakeCluster> {
        let tls = server::make_tls()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}", listener.local_addr()?);
        let cluster_id = format!("{:016x}", util::random_u64());
        let work_dir = std::env::temp_dir().join(format!("fake-kube-{cluster_id}"));
        if options.kubelet == Kubelet::Docker {
            kubelet::docker::remove_orphans().await;
        }
        let shared = Arc::new(Shared::new(options, cluster_id, work_dir));
        let mut tasks = JoinSet::new();
        tasks.spawn(server::serve(shared.clone(), listener, tls.acceptor));
        tasks.spawn(controller::run(shared.clone()));
        tasks.spawn(kubelet::run(shared.clone()));
        tasks.spawn(loadbalancer::run(shared.clone()));
        tasks.spawn(gateway::run(shared.clone()));
        Ok(FakeCluster {
            shared,
            url,
            ca_pem: tls.ca_pem,
            tasks,
        })
    }

    /// Starts a cluster on a runtime of its own, on a thread of its own, for tests that
    /// are not async.
    pub fn start_blocking(options: ClusterOptions) -> anyhow::Result<RunningCluster> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-kube".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(anyhow::Error::from(error)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match FakeCluster::start(options).await {
                        Ok(cluster) => {
                            let view = View {
                                shared: cluster.shared.clone(),
                                url: cluster.url.clone(),
                                ca_pem: cluster.ca_pem.clone(),
                            };
                            let _ = ready_tx.send(Ok(view));
                            // Either an explicit stop or the handle being dropped.
                            let _ = stop_rx.await;
                            cluster.shutdown().await;
                        }
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                        }
                    }
                });
            })?;
        let view = ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the fake-kube thread ended before the cluster started"))??;
        Ok(RunningCluster {
            view,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The PEM of the CA that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig with one context, `context`, whose user presents `token`.
    pub fn kubeconfig(&self, context: &str, token: &str) -> String {
        kubeconfig(&self.url, &self.ca_pem, context, token)
    }

    /// Every request so far, one line each: `METHOD path?query -> status (program)`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests()
    }

    /// From now on, answers the requests `fault` matches with its answer, `times` times.
    pub fn inject(&self, fault: Fault) {
        self.shared.inject(fault);
    }

    /// Stops every task and removes every container the cluster started.
    pub async fn shutdown(mut self) {
        self.shared.begin_shutdown();
        // The kubelet waits for its pod workers, which remove their containers.
        let _ = tokio::time::timeout(Duration::from_secs(40), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if self.shared.options.kubelet == Kubelet::Docker {
            kubelet::docker::remove_cluster(&self.shared.cluster_id).await;
        }
        let _ = std::fs::remove_dir_all(&self.shared.work_dir);
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        // After `shutdown` this finds nothing left to do. Otherwise (a test that failed
        // or forgot) stop everything now, and remove containers without waiting for the
        // runtime, which may be going away too.
        self.shared.begin_shutdown();
        self.tasks.abort_all();
        if self.shared.options.kubelet == Kubelet::Docker {
            kubelet::docker::remove_blocking(&format!(
                "{}={}",
                kubelet::docker::CLUSTER_LABEL,
                self.shared.cluster_id
            ));
        }
        let _ = std::fs::remove_dir_all(&self.shared.work_dir);
    }
}

struct View {
    shared: Arc<Shared>,
    url: String,
    ca_pem: String,
}

/// A cluster started by [`FakeCluster::start_blocking`]: the same accessors; dropping it
/// (or [`shutdown`](Self::shutdown)) stops the cluster and removes its containers.
pub struct RunningCluster {
    view: View,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningCluster {
    pub fn url(&self) -> String {
        self.view.url.clone()
    }

    pub fn ca_pem(&self) -> &str {
        &self.view.ca_pem
    }

    pub fn kubeconfig(&self, context: &str, token: &str) -> String {
        kubeconfig(&self.view.url, &self.view.ca_pem, context, token)
    }

    pub fn requests(&self) -> Vec<String> {
        self.view.shared.requests()
    }

    /// From now on, answers the requests `fault` matches with its answer, `times` times.
    pub fn inject(&self, fault: Fault) {
        self.view.shared.inject(fault);
    }

    /// Stops the cluster and waits until its containers are gone.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningCluster {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn kubeconfig(url: &str, ca_pem: &str, context: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    // JSON strings are YAML strings, and quoting keeps any token intact.
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let (context, url, token) = (quote(context), quote(url), quote(token));
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {context}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
         users:\n\
         - name: {context}\n  user:\n    token: {token}\n\
         contexts:\n\
         - name: {context}\n  context:\n    cluster: {context}\n    user: {context}\n\
         current-context: {context}\n\
         preferences: {{}}\n"
    )
}
