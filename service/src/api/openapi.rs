//! The OpenAPI document served at `GET /openapi.json`: the committed one
//! (`service/openapi.json`, every route and error), with the loaded model's contract
//! written in, once at start-up, so that client generators and schemathesis see the real
//! thing: `/score`'s rows as deep and as wide as the model's input (or its records, one
//! key per input), each element's type and range, each score's form; `/v2`'s inputs by
//! name with their shapes and datatypes; the model's name.

use serde_json::{Value, json};

use crate::api::score::{Column, Contract, TensorRows};
use crate::config::Limits;
use crate::model::{Dim, ElementType, Model, TensorSpec};

/// The committed document, the part every model shares.
pub const COMMITTED: &str = include_str!("../../openapi.json");

/// The document for `model`, as `/score` (`contract`) and `/v2` serve it within `limits`.
pub fn document(model: &dyn Model, contract: &Contract, limits: &Limits) -> Vec<u8> {
    let mut document: Value = match serde_json::from_str(COMMITTED) {
        Ok(document) => document,
        // The committed file is JSON (a test holds it to that); were it not, serve it as is.
        Err(_) => return COMMITTED.as_bytes().to_vec(),
    };
    document["components"]["parameters"]["ModelName"]["schema"] =
        json!({"type": "string", "enum": [model.name()]});
    if let Contract::Refused(why) = contract {
        if let Some(paths) = document["paths"].as_object_mut() {
            paths.remove("/score");
        }
        let description = document["info"]["description"].as_str().unwrap_or_default();
        document["info"]["description"] = json!(format!(
            "{description} This model is served over /v2 only: /score cannot take it ({why})."
        ));
    }
    let schemas = &mut document["components"]["schemas"];
    match contract {
        Contract::Echo | Contract::Refused(_) => {}
        Contract::Rows {
            tensor,
            records,
            score,
            probabilities,
        } => {
            let mut forms = Vec::new();
            if let Some(tensor) = tensor {
                forms.extend(rows_forms(tensor, limits));
            }
            if let Some(columns) = records {
                forms.extend(record_forms(columns, limits));
            }
            schemas["ScoreRequest"] = json!({
                "type": "object",
                "required": ["X"],
                "properties": {"X": {"oneOf": forms}},
            });
            let outputs = model.outputs();
            let mut answer = json!({
                "type": "object",
                "required": ["score"],
                "properties": {"score": {
                    "type": "array",
                    "minItems": 1,
                    "items": score_schema(&outputs[*score]),
                    "description": format!("One score per row: that row of output {:?}", outputs[*score].name),
                }},
                "additionalProperties": false,
            });
            if let Some(index) = probabilities {
                answer["required"] = json!(["score", "probabilities"]);
                answer["properties"]["probabilities"] = json!({
                    "type": "array",
                    "items": score_schema(&outputs[*index]),
                    "description": "Each row's class probabilities, in the order of the class labels",
                });
            }
            schemas["ScoreResponse"] = answer;
        }
    }
    if !model.echoes() {
        let inputs: Vec<Value> = model
            .inputs()
            .iter()
            .map(|spec| infer_input(spec, limits))
            .collect();
        let count = inputs.len();
        schemas["InferenceRequest"]["properties"]["inputs"] = json!({
            "type": "array",
            "minItems": count,
            "maxItems": count,
            "items": {"oneOf": inputs},
            "description": "Every input the model declares, by name, in any order",
        });
        let names: Vec<&str> = model.outputs().iter().map(|o| o.name.as_str()).collect();
        schemas["InferenceRequest"]["properties"]["outputs"]["items"]["properties"]["name"] =
            json!({"enum": names});
    }
    serde_json::to_vec(&document).unwrap_or_else(|_| COMMITTED.as_bytes().to_vec())
}

/// An element of `element` in JSON, with its type's range; `missing` admits null (NaN).
fn element(element: ElementType, missing: bool) -> Value {
    let kind = if missing {
        json!(["number", "null"])
    } else {
        json!("number")
    };
    // Bounds as a validator reads them, as doubles: the reader refuses what is beyond.
    let number = |bound: f64| json!({"type": kind, "minimum": -bound, "maximum": bound});
    let integer = |min: i128, max: i128| json!({"type": "integer", "minimum": min, "maximum": max});
    match element {
        ElementType::Bool => json!({"type": "boolean"}),
        ElementType::Str => json!({"type": "string"}),
        ElementType::F16 => number(65504.0),
        ElementType::F32 => number(f64::from(f32::MAX)),
        ElementType::F64 => number(f64::MAX),
        ElementType::U8 => integer(0, u8::MAX.into()),
        ElementType::U16 => integer(0, u16::MAX.into()),
        ElementType::U32 => integer(0, u32::MAX.into()),
        ElementType::U64 => integer(0, u64::MAX.into()),
        ElementType::I8 => integer(i8::MIN.into(), i8::MAX.into()),
        ElementType::I16 => integer(i16::MIN.into(), i16::MAX.into()),
        ElementType::I32 => integer(i32::MIN.into(), i32::MAX.into()),
        ElementType::I64 => integer(i64::MIN.into(), i64::MAX.into()),
    }
}

/// Arrays nested as `dims` say (a fixed dimension's exact length), around `leaf`.
fn nested(dims: &[Dim], leaf: Value) -> Value {
    dims.iter().rev().fold(leaf, |items, dim| match dim {
        Dim::Fixed(size) => json!({"type": "array", "minItems": size, "maxItems": size, "items": items}),
        Dim::Dynamic => json!({"type": "array", "minItems": 1, "items": items}),
    })
}

/// A batch of `row`s: at most the limit, or exactly a fixed first dimension.
fn batch(first: Dim, row: Value, limits: &Limits) -> Value {
    let (min, max) = match first {
        Dim::Fixed(size) => (size, size),
        Dim::Dynamic => (1, limits.max_batch),
    };
    json!({"type": "array", "minItems": min, "maxItems": max, "items": row})
}

/// `X` as one row, or as a batch of rows (told apart by their depth).
fn rows_forms(tensor: &TensorRows, limits: &Limits) -> Vec<Value> {
    let leaf = element(tensor.element, tensor.element.is_float());
    let row = nested(&tensor.row_shape, leaf);
    vec![row.clone(), batch(tensor.first, row, limits)]
}

/// `X` as one record, or a list of them: one key per input.
fn record_forms(columns: &[Column], limits: &Limits) -> Vec<Value> {
    let properties: serde_json::Map<String, Value> = columns
        .iter()
        .map(|c| (c.name.clone(), element(c.element, c.element.is_float())))
        .collect();
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let record = json!({
        "type": "object",
        "required": names,
        "properties": properties,
        "additionalProperties": false,
    });
    vec![record.clone(), batch(Dim::Dynamic, record, limits)]
}

/// One row's score from `output`: a value where it declares one per row, else its row
/// nested (as `/score` writes it).
fn score_schema(output: &TensorSpec) -> Value {
    let leaf = element(output.element, false);
    let row = &output.shape[1.min(output.shape.len())..];
    if row.iter().all(|d| *d == Dim::Fixed(1)) {
        leaf
    } else {
        nested(row, leaf)
    }
}

/// One `/v2` input: its name, its shape dimension by dimension, its datatype and data.
fn infer_input(spec: &TensorSpec, limits: &Limits) -> Value {
    let dims: Vec<Value> = spec
        .shape
        .iter()
        .enumerate()
        .map(|(axis, dim)| match (axis, dim) {
            (_, Dim::Fixed(size)) => json!({"const": size}),
            (0, Dim::Dynamic) => json!({"type": "integer", "minimum": 1, "maximum": limits.max_batch}),
            (_, Dim::Dynamic) => json!({"type": "integer", "minimum": 1}),
        })
        .collect();
    let rank = dims.len();
    // In a JSON body, the data is JSON (binary data has a body of its own, not JSON).
    json!({
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"const": spec.name},
            "shape": {"type": "array", "prefixItems": dims, "minItems": rank, "maxItems": rank, "items": false},
            "datatype": {"const": spec.element.protocol_name()},
            "data": {
                "type": "array",
                "description": "Row-major, flat or nested as the shape, as many values as the shape holds",
            },
            "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
        },
    })
}

/// `document` without `/metrics`, for the public port of a server whose metrics are on
/// the operator port.
pub fn without_metrics(document: &[u8]) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(document) else {
        return document.to_vec();
    };
    if let Some(paths) = value["paths"].as_object_mut() {
        paths.remove("/metrics");
    }
    serde_json::to_vec(&value).unwrap_or_else(|_| document.to_vec())
}
