//! Adaptive batching: requests for one model that arrive together run as one batch on
//! the compute pool, and each gets its own rows of the answer back.
//!
//! A batch closes when it holds `max_batch_size` rows or `max_batch_time` after its first
//! request, as MLServer's adaptive batching does; a request whose inputs do not join the
//! open batch (another shape after the first axis) starts the next one. Each answer is the
//! one the request would have had alone: a batch that fails is run again request by
//! request, so one bad request fails only itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::compute::{ComputePool, PoolError};
use crate::metrics::ModelMetrics;
use crate::model::{Array, Model, PredictError};

/// When a batch closes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchPolicy {
    pub max_batch_size: usize,
    pub max_batch_time: Duration,
}

/// What a request gets back: the model's outputs, or why the pool did not run it.
pub type Answer = Result<Result<Vec<Array>, PredictError>, PoolError>;

struct Waiting {
    inputs: Vec<Array>,
    rows: usize,
    answer: oneshot::Sender<Answer>,
}

/// The queue of one model's requests, drained by its batching task.
pub struct Batcher {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl Batcher {
    /// Starts the model's batching task (on the current tokio runtime); it ends when the
    /// batcher is dropped.
    pub fn start(
        model: Arc<dyn Model>,
        pool: ComputePool,
        metrics: ModelMetrics,
        policy: BatchPolicy,
    ) -> Batcher {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(collect(model, pool, metrics, policy, waiting));
        Batcher { queue }
    }

    /// Runs `inputs` in the next batch. The compute pool's queue bounds the batches, as
    /// it bounds requests without batching.
    pub async fn predict(&self, inputs: Vec<Array>) -> Answer {
        let rows = inputs
            .first()
            .and_then(|input| input.shape.first())
            .copied()
            .unwrap_or(1);
        let (answer, answered) = oneshot::channel();
        if self.queue.send(Waiting { inputs, rows, answer }).is_err() {
            return Err(PoolError::Gone);
        }
        answered.await.unwrap_or(Err(PoolError::Lost))
    }
}

/// Whether `next` can join a batch opened by `first`: the same inputs, each of the same
/// type and shape after the first axis.
fn joins(first: &Waiting, next: &Waiting) -> bool {
    first.inputs.len() == next.inputs.len()
        && first.inputs.iter().zip(&next.inputs).all(|(a, b)| {
            a.data.element_type() == b.data.element_type() && a.shape.get(1..) == b.shape.get(1..)
        })
}

async fn collect(
    model: Arc<dyn Model>,
    pool: ComputePool,
    metrics: ModelMetrics,
    policy: BatchPolicy,
    mut waiting: mpsc::UnboundedReceiver<Waiting>,
) {
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(first) => first,
            None => match waiting.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut rows = first.rows;
        let mut batch = Vec::with_capacity(policy.max_batch_size.min(1024));
        batch.push(first);
        // One timer per batch, not one per request that joins it.
        let closes = tokio::time::sleep_until(Instant::now() + policy.max_batch_time);
        tokio::pin!(closes);
        while rows < policy.max_batch_size {
            tokio::select! {
                arrived = waiting.recv() => match arrived {
                    Some(request) if joins(&batch[0], &request) && rows + request.rows <= policy.max_batch_size => {
                        rows += request.rows;
                        batch.push(request);
                    }
                    Some(request) => {
                        next = Some(request);
                        break;
                    }
                    None => break,
                },
                () = &mut closes => break,
            }
        }
        tokio::spawn(run(model.clone(), pool.clone(), metrics.clone(), batch));
    }
}

/// Runs one batch and answers each request with its rows.
async fn run(model: Arc<dyn Model>, pool: ComputePool, metrics: ModelMetrics, batch: Vec<Waiting>) {
    let rows: Vec<usize> = batch.iter().map(|w| w.rows).collect();
    metrics.computed(rows.iter().sum());
    if let [_] = batch.as_slice() {
        let Waiting { inputs, answer, .. } = batch.into_iter().next().expect("one request");
        let _ = answer.send(pool.run(move || model.predict(inputs)).await);
        return;
    }
    let (answers, inputs): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.answer, w.inputs)).unzip();
    let merged = merge(&inputs);
    let outcome = match merged {
        Some(merged) => {
            let model = model.clone();
            pool.run(move || model.predict(merged)).await
        }
        None => Ok(Err(PredictError::Rejected(
            "the batch's inputs do not join".into(),
        ))),
    };
    match outcome.map(|outputs| outputs.map(|outputs| split(outputs, &rows))) {
        Ok(Ok(Some(each))) => {
            for (answer, outputs) in answers.into_iter().zip(each) {
                let _ = answer.send(Ok(Ok(outputs)));
            }
        }
        Err(pool_error) => {
            // Busy or gone: the same for every request of the batch.
            for answer in answers {
                let _ = answer.send(Err(pool_error.clone()));
            }
        }
        // The batch failed, or its outputs do not split by rows: each request alone, so
        // each gets exactly the answer it would have had.
        Ok(_) => {
            for (answer, inputs) in answers.into_iter().zip(inputs) {
                let (model, pool) = (model.clone(), pool.clone());
                // Side by side, as they would have run unbatched.
                tokio::spawn(async move {
                    let _ = answer.send(pool.run(move || model.predict(inputs)).await);
                });
            }
        }
    }
}

/// Each input of every request, joined along the first axis; the requests keep theirs,
/// to run alone if the batch fails.
fn merge(requests: &[Vec<Array>]) -> Option<Vec<Array>> {
    let count = requests.first()?.len();
    (0..count)
        .map(|index| {
            let column: Vec<&Array> = requests
                .iter()
                .map(|inputs| inputs.get(index))
                .collect::<Option<_>>()?;
            Array::concat(&column)
        })
        .collect()
}

/// Each output cut into the requests' rows: a list of outputs per request.
fn split(outputs: Vec<Array>, rows: &[usize]) -> Option<Vec<Vec<Array>>> {
    let mut each: Vec<Vec<Array>> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for output in outputs {
        for (request, part) in output.split(rows)?.into_iter().enumerate() {
            each[request].push(part);
        }
    }
    Some(each)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Data;

    #[test]
    fn merged_rows_split_back_into_each_requests_own() {
        let a = Array {
            shape: vec![1, 2],
            data: Data::F32(vec![1.0, 2.0]),
        };
        let b = Array {
            shape: vec![2, 2],
            data: Data::F32(vec![3.0, 4.0, 5.0, 6.0]),
        };
        let merged = merge(&[vec![a.clone()], vec![b.clone()]]).unwrap();
        assert_eq!(merged[0].shape, [3, 2]);
        assert_eq!(merged[0].data, Data::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert_eq!(split(merged, &[1, 2]).unwrap(), [vec![a.clone()], vec![b]]);
        let strings = Array {
            shape: vec![1],
            data: Data::Str(vec!["x".into()]),
        };
        assert!(merge(&[vec![a.clone()], vec![strings]]).is_none(), "types differ");
        let wide = Array {
            shape: vec![1, 3],
            data: Data::F32(vec![0.0; 3]),
        };
        assert!(merge(&[vec![a.clone()], vec![wide]]).is_none(), "shapes differ");
        assert!(a.split(&[2]).is_none(), "rows that do not add up");
    }
}
