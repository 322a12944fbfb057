//! The application: state built once at start-up, and dispatch of each request to its
//! handler, with the request counted in the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request};

use crate::api::{self, Scorer};
use crate::compute::ComputePool;
use crate::config::Limits;
use crate::http::{ApiError, HttpResponse, Port, Route};
use crate::metrics::Metrics;
use crate::model::Model;

/// Everything requests share, built once at start-up.
pub struct App {
    scorer: Arc<Scorer>,
    /// Whether `/metrics` is on the operator port, and so not on the public one.
    metrics_on_operator_port: bool,
    /// The OpenAPI document, with this model's contract.
    openapi: bytes::Bytes,
    metrics: Metrics,
    draining: AtomicBool,
}

impl App {
    /// The app for `model`, with a compute pool of `limits.compute_threads` threads.
    pub fn new(model: Box<dyn Model>, limits: Limits) -> std::io::Result<Self> {
        let metrics = Metrics::new(model.name());
        let pool = ComputePool::new(limits.compute_threads, limits.compute_queue, metrics.pool())?;
        let score = api::score::Contract::of(model.as_ref());
        let openapi = api::openapi::document(model.as_ref(), &score, &limits).into();
        Ok(App {
            metrics_on_operator_port: false,
            openapi,
            scorer: Arc::new(Scorer {
                model: Arc::from(model),
                score,
                pool,
                limits,
            }),
            metrics,
            draining: AtomicBool::new(false),
        })
    }

    /// The app for serving with an operator port (`server::run_with_operator_port`):
    /// `/metrics` only there, and the public port's OpenAPI document without it.
    pub fn with_operator_port(mut self) -> Self {
        self.metrics_on_operator_port = true;
        self.openapi = api::openapi::without_metrics(&self.openapi).into();
        self
    }

    /// The counts the server keeps of its connections.
    pub fn connection_metrics(&self) -> crate::metrics::ConnectionMetrics {
        self.metrics.connections()
    }

    pub fn limits(&self) -> &Limits {
        &self.scorer.limits
    }

    pub fn model_name(&self) -> &str {
        self.scorer.model.name()
    }

    /// Why `/score` cannot take the model, when it cannot (`/v2` serves it still).
    pub fn score_refusal(&self) -> Option<&str> {
        match &self.scorer.score {
            api::score::Contract::Refused(why) => Some(why),
            _ => None,
        }
    }

    /// Turns readiness off: from now on `/readyz` answers 503 so load balancers stop
    /// sending new work, while requests already accepted still complete.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    pub async fn handle(&self, request: Request<Incoming>, port: Port) -> HttpResponse {
        let started = Instant::now();
        let _in_flight = self.metrics.start();
        let route = Route::of(request.uri().path());
        // Per-request logs exist only at debug level; copy nothing for them otherwise.
        let log = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (request.method().clone(), request.uri().path().to_owned()));
        let response = match (port, route) {
            (Port::Operator, Route::Metrics | Route::Healthz | Route::Readyz) => {
                self.dispatch(route, request).await
            }
            (Port::Operator, _) => Err(ApiError::OperatorPort),
            (Port::Public, Route::Metrics) if self.metrics_on_operator_port => {
                Err(ApiError::MetricsElsewhere)
            }
            (Port::Public, _) => self.dispatch(route, request).await,
        }
        .unwrap_or_else(ApiError::into_response);
        let status = response.status().as_u16();
        self.metrics.record(route, status, started.elapsed());
        if let Some((method, path)) = log {
            tracing::debug!(%method, path, status, micros = started.elapsed().as_micros() as u64, "request");
        }
        response
    }

    async fn dispatch(&self, route: Route, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
        let method = request.method();
        let get = matches!(*method, Method::GET | Method::HEAD);
        let post = method == Method::POST;
        let model = self.scorer.model.as_ref();
        match route {
            Route::Score if post => api::score::score(&self.scorer, request).await,
            Route::V2Infer if post => api::oip::infer(&self.scorer, request).await,
            Route::Healthz if get => Ok(api::health::live()),
            Route::Readyz if get => api::health::ready(self.is_ready()),
            Route::Metrics if get => Ok(api::health::metrics(&self.metrics)),
            Route::OpenApi if get => Ok(api::health::openapi(&self.openapi)),
            Route::V2Server | Route::V2Live | Route::V2Ready | Route::V2Model | Route::V2ModelReady
                if get =>
            {
                api::oip::get(model, route, request.uri().path(), self.is_ready())
            }
            Route::Unmatched => Err(ApiError::NoSuchPath),
            route => Err(ApiError::MethodNotAllowed {
                method: method.clone(),
                route,
            }),
        }
    }
}
