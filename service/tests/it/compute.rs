//! Inference runs on the compute pool, not on the async workers: health, readiness and
//! metrics answer while every compute thread is busy, and a full queue is refused at once
//! with 503 and Retry-After — never left to time out.

use std::sync::{Arc, Mutex};

use score_service::config::Limits;
use score_service::model::{Array, Dim, ElementType, Model, PredictError, TensorSpec};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::support::{PATIENCE, TestServer, post};

/// A model whose every prediction waits until the test opens the gate, so the test — not
/// a clock — decides when the compute threads are busy.
struct GateModel {
    spec: [TensorSpec; 1],
    /// Predictions started so far.
    started: Arc<Semaphore>,
    gate: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
}

impl Model for GateModel {
    fn name(&self) -> &str {
        "gate"
    }
    fn platform(&self) -> &str {
        "test"
    }
    fn inputs(&self) -> &[TensorSpec] {
        &self.spec
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.spec
    }
    fn predict(&self, inputs: Vec<Array>) -> Result<Vec<Array>, PredictError> {
        self.started.add_permits(1);
        self.gate.lock().unwrap().recv().unwrap();
        Ok(inputs)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_every_compute_thread_is_busy_and_overload_is_a_503() {
    let (open, gate) = std::sync::mpsc::channel();
    let started = Arc::new(Semaphore::new(0));
    let model = GateModel {
        spec: [TensorSpec {
            name: "x".into(),
            element: ElementType::F64,
            shape: vec![Dim::Dynamic, Dim::Fixed(1)],
            batched: true,
        }],
        started: started.clone(),
        gate: Arc::new(Mutex::new(gate)),
    };
    let limits = Limits {
        compute_threads: 1,
        compute_queue: 1,
        ..Limits::default()
    };
    let server = Arc::new(TestServer::with_model(Box::new(model), limits).await);
    // One request holds the only compute thread...
    let running = tokio::spawn({
        let server = server.clone();
        async move { server.score(r#"{"X": [[1]]}"#).await }
    });
    let _ = tokio::time::timeout(PATIENCE, started.acquire())
        .await
        .expect("the first prediction starts")
        .unwrap();
    // ...one waits in the queue...
    let queued = tokio::spawn({
        let server = server.clone();
        async move { server.score(r#"{"X": [[2]]}"#).await }
    });
    let queued_metric = || async {
        let text = server.get("/metrics").await.text().to_owned();
        text.lines().any(|line| line == "compute_queued 1")
    };
    while !queued_metric().await {
        tokio::task::yield_now().await;
    }
    // ...so the next is refused at once, on /score and on /v2 alike.
    let refused = server.score(r#"{"X": [[3]]}"#).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.error().contains("busy"), "{refused:?}");
    let infer = json!({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [4]}]});
    let refused = server
        .send(post(
            "/v2/models/gate/infer",
            "application/json",
            &infer.to_string(),
        ))
        .await;
    assert_eq!((refused.status, refused.header("retry-after")), (503, Some("1")));
    // Health, readiness and metrics answer while inference is stuck.
    assert_eq!(server.get("/healthz").await.status, 200);
    assert_eq!(server.get("/readyz").await.status, 200);
    let metrics = server.get("/metrics").await;
    assert!(
        metrics.text().lines().any(|l| l == "compute_rejected_total 2"),
        "{}",
        metrics.text()
    );
    assert!(
        metrics.text().lines().any(|l| l == "compute_running 1"),
        "{}",
        metrics.text()
    );

    open.send(()).unwrap();
    open.send(()).unwrap();
    let (running, queued) = (running.await.unwrap(), queued.await.unwrap());
    assert_eq!((running.status, running.text()), (200, r#"{"score":[1.0]}"#));
    assert_eq!((queued.status, queued.text()), (200, r#"{"score":[2.0]}"#));
}
