//! Which scikit-learn estimators tract serves correctly: loads every model that
//! `models/make_fixtures.py --survey DIR` exported and compares our answers with
//! onnxruntime's. Prints the README's table. Run through `cargo xtask fixtures --survey`.

use std::path::PathBuf;

use score_service::model::{self, Batch, Data};
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/models-survey".into()),
    );
    let index: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json"))?)?;
    println!("| estimator | served by tract | notes |\n|---|---|---|");
    for (name, entry) in index {
        let verdict = match entry["file"].as_str() {
            None => (
                "no".to_owned(),
                entry["error"].as_str().unwrap_or("export failed").to_owned(),
            ),
            Some(file) => check(&dir.join(file), &entry),
        };
        println!(
            "| {name} | {} | {} |",
            verdict.0,
            verdict.1.replace('|', "/").replace('\n', " ")
        );
    }
    Ok(())
}

fn check(path: &std::path::Path, entry: &Value) -> (String, String) {
    let model = match model::load(path.to_str().unwrap_or_default()) {
        Ok(model) => model,
        Err(err) => return ("no".into(), first_line(&format!("{err:#}"))),
    };
    let rows: Vec<Vec<f64>> = serde_json::from_value(entry["inputs"].clone()).unwrap_or_default();
    let values: Vec<f64> = rows.iter().flatten().copied().collect();
    let batch = Batch {
        rows: rows.len(),
        width: rows[0].len(),
        values: &values,
    };
    let output = match model.predict(&batch) {
        Ok(output) => output,
        Err(err) => return ("no".into(), first_line(&err.0)),
    };
    let outputs = &entry["outputs"];
    let mut problems = Vec::new();
    if let Some(labels) = outputs.get("label") {
        let want: Vec<String> = labels
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.to_string().trim_matches('"').to_owned())
            .collect();
        let got: Vec<String> = match &output.score {
            Data::I64(v) => v.iter().map(i64::to_string).collect(),
            Data::Str(v) => v.clone(),
            other => other.as_f64().iter().map(f64::to_string).collect(),
        };
        if got != want {
            problems.push(format!("labels differ: {got:?} vs {want:?}"));
        }
        let probabilities: Vec<f64> = output
            .probabilities
            .iter()
            .flatten()
            .flat_map(Data::as_f64)
            .collect();
        let want: Vec<f64> = flatten(outputs.get("probabilities").unwrap_or(&Value::Null));
        if !close(&probabilities, &want) {
            problems.push("probabilities differ".into());
        }
    } else {
        let first = outputs
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        if !close(&output.score.as_f64(), &flatten(&first)) {
            problems.push("values differ".into());
        }
    }
    if problems.is_empty() {
        ("yes".into(), "answers match onnxruntime".into())
    } else {
        ("wrong".into(), problems.join("; "))
    }
}

fn flatten(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
        _ => Vec::new(),
    }
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-4 * y.abs().max(1.0))
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    line.rsplit(": ")
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(": ")
}
