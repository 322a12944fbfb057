//! Prometheus metrics, exposed at `GET /metrics` in the OpenMetrics text format.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::compute::PoolMetrics;
use crate::http::Route;

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
struct TimeoutLabels {
    phase: &'static str,
}

/// What ended a connection by a timer.
#[derive(Clone, Copy, Debug)]
pub enum Timeout {
    /// Idle between requests for the idle timeout.
    Idle,
    /// A request's headers did not arrive within the header timeout.
    Header,
    /// A new connection sent nothing within the first-byte timeout.
    FirstByte,
}

/// The connection counts the server keeps.
#[derive(Clone)]
pub struct ConnectionMetrics {
    open: Gauge,
    accepted: Counter,
    timeouts: Family<TimeoutLabels, Counter>,
    reclaimed: Counter,
}

/// Counts a connection as open until dropped.
pub struct OpenConnection {
    open: Gauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl ConnectionMetrics {
    pub fn opened(&self) -> OpenConnection {
        self.accepted.inc();
        self.open.inc();
        OpenConnection {
            open: self.open.clone(),
        }
    }

    /// An idle connection closed at the connection limit, for a new one.
    pub fn reclaimed(&self) {
        self.reclaimed.inc();
    }

    pub fn timed_out(&self, timeout: Timeout) {
        let phase = match timeout {
            Timeout::Idle => "idle",
            Timeout::Header => "header",
            Timeout::FirstByte => "first_byte",
        };
        self.timeouts.get_or_create(&TimeoutLabels { phase }).inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelOutcomeLabels {
    model: String,
    version: String,
    outcome: &'static str,
}

/// The per-model series, shared by every version the server loads. Their labels come
/// only from models the server loaded, never from a request, so they stay bounded.
#[derive(Clone)]
pub struct ModelFamilies {
    requests: Family<ModelOutcomeLabels, Counter>,
    latency: Family<ModelLabels, Histogram>,
    rows: Family<ModelLabels, Histogram>,
}

impl ModelFamilies {
    /// The series of one loaded version, resolved once so requests take no family lock.
    pub fn for_version(&self, model: &str, version: &str) -> ModelMetrics {
        let labels = ModelLabels {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        let outcome = |outcome| {
            self.requests.get_or_create_owned(&ModelOutcomeLabels {
                model: model.to_owned(),
                version: version.to_owned(),
                outcome,
            })
        };
        ModelMetrics {
            outcomes: [outcome("ok"), outcome("client_error"), outcome("server_error")],
            latency: self.latency.get_or_create_owned(&labels),
            rows: self.rows.get_or_create_owned(&labels),
        }
    }
}

impl ModelFamilies {
    /// Drops the series of a version no longer served.
    pub fn remove_version(&self, model: &str, version: &str) {
        let labels = ModelLabels {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        for outcome in ["ok", "client_error", "server_error"] {
            self.requests.remove(&ModelOutcomeLabels {
                model: model.to_owned(),
                version: version.to_owned(),
                outcome,
            });
        }
        self.latency.remove(&labels);
        self.rows.remove(&labels);
    }
}

/// One model version's requests by outcome, their latency, and the rows per inference.
#[derive(Clone)]
pub struct ModelMetrics {
    outcomes: [Counter; 3],
    latency: Histogram,
    rows: Histogram,
}

impl ModelMetrics {
    pub fn record(&self, status: u16, elapsed: Duration) {
        let outcome = match status {
            ..400 => 0,
            400..500 => 1,
            _ => 2,
        };
        self.outcomes[outcome].inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Rows the model computed in one inference.
    pub fn computed(&self, rows: usize) {
        self.rows.observe(rows as f64);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    model: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Each route's count of 200s, taken from `requests` the first time the route
    /// answers 200 (so the series appears only once it counts something): the common
    /// answer then costs an atomic load and add, not the family's lock and hash. Indexed,
    /// as `latency` is, by the route's discriminant.
    ok: [OnceLock<Counter>; Route::ALL.len()],
    /// Each route's histogram, resolved once so the hot path takes no family lock.
    latency: [Histogram; Route::ALL.len()],
    in_flight: Gauge,
    pool: PoolMetrics,
    connections: ConnectionMetrics,
    models: ModelFamilies,
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
        let pool = PoolMetrics::default();
        registry.register(
            "compute_queued",
            "Inference jobs waiting for a compute thread",
            pool.queued.clone(),
        );
        registry.register(
            "compute_running",
            "Inference jobs running on a compute thread",
            pool.running.clone(),
        );
        registry.register(
            "compute_rejected",
            "Inference jobs refused with 503 because the compute queue was full",
            pool.rejected.clone(),
        );
        let connections = ConnectionMetrics {
            open: Gauge::default(),
            accepted: Counter::default(),
            timeouts: Family::default(),
            reclaimed: Counter::default(),
        };
        registry.register(
            "connections_open",
            "Connections open now",
            connections.open.clone(),
        );
        registry.register(
            "connections_accepted",
            "Connections accepted",
            connections.accepted.clone(),
        );
        registry.register(
            "connection_timeouts",
            "Connections closed by a timeout, by what timed out (bodies that time out are requests answered 408)",
            connections.timeouts.clone(),
        );
        registry.register(
            "connections_reclaimed",
            "Idle keep-alive connections closed at the connection limit to serve a new one",
            connections.reclaimed.clone(),
        );
        let models = ModelFamilies {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(25e-6, 2.0, 20))),
            // 1 row to 1024 and more: how well requests fill a batch.
            rows: Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 2.0, 11))),
        };
        registry.register(
            "model_requests",
            "Requests for each model version (its inference routes), by outcome",
            models.requests.clone(),
        );
        registry.register(
            "model_request_duration_seconds",
            "Time to answer each model version's requests",
            models.latency.clone(),
        );
        registry.register(
            "model_batch_rows",
            "Rows each model version computed per inference",
            models.rows.clone(),
        );
        Metrics {
            models,
            registry,
            requests,
            ok: Default::default(),
            latency,
            in_flight,
            pool,
            connections,
        }
    }

    /// Marks a request as started; the guard records it as finished when dropped.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight { metrics: self }
    }

    pub fn record(&self, route: Route, status: u16, elapsed: Duration) {
        let count = |status| {
            self.requests.get_or_create_owned(&RequestLabels {
                route: route.label(),
                status,
            })
        };
        match status {
            200 => self.ok[route as usize].get_or_init(|| count(200)).inc(),
            _ => count(status).inc(),
        };
        self.latency[route as usize].observe(elapsed.as_secs_f64());
    }

    /// The handles the server updates for its connections.
    pub fn connections(&self) -> ConnectionMetrics {
        self.connections.clone()
    }

    /// The per-model series, for the repository to resolve as it loads models.
    pub fn models(&self) -> ModelFamilies {
        self.models.clone()
    }

    /// The handles the compute pool updates.
    pub fn pool(&self) -> PoolMetrics {
        self.pool.clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_counts_its_200s_in_its_own_series() {
        // `ok` is indexed by the route's discriminant: ALL must list them in order.
        for (index, route) in Route::ALL.iter().enumerate() {
            assert_eq!(*route as usize, index, "{route:?}");
        }
        let metrics = Metrics::new("m");
        metrics.record(Route::Score, 200, Duration::from_micros(30));
        metrics.record(Route::Score, 200, Duration::from_micros(30));
        metrics.record(Route::Score, 400, Duration::from_micros(30));
        metrics.record(Route::Healthz, 200, Duration::from_micros(30));
        let text = metrics.encode();
        let count = |route: &str, status: u16| {
            let series = format!("http_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&series))
                .map(str::to_owned)
        };
        assert_eq!(count("/score", 200).as_deref(), Some("2"), "{text}");
        assert_eq!(count("/score", 400).as_deref(), Some("1"), "{text}");
        assert_eq!(count("/healthz", 200).as_deref(), Some("1"), "{text}");
        // A route that answered nothing has no series.
        assert_eq!(count("/readyz", 200), None, "{text}");
    }
}
