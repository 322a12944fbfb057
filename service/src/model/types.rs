//! What a model is to the rest of the service: named tensors in, named tensors out. A
//! model declares its inputs and outputs as its graph does (name, element type, shape
//! with its dynamic dimensions); `predict` takes one array per input and answers every
//! output. What a route makes of that (a score per row, the protocol's tensors) is the
//! route's business, decided once when the model is loaded.

use std::fmt;
use std::path::PathBuf;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use tract_onnx::prelude::f16;

/// The element types a tensor can hold, named as the Open Inference Protocol names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
    /// UTF-8 strings (the protocol's BYTES).
    Str,
}

impl ElementType {
    pub const ALL: [ElementType; 13] = [
        ElementType::Bool,
        ElementType::U8,
        ElementType::U16,
        ElementType::U32,
        ElementType::U64,
        ElementType::I8,
        ElementType::I16,
        ElementType::I32,
        ElementType::I64,
        ElementType::F16,
        ElementType::F32,
        ElementType::F64,
        ElementType::Str,
    ];

    /// The protocol's name: `FP32`, `INT64`, `BYTES`, …
    pub fn protocol_name(self) -> &'static str {
        match self {
            ElementType::Bool => "BOOL",
            ElementType::U8 => "UINT8",
            ElementType::U16 => "UINT16",
            ElementType::U32 => "UINT32",
            ElementType::U64 => "UINT64",
            ElementType::I8 => "INT8",
            ElementType::I16 => "INT16",
            ElementType::I32 => "INT32",
            ElementType::I64 => "INT64",
            ElementType::F16 => "FP16",
            ElementType::F32 => "FP32",
            ElementType::F64 => "FP64",
            ElementType::Str => "BYTES",
        }
    }

    pub fn from_protocol_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.protocol_name() == name)
    }

    /// Bytes per element in the binary tensor format (strings have no fixed size).
    pub fn size(self) -> Option<usize> {
        Some(match self {
            ElementType::Bool | ElementType::U8 | ElementType::I8 => 1,
            ElementType::U16 | ElementType::I16 | ElementType::F16 => 2,
            ElementType::U32 | ElementType::I32 | ElementType::F32 => 4,
            ElementType::U64 | ElementType::I64 | ElementType::F64 => 8,
            ElementType::Str => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, ElementType::F16 | ElementType::F32 | ElementType::F64)
    }

    pub fn is_integer(self) -> bool {
        !self.is_float() && !matches!(self, ElementType::Bool | ElementType::Str)
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.protocol_name())
    }
}

/// A tensor's values, row-major, one variant per element type.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Str(Vec<String>),
}

/// Runs `$body` with `$values` bound to the vector inside any [`Data`].
macro_rules! for_each_data {
    ($data:expr, $values:ident => $body:expr) => {
        match $data {
            $crate::model::types::Data::Bool($values) => $body,
            $crate::model::types::Data::U8($values) => $body,
            $crate::model::types::Data::U16($values) => $body,
            $crate::model::types::Data::U32($values) => $body,
            $crate::model::types::Data::U64($values) => $body,
            $crate::model::types::Data::I8($values) => $body,
            $crate::model::types::Data::I16($values) => $body,
            $crate::model::types::Data::I32($values) => $body,
            $crate::model::types::Data::I64($values) => $body,
            $crate::model::types::Data::F16($values) => $body,
            $crate::model::types::Data::F32($values) => $body,
            $crate::model::types::Data::F64($values) => $body,
            $crate::model::types::Data::Str($values) => $body,
        }
    };
}
pub(crate) use for_each_data;

impl Data {
    pub fn len(&self) -> usize {
        for_each_data!(self, values => values.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn element_type(&self) -> ElementType {
        match self {
            Data::Bool(_) => ElementType::Bool,
            Data::U8(_) => ElementType::U8,
            Data::U16(_) => ElementType::U16,
            Data::U32(_) => ElementType::U32,
            Data::U64(_) => ElementType::U64,
            Data::I8(_) => ElementType::I8,
            Data::I16(_) => ElementType::I16,
            Data::I32(_) => ElementType::I32,
            Data::I64(_) => ElementType::I64,
            Data::F16(_) => ElementType::F16,
            Data::F32(_) => ElementType::F32,
            Data::F64(_) => ElementType::F64,
            Data::Str(_) => ElementType::Str,
        }
    }

    /// `count` elements of `element`'s neutral value: zeros, false, empty strings.
    pub fn zeros(element: ElementType, count: usize) -> Data {
        match element {
            ElementType::Bool => Data::Bool(vec![false; count]),
            ElementType::U8 => Data::U8(vec![0; count]),
            ElementType::U16 => Data::U16(vec![0; count]),
            ElementType::U32 => Data::U32(vec![0; count]),
            ElementType::U64 => Data::U64(vec![0; count]),
            ElementType::I8 => Data::I8(vec![0; count]),
            ElementType::I16 => Data::I16(vec![0; count]),
            ElementType::I32 => Data::I32(vec![0; count]),
            ElementType::I64 => Data::I64(vec![0; count]),
            ElementType::F16 => Data::F16(vec![f16::ZERO; count]),
            ElementType::F32 => Data::F32(vec![0.0; count]),
            ElementType::F64 => Data::F64(vec![0.0; count]),
            ElementType::Str => Data::Str(vec![String::new(); count]),
        }
    }

    /// The index of the first float among elements `range` that is NaN or infinite,
    /// which JSON cannot carry.
    pub fn first_non_finite(&self, range: std::ops::Range<usize>) -> Option<usize> {
        let start = range.start;
        let found = match self {
            Data::F16(values) => values[range].iter().position(|v| !v.is_finite()),
            Data::F32(values) => values[range].iter().position(|v| !v.is_finite()),
            Data::F64(values) => values[range].iter().position(|v| !v.is_finite()),
            _ => None,
        };
        found.map(|at| start + at)
    }
}

/// An n-dimensional array: its shape and its values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Data,
}

/// Runs `$body` on two [`Data`] of the same element type, with `$a` and `$b` bound to
/// their vectors; `$other` when the types differ.
macro_rules! zip_data {
    ($left:expr, $right:expr, $a:ident, $b:ident => $body:expr, $other:expr) => {
        match ($left, $right) {
            (Data::Bool($a), Data::Bool($b)) => $body,
            (Data::U8($a), Data::U8($b)) => $body,
            (Data::U16($a), Data::U16($b)) => $body,
            (Data::U32($a), Data::U32($b)) => $body,
            (Data::U64($a), Data::U64($b)) => $body,
            (Data::I8($a), Data::I8($b)) => $body,
            (Data::I16($a), Data::I16($b)) => $body,
            (Data::I32($a), Data::I32($b)) => $body,
            (Data::I64($a), Data::I64($b)) => $body,
            (Data::F16($a), Data::F16($b)) => $body,
            (Data::F32($a), Data::F32($b)) => $body,
            (Data::F64($a), Data::F64($b)) => $body,
            (Data::Str($a), Data::Str($b)) => $body,
            _ => $other,
        }
    };
}

impl Array {
    /// Elements per index of the first axis (1 for a rank-0 or rank-1 array).
    pub fn per_row(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Arrays of one element type and one shape after the first axis, joined along it;
    /// None if they differ (or there are none).
    pub fn concat(arrays: &[&Array]) -> Option<Array> {
        let (first, rest) = arrays.split_first()?;
        if first.shape.is_empty() || rest.iter().any(|a| a.shape.get(1..) != first.shape.get(1..)) {
            return None;
        }
        let mut joined = (*first).clone();
        // One allocation for the whole batch, not one per doubling.
        let more: usize = rest.iter().map(|a| a.data.len()).sum();
        for_each_data!(&mut joined.data, values => values.reserve(more));
        for array in rest {
            joined.shape[0] += array.shape[0];
            zip_data!(&mut joined.data, &array.data, a, b => a.extend_from_slice(b), return None);
        }
        Some(joined)
    }

    /// Splits along the first axis into arrays of `rows` rows each, in order; None unless
    /// the rows add up to the first axis.
    pub fn split(self, rows: &[usize]) -> Option<Vec<Array>> {
        if self.shape.first() != Some(&rows.iter().sum()) {
            return None;
        }
        let per_row = self.per_row();
        let mut data = self.data;
        let mut parts = Vec::with_capacity(rows.len());
        // From the back, so each part is cut off the end without moving the rest.
        for &count in rows.iter().rev() {
            let keep = data.len() - count * per_row;
            let part = for_each_data!(&mut data, values => {
                let tail = values.split_off(keep);
                Data::from_same(values, tail)
            });
            let mut shape = self.shape.clone();
            shape[0] = count;
            parts.push(Array { shape, data: part });
        }
        parts.reverse();
        Some(parts)
    }
}

/// Wraps a vector in the variant its element type names.
trait IntoData {
    fn into_data(self) -> Data;
}

macro_rules! into_data {
    ($($variant:ident($t:ty)),*) => {
        $(impl IntoData for Vec<$t> {
            fn into_data(self) -> Data {
                Data::$variant(self)
            }
        })*
    };
}

into_data!(
    Bool(bool),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    F16(f16),
    F32(f32),
    F64(f64),
    Str(String)
);

impl Data {
    /// `tail` as the same kind of data as `_like` (whose type names the variant).
    fn from_same<T>(_like: &Vec<T>, tail: Vec<T>) -> Data
    where
        Vec<T>: IntoData,
    {
        tail.into_data()
    }
}

/// One dimension of a declared shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// Any size: the batch, or a length the graph leaves open.
    Dynamic,
}

impl Dim {
    /// The protocol's number for it: -1 for a dynamic dimension.
    pub fn protocol(self) -> i64 {
        match self {
            Dim::Fixed(size) => size as i64,
            Dim::Dynamic => -1,
        }
    }

    pub fn admits(self, size: usize) -> bool {
        match self {
            Dim::Fixed(fixed) => fixed == size,
            Dim::Dynamic => true,
        }
    }
}

/// A tensor a model takes or gives, as its graph declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub element: ElementType,
    pub shape: Vec<Dim>,
    /// Whether the first axis is the batch: as long as every input's first axis, so its
    /// index is a row. An output whose length the data decides (the strings a normaliser
    /// keeps) is not.
    pub batched: bool,
}

impl TensorSpec {
    /// The shape as the protocol writes it, -1 for each dynamic dimension.
    pub fn protocol_shape(&self) -> Vec<i64> {
        self.shape.iter().map(|d| d.protocol()).collect()
    }
}

/// Serialised as the Open Inference Protocol's tensor metadata.
impl Serialize for TensorSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tensor = serializer.serialize_struct("TensorMetadata", 3)?;
        tensor.serialize_field("name", &self.name)?;
        tensor.serialize_field("datatype", self.element.protocol_name())?;
        tensor.serialize_field("shape", &self.protocol_shape())?;
        tensor.end()
    }
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
    Runtime(Box<dyn std::error::Error + Send + Sync>),
    /// An output came back in a form this service cannot serve.
    Output { name: String, problem: String },
}

impl fmt::Display for PredictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PredictError::Rejected(message) => write!(f, "the model refuses this input: {message}"),
            PredictError::Runtime(_) => write!(f, "the runtime failed"),
            PredictError::Output { name, problem } => write!(f, "output {name:?}: {problem}"),
        }
    }
}

impl std::error::Error for PredictError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PredictError::Runtime(error) => Some(error.as_ref()),
            _ => None,
        }
    }
}

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
    /// The file could not be read.
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// tract could not read, translate or plan the graph; the source, when there is
    /// one, is tract's own account.
    Unsupported {
        path: PathBuf,
        reason: String,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The graph loads but is not one this service can serve (types it cannot carry, no
    /// outputs).
    Unservable {
        path: PathBuf,
        reason: String,
    },
    /// The graph was planned, but running it on one row shaped as its inputs declare
    /// failed: it would fail every request.
    WarmUp {
        path: PathBuf,
        source: PredictError,
    },
    /// The file breaks a limit on what loading may cost.
    Limit {
        path: PathBuf,
        source: crate::model::limits::LimitError,
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
            LoadError::Unreadable { path, .. } => {
                write!(f, "cannot load model {}: the file cannot be read", path.display())
            }
            LoadError::Unsupported { path, reason, .. } => {
                write!(f, "cannot load model {}: {reason}", path.display())
            }
            LoadError::Unservable { path, reason } => {
                write!(f, "cannot serve model {}: {reason}", path.display())
            }
            LoadError::WarmUp { path, .. } => write!(
                f,
                "cannot serve model {}: it loads, but one row shaped as its inputs declare does not run through it",
                path.display()
            ),
            // The limit's own message is the refusal; it is not repeated as a cause.
            LoadError::Limit { path, source } => write!(f, "cannot load model {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Unreadable { source, .. } => Some(source),
            LoadError::Unsupported {
                source: Some(source), ..
            } => Some(source.as_ref()),
            LoadError::WarmUp { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A loaded model. Implementations are immutable after loading, so one instance serves
/// every request concurrently.
pub trait Model: Send + Sync + 'static {
    /// The name reported in logs and metrics, and served under `/v2/models/{name}`.
    fn name(&self) -> &str;

    /// The Open Inference Protocol's platform name.
    fn platform(&self) -> &str;

    fn inputs(&self) -> &[TensorSpec];

    /// Every output, in the graph's order; never empty.
    fn outputs(&self) -> &[TensorSpec];

    /// Whether the model answers with its input unchanged; then `/score` echoes the
    /// request's own text, so numbers keep their exact spelling.
    fn echoes(&self) -> bool {
        false
    }

    /// Runs the model on one array per input, in the order of [`Model::inputs`], each of
    /// its declared element type and admitted by its declared shape; answers every
    /// output, in the order of [`Model::outputs`].
    fn predict(&self, inputs: Vec<Array>) -> Result<Vec<Array>, PredictError>;
}

/// One row shaped as `inputs` declare, each dynamic dimension 1, each element its type's
/// neutral value: what a model runs once before the server says it is ready.
pub fn warm_up_inputs(inputs: &[TensorSpec]) -> Vec<Array> {
    inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|dim| match dim {
                    Dim::Fixed(size) => *size,
                    Dim::Dynamic => 1,
                })
                .collect();
            Array {
                data: Data::zeros(spec.element, shape.iter().product()),
                shape,
            }
        })
        .collect()
}
