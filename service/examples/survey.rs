//! The README's table of served models: loads every model of the zoo (models/zoo/, made
//! by models/make_fixtures.py), scores its rows, and compares the answers with the
//! onnxruntime answers recorded beside it. Run through `cargo xtask fixtures --survey`.

use std::path::{Path, PathBuf};

use score_service::model::{self, Batch, Data, ModelOutput};
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "models/zoo".into()));
    let index: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json"))?)?;
    println!("| model | task | served | notes |\n|---|---|---|---|");
    for (name, entry) in &index {
        let (verdict, notes) = check(&dir.join(format!("{name}.onnx")), entry);
        let task = entry["task"].as_str().unwrap_or("?");
        println!("| {name} | {task} | {verdict} | {} |", notes.replace('|', "/"));
    }
    Ok(())
}

fn check(path: &Path, entry: &Value) -> (&'static str, String) {
    let model = match model::load(path.to_str().unwrap_or_default(), &Default::default()) {
        Ok(model) => model,
        Err(err) => {
            let reason = err.to_string();
            let reason = reason.rsplit(": ").next().unwrap_or(&reason).to_owned();
            return ("refused", reason);
        }
    };
    let rows: Vec<Vec<f64>> = serde_json::from_value(entry["inputs"].clone()).unwrap_or_default();
    let values: Vec<f64> = rows.iter().flatten().copied().collect();
    let batch = Batch {
        rows: rows.len(),
        width: rows.first().map_or(0, Vec::len),
        values: &values,
    };
    let output = match model.predict(&batch) {
        Ok(output) => output,
        Err(err) => return ("fails", err.to_string()),
    };
    match differences(&output, entry) {
        None => ("yes", "matches onnxruntime".into()),
        Some(problem) => ("wrong", problem),
    }
}

/// What differs from onnxruntime's answers, if anything.
fn differences(output: &ModelOutput, entry: &Value) -> Option<String> {
    let expected: Vec<&Value> = entry["outputs"].as_object()?.values().collect();
    let labels = |data: &Data| -> Vec<String> {
        match data {
            Data::I64(v) => v.iter().map(i64::to_string).collect(),
            Data::Str(v) => v.clone(),
            other => other.as_f64().iter().map(f64::to_string).collect(),
        }
    };
    if entry["task"] == "classification" {
        let want: Vec<String> = flatten(expected[0])
            .iter()
            .map(|v| v.to_string().trim_matches('"').to_owned())
            .collect();
        if labels(&output.score) != want {
            return Some("labels differ".into());
        }
        let probabilities: Vec<f64> = output
            .probabilities
            .iter()
            .flatten()
            .flat_map(Data::as_f64)
            .collect();
        let want: Vec<f64> = flatten(expected.get(1)?)
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        return (!close(&probabilities, &want)).then(|| "probabilities differ".into());
    }
    let want: Vec<f64> = flatten(expected[0]).iter().filter_map(Value::as_f64).collect();
    (!close(&output.score.as_f64(), &want)).then(|| "values differ".into())
}

fn flatten(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        other => vec![other.clone()],
    }
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 * y.abs().max(1.0))
}
