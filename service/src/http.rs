//! The HTTP vocabulary every route shares: the route table, the one Content-Type policy,
//! reading a body within the limits, and [`ApiError`], which knows its status and turns
//! into the JSON answer in one place.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use crate::config::Limits;
use crate::model::PredictError;

pub type HttpResponse = Response<Full<Bytes>>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Which listener a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The port the load balancer exposes: the model, health, and the protocol's routes.
    Public,
    /// The port for operators: `/metrics`, `/healthz` and `/readyz`, never published.
    Operator,
}

/// The routes the server knows. Unknown paths share one variant, so a scanner cannot
/// grow the metrics' label set without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    Score,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    V2Server,
    V2Live,
    V2Ready,
    V2Model,
    V2ModelReady,
    V2Infer,
    /// `/score/{name}`: the tutorial's contract, for a model other than the default.
    ScoreModel,
    V2RepositoryIndex,
    V2RepositoryLoad,
    V2RepositoryUnload,
    Unmatched,
}

impl Route {
    pub const ALL: [Route; 16] = [
        Route::Score,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::OpenApi,
        Route::V2Server,
        Route::V2Live,
        Route::V2Ready,
        Route::V2Model,
        Route::V2ModelReady,
        Route::V2Infer,
        Route::ScoreModel,
        Route::V2RepositoryIndex,
        Route::V2RepositoryLoad,
        Route::V2RepositoryUnload,
        Route::Unmatched,
    ];

    pub fn of(path: &str) -> Route {
        match path {
            "/score" => Route::Score,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/openapi.json" => Route::OpenApi,
            // The protocol's document writes `GET v2`; its OpenAPI file `/v2/`.
            "/v2" | "/v2/" => Route::V2Server,
            "/v2/health/live" => Route::V2Live,
            "/v2/health/ready" => Route::V2Ready,
            "/v2/repository/index" => Route::V2RepositoryIndex,
            _ => match (model_path(path), repository_path(path), score_path(path)) {
                (Some(model), _, _) => model.route,
                (_, Some((_, route)), _) => route,
                (_, _, Some(_)) => Route::ScoreModel,
                _ => Route::Unmatched,
            },
        }
    }

    /// The route as it appears in the `route` label of the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Route::Score => "/score",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::V2Server => "/v2",
            Route::V2Live => "/v2/health/live",
            Route::V2Ready => "/v2/health/ready",
            Route::V2Model => "/v2/models/{name}",
            Route::V2ModelReady => "/v2/models/{name}/ready",
            Route::V2Infer => "/v2/models/{name}/infer",
            Route::ScoreModel => "/score/{name}",
            Route::V2RepositoryIndex => "/v2/repository/index",
            Route::V2RepositoryLoad => "/v2/repository/models/{name}/load",
            Route::V2RepositoryUnload => "/v2/repository/models/{name}/unload",
            Route::Unmatched => "unmatched",
        }
    }

    /// The methods the route answers, as an `Allow` header lists them.
    pub fn allow(self) -> &'static str {
        match self {
            Route::Score
            | Route::ScoreModel
            | Route::V2Infer
            | Route::V2RepositoryIndex
            | Route::V2RepositoryLoad
            | Route::V2RepositoryUnload => "POST",
            _ => "GET, HEAD",
        }
    }
}

/// A path under `/v2/models/`: the model's name, the version asked for, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct ModelPath<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
    pub route: Route,
}

/// `/v2/models/{name}[/versions/{v}][/ready|/infer]` → the name, version and route.
pub fn model_path(path: &str) -> Option<ModelPath<'_>> {
    let rest = path.strip_prefix("/v2/models/")?;
    let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (version, rest) = match rest.strip_prefix("versions/") {
        Some(versioned) => {
            let (version, rest) = versioned.split_once('/').unwrap_or((versioned, ""));
            if version.is_empty() {
                return None;
            }
            (Some(version), rest)
        }
        None => (None, rest),
    };
    let route = match rest {
        "" => Route::V2Model,
        "ready" => Route::V2ModelReady,
        "infer" => Route::V2Infer,
        _ => return None,
    };
    (!name.is_empty()).then_some(ModelPath { name, version, route })
}

/// `/v2/repository/models/{name}/load|unload` → the name and route.
pub fn repository_path(path: &str) -> Option<(&str, Route)> {
    let rest = path.strip_prefix("/v2/repository/models/")?;
    let (name, action) = rest.split_once('/')?;
    let route = match action {
        "load" => Route::V2RepositoryLoad,
        "unload" => Route::V2RepositoryUnload,
        _ => return None,
    };
    (!name.is_empty()).then_some((name, route))
}

/// A model's name as a path writes it: `%XX` escapes decoded (a repository's directory
/// may be named with characters a URL must escape, a space say); None for an escape that
/// is malformed or does not decode to UTF-8.
pub fn decoded(segment: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(std::borrow::Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes.get(at + 1..at + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

/// `/score/{name}` → the name.
pub fn score_path(path: &str) -> Option<&str> {
    let name = path.strip_prefix("/score/")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Why a request's Content-Type is refused.
#[derive(Debug, PartialEq)]
pub enum ContentTypeProblem {
    Unreadable,
    NotJson(String),
    NotUtf8(String),
}

impl fmt::Display for ContentTypeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentTypeProblem::Unreadable => write!(f, "the Content-Type is not readable text"),
            ContentTypeProblem::NotJson(essence) => write!(f, "Content-Type {essence:?} is not JSON"),
            ContentTypeProblem::NotUtf8(charset) => write!(f, "charset {charset:?} is not UTF-8"),
        }
    }
}

/// The one Content-Type policy of every JSON route: `application/json`, with parameters,
/// as long as any charset is UTF-8 (the only encoding JSON may use between systems, RFC
/// 8259 §8.1). A request without a Content-Type is read as JSON: the Open Inference
/// Protocol's clients (Triton's among them) send none, and a wrong body still gets a 400
/// that names what is wrong with it.
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    // What nearly every client sends, answered without splitting or decoding it.
    if value.as_bytes().eq_ignore_ascii_case(b"application/json") {
        return Ok(());
    }
    let refuse = |problem| Err(ApiError::UnsupportedMediaType(problem));
    let Ok(value) = value.to_str() else {
        return refuse(ContentTypeProblem::Unreadable);
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return refuse(ContentTypeProblem::NotJson(essence.to_owned()));
    }
    for parameter in parts {
        let Some((name, charset)) = parameter.split_once('=') else {
            continue;
        };
        let charset = charset.trim().trim_matches('"');
        let utf8 = charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8");
        if name.trim().eq_ignore_ascii_case("charset") && !utf8 {
            return refuse(ContentTypeProblem::NotUtf8(charset.to_owned()));
        }
    }
    Ok(())
}

/// A body that is not UTF-8, which JSON text must be (RFC 8259 §8.1), wherever the bad
/// bytes sit — even inside a string the route ignores.
#[derive(Debug)]
pub struct NotUtf8 {
    pub offset: usize,
}

impl fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request body is not UTF-8 (the byte at offset {} is not valid there): JSON text must be UTF-8",
            self.offset
        )
    }
}

impl std::error::Error for NotUtf8 {}

/// The whole body of a JSON request, within the size limit and the body timeout, and
/// checked to be UTF-8 from end to end: serde_json checks only the strings it keeps.
pub async fn read_json_body(request: Request<Incoming>, limits: &Limits) -> Result<Bytes, ApiError> {
    let body = read_body(request, limits).await?;
    check_utf8(&body)?;
    Ok(body)
}

/// Refuses JSON text that is not UTF-8 anywhere.
pub fn check_utf8(json: &[u8]) -> Result<(), ApiError> {
    match std::str::from_utf8(json) {
        Ok(_) => Ok(()),
        Err(err) => Err(ApiError::bad_request(NotUtf8 {
            offset: err.valid_up_to(),
        })),
    }
}

/// The whole body, within the size limit and the body timeout.
pub async fn read_body(request: Request<Incoming>, limits: &Limits) -> Result<Bytes, ApiError> {
    let limit = limits.body_limit;
    // Refuse a declared oversized body before reading any of it.
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = pin!(Limited::new(request.into_body(), limit).collect());
    // A small body usually arrives with its head: take it without setting up a timer (a
    // clock read and a timer entry made and dropped per request, on the hot path).
    let collected = match poll_fn(|cx| Poll::Ready(body.as_mut().poll(cx))).await {
        Poll::Ready(collected) => collected,
        // Boxed, as a slow body is rare: the timer would enlarge every request's future.
        Poll::Pending => Box::pin(tokio::time::timeout(limits.body_timeout, body))
            .await
            .map_err(|_| ApiError::BodyTimeout(limits.body_timeout))?,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(err) => Err(ApiError::BodyUnreadable(err)),
    }
}

/// Everything that ends a request with an error answer.
#[derive(Debug)]
pub enum ApiError {
    /// The request is not one the route takes; the error says what is wrong and where.
    BadRequest(Box<dyn std::error::Error + Send + Sync>),
    UnsupportedMediaType(ContentTypeProblem),
    PayloadTooLarge {
        limit: usize,
    },
    BodyTimeout(Duration),
    /// The connection failed while the body arrived.
    BodyUnreadable(Box<dyn std::error::Error + Send + Sync>),
    NoSuchPath,
    UnknownModel {
        asked: String,
        /// The names of the models served, comma-separated.
        served: String,
    },
    UnknownVersion {
        model: String,
        asked: String,
        /// The versions served, comma-separated.
        served: String,
    },
    /// `/score` was asked without a model's name, and the repository has several models
    /// and no default.
    NoDefaultModel {
        served: String,
    },
    /// The repository routes are off, or this one is in the control mode the server runs.
    ModelControl(String),
    /// A model could not be loaded; nothing changed.
    LoadFailed {
        model: String,
        reason: String,
    },
    /// The operator port serves only the operator's routes.
    OperatorPort,
    /// `/metrics` is on the operator port, not the public one.
    MetricsElsewhere,
    /// `/score` cannot take the loaded model's inputs or outputs; `/v2` serves it.
    NotForScore {
        model: String,
        why: String,
    },
    MethodNotAllowed {
        method: Method,
        route: Route,
    },
    /// The instance is shutting down (what readiness answers while draining).
    Draining,
    /// Readiness: models of the repository have no version loaded.
    NotLoaded {
        models: String,
    },
    /// Every compute thread is busy and the queue is full.
    Busy {
        retry_after: Duration,
    },
    /// The model failed on input that passed validation: the server's fault.
    ModelFailed {
        model: String,
        error: PredictError,
    },
}

impl ApiError {
    pub fn bad_request(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::BadRequest(Box::new(error))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NoSuchPath
            | ApiError::UnknownModel { .. }
            | ApiError::UnknownVersion { .. }
            | ApiError::NoDefaultModel { .. }
            | ApiError::OperatorPort
            | ApiError::MetricsElsewhere
            | ApiError::NotForScore { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ModelControl(_) => StatusCode::FORBIDDEN,
            ApiError::LoadFailed { .. } => StatusCode::BAD_REQUEST,
            ApiError::Draining | ApiError::NotLoaded { .. } | ApiError::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::ModelFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message the client reads: the error and each of its causes.
    pub fn message(&self) -> String {
        let mut message = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            message.push_str(": ");
            message.push_str(&error.to_string());
            cause = error.source();
        }
        message
    }

    /// `{"error": message}` with the status, and the headers the status calls for.
    pub fn into_response(self) -> HttpResponse {
        if let ApiError::ModelFailed { model, .. } = &self {
            tracing::error!(model, error = self.message(), "the model failed on valid input");
        }
        let body = serde_json::to_vec(&serde_json::json!({ "error": self.message() }))
            .unwrap_or_else(|_| br#"{"error":"unprintable error"}"#.to_vec());
        let mut response = json(self.status(), body);
        let headers = response.headers_mut();
        match &self {
            ApiError::MethodNotAllowed { route, .. } => {
                headers.insert(ALLOW, HeaderValue::from_static(route.allow()));
            }
            ApiError::Busy { retry_after } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            _ => {}
        }
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Transparent: the request's fault is the whole message.
            ApiError::BadRequest(error) => write!(f, "{error}"),
            ApiError::UnsupportedMediaType(problem) => {
                write!(f, "{problem}: send Content-Type: application/json")
            }
            ApiError::PayloadTooLarge { limit } => write!(
                f,
                "the request body is larger than the limit of {limit} bytes; send fewer rows per request"
            ),
            ApiError::BodyTimeout(timeout) => {
                write!(f, "the request body did not arrive within {timeout:?}")
            }
            ApiError::BodyUnreadable(_) => write!(f, "could not read the request body"),
            ApiError::NoSuchPath => write!(f, "no such path: try POST /score"),
            ApiError::UnknownModel { asked, served } => {
                write!(f, "unknown model {asked:?}: this server serves {served}")
            }
            ApiError::UnknownVersion { model, asked, served } => {
                write!(
                    f,
                    "model {model:?} has no version {asked:?} loaded: it has {served}"
                )
            }
            ApiError::NoDefaultModel { served } => write!(
                f,
                "this server serves several models and no default (--default-model): POST /score/{{name}} for one of {served}"
            ),
            ApiError::ModelControl(why) => f.write_str(why),
            ApiError::LoadFailed { model, reason } => {
                write!(
                    f,
                    "model {model:?} was not loaded, and what is served did not change: {reason}"
                )
            }
            ApiError::OperatorPort => write!(
                f,
                "this is the operator port: it serves GET /metrics, /healthz and /readyz; the model is served on the public port"
            ),
            ApiError::MetricsElsewhere => write!(
                f,
                "/metrics is served on the operator port (--metrics-port), which the load balancer does not expose"
            ),
            ApiError::NotForScore { model, why } => write!(
                f,
                "/score cannot take model {model:?}: {why}; POST /v2/models/{model}/infer serves it"
            ),
            ApiError::MethodNotAllowed { method, route } => write!(
                f,
                "{method} is not allowed on {}: use {}",
                route.label(),
                route.allow()
            ),
            ApiError::Draining => write!(f, "draining: this instance is shutting down"),
            ApiError::NotLoaded { models } => write!(
                f,
                "not ready: no version of {models} is loaded (POST /v2/repository/index says why)"
            ),
            ApiError::Busy { retry_after } => write!(
                f,
                "busy: every compute thread is working and the queue is full; retry after {}s",
                retry_after.as_secs().max(1)
            ),
            ApiError::ModelFailed { model, .. } => write!(f, "model {model:?} failed"),
        }
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiError::BadRequest(error) => error.source(),
            ApiError::BodyUnreadable(error) => Some(error.as_ref()),
            ApiError::ModelFailed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_models_name_is_read_with_its_escapes_decoded() {
        assert_eq!(decoded("fraud").as_deref(), Some("fraud"));
        assert_eq!(decoded("fraud%20model").as_deref(), Some("fraud model"));
        assert_eq!(decoded("caf%C3%A9").as_deref(), Some("café"));
        for malformed in ["%", "%2", "%zz", "%+1", "%FF", "a%2"] {
            assert_eq!(decoded(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn every_route_maps_back_from_its_paths() {
        for (path, route) in [
            ("/score", Route::Score),
            ("/v2/models/m", Route::V2Model),
            ("/v2/models/m/versions/1", Route::V2Model),
            ("/v2/", Route::V2Server),
            ("/v2/models/m/versions/", Route::Unmatched),
            ("/v2/models/m/versions/1/infer", Route::V2Infer),
            ("/v2/models/m/ready", Route::V2ModelReady),
            ("/v2/models//infer", Route::Unmatched),
            ("/v2/models/m/explain", Route::Unmatched),
        ] {
            assert_eq!(Route::of(path), route, "{path}");
        }
        let labels: std::collections::HashSet<_> = Route::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Route::ALL.len(), "labels are distinct");
    }

    #[test]
    fn one_content_type_policy() {
        let check = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            }
            check_json_content_type(&headers).map_err(|err| err.to_string())
        };
        assert_eq!(check(None), Ok(()));
        assert_eq!(check(Some("Application/JSON; charset=\"utf-8\"")), Ok(()));
        for (value, problem) in [
            ("application/jsonl", "is not JSON"),
            ("application/json-seq", "is not JSON"),
            ("text/plain", "is not JSON"),
            ("application/json; charset=latin1", "is not UTF-8"),
        ] {
            let err = check(Some(value)).unwrap_err();
            assert!(err.contains(problem), "{value}: {err}");
        }
    }
}
