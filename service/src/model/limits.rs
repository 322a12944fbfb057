//! Bounds on what loading a model may cost. A model file is input too — users ship what a
//! colleague exported — so a corrupt or hostile one (enormous declared tensors, a cyclic
//! graph, millions of nodes) is refused before tract sees it, with one line naming the
//! limit it broke.

use std::collections::{HashMap, HashSet};
use std::fmt;

use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, TensorProto};

/// What a model may declare; each a flag of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimits {
    /// The model file's size (--model-max-bytes).
    pub max_bytes: u64,
    /// Nodes in the graph, subgraphs included (--model-max-nodes).
    pub max_nodes: usize,
    /// Nodes in one tree ensemble, all its trees together (--model-max-tree-nodes).
    pub max_tree_nodes: usize,
    /// Elements of any one tensor the model declares: weights, constants, the shapes of
    /// its inputs and outputs (--model-max-elements).
    pub max_elements: u64,
}

impl Default for ModelLimits {
    /// Room for every model of the zoo and the benchmark's, many times over: a 300-tree
    /// booster has 17,000 tree nodes; a 20 MB model, five million weights.
    fn default() -> Self {
        ModelLimits {
            max_bytes: 512 << 20,
            max_nodes: 100_000,
            max_tree_nodes: 10_000_000,
            max_elements: 1 << 28,
        }
    }
}

/// The limit a model broke, and by how much.
#[derive(Debug, PartialEq)]
pub enum LimitError {
    FileTooLarge {
        bytes: u64,
        limit: u64,
    },
    TooManyNodes {
        nodes: usize,
        limit: usize,
    },
    TreeTooLarge {
        node: String,
        nodes: usize,
        limit: usize,
    },
    TensorTooLarge {
        tensor: String,
        elements: String,
        limit: u64,
    },
    /// A tensor whose declared shape does not match the data it holds.
    TensorData {
        tensor: String,
        declared: u64,
        held: u64,
    },
    ExternalData {
        tensor: String,
    },
    /// Node `node` is part of a cycle: a graph must be acyclic.
    Cycle {
        node: String,
    },
    /// A graph output that no node, input or initializer of its graph produces.
    UndefinedOutput {
        output: String,
    },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::FileTooLarge { bytes, limit } => {
                write!(
                    f,
                    "the file is {bytes} bytes, over the limit of {limit} (--model-max-bytes)"
                )
            }
            LimitError::TooManyNodes { nodes, limit } => {
                write!(
                    f,
                    "its graph has {nodes} nodes, over the limit of {limit} (--model-max-nodes)"
                )
            }
            LimitError::TreeTooLarge { node, nodes, limit } => write!(
                f,
                "tree ensemble {node:?} has {nodes} nodes, over the limit of {limit} (--model-max-tree-nodes)"
            ),
            LimitError::TensorTooLarge {
                tensor,
                elements,
                limit,
            } => write!(
                f,
                "tensor {tensor:?} declares {elements} elements, over the limit of {limit} (--model-max-elements)"
            ),
            LimitError::TensorData {
                tensor,
                declared,
                held,
            } => write!(
                f,
                "tensor {tensor:?} declares {declared} elements but holds {held}: the file is corrupt"
            ),
            LimitError::ExternalData { tensor } => {
                write!(
                    f,
                    "tensor {tensor:?} keeps its data in another file; serve a model in one file"
                )
            }
            LimitError::Cycle { node } => write!(
                f,
                "node {node:?} is part of a cycle: a model's graph must be acyclic"
            ),
            LimitError::UndefinedOutput { output } => write!(
                f,
                "the graph's output {output:?} is produced by no node, input or initializer: the file is corrupt"
            ),
        }
    }
}

impl std::error::Error for LimitError {}

/// Checks a decoded model against `limits`, before anything is built from it.
pub(crate) fn check(model: &ModelProto, limits: &ModelLimits) -> Result<(), LimitError> {
    let Some(graph) = &model.graph else {
        return Ok(());
    };
    let mut graphs = vec![graph];
    let mut nodes = 0usize;
    while let Some(graph) = graphs.pop() {
        nodes += graph.node.len();
        if nodes > limits.max_nodes {
            return Err(LimitError::TooManyNodes {
                nodes,
                limit: limits.max_nodes,
            });
        }
        check_acyclic(graph)?;
        check_outputs_defined(graph)?;
        for tensor in &graph.initializer {
            check_tensor(tensor, limits)?;
        }
        for value in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
            check_declared_shape(&value.name, value, limits)?;
        }
        for node in &graph.node {
            check_node(node, limits)?;
            for attribute in &node.attribute {
                if let Some(tensor) = &attribute.t {
                    check_tensor(tensor, limits)?;
                }
                for tensor in &attribute.tensors {
                    check_tensor(tensor, limits)?;
                }
                graphs.extend(attribute.g.as_ref());
                graphs.extend(&attribute.graphs);
            }
        }
    }
    Ok(())
}

fn check_node(node: &NodeProto, limits: &ModelLimits) -> Result<(), LimitError> {
    if node.op_type.starts_with("TreeEnsemble") {
        let tree_nodes = node
            .attribute
            .iter()
            .find(|a| a.name == "nodes_featureids")
            .map_or(0, |a| a.ints.len());
        if tree_nodes > limits.max_tree_nodes {
            return Err(LimitError::TreeTooLarge {
                node: node.name.clone(),
                nodes: tree_nodes,
                limit: limits.max_tree_nodes,
            });
        }
    }
    Ok(())
}

/// The product of `dims`, if it is a count of elements at all (no negative dimension,
/// no overflow).
fn elements(dims: impl IntoIterator<Item = i64>) -> Option<u64> {
    dims.into_iter()
        .try_fold(1u64, |count, dim| count.checked_mul(u64::try_from(dim).ok()?))
}

fn check_tensor(tensor: &TensorProto, limits: &ModelLimits) -> Result<(), LimitError> {
    let name = || tensor.name.clone();
    // ONNX's TensorProto.DataLocation: 1 is EXTERNAL.
    if tensor.data_location == Some(1) || !tensor.external_data.is_empty() {
        return Err(LimitError::ExternalData { tensor: name() });
    }
    let declared = elements(tensor.dims.iter().copied()).filter(|count| *count <= limits.max_elements);
    let Some(declared) = declared else {
        return Err(LimitError::TensorTooLarge {
            tensor: name(),
            elements: describe(&tensor.dims),
            limit: limits.max_elements,
        });
    };
    // Element sizes of the data types a raw_data field can hold (0: not a fixed size).
    let size: u64 = match tensor.data_type {
        2 | 3 | 9 => 1,        // UINT8, INT8, BOOL
        4 | 5 | 10 | 16 => 2,  // UINT16, INT16, FLOAT16, BFLOAT16
        1 | 6 | 12 => 4,       // FLOAT, INT32, UINT32
        7 | 11 | 13 | 14 => 8, // INT64, DOUBLE, UINT64, COMPLEX64
        15 => 16,              // COMPLEX128
        _ => 0,
    };
    let held = if !tensor.raw_data.is_empty() && size > 0 {
        tensor.raw_data.len() as u64 / size
    } else {
        [
            tensor.float_data.len(),
            tensor.int32_data.len(),
            tensor.string_data.len(),
            tensor.int64_data.len(),
            tensor.double_data.len(),
            tensor.uint64_data.len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0) as u64
    };
    if held != declared {
        return Err(LimitError::TensorData {
            tensor: name(),
            declared,
            held,
        });
    }
    Ok(())
}

fn check_declared_shape(
    name: &str,
    value: &tract_onnx::pb::ValueInfoProto,
    limits: &ModelLimits,
) -> Result<(), LimitError> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto::Value as Type;
    let Some(Type::TensorType(tensor)) = value.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(());
    };
    let Some(shape) = &tensor.shape else {
        return Ok(());
    };
    let fixed: Vec<i64> = shape
        .dim
        .iter()
        .filter_map(|dim| match dim.value {
            Some(Value::DimValue(size)) => Some(size),
            _ => None,
        })
        .collect();
    match elements(fixed.iter().copied()) {
        Some(count) if count <= limits.max_elements => Ok(()),
        _ => Err(LimitError::TensorTooLarge {
            tensor: name.to_owned(),
            elements: describe(&fixed),
            limit: limits.max_elements,
        }),
    }
}

fn describe(dims: &[i64]) -> String {
    let shape: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("[{}]", shape.join(" x "))
}

/// Refuses a graph output that nothing in its graph produces (tract would index its
/// table of values by the missing name, and panic).
fn check_outputs_defined(graph: &GraphProto) -> Result<(), LimitError> {
    let defined: HashSet<&str> = graph
        .input
        .iter()
        .map(|value| value.name.as_str())
        .chain(graph.initializer.iter().map(|tensor| tensor.name.as_str()))
        .chain(
            graph
                .node
                .iter()
                .flat_map(|node| node.output.iter().map(String::as_str)),
        )
        .collect();
    match graph
        .output
        .iter()
        .find(|output| !defined.contains(output.name.as_str()))
    {
        Some(output) => Err(LimitError::UndefinedOutput {
            output: output.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Refuses a graph whose nodes feed each other round a loop (Kahn's algorithm).
fn check_acyclic(graph: &GraphProto) -> Result<(), LimitError> {
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(index, node)| node.output.iter().map(move |out| (out.as_str(), index)))
        .collect();
    let mut waiting: Vec<usize> = vec![0; graph.node.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (index, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            if let Some(&from) = producer.get(input.as_str()) {
                waiting[index] += 1;
                consumers[from].push(index);
            }
        }
    }
    let mut ready: Vec<usize> = (0..graph.node.len()).filter(|&i| waiting[i] == 0).collect();
    let mut done = 0;
    while let Some(index) = ready.pop() {
        done += 1;
        for &next in &consumers[index] {
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.push(next);
            }
        }
    }
    if done < graph.node.len() {
        let stuck = waiting.iter().position(|w| *w > 0).unwrap_or(0);
        return Err(LimitError::Cycle {
            node: graph.node[stuck].name.clone(),
        });
    }
    Ok(())
}
