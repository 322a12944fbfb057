use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use score_service::config::{Config, LogFormat, ModelControl};
use score_service::{App, model, repository};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    let config = Config::parse();
    if config.check {
        return check_ready(config.probe_addr());
    }
    if let Some(file) = &config.vet_model {
        return vet_model(file, &config.model_limits());
    }
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(repository::LOAD_STACK_SIZE)
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => return fail(anyhow::Error::new(err).context("start the async runtime")),
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(err),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if config.model_control == ModelControl::Poll && config.repository_poll_interval.is_zero() {
        anyhow::bail!(
            "--repository-poll-interval must be above 0s: the repository would be rescanned without pause"
        );
    }
    let app = match &config.model_repository {
        // On a thread of the runtime's, whose stack is the one the vetting process
        // loads on (the main thread's is whatever `ulimit -s` says).
        Some(dir) => {
            let (dir, default, control) = (dir.clone(), config.default_model.clone(), config.model_control);
            let (model_limits, limits) = (config.model_limits(), config.limits());
            tokio::task::spawn_blocking(move || {
                App::with_repository(&dir, default, control, model_limits, limits, Some(this_binary()))
            })
            .await
            .context("open the model repository")??
        }
        None => {
            let models = config
                .model
                .iter()
                .map(|spec| load_model(spec, &config))
                .collect::<anyhow::Result<Vec<_>>>()?;
            App::with_models(models, config.default_model.clone(), config.limits())?
        }
    };
    let address = config.listen_addr();
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("listen on {address}"))?;
    // Metrics on a port of their own, unless asked onto the public one.
    let operator = if config.metrics_port == config.port {
        None
    } else {
        let address = std::net::SocketAddr::new(config.host, config.metrics_port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("listen on {address} for metrics (--metrics-port)"))?;
        Some(listener)
    };
    let app = Arc::new(match operator {
        Some(_) => app.with_operator_port(),
        None => app,
    });
    for (model, why) in app.score_refusals() {
        tracing::warn!(
            model,
            why,
            "/score cannot take this model; POST /v2/models/{{name}}/infer serves it"
        );
    }
    if config.model_control == ModelControl::Poll {
        let (repository, every) = (app.repository().clone(), config.repository_poll_interval);
        tokio::spawn(repository.poll_every(every));
    }
    tracing::info!(
        address = %listener.local_addr()?,
        metrics = %operator.as_ref().and_then(|l| l.local_addr().ok()).unwrap_or(listener.local_addr()?),
        models = %app.repository().catalog().names(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    };
    let drained = match operator {
        Some(operator) => score_service::run_with_operator_port(listener, operator, app, shutdown).await,
        None => score_service::run(listener, app, shutdown).await,
    };
    tracing::info!(drained, "stopped");
    Ok(())
}

/// Loads the model. The release binary aborts on a panic (unwinding would cost the image
/// its size budget), so the `catch_unwind` that turns tract's panics on a malformed graph
/// into a refusal cannot act there: while the model loads, a panic hook reports the
/// same refusal, as one line, and exits 1.
fn load_model(spec: &str, config: &Config) -> anyhow::Result<Box<dyn model::Model>> {
    let path = std::path::PathBuf::from(spec);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = fail(model::tract_failed(&path, info.payload()).into());
        std::process::exit(1);
    }));
    let loaded = model::load(spec, &config.model_limits());
    std::panic::set_hook(previous);
    Ok(loaded?)
}

/// The program to run again for `--vet-model`. On Linux the running binary itself, which
/// stays what it was if the file on disk is replaced while the server runs.
fn this_binary() -> std::path::PathBuf {
    let proc_self = std::path::Path::new("/proc/self/exe");
    if proc_self.exists() {
        return proc_self.to_owned();
    }
    std::env::current_exe().unwrap_or_else(|_| std::env::args_os().next().unwrap_or_default().into())
}

/// `--vet-model`: loads the file (`-`: the bytes on stdin, as a repository server sends
/// them) and says how that went by its exit status alone. A panic exits with
/// `VET_PANICKED` and its message on stderr, one line, whether this build unwinds or
/// aborts. The load runs on a thread with the stack the server loads on.
fn vet_model(file: &std::path::Path, limits: &model::ModelLimits) -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{}", model::panic_message(info.payload()));
        std::process::exit(repository::VET_PANICKED.into());
    }));
    let bytes = if file == std::path::Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
    } else {
        std::fs::read(file)
    };
    let bytes = match bytes {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("{}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let (file, limits) = (file.to_owned(), *limits);
    let loading = std::thread::Builder::new()
        .stack_size(repository::LOAD_STACK_SIZE)
        .spawn(move || model::OnnxModel::load_named(&file, "vetted", &bytes, &limits).map(drop));
    match loading.map(|thread| thread.join()) {
        Ok(Ok(Ok(()))) => ExitCode::SUCCESS,
        Ok(Ok(Err(err))) => {
            eprintln!("{:#}", anyhow::Error::new(err));
            ExitCode::FAILURE
        }
        // A panic exits through the hook before it could get here.
        Ok(Err(_)) => ExitCode::from(repository::VET_PANICKED),
        Err(err) => {
            eprintln!("start the loading thread: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `--check`: one GET /readyz over a plain socket; no runtime, no logging set-up.
fn check_ready(addr: std::net::SocketAddr) -> ExitCode {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let answer = (|| -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(String::from_utf8_lossy(&head).into_owned())
    })();
    match answer {
        Ok(head) if head == "HTTP/1.1 200" => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!("not ready: {addr}/readyz answered {head:?}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("not ready: {addr}/readyz: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    // Targets takes "info" or "score_service=debug,hyper=info" like RUST_LOG, without
    // EnvFilter's regex engine (a megabyte of binary for a start-up flag).
    let filter: Targets = config.log.parse().unwrap_or_else(|err| {
        eprintln!("ignoring log filter {:?}: {err}; using \"info\"", config.log);
        Targets::new().with_default(tracing::Level::INFO)
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter);
    match config.log_format {
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(false))
            .init(),
        LogFormat::Text => registry.with(layer).init(),
    }
}

/// One line naming what failed and why, then a non-zero exit.
fn fail(err: anyhow::Error) -> ExitCode {
    tracing::error!(error = format!("{err:#}"), "cannot start");
    ExitCode::FAILURE
}
