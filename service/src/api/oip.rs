//! The Open Inference Protocol (KServe V2) over REST, beside `/score`, so the clients and
//! tooling of KServe, Seldon MLServer and Triton talk to this server unchanged.
//!
//! An inference request names every input the model declares, in any order, each with
//! its shape (any rank, checked against the declared one) and datatype (any of the
//! protocol's, converted to what the graph takes only where no value changes). Data comes
//! as JSON (flat or nested, row-major) or, with Triton's binary tensor data extension,
//! as raw bytes after the JSON (`Inference-Header-Content-Length`); outputs go back the
//! same way when asked (`binary_data`, `binary_data_output`), which is what Triton's own
//! client does by default.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::api::{NotFinite, Scorer};
use crate::http::{self, ApiError, HttpResponse, Route};
use crate::model::{self, Array, Data, Dim, ElementType, Model, for_each_data};
use crate::tensors::{self, Nulls};

/// The protocol extensions this server speaks, as server metadata lists them.
pub const EXTENSIONS: [&str; 1] = ["binary_tensor_data"];

/// How long the JSON part of a request or response with binary data is.
pub const HEADER_LENGTH: HeaderName = HeaderName::from_static("inference-header-content-length");

const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

fn body(status: StatusCode, value: Value) -> HttpResponse {
    http::json(status, value.to_string())
}

/// Answers the server's metadata and health GETs.
/// `repository`: whether the repository extension's routes are on.
pub fn server_get(route: Route, ready: bool, repository: bool) -> HttpResponse {
    match route {
        // Both the status code and the body carry the answer: the two versions of the
        // spec disagree on which one clients read.
        Route::V2Live => body(StatusCode::OK, json!({"live": true})),
        Route::V2Ready => body(ready_status(ready), json!({"ready": ready})),
        _ => {
            let mut extensions = EXTENSIONS.to_vec();
            if repository {
                extensions.push("model_repository");
            }
            body(
                StatusCode::OK,
                json!({"name": "score-service", "version": env!("CARGO_PKG_VERSION"), "extensions": extensions}),
            )
        }
    }
}

/// Answers a model's metadata and readiness GETs; `versions` are those loaded.
pub fn model_get(model: &dyn Model, versions: &[String], route: Route, ready: bool) -> HttpResponse {
    match route {
        Route::V2ModelReady => body(ready_status(ready), json!({"name": model.name(), "ready": ready})),
        _ => body(
            StatusCode::OK,
            json!({
                "name": model.name(),
                "versions": versions,
                "platform": model.platform(),
                "inputs": model.inputs(),
                "outputs": model.outputs(),
            }),
        ),
    }
}

fn ready_status(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Why an inference request is refused; each names the input or output at fault.
#[derive(Debug)]
pub enum InferError {
    NotARequest(serde_json::Error),
    HeaderLength {
        value: String,
        body: usize,
    },
    UnsupportedDatatype {
        name: String,
        datatype: String,
    },
    Shape {
        name: String,
        shape: Vec<i64>,
    },
    TooLarge {
        name: String,
    },
    NoData {
        name: String,
    },
    TwoData {
        name: String,
    },
    DataShape {
        name: String,
        shape: Vec<usize>,
        found: Vec<usize>,
    },
    /// The data is not the datatype's values (the error names the input and the place).
    Data(Box<tensors::ReadError>),
    Binary {
        name: String,
        problem: String,
    },
    BinaryLeft {
        bytes: usize,
    },
    Echo {
        given: usize,
    },
    DuplicateInput {
        name: String,
    },
    UnknownInput {
        name: String,
        model: String,
        expected: String,
    },
    MissingInput {
        name: String,
        model: String,
    },
    Batch {
        first: String,
        rows: usize,
        other: String,
        other_rows: usize,
    },
    Datatype {
        name: String,
        source: model::ConvertError,
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
            InferError::HeaderLength { value, body } => write!(
                f,
                "Inference-Header-Content-Length is {value:?}: it must be a number of bytes within the body's {body}"
            ),
            InferError::UnsupportedDatatype { name, datatype } => write!(
                f,
                "input {name:?} has datatype {datatype:?}, which is not one of the protocol's"
            ),
            InferError::Shape { name, shape } => write!(
                f,
                "input {name:?} has shape {shape:?}; every dimension must be at least 1"
            ),
            InferError::TooLarge { name } => write!(f, "input {name:?} is too large"),
            InferError::NoData { name } => write!(
                f,
                "input {name:?} has no data: give \"data\", or binary data with the binary_data_size parameter"
            ),
            InferError::TwoData { name } => write!(
                f,
                "input {name:?} has both \"data\" and binary_data_size: give one"
            ),
            InferError::DataShape { name, shape, found } => write!(
                f,
                "input {name:?} has shape {shape:?}, but its data is shaped {found:?}: give it flat, or nested as the shape"
            ),
            InferError::Data(source) => write!(f, "{source}"),
            InferError::Binary { name, problem } => write!(f, "input {name:?}: binary data {problem}"),
            InferError::BinaryLeft { bytes } => write!(
                f,
                "the binary data holds {bytes} bytes beyond what the inputs' binary_data_size parameters claim"
            ),
            InferError::Echo { given } => write!(f, "{given} inputs given; the echo model takes one"),
            InferError::DuplicateInput { name } => write!(f, "input {name:?} is given twice"),
            InferError::UnknownInput {
                name,
                model,
                expected,
            } => write!(f, "unknown input {name:?}: model {model:?} takes {expected}"),
            InferError::MissingInput { name, model } => {
                write!(f, "input {name:?} is missing: model {model:?} takes it")
            }
            InferError::Datatype { name, source } => write!(f, "input {name:?}: {source}"),
            InferError::Batch {
                first,
                rows,
                other,
                other_rows,
            } => write!(
                f,
                "input {first:?} has {rows} rows but input {other:?} has {other_rows}: the inputs' first dimension is one batch"
            ),
            InferError::UnknownOutput {
                name,
                model,
                available,
            } => write!(f, "unknown output {name:?}: model {model:?} gives {available}"),
        }
    }
}

impl std::error::Error for InferError {}

/// The protocol's parameters, where this server reads any; others are accepted and
/// ignored, as the protocol asks.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Parameters {
    binary_data_size: Option<u64>,
    binary_data: Option<bool>,
    binary_data_output: Option<bool>,
}

#[derive(Deserialize)]
struct InferRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow)]
    inputs: Vec<InferInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize)]
struct InferInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

/// A request as the protocol reads it, before the model is asked anything.
pub struct Parsed {
    pub id: Option<String>,
    pub inputs: Vec<(String, Array)>,
    /// Outputs asked for, each with whether it goes back binary (if it says).
    pub outputs: Option<Vec<(String, Option<bool>)>>,
    /// Whether outputs go back binary unless they say otherwise.
    pub binary_output: bool,
}

/// Splits a body at `Inference-Header-Content-Length`: the JSON, then the binary data.
pub fn split_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<(&'b [u8], &'b [u8]), InferError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let length = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|length| *length <= body.len() && *length > 0)
        .ok_or_else(|| InferError::HeaderLength {
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            body: body.len(),
        })?;
    Ok(body.split_at(length))
}

/// Parses an inference request: its JSON part (already checked to be UTF-8) and the
/// binary data after it. Each input is read in the datatype it declares.
pub fn parse(json: &[u8], binary: &[u8]) -> Result<Parsed, InferError> {
    let request: InferRequest = serde_json::from_slice(json).map_err(InferError::NotARequest)?;
    let mut rest = binary;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        inputs.push((input.name.clone(), read_input(input, &mut rest)?));
    }
    if !rest.is_empty() {
        return Err(InferError::BinaryLeft { bytes: rest.len() });
    }
    let binary_output = request
        .parameters
        .as_ref()
        .and_then(|p| p.binary_data_output)
        .unwrap_or(false);
    let outputs = request.outputs.map(|outputs| {
        outputs
            .into_iter()
            .map(|o| (o.name, o.parameters.and_then(|p| p.binary_data)))
            .collect()
    });
    Ok(Parsed {
        id: request.id,
        inputs,
        outputs,
        binary_output,
    })
}

/// One input's array, from its JSON data or its share of the binary data.
fn read_input(input: &InferInput<'_>, binary: &mut &[u8]) -> Result<Array, InferError> {
    let name = || input.name.clone();
    let element =
        ElementType::from_protocol_name(&input.datatype).ok_or_else(|| InferError::UnsupportedDatatype {
            name: name(),
            datatype: input.datatype.clone(),
        })?;
    let shape: Vec<usize> = input
        .shape
        .iter()
        .map(|d| usize::try_from(*d).ok().filter(|d| *d > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| InferError::Shape {
            name: name(),
            shape: input.shape.clone(),
        })?;
    let count = shape
        .iter()
        .try_fold(1usize, |count, d| count.checked_mul(*d))
        .ok_or_else(|| InferError::TooLarge { name: name() })?;
    let binary_size = input.parameters.as_ref().and_then(|p| p.binary_data_size);
    let data = match (input.data, binary_size) {
        (Some(_), Some(_)) => return Err(InferError::TwoData { name: name() }),
        (None, None) => return Err(InferError::NoData { name: name() }),
        (None, Some(size)) => {
            let size = usize::try_from(size)
                .ok()
                .filter(|size| *size <= binary.len())
                .ok_or_else(|| InferError::Binary {
                    name: name(),
                    problem: format!(
                        "claims {size} bytes (binary_data_size), but {} are left in the body",
                        binary.len()
                    ),
                })?;
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            decode_binary(mine, element, count).map_err(|problem| InferError::Binary {
                name: name(),
                problem,
            })?
        }
        (Some(raw), None) => {
            let root = format!("input {:?} data", input.name);
            let array = tensors::read(raw.get(), element, shape.len().max(1), &root, Nulls::Refused)
                .map_err(|source| InferError::Data(Box::new(source)))?;
            if array.shape != shape && array.shape != [count] {
                return Err(InferError::DataShape {
                    name: name(),
                    shape,
                    found: array.shape,
                });
            }
            array.data
        }
    };
    Ok(Array { shape, data })
}

/// Values in the binary tensor format: little-endian, row-major; a BYTES element is a
/// 4-byte little-endian length, then that many bytes (UTF-8 here).
fn decode_binary(bytes: &[u8], element: ElementType, count: usize) -> Result<Data, String> {
    let Some(size) = element.size() else {
        return decode_strings(bytes, count);
    };
    if Some(bytes.len()) != count.checked_mul(size) {
        return Err(format!(
            "holds {} bytes, but {count} {element} elements take {}",
            bytes.len(),
            count.saturating_mul(size)
        ));
    }
    macro_rules! le {
        ($type:ty, $variant:ident) => {
            Data::$variant(
                bytes
                    .chunks_exact(size)
                    .map(|chunk| <$type>::from_le_bytes(chunk.try_into().unwrap_or_default()))
                    .collect(),
            )
        };
    }
    Ok(match element {
        ElementType::Bool => Data::Bool(
            bytes
                .iter()
                .enumerate()
                .map(|(index, byte)| match byte {
                    0 => Ok(false),
                    1 => Ok(true),
                    other => Err(format!("element {index} is byte {other}, not a BOOL (0 or 1)")),
                })
                .collect::<Result<_, _>>()?,
        ),
        ElementType::U8 => Data::U8(bytes.to_vec()),
        ElementType::I8 => Data::I8(bytes.iter().map(|b| *b as i8).collect()),
        ElementType::U16 => le!(u16, U16),
        ElementType::U32 => le!(u32, U32),
        ElementType::U64 => le!(u64, U64),
        ElementType::I16 => le!(i16, I16),
        ElementType::I32 => le!(i32, I32),
        ElementType::I64 => le!(i64, I64),
        ElementType::F16 => Data::F16(
            bytes
                .chunks_exact(2)
                .map(|c| tract_onnx::prelude::f16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        ElementType::F32 => le!(f32, F32),
        ElementType::F64 => le!(f64, F64),
        ElementType::Str => return decode_strings(bytes, count),
    })
}

fn decode_strings(mut bytes: &[u8], count: usize) -> Result<Data, String> {
    let mut strings = Vec::with_capacity(count.min(bytes.len() / 4));
    for index in 0..count {
        let Some((length, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(format!("ends before element {index}'s length"));
        };
        let length = u32::from_le_bytes(*length) as usize;
        if length > rest.len() {
            return Err(format!(
                "element {index} claims {length} bytes, but {} are left",
                rest.len()
            ));
        }
        let (text, rest) = rest.split_at(length);
        let text = std::str::from_utf8(text)
            .map_err(|err| format!("element {index} is not UTF-8 ({err}): BYTES are served as text"))?;
        strings.push(text.to_owned());
        bytes = rest;
    }
    if !bytes.is_empty() {
        return Err(format!("holds {} bytes beyond its {count} elements", bytes.len()));
    }
    Ok(Data::Str(strings))
}

/// The request's inputs as the model takes them: every input it declares, in its order,
/// each converted to its element type where no value changes, each shape checked.
fn bind(scorer: &Scorer, inputs: Vec<(String, Array)>) -> Result<Vec<Array>, ApiError> {
    let model = scorer.model.as_ref();
    let bad = ApiError::bad_request;
    if model.echoes() {
        if inputs.len() != 1 {
            return Err(bad(InferError::Echo { given: inputs.len() }));
        }
        let array = inputs.into_iter().map(|(_, array)| array).collect::<Vec<_>>();
        scorer.check_rows(array[0].shape.first().copied().unwrap_or(1), "the input")?;
        return Ok(array);
    }
    let specs = model.inputs();
    let mut bound: Vec<Option<Array>> = vec![None; specs.len()];
    for (name, array) in inputs {
        let Some(index) = specs.iter().position(|spec| spec.name == name) else {
            let expected: Vec<String> = specs.iter().map(|s| format!("{:?}", s.name)).collect();
            return Err(bad(InferError::UnknownInput {
                name,
                model: model.name().to_owned(),
                expected: expected.join(", "),
            }));
        };
        if bound[index].is_some() {
            return Err(bad(InferError::DuplicateInput { name }));
        }
        scorer.check_shape(&array.shape, index, &format!("input {name:?}"))?;
        let data = model::convert(array.data, specs[index].element)
            .map_err(|source| bad(InferError::Datatype { name, source }))?;
        bound[index] = Some(Array {
            shape: array.shape,
            data,
        });
    }
    let arrays: Vec<Array> = bound
        .into_iter()
        .zip(specs)
        .map(|(array, spec)| {
            array.ok_or_else(|| {
                bad(InferError::MissingInput {
                    name: spec.name.clone(),
                    model: model.name().to_owned(),
                })
            })
        })
        .collect::<Result<_, _>>()?;
    // The open first axes of the inputs are one batch (the graph gives them one symbol):
    // they must agree, or the graph cannot run.
    let batched: Vec<(&Array, &str)> = arrays
        .iter()
        .zip(specs)
        .filter(|(_, spec)| spec.shape.first() == Some(&Dim::Dynamic))
        .map(|(array, spec)| (array, spec.name.as_str()))
        .collect();
    let rows = |array: &Array| array.shape.first().copied().unwrap_or(1);
    if let Some(((first, first_name), (other, other_name))) = batched.first().and_then(|first| {
        batched
            .iter()
            .find(|(a, _)| rows(a) != rows(first.0))
            .map(|other| (*first, *other))
    }) {
        return Err(bad(InferError::Batch {
            first: first_name.to_owned(),
            rows: rows(first),
            other: other_name.to_owned(),
            other_rows: rows(other),
        }));
    }
    Ok(arrays)
}

/// `POST /v2/models/{name}[/versions/{v}]/infer`.
pub async fn infer(scorer: &Arc<Scorer>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let model = scorer.model.as_ref();
    let headers = request.headers().clone();
    // Triton's C++ client labels a body with binary data as such.
    let binary_type = headers.get(CONTENT_TYPE) == Some(&OCTET_STREAM) && headers.contains_key(HEADER_LENGTH);
    if !binary_type {
        http::check_json_content_type(&headers)?;
    }
    let body = http::read_body(request, &scorer.limits).await?;
    let bad = ApiError::bad_request;
    let (json_part, binary) = split_body(&headers, &body).map_err(bad)?;
    http::check_utf8(json_part)?;
    let Parsed {
        id,
        inputs,
        outputs: requested,
        binary_output,
    } = parse(json_part, binary).map_err(bad)?;
    let inputs = bind(scorer, inputs)?;
    let arrays = scorer.predict(inputs).await?;
    // The model's outputs, by name; the echo model's output keeps its input's datatype.
    let mut outputs: Vec<(&str, &Array)> = if model.echoes() {
        vec![("output0", &arrays[0])]
    } else {
        model
            .outputs()
            .iter()
            .map(|spec| spec.name.as_str())
            .zip(&arrays)
            .collect()
    };
    let mut binary_of = Vec::with_capacity(outputs.len());
    if let Some(requested) = &requested {
        if let Some((unknown, _)) = requested
            .iter()
            .find(|(name, _)| !outputs.iter().any(|(o, _)| o == name))
        {
            let available: Vec<&str> = outputs.iter().map(|(name, _)| *name).collect();
            return Err(bad(InferError::UnknownOutput {
                name: unknown.clone(),
                model: model.name().to_owned(),
                available: available.join(", "),
            }));
        }
        outputs = requested
            .iter()
            .filter_map(|(name, binary)| {
                let found = outputs.iter().find(|(o, _)| o == name).copied();
                binary_of.push(binary.unwrap_or(binary_output));
                found
            })
            .collect();
    } else {
        binary_of.resize(outputs.len(), binary_output);
    }
    respond(model.name(), id, &outputs, &binary_of)
}

/// The response: JSON, then the binary outputs' bytes, if any.
fn respond(
    model: &str,
    id: Option<String>,
    outputs: &[(&str, &Array)],
    binary_of: &[bool],
) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::with_capacity(256);
    let mut tail: Vec<u8> = Vec::new();
    out.extend_from_slice(b"{\"model_name\":");
    write_json_string(&mut out, model);
    out.extend_from_slice(b",\"model_version\":\"1\"");
    if let Some(id) = &id {
        out.extend_from_slice(b",\"id\":");
        write_json_string(&mut out, id);
    }
    out.extend_from_slice(b",\"outputs\":[");
    for (index, ((name, array), binary)) in outputs.iter().zip(binary_of).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write_json_string(&mut out, name);
        out.extend_from_slice(b",\"datatype\":\"");
        out.extend_from_slice(array.data.element_type().protocol_name().as_bytes());
        out.extend_from_slice(b"\",\"shape\":");
        let _ = serde_json::to_writer(&mut out, &array.shape);
        if *binary {
            let before = tail.len();
            encode_binary(&mut tail, &array.data);
            out.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
            out.extend_from_slice(itoa::Buffer::new().format(tail.len() - before).as_bytes());
            out.push(b'}');
        } else {
            out.extend_from_slice(b",\"data\":");
            let count = array.data.len();
            tensors::write_nested(&mut out, &array.data, 0..count, &[count]).map_err(|not_finite| {
                ApiError::bad_request(NotFinite {
                    output: (*name).to_owned(),
                    row: not_finite.index / array.per_row().max(1),
                })
            })?;
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    if tail.is_empty() {
        return Ok(http::json(StatusCode::OK, out));
    }
    let json_length = out.len();
    out.extend_from_slice(&tail);
    let mut response = http::json(StatusCode::OK, Bytes::from(out));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, OCTET_STREAM);
    headers.insert(HEADER_LENGTH, HeaderValue::from(json_length));
    Ok(response)
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Values in the binary tensor format (see [`decode_binary`]).
fn encode_binary(out: &mut Vec<u8>, data: &Data) {
    trait Le {
        fn put(&self, out: &mut Vec<u8>);
    }
    macro_rules! le {
        ($($type:ty),*) => {$(
            impl Le for $type {
                fn put(&self, out: &mut Vec<u8>) {
                    out.extend_from_slice(&self.to_le_bytes());
                }
            }
        )*};
    }
    le!(
        u8,
        u16,
        u32,
        u64,
        i8,
        i16,
        i32,
        i64,
        f32,
        f64,
        tract_onnx::prelude::f16
    );
    impl Le for bool {
        fn put(&self, out: &mut Vec<u8>) {
            out.push(u8::from(*self));
        }
    }
    impl Le for String {
        fn put(&self, out: &mut Vec<u8>) {
            // Strings past 4 GiB cannot be answered within any body limit.
            out.extend_from_slice(&(self.len() as u32).to_le_bytes());
            out.extend_from_slice(self.as_bytes());
        }
    }
    for_each_data!(data, values => values.iter().for_each(|value| value.put(out)));
}
