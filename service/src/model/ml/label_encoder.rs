//! `LabelEncoder`: each input value looked up in a table of keys, answered with the value
//! at the key's position, or the default. scikit-learn's `OrdinalEncoder` and
//! `IsolationForest` exports use it (strings to integers, node ids to path lengths).
//!
//! Every opset's form is read: opset 1's `classes_strings` (strings to their index and
//! back), opset 2's typed lists (`keys_strings`, `values_floats`, …) and opset 4's tensors
//! (`keys_tensor`, `values_tensor`, `default_tensor`, which add doubles, int32 and int16).
//! The output has the input's shape. As onnxruntime does: float keys match by value, every
//! NaN matching every NaN; from opset 2 on, a key listed twice keeps its first value (the
//! specification says the last; onnxruntime's table keeps the first), while opset 1's
//! classes keep the last index, as onnxruntime's does.

use std::collections::HashMap;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::Attrs;
use crate::model::ml::kernel::{self, Kernel};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LabelEncoder {
    node: String,
    /// The type the keys are, which the input must be.
    key_type: DatumType,
    /// Each key's position in `values`.
    positions: HashMap<Key, usize>,
    /// The values, one per key, 1-D.
    values: Tensor,
    /// What a value without a key becomes, one element.
    default: Tensor,
}

/// A key as the table compares it: integers of any width as i64, floats by value (as
/// f64 bits, every NaN one key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Float(u64),
    Str(String),
}

impl Key {
    fn float(value: f64) -> Key {
        Key::Float(if value.is_nan() {
            f64::NAN.to_bits()
        } else {
            (value + 0.0).to_bits()
        })
    }
}

pub(crate) fn parse(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let load = |name: &str| -> TractResult<Option<Tensor>> {
        node.get_attr_opt::<&tract_onnx::pb::TensorProto>(name)?
            .map(|proto| tract_onnx::tensor::load_tensor(&*ctx.framework.provider, proto, None))
            .transpose()
    };
    let strings = |name: &str| -> TractResult<Option<Tensor>> {
        let values = attrs.strings(name)?;
        Ok(attrs
            .has(name)
            .then(|| tensor1(&values.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())))
    };
    if attrs.has("classes_strings") {
        return opset_1(&attrs);
    }
    let keys = [
        strings("keys_strings")?,
        attrs
            .has("keys_int64s")
            .then(|| tensor1(attrs.ints("keys_int64s"))),
        attrs
            .has("keys_floats")
            .then(|| tensor1(attrs.floats("keys_floats"))),
        load("keys_tensor")?,
    ];
    let values = [
        strings("values_strings")?,
        attrs
            .has("values_int64s")
            .then(|| tensor1(attrs.ints("values_int64s"))),
        attrs
            .has("values_floats")
            .then(|| tensor1(attrs.floats("values_floats"))),
        load("values_tensor")?,
    ];
    let one = |tensors: [Option<Tensor>; 4], what: &str| -> TractResult<Tensor> {
        let mut given = tensors.into_iter().flatten();
        match (given.next(), given.next()) {
            (Some(tensor), None) => {
                let len = tensor.len();
                Ok(tensor.into_shape(&[len])?)
            }
            _ => Err(attrs
                .error(
                    &format!("{what}_*"),
                    format!("exactly one of the {what} attributes must be given"),
                )
                .into()),
        }
    };
    let keys = one(keys, "keys")?;
    let values = one(values, "values")?;
    if keys.len() != values.len() {
        return Err(attrs
            .error(
                "values",
                format!("{} values for {} keys", values.len(), keys.len()),
            )
            .into());
    }
    let default = match load("default_tensor")? {
        Some(tensor) if tensor.len() == 1 && tensor.datum_type() == values.datum_type() => {
            tensor.into_shape(&[])?
        }
        Some(_) => {
            return Err(attrs
                .error("default_tensor", "must hold one value of the values' type")
                .into());
        }
        None => default_of(&attrs, values.datum_type())?,
    };
    let mut positions = HashMap::new();
    for (position, key) in keys_of(&keys)?.into_iter().enumerate() {
        positions.entry(key).or_insert(position);
    }
    kernel::op(LabelEncoder {
        node: node.name.clone(),
        key_type: keys.datum_type(),
        positions,
        values,
        default,
    })
}

/// Opset 1: strings to their index in `classes_strings`, or integers to the class at
/// that index; which way is told by the input's type, so both tables are kept.
fn opset_1(attrs: &Attrs<'_>) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let classes: Vec<String> = attrs
        .strings("classes_strings")?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let default_int = attrs.int("default_int64").unwrap_or(-1);
    let default_string = attrs.string("default_string")?.unwrap_or("_Unused").to_owned();
    kernel::op(ClassesEncoder {
        // onnxruntime fills its map class by class, so a repeated class keeps its last index.
        index: classes
            .iter()
            .enumerate()
            .map(|(position, class)| (class.clone(), position as i64))
            .collect(),
        classes,
        default_int,
        default_string,
    })
}

fn tensor1<T: Datum + Clone>(values: &[T]) -> Tensor {
    tract_ndarray::Array1::from_vec(values.to_vec()).into_tensor()
}

/// The default when no `default_tensor` is given: the typed `default_*` attribute, or
/// the specification's (`"_Unused"`, -1, -0.0).
fn default_of(attrs: &Attrs<'_>, datum_type: DatumType) -> TractResult<Tensor> {
    Ok(match datum_type {
        DatumType::String => tensor0(attrs.string("default_string")?.unwrap_or("_Unused").to_owned()),
        DatumType::I64 => tensor0(attrs.int("default_int64").unwrap_or(-1)),
        DatumType::I32 => tensor0(attrs.int("default_int64").unwrap_or(-1) as i32),
        DatumType::I16 => tensor0(attrs.int("default_int64").unwrap_or(-1) as i16),
        DatumType::F32 => tensor0(attrs.float("default_float").unwrap_or(-0.0)),
        DatumType::F64 => tensor0(f64::from(attrs.float("default_float").unwrap_or(-0.0))),
        other => {
            return Err(attrs
                .error(
                    "values",
                    format!("values of type {other:?} are not a LabelEncoder's"),
                )
                .into());
        }
    })
}

fn keys_of(keys: &Tensor) -> TractResult<Vec<Key>> {
    let plain = keys.try_as_plain_ram()?;
    Ok(match keys.datum_type() {
        DatumType::String => plain
            .as_slice::<String>()?
            .iter()
            .cloned()
            .map(Key::Str)
            .collect(),
        DatumType::I64 => plain.as_slice::<i64>()?.iter().map(|v| Key::Int(*v)).collect(),
        DatumType::I32 => plain
            .as_slice::<i32>()?
            .iter()
            .map(|v| Key::Int(i64::from(*v)))
            .collect(),
        DatumType::I16 => plain
            .as_slice::<i16>()?
            .iter()
            .map(|v| Key::Int(i64::from(*v)))
            .collect(),
        DatumType::F32 => plain
            .as_slice::<f32>()?
            .iter()
            .map(|v| Key::float(f64::from(*v)))
            .collect(),
        DatumType::F64 => plain.as_slice::<f64>()?.iter().map(|v| Key::float(*v)).collect(),
        other => bail!("keys of type {other:?} are not a LabelEncoder's"),
    })
}

/// Picks `values[position]`, or the default, for each position.
fn gather<T: Datum + Clone>(
    values: &Tensor,
    default: &Tensor,
    positions: &[Option<usize>],
) -> TractResult<Tensor> {
    let values = values.try_as_plain_ram()?;
    let values = values.as_slice::<T>()?;
    let default = default.try_as_plain_ram()?.as_slice::<T>()?[0].clone();
    let out: Vec<T> = positions
        .iter()
        .map(|p| p.map_or_else(|| default.clone(), |p| values[p].clone()))
        .collect();
    Ok(tract_ndarray::Array1::from_vec(out).into_tensor())
}

impl LabelEncoder {
    fn look_up(&self, input: &Tensor) -> TractResult<Vec<Option<usize>>> {
        let find = |key: Key| self.positions.get(&key).copied();
        // tract types a Cast to int64 as its symbolic integer; the table is i64.
        let input = if input.datum_type() == DatumType::TDim {
            input.cast_to::<i64>()?.into_owned()
        } else {
            input.clone()
        };
        let plain = input.try_as_plain_ram()?;
        Ok(match (self.key_type, input.datum_type()) {
            (DatumType::String, DatumType::String) => plain
                .as_slice::<String>()?
                .iter()
                .map(|v| find(Key::Str(v.clone())))
                .collect(),
            (DatumType::I64 | DatumType::I32 | DatumType::I16, DatumType::I64) => plain
                .as_slice::<i64>()?
                .iter()
                .map(|v| find(Key::Int(*v)))
                .collect(),
            (DatumType::I64 | DatumType::I32 | DatumType::I16, DatumType::I32) => plain
                .as_slice::<i32>()?
                .iter()
                .map(|v| find(Key::Int(i64::from(*v))))
                .collect(),
            (DatumType::I64 | DatumType::I32 | DatumType::I16, DatumType::I16) => plain
                .as_slice::<i16>()?
                .iter()
                .map(|v| find(Key::Int(i64::from(*v))))
                .collect(),
            (DatumType::F32 | DatumType::F64, DatumType::F32) => plain
                .as_slice::<f32>()?
                .iter()
                .map(|v| find(Key::float(f64::from(*v))))
                .collect(),
            (DatumType::F32 | DatumType::F64, DatumType::F64) => plain
                .as_slice::<f64>()?
                .iter()
                .map(|v| find(Key::float(*v)))
                .collect(),
            (keys, other) => bail!(
                "LabelEncoder node {:?}: a {other:?} input against {keys:?} keys",
                self.node
            ),
        })
    }
}

impl Kernel for LabelEncoder {
    fn name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        Ok(tvec![(self.values.datum_type(), inputs[0].1.into())])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let positions = self.look_up(input)?;
        let flat = match self.values.datum_type() {
            DatumType::String => gather::<String>(&self.values, &self.default, &positions)?,
            DatumType::I64 => gather::<i64>(&self.values, &self.default, &positions)?,
            DatumType::I32 => gather::<i32>(&self.values, &self.default, &positions)?,
            DatumType::I16 => gather::<i16>(&self.values, &self.default, &positions)?,
            DatumType::F32 => gather::<f32>(&self.values, &self.default, &positions)?,
            DatumType::F64 => gather::<f64>(&self.values, &self.default, &positions)?,
            other => bail!("LabelEncoder node {:?}: values of type {other:?}", self.node),
        };
        Ok(tvec![flat.into_shape(input.shape())?.into_tvalue()])
    }
}

/// Opset 1's form: strings to their class index, integers to their class.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClassesEncoder {
    classes: Vec<String>,
    index: HashMap<String, i64>,
    default_int: i64,
    default_string: String,
}

impl Kernel for ClassesEncoder {
    fn name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let out = if inputs[0].0 == DatumType::String {
            DatumType::I64
        } else {
            DatumType::String
        };
        Ok(tvec![(out, inputs[0].1.into())])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let out = if input.datum_type() == DatumType::String {
            let strings = input.try_as_plain_ram()?;
            let out: Vec<i64> = strings
                .as_slice::<String>()?
                .iter()
                .map(|s| self.index.get(s).copied().unwrap_or(self.default_int))
                .collect();
            tract_ndarray::Array1::from_vec(out).into_tensor()
        } else {
            let ints = input.cast_to::<i64>()?;
            let ints = ints.try_as_plain_ram()?;
            let out: Vec<String> = ints
                .as_slice::<i64>()?
                .iter()
                .map(|i| {
                    usize::try_from(*i)
                        .ok()
                        .and_then(|i| self.classes.get(i))
                        .map_or_else(|| self.default_string.clone(), Clone::clone)
                })
                .collect();
            tract_ndarray::Array1::from_vec(out).into_tensor()
        };
        Ok(tvec![out.into_shape(input.shape())?.into_tvalue()])
    }
}
