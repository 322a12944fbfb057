//! The application: state built once at start-up, and dispatch of each request to its
//! handler, with the request counted in the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request};

use serde::Deserialize;

use crate::api::{self, Scorer};
use crate::compute::ComputePool;
use crate::config::{Limits, ModelControl};
use crate::http::{self, ApiError, HttpResponse, Port, Route};
use crate::metrics::Metrics;
use crate::model::{Model, ModelLimits};
use crate::repository::{Loader, Repository};

/// Everything requests share, built once at start-up.
pub struct App {
    repository: Arc<Repository>,
    limits: Limits,
    /// Whether `/metrics` is on the operator port, and so not on the public one.
    metrics_on_operator_port: bool,
    /// The OpenAPI document, with the default model's contract.
    openapi: bytes::Bytes,
    metrics: Metrics,
    draining: AtomicBool,
}

impl App {
    /// The app for `model`, with a compute pool of `limits.compute_threads` threads.
    pub fn new(model: Box<dyn Model>, limits: Limits) -> anyhow::Result<Self> {
        Self::with_models(vec![model], None, limits)
    }

    /// The app for the models `--model` names (`Repository::files`).
    pub fn with_models(
        models: Vec<Box<dyn Model>>,
        default: Option<String>,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
        let metrics = Metrics::new(default.as_deref().unwrap_or(&names.join(",")));
        let pool = ComputePool::new(limits.compute_threads, limits.compute_queue, metrics.pool())?;
        let loader = Loader {
            model_limits: ModelLimits::default(),
            limits,
            pool,
            metrics: metrics.models(),
            vet_with: None,
        };
        let repository = Repository::files(models, default, loader)?;
        Ok(Self::serving(repository, limits, metrics))
    }

    /// The app for the model repository `dir` (`Repository::open`). `vet_with`, when set,
    /// is this service's binary: each file is loaded by a process of it first
    /// (`--vet-model`), so a file tract panics on is refused instead of ending the server.
    pub fn with_repository(
        dir: &std::path::Path,
        default: Option<String>,
        control: ModelControl,
        model_limits: ModelLimits,
        limits: Limits,
        vet_with: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        let metrics = Metrics::new(default.as_deref().unwrap_or("repository"));
        let pool = ComputePool::new(limits.compute_threads, limits.compute_queue, metrics.pool())?;
        let loader = Loader {
            model_limits,
            limits,
            pool,
            metrics: metrics.models(),
            vet_with,
        };
        let repository = Repository::open(dir, default, control, loader)?;
        Ok(Self::serving(repository, limits, metrics))
    }

    fn serving(repository: Repository, limits: Limits, metrics: Metrics) -> Self {
        // The document describes the default model; without one, the protocol's own.
        let openapi = match repository.get_default() {
            Ok(scorer) => api::openapi::document(scorer.model.as_ref(), &scorer.score, &limits),
            Err(_) => api::openapi::COMMITTED.as_bytes().to_vec(),
        };
        App {
            repository: Arc::new(repository),
            limits,
            metrics_on_operator_port: false,
            openapi: openapi.into(),
            metrics,
            draining: AtomicBool::new(false),
        }
    }

    /// The served models, for the task that polls the repository.
    pub fn repository(&self) -> &Arc<Repository> {
        &self.repository
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
        &self.limits
    }

    /// Each model served, and why `/score` cannot take it, when it cannot (`/v2` serves
    /// it still).
    pub fn score_refusals(&self) -> Vec<(String, String)> {
        let catalog = self.repository.catalog();
        catalog
            .scorers()
            .filter_map(|scorer| match &scorer.score {
                api::score::Contract::Refused(why) => Some((scorer.model.name().to_owned(), why.clone())),
                _ => None,
            })
            .collect()
    }

    /// Turns readiness off: from now on `/readyz` answers 503 so load balancers stop
    /// sending new work, while requests already accepted still complete.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Not draining, and every model the repository holds has a version loaded.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.repository.all_loaded()
    }

    /// Readiness, or why not.
    fn readiness(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(ApiError::Draining);
        }
        match self.repository.not_loaded().as_slice() {
            [] => Ok(()),
            models => Err(ApiError::NotLoaded {
                models: models.join(", "),
            }),
        }
    }

    pub async fn handle(&self, request: Request<Incoming>, port: Port) -> HttpResponse {
        let started = Instant::now();
        let _in_flight = self.metrics.start();
        let route = Route::of(request.uri().path());
        // Per-request logs exist only at debug level; copy nothing for them otherwise.
        let log = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (request.method().clone(), request.uri().path().to_owned()));
        // The model version an inference route ran, for its own metrics.
        let mut served: Option<Arc<Scorer>> = None;
        let response = match (port, route) {
            (Port::Operator, Route::Metrics | Route::Healthz | Route::Readyz) => {
                self.dispatch(route, request, &mut served).await
            }
            (Port::Operator, _) => Err(ApiError::OperatorPort),
            (Port::Public, Route::Metrics) if self.metrics_on_operator_port => {
                Err(ApiError::MetricsElsewhere)
            }
            (Port::Public, _) => self.dispatch(route, request, &mut served).await,
        }
        .unwrap_or_else(ApiError::into_response);
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.record(route, status, elapsed);
        if let Some(scorer) = served {
            scorer.metrics.record(status, elapsed);
        }
        if let Some((method, path)) = log {
            tracing::debug!(%method, path, status, micros = started.elapsed().as_micros() as u64, "request");
        }
        response
    }

    async fn dispatch(
        &self,
        route: Route,
        request: Request<Incoming>,
        served: &mut Option<Arc<Scorer>>,
    ) -> Result<HttpResponse, ApiError> {
        let method = request.method();
        let get = matches!(*method, Method::GET | Method::HEAD);
        let post = method == Method::POST;
        let path = request.uri().path();
        match route {
            Route::Score if post => {
                let scorer = served.insert(self.repository.get_default()?);
                api::score::score(scorer, request).await
            }
            Route::ScoreModel if post => {
                let name = http::score_path(path)
                    .and_then(http::decoded)
                    .ok_or(ApiError::NoSuchPath)?;
                let scorer = served.insert(self.repository.get(&name, None)?);
                api::score::score(scorer, request).await
            }
            Route::V2Infer if post => {
                let asked = http::model_path(path).ok_or(ApiError::NoSuchPath)?;
                let name = http::decoded(asked.name).ok_or(ApiError::NoSuchPath)?;
                let scorer = served.insert(self.repository.get(&name, asked.version)?);
                api::oip::infer(scorer, request).await
            }
            Route::Healthz if get => Ok(api::health::live()),
            Route::Readyz if get => self.readiness().map(|()| api::health::ready()),
            Route::Metrics if get => Ok(api::health::metrics(&self.metrics)),
            Route::OpenApi if get => Ok(api::health::openapi(&self.openapi)),
            Route::V2Server | Route::V2Live | Route::V2Ready if get => Ok(api::oip::server_get(
                route,
                self.is_ready(),
                self.repository.control() != ModelControl::None,
            )),
            Route::V2Model | Route::V2ModelReady if get => {
                let asked = http::model_path(path).ok_or(ApiError::NoSuchPath)?;
                let name = http::decoded(asked.name).ok_or(ApiError::NoSuchPath)?;
                let (scorer, versions) = self.repository.get_with_versions(&name, asked.version)?;
                let ready = !self.draining.load(Ordering::Relaxed);
                Ok(api::oip::model_get(
                    scorer.model.as_ref(),
                    &versions,
                    route,
                    ready,
                ))
            }
            Route::V2RepositoryIndex if post => {
                self.control_allows(route)?;
                let only_ready = read_control_body::<IndexRequest>(request, &self.limits)
                    .await?
                    .is_some_and(|index| index.ready);
                Ok(http::json(
                    hyper::StatusCode::OK,
                    self.repository.index(only_ready).await.to_string(),
                ))
            }
            Route::V2RepositoryLoad | Route::V2RepositoryUnload if post => {
                self.control_allows(route)?;
                let (name, _) = http::repository_path(path).ok_or(ApiError::NoSuchPath)?;
                let name = http::decoded(name).ok_or(ApiError::NoSuchPath)?.into_owned();
                if route == Route::V2RepositoryUnload {
                    self.repository.unload(&name).await?;
                    return Ok(http::json(hyper::StatusCode::OK, "{}".to_owned()));
                }
                let version = load_version(request, &self.limits).await?;
                let versions = self.repository.load(&name, version).await?;
                let versions: Vec<String> = versions.iter().map(u64::to_string).collect();
                Ok(http::json(
                    hyper::StatusCode::OK,
                    serde_json::json!({"name": name, "versions": versions}).to_string(),
                ))
            }
            Route::Unmatched => Err(ApiError::NoSuchPath),
            route => Err(ApiError::MethodNotAllowed {
                method: method.clone(),
                route,
            }),
        }
    }

    /// The index, which only reads, is always served; load and unload only with
    /// `--model-control explicit`, since anyone who reaches them could change what is
    /// served.
    fn control_allows(&self, route: Route) -> Result<(), ApiError> {
        match (self.repository.control(), route) {
            (_, Route::V2RepositoryIndex) | (ModelControl::Explicit, _) => Ok(()),
            (ModelControl::Poll, _) => Err(ApiError::ModelControl(
                "the server runs with --model-control poll: the repository's directory decides what is served; change the files, or restart with --model-control explicit".to_owned(),
            )),
            (ModelControl::None, _) => Err(ApiError::ModelControl(
                "loading and unloading models is off: start the server with --model-control explicit to use them".to_owned(),
            )),
        }
    }
}

/// The body of a load request: `{"parameters": {"version": N}}` loads version N (a
/// number, or a string of one); without it, the versions the model's policy chooses.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoadRequest {
    #[serde(default)]
    parameters: LoadParameters,
}

#[derive(Deserialize, Default)]
struct LoadParameters {
    version: Option<serde_json::Value>,
}

/// The body of an index request: `{"ready": true}` lists only the ready versions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// A repository route's optional JSON body: None when empty.
async fn read_control_body<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
    limits: &Limits,
) -> Result<Option<T>, ApiError> {
    http::check_json_content_type(request.headers())?;
    let body = http::read_body(request, limits).await?;
    match body.trim_ascii_start().first() {
        None => Ok(None),
        // serde would read a struct from an array too; the protocol's body is an object.
        Some(b'{') => serde_json::from_slice(&body)
            .map(Some)
            .map_err(ApiError::bad_request),
        Some(_) => Err(ApiError::BadRequest("the body must be a JSON object".into())),
    }
}

async fn load_version(request: Request<Incoming>, limits: &Limits) -> Result<Option<u64>, ApiError> {
    let Some(load) = read_control_body::<LoadRequest>(request, limits).await? else {
        return Ok(None);
    };
    match load.parameters.version {
        None => Ok(None),
        Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(serde_json::Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
        Some(other) => Err(ApiError::BadRequest(
            format!("parameters.version is {other}: give a version number").into(),
        )),
    }
}
