//! The smoke test: the tutorial's request (or a row of the model's own width) against a
//! running service, retried until it passes or time runs out; and how to reach it.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::core::http::{agent, get, post_json};
use crate::core::plan::Plan;

/// The tutorial's request and the answer it must get.
pub(crate) const REQUEST: &str = r#"{"X": [1, 2]}"#;
const EXPECTED: &str = r#"{"score": [1, 2]}"#;

/// Adds the smoke test of `url` to `plan`: the tutorial's request, or with `model`, a row
/// as wide as the model takes.
pub(crate) fn add_smoke_test<C>(
    plan: &mut Plan<'_, C>,
    url: String,
    timeout: Duration,
    model: Option<String>,
) {
    let url = url.trim_end_matches('/').to_owned();
    plan.check(
        format!(
            "smoke test {url}: {} (retrying for {timeout:?})",
            describe(model.as_deref())
        ),
        move |_| smoke_test(&url, timeout, model.as_deref()),
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

/// Adds the closing lines of a `ship`: where the service is, how to try it and stop it.
pub(crate) fn add_how_to_reach<C>(
    plan: &mut Plan<'_, C>,
    url: String,
    model: Option<String>,
    stop: &'static str,
) {
    plan.check(format!("print how to reach {url}"), move |_| {
        println!("The service is running at {url}");
        match model {
            None => println!(
                "Try it:  curl -X POST {url}/score -H 'Content-Type: application/json' -d '{REQUEST}'"
            ),
            Some(model) => {
                println!("Its model: curl {url}/v2/models/{model}   (then POST /score with rows that wide)")
            }
        }
        println!("Stop it: {stop}");
        Ok(())
    });
}
