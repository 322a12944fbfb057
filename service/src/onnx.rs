//! ONNX models, run by tract: loaded, optimised and planned once at start-up.
//!
//! What tract leaves to us, found by trying scikit-learn exports (see the README's table):
//! skl2onnx declares an unnamed dynamic batch dimension, so the input fact is set with a
//! symbolic batch size; and for some tree classifiers tract's label output disagrees with
//! its (correct) probabilities, so when a classifier has a probability output the label
//! is taken from the argmax of the probabilities and the class labels the model declares.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::model::{Batch, Data, Model, ModelOutput, Output, PredictError, TensorSpec};

pub struct OnnxModel {
    name: String,
    plan: Arc<TypedSimplePlan>,
    input_type: DatumType,
    width: usize,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// For classifiers: the labels, in the order of the probability columns.
    class_labels: Option<Data>,
    /// The output holding per-class probabilities, if any.
    probabilities: Option<usize>,
}

impl OnnxModel {
    /// Loads `path`; the error names the file and what is wrong with it.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_owned();
        let proto = onnx()
            .proto_model_for_path(path)
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        let class_labels = class_labels(&proto);
        let mut model = onnx()
            .model_for_proto_model(&proto)
            .map_err(|err| anyhow::anyhow!("{err:#}"))
            .with_context(|| format!("{shown} is not a model tract can load"))?;
        if model.inputs.len() != 1 {
            bail!(
                "{shown} has {} inputs; only models with one input of feature rows are served",
                model.inputs.len()
            );
        }
        let fact = model
            .input_fact(0)
            .map_err(|err| anyhow::anyhow!("{err}"))?
            .clone();
        let input_type = fact
            .datum_type
            .concretize()
            .with_context(|| format!("{shown}: its input has no declared type"))?;
        let dims: Vec<Option<TDim>> = fact.shape.dims().map(|dim| dim.concretize()).collect();
        let width = match dims.as_slice() {
            [_, Some(width)] => width.to_i64().ok().filter(|w| *w > 0),
            _ => None,
        }
        .with_context(|| {
            format!(
                "{shown}: its input has shape {:?}; only [batch, features] inputs are served",
                fact.shape
            )
        })? as usize;
        if !matches!(input_type, DatumType::F32 | DatumType::F64) {
            bail!("{shown}: its input is {input_type:?}; only float (FP32 or FP64) features are served");
        }
        let input_name = model.node(model.inputs[0].node).name.clone();
        let batch = model.symbols.sym("batch");
        model
            .set_input_fact(
                0,
                InferenceFact::dt_shape(input_type, tvec![batch.to_dim(), width.to_dim()]),
            )
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        let typed = model
            .into_optimized()
            .map_err(|err| anyhow::anyhow!("{err:#}"))
            .with_context(|| format!("{shown} uses something tract cannot run"))?;
        let mut outputs = Vec::new();
        for (index, outlet) in typed.outputs.iter().enumerate() {
            let fact = typed.output_fact(index).map_err(|err| anyhow::anyhow!("{err}"))?;
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
        let probabilities = (outputs.len() == 2
            && outputs[1].datatype.starts_with("FP")
            && outputs[1].shape.len() == 2
            && class_labels.is_some())
        .then_some(1);
        let plan = typed.into_runnable().map_err(|err| anyhow::anyhow!("{err:#}"))?;
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
            class_labels,
            probabilities,
        })
    }
}

/// The class labels a scikit-learn classifier's ONNX graph declares, if it has any.
fn class_labels(proto: &pb::ModelProto) -> Option<Data> {
    let graph = proto.graph.as_ref()?;
    graph
        .node
        .iter()
        .filter(|node| node.op_type.ends_with("Classifier"))
        .find_map(|node| {
            node.attribute
                .iter()
                .find_map(|attribute| match attribute.name.as_str() {
                    "classlabels_int64s" | "classlabels_ints" if !attribute.ints.is_empty() => {
                        Some(Data::I64(attribute.ints.clone()))
                    }
                    "classlabels_strings" if !attribute.strings.is_empty() => Some(Data::Str(
                        attribute
                            .strings
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect(),
                    )),
                    _ => None,
                })
        })
}

/// The Open Inference Protocol's name for a tensor type.
fn datatype_name(datum_type: DatumType) -> &'static str {
    match datum_type {
        DatumType::F32 => "FP32",
        DatumType::F64 => "FP64",
        DatumType::F16 => "FP16",
        DatumType::I64 => "INT64",
        DatumType::I32 => "INT32",
        DatumType::I8 => "INT8",
        DatumType::U8 => "UINT8",
        DatumType::Bool => "BOOL",
        DatumType::String => "BYTES",
        _ => "UNSUPPORTED",
    }
}

fn to_data(tensor: &Tensor) -> Result<Data, PredictError> {
    fn values<D: Datum + Clone>(tensor: &Tensor) -> Result<Vec<D>, PredictError> {
        let view = tensor
            .to_plain_array_view::<D>()
            .map_err(|err| PredictError(format!("{err}")))?;
        Ok(view.iter().cloned().collect())
    }
    Ok(match tensor.datum_type() {
        DatumType::F32 => Data::F32(values(tensor)?),
        DatumType::F64 => Data::F64(values(tensor)?),
        DatumType::I64 => Data::I64(values(tensor)?),
        DatumType::String => Data::Str(values(tensor)?),
        other => {
            let cast = tensor
                .cast_to::<f64>()
                .map_err(|_| PredictError(format!("an output of type {other:?}")))?;
            Data::F64(values(&cast)?)
        }
    })
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
            _ => {
                let values: Vec<f32> = batch.values.iter().map(|v| *v as f32).collect();
                Tensor::from_shape(&shape, &values)
            }
        }
        .map_err(|err| PredictError(format!("{err}")))?;
        let results = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|err| PredictError(format!("{err:#}")))?;
        let mut tensors = Vec::with_capacity(results.len());
        for (spec, value) in self.outputs.iter().zip(results.iter()) {
            tensors.push(Output {
                name: spec.name.clone(),
                shape: value.shape().to_vec(),
                data: to_data(value)?,
            });
        }
        let mut probabilities = None;
        if let (Some(index), Some(labels)) = (self.probabilities, &self.class_labels) {
            let classes = *tensors[index].shape.get(1).unwrap_or(&0);
            let columns: Vec<f64> = tensors[index].data.as_f64();
            if classes > 0 && classes == labels.len() {
                let chosen: Vec<usize> = columns
                    .chunks(classes)
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .fold(0, |best, (i, p)| if *p > row[best] { i } else { best })
                    })
                    .collect();
                // The label output follows the probabilities (see the module's note).
                tensors[0].data = labels.pick(&chosen);
                tensors[0].shape = vec![batch.rows];
                probabilities = Some(tensors[index].data.rows(classes));
            }
        }
        let score = match &tensors[0].data {
            // [rows] or [rows, 1]: already one value per row.
            Data::F32(_) | Data::F64(_) if tensors[0].shape.iter().skip(1).product::<usize>() == 1 => {
                tensors[0].data.clone()
            }
            Data::F32(_) | Data::F64(_) => {
                return Err(PredictError(format!(
                    "output {} has shape {:?}; /score serves one value or label per row (use /v2/models/{}/infer for the whole tensor)",
                    tensors[0].name, tensors[0].shape, self.name
                )));
            }
            labels => labels.clone(),
        };
        Ok(ModelOutput {
            tensors,
            score,
            probabilities,
        })
    }
}
