//! Command-line flags, each with an environment fallback so a Kubernetes manifest can set
//! them without touching the container's arguments.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::model::ModelLimits;

/// A small, fast HTTP service that scores JSON feature rows with a model.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SCORE_HOST", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub host: IpAddr,

    /// Port to listen on (the tutorial's 5000 by default).
    #[arg(long, env = "SCORE_PORT", default_value_t = 5000)]
    pub port: u16,

    /// Model to serve: a path to an .onnx file, or "identity", which echoes the input as
    /// the tutorial's service does. Repeat it (or separate paths with commas) to serve
    /// several, each under its file's name without `.onnx`.
    #[arg(long, env = "SCORE_MODEL", default_value = "identity", value_delimiter = ',')]
    pub model: Vec<String>,

    /// Largest request body accepted, in bytes or with a unit (64KiB, 1MiB).
    #[arg(long, env = "SCORE_BODY_LIMIT", default_value = "1MiB", value_parser = parse_size)]
    pub body_limit: usize,

    /// Most rows one request may ask to score.
    #[arg(long, env = "SCORE_MAX_BATCH", default_value_t = 1024)]
    pub max_batch: usize,

    /// Longest wait for a request's headers, from its first byte.
    #[arg(long, env = "SCORE_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// How long a keep-alive connection may sit idle between requests before it is closed.
    #[arg(long, env = "SCORE_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Most connections open at once. At the limit, the idle keep-alive connection open
    /// longest is closed for a new one; when none is idle, new ones wait in the listen
    /// backlog until one closes.
    #[arg(long, env = "SCORE_MAX_CONNECTIONS", default_value_t = 2048)]
    pub max_connections: usize,

    /// How long a new connection may stay silent before its first byte: a client that
    /// opens sockets and sends nothing holds them no longer.
    #[arg(long, env = "SCORE_FIRST_BYTE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub first_byte_timeout: Duration,

    /// Port for operators: `/metrics` (and `/healthz`, `/readyz`), kept off the public port
    /// the load balancer exposes. The same number as `--port` serves everything on one.
    #[arg(long, env = "SCORE_METRICS_PORT", default_value_t = 9090)]
    pub metrics_port: u16,

    /// Longest wait for a request's body once its headers have arrived.
    #[arg(long, env = "SCORE_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// On SIGTERM or SIGINT, how long in-flight requests may take to finish. Keep it below
    /// the pod's termination grace period (30s by default) minus any preStop sleep.
    #[arg(long, env = "SCORE_DRAIN_DEADLINE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_deadline: Duration,

    /// Threads that run inference (default: one per core). Health, readiness and metrics
    /// never wait behind them.
    #[arg(long, env = "SCORE_COMPUTE_THREADS", default_value_t = default_compute_threads())]
    pub compute_threads: usize,

    /// Inference requests that may wait for a compute thread; beyond them a request is
    /// answered 503 with Retry-After at once.
    #[arg(long, env = "SCORE_COMPUTE_QUEUE", default_value_t = 64)]
    pub compute_queue: usize,

    /// Largest model file loaded, in bytes or with a unit.
    #[arg(long, env = "SCORE_MODEL_MAX_BYTES", default_value = "512MiB", value_parser = parse_size)]
    pub model_max_bytes: usize,

    /// Most nodes a model's graph may have, subgraphs included.
    #[arg(long, env = "SCORE_MODEL_MAX_NODES", default_value_t = ModelLimits::default().max_nodes)]
    pub model_max_nodes: usize,

    /// Most nodes one tree ensemble may have, all its trees together.
    #[arg(long, env = "SCORE_MODEL_MAX_TREE_NODES", default_value_t = ModelLimits::default().max_tree_nodes)]
    pub model_max_tree_nodes: usize,

    /// Most elements any one tensor a model declares may have.
    #[arg(long, env = "SCORE_MODEL_MAX_ELEMENTS", default_value_t = ModelLimits::default().max_elements)]
    pub model_max_elements: u64,

    /// A model repository in Triton's layout, `DIR/NAME/VERSION/model.onnx` (and an
    /// optional `DIR/NAME/settings.json` choosing versions): serves every model in it,
    /// instead of the one --model names.
    #[arg(long, env = "SCORE_MODEL_REPOSITORY", value_name = "DIR")]
    pub model_repository: Option<std::path::PathBuf>,

    /// The model `/score` serves when a repository or the --model files hold several
    /// (`/score/{name}` serves any of them).
    #[arg(long, env = "SCORE_DEFAULT_MODEL", value_name = "NAME")]
    pub default_model: Option<String>,

    /// Who changes what a repository serves once started: nobody (`none`), requests to
    /// `/v2/repository/…` (`explicit`; anyone who reaches the port can then load and
    /// unload models), or a rescan of the directory every --repository-poll-interval
    /// (`poll`).
    #[arg(long, env = "SCORE_MODEL_CONTROL", value_enum, default_value_t = ModelControl::None, requires = "model_repository")]
    pub model_control: ModelControl,

    /// How often `--model-control poll` rescans the repository.
    #[arg(long, env = "SCORE_REPOSITORY_POLL_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub repository_poll_interval: Duration,

    /// Log format: JSON lines for log collectors, or text for people.
    #[arg(long, env = "SCORE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter, as in RUST_LOG: "info", or "debug" for a line per request.
    #[arg(long, env = "SCORE_LOG", default_value = "info")]
    pub log: String,

    /// Do not serve: ask the server on --port whether it is ready (GET /readyz) and exit
    /// 0 if it is, 1 if not. For container health checks in images without a shell.
    #[arg(long)]
    pub check: bool,

    /// Do not serve: load FILE within the --model-max-* limits and exit 0 if it loads, 1
    /// if it is refused, 3 if tract panicked on it. A repository server runs itself so
    /// before it loads a file, since a panic ends the process it happens in.
    #[arg(long, value_name = "FILE", hide = true)]
    pub vet_model: Option<std::path::PathBuf>,
}

/// Who may change what a model repository serves after start-up.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelControl {
    None,
    Explicit,
    Poll,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl Config {
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// Where `--check` finds the server: the listen address, with a wildcard host
    /// replaced by loopback.
    pub fn probe_addr(&self) -> SocketAddr {
        let host = match self.host {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(host, self.port)
    }

    /// What loading the model may cost.
    pub fn model_limits(&self) -> ModelLimits {
        ModelLimits {
            max_bytes: self.model_max_bytes as u64,
            max_nodes: self.model_max_nodes,
            max_tree_nodes: self.model_max_tree_nodes,
            max_elements: self.model_max_elements,
        }
    }

    /// The flags that set `limits` again, for a process of this binary started by the
    /// server (`--vet-model`).
    pub fn model_limit_flags(limits: &ModelLimits) -> Vec<String> {
        vec![
            format!("--model-max-bytes={}", limits.max_bytes),
            format!("--model-max-nodes={}", limits.max_nodes),
            format!("--model-max-tree-nodes={}", limits.max_tree_nodes),
            format!("--model-max-elements={}", limits.max_elements),
        ]
    }

    /// The per-request limits the server enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            body_limit: self.body_limit,
            max_batch: self.max_batch,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            first_byte_timeout: self.first_byte_timeout,
            body_timeout: self.body_timeout,
            drain_deadline: self.drain_deadline,
            compute_threads: self.compute_threads,
            compute_queue: self.compute_queue,
        }
    }
}

fn default_compute_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The limits that protect the server from slow or oversized clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_limit: usize,
    pub max_batch: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub first_byte_timeout: Duration,
    pub body_timeout: Duration,
    pub drain_deadline: Duration,
    pub compute_threads: usize,
    pub compute_queue: usize,
}

impl Default for Limits {
    /// The flags' defaults (a unit test keeps the two in step).
    fn default() -> Self {
        Limits {
            body_limit: 1 << 20,
            max_batch: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2048,
            first_byte_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            drain_deadline: Duration::from_secs(20),
            compute_threads: default_compute_threads(),
            compute_queue: 64,
        }
    }
}

/// Parses a byte count: `1048576`, `64KiB`, `1MiB`, `1KB`, `1MB`.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let number: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: expected a number of bytes, e.g. 1048576 or 1MiB"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    match number.checked_mul(scale) {
        Some(0) | None => Err(format!(
            "{text:?} is not a usable size: it must be above 0 and fit in memory"
        )),
        Some(size) => Ok(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1 parsec").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("MiB").unwrap_err().contains("not a size"));
    }

    #[test]
    fn defaults_match_the_tutorial() {
        let config = Config::parse_from(["score-service"]);
        assert_eq!(config.listen_addr().to_string(), "0.0.0.0:5000");
        assert_eq!(config.model, ["identity"]);
        assert_eq!(
            format!("{:?}", config.limits()),
            format!("{:?}", Limits::default())
        );
        assert!(config.drain_deadline < Duration::from_secs(30));
        assert_eq!(config.model_limits(), ModelLimits::default());
    }

    #[test]
    fn model_limit_flags_set_the_same_limits_again() {
        let limits = ModelLimits {
            max_bytes: 12_345,
            max_nodes: 67,
            max_tree_nodes: 890,
            max_elements: 1_234_567,
        };
        let mut args = vec!["score-service".to_owned()];
        args.extend(Config::model_limit_flags(&limits));
        assert_eq!(Config::parse_from(args).model_limits(), limits);
    }

    #[test]
    fn several_models_are_named_by_repeating_the_flag_or_by_commas() {
        let repeated = Config::parse_from(["score-service", "--model", "a.onnx", "--model", "b.onnx"]);
        assert_eq!(repeated.model, ["a.onnx", "b.onnx"]);
        let joined = Config::parse_from([
            "score-service",
            "--model",
            "a.onnx,b.onnx",
            "--default-model",
            "b",
        ]);
        assert_eq!(joined.model, ["a.onnx", "b.onnx"]);
        assert_eq!(joined.default_model.as_deref(), Some("b"));
    }
}
