//! `FeatureVectorizer`: its inputs, each cut or padded with zeros to the width
//! `inputdimensions` gives it, side by side in one float row per batch entry. Spark ML's
//! VectorAssembler exports as one (onnxmltools).
//!
//! As onnxruntime does: the batch is the first input's first dimension (1 for a 1-D
//! input); each input's row is everything after its first dimension (a 1-D input is one
//! row); integers and doubles are cast to float.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::Attrs;
use crate::model::ml::kernel::{self, Kernel};
use crate::model::types::InputRejected;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeatureVectorizer {
    /// Each input's width in the output row.
    widths: Vec<usize>,
}

pub(crate) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let widths = attrs.indices("inputdimensions")?;
    if widths.is_empty() || widths.len() != node.input.len() {
        return Err(attrs
            .error(
                "inputdimensions",
                format!(
                    "{} widths for {} inputs: one per input is required",
                    widths.len(),
                    node.input.len()
                ),
            )
            .into());
    }
    kernel::op(FeatureVectorizer { widths })
}

impl Kernel for FeatureVectorizer {
    fn name(&self) -> &'static str {
        "FeatureVectorizer"
    }

    fn input_count(&self) -> usize {
        self.widths.len()
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let batch = match inputs[0].1 {
            [_] | [] => TDim::from(1),
            [first, ..] => first.clone(),
        };
        let width: usize = self.widths.iter().sum();
        Ok(tvec![(DatumType::F32, tvec![batch, width.into()])])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let rows = match inputs[0].shape() {
            [_] | [] => 1,
            [first, ..] => *first,
        };
        let total: usize = self.widths.iter().sum();
        let mut out = vec![0f32; rows * total];
        let mut offset = 0;
        for (input, width) in inputs.iter().zip(&self.widths) {
            let shape = input.shape();
            let (input_rows, length) = match shape {
                [] => (1, 1),
                [length] => (1, *length),
                [first, rest @ ..] => (*first, rest.iter().product()),
            };
            if input_rows != rows {
                return Err(InputRejected(format!(
                    "FeatureVectorizer: an input of shape {shape:?} beside {rows} rows"
                ))
                .into());
            }
            let values = input.cast_to::<f32>()?;
            let values = values.try_as_plain_ram()?;
            let values = values.as_slice::<f32>()?;
            let copied = length.min(*width);
            for row in 0..rows {
                let from = &values[row * length..row * length + copied];
                out[row * total + offset..row * total + offset + copied].copy_from_slice(from);
            }
            offset += width;
        }
        Ok(tvec![kernel::matrix_f32(rows, total, out)?])
    }
}
