//! The tree engine: an ensemble compiled at load time into one flat array of nodes, and
//! evaluated on blocks of rows, tree by tree, all rows of a block in lockstep.
//!
//! Layout. Every node of every tree sits in one `Vec<Node>`, each tree's nodes contiguous
//! in depth-first order, children named by index. A node is 16 bytes for float models
//! (threshold, feature, two children) because each step of a walk reads all four fields:
//! one cache line serves them, where separate arrays would cost four. Leaves are nodes
//! too, whose children are themselves; their weights sit apart, contiguous, and are read
//! once per row and tree. The comparison is chosen once per ensemble: when every split
//! uses one branch mode (scikit-learn writes `BRANCH_LEQ` everywhere, XGBoost and
//! LightGBM `BRANCH_LT`), the walk is compiled for that mode alone.
//!
//! Evaluation. Because a leaf loops back to itself, walking a tree is exactly `depth`
//! steps for every row, with no test for "reached a leaf": the walk of a block of rows is
//! a fixed loop of independent loads that the processor overlaps, instead of one
//! dependent chain of cache misses per row. Scores accumulate per row and target in the
//! threshold's type, tree by tree, as onnxruntime accumulates them.

use std::collections::HashMap;
use std::fmt;

/// How a split compares a feature with its threshold; true sends a row to the true child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    /// The feature is one of a set of values (ai.onnx.ml opset 5's `BRANCH_MEMBER`).
    Member,
}

/// How the trees' contributions to a target combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// The ensemble as its attributes describe it, before compiling.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) leaves: Vec<LeafSpec>,
    pub(crate) n_targets: usize,
    pub(crate) aggregate: Aggregate,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeSpec {
    pub(crate) tree: usize,
    pub(crate) id: usize,
    /// A split's threshold; for a leaf, the value it contributes to a single-target
    /// ensemble when no weight names it (onnxruntime reads `nodes_values` there too).
    pub(crate) value: f64,
    /// `None` for a leaf.
    pub(crate) split: Option<Split>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Split {
    pub(crate) feature: usize,
    pub(crate) mode: Mode,
    /// The values of a `Member` split.
    pub(crate) members: Vec<f64>,
    pub(crate) true_id: usize,
    pub(crate) false_id: usize,
    pub(crate) missing_tracks_true: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeafSpec {
    pub(crate) tree: usize,
    pub(crate) node: usize,
    pub(crate) target: usize,
    pub(crate) weight: f64,
}

/// Why an ensemble cannot be compiled: a malformed or hostile file.
#[derive(Debug, PartialEq)]
pub(crate) enum CompileError {
    NoTrees,
    DuplicateNode {
        tree: usize,
        id: usize,
    },
    MissingChild {
        tree: usize,
        id: usize,
        child: usize,
    },
    RootCount {
        tree: usize,
        roots: usize,
    },
    /// A node reached twice: the "tree" has a cycle or shares a subtree.
    NotATree {
        tree: usize,
        id: usize,
    },
    LeafWithoutNode {
        tree: usize,
        node: usize,
    },
    TargetOutOfRange {
        target: usize,
        n_targets: usize,
    },
    TooLarge,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::NoTrees => write!(f, "the ensemble has no trees"),
            CompileError::DuplicateNode { tree, id } => write!(f, "tree {tree} declares node {id} twice"),
            CompileError::MissingChild { tree, id, child } => {
                write!(
                    f,
                    "tree {tree}: node {id} points to node {child}, which does not exist"
                )
            }
            CompileError::RootCount { tree, roots } => {
                write!(
                    f,
                    "tree {tree} has {roots} roots (nodes no other node points to), expected 1"
                )
            }
            CompileError::NotATree { tree, id } => {
                write!(
                    f,
                    "tree {tree}: node {id} is reached twice, so this is not a tree"
                )
            }
            CompileError::LeafWithoutNode { tree, node } => {
                write!(
                    f,
                    "a weight names node {node} of tree {tree}, which is not a leaf of it"
                )
            }
            CompileError::TargetOutOfRange { target, n_targets } => {
                write!(
                    f,
                    "a leaf weight is for target {target}, but there are {n_targets}"
                )
            }
            CompileError::TooLarge => write!(f, "the ensemble has more than 2^32 nodes or 2^24 features"),
        }
    }
}

impl std::error::Error for CompileError {}

/// A threshold (and score) type: f32 for float models, f64 for double ones.
pub(crate) trait Number:
    Copy + PartialOrd + PartialEq + Default + fmt::Debug + Send + Sync + 'static
{
    const IS_DOUBLE: bool;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn is_nan(self) -> bool;
    fn add(self, other: Self) -> Self;
}

impl Number for f32 {
    const IS_DOUBLE: bool = false;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
}

impl Number for f64 {
    const IS_DOUBLE: bool = true;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
}

// A node's `feature` word: the feature index, the split's mode when the ensemble mixes
// them, and whether a missing value (NaN) goes to the true child.
const FEATURE_MASK: u32 = (1 << 24) - 1;
const MODE_SHIFT: u32 = 24;
const MISSING_TRUE: u32 = 1 << 31;

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Node<T> {
    threshold: T,
    feature: u32,
    /// `[false child, true child]`; a leaf's are itself.
    children: [u32; 2],
}

/// A compiled ensemble.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Forest<T> {
    nodes: Vec<Node<T>>,
    roots: Vec<u32>,
    /// Steps from each tree's root to its deepest leaf.
    depths: Vec<u32>,
    /// Leaf `n`'s weights are `weights[leaf_first[n]..leaf_first[n + 1]]`.
    leaf_first: Vec<u32>,
    weight_targets: Vec<u32>,
    weights: Vec<T>,
    /// The values of each `Member` split, by node.
    members: HashMap<u32, Vec<T>>,
    /// The one mode every split uses, if they share one.
    uniform_mode: Option<Mode>,
    pub(crate) n_targets: usize,
    pub(crate) aggregate: Aggregate,
    /// The largest feature index a split reads.
    pub(crate) max_feature: usize,
}

/// Raw per-row scores: `values[row * n_targets + target]`, and for `Min`/`Max` whether
/// any tree contributed to that target.
pub(crate) struct Scores<T> {
    pub(crate) values: Vec<T>,
    pub(crate) contributed: Vec<bool>,
}

impl Mode {
    const ALL: [Mode; 7] = [
        Mode::Leq,
        Mode::Lt,
        Mode::Gte,
        Mode::Gt,
        Mode::Eq,
        Mode::Neq,
        Mode::Member,
    ];

    fn code(self) -> u32 {
        Mode::ALL.iter().position(|m| *m == self).unwrap_or(0) as u32
    }

    fn from_code(code: u32) -> Mode {
        Mode::ALL[code as usize % Mode::ALL.len()]
    }

    #[inline(always)]
    fn compare<T: Number>(self, value: T, threshold: T) -> bool {
        match self {
            Mode::Leq => value <= threshold,
            Mode::Lt => value < threshold,
            Mode::Gte => value >= threshold,
            Mode::Gt => value > threshold,
            Mode::Eq => value == threshold,
            Mode::Neq => value != threshold,
            // Decided from the member set by the caller.
            Mode::Member => false,
        }
    }
}

impl<T: Number> Forest<T> {
    /// Compiles `spec`; rejects anything that is not a set of finite trees.
    pub(crate) fn compile(spec: &Spec) -> Result<Self, CompileError> {
        let mut by_tree: HashMap<usize, HashMap<usize, &NodeSpec>> = HashMap::new();
        for node in &spec.nodes {
            if by_tree
                .entry(node.tree)
                .or_default()
                .insert(node.id, node)
                .is_some()
            {
                return Err(CompileError::DuplicateNode {
                    tree: node.tree,
                    id: node.id,
                });
            }
        }
        if by_tree.is_empty() {
            return Err(CompileError::NoTrees);
        }
        let mut leaf_weights: HashMap<(usize, usize), Vec<(usize, f64)>> = HashMap::new();
        for leaf in &spec.leaves {
            if leaf.target >= spec.n_targets {
                return Err(CompileError::TargetOutOfRange {
                    target: leaf.target,
                    n_targets: spec.n_targets,
                });
            }
            let is_leaf = by_tree
                .get(&leaf.tree)
                .and_then(|nodes| nodes.get(&leaf.node))
                .is_some_and(|node| node.split.is_none());
            if !is_leaf {
                return Err(CompileError::LeafWithoutNode {
                    tree: leaf.tree,
                    node: leaf.node,
                });
            }
            leaf_weights
                .entry((leaf.tree, leaf.node))
                .or_default()
                .push((leaf.target, leaf.weight));
        }
        let mut trees: Vec<usize> = by_tree.keys().copied().collect();
        trees.sort_unstable();
        let modes: Vec<Mode> = spec
            .nodes
            .iter()
            .filter_map(|n| n.split.as_ref().map(|s| s.mode))
            .collect();
        let uniform_mode = match modes.first() {
            Some(first) if modes.iter().all(|m| m == first) && *first != Mode::Member => Some(*first),
            Some(_) => None,
            None => Some(Mode::Leq),
        };
        let mut forest = Forest {
            nodes: Vec::with_capacity(spec.nodes.len()),
            roots: Vec::with_capacity(trees.len()),
            depths: Vec::with_capacity(trees.len()),
            leaf_first: Vec::with_capacity(spec.nodes.len() + 1),
            weight_targets: Vec::with_capacity(spec.leaves.len()),
            weights: Vec::with_capacity(spec.leaves.len()),
            members: HashMap::new(),
            uniform_mode,
            n_targets: spec.n_targets,
            aggregate: spec.aggregate,
            max_feature: 0,
        };
        for tree in trees {
            forest.add_tree(tree, &by_tree[&tree], &leaf_weights)?;
        }
        forest.leaf_first.push(forest.weights.len() as u32);
        Ok(forest)
    }

    fn add_tree(
        &mut self,
        tree: usize,
        nodes: &HashMap<usize, &NodeSpec>,
        leaf_weights: &HashMap<(usize, usize), Vec<(usize, f64)>>,
    ) -> Result<(), CompileError> {
        // The root is the one node no split points to.
        let mut pointed = std::collections::HashSet::new();
        for node in nodes.values() {
            if let Some(split) = &node.split {
                for child in [split.true_id, split.false_id] {
                    if !nodes.contains_key(&child) {
                        return Err(CompileError::MissingChild {
                            tree,
                            id: node.id,
                            child,
                        });
                    }
                    pointed.insert(child);
                }
            }
        }
        let roots: Vec<usize> = nodes.keys().filter(|id| !pointed.contains(id)).copied().collect();
        let [root] = roots[..] else {
            return Err(CompileError::RootCount {
                tree,
                roots: roots.len(),
            });
        };
        self.roots
            .push(u32::try_from(self.nodes.len()).map_err(|_| CompileError::TooLarge)?);
        // Depth-first, true child first; each node's children are patched in once placed.
        let mut index_of: HashMap<usize, u32> = HashMap::with_capacity(nodes.len());
        let mut stack = vec![(root, 0u32, None::<(usize, usize)>)];
        let mut depth = 0;
        while let Some((id, level, parent)) = stack.pop() {
            let index = u32::try_from(self.nodes.len()).map_err(|_| CompileError::TooLarge)?;
            if index_of.insert(id, index).is_some() {
                return Err(CompileError::NotATree { tree, id });
            }
            if let Some((parent, side)) = parent {
                self.nodes[parent].children[side] = index;
            }
            depth = depth.max(level);
            let node = nodes[&id];
            match &node.split {
                Some(split) => {
                    if split.feature > FEATURE_MASK as usize {
                        return Err(CompileError::TooLarge);
                    }
                    self.max_feature = self.max_feature.max(split.feature);
                    let mut feature = split.feature as u32 & FEATURE_MASK;
                    feature |= split.mode.code() << MODE_SHIFT;
                    if split.missing_tracks_true {
                        feature |= MISSING_TRUE;
                    }
                    if split.mode == Mode::Member {
                        self.members
                            .insert(index, split.members.iter().map(|v| T::from_f64(*v)).collect());
                    }
                    self.nodes.push(Node {
                        threshold: T::from_f64(node.value),
                        feature,
                        children: [index, index],
                    });
                    self.leaf_first.push(self.weights.len() as u32);
                    let at = index as usize;
                    stack.push((split.false_id, level + 1, Some((at, 0))));
                    stack.push((split.true_id, level + 1, Some((at, 1))));
                }
                None => {
                    self.nodes.push(Node {
                        threshold: T::default(),
                        feature: 0,
                        children: [index, index],
                    });
                    self.leaf_first.push(self.weights.len() as u32);
                    let weights = leaf_weights.get(&(tree, id)).map_or(&[][..], Vec::as_slice);
                    if self.n_targets == 1 {
                        // One target: a leaf counts once, with its first weight, or with
                        // its own value when no weight names it (as onnxruntime does).
                        let weight = weights.first().map_or(node.value, |&(_, weight)| weight);
                        self.weight_targets.push(0);
                        self.weights.push(T::from_f64(weight));
                    } else {
                        for &(target, weight) in weights {
                            self.weight_targets.push(target as u32);
                            self.weights.push(T::from_f64(weight));
                        }
                    }
                }
            }
        }
        if index_of.len() != nodes.len() {
            // Nodes unreachable from the root: harmless, but not what any exporter writes.
            let stray = nodes
                .keys()
                .find(|id| !index_of.contains_key(id))
                .copied()
                .unwrap_or(0);
            return Err(CompileError::NotATree { tree, id: stray });
        }
        self.depths.push(depth);
        Ok(())
    }

    /// Scores `rows` rows of `width` features (row-major) into raw per-target sums (or
    /// minima, maxima), before base values and post-transforms.
    pub(crate) fn scores(&self, x: &[T], rows: usize, width: usize) -> Scores<T> {
        let mut scores = Scores {
            values: vec![T::default(); rows * self.n_targets],
            contributed: vec![false; rows * self.n_targets],
        };
        match self.uniform_mode {
            Some(Mode::Leq) => self.walk_all(x, rows, width, &mut scores, Uniform::<{ LEQ }>),
            Some(Mode::Lt) => self.walk_all(x, rows, width, &mut scores, Uniform::<{ LT }>),
            Some(Mode::Gte) => self.walk_all(x, rows, width, &mut scores, Uniform::<{ GTE }>),
            Some(Mode::Gt) => self.walk_all(x, rows, width, &mut scores, Uniform::<{ GT }>),
            _ => self.walk_all(x, rows, width, &mut scores, Mixed(self)),
        }
        scores
    }

    fn walk_all<S: Step<T>>(&self, x: &[T], rows: usize, width: usize, scores: &mut Scores<T>, step: S) {
        let mut start = 0;
        while start < rows {
            let count = BLOCK.min(rows - start);
            self.walk_block(
                &x[start * width..(start + count) * width],
                count,
                width,
                start,
                scores,
                &step,
            );
            start += count;
        }
    }

    #[inline(always)]
    fn walk_block<S: Step<T>>(
        &self,
        x: &[T],
        count: usize,
        width: usize,
        first_row: usize,
        scores: &mut Scores<T>,
        step: &S,
    ) {
        let nodes = self.nodes.as_slice();
        let mut at = [0u32; BLOCK];
        for (tree, &root) in self.roots.iter().enumerate() {
            at[..count].fill(root);
            for _ in 0..self.depths[tree] {
                for (row, position) in at[..count].iter_mut().enumerate() {
                    let node = &nodes[*position as usize];
                    let value = x[row * width + (node.feature & FEATURE_MASK) as usize];
                    let go_true = step.go_true(*position, node, value);
                    *position = node.children[go_true as usize];
                }
            }
            for (row, &leaf) in at[..count].iter().enumerate() {
                let leaf = leaf as usize;
                let range = self.leaf_first[leaf] as usize..self.leaf_first[leaf + 1] as usize;
                let base = (first_row + row) * self.n_targets;
                for (target, weight) in self.weight_targets[range.clone()]
                    .iter()
                    .zip(&self.weights[range])
                {
                    let slot = base + *target as usize;
                    let (value, contributed) = (&mut scores.values[slot], &mut scores.contributed[slot]);
                    *value = match self.aggregate {
                        Aggregate::Sum | Aggregate::Average => value.add(*weight),
                        Aggregate::Min if !*contributed || *weight < *value => *weight,
                        Aggregate::Max if !*contributed || *weight > *value => *weight,
                        Aggregate::Min | Aggregate::Max => *value,
                    };
                    *contributed = true;
                }
            }
        }
    }
}

/// Rows walked together: enough independent loads in flight to hide a cache miss, few
/// enough that their positions stay in registers.
const BLOCK: usize = 16;

const LEQ: u8 = 0;
const LT: u8 = 1;
const GTE: u8 = 2;
const GT: u8 = 3;

/// One step of a walk: whether a row goes to the true child.
trait Step<T> {
    fn go_true(&self, index: u32, node: &Node<T>, value: T) -> bool;
}

/// Every split compares the same way, fixed at compile time.
struct Uniform<const MODE: u8>;

impl<T: Number, const MODE: u8> Step<T> for Uniform<MODE> {
    #[inline(always)]
    fn go_true(&self, _: u32, node: &Node<T>, value: T) -> bool {
        let compared = match MODE {
            LEQ => value <= node.threshold,
            LT => value < node.threshold,
            GTE => value >= node.threshold,
            _ => value > node.threshold,
        };
        compared | (value.is_nan() & (node.feature & MISSING_TRUE != 0))
    }
}

/// Splits of several modes: each node's mode is read from its feature word.
struct Mixed<'a, T>(&'a Forest<T>);

impl<T: Number> Step<T> for Mixed<'_, T> {
    #[inline(always)]
    fn go_true(&self, index: u32, node: &Node<T>, value: T) -> bool {
        let mode = Mode::from_code((node.feature >> MODE_SHIFT) & 0x7f);
        let compared = if mode == Mode::Member {
            self.0.members.get(&index).is_some_and(|set| set.contains(&value))
        } else {
            mode.compare(value, node.threshold)
        };
        compared | (value.is_nan() & (node.feature & MISSING_TRUE != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(tree: usize, id: usize, feature: usize, threshold: f64, t: usize, f: usize) -> NodeSpec {
        NodeSpec {
            tree,
            id,
            value: threshold,
            split: Some(Split {
                feature,
                mode: Mode::Leq,
                members: vec![],
                true_id: t,
                false_id: f,
                missing_tracks_true: false,
            }),
        }
    }

    fn leaf(tree: usize, id: usize) -> NodeSpec {
        NodeSpec {
            tree,
            id,
            value: 0.0,
            split: None,
        }
    }

    fn weight(tree: usize, node: usize, weight: f64) -> LeafSpec {
        LeafSpec {
            tree,
            node,
            target: 0,
            weight,
        }
    }

    /// Two trees: x0 <= 0.5 ? 1 : (x1 <= 2 ? 10 : 100); and a lone leaf worth 1000.
    fn spec() -> Spec {
        Spec {
            nodes: vec![
                split(0, 0, 0, 0.5, 1, 2),
                leaf(0, 1),
                split(0, 2, 1, 2.0, 3, 4),
                leaf(0, 3),
                leaf(0, 4),
                leaf(1, 0),
            ],
            leaves: vec![
                weight(0, 1, 1.0),
                weight(0, 3, 10.0),
                weight(0, 4, 100.0),
                weight(1, 0, 1000.0),
            ],
            n_targets: 1,
            aggregate: Aggregate::Sum,
        }
    }

    #[test]
    fn walks_every_row_to_its_leaf_in_lockstep() {
        let forest = Forest::<f32>::compile(&spec()).unwrap();
        // 40 rows: more than one block, and rows of every path in each block.
        let rows: Vec<[f32; 2]> = (0..40)
            .map(|i| [[0.5, 0.6, 0.6][i % 3], [0.0, 2.0, 2.5][i % 3]])
            .collect();
        let x: Vec<f32> = rows.iter().flatten().copied().collect();
        let scores = forest.scores(&x, rows.len(), 2);
        let expected: Vec<f32> = (0..40).map(|i| [1001.0, 1010.0, 1100.0][i % 3]).collect();
        assert_eq!(scores.values, expected);
    }

    #[test]
    fn missing_values_follow_the_flag() {
        let mut spec = spec();
        let forest = Forest::<f32>::compile(&spec).unwrap();
        assert_eq!(forest.scores(&[f32::NAN, 0.0], 1, 2).values, [1010.0]);
        if let Some(split) = &mut spec.nodes[0].split {
            split.missing_tracks_true = true;
        }
        let forest = Forest::<f32>::compile(&spec).unwrap();
        assert_eq!(forest.scores(&[f32::NAN, 0.0], 1, 2).values, [1001.0]);
    }

    #[test]
    fn mixed_modes_and_members() {
        let mut spec = spec();
        if let Some(split) = &mut spec.nodes[2].split {
            split.mode = Mode::Member;
            split.members = vec![7.0, 9.0];
        }
        let forest = Forest::<f64>::compile(&spec).unwrap();
        assert_eq!(forest.uniform_mode, None);
        assert_eq!(
            forest.scores(&[1.0, 9.0, 1.0, 8.0], 2, 2).values,
            [1010.0, 1100.0]
        );
    }

    #[test]
    fn malformed_trees_are_refused() {
        let mut cyclic = spec();
        cyclic.nodes[2] = split(0, 2, 1, 2.0, 0, 4);
        assert!(matches!(
            Forest::<f32>::compile(&cyclic),
            Err(CompileError::RootCount { .. } | CompileError::NotATree { .. })
        ));
        let mut shared = spec();
        shared.nodes[2] = split(0, 2, 1, 2.0, 1, 4);
        shared.nodes.remove(3);
        shared.leaves.remove(1);
        assert!(matches!(
            Forest::<f32>::compile(&shared),
            Err(CompileError::NotATree { .. })
        ));
        let mut dangling = spec();
        dangling.nodes[2] = split(0, 2, 1, 2.0, 3, 9);
        assert!(matches!(
            Forest::<f32>::compile(&dangling),
            Err(CompileError::MissingChild { child: 9, .. })
        ));
        let mut wrong_target = spec();
        wrong_target.leaves[0].target = 3;
        assert!(matches!(
            Forest::<f32>::compile(&wrong_target),
            Err(CompileError::TargetOutOfRange { target: 3, .. })
        ));
    }
}
