//! ONNX models, run by tract: loaded, optimised and planned once at start-up.
//!
//! tract reads the graph; the ONNX-ML operators that scikit-learn, XGBoost and LightGBM
//! exports use are ours (`ml`), registered over tract's own. skl2onnx declares an unnamed
//! dynamic batch dimension, so the input fact is set with a symbolic batch size.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::model::limits::{LimitError, ModelLimits};
use crate::model::types::{
    Batch, Data, InputRejected, LoadError, Model, ModelOutput, Output, PredictError, TensorSpec,
};

pub struct OnnxModel {
    name: String,
    plan: Arc<TypedSimplePlan>,
    input_type: DatumType,
    width: usize,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// The output holding per-class probabilities, for classifiers.
    probabilities: Option<usize>,
}

impl OnnxModel {
    /// Loads `path`, within `limits`; the error names the file and what is wrong with it.
    pub fn load(path: &Path, limits: &ModelLimits) -> Result<Self, LoadError> {
        let limit = |error| LoadError::Limit {
            path: path.to_owned(),
            error,
        };
        let size = std::fs::metadata(path)
            .map_err(|err| LoadError::Unsupported {
                path: path.to_owned(),
                reason: err.to_string(),
            })?
            .len();
        if size > limits.max_bytes {
            return Err(limit(LimitError::FileTooLarge {
                bytes: size,
                limit: limits.max_bytes,
            }));
        }
        let bytes = std::fs::read(path).map_err(|err| LoadError::Unsupported {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        Self::load_named(path, name, &bytes, limits)
    }

    /// Loads a model from a file's bytes, named `name`.
    pub fn load_bytes(name: &str, bytes: &[u8], limits: &ModelLimits) -> Result<Self, LoadError> {
        Self::load_named(Path::new(name), name, bytes, limits)
    }

    fn load_named(path: &Path, name: &str, bytes: &[u8], limits: &ModelLimits) -> Result<Self, LoadError> {
        let unsupported = |reason: String| LoadError::Unsupported {
            path: path.to_owned(),
            reason,
        };
        if bytes.len() as u64 > limits.max_bytes {
            return Err(LoadError::Limit {
                path: path.to_owned(),
                error: LimitError::FileTooLarge {
                    bytes: bytes.len() as u64,
                    limit: limits.max_bytes,
                },
            });
        }
        let name = name.to_owned();
        let onnx = crate::model::ml::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|err| unsupported(format!("not an ONNX file: {err}")))?;
        crate::model::limits::check(&proto, limits).map_err(|error| LoadError::Limit {
            path: path.to_owned(),
            error,
        })?;
        if let Some(graph) = &proto.graph
            && let Some((operator, node)) = crate::model::ml::missing_operators(&onnx, graph).first()
        {
            return Err(unsupported(format!(
                "operator {operator} (node {node:?}) is not implemented; the README lists the operators served"
            )));
        }
        // tract is not hardened against every malformed graph: some panic while it builds
        // (an out-of-range axis in a Transpose, say). Caught here, that is a refusal like
        // any other; the release binary, which aborts on a panic, reports it the same way
        // from its panic hook (see main.rs).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::build(path, name, &onnx, &proto)
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
        let unsupported = |reason: String| LoadError::Unsupported {
            path: path.to_owned(),
            reason,
        };
        let unservable = |reason: String| LoadError::Unservable {
            path: path.to_owned(),
            reason,
        };
        let is_classifier = declares_classes(proto);
        let mut model = onnx
            .model_for_proto_model(proto)
            .map_err(|err| unsupported(format!("{err:#}")))?;
        if model.inputs.len() != 1 {
            return Err(unservable(format!(
                "it has {} inputs; only models with one input of feature rows are served",
                model.inputs.len()
            )));
        }
        let fact = model
            .input_fact(0)
            .map_err(|err| unsupported(format!("{err}")))?
            .clone();
        let input_type = fact
            .datum_type
            .concretize()
            .ok_or_else(|| unservable("its input has no declared type".into()))?;
        if !matches!(input_type, DatumType::F32 | DatumType::F64) {
            return Err(unservable(format!(
                "its input is {input_type:?}; only float (FP32 or FP64) features are served"
            )));
        }
        let dims: Vec<Option<TDim>> = fact.shape.dims().map(|dim| dim.concretize()).collect();
        let width = match dims.as_slice() {
            [_, Some(width)] => width.to_i64().ok().filter(|w| *w > 0),
            _ => None,
        }
        .ok_or_else(|| {
            unservable(format!(
                "its input has shape {:?}; only [batch, features] inputs are served",
                fact.shape
            ))
        })? as usize;
        let input_name = model.node(model.inputs[0].node).name.clone();
        let batch = model.symbols.sym("batch");
        model
            .set_input_fact(
                0,
                InferenceFact::dt_shape(input_type, tvec![batch.to_dim(), width.to_dim()]),
            )
            .map_err(|err| unsupported(format!("{err}")))?;
        let typed = model
            .into_optimized()
            .map_err(|err| unsupported(format!("{err:#}")))?;
        let mut outputs = Vec::new();
        for (index, outlet) in typed.outputs.iter().enumerate() {
            let fact = typed
                .output_fact(index)
                .map_err(|err| unsupported(format!("{err}")))?;
            let name = typed
                .outlet_label(*outlet)
                .map(str::to_owned)
                .unwrap_or_else(|| typed.node(outlet.node).name.clone());
            let shape = fact.shape.iter().map(|dim| dim.to_i64().unwrap_or(-1)).collect();
            outputs.push(TensorSpec {
                name,
                datatype: datatype_name(fact.datum_type),
                shape,
            });
        }
        // A classifier answers its labels first, then a [batch, classes] float tensor.
        let probabilities = (is_classifier
            && outputs.len() == 2
            && outputs[1].datatype.starts_with("FP")
            && outputs[1].shape.len() == 2)
            .then_some(1);
        let plan = typed
            .into_runnable()
            .map_err(|err| unsupported(format!("{err:#}")))?;
        let inputs = vec![TensorSpec {
            name: input_name,
            datatype: datatype_name(input_type),
            shape: vec![-1, width as i64],
        }];
        Ok(OnnxModel {
            name,
            plan,
            input_type,
            width,
            inputs,
            outputs,
            probabilities,
        })
    }
}

/// The refusal of a model tract panicked on while building it.
pub fn tract_failed(path: &Path, payload: &(dyn std::any::Any + Send)) -> LoadError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    LoadError::Unsupported {
        path: path.to_owned(),
        reason: format!(
            "tract failed while building its graph ({message}): the file is malformed, or uses an operator in a way this service does not support"
        ),
    }
}

/// Whether the graph holds a classifier: an operator that declares class labels.
fn declares_classes(proto: &pb::ModelProto) -> bool {
    let Some(graph) = proto.graph.as_ref() else {
        return false;
    };
    graph.node.iter().any(|node| {
        node.attribute.iter().any(|attribute| {
            matches!(
                attribute.name.as_str(),
                "classlabels_int64s" | "classlabels_ints" | "classlabels_strings"
            )
        })
    })
}

/// The Open Inference Protocol's name for a tensor type.
fn datatype_name(datum_type: DatumType) -> &'static str {
    match datum_type {
        DatumType::F32 => "FP32",
        DatumType::F64 => "FP64",
        DatumType::F16 => "FP16",
        // tract's Cast to int64 may type its output as a symbolic dimension.
        DatumType::I64 | DatumType::TDim => "INT64",
        DatumType::I32 => "INT32",
        DatumType::I8 => "INT8",
        DatumType::U8 => "UINT8",
        DatumType::Bool => "BOOL",
        DatumType::String => "BYTES",
        _ => "UNSUPPORTED",
    }
}

fn to_data(name: &str, tensor: &Tensor) -> Result<Data, PredictError> {
    let problem = |problem: String| PredictError::Output {
        name: name.to_owned(),
        problem,
    };
    fn values<D: Datum + Clone>(tensor: &Tensor) -> TractResult<Vec<D>> {
        Ok(tensor.try_as_plain_ram()?.as_slice::<D>()?.to_vec())
    }
    let data = match tensor.datum_type() {
        DatumType::F32 => values(tensor).map(Data::F32),
        DatumType::F64 => values(tensor).map(Data::F64),
        DatumType::I64 => values(tensor).map(Data::I64),
        DatumType::TDim => tensor
            .cast_to::<i64>()
            .and_then(|cast| values(&cast))
            .map(Data::I64),
        DatumType::String => values(tensor).map(Data::Str),
        other => tensor
            .cast_to::<f64>()
            .map_err(|_| anyhow::anyhow!("a tensor of type {other:?}"))
            .and_then(|cast| values(&cast))
            .map(Data::F64),
    };
    data.map_err(|err| problem(format!("{err}")))
}

/// The rows in float32, the model's input type. A value beyond float32's range would
/// enter the model as infinity and come out as NaN: refused, as the client's.
fn narrow_to_f32(batch: &Batch<'_>) -> Result<Vec<f32>, PredictError> {
    let width = batch.width.max(1);
    batch
        .values
        .iter()
        .enumerate()
        .map(|(at, &value)| {
            let narrow = value as f32;
            if narrow.is_finite() {
                Ok(narrow)
            } else {
                Err(PredictError::Rejected(format!(
                    "row {}, feature {}: {value:e} is beyond the range of float32, the model's input type",
                    at / width,
                    at % width
                )))
            }
        })
        .collect()
}

/// JSON has no NaN or infinity: an output that holds one (a finite input too large for
/// what the model computes from it) is refused, naming the row, rather than sent as null.
fn check_finite(output: &Output) -> Result<(), PredictError> {
    let first_bad = match &output.data {
        Data::F32(values) => values.iter().position(|v| !v.is_finite()),
        Data::F64(values) => values.iter().position(|v| !v.is_finite()),
        Data::I64(_) | Data::Str(_) => None,
    };
    let Some(at) = first_bad else {
        return Ok(());
    };
    let per_row = output.shape.iter().skip(1).product::<usize>().max(1);
    Err(PredictError::Rejected(format!(
        "for row {}, the model's output {:?} is not a finite number, which JSON cannot carry: the input is outside what the model can compute with",
        at / per_row,
        output.name
    )))
}

impl Model for OnnxModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> &str {
        "onnx_onnxv1"
    }

    fn input_width(&self) -> Option<usize> {
        Some(self.width)
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn predict(&self, batch: &Batch<'_>) -> Result<ModelOutput, PredictError> {
        let shape = [batch.rows, self.width];
        let input = match self.input_type {
            DatumType::F64 => Tensor::from_shape(&shape, batch.values),
            _ => Tensor::from_shape(&shape, &narrow_to_f32(batch)?),
        }
        .map_err(|err| PredictError::Runtime(format!("{err}")))?;
        let results = self.plan.run(tvec!(input.into())).map_err(|err| {
            match err
                .chain()
                .find_map(|cause| cause.downcast_ref::<InputRejected>())
            {
                Some(rejected) => PredictError::Rejected(rejected.to_string()),
                None => PredictError::Runtime(format!("{err:#}")),
            }
        })?;
        let mut tensors = Vec::with_capacity(results.len());
        for (spec, value) in self.outputs.iter().zip(results.iter()) {
            let output = Output {
                name: spec.name.clone(),
                shape: value.shape().to_vec(),
                data: to_data(&spec.name, value)?,
            };
            check_finite(&output)?;
            tensors.push(output);
        }
        let first = &tensors[0];
        let per_row: usize = first.shape.iter().skip(1).product();
        if per_row != 1 {
            return Err(PredictError::Output {
                name: first.name.clone(),
                problem: format!(
                    "it has shape {:?}; /score serves one value or label per row (use /v2/models/{}/infer for the whole tensor)",
                    first.shape, self.name
                ),
            });
        }
        let score = first.data.clone();
        let probabilities = self.probabilities.map(|index| {
            let classes = tensors[index].shape.get(1).copied().unwrap_or(1);
            tensors[index].data.rows(classes)
        });
        Ok(ModelOutput {
            tensors,
            score,
            probabilities,
        })
    }
}
