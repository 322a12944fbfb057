//! The body of `POST /score`: `{"X": …}`.
//!
//! serde_json checks the whole body is JSON and hands us `X` as raw text, so the
//! identity model can echo numbers exactly as they were sent and a model's rows are read
//! once, straight into its input's element type (`tensors`). Records (`{"X": [{"age": 31,
//! "city": "paris"}]}`, as pandas' `to_dict("records")` writes a DataFrame) are split
//! here into their fields, each kept as raw text for the same reader.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::tensors::Kind;

/// A `/score` body: the text of `X`, exactly as the client sent it.
#[derive(Debug)]
pub struct ScoreBody<'a> {
    raw: &'a str,
}

impl<'a> ScoreBody<'a> {
    /// Parses a request body. The error says what is wrong.
    pub fn parse(body: &'a [u8]) -> Result<Self, BodyError> {
        let request: ScoreRequest<'a> = serde_json::from_slice(body).map_err(|err| {
            if err.is_data() {
                BodyError::Shape(err)
            } else {
                BodyError::NotJson(err)
            }
        })?;
        Ok(ScoreBody { raw: request.x.get() })
    }

    /// The text of `X`.
    pub fn x(&self) -> &'a str {
        self.raw
    }

    /// Appends `X` as sent, minus insignificant whitespace, so numbers keep their exact
    /// spelling (`0.1`, `12345678901234567890`). Only for an `X` read as numbers: with
    /// strings inside, whitespace is significant.
    pub fn write_compact(&self, out: &mut Vec<u8>) {
        out.extend(self.raw.bytes().filter(|b| !b.is_ascii_whitespace()));
    }

    /// `X` as records: a list of objects, or one object alone (one row). Each record's
    /// fields keep their values as raw text; a key given twice is refused.
    pub fn records(&self) -> Result<Records<'a>, BodyError> {
        let batched = match Kind::of_text(self.raw) {
            Kind::Object => false,
            Kind::Array => true,
            found => return Err(BodyError::NotRecords { found }),
        };
        let records = if batched {
            serde_json::from_str::<RecordList<'a>>(self.raw).map(|list| list.0)
        } else {
            serde_json::from_str::<Record<'a>>(self.raw).map(|record| vec![record])
        }
        .map_err(BodyError::Record)?;
        if records.is_empty() {
            return Err(BodyError::NoRecords);
        }
        Ok(Records { records, batched })
    }
}

/// `X` read as records.
pub struct Records<'a> {
    pub records: Vec<Record<'a>>,
    /// `X` was a list rather than one object.
    pub batched: bool,
}

/// One record: its fields in the order sent.
pub struct Record<'a> {
    pub fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl Record<'_> {
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

struct RecordList<'a>(Vec<Record<'a>>);

impl<'de> serde::Deserialize<'de> for RecordList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = RecordList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of records (objects)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut records = Vec::new();
                while let Some(record) = seq.next_element::<Record<'de>>()? {
                    records.push(record);
                }
                Ok(RecordList(records))
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}

impl<'de> serde::Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = Record<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a record like {"age": 31, "city": "paris"}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                // A set, not a scan of the fields so far: a record of a hundred thousand
                // keys would cost billions of comparisons.
                let mut seen = std::collections::HashSet::new();
                while let Some(KeyName(key)) = map.next_key()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                    }
                    fields.push((key, map.next_value()?));
                }
                Ok(Record { fields })
            }
        }
        deserializer.deserialize_map(RecordVisitor)
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

/// Why a body is not a scoring request.
#[derive(Debug)]
pub enum BodyError {
    NotJson(serde_json::Error),
    /// Valid JSON of the wrong shape at the top: not an object, no `X`, a repeated key.
    Shape(serde_json::Error),
    NotRecords {
        found: Kind,
    },
    NoRecords,
    Record(serde_json::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            BodyError::NotJson(_) => write!(f, "request body is not valid JSON"),
            BodyError::Shape(_) => write!(f, "request body is not a scoring request"),
            BodyError::NotRecords { found } => write!(
                f,
                "X is {found}, expected a record (an object with one key per input) or a list of records"
            ),
            BodyError::NoRecords => write!(f, "X is an empty list, expected records"),
            BodyError::Record(_) => write!(f, "X is not a list of records"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::NotJson(err) | BodyError::Shape(err) | BodyError::Record(err) => Some(err),
            BodyError::NotRecords { .. } | BodyError::NoRecords => None,
        }
    }
}
