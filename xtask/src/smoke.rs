//! `cargo xtask smoke`: the tutorial's request against a running service.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};
use xshell::Shell;

use crate::docker::Docker;
use crate::local::Local;
use crate::plan::Plan;
use crate::settings::{Settings, SettingsArgs};
use crate::target::{Target, TargetArg};

/// The tutorial's request and the answer it must get.
pub(crate) const REQUEST: &str = r#"{"X": [1, 2]}"#;
const EXPECTED: &str = r#"{"score": [1, 2]}"#;

#[derive(Args, Debug)]
pub(crate) struct SmokeCmd {
    #[command(flatten)]
    target: TargetArg,

    /// Base URL of the service; by default the target's running instance.
    #[arg(long)]
    url: Option<String>,

    /// Seconds to keep retrying (a new cloud load balancer can take minutes).
    #[arg(long, default_value_t = 60)]
    timeout: u64,

    /// The service serves this model (the .onnx file's name, without .onnx): send a row of
    /// its width instead of the tutorial's echo request.
    #[arg(long)]
    model: Option<String>,
}

impl SmokeCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool, settings: &SettingsArgs) -> anyhow::Result<()> {
        let timeout = Duration::from_secs(self.timeout);
        let mut plan = Plan::new();
        let url = match (self.url, self.target.target) {
            (Some(url), _) => url,
            (None, Target::Local) => Local::new(sh).running_url()?,
            (None, Target::Docker) => Docker::new(sh).running_url()?,
            (None, Target::Gke) => {
                let (settings, _) = Settings::resolve(sh, settings)?;
                crate::gke::add_gke_smoke(sh, &mut plan, &settings, timeout, self.model);
                return plan.execute(dry_run);
            }
        };
        add_smoke_test(&mut plan, url, timeout, self.model);
        plan.execute(dry_run)
    }
}

/// Adds the smoke test of `url` to `plan`: the tutorial's request, or with `model`, a row
/// as wide as the model takes.
pub(crate) fn add_smoke_test(plan: &mut Plan<'_>, url: String, timeout: Duration, model: Option<String>) {
    let url = url.trim_end_matches('/').to_owned();
    plan.check(
        format!(
            "smoke test {url}: {} (retrying for {timeout:?})",
            describe(model.as_deref())
        ),
        move || smoke_test(&url, timeout, model.as_deref()),
    );
}

/// What the smoke test checks, for the plan.
pub(crate) fn describe(model: Option<&str>) -> String {
    match model {
        None => format!("GET /readyz must answer 200, POST /score {REQUEST} must answer {EXPECTED}"),
        Some(model) => format!(
            "GET /readyz must answer 200, GET /v2/models/{model} gives the input width, POST /score with a row that wide must answer one score"
        ),
    }
}

/// What one attempt got: the passing answer, or what it saw instead.
type Outcome = Result<String, String>;

/// Retries with backoff until the checks pass or `timeout` runs out; the error reports
/// what came back last.
pub(crate) fn smoke_test(url: &str, timeout: Duration, model: Option<&str>) -> anyhow::Result<()> {
    if !url.starts_with("http://") {
        bail!("smoke needs an http:// URL, got {url:?}");
    }
    let agent = agent(Duration::from_secs(10));
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = attempt(&agent, url, model);
        let last = match outcome {
            Ok(answer) => {
                println!("smoke test passed: {url}/score answered {answer}");
                return Ok(());
            }
            Err(last) => last,
        };
        if started.elapsed() + delay > timeout {
            bail!(
                "smoke test of {url} failed after {attempts} attempts over {:.1?}\n  last answer: {last}\n  next: check the service's log, or run `cargo xtask smoke --timeout N` to wait longer",
                started.elapsed()
            );
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn attempt(agent: &ureq::Agent, url: &str, model: Option<&str>) -> Outcome {
    let (status, body) = get(agent, &format!("{url}/readyz"))?;
    if status != 200 {
        return Err(format!("GET /readyz answered {status} {body}"));
    }
    let Some(model) = model else {
        let (status, body) = post_json(agent, &format!("{url}/score"), REQUEST)?;
        return match serde_json::from_str::<Value>(&body) {
            Ok(value) if status == 200 && value == json!({"score": [1, 2]}) => Ok(EXPECTED.to_owned()),
            _ => Err(format!(
                "POST /score answered {status} {body} (expected 200 {EXPECTED})"
            )),
        };
    };
    let (status, body) = get(agent, &format!("{url}/v2/models/{model}"))?;
    let width = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|meta| meta["inputs"][0]["shape"][1].as_u64());
    let Some(width) = width.filter(|_| status == 200) else {
        return Err(format!("GET /v2/models/{model} answered {status} {body}"));
    };
    let request = json!({"X": vec![0.0; width as usize]}).to_string();
    let (status, body) = post_json(agent, &format!("{url}/score"), &request)?;
    match serde_json::from_str::<Value>(&body) {
        Ok(value) if status == 200 && value["score"].as_array().is_some_and(|s| s.len() == 1) => Ok(body),
        _ => Err(format!(
            "POST /score {request} answered {status} {body} (expected 200 with one score)"
        )),
    }
}

/// An HTTP client that reports every status as a value rather than an error.
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

pub(crate) fn get(agent: &ureq::Agent, url: &str) -> Result<(u16, String), String> {
    answer(agent.get(url).call(), url)
}

pub(crate) fn post_json(agent: &ureq::Agent, url: &str, body: &str) -> Result<(u16, String), String> {
    answer(
        agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body),
        url,
    )
}

fn answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
) -> Result<(u16, String), String> {
    let mut response = result.map_err(|err| format!("no answer from {url}: {err}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|err| format!("<unreadable body: {err}>"));
    Ok((status, body))
}
