//! Reading a node's attributes, with errors that name the node and the attribute.

use std::fmt;

use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

/// Why an attribute could not be used.
#[derive(Debug)]
pub(crate) struct AttrError {
    node: String,
    op: String,
    attribute: String,
    problem: String,
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} node {:?}, attribute {:?}: {}",
            self.op, self.node, self.attribute, self.problem
        )
    }
}

impl std::error::Error for AttrError {}

/// A node's attributes by name.
pub(crate) struct Attrs<'a> {
    node: &'a NodeProto,
}

// ONNX's TensorProto.DataType numbers, for the tensor-valued attributes.
const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT32: i32 = 6;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;

impl<'a> Attrs<'a> {
    pub(crate) fn of(node: &'a NodeProto) -> Self {
        Attrs { node }
    }

    pub(crate) fn error(&self, attribute: &str, problem: impl Into<String>) -> AttrError {
        AttrError {
            node: self.node.name.clone(),
            op: self.node.op_type.clone(),
            attribute: attribute.to_owned(),
            problem: problem.into(),
        }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn ints(&self, name: &str) -> &'a [i64] {
        self.get(name).map_or(&[], |a| a.ints.as_slice())
    }

    pub(crate) fn floats(&self, name: &str) -> &'a [f32] {
        self.get(name).map_or(&[], |a| a.floats.as_slice())
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Vec<&'a str>, AttrError> {
        self.get(name).map_or(Ok(Vec::new()), |a| {
            a.strings
                .iter()
                .map(|s| std::str::from_utf8(s).map_err(|_| self.error(name, "a string that is not UTF-8")))
                .collect()
        })
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<&'a str>, AttrError> {
        self.get(name)
            .map(|a| std::str::from_utf8(&a.s).map_err(|_| self.error(name, "a string that is not UTF-8")))
            .transpose()
    }

    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }

    pub(crate) fn float(&self, name: &str) -> Option<f32> {
        self.get(name).map(|a| a.f)
    }

    /// Non-negative integers (ids, indices) as `usize`.
    pub(crate) fn indices(&self, name: &str) -> Result<Vec<usize>, AttrError> {
        self.ints(name)
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| self.error(name, format!("{v} is not a valid index"))))
            .collect()
    }

    /// A numeric list given either as `name` (floats) or as `name_as_tensor` (doubles,
    /// which take precedence, as onnxruntime reads them).
    pub(crate) fn numbers(&self, name: &str) -> Result<Vec<f64>, AttrError> {
        let tensor_name = format!("{name}_as_tensor");
        if let Some(tensor) = self.get(&tensor_name).and_then(|a| a.t.as_ref()) {
            return self.tensor(&tensor_name, tensor);
        }
        Ok(self.floats(name).iter().map(|&v| f64::from(v)).collect())
    }

    /// A tensor-valued attribute's numbers, widened to f64.
    pub(crate) fn tensor_numbers(&self, name: &str) -> Result<Option<Vec<f64>>, AttrError> {
        self.get(name)
            .and_then(|a| a.t.as_ref())
            .map(|tensor| self.tensor(name, tensor))
            .transpose()
    }

    fn tensor(&self, name: &str, tensor: &TensorProto) -> Result<Vec<f64>, AttrError> {
        let raw = &tensor.raw_data;
        fn chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
            raw.chunks_exact(N).map(|c| c.try_into().unwrap_or([0; N]))
        }
        let values: Vec<f64> = match tensor.data_type {
            FLOAT if raw.is_empty() => tensor.float_data.iter().map(|&v| f64::from(v)).collect(),
            FLOAT => chunks::<4>(raw)
                .map(|b| f64::from(f32::from_le_bytes(b)))
                .collect(),
            DOUBLE if raw.is_empty() => tensor.double_data.clone(),
            DOUBLE => chunks::<8>(raw).map(f64::from_le_bytes).collect(),
            INT64 if raw.is_empty() => tensor.int64_data.iter().map(|&v| v as f64).collect(),
            INT64 => chunks::<8>(raw).map(|b| i64::from_le_bytes(b) as f64).collect(),
            INT32 | UINT8 if raw.is_empty() => tensor.int32_data.iter().map(|&v| f64::from(v)).collect(),
            INT32 => chunks::<4>(raw)
                .map(|b| f64::from(i32::from_le_bytes(b)))
                .collect(),
            UINT8 => raw.iter().map(|&v| f64::from(v)).collect(),
            other => return Err(self.error(name, format!("a tensor of ONNX data type {other}"))),
        };
        Ok(values)
    }

    /// Checks that a per-node (or per-leaf) list has `len` entries.
    pub(crate) fn expect_len<T>(&self, name: &str, values: &[T], len: usize) -> Result<(), AttrError> {
        if values.len() == len {
            Ok(())
        } else {
            Err(self.error(name, format!("{} entries, expected {len}", values.len())))
        }
    }
}
