//! `Binarizer`: 1 where a value is above the threshold, else 0, in the input's type.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::Attrs;
use crate::model::ml::kernel::{self, Kernel};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Binarizer {
    threshold: f32,
}

pub(crate) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold = Attrs::of(node).float("threshold").unwrap_or(0.0);
    kernel::op(Binarizer { threshold })
}

impl Kernel for Binarizer {
    fn name(&self) -> &'static str {
        "Binarizer"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        Ok(tvec![(inputs[0].0, inputs[0].1.into())])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let shape = input.shape().to_vec();
        let output = if input.datum_type() == DatumType::F64 {
            let threshold = f64::from(self.threshold);
            let x = input.try_as_plain_ram()?.as_slice::<f64>()?;
            let out: Vec<f64> = x.iter().map(|&v| if v > threshold { 1.0 } else { 0.0 }).collect();
            Tensor::from_shape(&shape, &out)?
        } else {
            let x = input.try_as_plain_ram()?.as_slice::<f32>()?;
            let out: Vec<f32> = x
                .iter()
                .map(|&v| if v > self.threshold { 1.0 } else { 0.0 })
                .collect();
            Tensor::from_shape(&shape, &out)?
        };
        Ok(tvec![output.into_tvalue()])
    }
}
