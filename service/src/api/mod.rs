//! The routes' handlers: `/score` (the tutorial's contract), the Open Inference Protocol
//! under `/v2`, and health. Each takes only what it needs from the app's state, so no
//! handler depends on the dispatcher that calls it.

pub mod health;
pub mod oip;
pub mod openapi;
pub mod score;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::batching::Batcher;
use crate::compute::{ComputePool, PoolError};
use crate::config::Limits;
use crate::http::ApiError;
use crate::metrics::ModelMetrics;
use crate::model::{Array, Model, PredictError};

/// How long a client refused for a full queue is asked to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The model, what `/score` makes of it, the pool it runs on, the per-request limits and
/// the model's own metrics: what scoring needs.
pub struct Scorer {
    pub model: Arc<dyn Model>,
    pub score: score::Contract,
    pub pool: ComputePool,
    pub limits: Limits,
    pub metrics: ModelMetrics,
    /// Merges concurrent requests into batches, when the model's settings ask for it.
    pub batcher: Option<Batcher>,
}

/// An input the model cannot take.
#[derive(Debug)]
pub enum ShapeError {
    Rows {
        what: String,
        rows: usize,
        max: usize,
    },
    Shape {
        what: String,
        shape: Vec<usize>,
        declared: Vec<i64>,
        model: String,
    },
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeError::Rows { what, rows, max } => {
                write!(f, "{what} has {rows} rows; at most {max} are scored per request")
            }
            ShapeError::Shape {
                what,
                shape,
                declared,
                model,
            } => write!(
                f,
                "{what} has shape {shape:?}, but model {model:?} takes {declared:?} (-1: any size)"
            ),
        }
    }
}

impl std::error::Error for ShapeError {}

/// An output value JSON cannot carry.
#[derive(Debug)]
pub struct NotFinite {
    pub output: String,
    pub row: usize,
}

impl fmt::Display for NotFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "for row {}, the model's output {:?} is not a finite number, which JSON cannot carry: the input is outside what the model can compute with",
            self.row, self.output
        )
    }
}

impl std::error::Error for NotFinite {}

impl Scorer {
    /// Refuses more rows than one request may hold.
    pub fn check_rows(&self, rows: usize, what: &str) -> Result<(), ApiError> {
        if rows > self.limits.max_batch {
            return Err(ApiError::bad_request(ShapeError::Rows {
                what: what.to_owned(),
                rows,
                max: self.limits.max_batch,
            }));
        }
        Ok(())
    }

    /// Checks `shape` against the shape input `index` declares (rank, and every fixed
    /// dimension), and its rows against the limit; `what` names the input in errors.
    pub fn check_shape(&self, shape: &[usize], index: usize, what: &str) -> Result<(), ApiError> {
        let spec = &self.model.inputs()[index];
        let fits = shape.len() == spec.shape.len()
            && shape.iter().zip(&spec.shape).all(|(size, dim)| dim.admits(*size));
        if !fits {
            return Err(ApiError::bad_request(ShapeError::Shape {
                what: what.to_owned(),
                shape: shape.to_vec(),
                declared: spec.protocol_shape(),
                model: self.model.name().to_owned(),
            }));
        }
        self.check_rows(shape.first().copied().unwrap_or(1), what)
    }

    /// Runs the model on the compute pool.
    pub async fn predict(&self, inputs: Vec<Array>) -> Result<Vec<Array>, ApiError> {
        let outcome = match &self.batcher {
            Some(batcher) => batcher.predict(inputs).await,
            None => {
                let model = self.model.clone();
                self.metrics
                    .computed(inputs.first().and_then(|i| i.shape.first()).copied().unwrap_or(1));
                self.pool.run(move || model.predict(inputs)).await
            }
        };
        let failed = |error| ApiError::ModelFailed {
            model: self.model.name().to_owned(),
            error,
        };
        match outcome {
            Ok(Ok(outputs)) => Ok(outputs),
            Ok(Err(rejected @ PredictError::Rejected(_))) => Err(ApiError::bad_request(rejected)),
            Ok(Err(error)) => Err(failed(error)),
            Err(PoolError::Busy) => Err(ApiError::Busy {
                retry_after: RETRY_AFTER,
            }),
            Err(lost @ (PoolError::Lost | PoolError::Gone)) => {
                Err(failed(PredictError::Runtime(Box::new(lost))))
            }
        }
    }
}
