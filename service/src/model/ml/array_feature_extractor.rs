//! `ArrayFeatureExtractor`: picks columns of the last axis. onnxruntime flattens the index
//! tensor whatever its shape and replaces the last axis with it, so `[N, C]` with indices
//! `[N, k]` gives `[N, N*k]`, and a rank-1 input gives `[1, k]` (scikit-learn's
//! KNeighborsClassifier export relies on this; a gather keeping the index tensor's own
//! shape answers the wrong probabilities).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::kernel::{self, Kernel};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArrayFeatureExtractor;

pub(crate) fn parse(_: &ParsingContext, _: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    kernel::op(ArrayFeatureExtractor)
}

impl Kernel for ArrayFeatureExtractor {
    fn name(&self) -> &'static str {
        "ArrayFeatureExtractor"
    }

    fn input_count(&self) -> usize {
        2
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (datum_type, shape) = inputs[0];
        let selected: TDim = inputs[1].1.iter().product();
        let mut out: TVec<TDim> = match shape {
            [] => bail!("ArrayFeatureExtractor: a scalar input has no axis to select from"),
            [_] => tvec![1.into()],
            [outer @ .., _] => outer.into(),
        };
        out.push(selected);
        Ok(tvec![(datum_type, out)])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, indices) = (&inputs[0], &inputs[1]);
        let indices = indices.cast_to::<i64>()?;
        let indices = indices.try_as_plain_ram()?.as_slice::<i64>()?.to_vec();
        ensure!(!indices.is_empty(), "ArrayFeatureExtractor: no indices");
        let shape = input.shape();
        let last = *shape
            .last()
            .ok_or_else(|| format_err!("ArrayFeatureExtractor: a scalar input"))?;
        let columns = indices
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < last)
                    .ok_or_else(|| format_err!("ArrayFeatureExtractor: index {i} is outside 0..{last}"))
            })
            .collect::<TractResult<Vec<usize>>>()?;
        let outer: usize = shape[..shape.len() - 1].iter().product();
        let mut out_shape: Vec<usize> = if shape.len() == 1 {
            vec![1]
        } else {
            shape[..shape.len() - 1].to_vec()
        };
        out_shape.push(columns.len());
        // Gather row by row: for every leading position, the chosen columns.
        let picks: Vec<usize> = (0..outer)
            .flat_map(|row| columns.iter().map(move |&c| row * last + c))
            .collect();
        let gathered = match input.datum_type() {
            DatumType::F32 => gather::<f32>(input, &picks, &out_shape)?,
            DatumType::F64 => gather::<f64>(input, &picks, &out_shape)?,
            DatumType::I64 => gather::<i64>(input, &picks, &out_shape)?,
            DatumType::I32 => gather::<i32>(input, &picks, &out_shape)?,
            DatumType::String => gather::<String>(input, &picks, &out_shape)?,
            other => bail!("ArrayFeatureExtractor: inputs of type {other:?} are not supported"),
        };
        Ok(tvec![gathered.into_tvalue()])
    }
}

fn gather<T: Datum + Clone>(input: &Tensor, picks: &[usize], shape: &[usize]) -> TractResult<Tensor> {
    let values = input.try_as_plain_ram()?.as_slice::<T>()?;
    let picked: Vec<T> = picks.iter().map(|&i| values[i].clone()).collect();
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, picked)?.into_tensor())
}
