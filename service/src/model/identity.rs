//! The tutorial's model: the score is the input.

use crate::model::types::{Batch, Data, Model, ModelOutput, Output, PredictError, TensorSpec};

/// Echoes its input. Served as `echo` on the Open Inference Protocol; `/score` answers
/// with the request's own text, so numbers keep their exact spelling.
pub struct Identity {
    inputs: [TensorSpec; 1],
    outputs: [TensorSpec; 1],
}

impl Default for Identity {
    fn default() -> Self {
        let spec = |name: &str| TensorSpec {
            name: name.to_owned(),
            datatype: "FP64",
            shape: vec![-1, -1],
        };
        Identity {
            inputs: [spec("input0")],
            outputs: [spec("output0")],
        }
    }
}

impl Model for Identity {
    fn name(&self) -> &str {
        "echo"
    }

    fn platform(&self) -> &str {
        "echo"
    }

    fn input_width(&self) -> Option<usize> {
        None
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn echoes(&self) -> bool {
        true
    }

    fn predict(&self, batch: &Batch<'_>) -> Result<ModelOutput, PredictError> {
        let data = Data::F64(batch.values.to_vec());
        Ok(ModelOutput {
            tensors: vec![Output {
                name: "output0".into(),
                shape: vec![batch.rows, batch.width],
                data: data.clone(),
            }],
            score: data,
            probabilities: None,
        })
    }
}
