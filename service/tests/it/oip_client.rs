//! Triton's official Open Inference Protocol client (PyPI tritonclient[http]) against the
//! real server, with its defaults (binary inputs and outputs) and with JSON, for models of
//! every kind of input: rows of floats, a DataFrame's string and missing values, images,
//! int32 token ids, string labels out.

use std::path::PathBuf;
use std::process::Command;

use score_service::config::Limits;

use crate::support::{TestServer, run_client};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python, which must have tritonclient.
fn python_with_tritonclient() -> PathBuf {
    let python = root().join("target/venv/bin/python");
    let has_client = Command::new(&python)
        .args(["-c", "import tritonclient.http"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        has_client,
        "target/venv has no tritonclient: run `cargo xtask ci`, which installs it"
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tritonclient in target/venv (cargo xtask ci installs it)"]
async fn tritons_client_talks_to_the_server_unchanged() {
    let python = python_with_tritonclient();
    for model in [
        "linear_regression",
        "random_forest_multiclass",
        "decision_tree_string_labels",
        "dataframe_one_hot_logistic",
        "dataframe_ordinal_forest",
        "keras_cnn",
        "keras_embedding",
        "catboost_multiclass",
    ] {
        let path = root().join(format!("models/zoo/{model}.onnx"));
        let server = TestServer::serving(path.to_str().unwrap(), Limits::default()).await;
        let url = server.addr.to_string();
        let mut command = Command::new(&python);
        command
            .arg(root().join("service/tests/oip_client.py"))
            .args([&url, model])
            .arg(root().join("models/zoo/index.json"));
        let (success, report) = run_client(command).await;
        assert!(success, "{model}: the client failed:\n{report}");
        assert!(
            report.contains(&format!("({})", "binary")) && report.contains("matches onnxruntime"),
            "{model}: {report}"
        );
        eprintln!("{report}");
    }
}
