//! Parsing `{"X": features}` request bodies.
//!
//! Two passes, both cheap: serde_json checks the whole body is JSON and hands us `X` as
//! raw text (so the identity model can echo numbers exactly as they were sent), then a
//! small iterative scanner walks that text once, checking its shape and reading the
//! numbers. The scanner never recurses, so no nesting depth can overflow the stack.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A validated request: one row or a batch of equal-width rows of finite numbers.
#[derive(Debug)]
pub struct Features<'a> {
    /// The text of `X` exactly as the client sent it (whitespace included).
    raw: &'a str,
    /// All numbers, row-major.
    values: Vec<f64>,
    width: usize,
    /// `X` was a list of rows rather than a single row.
    batched: bool,
}

impl<'a> Features<'a> {
    /// Parses and validates a request body. The error says what is wrong and where.
    pub fn from_body(body: &'a [u8]) -> Result<Self, FeatureError> {
        let request: ScoreRequest<'a> = serde_json::from_slice(body).map_err(|err| {
            if err.is_data() {
                FeatureError::Shape(err)
            } else {
                FeatureError::NotJson(err)
            }
        })?;
        Self::from_raw(request.x.get())
    }

    /// Validates the text of `X`, which serde_json has already checked is JSON.
    fn from_raw(raw: &'a str) -> Result<Self, FeatureError> {
        let mut scan = Scanner {
            bytes: raw.as_bytes(),
            pos: 0,
        };
        let mut values = Vec::new();
        let kind = scan.peek_kind();
        if kind != Kind::Array {
            return Err(FeatureError::WrongKind {
                place: Place::X,
                found: kind,
                expected: "a row of numbers or a list of rows",
            });
        }
        scan.pos += 1;
        if scan.at_close() {
            return Err(FeatureError::EmptyX);
        }
        let (width, batched) = match scan.peek_kind() {
            Kind::Number => (scan.read_row(&mut values, None)?, false),
            Kind::Array => (scan.read_batch(&mut values)?, true),
            other => {
                return Err(FeatureError::WrongKind {
                    place: Place::Row(0),
                    found: other,
                    expected: "a number or a row of numbers",
                });
            }
        };
        Ok(Features {
            raw,
            values,
            width,
            batched,
        })
    }

    /// Number of rows (1 for a single row).
    pub fn rows(&self) -> usize {
        self.values.len() / self.width
    }

    /// Number of values in each row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether `X` was a list of rows rather than a single row.
    pub fn is_batch(&self) -> bool {
        self.batched
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// All values, row-major, for a model to score.
    pub fn into_values(self) -> Vec<f64> {
        self.values
    }

    /// Appends `X` as sent, minus insignificant whitespace, so numbers keep their exact
    /// spelling (`0.1`, `12345678901234567890`).
    pub fn write_compact(&self, out: &mut Vec<u8>) {
        // `X` holds only brackets, commas, numbers and whitespace (the scanner checked),
        // so dropping whitespace bytes cannot touch the inside of a token.
        out.extend(self.raw.bytes().filter(|b| !b.is_ascii_whitespace()));
    }
}

/// The top-level object: `X` is kept as raw text, other keys are skipped, and a key that
/// appears twice is refused (JSON parsers disagree on which copy wins).
struct ScoreRequest<'a> {
    x: &'a RawValue,
}

impl<'de> serde::Deserialize<'de> for ScoreRequest<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = ScoreRequest<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a JSON object like {"X": [1, 2]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut x = None;
        // Keys other than "X" are rare; this stays unallocated for the usual request.
        let mut other_keys: Vec<Cow<'de, str>> = Vec::new();
        while let Some(KeyName(key)) = map.next_key()? {
            let repeated = if key == "X" {
                x.is_some()
            } else {
                other_keys.contains(&key)
            };
            if repeated {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            if key == "X" {
                x = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
                other_keys.push(key);
            }
        }
        x.map(|x| ScoreRequest { x })
            .ok_or_else(|| de::Error::custom(r#"missing key "X""#))
    }
}

/// An object key, borrowed from the body unless it contains escapes.
struct KeyName<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyName(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyName(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

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

/// A place in `X`, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    X,
    /// `X[i]`: a row of a batch, or a number of a lone row.
    Row(usize),
    /// `X[r][i]`.
    Element(usize, usize),
}

impl Place {
    /// Element `index` of the row at `row` (`None` for a lone row).
    fn element(row: Option<usize>, index: usize) -> Place {
        match row {
            None => Place::Row(index),
            Some(row) => Place::Element(row, index),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Place::X => f.write_str("X"),
            Place::Row(index) => write!(f, "X[{index}]"),
            Place::Element(row, index) => write!(f, "X[{row}][{index}]"),
        }
    }
}

/// Why a body is not a scoring request; each names the place in `X` that is wrong.
#[derive(Debug)]
pub enum FeatureError {
    NotJson(serde_json::Error),
    /// Valid JSON of the wrong shape at the top: not an object, no `X`, a repeated key.
    Shape(serde_json::Error),
    WrongKind {
        place: Place,
        found: Kind,
        expected: &'static str,
    },
    EmptyX,
    EmptyRow(usize),
    Ragged {
        row: usize,
        width: usize,
        first: usize,
    },
    OutOfRange {
        place: Place,
        token: String,
    },
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            FeatureError::NotJson(err) => write!(f, "request body is not valid JSON: {err}"),
            FeatureError::Shape(err) => write!(f, "{err}"),
            FeatureError::WrongKind {
                place,
                found,
                expected,
            } => write!(f, "{place} is {found}, expected {expected}"),
            FeatureError::EmptyX => write!(f, "X is empty, expected a row of numbers or a list of rows"),
            FeatureError::EmptyRow(row) => write!(f, "X[{row}] is an empty row, expected numbers"),
            FeatureError::Ragged { row, width, first } => write!(
                f,
                "X[{row}] has {width} values but X[0] has {first}: rows must have equal length"
            ),
            FeatureError::OutOfRange { place, token } => {
                write!(f, "{place} is {token}, which is out of range for a 64-bit float")
            }
        }
    }
}

impl std::error::Error for FeatureError {}

/// A cursor over text that serde_json has already validated as one JSON value, so the
/// scanner only has to classify tokens, never to reject malformed syntax.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn skip_whitespace(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek_kind(&mut self) -> Kind {
        self.skip_whitespace();
        match self.bytes.get(self.pos) {
            Some(b'[') => Kind::Array,
            Some(b'{') => Kind::Object,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Boolean,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    /// Consumes a `]` if one comes next.
    fn at_close(&mut self) -> bool {
        self.skip_whitespace();
        let close = self.bytes.get(self.pos) == Some(&b']');
        if close {
            self.pos += 1;
        }
        close
    }

    /// After an element: consumes `,` (more follow) or `]` (done, returns true).
    fn after_element(&mut self) -> bool {
        self.skip_whitespace();
        let close = self.bytes.get(self.pos) == Some(&b']');
        self.pos += 1;
        close
    }

    /// Reads rows `[..], [..]` up to the closing `]` of `X`; returns the common width.
    fn read_batch(&mut self, values: &mut Vec<f64>) -> Result<usize, FeatureError> {
        let mut width = 0;
        for row in 0.. {
            let kind = self.peek_kind();
            if kind != Kind::Array {
                return Err(FeatureError::WrongKind {
                    place: Place::Row(row),
                    found: kind,
                    expected: "a row of numbers",
                });
            }
            self.pos += 1;
            if self.at_close() {
                return Err(FeatureError::EmptyRow(row));
            }
            let row_width = self.read_row(values, Some(row))?;
            if row == 0 {
                width = row_width;
            } else if row_width != width {
                return Err(FeatureError::Ragged {
                    row,
                    width: row_width,
                    first: width,
                });
            }
            if self.after_element() {
                break;
            }
        }
        Ok(width)
    }

    /// Reads numbers up to the `]` closing a row whose `[` is consumed; returns the count.
    fn read_row(&mut self, values: &mut Vec<f64>, row: Option<usize>) -> Result<usize, FeatureError> {
        let mut count = 0;
        loop {
            let kind = self.peek_kind();
            if kind != Kind::Number {
                return Err(FeatureError::WrongKind {
                    place: Place::element(row, count),
                    found: kind,
                    expected: "a number",
                });
            }
            let start = self.pos;
            while self
                .bytes
                .get(self.pos)
                .is_some_and(|b| !matches!(b, b',' | b']') && !b.is_ascii_whitespace())
            {
                self.pos += 1;
            }
            // Only ASCII bytes were consumed, so this slice is valid UTF-8.
            let token = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
            match token.parse::<f64>() {
                Ok(value) if value.is_finite() => values.push(value),
                _ => {
                    return Err(FeatureError::OutOfRange {
                        place: Place::element(row, count),
                        token: token.to_owned(),
                    });
                }
            }
            count += 1;
            if self.after_element() {
                return Ok(count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Features<'_>, String> {
        Features::from_body(body.as_bytes()).map_err(|err| err.to_string())
    }

    fn compact(features: &Features) -> String {
        let mut out = Vec::new();
        features.write_compact(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_row_keeps_shape_and_spelling() {
        let f = parse(r#"{"X": [1, 2.50, -0.1e-3 , 12345678901234567890]}"#).unwrap();
        assert!(!f.is_batch());
        assert_eq!((f.rows(), f.width()), (1, 4));
        assert_eq!(f.values(), &[1.0, 2.5, -0.0001, 12345678901234567890.0]);
        assert_eq!(compact(&f), "[1,2.50,-0.1e-3,12345678901234567890]");
    }

    #[test]
    fn batch_is_row_major() {
        let f = parse("{\"X\":[[1,2],\n [3,4],[5,6]], \"id\": {\"deep\": [1]}}").unwrap();
        assert!(f.is_batch());
        assert_eq!((f.rows(), f.width()), (3, 2));
        assert_eq!(f.values(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(compact(&f), "[[1,2],[3,4],[5,6]]");
    }

    #[test]
    fn errors_name_the_place() {
        let cases = [
            (r#"{"X": [1, "a"]}"#, "X[1] is a string, expected a number"),
            (r#"{"X": [[1], ["a"]]}"#, "X[1][0] is a string, expected a number"),
            (r#"{"X": [[1, 2], [3]]}"#, "X[1] has 1 values but X[0] has 2"),
            (
                r#"{"X": [[1], 2]}"#,
                "X[1] is a number, expected a row of numbers",
            ),
            (r#"{"X": [1, [2]]}"#, "X[1] is an array, expected a number"),
            (r#"{"X": [[[1]]]}"#, "X[0][0] is an array, expected a number"),
            (r#"{"X": [1e999]}"#, "X[0] is 1e999, which is out of range"),
            (r#"{"X": []}"#, "X is empty"),
            (r#"{"X": [[]]}"#, "X[0] is an empty row"),
            (r#"{"X": {"a": 1}}"#, "X is an object"),
            (r#"{"X": null}"#, "X is null"),
            (
                r#"{"X": [true]}"#,
                "X[0] is a boolean, expected a number or a row",
            ),
            (r#"{"Y": [1]}"#, r#"missing key "X""#),
            (r#"{"X": [1], "X": [2]}"#, r#"duplicate key "X""#),
            (r#"{"a": 1, "X": [1], "a": 2}"#, r#"duplicate key "a""#),
            (r#"[1, 2]"#, "invalid type: sequence"),
            (r#"{"X": [NaN]}"#, "not valid JSON"),
            (r#"{"X": [1, 2]"#, "not valid JSON"),
            (r#"{"X": [1]} x"#, "not valid JSON: trailing characters"),
        ];
        for (body, expected) in cases {
            let err = parse(body).expect_err(body);
            assert!(
                err.contains(expected),
                "body {body}\n  expected error containing {expected:?}\n  got {err:?}"
            );
        }
    }

    #[test]
    fn escaped_duplicate_keys_are_caught() {
        let err = parse(r#"{"\u0058": [1], "X": [2]}"#).unwrap_err();
        assert!(err.contains(r#"duplicate key "X""#), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let depth = 100_000;
        let inner = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let x = parse(&format!(r#"{{"X": {inner}}}"#)).unwrap_err();
        assert!(
            x.contains("X[0][0] is an array") || x.contains("recursion limit"),
            "{x}"
        );
        // serde_json skips ignored values with a loop, not recursion: accepted, no overflow.
        let body = format!(r#"{{"X": [1], "y": {inner}}}"#);
        let other = parse(&body).unwrap();
        assert_eq!(other.values(), &[1.0]);
    }
}
