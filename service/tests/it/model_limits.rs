//! A model file is input too: a corrupt or hostile one stops start-up with one line
//! naming what is wrong — a limit broken, a cycle, a tensor that lies about its size —
//! never a crash, a hang or memory without bound.

use std::path::PathBuf;
use std::process::Command;

use prost::Message;
use score_service::model::{ModelLimits, OnnxModel};
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// A graph of `nodes`, with `initializers`, opset 17.
fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: initializers,
            name: "hostile".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn relu(name: &str, input: &str, output: &str) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: "Relu".into(),
        input: vec![input.into()],
        output: vec![output.into()],
        ..Default::default()
    }
}

fn refusal(bytes: &[u8]) -> String {
    match OnnxModel::load_bytes("hostile", bytes, &ModelLimits::default()) {
        Ok(_) => panic!("the model loaded"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_cyclic_graph_is_refused() {
    let bytes = model(vec![relu("a", "y", "x"), relu("b", "x", "y")], vec![]);
    let error = refusal(&bytes);
    assert!(error.contains("is part of a cycle"), "{error}");
}

/// Found by `cargo xtask fuzz` (model_bytes): an output no node produces made tract
/// panic while building its graph, which aborts the release binary at start-up.
#[test]
fn an_output_nothing_produces_is_refused() {
    let mut proto = ModelProto::decode(model(vec![relu("a", "x", "y")], vec![]).as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    graph.output.push(ValueInfoProto {
        name: "nowhere".into(),
        ..Default::default()
    });
    let error = refusal(&proto.encode_to_vec());
    assert!(
        error.contains(r#"the graph's output "nowhere" is produced by no node, input or initializer"#),
        "{error}"
    );
    // The input the fuzzer found, as it found it.
    let found =
        std::fs::read(models_dir().join("../fuzz/regressions/model_bytes-undefined-output.bin")).unwrap();
    assert!(refusal(&found).contains("is produced by no node, input or initializer"));
}

/// Found by `cargo xtask fuzz` (model_bytes): a Transpose whose `perm` names an axis the
/// input lacks panics inside tract. The library turns that into a refusal; the binary,
/// which aborts on a panic in release, reports it from its panic hook: one line, exit 1.
#[test]
fn a_graph_tract_panics_on_is_refused_and_the_binary_exits_with_one_line() {
    let found = models_dir().join("../fuzz/regressions/model_bytes-transpose-axis.bin");
    let error = refusal(&std::fs::read(&found).unwrap());
    assert!(
        error.contains("tract failed while building its graph (index out of bounds"),
        "{error}"
    );
    let model = std::env::temp_dir().join(format!("transpose-axis-{}.onnx", std::process::id()));
    std::fs::copy(&found, &model).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_score-service"))
        .args(["--log-format", "text", "--port", "0", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&model);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|line| !line.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("cannot start") && lines[0].contains("tract failed while building its graph"),
        "{stderr}"
    );
}

/// `--vet-model`, which a repository server runs on each file before loading it (the
/// bytes on stdin, `-`): the exit status says loaded (0), refused (1) or panicked (3, the
/// panic's message as one line), whether panics unwind, as here, or abort, as in the
/// release binary.
#[test]
fn vet_model_says_by_its_exit_status_whether_the_file_loads_is_refused_or_panics() {
    let vet = |file: &std::path::Path, limits: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_score-service"))
            .args(["--vet-model", "-"])
            .args(limits)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let bytes = std::fs::read(file).unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bytes).unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    let good = models_dir().join("zoo/linear_svr.onnx");
    assert_eq!(vet(&good, &[]), (Some(0), String::new()));
    let (status, stderr) = vet(&good, &["--model-max-bytes=10"]);
    assert_eq!(status, Some(1), "the limits passed apply: {stderr}");
    assert!(stderr.contains("--model-max-bytes"), "{stderr}");

    let panics = models_dir().join("../fuzz/regressions/model_bytes-transpose-axis.bin");
    let (status, stderr) = vet(&panics, &[]);
    assert_eq!(status, Some(3), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|line| !line.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("index out of bounds"), "{stderr}");

    // A file named on the command line, as a person would run it.
    let output = Command::new(env!("CARGO_BIN_EXE_score-service"))
        .arg("--vet-model")
        .arg(&panics)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
}

#[test]
fn a_tensor_declaring_more_than_the_limit_is_refused_before_anything_is_allocated() {
    let huge = TensorProto {
        name: "w".into(),
        dims: vec![1_000_000, 1_000_000],
        data_type: 1,
        float_data: vec![0.0; 4],
        ..Default::default()
    };
    let error = refusal(&model(vec![relu("a", "w", "y")], vec![huge]));
    assert!(
        error.contains(r#"tensor "w" declares [1000000 x 1000000] elements, over the limit"#)
            && error.contains("--model-max-elements"),
        "{error}"
    );
}

#[test]
fn a_tensor_holding_less_than_it_declares_is_refused() {
    let short = TensorProto {
        name: "w".into(),
        dims: vec![3],
        data_type: 1,
        raw_data: vec![0; 8],
        ..Default::default()
    };
    let error = refusal(&model(vec![relu("a", "w", "y")], vec![short]));
    assert!(
        error.contains(r#"tensor "w" declares 3 elements but holds 2"#),
        "{error}"
    );
}

#[test]
fn truncated_and_garbage_files_are_refused() {
    let whole = std::fs::read(models_dir().join("zoo/svr_rbf.onnx")).unwrap();
    for cut in [1, 17, whole.len() / 2, whole.len() - 1] {
        let error = refusal(&whole[..cut]);
        assert!(error.starts_with("cannot "), "{cut}: {error}");
    }
    assert!(refusal(b"\xff\xff\xff\xff\xff").starts_with("cannot "));
}

#[test]
fn each_limit_stops_start_up_with_one_line_naming_its_flag() {
    let model = models_dir().join("logistic_regression.onnx");
    let forest = models_dir().join("random_forest.onnx");
    for (flag, value, path, expected) in [
        (
            "--model-max-bytes",
            "100",
            &model,
            "over the limit of 100 (--model-max-bytes)",
        ),
        (
            "--model-max-nodes",
            "1",
            &model,
            "over the limit of 1 (--model-max-nodes)",
        ),
        (
            "--model-max-tree-nodes",
            "10",
            &forest,
            "(--model-max-tree-nodes)",
        ),
        ("--model-max-elements", "2", &model, "(--model-max-elements)"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_score-service"))
            .args(["--port", "0", "--log-format", "text", flag, value, "--model"])
            .arg(path)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|line| line.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{flag}: {stderr}");
        assert!(errors[0].contains(expected), "{flag}: {stderr}");
    }
}

#[test]
fn the_defaults_fit_every_zoo_model() {
    let limits = ModelLimits::default();
    let mut loaded = 0;
    for dir in [models_dir().join("zoo"), models_dir().join("zoo/onnx-node")] {
        let index: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
        // The models the zoo expects refused are refused for an operator, not a limit.
        for (name, _) in index.iter().filter(|(_, entry)| entry.get("refused").is_none()) {
            let path = dir.join(format!("{name}.onnx"));
            OnnxModel::load(&path, &limits).unwrap_or_else(|err| panic!("{err}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 70, "{loaded} models");
}

/// A float32 `[N, 4]` input named `x`, as exporters declare one.
fn float_input(name: &str) -> ValueInfoProto {
    use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension::Value as DimValue};
    use tract_onnx::pb::type_proto::{Tensor, Value as TypeValue};
    use tract_onnx::pb::{TensorShapeProto, TypeProto};
    let dims = [DimValue::DimParam("N".into()), DimValue::DimValue(4)];
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|value| Dimension {
                            value: Some(value),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_graph_that_answers_nothing_is_refused() {
    let mut proto = ModelProto::decode(model(vec![relu("a", "x", "y")], vec![]).as_slice()).unwrap();
    proto.graph.as_mut().unwrap().input.push(float_input("x"));
    let error = refusal(&proto.encode_to_vec());
    assert!(
        error.contains("its graph has no outputs: it answers nothing"),
        "{error}"
    );
}

#[test]
fn a_graph_that_analyses_but_cannot_run_is_refused_at_load() {
    // Column 9 of a four-column input: tract types the graph (ArrayFeatureExtractor's
    // output is as wide as its indices), and the extractor fails only when it runs.
    let index = TensorProto {
        name: "nine".into(),
        data_type: 7,
        dims: vec![1],
        int64_data: vec![9],
        ..Default::default()
    };
    let extract = NodeProto {
        name: "column".into(),
        op_type: "ArrayFeatureExtractor".into(),
        domain: "ai.onnx.ml".into(),
        input: vec!["x".into(), "nine".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    let mut proto = ModelProto::decode(model(vec![extract], vec![index]).as_slice()).unwrap();
    proto.opset_import.push(OperatorSetIdProto {
        domain: "ai.onnx.ml".into(),
        version: 3,
    });
    let graph = proto.graph.as_mut().unwrap();
    graph.input.push(float_input("x"));
    graph.output.push(ValueInfoProto {
        name: "y".into(),
        ..Default::default()
    });
    let error = refusal(&proto.encode_to_vec());
    assert!(
        error.contains("it loads, but one row shaped as its inputs declare does not run through it"),
        "{error}"
    );
}
