//! What a model is: the trait every model implements, the batches it scores, the
//! tensors it answers with, and its errors.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Rows of features, row-major: what a model scores.
pub struct Batch<'a> {
    pub rows: usize,
    pub width: usize,
    pub values: &'a [f64],
}

/// A tensor a model takes or gives, as the Open Inference Protocol describes it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: &'static str,
    /// -1 for a dimension that varies (the batch).
    pub shape: Vec<i64>,
}

/// A tensor's values.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Str(Vec<String>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Open Inference Protocol's name for this type.
    pub fn datatype(&self) -> &'static str {
        match self {
            Data::F32(_) => "FP32",
            Data::F64(_) => "FP64",
            Data::I64(_) => "INT64",
            Data::Str(_) => "BYTES",
        }
    }

    /// Numeric values widened to f64 (labels that are strings give nothing).
    pub fn as_f64(&self) -> Vec<f64> {
        match self {
            Data::F32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            Data::F64(v) => v.clone(),
            Data::I64(v) => v.iter().map(|x| *x as f64).collect(),
            Data::Str(_) => Vec::new(),
        }
    }

    /// Consecutive runs of `width` elements.
    pub fn rows(&self, width: usize) -> Vec<Data> {
        let count = self.len().checked_div(width).unwrap_or(0);
        (0..count)
            .map(|row| self.pick(&(row * width..(row + 1) * width).collect::<Vec<_>>()))
            .collect()
    }

    /// The elements at `indices`, in that order.
    pub fn pick(&self, indices: &[usize]) -> Data {
        match self {
            Data::F32(v) => Data::F32(indices.iter().map(|i| v[*i]).collect()),
            Data::F64(v) => Data::F64(indices.iter().map(|i| v[*i]).collect()),
            Data::I64(v) => Data::I64(indices.iter().map(|i| v[*i]).collect()),
            Data::Str(v) => Data::Str(indices.iter().map(|i| v[*i].clone()).collect()),
        }
    }
}

/// One named output tensor.
#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// What a model answers for a batch.
#[derive(Debug)]
pub struct ModelOutput {
    /// Every output of the model, in its order (the Open Inference Protocol serves these).
    pub tensors: Vec<Output>,
    /// One value or label per row (what `/score` answers).
    pub score: Data,
    /// For classifiers: each row's probabilities, one per class.
    pub probabilities: Option<Vec<Data>>,
}

/// Why a model could not answer.
#[derive(Debug)]
pub enum PredictError {
    /// The model cannot take or compute with a value the request holds (a category it
    /// does not know, a number beyond its float type): the client's mistake, which no
    /// check before the model can see.
    Rejected(String),
    /// The runtime could not run the graph on input that passed validation: the server's
    /// fault, not the client's.
    Runtime(String),
    /// An output came back in a form this service cannot serve.
    Output { name: String, problem: String },
}

impl fmt::Display for PredictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PredictError::Rejected(message) => write!(f, "the model refuses this input: {message}"),
            PredictError::Runtime(message) => write!(f, "the runtime failed: {message}"),
            PredictError::Output { name, problem } => write!(f, "output {name}: {problem}"),
        }
    }
}

impl std::error::Error for PredictError {}

/// What an operator raises for a value it refuses, so that the error reaches the client
/// as theirs (see [`PredictError::Rejected`]) through the runtime's own errors.
#[derive(Debug)]
pub(crate) struct InputRejected(pub(crate) String);

impl fmt::Display for InputRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputRejected {}

/// Why a model could not be loaded. Each names the file; start-up prints it as one line.
#[derive(Debug)]
pub enum LoadError {
    Missing(PathBuf),
    /// tract could not read, translate or plan the graph.
    Unsupported {
        path: PathBuf,
        reason: String,
    },
    /// The graph loads but is not one this service can serve (inputs, types, shapes).
    Unservable {
        path: PathBuf,
        reason: String,
    },
    /// The file breaks a limit on what loading may cost.
    Limit {
        path: PathBuf,
        error: crate::model::limits::LimitError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Missing(path) => write!(
                f,
                "cannot load model {}: no such file (give an .onnx file, or \"identity\")",
                path.display()
            ),
            LoadError::Unsupported { path, reason } => {
                write!(f, "cannot load model {}: {reason}", path.display())
            }
            LoadError::Unservable { path, reason } => {
                write!(f, "cannot serve model {}: {reason}", path.display())
            }
            LoadError::Limit { path, error } => write!(f, "cannot load model {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {}

/// A loaded model. Implementations are immutable after loading, so one instance serves
/// every request concurrently.
pub trait Model: Send + Sync + 'static {
    /// The name reported in logs and metrics, and served under `/v2/models/{name}`.
    fn name(&self) -> &str;

    /// The Open Inference Protocol's platform name.
    fn platform(&self) -> &str;

    /// How many features each row must have, when the model knows.
    fn input_width(&self) -> Option<usize>;

    fn inputs(&self) -> &[TensorSpec];

    fn outputs(&self) -> &[TensorSpec];

    /// Whether the model answers with its input unchanged; then the service echoes the
    /// request's own text, so numbers keep their exact spelling.
    fn echoes(&self) -> bool {
        false
    }

    /// Scores every row.
    fn predict(&self, batch: &Batch<'_>) -> Result<ModelOutput, PredictError>;
}
