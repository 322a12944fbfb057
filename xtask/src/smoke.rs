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
                crate::gke::add_gke_smoke(sh, &mut plan, &settings, timeout);
                return plan.execute(dry_run);
            }
        };
        add_smoke_test(&mut plan, url, timeout);
        plan.execute(dry_run)
    }
}

/// Adds the smoke test of `url` to `plan`.
pub(crate) fn add_smoke_test(plan: &mut Plan<'_>, url: String, timeout: Duration) {
    let url = url.trim_end_matches('/').to_owned();
    plan.check(
        format!("smoke test {url}: GET /readyz must answer 200, POST /score {REQUEST} must answer {EXPECTED} (retrying for {timeout:?})"),
        move || smoke_test(&url, timeout),
    );
}

/// What one attempt saw when it did not pass.
type Outcome = Result<(), String>;

/// Retries with backoff until the checks pass or `timeout` runs out; the error reports
/// what came back last.
pub(crate) fn smoke_test(url: &str, timeout: Duration) -> anyhow::Result<()> {
    if !url.starts_with("http://") {
        bail!("smoke needs an http:// URL, got {url:?}");
    }
    let agent = agent(Duration::from_secs(10));
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = attempt(&agent, url);
        let last = match outcome {
            Ok(()) => {
                println!("smoke test passed: {url}/score answered {EXPECTED}");
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

fn attempt(agent: &ureq::Agent, url: &str) -> Outcome {
    let (status, body) = get(agent, &format!("{url}/readyz"))?;
    if status != 200 {
        return Err(format!("GET /readyz answered {status} {body}"));
    }
    let (status, body) = post_json(agent, &format!("{url}/score"), REQUEST)?;
    let expected = json!({"score": [1, 2]});
    match serde_json::from_str::<Value>(&body) {
        Ok(value) if status == 200 && value == expected => Ok(()),
        _ => Err(format!(
            "POST /score answered {status} {body} (expected 200 {EXPECTED})"
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
