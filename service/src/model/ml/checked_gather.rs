//! `Gather` with its indices checked: tract's own reads the table at whatever index it is
//! given, and an index past the end (a token id beyond an embedding's vocabulary, sent by
//! a client) panics, which aborts the release binary. Here the indices go through a check
//! first — each in `-size..size` of the gathered axis, as ONNX allows — and one outside is
//! the client's mistake, answered as such; then tract's Gather runs as before.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::array::Gather;

use crate::model::ml::kernel::{Kernel, MlOp};
use crate::model::types::InputRejected;

pub(crate) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let axis = node.get_attr_opt("axis")?.unwrap_or(0);
    Ok((
        expand(CheckedGather {
            gather: Gather::new(axis),
            axis,
            node: node.name.clone(),
        }),
        vec![],
    ))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct CheckedGather {
    gather: Gather,
    axis: i64,
    node: String,
}

impl Expansion for CheckedGather {
    fn name(&self) -> StaticName {
        "Gather".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.gather.rules(s, inputs, outputs)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let rank = model.outlet_fact(inputs[0])?.rank() as i64;
        let axis = if self.axis < 0 {
            self.axis + rank
        } else {
            self.axis
        } as usize;
        let bounds = IndexBounds {
            axis,
            node: self.node.clone(),
        };
        let checked = model.wire_node(format!("{prefix}.bounds"), MlOp(bounds), &[inputs[0], inputs[1]])?[0];
        self.gather.wire(prefix, model, &[inputs[0], checked])
    }
}

/// Passes the indices (input 1) through when each is within the axis of the data (input
/// 0); refuses them otherwise.
#[derive(Debug, Clone, PartialEq)]
struct IndexBounds {
    axis: usize,
    node: String,
}

impl Kernel for IndexBounds {
    fn name(&self) -> &'static str {
        "GatherIndexBounds"
    }

    fn input_count(&self) -> usize {
        2
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        Ok(tvec![(inputs[1].0, inputs[1].1.into())])
    }

    fn eval(&self, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let indices = inputs.remove(1);
        let size = *inputs[0]
            .shape()
            .get(self.axis)
            .ok_or_else(|| format_err!("Gather node {:?}: no axis {}", self.node, self.axis))?
            as i64;
        let wide = indices.cast_to::<i64>()?;
        let plain = wide.try_as_plain_ram()?;
        if let Some(bad) = plain
            .as_slice::<i64>()?
            .iter()
            .find(|i| !(-size..size).contains(i))
        {
            return Err(InputRejected(format!(
                "Gather node {:?}: index {bad} is outside the {size} entries of its table (a token id beyond the vocabulary?)",
                self.node
            ))
            .into());
        }
        Ok(tvec![indices])
    }
}
