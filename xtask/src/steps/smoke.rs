//! The smoke test: the tutorial's request (or, for a model, one row shaped and typed as
//! its metadata declares) against a running service, retried until it passes or time runs
//! out; and how to reach it.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::core::http::{agent, get, post_json};
use crate::core::plan::Plan;

/// The tutorial's request and the answer it must get.
pub(crate) const REQUEST: &str = r#"{"X": [1, 2]}"#;
const EXPECTED: &str = r#"{"score": [1, 2]}"#;

/// Adds the smoke test of `url` to `plan`: the tutorial's request, or for each of
/// `models`, a row shaped as the model takes.
pub(crate) fn add_smoke_test<C>(plan: &mut Plan<'_, C>, url: String, timeout: Duration, models: Vec<String>) {
    let url = url.trim_end_matches('/').to_owned();
    plan.check(
        format!(
            "smoke test {url}: {} (retrying for {timeout:?})",
            describe(&models)
        ),
        move |_| smoke_test(&url, timeout, &models),
    );
}

/// What the smoke test checks, for the plan.
pub(crate) fn describe(models: &[String]) -> String {
    match models {
        [] => format!("GET /readyz must answer 200, POST /score {REQUEST} must answer {EXPECTED}"),
        [model] => format!(
            "GET /readyz must answer 200, GET /v2/models/{model} gives the inputs' names, types and shapes, one row of them must answer one score on POST /score (or, for a model /score cannot take, outputs on POST /v2/models/{model}/infer)"
        ),
        several => format!(
            "GET /readyz must answer 200, then for each of the {} models ({}): GET /v2/models/NAME gives the inputs' names, types and shapes, one row of them must answer one score on POST /score/NAME (or, for a model /score cannot take, outputs on POST /v2/models/NAME/infer)",
            several.len(),
            several.join(", ")
        ),
    }
}

/// Retries with backoff until the checks pass or `timeout` runs out; the error reports
/// what came back last.
pub(crate) fn smoke_test(url: &str, timeout: Duration, models: &[String]) -> anyhow::Result<()> {
    if !url.starts_with("http://") {
        bail!("smoke needs an http:// URL, got {url:?}");
    }
    let agent = agent(Duration::from_secs(10));
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = attempt(&agent, url, models);
        let last = match outcome {
            Ok(passed) => {
                for (route, answer) in passed {
                    println!("smoke test passed: {url}{route} answered {answer}");
                }
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

/// Readiness, then each model's row (or the tutorial's request): the route and answer of
/// each, or what one saw instead.
fn attempt(agent: &ureq::Agent, url: &str, models: &[String]) -> Result<Vec<(String, String)>, String> {
    let (status, body) = get(agent, &format!("{url}/readyz"))?;
    if status != 200 {
        return Err(format!("GET /readyz answered {status} {body}"));
    }
    if models.is_empty() {
        let (status, body) = post_json(agent, &format!("{url}/score"), REQUEST)?;
        return match serde_json::from_str::<Value>(&body) {
            Ok(value) if status == 200 && value == json!({"score": [1, 2]}) => {
                Ok(vec![("/score".to_owned(), EXPECTED.to_owned())])
            }
            _ => Err(format!(
                "POST /score answered {status} {body} (expected 200 {EXPECTED})"
            )),
        };
    }
    // One model is the default `/score` serves; of several, each has its own.
    let several = models.len() > 1;
    models
        .iter()
        .map(|model| {
            let score = if several {
                format!("/score/{}", escaped(model))
            } else {
                "/score".to_owned()
            };
            attempt_model(agent, url, model, &score)
                .map(|(route, answer)| (route.replace("{name}", model), answer))
        })
        .collect()
}

/// One row of `model`, on `score` (its `/score` route) or, for a model `/score` cannot
/// take, on `/v2`.
fn attempt_model(
    agent: &ureq::Agent,
    url: &str,
    model: &str,
    score: &str,
) -> Result<(String, String), String> {
    let (status, body) = get(agent, &format!("{url}/v2/models/{}", escaped(model)))?;
    let inputs = match serde_json::from_str::<Value>(&body) {
        Ok(metadata) if status == 200 => metadata["inputs"].as_array().cloned().unwrap_or_default(),
        _ => return Err(format!("GET /v2/models/{model} answered {status} {body}")),
    };
    if inputs.is_empty() {
        return Err(format!("GET /v2/models/{model} declares no inputs: {body}"));
    }
    let request = score_request(&inputs);
    let (status, body) = post_json(agent, &format!("{url}{score}"), &request.to_string())?;
    let answer = serde_json::from_str::<Value>(&body).unwrap_or_default();
    if status == 200 && answer["score"].as_array().is_some_and(|s| s.len() == 1) {
        return Ok((score.to_owned(), body));
    }
    // A model /score cannot take (inputs that are not rows) answers 404 saying so: /v2.
    if status != 404 {
        return Err(format!(
            "POST {score} {request} answered {status} {body} (expected 200 with one score)"
        ));
    }
    let request = infer_request(&inputs);
    let path = format!("{url}/v2/models/{}/infer", escaped(model));
    let (status, body) = post_json(agent, &path, &request.to_string())?;
    let answer = serde_json::from_str::<Value>(&body).unwrap_or_default();
    match answer["outputs"].as_array() {
        Some(outputs) if status == 200 && !outputs.is_empty() => {
            Ok(("/v2/models/{name}/infer".to_owned(), body))
        }
        _ => Err(format!(
            "POST /v2/models/{model}/infer {request} answered {status} {body} (expected 200 with outputs)"
        )),
    }
}

/// One element of a protocol datatype: 0, false, or an empty string.
fn neutral(datatype: &str) -> Value {
    match datatype {
        "BYTES" => json!(""),
        "BOOL" => json!(false),
        _ => json!(0),
    }
}

/// Nested arrays of `dims` (each dynamic one 1) around `leaf`.
fn nested(dims: &[Value], leaf: Value) -> Value {
    dims.iter().rev().fold(leaf, |inner, dim| {
        let size = dim.as_i64().filter(|d| *d > 0).unwrap_or(1) as usize;
        Value::Array(vec![inner; size])
    })
}

/// `/score`'s request for one row: the row of the one input, or a record of one value per
/// input.
pub(crate) fn score_request(inputs: &[Value]) -> Value {
    let dims = |input: &Value| input["shape"].as_array().cloned().unwrap_or_default();
    if let [input] = inputs {
        let shape = dims(input);
        let row = nested(
            shape.get(1..).unwrap_or(&[]),
            neutral(input["datatype"].as_str().unwrap_or("")),
        );
        return json!({"X": [row]});
    }
    let record: serde_json::Map<String, Value> = inputs
        .iter()
        .map(|input| {
            let name = input["name"].as_str().unwrap_or_default().to_owned();
            (name, neutral(input["datatype"].as_str().unwrap_or("")))
        })
        .collect();
    json!({"X": [record]})
}

/// The Open Inference Protocol's request for one row of every input.
fn infer_request(inputs: &[Value]) -> Value {
    let tensors: Vec<Value> = inputs
        .iter()
        .map(|input| {
            let shape: Vec<i64> = input["shape"]
                .as_array()
                .map(|dims| {
                    dims.iter()
                        .map(|d| d.as_i64().filter(|d| *d > 0).unwrap_or(1))
                        .collect()
                })
                .unwrap_or_default();
            let datatype = input["datatype"].as_str().unwrap_or_default();
            let count: i64 = shape.iter().product();
            json!({"name": input["name"], "shape": shape, "datatype": datatype,
                   "data": vec![neutral(datatype); count as usize]})
        })
        .collect();
    json!({ "inputs": tensors })
}

/// Adds the closing lines of a `ship`: where the service is, how to try it and stop it.
pub(crate) fn add_how_to_reach<C>(
    plan: &mut Plan<'_, C>,
    url: String,
    models: Vec<String>,
    stop: &'static str,
) {
    plan.check(format!("print how to reach {url}"), move |_| {
        println!("The service is running at {url}");
        print_try_it(&url, &models);
        println!("Stop it: {stop}");
        Ok(())
    });
}

/// How to try the service at `url`: the tutorial's request, or where each model says
/// what it takes.
pub(crate) fn print_try_it(url: &str, models: &[String]) {
    match models {
        [] => {
            println!("Try it:  curl -X POST {url}/score -H 'Content-Type: application/json' -d '{REQUEST}'")
        }
        [model] => {
            let path = escaped(model);
            println!("Its model: curl {url}/v2/models/{path}   (then POST /score with rows of that shape)")
        }
        several => {
            for model in several {
                let path = escaped(model);
                println!(
                    "Model {model}: curl {url}/v2/models/{path}   (then POST /score/{path} with rows of that shape)"
                );
            }
        }
    }
}

/// A model's name as a URL path segment: every byte but the unreserved ones escaped (a
/// repository's directory may be named "fraud model"); the service decodes it back.
pub(crate) fn escaped(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The body that asks a server's repository index for what it serves: only the versions
/// that answer.
pub(crate) const INDEX_READY: &str = r#"{"ready": true}"#;

/// What a server serves, read from its answer to `POST /v2/repository/index` with
/// `INDEX_READY`: each model with its ready versions ("churn 1, fraud 1 and 2").
pub(crate) fn describe_index(answer: &str) -> String {
    let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(answer) else {
        return format!("(the index answered {})", answer.trim());
    };
    let mut models: Vec<(String, Vec<String>)> = Vec::new();
    for entry in &entries {
        let (Some(name), Some(version)) = (entry["name"].as_str(), entry["version"].as_str()) else {
            continue;
        };
        match models.iter_mut().find(|(known, _)| known == name) {
            Some((_, versions)) => versions.push(version.to_owned()),
            None => models.push((name.to_owned(), vec![version.to_owned()])),
        }
    }
    if models.is_empty() {
        return "no model is ready".to_owned();
    }
    models
        .iter()
        .map(|(name, versions)| {
            let versions = match versions.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => String::new(),
            };
            format!("{name} {versions}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the server at `url` serves, as it says (`describe_index`), or why it could not say.
pub(crate) fn served_at(url: &str) -> String {
    match post_json(
        &agent(Duration::from_secs(2)),
        &format!("{url}/v2/repository/index"),
        INDEX_READY,
    ) {
        Ok((200, answer)) => describe_index(&answer),
        Ok((status, answer)) => format!("(POST /v2/repository/index answered {status}: {})", answer.trim()),
        Err(err) => format!("(POST /v2/repository/index failed: {err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_models_name_is_escaped_for_its_path() {
        assert_eq!(escaped("fraud_v2.1-x~"), "fraud_v2.1-x~");
        assert_eq!(escaped("fraud model/é"), "fraud%20model%2F%C3%A9");
    }

    #[test]
    fn the_index_is_described_model_by_model_with_its_ready_versions() {
        let answer = r#"[{"name":"churn","version":"1","state":"READY"},{"name":"fraud","version":"1","state":"READY"},{"name":"fraud","version":"2","state":"READY"},{"name":"fraud","version":"3","state":"READY"}]"#;
        assert_eq!(describe_index(answer), "churn 1, fraud 1, 2 and 3");
        assert_eq!(describe_index("[]"), "no model is ready");
        assert_eq!(describe_index("not found\n"), "(the index answered not found)");
    }

    #[test]
    fn one_row_is_shaped_and_typed_as_the_metadata_declares() {
        let image = json!([{"name": "image", "datatype": "FP32", "shape": [-1, 2, 2, 1]}]);
        assert_eq!(
            score_request(image.as_array().unwrap()),
            json!({"X": [[[[0], [0]], [[0], [0]]]]})
        );
        let frame = json!([
            {"name": "age", "datatype": "FP32", "shape": [-1, 1]},
            {"name": "city", "datatype": "BYTES", "shape": [-1, 1]},
        ]);
        assert_eq!(
            score_request(frame.as_array().unwrap()),
            json!({"X": [{"age": 0, "city": ""}]})
        );
        let pair = json!([
            {"name": "x", "datatype": "FP32", "shape": [3, 4]},
            {"name": "y", "datatype": "INT64", "shape": [-1]},
        ]);
        assert_eq!(
            infer_request(pair.as_array().unwrap()),
            json!({"inputs": [
                {"name": "x", "shape": [3, 4], "datatype": "FP32", "data": vec![0; 12]},
                {"name": "y", "shape": [1], "datatype": "INT64", "data": [0]},
            ]})
        );
    }
}
