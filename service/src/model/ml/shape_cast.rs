//! `Cast` to a narrower integer, for shape arithmetic: tf2onnx computes shapes in int32
//! (`Shape`, `Cast` to int32, `Slice`, `Concat`, `Cast` back to int64, `Expand` — the
//! zeros of an LSTM's initial state, sized by the batch). tract keeps a shape's
//! dimensions symbolic through integer operations, but a Cast to int32 turns the batch
//! into an unknown, and the Expand after it cannot be typed. This Cast leaves a symbolic
//! dimension as it is when the target is int32, uint32 or uint64, which hold any
//! dimension a request within the size limits can have; on plain tensors it casts as
//! tract's core cast does, and every other Cast is tract's own.

use std::sync::OnceLock;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

type Builder = fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract's own Cast, for the casts this module leaves to it.
pub(crate) static TRACT_CAST: OnceLock<Builder> = OnceLock::new();

pub(crate) fn parse(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let to = node.get_attr::<DatumType>("to")?;
    if matches!(to, DatumType::I32 | DatumType::U32 | DatumType::U64) {
        return Ok((expand(ShapeCast { to }), vec![]));
    }
    let tract_cast = TRACT_CAST
        .get()
        .ok_or_else(|| format_err!("tract's Cast was not registered"))?;
    tract_cast(ctx, node)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ShapeCast {
    to: DatumType,
}

impl ShapeCast {
    fn output_type(&self, input: DatumType) -> DatumType {
        if input == DatumType::TDim {
            DatumType::TDim
        } else {
            self.to
        }
    }
}

impl Expansion for ShapeCast {
    fn name(&self) -> StaticName {
        "onnx.Cast(shape)".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].rank, &inputs[0].rank)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        s.given(&inputs[0].datum_type, move |s, input| {
            s.equals(&outputs[0].datum_type, self.output_type(input))
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let input = model.outlet_fact(inputs[0])?.datum_type;
        let to = self.output_type(input);
        if to == input {
            return Ok(inputs.into());
        }
        model.wire_node(prefix, tract_core::ops::cast::cast(to), &[inputs[0]])
    }
}
