//! The tutorial's model: the score is the input.

use crate::model::types::{Array, Dim, ElementType, Model, PredictError, TensorSpec};

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
            element: ElementType::F64,
            shape: vec![Dim::Dynamic, Dim::Dynamic],
            batched: true,
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

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn echoes(&self) -> bool {
        true
    }

    fn predict(&self, inputs: Vec<Array>) -> Result<Vec<Array>, PredictError> {
        Ok(inputs)
    }
}
