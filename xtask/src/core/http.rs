//! The HTTP client every task uses: statuses come back as values, not errors, so a
//! check can say what it got.

use std::time::Duration;

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
