//! ONNX models, run by tract: loaded, optimised and planned once at start-up.
//!
//! tract reads the graph; the ONNX-ML operators that scikit-learn, XGBoost, LightGBM and
//! CatBoost exports use are ours (`ml`), registered over tract's own. Every input and
//! output is served as the graph declares it: a dimension the graph leaves open (the
//! batch, a sequence length) becomes a symbol, the first axis of every input the same
//! one (`batch`), since exporters leave the batch unnamed and the inputs of a DataFrame
//! pipeline are concatenated along it.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::model::limits::{LimitError, ModelLimits};
use crate::model::types::{
    Array, Data, Dim, ElementType, InputRejected, LoadError, Model, PredictError, TensorSpec, warm_up_inputs,
};

pub struct OnnxModel {
    name: String,
    plan: Arc<TypedSimplePlan>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl OnnxModel {
    /// Loads `path`, within `limits`, named after the file; the error names the file and
    /// what is wrong with it.
    pub fn load(path: &Path, limits: &ModelLimits) -> Result<Self, LoadError> {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        Self::load_as(path, name, limits)
    }

    /// Loads `path` as the model `name` (a repository names a model by its directory).
    pub fn load_as(path: &Path, name: &str, limits: &ModelLimits) -> Result<Self, LoadError> {
        let bytes = Self::read(path, limits)?;
        Self::load_named(path, name, &bytes, limits)
    }

    /// A model file's bytes, refused before they are read if the file is over the limit.
    pub fn read(path: &Path, limits: &ModelLimits) -> Result<Vec<u8>, LoadError> {
        let unreadable = |source| LoadError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(unreadable)?.len();
        if size > limits.max_bytes {
            return Err(LoadError::Limit {
                path: path.to_owned(),
                source: LimitError::FileTooLarge {
                    bytes: size,
                    limit: limits.max_bytes,
                },
            });
        }
        std::fs::read(path).map_err(unreadable)
    }

    /// Loads a model from a file's bytes, named `name`.
    pub fn load_bytes(name: &str, bytes: &[u8], limits: &ModelLimits) -> Result<Self, LoadError> {
        Self::load_named(Path::new(name), name, bytes, limits)
    }

    /// Loads the bytes read from `path` (which names the file in errors) as the model `name`.
    pub fn load_named(
        path: &Path,
        name: &str,
        bytes: &[u8],
        limits: &ModelLimits,
    ) -> Result<Self, LoadError> {
        if bytes.len() as u64 > limits.max_bytes {
            return Err(LoadError::Limit {
                path: path.to_owned(),
                source: LimitError::FileTooLarge {
                    bytes: bytes.len() as u64,
                    limit: limits.max_bytes,
                },
            });
        }
        let onnx = crate::model::ml::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|err| unsupported(path, "not an ONNX file", err))?;
        crate::model::limits::check(&proto, limits).map_err(|source| LoadError::Limit {
            path: path.to_owned(),
            source,
        })?;
        if let Some(graph) = &proto.graph
            && let Some(reason) = not_a_tensor(graph)
        {
            return Err(LoadError::Unservable {
                path: path.to_owned(),
                reason,
            });
        }
        if let Some(graph) = &proto.graph
            && let Some((operator, node)) = crate::model::ml::missing_operators(&onnx, graph).first()
        {
            return Err(LoadError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "operator {operator} (node {node:?}) is not implemented; the README lists the operators served"
                ),
                source: None,
            });
        }
        // tract is not hardened against every malformed graph: some panic while it builds
        // or first runs (an out-of-range axis in a Transpose, say). Caught here, that is a
        // refusal like any other; the release binary, which aborts on a panic, reports it
        // the same way from its panic hook (see main.rs).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let model = Self::build(path, name.to_owned(), &onnx, &proto)?;
            model.warm_up(path)?;
            Ok(model)
        }))
        .unwrap_or_else(|payload| Err(tract_failed(path, payload.as_ref())))
    }

    /// tract's part: the graph built, typed, optimised and planned.
    fn build(
        path: &Path,
        name: String,
        onnx: &tract_onnx::Onnx,
        proto: &pb::ModelProto,
    ) -> Result<Self, LoadError> {
        let unservable = |reason: String| LoadError::Unservable {
            path: path.to_owned(),
            reason,
        };
        let mut model = onnx
            .model_for_proto_model(proto)
            .map_err(|err| unsupported(path, "tract could not read the graph", err))?;
        if model.outputs.is_empty() {
            return Err(unservable("its graph has no outputs: it answers nothing".into()));
        }
        // The batch: the symbol the graph names it by, where it names one (value infos
        // inside the graph may use it too), else ours.
        let named_batch = (0..model.inputs.len()).find_map(|index| {
            let fact = model.input_fact(index).ok()?;
            let first = fact.shape.dims().next()?.concretize()?;
            first.to_i64().is_err().then_some(first)
        });
        let batch = named_batch.unwrap_or_else(|| model.symbols.sym("batch").to_dim());
        let mut inputs = Vec::with_capacity(model.inputs.len());
        for index in 0..model.inputs.len() {
            let input_name = model.node(model.inputs[index].node).name.clone();
            let fact = model
                .input_fact(index)
                .map_err(|err| unsupported(path, "tract could not read an input", err))?
                .clone();
            let datum_type = fact
                .datum_type
                .concretize()
                .ok_or_else(|| unservable(format!("input {input_name:?} has no declared type")))?;
            let element = element_type(datum_type).ok_or_else(|| {
                unservable(format!(
                    "input {input_name:?} is of type {datum_type:?}, which no request can carry"
                ))
            })?;
            let dims: Vec<Option<TDim>> = fact.shape.dims().map(|dim| dim.concretize()).collect();
            if fact.shape.rank().concretize().is_none() {
                return Err(unservable(format!("input {input_name:?} declares no shape")));
            }
            let mut declared = Vec::with_capacity(dims.len());
            let mut typed_dims: TVec<TDim> = tvec![];
            for (axis, dim) in dims.into_iter().enumerate() {
                match dim.as_ref().and_then(|d| d.to_i64().ok()) {
                    Some(size) if size >= 0 => {
                        declared.push(Dim::Fixed(size as usize));
                        typed_dims.push(size.to_dim());
                    }
                    _ => {
                        declared.push(Dim::Dynamic);
                        typed_dims.push(match dim {
                            _ if axis == 0 => batch.clone(),
                            Some(symbolic) => symbolic,
                            None => model.symbols.sym(&format!("{input_name}_{axis}")).to_dim(),
                        });
                    }
                }
            }
            model
                .set_input_fact(index, InferenceFact::dt_shape(datum_type, typed_dims))
                .map_err(|err| unsupported(path, "tract could not type an input", err))?;
            inputs.push(TensorSpec {
                name: input_name,
                element,
                shape: declared,
                batched: true,
            });
        }
        // Exporters declare output shapes with symbols of their own (CatBoost's `N`), or
        // wrongly (`[-1]` for a `[N, 1]` answer): tract infers them from the graph instead.
        for index in 0..model.outputs.len() {
            model
                .set_output_fact(index, InferenceFact::default())
                .map_err(|err| unsupported(path, "tract could not read an output", err))?;
        }
        let typed = model
            .into_optimized()
            .map_err(|err| unsupported(path, "tract could not analyse the graph", err))?;
        // The batch as the typed graph spells it: the symbol, or the inputs' fixed length.
        let batch_dim = match typed.input_fact(0) {
            Ok(fact) => fact.shape.iter().next().cloned(),
            Err(_) => None,
        };
        let mut outputs = Vec::with_capacity(typed.outputs.len());
        for (index, outlet) in typed.outputs.iter().enumerate() {
            let fact = typed
                .output_fact(index)
                .map_err(|err| unsupported(path, "tract could not type an output", err))?;
            let name = typed
                .outlet_label(*outlet)
                .map(str::to_owned)
                .unwrap_or_else(|| typed.node(outlet.node).name.clone());
            let element = element_type(fact.datum_type).ok_or_else(|| {
                unservable(format!(
                    "output {name:?} is of type {:?}, which no answer can carry",
                    fact.datum_type
                ))
            })?;
            let shape = fact
                .shape
                .iter()
                .map(|dim| match dim.to_i64() {
                    Ok(size) if size >= 0 => Dim::Fixed(size as usize),
                    _ => Dim::Dynamic,
                })
                .collect();
            let batched = batch_dim.is_some() && fact.shape.iter().next() == batch_dim.as_ref();
            outputs.push(TensorSpec {
                name,
                element,
                shape,
                batched,
            });
        }
        let plan = typed
            .into_runnable()
            .map_err(|err| unsupported(path, "tract could not plan the graph", err))?;
        Ok(OnnxModel {
            name,
            plan,
            inputs,
            outputs,
        })
    }

    /// Runs one row shaped as the inputs declare, so that a graph tract analyses but
    /// cannot run is refused now rather than on every request. A value the model refuses
    /// (a strict encoder that knows no zero) proves it runs as far as its checks.
    fn warm_up(&self, path: &Path) -> Result<(), LoadError> {
        match self.predict(warm_up_inputs(&self.inputs)) {
            Ok(_) | Err(PredictError::Rejected(_)) => Ok(()),
            Err(source) => Err(LoadError::WarmUp {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// Why an input of `graph` is not a tensor, if one is not: a map (what DictVectorizer
/// and CastMap take) or a sequence, which neither protocol carries and tract does not
/// hold. (tract's reader knows only tensor types: any other is a type with no value.)
fn not_a_tensor(graph: &pb::GraphProto) -> Option<String> {
    graph.input.iter().find_map(|input| {
        let declared = input.r#type.as_ref()?;
        declared.value.is_none().then(|| {
            format!(
                "input {:?} is a map or a sequence, not a tensor: neither /score nor /v2 carries one (DictVectorizer and CastMap take maps)",
                input.name
            )
        })
    })
}

fn unsupported(path: &Path, reason: &str, error: TractError) -> LoadError {
    LoadError::Unsupported {
        path: path.to_owned(),
        reason: reason.to_owned(),
        source: Some(error.into()),
    }
}

/// What a panic said, on one line.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
        .replace('\n', " ")
}

/// The refusal of a model tract panicked on while building or first running it.
pub fn tract_failed(path: &Path, payload: &(dyn std::any::Any + Send)) -> LoadError {
    let message = panic_message(payload);
    LoadError::Unsupported {
        path: path.to_owned(),
        reason: format!(
            "tract failed while building its graph ({message}): the file is malformed, or uses an operator in a way this service does not support"
        ),
        source: None,
    }
}

/// The element type a tract type is served as, if any.
fn element_type(datum_type: DatumType) -> Option<ElementType> {
    Some(match datum_type {
        DatumType::Bool => ElementType::Bool,
        DatumType::U8 => ElementType::U8,
        DatumType::U16 => ElementType::U16,
        DatumType::U32 => ElementType::U32,
        DatumType::U64 => ElementType::U64,
        DatumType::I8 => ElementType::I8,
        DatumType::I16 => ElementType::I16,
        DatumType::I32 => ElementType::I32,
        // tract's Cast to int64 may type its output as a symbolic dimension.
        DatumType::I64 | DatumType::TDim => ElementType::I64,
        DatumType::F16 => ElementType::F16,
        DatumType::F32 => ElementType::F32,
        DatumType::F64 => ElementType::F64,
        DatumType::String => ElementType::Str,
        _ => return None,
    })
}

/// Our array as tract's tensor, of the same type: copied once into tract's aligned
/// storage (what its kernels read), as `Tensor::from_shape` does; strings move.
fn to_tensor(array: Array) -> TractResult<Tensor> {
    let shape = array.shape.as_slice();
    match array.data {
        Data::Bool(v) => Tensor::from_shape(shape, &v),
        Data::U8(v) => Tensor::from_shape(shape, &v),
        Data::U16(v) => Tensor::from_shape(shape, &v),
        Data::U32(v) => Tensor::from_shape(shape, &v),
        Data::U64(v) => Tensor::from_shape(shape, &v),
        Data::I8(v) => Tensor::from_shape(shape, &v),
        Data::I16(v) => Tensor::from_shape(shape, &v),
        Data::I32(v) => Tensor::from_shape(shape, &v),
        Data::I64(v) => Tensor::from_shape(shape, &v),
        Data::F16(v) => Tensor::from_shape(shape, &v),
        Data::F32(v) => Tensor::from_shape(shape, &v),
        Data::F64(v) => Tensor::from_shape(shape, &v),
        Data::Str(v) => Ok(tract_ndarray::ArrayD::from_shape_vec(shape, v)?.into_tensor()),
    }
}

/// tract's tensor as our array.
fn to_array(tensor: &Tensor) -> TractResult<Array> {
    fn values<D: Datum + Clone>(tensor: &Tensor) -> TractResult<Vec<D>> {
        Ok(tensor.try_as_plain_ram()?.as_slice::<D>()?.to_vec())
    }
    let data = match tensor.datum_type() {
        DatumType::Bool => Data::Bool(values(tensor)?),
        DatumType::U8 => Data::U8(values(tensor)?),
        DatumType::U16 => Data::U16(values(tensor)?),
        DatumType::U32 => Data::U32(values(tensor)?),
        DatumType::U64 => Data::U64(values(tensor)?),
        DatumType::I8 => Data::I8(values(tensor)?),
        DatumType::I16 => Data::I16(values(tensor)?),
        DatumType::I32 => Data::I32(values(tensor)?),
        DatumType::I64 => Data::I64(values(tensor)?),
        DatumType::TDim => Data::I64(values(&*tensor.cast_to::<i64>()?)?),
        DatumType::F16 => Data::F16(values(tensor)?),
        DatumType::F32 => Data::F32(values(tensor)?),
        DatumType::F64 => Data::F64(values(tensor)?),
        DatumType::String => Data::Str(values(tensor)?),
        other => return Err(anyhow::anyhow!("a tensor of type {other:?}")),
    };
    Ok(Array {
        shape: tensor.shape().to_vec(),
        data,
    })
}

impl Model for OnnxModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> &str {
        "onnx_onnxv1"
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn predict(&self, inputs: Vec<Array>) -> Result<Vec<Array>, PredictError> {
        let runtime = |err: TractError| PredictError::Runtime(err.into());
        let tensors = inputs
            .into_iter()
            .map(|array| to_tensor(array).map(TValue::from))
            .collect::<TractResult<TVec<TValue>>>()
            .map_err(runtime)?;
        let results = self.plan.run(tensors).map_err(|err| {
            match err
                .chain()
                .find_map(|cause| cause.downcast_ref::<InputRejected>())
            {
                Some(rejected) => PredictError::Rejected(rejected.to_string()),
                None => runtime(err),
            }
        })?;
        self.outputs
            .iter()
            .zip(results.iter())
            .map(|(spec, value)| {
                to_array(value).map_err(|err| PredictError::Output {
                    name: spec.name.clone(),
                    problem: format!("{err:#}"),
                })
            })
            .collect()
    }
}
