//! Models: loaded once at start-up, shared by every request.
//!
//! `identity` is the tutorial's echo; `onnx` runs ONNX files through tract, with the
//! ONNX-ML operators scikit-learn, XGBoost, LightGBM and CatBoost exports use implemented
//! in `ml`. `types` holds what the rest of the service sees of a model: named tensors.

mod convert;
mod identity;
mod limits;
mod ml;
mod onnx;
pub(crate) mod types;

use std::path::Path;

pub use convert::{ConvertError, convert, integral};
pub use identity::Identity;
pub use limits::{LimitError, ModelLimits};
pub use onnx::{OnnxModel, panic_message, tract_failed};
pub(crate) use types::for_each_data;
pub use types::{Array, Data, Dim, ElementType, LoadError, Model, PredictError, TensorSpec, warm_up_inputs};

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
