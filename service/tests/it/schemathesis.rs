//! schemathesis (PyPI) against the running server, from the committed OpenAPI document:
//! it generates requests for every operation, valid and not, and checks that no answer
//! is a 5xx and every answer conforms to the document — for the identity model and for a
//! real one.

use std::path::PathBuf;
use std::process::Command;

use score_service::config::Limits;

use crate::support::{TestServer, run_client};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs schemathesis against `server`, which serves `model`; returns its report.
async fn schemathesis(server: &TestServer, model: &str) -> String {
    let schemathesis = root().join("target/venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "target/venv has no schemathesis: run `cargo xtask ci`, which installs it"
    );
    let url = format!("http://{}/openapi.json", server.addr);
    let mut command = Command::new(schemathesis);
    command
        .arg("--config-file")
        .arg(root().join("service/tests/schemathesis.toml"))
        .args(["run", &url, "--checks", "all"])
        // JSON Schema cannot say that a batch's rows are of equal length and as wide
        // as the model: such requests the schema admits are refused with a 400 that
        // says why, which this check would count as a failure.
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "50", "--max-time", "45", "--seed", "1"])
        .env("SCORE_MODEL_NAME", model)
        .env("NO_COLOR", "1");
    let (success, report) = run_client(command).await;
    assert!(success, "schemathesis found failures:\n{report}");
    report
}

/// The "N generated, N passed" line, checked to cover a few hundred cases.
fn cases(report: &str) -> u64 {
    let line = report
        .lines()
        .find(|line| line.contains(" generated, "))
        .unwrap_or_else(|| panic!("no summary in\n{report}"));
    let generated: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(line.contains(&format!("{generated} passed")), "{line}");
    generated
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis in target/venv (cargo xtask ci installs it)"]
async fn schemathesis_finds_no_5xx_and_no_answer_off_the_document() {
    let echo = TestServer::start().await;
    let generated = cases(&schemathesis(&echo, "echo").await);
    assert!(generated >= 300, "{generated} cases for the identity model");
    eprintln!("schemathesis, identity model: {generated} cases, no failures");

    let path = root().join("models/logistic_regression.onnx");
    let model = TestServer::serving(path.to_str().unwrap(), Limits::default()).await;
    let generated = cases(&schemathesis(&model, "logistic_regression").await);
    assert!(generated >= 300, "{generated} cases for a model");
    eprintln!("schemathesis, logistic_regression: {generated} cases, no failures");
}
