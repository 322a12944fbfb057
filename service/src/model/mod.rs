//! Models: loaded once at start-up, shared by every request.
//!
//! `identity` is the tutorial's echo; `onnx` runs ONNX files through tract, with the
//! ONNX-ML operators scikit-learn, XGBoost and LightGBM exports use implemented in `ml`.
//! `types` holds what the rest of the service sees of a model.

mod identity;
mod limits;
mod ml;
mod onnx;
mod types;

use std::path::Path;

pub use identity::Identity;
pub use limits::{LimitError, ModelLimits};
pub use onnx::{OnnxModel, tract_failed};
pub use types::{Batch, Data, LoadError, Model, ModelOutput, Output, PredictError, TensorSpec};

/// Loads the model named on the command line: `identity`, or a path to an `.onnx` file
/// within `limits`.
pub fn load(spec: &str, limits: &ModelLimits) -> Result<Box<dyn Model>, LoadError> {
    if spec == "identity" {
        return Ok(Box::new(Identity::default()));
    }
    let path = Path::new(spec);
    if !path.exists() {
        return Err(LoadError::Missing(path.to_owned()));
    }
    Ok(Box::new(OnnxModel::load(path, limits)?))
}
