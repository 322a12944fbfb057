//! The README's table of served models: loads every model of the zoo (models/zoo/, made
//! by models/make_fixtures.py), runs its inputs, and compares every output with the
//! onnxruntime answers recorded beside it. Run through `cargo xtask fixtures --survey`.

use std::path::{Path, PathBuf};

use score_service::App;
use score_service::config::Limits;
use score_service::model::{self, Array, Data, ElementType, Model};
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "models/zoo".into()));
    let index: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json"))?)?;
    println!("| model | exporter | task | served | routes | notes |\n|---|---|---|---|---|---|");
    for (name, entry) in &index {
        let (verdict, routes, notes) = check(&dir.join(format!("{name}.onnx")), entry);
        let text = |key: &str| entry[key].as_str().unwrap_or("?").to_owned();
        println!(
            "| {name} | {} | {} | {verdict} | {routes} | {} |",
            text("exporter"),
            text("task"),
            notes.replace('|', "/")
        );
    }
    Ok(())
}

fn check(path: &Path, entry: &Value) -> (&'static str, String, String) {
    let model = match model::load(path.to_str().unwrap_or_default(), &Default::default()) {
        Ok(model) => model,
        Err(err) => return ("refused", "-".into(), chain(&err)),
    };
    let outcome = run(model.as_ref(), entry);
    let routes = match App::new(model, Limits::default()) {
        Ok(app) => match app.score_refusals().pop() {
            None => "/score, /v2".to_owned(),
            Some((_, why)) => format!("/v2 (/score: {why})"),
        },
        Err(err) => format!("? ({err})"),
    };
    match outcome {
        Ok(()) => ("yes", routes, "matches onnxruntime".into()),
        Err(problem) => ("wrong", routes, problem),
    }
}

/// Runs the entry's inputs through the model and compares every output.
fn run(model: &dyn Model, entry: &Value) -> Result<(), String> {
    let mut inputs = Vec::new();
    for spec in model.inputs() {
        let tensor = &entry["inputs"][&spec.name];
        let array = array(tensor).ok_or_else(|| format!("no input {:?} in the index", spec.name))?;
        let data = model::convert(array.data, spec.element).map_err(|err| err.to_string())?;
        inputs.push(Array {
            shape: array.shape,
            data,
        });
    }
    let outputs = model.predict(inputs).map_err(|err| err.to_string())?;
    let expected = entry["outputs"].as_object().ok_or("no outputs in the index")?;
    for (spec, output) in model.outputs().iter().zip(&outputs) {
        let want = expected
            .get(&spec.name)
            .and_then(array)
            .ok_or_else(|| format!("onnxruntime gave no output {:?}", spec.name))?;
        if let Some(problem) = differs(output, &want) {
            return Err(format!("output {:?}: {problem}", spec.name));
        }
    }
    Ok(())
}

/// A tensor of the index as an array (null is NaN).
fn array(tensor: &Value) -> Option<Array> {
    let shape: Vec<usize> = serde_json::from_value(tensor["shape"].clone()).ok()?;
    let mut flat = Vec::new();
    let mut stack = vec![&tensor["data"]];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter().rev()),
            other => flat.push(other),
        }
    }
    let element = ElementType::from_protocol_name(tensor["datatype"].as_str()?)?;
    let float = |v: &&Value| v.as_f64().unwrap_or(f64::NAN);
    let data = match element {
        ElementType::Str => Data::Str(flat.iter().map(|v| v.as_str().unwrap_or("").to_owned()).collect()),
        ElementType::Bool => Data::Bool(flat.iter().map(|v| v.as_bool().unwrap_or(false)).collect()),
        ElementType::F32 | ElementType::F16 => Data::F32(flat.iter().map(|v| float(v) as f32).collect()),
        ElementType::F64 => Data::F64(flat.iter().map(float).collect()),
        _ => Data::I64(flat.iter().map(|v| v.as_i64().unwrap_or(i64::MIN)).collect()),
    };
    let data = model::convert(data, element).ok()?;
    Some(Array { shape, data })
}

/// What differs between two arrays: labels and strings exactly, numbers within 1e-4.
fn differs(actual: &Array, expected: &Array) -> Option<String> {
    if actual.data.len() != expected.data.len() {
        return Some(format!(
            "shape {:?}, onnxruntime's {:?}",
            actual.shape, expected.shape
        ));
    }
    let numbers = |data: &Data| model::convert(data.clone(), ElementType::F64).ok();
    match (&actual.data, &expected.data) {
        (Data::Str(a), Data::Str(b)) => (a != b).then(|| "strings differ".into()),
        (a, b) if a.element_type().is_float() || b.element_type().is_float() => {
            let (Some(Data::F64(a)), Some(Data::F64(b))) = (numbers(a), numbers(b)) else {
                return Some("types differ".into());
            };
            let close = a
                .iter()
                .zip(&b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * y.abs().max(1.0) || (x.is_nan() && y.is_nan()));
            (!close).then(|| "values differ".into())
        }
        (a, b) => (numbers(a) != numbers(b)).then(|| "values differ".into()),
    }
}

/// An error and its causes, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        line.push_str(": ");
        line.push_str(&error.to_string());
        cause = error.source();
    }
    // The file is named in the table's first column already.
    match line.split_once(".onnx: ") {
        Some((_, rest)) => rest.to_owned(),
        None => line,
    }
}
