//! The routes' handlers: `/score` (the tutorial's contract), the Open Inference Protocol
//! under `/v2`, and health. Each takes only what it needs from the app's state, so no
//! handler depends on the dispatcher that calls it.

pub mod health;
pub mod oip;
pub mod score;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::compute::{ComputePool, PoolError};
use crate::config::Limits;
use crate::http::ApiError;
use crate::model::{Batch, Model, ModelOutput, PredictError};

/// How long a client refused for a full queue is asked to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The model, the pool it runs on, and the per-request limits: what scoring needs.
pub struct Scorer {
    pub model: Arc<dyn Model>,
    pub pool: ComputePool,
    pub limits: Limits,
}

/// A batch the model cannot take.
#[derive(Debug)]
pub enum BatchError {
    Width {
        what: String,
        width: usize,
        expected: usize,
        model: String,
    },
    Rows {
        what: String,
        rows: usize,
        max: usize,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Width {
                what,
                width,
                expected,
                model,
            } => write!(
                f,
                "{what} has {width} values per row, but model {model:?} expects {expected}"
            ),
            BatchError::Rows { what, rows, max } => {
                write!(f, "{what} has {rows} rows; at most {max} are scored per request")
            }
        }
    }
}

impl std::error::Error for BatchError {}

impl Scorer {
    /// Checks a batch against what the model takes; `what` names the input in the error.
    pub fn check_batch(&self, rows: usize, width: usize, what: &str) -> Result<(), ApiError> {
        if let Some(expected) = self.model.input_width()
            && width != expected
        {
            return Err(ApiError::bad_request(BatchError::Width {
                what: what.to_owned(),
                width,
                expected,
                model: self.model.name().to_owned(),
            }));
        }
        if rows > self.limits.max_batch {
            return Err(ApiError::bad_request(BatchError::Rows {
                what: what.to_owned(),
                rows,
                max: self.limits.max_batch,
            }));
        }
        Ok(())
    }

    /// Runs the model on the compute pool.
    pub async fn predict(
        &self,
        rows: usize,
        width: usize,
        values: Vec<f64>,
    ) -> Result<ModelOutput, ApiError> {
        let model = self.model.clone();
        let outcome = self
            .pool
            .run(move || {
                model.predict(&Batch {
                    rows,
                    width,
                    values: &values,
                })
            })
            .await;
        let failed = |error| ApiError::ModelFailed {
            model: self.model.name().to_owned(),
            error,
        };
        match outcome {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(rejected @ PredictError::Rejected(_))) => Err(ApiError::bad_request(rejected)),
            Ok(Err(error)) => Err(failed(error)),
            Err(PoolError::Busy) => Err(ApiError::Busy {
                retry_after: RETRY_AFTER,
            }),
            Err(lost @ PoolError::Lost) => Err(failed(PredictError::Runtime(lost.to_string()))),
        }
    }
}
