//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers a client's
//! bytes reach, and model loading from a file's bytes. Not an API for anything else.

use crate::api::oip;
use crate::features::ScoreBody;
use crate::model::{Data, ElementType, LoadError, ModelLimits, OnnxModel};
use crate::tensors;

/// What the Open Inference Protocol's parser made of a request.
pub struct InferSummary {
    pub inputs: usize,
    /// How many values the inputs held, in all.
    pub values: usize,
    /// How many their shapes declare, in all.
    pub declared: usize,
}

/// Parses a request as `/v2 infer` does. A body that starts with `BIN` and two bytes
/// (little-endian) has those bytes as `Inference-Header-Content-Length`: the JSON is that
/// long, and binary data follows.
pub fn parse_infer_request(body: &[u8]) -> Result<InferSummary, oip::InferError> {
    let (json, binary) = match body.strip_prefix(b"BIN") {
        Some([low, high, rest @ ..]) => {
            let length = usize::from(u16::from_le_bytes([*low, *high])).min(rest.len());
            rest.split_at(length)
        }
        _ => (body, &[][..]),
    };
    let parsed = oip::parse(json, binary)?;
    Ok(InferSummary {
        inputs: parsed.inputs.len(),
        values: parsed.inputs.iter().map(|(_, array)| array.data.len()).sum(),
        declared: parsed
            .inputs
            .iter()
            .map(|(_, array)| array.shape.iter().product::<usize>())
            .sum(),
    })
}

/// What `/score` read of a body, as the identity model reads it.
pub struct ScoreSummary {
    /// `X`'s numbers.
    pub values: Vec<f64>,
    /// What the identity model would echo.
    pub echoed: Vec<u8>,
}

/// Reads a `/score` body as each kind of model would (rows of numbers, strings and
/// integers, and records), then as the identity model does, whose reading it returns.
pub fn read_score_body(body: &[u8]) -> Result<ScoreSummary, Box<dyn std::error::Error>> {
    let parsed = ScoreBody::parse(body)?;
    for (element, rank) in [
        (ElementType::Str, 2),
        (ElementType::I64, 4),
        (ElementType::Bool, 1),
    ] {
        let _ = tensors::read(parsed.x(), element, rank, "X", tensors::Nulls::Missing);
    }
    if let Ok(records) = parsed.records() {
        for record in &records.records {
            let fields = record.fields.iter().map(|(_, raw)| raw.get());
            let place = |index: usize| tensors::Place {
                root: format!("field {index}"),
                path: Vec::new(),
            };
            let _ = tensors::read_fields(fields, ElementType::F32, place);
        }
    }
    let array = tensors::read(parsed.x(), ElementType::F64, 2, "X", tensors::Nulls::Refused)?;
    let Data::F64(values) = array.data else {
        return Err("read as FP64, the values are FP64".into());
    };
    let mut echoed = Vec::new();
    parsed.write_compact(&mut echoed);
    Ok(ScoreSummary { values, echoed })
}

/// Loads a model from bytes under the default limits.
pub fn load_model(bytes: &[u8]) -> Result<OnnxModel, LoadError> {
    OnnxModel::load_bytes("fuzzed", bytes, &ModelLimits::default())
}
