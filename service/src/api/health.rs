//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json`: answered on the async workers
//! straight from memory, never behind inference.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::http::{HttpResponse, json};
use crate::metrics::Metrics;

const OPENMETRICS: HeaderValue =
    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");

pub fn live() -> HttpResponse {
    json(StatusCode::OK, r#"{"status":"live"}"#)
}

/// The answer of a ready instance (the app answers 503 with the reason otherwise).
pub fn ready() -> HttpResponse {
    json(StatusCode::OK, r#"{"status":"ready"}"#)
}

/// The OpenAPI document of every route, written for the loaded model at start-up.
pub fn openapi(document: &Bytes) -> HttpResponse {
    json(StatusCode::OK, document.clone())
}

pub fn metrics(metrics: &Metrics) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
    response.headers_mut().insert(CONTENT_TYPE, OPENMETRICS);
    response
}
