//! Request handling: routing, limits, and the JSON contract of every answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::config::Limits;
use crate::features::Features;
use crate::metrics::{Metrics, Route};
use crate::model::{Data, Model, PredictError};

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const OPENMETRICS: HeaderValue =
    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");

/// Everything requests share, built once at start-up.
pub struct App {
    model: Box<dyn Model>,
    limits: Limits,
    metrics: Metrics,
    draining: AtomicBool,
}

impl App {
    pub fn new(model: Box<dyn Model>, limits: Limits) -> Self {
        let metrics = Metrics::new(model.name());
        App {
            model,
            limits,
            metrics,
            draining: AtomicBool::new(false),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn model_name(&self) -> &str {
        self.model.name()
    }

    /// Turns readiness off: from now on `/readyz` answers 503 so load balancers stop
    /// sending new work, while requests already accepted still complete.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    pub fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let _in_flight = self.metrics.start();
        let route = route_of(request.uri().path());
        // Per-request logs exist only at debug level; copy nothing for them otherwise.
        let log = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (request.method().clone(), request.uri().path().to_owned()));
        let get = matches!(*request.method(), Method::GET | Method::HEAD);
        let post = request.method() == Method::POST;
        let response = match route {
            Route::Score if post => self.score(request).await,
            Route::Healthz if get => json(StatusCode::OK, r#"{"status":"live"}"#),
            Route::Readyz if get && self.is_ready() => json(StatusCode::OK, r#"{"status":"ready"}"#),
            Route::Readyz if get => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining: this instance is shutting down",
            ),
            Route::Metrics if get => {
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.encode())));
                response.headers_mut().insert(CONTENT_TYPE, OPENMETRICS);
                response
            }
            Route::V2Infer if post => crate::oip::infer(self, request).await,
            Route::V2Server | Route::V2Live | Route::V2Ready | Route::V2Model | Route::V2ModelReady
                if get =>
            {
                crate::oip::get(self, route, request.uri().path())
            }
            Route::Unmatched => error(StatusCode::NOT_FOUND, "no such path: try POST /score"),
            route => method_not_allowed(route, request.method()),
        };
        let status = response.status().as_u16();
        self.metrics.record(route, status, started.elapsed());
        if let Some((method, path)) = log {
            tracing::debug!(%method, path, status, micros = started.elapsed().as_micros() as u64, "request");
        }
        response
    }

    /// The whole body, within the size limit and the body timeout; or the 4xx to answer.
    pub(crate) async fn read_body(&self, request: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
        let limit = self.limits.body_limit;
        // Refuse a declared oversized body before reading any of it.
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large(limit));
        }
        let body = Limited::new(request.into_body(), limit).collect();
        match tokio::time::timeout(self.limits.body_timeout, body).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
            Ok(Err(err)) => Err(error(
                StatusCode::BAD_REQUEST,
                &format!("could not read the request body: {err}"),
            )),
            Err(_) => Err(error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {:?}",
                    self.limits.body_timeout
                ),
            )),
        }
    }

    /// Checks a batch against what the model takes; the error says what is wrong.
    pub(crate) fn check_batch(&self, rows: usize, width: usize, what: &str) -> Result<(), String> {
        if let Some(expected) = self.model.input_width()
            && width != expected
        {
            return Err(format!(
                "{what} has {width} values per row, but model {:?} expects {expected}",
                self.model.name()
            ));
        }
        if rows > self.limits.max_batch {
            return Err(format!(
                "{what} has {rows} rows; at most {} are scored per request",
                self.limits.max_batch
            ));
        }
        Ok(())
    }

    async fn score(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(problem) = content_type_problem(&request) {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("{problem}: send Content-Type: application/json"),
            );
        }
        let body = match self.read_body(request).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let features = match Features::from_body(&body) {
            Ok(features) => features,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        if let Err(message) = self.check_batch(features.rows(), features.width(), "X") {
            return error(StatusCode::BAD_REQUEST, &message);
        }
        if self.model.echoes() {
            let mut out = Vec::with_capacity(body.len() + 12);
            out.extend_from_slice(br#"{"score":"#);
            features.write_compact(&mut out);
            out.push(b'}');
            return json(StatusCode::OK, out);
        }
        let output = match self.model.predict(&features.batch()) {
            Ok(output) => output,
            Err(err) => return model_failed(self.model.name(), &err),
        };
        // One row in, one value out; a batch in, a list out — as the input was shaped.
        let body = if features.is_batch() {
            serde_json::to_vec(&ScoreAnswer {
                score: &output.score,
                probabilities: output.probabilities.as_deref(),
            })
        } else {
            let score = output.score.pick(&[0]);
            let probabilities = output.probabilities.as_ref().map(|rows| &rows[..1]);
            serde_json::to_vec(&ScoreAnswer {
                score: &score,
                probabilities,
            })
        };
        match body {
            Ok(body) => json(StatusCode::OK, body),
            Err(err) => model_failed(self.model.name(), &PredictError(err.to_string())),
        }
    }
}

#[derive(serde::Serialize)]
struct ScoreAnswer<'a> {
    score: &'a Data,
    #[serde(skip_serializing_if = "Option::is_none")]
    probabilities: Option<&'a [Data]>,
}

pub(crate) fn model_failed(model: &str, err: &PredictError) -> Response<Full<Bytes>> {
    tracing::error!(model, error = err.0, "the model failed on valid input");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("model {model:?} failed: {}", err.0),
    )
}

fn route_of(path: &str) -> Route {
    match path {
        "/score" => Route::Score,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        "/v2" => Route::V2Server,
        "/v2/health/live" => Route::V2Live,
        "/v2/health/ready" => Route::V2Ready,
        _ => match crate::oip::model_path(path) {
            Some((_, crate::oip::ModelPath::Metadata)) => Route::V2Model,
            Some((_, crate::oip::ModelPath::Ready)) => Route::V2ModelReady,
            Some((_, crate::oip::ModelPath::Infer)) => Route::V2Infer,
            None => Route::Unmatched,
        },
    }
}

fn method_not_allowed(route: Route, method: &Method) -> Response<Full<Bytes>> {
    let allow = if matches!(route, Route::Score | Route::V2Infer) {
        "POST"
    } else {
        "GET, HEAD"
    };
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{method} is not allowed on {}: use {allow}", route.label()),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// Why the request's Content-Type is refused, if it is. `application/json` is accepted
/// with parameters, as long as any charset is UTF-8 (the only encoding JSON may use
/// between systems, RFC 8259 §8.1).
fn content_type_problem(request: &Request<Incoming>) -> Option<String> {
    let Some(value) = request.headers().get(CONTENT_TYPE) else {
        return Some("the request has no Content-Type".to_owned());
    };
    let Ok(value) = value.to_str() else {
        return Some("the Content-Type is not readable text".to_owned());
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Some(format!("Content-Type {essence:?} is not JSON"));
    }
    parts.find_map(|parameter| {
        let (name, charset) = parameter.split_once('=')?;
        let charset = charset.trim().trim_matches('"');
        let utf8 = charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8");
        (name.trim().eq_ignore_ascii_case("charset") && !utf8)
            .then(|| format!("charset {charset:?} is not UTF-8"))
    })
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is larger than the limit of {limit} bytes; send fewer rows per request"),
    )
}

pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": message }))
        .unwrap_or_else(|_| br#"{"error":"unprintable error"}"#.to_vec());
    json(status, body)
}
