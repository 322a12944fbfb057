//! The Open Inference Protocol (KServe V2) over REST, beside `/score`, so the clients and
//! tooling of KServe, Seldon MLServer and Triton talk to this server unchanged.

use std::fmt;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value, json};

use crate::api::Scorer;
use crate::http::{self, ApiError, HttpResponse, Route};
use crate::model::{Data, Model};

/// The only version a model has here.
const MODEL_VERSION: &str = "1";

fn body(status: StatusCode, value: Value) -> HttpResponse {
    http::json(status, value.to_string())
}

/// Answers the metadata and health GETs.
pub fn get(model: &dyn Model, route: Route, path: &str, ready: bool) -> Result<HttpResponse, ApiError> {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(match route {
        Route::V2Server => body(
            StatusCode::OK,
            json!({"name": "score-service", "version": env!("CARGO_PKG_VERSION"), "extensions": []}),
        ),
        // Both the status code and the body carry the answer: the two versions of the
        // spec disagree on which one clients read.
        Route::V2Live => body(StatusCode::OK, json!({"live": true})),
        Route::V2Ready => body(status, json!({"ready": ready})),
        Route::V2ModelReady => {
            check_model(model, path)?;
            body(status, json!({"name": model.name(), "ready": ready}))
        }
        _ => {
            check_model(model, path)?;
            body(
                StatusCode::OK,
                json!({
                    "name": model.name(),
                    "versions": [MODEL_VERSION],
                    "platform": model.platform(),
                    "inputs": model.inputs(),
                    "outputs": model.outputs(),
                }),
            )
        }
    })
}

/// A 404 unless `path` names the model this server serves.
fn check_model(model: &dyn Model, path: &str) -> Result<(), ApiError> {
    let asked = http::model_path(path).map_or("", |(name, _)| name);
    if asked == model.name() {
        Ok(())
    } else {
        Err(ApiError::UnknownModel {
            asked: asked.to_owned(),
            served: model.name().to_owned(),
        })
    }
}

/// Why an inference request is refused; each names the input or output at fault.
#[derive(Debug)]
pub enum InferError {
    NotARequest(serde_json::Error),
    InputCount {
        given: usize,
        model: String,
    },
    UnknownInput {
        name: String,
        model: String,
        expected: String,
    },
    Datatype {
        name: String,
        given: String,
        model: String,
        expected: &'static str,
    },
    Shape {
        name: String,
        shape: Vec<i64>,
    },
    UnsupportedDatatype {
        name: String,
        datatype: String,
    },
    TooLarge {
        name: String,
    },
    Nesting {
        name: String,
        found: &'static str,
    },
    Number {
        name: String,
        index: usize,
        number: Number,
        why: &'static str,
    },
    DataCount {
        name: String,
        shape: Vec<i64>,
        expected: usize,
        found: Option<usize>,
    },
    UnknownOutput {
        name: String,
        model: String,
        available: String,
    },
}

impl fmt::Display for InferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InferError::NotARequest(err) => write!(f, "not an inference request: {err}"),
            InferError::InputCount { given, model } => {
                write!(f, "{given} inputs given; model {model:?} takes exactly one")
            }
            InferError::UnknownInput {
                name,
                model,
                expected,
            } => {
                write!(f, "unknown input {name:?}: model {model:?} takes {expected:?}")
            }
            InferError::Datatype {
                name,
                given,
                model,
                expected,
            } => {
                write!(
                    f,
                    "input {name:?} is {given}, but model {model:?} takes {expected}"
                )
            }
            InferError::Shape { name, shape } => write!(
                f,
                "input {name:?} has shape {shape:?}; expected [rows, features] or [features], each at least 1"
            ),
            InferError::UnsupportedDatatype { name, datatype } => {
                write!(
                    f,
                    "input {name:?} has datatype {datatype:?}, which this server does not take"
                )
            }
            InferError::TooLarge { name } => write!(f, "input {name:?} is too large"),
            InferError::Nesting { name, found } => write!(
                f,
                "input {name:?}: data must be numbers in arrays no deeper than the shape, found {found}"
            ),
            InferError::Number {
                name,
                index,
                number,
                why,
            } => write!(f, "input {name:?}[{index}] is {number}: {why}"),
            InferError::DataCount {
                name,
                shape,
                expected,
                found,
            } => match found {
                Some(found) => write!(
                    f,
                    "input {name:?} has shape {shape:?} ({expected} values) but its data holds {found}"
                ),
                None => write!(
                    f,
                    "input {name:?} has shape {shape:?} ({expected} values) but its data holds more"
                ),
            },
            InferError::UnknownOutput {
                name,
                model,
                available,
            } => {
                write!(f, "unknown output {name:?}: model {model:?} gives {available}")
            }
        }
    }
}

impl std::error::Error for InferError {}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<InferInput>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize)]
struct InferInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
}

#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<OutputTensor<'a>>,
}

#[derive(Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'a str,
    shape: Vec<usize>,
    data: DataRef<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum DataRef<'a> {
    Model(&'a Data),
    Echo(&'a [Number]),
}

/// `POST /v2/models/{name}/infer`.
pub async fn infer(scorer: &Arc<Scorer>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let model = scorer.model.as_ref();
    check_model(model, request.uri().path())?;
    http::check_json_content_type(request.headers())?;
    let bytes = http::read_json_body(request, &scorer.limits).await?;
    let bad = ApiError::bad_request;
    let Parsed {
        request,
        rows,
        width,
        numbers,
    } = parse(&bytes, model.name()).map_err(bad)?;
    let input = &request.inputs[0];
    let expected = &model.inputs()[0];
    if !model.echoes() {
        if input.name != expected.name {
            return Err(bad(InferError::UnknownInput {
                name: input.name.clone(),
                model: model.name().to_owned(),
                expected: expected.name.clone(),
            }));
        }
        if input.datatype != expected.datatype {
            return Err(bad(InferError::Datatype {
                name: input.name.clone(),
                given: input.datatype.clone(),
                model: model.name().to_owned(),
                expected: expected.datatype,
            }));
        }
    }
    scorer.check_batch(rows, width, &format!("input {:?}", input.name))?;

    let shape = input.shape.iter().map(|d| *d as usize).collect::<Vec<_>>();
    let model_output;
    let mut outputs = Vec::new();
    if model.echoes() {
        outputs.push(OutputTensor {
            name: "output0",
            datatype: &input.datatype,
            shape,
            data: DataRef::Echo(&numbers),
        });
    } else {
        let values: Vec<f64> = numbers.iter().map(|n| n.as_f64().unwrap_or(f64::NAN)).collect();
        model_output = scorer.predict(rows, width, values).await?;
        for tensor in &model_output.tensors {
            outputs.push(OutputTensor {
                name: &tensor.name,
                datatype: tensor.data.datatype(),
                shape: tensor.shape.clone(),
                data: DataRef::Model(&tensor.data),
            });
        }
    }
    if let Some(requested) = &request.outputs {
        if let Some(unknown) = requested
            .iter()
            .find(|r| !outputs.iter().any(|o| o.name == r.name))
        {
            let available: Vec<&str> = outputs.iter().map(|o| o.name).collect();
            return Err(bad(InferError::UnknownOutput {
                name: unknown.name.clone(),
                model: model.name().to_owned(),
                available: available.join(", "),
            }));
        }
        outputs.retain(|o| requested.iter().any(|r| r.name == o.name));
    }
    let response = InferResponse {
        model_name: model.name(),
        model_version: MODEL_VERSION,
        id: request.id,
        outputs,
    };
    let bytes = serde_json::to_vec(&response).map_err(|err| ApiError::ModelFailed {
        model: model.name().to_owned(),
        error: crate::model::PredictError::Output {
            name: "response".into(),
            problem: err.to_string(),
        },
    })?;
    Ok(http::json(StatusCode::OK, bytes))
}

/// A request as the protocol reads it, before the model is asked anything: its one
/// input's rows, width and numbers, checked against its declared shape and datatype.
pub struct Parsed {
    request: InferRequest,
    pub rows: usize,
    pub width: usize,
    pub numbers: Vec<Number>,
}

/// Parses an inference request for `model`; the error names what is wrong.
pub fn parse(bytes: &[u8], model: &str) -> Result<Parsed, InferError> {
    let request: InferRequest = serde_json::from_slice(bytes).map_err(InferError::NotARequest)?;
    let [input] = request.inputs.as_slice() else {
        return Err(InferError::InputCount {
            given: request.inputs.len(),
            model: model.to_owned(),
        });
    };
    let (rows, width, numbers) = read_input(input)?;
    Ok(Parsed {
        request,
        rows,
        width,
        numbers,
    })
}

/// Checks an input's shape, datatype and data, flattening nested data row-major.
/// Returns rows, row width and the numbers.
fn read_input(input: &InferInput) -> Result<(usize, usize, Vec<Number>), InferError> {
    let name = || input.name.clone();
    let (rows, width) = match input.shape.as_slice() {
        [width] if *width > 0 => (1, *width as usize),
        [rows, width] if *rows > 0 && *width > 0 => (*rows as usize, *width as usize),
        shape => {
            return Err(InferError::Shape {
                name: name(),
                shape: shape.to_vec(),
            });
        }
    };
    let kind = NumberKind::of(&input.datatype).ok_or_else(|| InferError::UnsupportedDatatype {
        name: name(),
        datatype: input.datatype.clone(),
    })?;
    let expected = rows
        .checked_mul(width)
        .ok_or_else(|| InferError::TooLarge { name: name() })?;
    let mut numbers = Vec::with_capacity(expected.min(1 << 16));
    // Depth-first over nested arrays, without recursion and never deeper than the shape.
    let mut stack = vec![(&input.data, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(items) if depth < input.shape.len() => {
                stack.extend(items.iter().rev().map(|item| (item, depth + 1)));
            }
            Value::Number(number) if depth >= 1 => {
                kind.check(number).map_err(|why| InferError::Number {
                    name: name(),
                    index: numbers.len(),
                    number: number.clone(),
                    why,
                })?;
                numbers.push(number.clone());
            }
            other => {
                return Err(InferError::Nesting {
                    name: name(),
                    found: describe(other),
                });
            }
        }
        if numbers.len() > expected {
            break;
        }
    }
    if numbers.len() != expected {
        return Err(InferError::DataCount {
            name: name(),
            shape: input.shape.clone(),
            expected,
            found: (numbers.len() < expected).then_some(numbers.len()),
        });
    }
    Ok((rows, width, numbers))
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number at the top",
        Value::String(_) => "a string",
        Value::Array(_) => "an array nested deeper than the shape",
        Value::Object(_) => "an object",
    }
}

/// The numeric datatypes of the protocol, and what numbers each admits.
enum NumberKind {
    Float,
    Signed(i64, i64),
    Unsigned(u64),
}

impl NumberKind {
    fn of(datatype: &str) -> Option<Self> {
        Some(match datatype {
            "FP16" | "FP32" | "FP64" => NumberKind::Float,
            "INT8" => NumberKind::Signed(i8::MIN.into(), i8::MAX.into()),
            "INT16" => NumberKind::Signed(i16::MIN.into(), i16::MAX.into()),
            "INT32" => NumberKind::Signed(i32::MIN.into(), i32::MAX.into()),
            "INT64" => NumberKind::Signed(i64::MIN, i64::MAX),
            "UINT8" => NumberKind::Unsigned(u8::MAX.into()),
            "UINT16" => NumberKind::Unsigned(u16::MAX.into()),
            "UINT32" => NumberKind::Unsigned(u32::MAX.into()),
            "UINT64" => NumberKind::Unsigned(u64::MAX),
            _ => return None,
        })
    }

    fn check(&self, number: &Number) -> Result<(), &'static str> {
        match self {
            NumberKind::Float => Ok(()),
            NumberKind::Signed(min, max) => match number.as_i64() {
                Some(n) if (*min..=*max).contains(&n) => Ok(()),
                _ => Err("not an integer in the datatype's range"),
            },
            NumberKind::Unsigned(max) => match number.as_u64() {
                Some(n) if n <= *max => Ok(()),
                _ => Err("not a non-negative integer in the datatype's range"),
            },
        }
    }
}
