//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers a client's
//! bytes reach, and model loading from a file's bytes. Not an API for anything else.

use crate::api::oip;
use crate::model::{LoadError, ModelLimits, OnnxModel};

/// What the Open Inference Protocol's parser made of a request.
pub struct InferSummary {
    pub rows: usize,
    pub width: usize,
    /// How many numbers the input held.
    pub values: usize,
}

pub fn parse_infer_request(bytes: &[u8]) -> Result<InferSummary, oip::InferError> {
    let parsed = oip::parse(bytes, "fuzzed")?;
    Ok(InferSummary {
        rows: parsed.rows,
        width: parsed.width,
        values: parsed.numbers.len(),
    })
}

/// Loads a model from bytes under the default limits.
pub fn load_model(bytes: &[u8]) -> Result<OnnxModel, LoadError> {
    OnnxModel::load_bytes("fuzzed", bytes, &ModelLimits::default())
}
