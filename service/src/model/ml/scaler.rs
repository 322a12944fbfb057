//! `Scaler`: `(x - offset) * scale` per column (StandardScaler, MinMaxScaler exports).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::Attrs;
use crate::model::ml::kernel::{self, Kernel};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scaler {
    /// One value for every column, or one per column.
    offset: Vec<f32>,
    scale: Vec<f32>,
}

pub(crate) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let offset = attrs.floats("offset").to_vec();
    let scale = attrs.floats("scale").to_vec();
    if offset.is_empty() || scale.is_empty() {
        return Err(attrs.error("scale", "both offset and scale must be given").into());
    }
    kernel::op(Scaler { offset, scale })
}

impl Kernel for Scaler {
    fn name(&self) -> &'static str {
        "Scaler"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        Ok(tvec![(DatumType::F32, inputs[0].1.into())])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let (rows, width) = kernel::batch_shape(input)?;
        for (name, values) in [("offset", &self.offset), ("scale", &self.scale)] {
            ensure!(
                values.len() == 1 || values.len() == width,
                "Scaler: {name} has {} values for {width} columns",
                values.len()
            );
        }
        let pick = |values: &[f32], column: usize| values[if values.len() == 1 { 0 } else { column }];
        let mut out = Vec::with_capacity(rows * width);
        // onnxruntime computes in the input's type and stores floats.
        if input.datum_type() == DatumType::F64 {
            let x = input.try_as_plain_ram()?.as_slice::<f64>()?;
            for (i, &v) in x.iter().enumerate() {
                let c = i % width;
                out.push(((v - f64::from(pick(&self.offset, c))) * f64::from(pick(&self.scale, c))) as f32);
            }
        } else {
            let cast = input.cast_to::<f32>()?;
            let x = cast.try_as_plain_ram()?.as_slice::<f32>()?;
            for (i, &v) in x.iter().enumerate() {
                let c = i % width;
                out.push((v - pick(&self.offset, c)) * pick(&self.scale, c));
            }
        }
        let shape = input.shape().to_vec();
        Ok(tvec![Tensor::from_shape(&shape, &out)?.into_tvalue()])
    }
}
