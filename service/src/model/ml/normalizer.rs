//! `Normalizer`: each row divided by its max, L1 or L2 norm (sklearn's Normalizer); a row
//! whose norm is zero passes unchanged.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::Attrs;
use crate::model::ml::kernel::{self, Kernel};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Normalizer {
    norm: Norm,
}

pub(crate) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let norm = match attrs.string("norm")?.unwrap_or("MAX") {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => return Err(attrs.error("norm", format!("unknown norm {other:?}")).into()),
    };
    kernel::op(Normalizer { norm })
}

impl Normalizer {
    /// Normalises one row in place, in single precision as onnxruntime does.
    fn row(&self, row: &mut [f32]) {
        match self.norm {
            Norm::Max => {
                let max = row.iter().fold(f32::MIN, |m, &v| m.max(v));
                if max != 0.0 {
                    row.iter_mut().for_each(|v| *v /= max);
                }
            }
            Norm::L1 => {
                let sum: f32 = row.iter().map(|v| v.abs()).sum();
                if sum != 0.0 {
                    row.iter_mut().for_each(|v| *v /= sum);
                }
            }
            Norm::L2 => {
                let sum: f32 = row.iter().map(|v| v * v).sum();
                if sum != 0.0 {
                    row.iter_mut()
                        .for_each(|v| *v = (*v * *v / sum).sqrt().copysign(*v));
                }
            }
        }
    }
}

impl Kernel for Normalizer {
    fn name(&self) -> &'static str {
        "Normalizer"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        Ok(tvec![(DatumType::F32, inputs[0].1.into())])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].cast_to::<f32>()?;
        let (_, width) = kernel::batch_shape(&input)?;
        let mut out = input.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        if width > 0 {
            out.chunks_mut(width).for_each(|row| self.row(row));
        }
        Ok(tvec![Tensor::from_shape(input.shape(), &out)?.into_tvalue()])
    }
}
