//! The Open Inference Protocol (KServe V2) over REST, beside `/score`, so the clients and
//! tooling of KServe, Seldon MLServer and Triton talk to this server unchanged.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value, json};

use crate::App;
use crate::app::{error, json, model_failed};
use crate::metrics::Route;
use crate::model::{Batch, Data};

/// The only version a model has here.
const MODEL_VERSION: &str = "1";

pub(crate) enum ModelPath {
    Metadata,
    Ready,
    Infer,
}

/// `/v2/models/{name}[/versions/{v}][/ready|/infer]` → the name and what is asked.
pub(crate) fn model_path(path: &str) -> Option<(&str, ModelPath)> {
    let rest = path.strip_prefix("/v2/models/")?;
    let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let rest = match rest.strip_prefix("versions/") {
        Some(versioned) => versioned.split_once('/').map_or("", |(_, rest)| rest),
        None => rest,
    };
    let asked = match rest {
        "" => ModelPath::Metadata,
        "ready" => ModelPath::Ready,
        "infer" => ModelPath::Infer,
        _ => return None,
    };
    (!name.is_empty()).then_some((name, asked))
}

fn body(status: StatusCode, value: Value) -> Response<Full<Bytes>> {
    json(status, value.to_string())
}

/// Answers the metadata and health GETs.
pub(crate) fn get(app: &App, route: Route, path: &str) -> Response<Full<Bytes>> {
    let ready = app.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let model = app.model();
    match route {
        Route::V2Server => body(
            StatusCode::OK,
            json!({"name": "score-service", "version": env!("CARGO_PKG_VERSION"), "extensions": []}),
        ),
        // Both the status code and the body carry the answer: the two versions of the
        // spec disagree on which one clients read.
        Route::V2Live => body(StatusCode::OK, json!({"live": true})),
        Route::V2Ready => body(status, json!({"ready": ready})),
        _ => {
            if let Some(response) = unknown_model(app, path) {
                return response;
            }
            if route == Route::V2ModelReady {
                return body(status, json!({"name": model.name(), "ready": ready}));
            }
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
    }
}

/// The 404 to answer unless `path` names the model this server serves.
fn unknown_model(app: &App, path: &str) -> Option<Response<Full<Bytes>>> {
    let name = model_path(path).map_or("", |(name, _)| name);
    (name != app.model().name()).then(|| {
        error(
            StatusCode::NOT_FOUND,
            &format!(
                "unknown model {name:?}: this server serves {:?}",
                app.model().name()
            ),
        )
    })
}

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
pub(crate) async fn infer(app: &App, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(response) = unknown_model(app, request.uri().path()) {
        return response;
    }
    // Clients of the protocol do not all send a Content-Type; refuse only a wrong one.
    if let Some(value) = request.headers().get(CONTENT_TYPE)
        && !value
            .to_str()
            .unwrap_or("")
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the inference request as application/json",
        );
    }
    let bytes = match app.read_body(request).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    match answer(app, &bytes) {
        Ok(response) => response,
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

fn answer(app: &App, bytes: &[u8]) -> Result<Response<Full<Bytes>>, String> {
    let model = app.model();
    let request: InferRequest =
        serde_json::from_slice(bytes).map_err(|err| format!("not an inference request: {err}"))?;
    let [input] = request.inputs.as_slice() else {
        return Err(format!(
            "{} inputs given; model {:?} takes exactly one",
            request.inputs.len(),
            model.name()
        ));
    };
    let expected = &model.inputs()[0];
    let (rows, width, numbers) = read_input(input)?;
    if !model.echoes() {
        if input.name != expected.name {
            return Err(format!(
                "unknown input {:?}: model {:?} takes {:?}",
                input.name,
                model.name(),
                expected.name
            ));
        }
        if input.datatype != expected.datatype {
            return Err(format!(
                "input {:?} is {}, but model {:?} takes {}",
                input.name,
                input.datatype,
                model.name(),
                expected.datatype
            ));
        }
    }
    app.check_batch(rows, width, &format!("input {:?}", input.name))?;

    let shape = input.shape.iter().map(|d| *d as usize).collect::<Vec<_>>();
    let (names, model_output);
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
        model_output = match model.predict(&Batch {
            rows,
            width,
            values: &values,
        }) {
            Ok(output) => output,
            Err(err) => return Ok(model_failed(model.name(), &err)),
        };
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
        names = outputs.iter().map(|o| o.name.to_owned()).collect::<Vec<_>>();
        if let Some(unknown) = requested.iter().find(|r| !names.contains(&r.name)) {
            return Err(format!(
                "unknown output {:?}: model {:?} gives {}",
                unknown.name,
                model.name(),
                names.join(", ")
            ));
        }
        outputs.retain(|o| requested.iter().any(|r| r.name == o.name));
    }
    let response = InferResponse {
        model_name: model.name(),
        model_version: MODEL_VERSION,
        id: request.id,
        outputs,
    };
    let bytes = serde_json::to_vec(&response).map_err(|err| err.to_string())?;
    Ok(json(StatusCode::OK, bytes))
}

/// Checks an input's shape, datatype and data, flattening nested data row-major.
/// Returns rows, row width and the numbers.
fn read_input(input: &InferInput) -> Result<(usize, usize, Vec<Number>), String> {
    let name = &input.name;
    let (rows, width) = match input.shape.as_slice() {
        [width] if *width > 0 => (1, *width as usize),
        [rows, width] if *rows > 0 && *width > 0 => (*rows as usize, *width as usize),
        shape => {
            return Err(format!(
                "input {name:?} has shape {shape:?}; expected [rows, features] or [features], each at least 1"
            ));
        }
    };
    let kind = NumberKind::of(&input.datatype).ok_or_else(|| {
        format!(
            "input {name:?} has datatype {:?}, which this server does not take",
            input.datatype
        )
    })?;
    let expected = rows
        .checked_mul(width)
        .ok_or_else(|| format!("input {name:?} is too large"))?;
    let mut numbers = Vec::with_capacity(expected.min(1 << 16));
    // Depth-first over nested arrays, without recursion and never deeper than the shape.
    let mut stack = vec![(&input.data, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(items) if depth < input.shape.len() => {
                stack.extend(items.iter().rev().map(|item| (item, depth + 1)));
            }
            Value::Number(number) if depth >= 1 => {
                kind.check(number)
                    .map_err(|why| format!("input {name:?}[{}] is {number}: {why}", numbers.len()))?;
                numbers.push(number.clone());
            }
            other => {
                return Err(format!(
                    "input {name:?}: data must be numbers in arrays no deeper than the shape, found {}",
                    describe(other)
                ));
            }
        }
        if numbers.len() > expected {
            break;
        }
    }
    if numbers.len() != expected {
        return Err(format!(
            "input {name:?} has shape {:?} ({expected} values) but its data holds {}",
            input.shape,
            if numbers.len() > expected {
                "more".to_owned()
            } else {
                numbers.len().to_string()
            }
        ));
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
