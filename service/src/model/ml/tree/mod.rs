//! `TreeEnsembleRegressor`, `TreeEnsembleClassifier` (ai.onnx.ml opsets 1 to 3) and
//! `TreeEnsemble` (opset 5): attributes parsed into a [`forest::Spec`], compiled for the
//! input's type when tract wires the graph, evaluated by [`forest::Forest`].

mod forest;
pub(crate) mod output;

use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::{AttrError, Attrs};
use crate::model::ml::kernel::{self, Kernel};
use crate::model::ml::post_transform::PostTransform;
use forest::{Aggregate, Forest, LeafSpec, Mode, NodeSpec, Spec, Split};
pub(crate) use output::{Classes, Finish, OutputType};

/// A parsed ensemble and what turns its raw scores into the operator's outputs.
#[derive(Debug, Clone)]
pub(crate) struct TreeKernel {
    name: &'static str,
    /// The ensemble as parsed, kept only until the input's type is known: the typed graph
    /// needs only the compiled walk, and the parsed nodes take several times its memory
    /// (about 5 MiB of a 100-tree forest's 7), for as long as a model is served.
    spec: Option<Arc<Spec>>,
    n_targets: usize,
    finish: Arc<Finish>,
    /// Compiled for float inputs at parse time (which checks the trees), and again for
    /// double inputs when a graph feeds it doubles.
    compiled: Compiled,
}

#[derive(Debug, Clone)]
enum Compiled {
    F32(Arc<Forest<f32>>),
    F64(Arc<Forest<f64>>),
}

impl PartialEq for TreeKernel {
    fn eq(&self, other: &Self) -> bool {
        // Parsed once per node and never changed: the same node is the same allocation.
        let same_forest = match (&self.compiled, &other.compiled) {
            (Compiled::F32(a), Compiled::F32(b)) => Arc::ptr_eq(a, b),
            (Compiled::F64(a), Compiled::F64(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_forest && Arc::ptr_eq(&self.finish, &other.finish)
    }
}

impl TreeKernel {
    fn new(name: &'static str, spec: Spec, finish: Finish) -> TractResult<Self> {
        let forest = Forest::<f32>::compile(&spec)?;
        Ok(TreeKernel {
            name,
            n_targets: spec.n_targets,
            spec: Some(Arc::new(spec)),
            finish: Arc::new(finish),
            compiled: Compiled::F32(Arc::new(forest)),
        })
    }

    fn max_feature(&self) -> usize {
        match &self.compiled {
            Compiled::F32(forest) => forest.max_feature(),
            Compiled::F64(forest) => forest.max_feature(),
        }
    }
}

pub(crate) fn parse_regressor(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let n_targets = attrs.int("n_targets").unwrap_or(1).max(0) as usize;
    let aggregate = match attrs.string("aggregate_function")?.unwrap_or("SUM") {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => {
            return Err(attrs
                .error("aggregate_function", format!("unknown aggregate {other:?}"))
                .into());
        }
    };
    let spec = classic_spec(&attrs, "target", n_targets, aggregate)?;
    let finish = Finish::Regression {
        base_values: attrs.numbers("base_values")?,
        post_transform: PostTransform::parse(&attrs)?,
        n_trees: count_trees(&spec),
        output_type: OutputType::Float,
    };
    kernel::op(TreeKernel::new("TreeEnsembleRegressor", spec, finish)?)
}

pub(crate) fn parse_classifier(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let classes = Classes::parse(&attrs)?;
    let spec = classic_spec(&attrs, "class", classes.len(), Aggregate::Sum)?;
    let finish = Finish::classification(
        classes,
        &spec,
        attrs.numbers("base_values")?,
        PostTransform::parse(&attrs)?,
    );
    kernel::op(TreeKernel::new("TreeEnsembleClassifier", spec, finish)?)
}

fn count_trees(spec: &Spec) -> usize {
    let mut trees: Vec<usize> = spec.nodes.iter().map(|n| n.tree).collect();
    trees.sort_unstable();
    trees.dedup();
    trees.len()
}

/// The node and leaf attributes of opsets 1 to 3; `prefix` is "target" or "class".
fn classic_spec(
    attrs: &Attrs<'_>,
    prefix: &str,
    n_targets: usize,
    aggregate: Aggregate,
) -> Result<Spec, AttrError> {
    let trees = attrs.indices("nodes_treeids")?;
    let n = trees.len();
    if n == 0 {
        return Err(attrs.error("nodes_treeids", "no nodes"));
    }
    let ids = attrs.indices("nodes_nodeids")?;
    let features = attrs.indices("nodes_featureids")?;
    let modes = attrs.strings("nodes_modes")?;
    let values = attrs.numbers("nodes_values")?;
    let trues = attrs.indices("nodes_truenodeids")?;
    let falses = attrs.indices("nodes_falsenodeids")?;
    let missing = attrs.ints("nodes_missing_value_tracks_true");
    attrs.expect_len("nodes_nodeids", &ids, n)?;
    attrs.expect_len("nodes_featureids", &features, n)?;
    attrs.expect_len("nodes_modes", &modes, n)?;
    attrs.expect_len("nodes_values", &values, n)?;
    attrs.expect_len("nodes_truenodeids", &trues, n)?;
    attrs.expect_len("nodes_falsenodeids", &falses, n)?;
    if !missing.is_empty() {
        attrs.expect_len("nodes_missing_value_tracks_true", missing, n)?;
    }
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mode = match modes[i] {
            "LEAF" => None,
            "BRANCH_LEQ" => Some(Mode::Leq),
            "BRANCH_LT" => Some(Mode::Lt),
            "BRANCH_GTE" => Some(Mode::Gte),
            "BRANCH_GT" => Some(Mode::Gt),
            "BRANCH_EQ" => Some(Mode::Eq),
            "BRANCH_NEQ" => Some(Mode::Neq),
            other => return Err(attrs.error("nodes_modes", format!("unknown mode {other:?}"))),
        };
        nodes.push(NodeSpec {
            tree: trees[i],
            id: ids[i],
            value: values[i],
            split: mode.map(|mode| Split {
                feature: features[i],
                mode,
                members: Vec::new(),
                true_id: trues[i],
                false_id: falses[i],
                missing_tracks_true: missing.get(i).is_some_and(|&m| m != 0),
            }),
        });
    }
    let leaf = |name: &str| format!("{prefix}_{name}");
    let leaf_trees = attrs.indices(&leaf("treeids"))?;
    let leaf_nodes = attrs.indices(&leaf("nodeids"))?;
    let leaf_targets = attrs.indices(&leaf("ids"))?;
    let weights = attrs.numbers(&leaf("weights"))?;
    let m = leaf_trees.len();
    attrs.expect_len(&leaf("nodeids"), &leaf_nodes, m)?;
    attrs.expect_len(&leaf("ids"), &leaf_targets, m)?;
    attrs.expect_len(&leaf("weights"), &weights, m)?;
    let leaves = (0..m)
        .map(|i| LeafSpec {
            tree: leaf_trees[i],
            node: leaf_nodes[i],
            target: leaf_targets[i],
            weight: weights[i],
        })
        .collect();
    Ok(Spec {
        nodes,
        leaves,
        n_targets,
        aggregate,
    })
}

/// ai.onnx.ml opset 5's `TreeEnsemble`: nodes and leaves in separate lists, children
/// named by index with a flag saying which list, modes and values as tensors.
pub(crate) fn parse_ensemble(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let tensor = |name: &str| -> Result<Vec<f64>, AttrError> {
        attrs
            .tensor_numbers(name)?
            .ok_or_else(|| attrs.error(name, "missing"))
    };
    let features = attrs.indices("nodes_featureids")?;
    let n = features.len();
    let splits = tensor("nodes_splits")?;
    let modes = tensor("nodes_modes")?;
    let trues = attrs.indices("nodes_truenodeids")?;
    let falses = attrs.indices("nodes_falsenodeids")?;
    let true_leafs = attrs.ints("nodes_trueleafs");
    let false_leafs = attrs.ints("nodes_falseleafs");
    let missing = attrs.ints("nodes_missing_value_tracks_true");
    for (name, len) in [
        ("nodes_splits", splits.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
        ("nodes_trueleafs", true_leafs.len()),
        ("nodes_falseleafs", false_leafs.len()),
    ] {
        if len != n {
            return Err(attrs.error(name, format!("{len} entries, expected {n}")).into());
        }
    }
    let leaf_targets = attrs.indices("leaf_targetids")?;
    let leaf_weights = tensor("leaf_weights")?;
    attrs.expect_len("leaf_weights", &leaf_weights, leaf_targets.len())?;
    let members = attrs.tensor_numbers("membership_values")?.unwrap_or_default();
    // NaN separates one BRANCH_MEMBER node's set from the next, in node order.
    let mut member_sets = members.split(|v| v.is_nan());
    let mut splits_by_node = Vec::with_capacity(n);
    for &mode in &modes {
        let mode = match mode as i64 {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            5 => Mode::Neq,
            6 => Mode::Member,
            other => return Err(attrs.error("nodes_modes", format!("unknown mode {other}")).into()),
        };
        let members = if mode == Mode::Member {
            member_sets
                .next()
                .ok_or_else(|| attrs.error("membership_values", "fewer sets than BRANCH_MEMBER nodes"))?
                .to_vec()
        } else {
            Vec::new()
        };
        splits_by_node.push((mode, members));
    }
    // Walk each tree from its root, giving every node reached a fresh id. A leaf may be
    // named by several nodes (each gets its own copy); an internal node may not.
    let mut nodes = Vec::new();
    let mut leaves = Vec::new();
    let mut placed = vec![false; n];
    for (tree, &root) in attrs.indices("tree_roots")?.iter().enumerate() {
        if root >= n {
            return Err(attrs
                .error("tree_roots", format!("node {root} does not exist"))
                .into());
        }
        // A tree that is one leaf is written as a root whose two branches name that leaf.
        if true_leafs[root] != 0 && false_leafs[root] != 0 && trues[root] == falses[root] {
            let (target, weight) = leaf_at(&attrs, &leaf_targets, &leaf_weights, trues[root])?;
            let id = nodes.len();
            nodes.push(NodeSpec {
                tree,
                id,
                value: weight,
                split: None,
            });
            leaves.push(LeafSpec {
                tree,
                node: id,
                target,
                weight,
            });
            continue;
        }
        // (node index, id given to it) for nodes whose children still need ids.
        let mut stack = vec![(root, nodes.len())];
        nodes.push(NodeSpec {
            tree,
            id: nodes.len(),
            value: 0.0,
            split: None,
        });
        while let Some((index, id)) = stack.pop() {
            if std::mem::replace(&mut placed[index], true) {
                return Err(attrs
                    .error(
                        "tree_roots",
                        format!("node {index} is reached twice: not a forest"),
                    )
                    .into());
            }
            let mut child = |target: usize, is_leaf: i64| -> TractResult<usize> {
                let child_id = nodes.len();
                if is_leaf != 0 {
                    let (leaf_target, weight) = leaf_at(&attrs, &leaf_targets, &leaf_weights, target)?;
                    nodes.push(NodeSpec {
                        tree,
                        id: child_id,
                        value: weight,
                        split: None,
                    });
                    leaves.push(LeafSpec {
                        tree,
                        node: child_id,
                        target: leaf_target,
                        weight,
                    });
                } else {
                    if target >= n {
                        return Err(attrs
                            .error("nodes_truenodeids", format!("node {target} does not exist"))
                            .into());
                    }
                    nodes.push(NodeSpec {
                        tree,
                        id: child_id,
                        value: 0.0,
                        split: None,
                    });
                    stack.push((target, child_id));
                }
                Ok(child_id)
            };
            let true_id = child(trues[index], true_leafs[index])?;
            let false_id = child(falses[index], false_leafs[index])?;
            let (mode, members) = splits_by_node[index].clone();
            nodes[id].value = splits[index];
            nodes[id].split = Some(Split {
                feature: features[index],
                mode,
                members,
                true_id,
                false_id,
                missing_tracks_true: missing.get(index).is_some_and(|&m| m != 0),
            });
        }
    }
    let n_trees = attrs.indices("tree_roots")?.len();
    let aggregate = match attrs.int("aggregate_function").unwrap_or(1) {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => {
            return Err(attrs
                .error("aggregate_function", format!("unknown aggregate {other}"))
                .into());
        }
    };
    let n_targets = attrs.int("n_targets").unwrap_or(1).max(0) as usize;
    let post_transform = PostTransform::from_ort_code(&attrs, attrs.int("post_transform").unwrap_or(0))?;
    let spec = Spec {
        nodes,
        leaves,
        n_targets,
        aggregate,
    };
    let finish = Finish::Regression {
        base_values: Vec::new(),
        post_transform,
        n_trees,
        output_type: OutputType::Input,
    };
    kernel::op(TreeKernel::new("TreeEnsemble", spec, finish)?)
}

impl Kernel for TreeKernel {
    fn name(&self) -> &'static str {
        self.name
    }

    fn output_count(&self) -> usize {
        self.finish.output_count()
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (datum_type, shape) = inputs[0];
        if let Some(width) = shape.last().and_then(|d| d.to_i64().ok())
            && self.max_feature() >= width as usize
        {
            bail!(
                "{}: a split reads feature {}, but rows have {width}",
                self.name,
                self.max_feature()
            );
        }
        ensure!(
            matches!(datum_type, DatumType::F32 | DatumType::F64),
            "{}: only float and double inputs are served, not {datum_type:?}",
            self.name
        );
        Ok(self
            .finish
            .output_facts(datum_type, kernel::batch_dim(shape), self.n_targets))
    }

    fn specialize(&self, input_types: &[DatumType], _symbols: &SymbolScope) -> TractResult<Self> {
        let mut kernel = self.clone();
        if input_types.first() == Some(&DatumType::F64) && !matches!(kernel.compiled, Compiled::F64(_)) {
            let Some(spec) = &self.spec else {
                bail!("{}: specialised for float inputs already", self.name);
            };
            kernel.compiled = Compiled::F64(Arc::new(Forest::<f64>::compile(spec)?));
        }
        kernel.spec = None;
        Ok(kernel)
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let (rows, width) = kernel::batch_shape(input)?;
        ensure!(
            self.max_feature() < width,
            "{}: rows have {width} features",
            self.name
        );
        match &self.compiled {
            Compiled::F64(forest) => {
                let cast = input.cast_to::<f64>()?;
                let x = cast.try_as_plain_ram()?.as_slice::<f64>()?;
                let scores = forest.scores(x, rows, width);
                self.finish.outputs(&scores, rows, forest.aggregate)
            }
            Compiled::F32(forest) => {
                let cast = input.cast_to::<f32>()?;
                let x = cast.try_as_plain_ram()?.as_slice::<f32>()?;
                let scores = forest.scores(x, rows, width);
                self.finish.outputs(&scores, rows, forest.aggregate)
            }
        }
    }
}

/// Leaf `index` of an opset-5 ensemble: its target and weight.
fn leaf_at(
    attrs: &Attrs<'_>,
    targets: &[usize],
    weights: &[f64],
    index: usize,
) -> Result<(usize, f64), AttrError> {
    match (targets.get(index), weights.get(index)) {
        (Some(&target), Some(&weight)) => Ok((target, weight)),
        _ => Err(attrs.error("leaf_targetids", format!("leaf {index} does not exist"))),
    }
}
