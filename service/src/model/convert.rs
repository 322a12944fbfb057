//! Converting a tensor's values to the element type a graph takes, only where no value
//! changes: `INT64` token ids into an `int32` input when each fits, `FP32` into `double`,
//! never `1.5` into an integer or `0.1` (as a double) into a float32.

use std::fmt;

use tract_onnx::prelude::f16;

use crate::model::types::{Data, ElementType};

/// Why values cannot be converted.
#[derive(Debug, PartialEq)]
pub enum ConvertError {
    /// The types are apart (strings and numbers, booleans and numbers).
    Types { from: ElementType, to: ElementType },
    /// The element at `index` would change.
    Value {
        index: usize,
        value: String,
        from: ElementType,
        to: ElementType,
    },
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Types { from, to } => write!(f, "{from} cannot be converted to {to}"),
            ConvertError::Value {
                index,
                value,
                from,
                to,
            } => write!(
                f,
                "element {index} ({value}) would change from {from} to {to}; send {to}, or values {to} holds exactly"
            ),
        }
    }
}

impl std::error::Error for ConvertError {}

/// A number of any numeric type, widened without loss.
#[derive(Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(value) => write!(f, "{value}"),
            Number::Float(value) => write!(f, "{value}"),
        }
    }
}

/// The values as numbers, one at a time (never a copy of the whole tensor as numbers:
/// a megabyte of UINT8 would be 32).
fn numbers(data: &Data) -> Option<Box<dyn Iterator<Item = Number> + '_>> {
    fn ints<T: Copy + Into<i128>>(values: &[T]) -> Box<dyn Iterator<Item = Number> + '_> {
        Box::new(values.iter().map(|v| Number::Int((*v).into())))
    }
    Some(match data {
        Data::U8(v) => ints(v),
        Data::U16(v) => ints(v),
        Data::U32(v) => ints(v),
        Data::U64(v) => ints(v),
        Data::I8(v) => ints(v),
        Data::I16(v) => ints(v),
        Data::I32(v) => ints(v),
        Data::I64(v) => ints(v),
        Data::F16(v) => Box::new(v.iter().map(|x| Number::Float(x.to_f64()))),
        Data::F32(v) => Box::new(v.iter().map(|x| Number::Float(f64::from(*x)))),
        Data::F64(v) => Box::new(v.iter().map(|x| Number::Float(*x))),
        Data::Bool(_) | Data::Str(_) => return None,
    })
}

/// The same value as an integer of type `T`, if it is one.
fn exact_int<T: TryFrom<i128>>(number: Number) -> Option<T> {
    match number {
        Number::Int(value) => T::try_from(value).ok(),
        Number::Float(value) => integral(value),
    }
}

/// `value` as an integer of type `T`, when it is a whole number `T` holds exactly.
pub fn integral<T: TryFrom<i128>>(value: f64) -> Option<T> {
    // Within i128's range (which every integer type's is inside), the cast is exact.
    // NaN and the infinities have a NaN fraction, so they fail the first test.
    if value.fract() != 0.0 || value.abs() >= 1e38 {
        return None;
    }
    T::try_from(value as i128).ok()
}

/// The same value as a float, if `narrow` keeps it (NaN stays NaN).
fn exact_float<T: Copy>(number: Number, narrow: impl Fn(f64) -> T, widen: impl Fn(T) -> f64) -> Option<T> {
    let value = match number {
        Number::Int(value) => {
            let float = value as f64;
            (float as i128 == value).then_some(float)?
        }
        Number::Float(value) => value,
    };
    let narrowed = narrow(value);
    let back = widen(narrowed);
    (back == value || (back.is_nan() && value.is_nan())).then_some(narrowed)
}

/// `data` as `to`, when every value stays the same.
pub fn convert(data: Data, to: ElementType) -> Result<Data, ConvertError> {
    let from = data.element_type();
    if from == to {
        return Ok(data);
    }
    let types = || ConvertError::Types { from, to };
    if to == ElementType::Bool || to == ElementType::Str {
        return Err(types());
    }
    let numbers = || numbers(&data).ok_or_else(types);
    fn all<T>(
        numbers: Box<dyn Iterator<Item = Number> + '_>,
        from: ElementType,
        to: ElementType,
        one: impl Fn(Number) -> Option<T>,
    ) -> Result<Vec<T>, ConvertError> {
        numbers
            .enumerate()
            .map(|(index, number)| {
                one(number).ok_or_else(|| ConvertError::Value {
                    index,
                    value: number.to_string(),
                    from,
                    to,
                })
            })
            .collect()
    }
    Ok(match to {
        ElementType::U8 => Data::U8(all(numbers()?, from, to, exact_int)?),
        ElementType::U16 => Data::U16(all(numbers()?, from, to, exact_int)?),
        ElementType::U32 => Data::U32(all(numbers()?, from, to, exact_int)?),
        ElementType::U64 => Data::U64(all(numbers()?, from, to, exact_int)?),
        ElementType::I8 => Data::I8(all(numbers()?, from, to, exact_int)?),
        ElementType::I16 => Data::I16(all(numbers()?, from, to, exact_int)?),
        ElementType::I32 => Data::I32(all(numbers()?, from, to, exact_int)?),
        ElementType::I64 => Data::I64(all(numbers()?, from, to, exact_int)?),
        ElementType::F16 => Data::F16(all(numbers()?, from, to, |n| {
            exact_float(n, f16::from_f64, f16::to_f64)
        })?),
        ElementType::F32 => Data::F32(all(numbers()?, from, to, |n| {
            exact_float(n, |v| v as f32, f64::from)
        })?),
        ElementType::F64 => Data::F64(all(numbers()?, from, to, |n| exact_float(n, |v| v, |v| v))?),
        ElementType::Bool | ElementType::Str => return Err(types()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_only_what_stays_the_same() {
        assert_eq!(
            convert(Data::I64(vec![1, -7, 40_000]), ElementType::I32),
            Ok(Data::I32(vec![1, -7, 40_000]))
        );
        assert_eq!(
            convert(Data::F32(vec![0.1, 2.0]), ElementType::F64),
            Ok(Data::F64(vec![f64::from(0.1f32), 2.0]))
        );
        assert_eq!(
            convert(Data::F64(vec![2.0, 3.0]), ElementType::I64),
            Ok(Data::I64(vec![2, 3]))
        );
        assert_eq!(
            convert(Data::I32(vec![16_777_216]), ElementType::F32),
            Ok(Data::F32(vec![16_777_216.0]))
        );
        for (data, to, index) in [
            (Data::I64(vec![1, 1 << 40]), ElementType::I32, 1),
            (Data::F64(vec![0.5, 0.1]), ElementType::F32, 1),
            (Data::F64(vec![1.5]), ElementType::I64, 0),
            (Data::I64(vec![-1]), ElementType::U8, 0),
            (Data::I32(vec![16_777_217]), ElementType::F32, 0),
        ] {
            match convert(data.clone(), to) {
                Err(ConvertError::Value { index: at, .. }) => assert_eq!(at, index, "{data:?} to {to}"),
                other => panic!("{data:?} to {to}: {other:?}"),
            }
        }
        assert!(matches!(
            convert(Data::Str(vec!["1".into()]), ElementType::I64),
            Err(ConvertError::Types { .. })
        ));
        assert!(matches!(
            convert(Data::Bool(vec![true]), ElementType::U8),
            Err(ConvertError::Types { .. })
        ));
    }
}
