//! One adapter from a [`Kernel`] (an operator's parsed attributes and its arithmetic) to
//! the traits tract asks of an operator: inference rules while the graph is analysed, and
//! a typed op with `eval` once it is optimised and planned.

use std::fmt;

use tract_onnx::tract_hir::internal::*;

/// An ONNX-ML operator computed by our code on whole tensors.
pub(crate) trait Kernel: fmt::Debug + Clone + PartialEq + Send + Sync + 'static {
    fn name(&self) -> &'static str;

    fn input_count(&self) -> usize {
        1
    }

    fn output_count(&self) -> usize {
        1
    }

    /// Each output's type and shape, from the inputs' (a shape may hold the symbolic
    /// batch dimension).
    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>>;

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>>;

    /// The kernel to run once the inputs' types are known (a tree ensemble compiles its
    /// thresholds for float or double inputs here); `symbols` names a length only the
    /// data decides (see [`Kernel::data_dependent`]).
    fn specialize(&self, _input_types: &[DatumType], _symbols: &SymbolScope) -> TractResult<Self> {
        Ok(self.clone())
    }

    /// Whether an output's length depends on the values, not only the shapes (strings a
    /// normaliser drops): while the graph is analysed only its type and rank are given,
    /// and `output_facts` of the specialised kernel names the length by a symbol.
    fn data_dependent(&self) -> bool {
        false
    }
}

/// Any kernel, as tract's inference op and typed op.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MlOp<K>(pub(crate) K);

// tract compares ops for equality; a kernel's parameters are compared as values.
impl<K: Kernel> Eq for MlOp<K> {}

/// The inference op to register for a parsed kernel.
pub(crate) fn op<K: Kernel>(kernel: K) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(MlOp(kernel)), vec![]))
}

impl<K: Kernel> MlOp<K> {
    fn solve<'r>(
        &self,
        s: &mut Solver<'r>,
        outputs: &'r [TensorProxy],
        inputs: &[(DatumType, &[TDim])],
    ) -> InferenceResult {
        let facts = self.0.output_facts(inputs)?;
        for (proxy, (datum_type, shape)) in outputs.iter().zip(facts) {
            s.equals(&proxy.datum_type, datum_type)?;
            if self.0.data_dependent() {
                s.equals(&proxy.rank, shape.len() as i64)?;
            } else {
                s.equals(&proxy.shape, shape)?;
            }
        }
        Ok(())
    }
}

impl<K: Kernel> Expansion for MlOp<K> {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.0.output_count())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.0.input_count())?;
        check_output_arity(outputs, self.0.output_count())?;
        if inputs.len() == 1 {
            return s.given_2(&inputs[0].datum_type, &inputs[0].shape, move |s, dt, shape| {
                self.solve(s, outputs, &[(dt, &shape)])
            });
        }
        let n = inputs.len();
        s.given_all((0..n).map(|i| (&inputs[i].datum_type).bex()), move |s, types| {
            s.given_all((0..n).map(|i| (&inputs[i].shape).bex()), move |s, shapes| {
                let described: Vec<(DatumType, &[TDim])> = types
                    .iter()
                    .zip(&shapes)
                    .map(|(datum_type, shape): (&DatumType, &TVec<TDim>)| (*datum_type, shape.as_slice()))
                    .collect();
                self.solve(s, outputs, &described)
            })
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let types = inputs
            .iter()
            .map(|outlet| Ok(model.outlet_fact(*outlet)?.datum_type))
            .collect::<TractResult<Vec<_>>>()?;
        let kernel = self.0.specialize(&types, &model.symbols)?;
        model.wire_node(prefix, MlOp(kernel), inputs)
    }
}

impl<K: Kernel> Op for MlOp<K> {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    op_as_typed_op!();
}

impl<K: Kernel> EvalOp for MlOp<K> {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.0.eval(inputs)
    }
}

impl<K: Kernel> TypedOp for MlOp<K> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shapes: Vec<TVec<TDim>> = inputs.iter().map(|fact| fact.shape.to_tvec()).collect();
        let described: Vec<(DatumType, &[TDim])> = inputs
            .iter()
            .zip(&shapes)
            .map(|(fact, shape)| (fact.datum_type, shape.as_slice()))
            .collect();
        Ok(self
            .0
            .output_facts(&described)?
            .into_iter()
            .map(|(datum_type, shape)| datum_type.fact(shape))
            .collect())
    }

    as_op!();
}

/// `[rows, width]` of a rank-2 input, or `[1, width]` of a rank-1 one.
pub(crate) fn batch_shape(input: &Tensor) -> TractResult<(usize, usize)> {
    match *input.shape() {
        [width] => Ok((1, width)),
        [rows, width] => Ok((rows, width)),
        ref other => bail!("expected a [batch, features] input, got shape {other:?}"),
    }
}

/// `[batch]` or `[batch, n]` for an output derived from a [batch, features] input.
pub(crate) fn batch_dim(input_shape: &[TDim]) -> TDim {
    if input_shape.len() >= 2 {
        input_shape[0].clone()
    } else {
        TDim::from(1)
    }
}

/// A [rows, columns] f32 tensor from row-major values.
pub(crate) fn matrix_f32(rows: usize, columns: usize, values: Vec<f32>) -> TractResult<TValue> {
    Ok(tract_ndarray::Array2::from_shape_vec((rows, columns), values)?
        .into_tensor()
        .into_tvalue())
}
