//! `Imputer`: replaces a marker value (NaN by default, as SimpleImputer writes) with a
//! per-column value.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::Attrs;
use crate::model::ml::kernel::{self, Kernel};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Imputer {
    /// One value for every column, or one per column.
    imputed: Vec<f32>,
    replaced: f32,
}

pub(crate) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    if attrs.has("imputed_value_int64s") {
        return Err(attrs
            .error(
                "imputed_value_int64s",
                "integer inputs are not served; export float features",
            )
            .into());
    }
    let imputed = attrs.floats("imputed_value_floats").to_vec();
    if imputed.is_empty() {
        return Err(attrs.error("imputed_value_floats", "no values to impute").into());
    }
    let replaced = attrs.float("replaced_value_float").unwrap_or(0.0);
    kernel::op(Imputer { imputed, replaced })
}

impl Imputer {
    fn is_replaced(&self, value: f32) -> bool {
        if self.replaced.is_nan() {
            value.is_nan()
        } else {
            value == self.replaced
        }
    }
}

impl Kernel for Imputer {
    fn name(&self) -> &'static str {
        "Imputer"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        Ok(tvec![(DatumType::F32, inputs[0].1.into())])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].cast_to::<f32>()?;
        let (_, width) = kernel::batch_shape(&input)?;
        ensure!(
            self.imputed.len() == 1 || self.imputed.len() == width,
            "Imputer: {} imputed values for {width} columns",
            self.imputed.len()
        );
        let x = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let out: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if !self.is_replaced(v) {
                    v
                } else if self.imputed.len() == 1 {
                    self.imputed[0]
                } else {
                    self.imputed[i % width]
                }
            })
            .collect();
        Ok(tvec![Tensor::from_shape(input.shape(), &out)?.into_tvalue()])
    }
}
