//! `ZipMap`: onnxruntime turns a [batch, classes] tensor into one {class: probability} map
//! per row. We serve the tensor itself, with the class labels the classifier declares,
//! so a default skl2onnx export (with ZipMap) answers exactly as a `zipmap=False` one.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::kernel::{self, Kernel};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ZipMap;

pub(crate) fn parse(_: &ParsingContext, _: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    kernel::op(ZipMap)
}

impl Kernel for ZipMap {
    fn name(&self) -> &'static str {
        "ZipMap"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        Ok(tvec![(DatumType::F32, inputs[0].1.into())])
    }

    fn eval(&self, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs.remove(0);
        if input.datum_type() == DatumType::F32 {
            return Ok(tvec![input]);
        }
        Ok(tvec![input.cast_to::<f32>()?.into_owned().into_tvalue()])
    }
}
