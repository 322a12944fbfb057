//! Prometheus metrics, exposed at `GET /metrics` in the OpenMetrics text format.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The routes the server knows, as they appear in the `route` label. Unknown paths share
/// one label value so a scanner cannot grow the metric set without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    // Discriminants index `Metrics::latency`, in the order of `Route::ALL`.
    Score,
    Healthz,
    Readyz,
    Metrics,
    V2Server,
    V2Live,
    V2Ready,
    V2Model,
    V2ModelReady,
    V2Infer,
    Unmatched,
}

impl Route {
    const ALL: [Route; 11] = [
        Route::Score,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::V2Server,
        Route::V2Live,
        Route::V2Ready,
        Route::V2Model,
        Route::V2ModelReady,
        Route::V2Infer,
        Route::Unmatched,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Route::Score => "/score",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::V2Server => "/v2",
            Route::V2Live => "/v2/health/live",
            Route::V2Ready => "/v2/health/ready",
            Route::V2Model => "/v2/models/{name}",
            Route::V2ModelReady => "/v2/models/{name}/ready",
            Route::V2Infer => "/v2/models/{name}/infer",
            Route::Unmatched => "unmatched",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    model: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// One histogram per route, resolved once so the hot path takes no family lock.
    latency: [Histogram; Route::ALL.len()],
    in_flight: Gauge,
}

impl Metrics {
    pub fn new(model: &str) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let latency_family = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 25µs to ~13s: the hot path sits at the bottom, a drain-bound request at the top.
            Histogram::new(exponential_buckets(25e-6, 2.0, 20))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request headers to response, by route",
            latency_family.clone(),
        );
        let latency =
            Route::ALL.map(|route| latency_family.get_or_create_owned(&RouteLabels { route: route.label() }));
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being handled now",
            in_flight.clone(),
        );
        registry.register(
            "build",
            "Version of this binary and the model it serves",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                model: model.to_owned(),
            }),
        );
        Metrics {
            registry,
            requests,
            latency,
            in_flight,
        }
    }

    /// Marks a request as started; the guard records it as finished when dropped.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight { metrics: self }
    }

    pub fn record(&self, route: Route, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.label(),
                status,
            })
            .inc();
        self.latency[route as usize].observe(elapsed.as_secs_f64());
    }

    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Decrements the in-flight gauge however the request ends, even if its future is dropped.
pub struct InFlight<'a> {
    metrics: &'a Metrics,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}
