//! schemathesis (PyPI) against the running server, from the OpenAPI document it serves
//! for its model: it generates requests for every operation, valid and not, and checks
//! that no answer is a 5xx, every answer conforms to the document, and (for a real model)
//! every request the document admits is accepted — for the identity model and for a
//! real one.

use std::path::PathBuf;
use std::process::Command;

use score_service::config::Limits;

use crate::support::{TestServer, run_client};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs schemathesis against `server`, which serves `model`; returns its report. With
/// `every_check`, positive-data acceptance runs too (where JSON Schema can say what is
/// accepted: see tests/schemathesis.toml).
async fn schemathesis(server: &TestServer, model: &str, every_check: bool) -> String {
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
        // Every check runs by default; `--checks all` would also override the per-operation
        // settings of the config file.
        .args(["run", &url])
        // Each run ends at --max-time before --max-examples (per operation) on 2 cores:
        // three at once for 65 s generate about as many cases as three in turn for 45 s.
        .args(["--max-examples", "50", "--max-time", "65", "--seed", "1"])
        // No example database: the three runs at once would share one in this folder, and
        // a run here should be the run CI makes, from the seed alone.
        .args(["--generation-database", "none"])
        .env("SCORE_MODEL_NAME", model)
        .env("NO_COLOR", "1");
    if !every_check {
        // The identity model takes rows of any width, but JSON Schema cannot say that a
        // batch's rows must be of one width: such a batch is refused with a 400 saying so.
        command.args(["--exclude-checks", "positive_data_acceptance"]);
    }
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
    // A forest answers every row of float32 numbers (and missing values) with finite
    // numbers, so every request its document admits must be accepted. (A model whose
    // output overflows for inputs near float32's limits refuses them with a 400, which
    // no JSON Schema of its inputs can foretell.)
    let forests = ["random_forest_multiclass", "dataframe_ordinal_forest"];
    let echo = TestServer::start().await;
    let mut servers = Vec::new();
    for model in forests {
        let path = root().join(format!("models/zoo/{model}.onnx"));
        servers.push(TestServer::serving(path.to_str().unwrap(), Limits::default()).await);
    }
    // The three runs at once: each is mostly schemathesis's own Python, on one core, and
    // one after another they were most of this test binary's time in CI (139 s here,
    // against about 65 s at once).
    let (echo_report, first, second) = tokio::join!(
        schemathesis(&echo, "echo", false),
        schemathesis(&servers[0], forests[0], true),
        schemathesis(&servers[1], forests[1], true),
    );
    let generated = cases(&echo_report);
    assert!(generated >= 300, "{generated} cases for the identity model");
    eprintln!("schemathesis, identity model: {generated} cases, no failures");
    for (model, report) in forests.iter().zip([first, second]) {
        let generated = cases(&report);
        assert!(generated >= 300, "{generated} cases for {model}");
        eprintln!("schemathesis, {model}, every check: {generated} cases, no failures");
    }
}
