//! Tensors in JSON, both ways: reading nested arrays of scalars into a typed array, its
//! shape discovered and checked rectangular, and writing arrays back as JSON.
//!
//! The reader walks text serde_json has already validated as one JSON value, so it only
//! classifies tokens, never rejects syntax. It never recurses (no nesting depth can
//! overflow the stack) and stops at the first array deeper than the caller allows. Each
//! element type parses its own tokens: a float32 input reads `0.1` as the nearest
//! float32, an integer input refuses `1.5`, a string input unescapes only strings that
//! hold escapes.

use std::fmt;

use smallvec::SmallVec;
use tract_onnx::prelude::f16;

use crate::model::{Array, Data, ElementType, for_each_data};

/// What a JSON value is, told from its first byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Array,
    Object,
    String,
    Boolean,
    Null,
    Number,
}

impl Kind {
    fn of(byte: Option<&u8>) -> Kind {
        match byte {
            Some(b'[') => Kind::Array,
            Some(b'{') => Kind::Object,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Boolean,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    /// The kind of the first value in `raw` (whitespace skipped).
    pub fn of_text(raw: &str) -> Kind {
        Kind::of(raw.as_bytes().iter().find(|b| !b.is_ascii_whitespace()))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Kind::Array => "an array",
            Kind::Object => "an object",
            Kind::String => "a string",
            Kind::Boolean => "a boolean",
            Kind::Null => "null",
            Kind::Number => "a number",
        })
    }
}

/// A place in a nested value, for error messages: the root's name and the indices in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub root: String,
    pub path: Vec<usize>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.root)?;
        for index in &self.path {
            write!(f, "[{index}]")?;
        }
        Ok(())
    }
}

/// Why a value is not a tensor of the wanted type; each names the place.
#[derive(Debug, PartialEq)]
pub enum ReadError {
    WrongKind {
        place: Place,
        found: Kind,
        expected: &'static str,
    },
    Empty(Place),
    Ragged {
        place: Place,
        length: usize,
        first: Place,
        expected: usize,
    },
    Value {
        place: Place,
        token: String,
        problem: &'static str,
        element: ElementType,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ReadError::WrongKind {
                place,
                found,
                expected,
            } => write!(f, "{place} is {found}, expected {expected}"),
            ReadError::Empty(place) => write!(f, "{place} is an empty array"),
            ReadError::Ragged {
                place,
                length,
                first,
                expected,
            } => write!(
                f,
                "{place} has {length} elements but {first} has {expected}: arrays side by side must have equal lengths"
            ),
            ReadError::Value {
                place,
                token,
                problem,
                element,
            } => write!(f, "{place} is {token}, {problem} ({element})"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Where a `null` may stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nulls {
    Refused,
    /// A missing value: NaN, for float types (what pandas writes as null, and what an
    /// imputer replaces); still refused for other types.
    Missing,
}

/// Reads `raw` (one JSON value, already validated) as a tensor of `element`: nested
/// arrays no deeper than `max_rank`, rectangular, of scalars of that type. A scalar alone
/// is a rank-0 tensor. `root` names the value in errors (`X`, `input "x" data`).
pub fn read(
    raw: &str,
    element: ElementType,
    max_rank: usize,
    root: &str,
    nulls: Nulls,
) -> Result<Array, ReadError> {
    match element {
        ElementType::Bool => read_as::<bool>(raw, max_rank, root, nulls),
        ElementType::U8 => read_as::<u8>(raw, max_rank, root, nulls),
        ElementType::U16 => read_as::<u16>(raw, max_rank, root, nulls),
        ElementType::U32 => read_as::<u32>(raw, max_rank, root, nulls),
        ElementType::U64 => read_as::<u64>(raw, max_rank, root, nulls),
        ElementType::I8 => read_as::<i8>(raw, max_rank, root, nulls),
        ElementType::I16 => read_as::<i16>(raw, max_rank, root, nulls),
        ElementType::I32 => read_as::<i32>(raw, max_rank, root, nulls),
        ElementType::I64 => read_as::<i64>(raw, max_rank, root, nulls),
        ElementType::F16 => read_as::<f16>(raw, max_rank, root, nulls),
        ElementType::F32 => read_as::<f32>(raw, max_rank, root, nulls),
        ElementType::F64 => read_as::<f64>(raw, max_rank, root, nulls),
        ElementType::Str => read_as::<String>(raw, max_rank, root, nulls),
    }
}

/// Reads one scalar of `element` from each of `fields` (the same key of several
/// records), into one flat array; `place` names field `i` in an error (built only then);
/// `null` is a missing value, as [`Nulls::Missing`] says.
pub fn read_fields<'r>(
    fields: impl ExactSizeIterator<Item = &'r str>,
    element: ElementType,
    place: impl Fn(usize) -> Place,
) -> Result<Data, ReadError> {
    match element {
        ElementType::Bool => fields_as::<bool>(fields, place),
        ElementType::U8 => fields_as::<u8>(fields, place),
        ElementType::U16 => fields_as::<u16>(fields, place),
        ElementType::U32 => fields_as::<u32>(fields, place),
        ElementType::U64 => fields_as::<u64>(fields, place),
        ElementType::I8 => fields_as::<i8>(fields, place),
        ElementType::I16 => fields_as::<i16>(fields, place),
        ElementType::I32 => fields_as::<i32>(fields, place),
        ElementType::I64 => fields_as::<i64>(fields, place),
        ElementType::F16 => fields_as::<f16>(fields, place),
        ElementType::F32 => fields_as::<f32>(fields, place),
        ElementType::F64 => fields_as::<f64>(fields, place),
        ElementType::Str => fields_as::<String>(fields, place),
    }
}

fn fields_as<'r, T: Element>(
    fields: impl ExactSizeIterator<Item = &'r str>,
    place: impl Fn(usize) -> Place,
) -> Result<Data, ReadError> {
    let mut values = Vec::with_capacity(fields.len());
    for (index, raw) in fields.enumerate() {
        let place = || place(index);
        let raw = raw.trim();
        let kind = Kind::of_text(raw);
        if kind == Kind::Null
            && let Some(missing) = T::missing()
        {
            values.push(missing);
            continue;
        }
        if kind != T::KIND {
            return Err(ReadError::WrongKind {
                place: place(),
                found: kind,
                expected: T::EXPECTED,
            });
        }
        values.push(T::parse(raw).map_err(|problem| ReadError::Value {
            place: place(),
            token: raw.to_owned(),
            problem,
            element: T::TYPE,
        })?);
    }
    Ok(T::into_data(values))
}

/// An element type as JSON spells it.
trait Element: Sized {
    const TYPE: ElementType;
    /// What the JSON token must be.
    const KIND: Kind;
    const EXPECTED: &'static str;
    /// Parses a token of kind `KIND`; the error says why the value does not fit.
    fn parse(token: &str) -> Result<Self, &'static str>;
    fn into_data(values: Vec<Self>) -> Data;
    /// What a missing value (`null` in a record) is, for types that have one.
    fn missing() -> Option<Self> {
        None
    }
}

macro_rules! integer_element {
    ($type:ty, $element:ident, $variant:ident) => {
        impl Element for $type {
            const TYPE: ElementType = ElementType::$element;
            const KIND: Kind = Kind::Number;
            const EXPECTED: &'static str = "an integer";
            fn parse(token: &str) -> Result<Self, &'static str> {
                const OUT: &str = "beyond the range of the input's integer type";
                if let Ok(value) = token.parse::<i128>() {
                    return <$type>::try_from(value).map_err(|_| OUT);
                }
                // `1.0` and `1e3` are integers spelled as floats (pandas writes them so).
                match token.parse::<f64>() {
                    Ok(value) if value.is_finite() && value.fract() != 0.0 => Err("not an integer"),
                    Ok(value) => crate::model::integral(value).ok_or(OUT),
                    Err(_) => Err(OUT),
                }
            }
            fn into_data(values: Vec<Self>) -> Data {
                Data::$variant(values)
            }
        }
    };
}

integer_element!(u8, U8, U8);
integer_element!(u16, U16, U16);
integer_element!(u32, U32, U32);
integer_element!(u64, U64, U64);
integer_element!(i8, I8, I8);
integer_element!(i16, I16, I16);
integer_element!(i32, I32, I32);
integer_element!(i64, I64, I64);

const BEYOND_FLOAT: &str = "beyond the range of the input's float type";

impl Element for f32 {
    const TYPE: ElementType = ElementType::F32;
    const KIND: Kind = Kind::Number;
    const EXPECTED: &'static str = "a number";
    fn parse(token: &str) -> Result<Self, &'static str> {
        // Within float32's range as a JSON Schema validator reads it (as a double), so that
        // the served document's bounds say exactly what is taken; then the nearest float32
        // to the decimal, rounded once (not through float64).
        let wide = token.parse::<f64>().map_err(|_| BEYOND_FLOAT)?;
        if wide.is_nan() || wide.abs() > f64::from(f32::MAX) {
            return Err(BEYOND_FLOAT);
        }
        token.parse::<f32>().map_err(|_| BEYOND_FLOAT)
    }
    fn missing() -> Option<Self> {
        Some(f32::NAN)
    }
    fn into_data(values: Vec<Self>) -> Data {
        Data::F32(values)
    }
}

impl Element for f64 {
    const TYPE: ElementType = ElementType::F64;
    const KIND: Kind = Kind::Number;
    const EXPECTED: &'static str = "a number";
    fn parse(token: &str) -> Result<Self, &'static str> {
        token
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or(BEYOND_FLOAT)
    }
    fn missing() -> Option<Self> {
        Some(f64::NAN)
    }
    fn into_data(values: Vec<Self>) -> Data {
        Data::F64(values)
    }
}

impl Element for f16 {
    const TYPE: ElementType = ElementType::F16;
    const KIND: Kind = Kind::Number;
    const EXPECTED: &'static str = "a number";
    fn parse(token: &str) -> Result<Self, &'static str> {
        let wide = token.parse::<f64>().map_err(|_| BEYOND_FLOAT)?;
        if wide.is_nan() || wide.abs() > f16::MAX.to_f64() {
            return Err(BEYOND_FLOAT);
        }
        Ok(f16::from_f64(wide))
    }
    fn missing() -> Option<Self> {
        Some(f16::NAN)
    }
    fn into_data(values: Vec<Self>) -> Data {
        Data::F16(values)
    }
}

impl Element for bool {
    const TYPE: ElementType = ElementType::Bool;
    const KIND: Kind = Kind::Boolean;
    const EXPECTED: &'static str = "true or false";
    fn parse(token: &str) -> Result<Self, &'static str> {
        Ok(token == "true")
    }
    fn into_data(values: Vec<Self>) -> Data {
        Data::Bool(values)
    }
}

impl Element for String {
    const TYPE: ElementType = ElementType::Str;
    const KIND: Kind = Kind::String;
    const EXPECTED: &'static str = "a string";
    fn parse(token: &str) -> Result<Self, &'static str> {
        let inner = &token[1..token.len() - 1];
        if !inner.contains('\\') {
            return Ok(inner.to_owned());
        }
        // serde_json validated the token; it alone knows every escape (surrogates too).
        serde_json::from_str(token).map_err(|_| "not a string JSON can carry")
    }
    fn into_data(values: Vec<Self>) -> Data {
        Data::Str(values)
    }
}

/// The shape found so far: each depth's length, known once its first array closes.
/// Index paths and per-depth figures: held inline up to this depth (every model input
/// we have met), so reading a tensor allocates only its values and its shape.
pub type Depths<T> = SmallVec<[T; 4]>;

struct Shape {
    /// Each depth's length, from the first array at that depth to close.
    lengths: Depths<Option<usize>>,
    /// The path to the first array whose length set each depth's, for errors.
    first: Depths<Depths<usize>>,
    /// The depth of the scalars, once the first is seen.
    rank: Option<usize>,
}

fn read_as<T: Element>(raw: &str, max_rank: usize, root: &str, nulls: Nulls) -> Result<Array, ReadError> {
    let mut values: Vec<T> = Vec::new();
    let shape = walk(raw, max_rank, root, nulls, |value| values.push(value))?;
    Ok(Array {
        shape: shape.to_vec(),
        data: T::into_data(values),
    })
}

/// The shape of `raw`, a rectangular array of JSON numbers (each one an f64) nested at
/// most `max_rank` deep, checked as [`read`] checks it, without keeping the values:
/// what the echo model needs, which answers with the request's own text.
pub fn shape_of_numbers(raw: &str, max_rank: usize, root: &str) -> Result<Depths<usize>, ReadError> {
    walk::<f64>(raw, max_rank, root, Nulls::Refused, |_| ())
}

/// Walks `raw` as a rectangular array of `T` nested at most `max_rank` deep, handing
/// each value to `each` in order; returns the shape.
fn walk<T: Element>(
    raw: &str,
    max_rank: usize,
    root: &str,
    nulls: Nulls,
    mut each: impl FnMut(T),
) -> Result<Depths<usize>, ReadError> {
    let bytes = raw.as_bytes();
    let place = |path: &[usize]| Place {
        root: root.to_owned(),
        path: path.to_vec(),
    };
    let mut pos = 0;
    let skip_whitespace = |pos: &mut usize| {
        while bytes.get(*pos).is_some_and(u8::is_ascii_whitespace) {
            *pos += 1;
        }
    };
    let mut shape = Shape {
        lengths: Depths::new(),
        first: Depths::new(),
        rank: None,
    };
    // The index path to the value under the cursor; its length is the depth.
    let mut path: Depths<usize> = Depths::new();
    loop {
        skip_whitespace(&mut pos);
        let depth = path.len();
        let kind = Kind::of(bytes.get(pos));
        if kind == Kind::Array {
            if shape.rank.is_some_and(|rank| depth >= rank) || depth >= max_rank {
                return Err(ReadError::WrongKind {
                    place: place(&path),
                    found: kind,
                    expected: T::EXPECTED,
                });
            }
            pos += 1;
            skip_whitespace(&mut pos);
            if bytes.get(pos) == Some(&b']') {
                return Err(ReadError::Empty(place(&path)));
            }
            path.push(0);
            continue;
        }
        // A scalar: it fixes the rank, or must sit at it.
        match shape.rank {
            None => {
                shape.rank = Some(depth);
                shape.lengths = smallvec::smallvec![None; depth];
                shape.first = smallvec::smallvec![Depths::new(); depth];
            }
            Some(rank) if rank != depth => {
                return Err(ReadError::WrongKind {
                    place: place(&path),
                    found: kind,
                    expected: "an array",
                });
            }
            Some(_) => {}
        }
        let start = pos;
        if let (Kind::Null, Nulls::Missing, Some(missing)) = (kind, nulls, T::missing()) {
            pos += "null".len();
            each(missing);
        } else if kind != T::KIND {
            return Err(ReadError::WrongKind {
                place: place(&path),
                found: kind,
                expected: T::EXPECTED,
            });
        } else {
            pos = token_end(bytes, pos, kind);
            // The token is whole JSON tokens of ASCII delimiters, so this is on char bounds.
            let token = &raw[start..pos];
            match T::parse(token) {
                Ok(value) => each(value),
                Err(problem) => {
                    return Err(ReadError::Value {
                        place: place(&path),
                        token: token.to_owned(),
                        problem,
                        element: T::TYPE,
                    });
                }
            }
        }
        // Close every array that ends here, checking each length against its depth's.
        loop {
            let Some(index) = path.last_mut() else {
                return Ok(shape.lengths.iter().map(|l| l.unwrap_or(0)).collect());
            };
            skip_whitespace(&mut pos);
            let close = bytes.get(pos) == Some(&b']');
            pos += 1;
            if !close {
                *index += 1;
                break;
            }
            let length = *index + 1;
            path.pop();
            let depth = path.len();
            match shape.lengths[depth] {
                None => {
                    shape.lengths[depth] = Some(length);
                    shape.first[depth] = path.clone();
                }
                Some(expected) if expected != length => {
                    return Err(ReadError::Ragged {
                        place: place(&path),
                        length,
                        first: place(&shape.first[depth]),
                        expected,
                    });
                }
                Some(_) => {}
            }
        }
    }
}

/// Where the scalar token starting at `pos` ends.
fn token_end(bytes: &[u8], mut pos: usize, kind: Kind) -> usize {
    if kind == Kind::String {
        pos += 1;
        while let Some(&byte) = bytes.get(pos) {
            pos += 1;
            match byte {
                b'\\' => pos += 1,
                b'"' => return pos,
                _ => {}
            }
        }
        return pos;
    }
    while bytes
        .get(pos)
        .is_some_and(|b| !matches!(b, b',' | b']' | b'}') && !b.is_ascii_whitespace())
    {
        pos += 1;
    }
    pos
}

/// Why an array cannot be written as JSON.
#[derive(Debug, PartialEq)]
pub struct NotFinite {
    /// The flat index of the first NaN or infinity.
    pub index: usize,
}

/// A scalar JSON can write.
trait WriteJson {
    fn write(&self, out: &mut Vec<u8>);
}

macro_rules! write_integer {
    ($($type:ty),*) => {$(
        impl WriteJson for $type {
            fn write(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
write_integer!(u8, u16, u32, u64, i8, i16, i32, i64);

impl WriteJson for f32 {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(ryu::Buffer::new().format_finite(*self).as_bytes());
    }
}

impl WriteJson for f64 {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(ryu::Buffer::new().format_finite(*self).as_bytes());
    }
}

impl WriteJson for f16 {
    fn write(&self, out: &mut Vec<u8>) {
        self.to_f32().write(out);
    }
}

impl WriteJson for bool {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl WriteJson for String {
    fn write(&self, out: &mut Vec<u8>) {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
    }
}

/// Writes elements `range` of `data` as JSON nested in `shape` (row-major); an empty
/// shape writes the one element bare. NaN and infinity, which JSON has not, are refused.
pub fn write_nested(
    out: &mut Vec<u8>,
    data: &Data,
    range: std::ops::Range<usize>,
    shape: &[usize],
) -> Result<(), NotFinite> {
    if let Some(index) = data.first_non_finite(range.clone()) {
        return Err(NotFinite { index });
    }
    for_each_data!(data, values => write_values(out, &values[range], shape));
    Ok(())
}

fn write_values<T: WriteJson>(out: &mut Vec<u8>, values: &[T], shape: &[usize]) {
    let Some((_, inner)) = shape.split_first() else {
        if let Some(value) = values.first() {
            value.write(out);
        }
        return;
    };
    if inner.is_empty() {
        out.push(b'[');
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            value.write(out);
        }
        out.push(b']');
        return;
    }
    let stride: usize = inner.iter().product();
    out.push(b'[');
    for (index, chunk) in values.chunks(stride.max(1)).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_values(out, chunk, inner);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(raw: &str, element: ElementType, max_rank: usize) -> Result<Array, String> {
        serde_json::from_str::<Box<serde_json::value::RawValue>>(raw).expect("test input is JSON");
        read(raw, element, max_rank, "X", Nulls::Refused).map_err(|err| err.to_string())
    }

    #[test]
    fn shapes_are_discovered_and_rectangular() {
        let array = read_text("[[1, 2], [3, 4], [5, 6]]", ElementType::F32, 2).unwrap();
        assert_eq!(array.shape, vec![3, 2]);
        assert_eq!(array.data, Data::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let array = read_text("[[[1], [2]], [[3], [4]]]", ElementType::I64, 3).unwrap();
        assert_eq!(array.shape, vec![2, 2, 1]);
        assert_eq!(array.data, Data::I64(vec![1, 2, 3, 4]));
        let array = read_text("7", ElementType::I32, 2).unwrap();
        assert_eq!((array.shape, array.data), (vec![], Data::I32(vec![7])));
        let array = read_text(r#"[["a\"b", "\u00e9"], ["", "x y"]]"#, ElementType::Str, 2).unwrap();
        assert_eq!(
            array.data,
            Data::Str(vec!["a\"b".into(), "é".into(), "".into(), "x y".into()])
        );
        let array = read_text("[true, false]", ElementType::Bool, 1).unwrap();
        assert_eq!(array.data, Data::Bool(vec![true, false]));
    }

    #[test]
    fn each_element_type_parses_only_what_fits() {
        assert_eq!(
            read_text("[0.1]", ElementType::F32, 1).unwrap().data,
            Data::F32(vec![0.1f32])
        );
        assert_eq!(
            read_text("[1.0, 1e3, -128]", ElementType::I16, 1).unwrap().data,
            Data::I16(vec![1, 1000, -128])
        );
        for (raw, element, expected) in [
            (
                "[1e39]",
                ElementType::F32,
                "X[0] is 1e39, beyond the range of the input's float type (FP32)",
            ),
            // Rounds to float32's largest, but is beyond it as a double (as JSON Schema reads it).
            ("[3.402823466385289e38]", ElementType::F32, "beyond the range"),
            ("[65505]", ElementType::F16, "beyond the range"),
            ("[1e999]", ElementType::F64, "X[0] is 1e999, beyond the range"),
            ("[1.5]", ElementType::I64, "X[0] is 1.5, not an integer (INT64)"),
            (
                "[256]",
                ElementType::U8,
                "X[0] is 256, beyond the range of the input's integer type (UINT8)",
            ),
            ("[-1]", ElementType::U64, "beyond the range"),
            (
                "[1, \"a\"]",
                ElementType::F32,
                "X[1] is a string, expected a number",
            ),
            (
                "[\"a\", 1]",
                ElementType::Str,
                "X[1] is a number, expected a string",
            ),
            (
                "[1]",
                ElementType::Bool,
                "X[0] is a number, expected true or false",
            ),
            ("[null]", ElementType::F32, "X[0] is null, expected a number"),
        ] {
            let err = read_text(raw, element, 2).unwrap_err();
            assert!(err.contains(expected), "{raw} as {element}: {err}");
        }
    }

    #[test]
    fn null_is_a_missing_float_where_allowed() {
        let array = read("[[1, null], [null, 2]]", ElementType::F32, 2, "X", Nulls::Missing).unwrap();
        let Data::F32(values) = array.data else { panic!() };
        assert_eq!((values[0], values[3]), (1.0, 2.0));
        assert!(values[1].is_nan() && values[2].is_nan());
        let err = read("[1, null]", ElementType::I64, 1, "X", Nulls::Missing).unwrap_err();
        assert_eq!(err.to_string(), "X[1] is null, expected an integer");
        let err = read("[1, null]", ElementType::F32, 1, "X", Nulls::Refused).unwrap_err();
        assert_eq!(err.to_string(), "X[1] is null, expected a number");
    }

    #[test]
    fn errors_name_the_place() {
        for (raw, max_rank, expected) in [
            ("[[1, 2], [3]]", 2, "X[1] has 1 elements but X[0] has 2"),
            (
                "[[[1, 2], [3, 4]], [[5, 6], [7]]]",
                3,
                "X[1][1] has 1 elements but X[0][0] has 2",
            ),
            ("[[1], 2]", 2, "X[1] is a number, expected an array"),
            ("[1, [2]]", 2, "X[1] is an array, expected a number"),
            ("[[[1]]]", 2, "X[0][0] is an array, expected a number"),
            ("[]", 2, "X is an empty array"),
            ("[[]]", 2, "X[0] is an empty array"),
            ("{\"a\": 1}", 2, "X is an object, expected a number"),
        ] {
            let err = read_text(raw, ElementType::F64, max_rank).unwrap_err();
            assert!(err.contains(expected), "{raw}: {err}");
        }
    }

    #[test]
    fn deep_nesting_stops_at_the_allowed_rank_without_recursion() {
        let depth = 100_000;
        let raw = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let err = read(&raw, ElementType::F32, 3, "X", Nulls::Refused)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("X[0][0][0] is an array"), "{err}");
    }

    #[test]
    fn writes_nest_as_the_shape_says_and_refuse_non_finite_numbers() {
        let data = Data::F32(vec![1.0, 0.1, 2.5, -3.0, 4.0, 5.0]);
        let mut out = Vec::new();
        write_nested(&mut out, &data, 0..6, &[2, 3]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[[1.0,0.1,2.5],[-3.0,4.0,5.0]]");
        let mut out = Vec::new();
        write_nested(&mut out, &data, 3..4, &[]).unwrap();
        assert_eq!(out, b"-3.0");
        let mut out = Vec::new();
        write_nested(&mut out, &Data::Str(vec!["a\"".into()]), 0..1, &[1]).unwrap();
        assert_eq!(out, br#"["a\""]"#);
        let bad = Data::F64(vec![1.0, f64::NAN]);
        assert_eq!(
            write_nested(&mut Vec::new(), &bad, 0..2, &[2]),
            Err(NotFinite { index: 1 })
        );
    }
}
