//! The tree engine: an ensemble compiled at load time into one flat array of nodes, and
//! evaluated on blocks of rows, tree by tree, all rows of a block in lockstep.
//!
//! Layout. Every node of every tree sits in one `Vec<Node>`, each tree's nodes contiguous
//! in depth-first order, a split's two children side by side so that one index names
//! both: the next position is `child + (comparison as u32)`, arithmetic rather than a
//! select between two loaded values. A node is 16 bytes for float models (threshold,
//! feature, child, leaf weight): a step reads one cache line, where separate arrays
//! would cost three. Leaves are nodes too, with a NaN threshold that no comparison
//! passes and themselves as child; when a leaf weighs several targets its weights sit
//! apart, contiguous, read once per row and tree. The comparison is chosen once per ensemble: when every split
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
            CompileError::TooLarge => write!(f, "the ensemble has more than 2^32 nodes or features"),
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

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Node<T> {
    /// A split's threshold; NaN for a leaf, so that every comparison with it is false.
    threshold: T,
    feature: u32,
    /// A split's false child; its true child is the next node. A leaf's is itself: its
    /// comparison is always false, so a walk that reached it stays there.
    child: u32,
    /// A leaf's weight when leaves carry one each (see `Leaves`).
    value: T,
}

impl<T: Number> Node<T> {
    fn leaf(index: u32) -> Self {
        Node {
            threshold: T::from_f64(f64::NAN),
            feature: 0,
            child: index,
            value: T::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Tree {
    root: u32,
    /// Steps from the root to the deepest leaf.
    depth: u32,
    /// The target every leaf of the tree weighs, when leaves carry their weight.
    target: u32,
}

/// Where leaf weights live.
#[derive(Debug, Clone, PartialEq)]
enum Leaves<T> {
    /// Each leaf has one weight, and all leaves of a tree weigh the same target (every
    /// regressor, binary classifier and gradient-boosted model): the weight sits in the
    /// leaf's threshold slot, read from the cache line the walk just loaded.
    InNode,
    /// Leaves weigh several targets (random forests over several classes): leaf `n`'s
    /// weights are `weights[first[n]..first[n + 1]]`.
    Apart {
        first: Vec<u32>,
        targets: Vec<u32>,
        weights: Vec<T>,
    },
}

/// A compiled ensemble.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Forest<T> {
    nodes: Vec<Node<T>>,
    trees: Vec<Tree>,
    leaves: Leaves<T>,
    /// The one mode every split uses, if they share one.
    uniform_mode: Option<Mode>,
    /// What the fast walk does not read: each node's mode (when the ensemble mixes
    /// them), where its missing values go, and the values of `Member` splits.
    careful: Careful<T>,
    pub(crate) n_targets: usize,
    pub(crate) aggregate: Aggregate,
    /// The largest feature index a split reads: the bound the walk's unchecked loads rely
    /// on, so private to this file and set only by `compile`, which checks every split.
    max_feature: usize,
}

/// Per-node facts only the careful walk reads, kept out of the nodes so the fast walk's
/// nodes are 16 bytes of what every step needs.
#[derive(Debug, Clone, PartialEq, Default)]
struct Careful<T> {
    modes: Vec<Mode>,
    missing_true: Vec<bool>,
    /// Whether any split sends a missing value to its true child.
    any_missing_true: bool,
    members: HashMap<u32, Vec<T>>,
}

/// Raw per-row scores: `values[row * n_targets + target]`, and whether any tree
/// contributed to that target.
pub(crate) struct Scores<T> {
    pub(crate) values: Vec<T>,
    pub(crate) contributed: Vec<bool>,
}

impl Mode {
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

/// One tree's nodes as the compiler first places them, before leaf weights are laid out.
struct Placed {
    /// (leaf node index, its weights) in placement order.
    leaves: Vec<(u32, Vec<(usize, f64)>)>,
}

impl<T: Number> Forest<T> {
    /// The largest feature index a split reads; a row must have more features.
    pub(crate) fn max_feature(&self) -> usize {
        self.max_feature
    }

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
        let mut tree_ids: Vec<usize> = by_tree.keys().copied().collect();
        tree_ids.sort_unstable();
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
            trees: Vec::with_capacity(tree_ids.len()),
            leaves: Leaves::InNode,
            uniform_mode,
            careful: Careful {
                modes: Vec::with_capacity(spec.nodes.len()),
                missing_true: Vec::with_capacity(spec.nodes.len()),
                any_missing_true: false,
                members: HashMap::new(),
            },
            n_targets: spec.n_targets,
            aggregate: spec.aggregate,
            max_feature: 0,
        };
        let mut placed = Vec::with_capacity(tree_ids.len());
        for tree in tree_ids {
            placed.push(forest.add_tree(tree, &by_tree[&tree], &leaf_weights)?);
        }
        // Past the last tree, so that `child + 1` is a node for every node, leaves
        // included: the walk's unchecked loads then need no argument about comparisons.
        // Its own child is the first node; no walk reaches it.
        forest.nodes.push(Node::leaf(0));
        forest.careful.modes.push(Mode::Leq);
        forest.careful.missing_true.push(false);
        forest.lay_out_leaves(placed);
        forest.check_indices();
        Ok(forest)
    }

    /// The invariant the walk's unchecked loads rely on: every root is a node, so is
    /// `child + 1` for every node, and no split reads a feature beyond `max_feature`.
    fn check_indices(&self) {
        let len = self.nodes.len();
        assert!(self.trees.iter().all(|tree| (tree.root as usize) < len));
        assert!(
            self.nodes
                .iter()
                .all(|node| { (node.child as usize) + 1 < len && node.feature as usize <= self.max_feature })
        );
        assert_eq!(self.careful.modes.len(), len);
        assert_eq!(self.careful.missing_true.len(), len);
    }

    fn add_tree(
        &mut self,
        tree: usize,
        nodes: &HashMap<usize, &NodeSpec>,
        leaf_weights: &HashMap<(usize, usize), Vec<(usize, f64)>>,
    ) -> Result<Placed, CompileError> {
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
        let mut placed = Placed { leaves: Vec::new() };
        let root_index = self.reserve(1)?;
        // Depth-first, true child first; a split reserves its two children's slots side by
        // side, and each is filled in when popped.
        let mut index_of: HashMap<usize, u32> = HashMap::with_capacity(nodes.len());
        let mut stack = vec![(root, root_index, 0u32)];
        let mut depth = 0;
        while let Some((id, index, level)) = stack.pop() {
            if index_of.insert(id, index).is_some() {
                return Err(CompileError::NotATree { tree, id });
            }
            depth = depth.max(level);
            let node = nodes[&id];
            let at = index as usize;
            match &node.split {
                Some(split) => {
                    let feature = u32::try_from(split.feature).map_err(|_| CompileError::TooLarge)?;
                    self.max_feature = self.max_feature.max(split.feature);
                    self.careful.modes[at] = split.mode;
                    self.careful.missing_true[at] = split.missing_tracks_true;
                    self.careful.any_missing_true |= split.missing_tracks_true;
                    if split.mode == Mode::Member {
                        self.careful
                            .members
                            .insert(index, split.members.iter().map(|v| T::from_f64(*v)).collect());
                    }
                    let child = self.reserve(2)?;
                    self.nodes[at] = Node {
                        threshold: T::from_f64(node.value),
                        feature,
                        child,
                        value: T::default(),
                    };
                    stack.push((split.false_id, child, level + 1));
                    stack.push((split.true_id, child + 1, level + 1));
                }
                None => {
                    let weights = leaf_weights.get(&(tree, id)).map_or(&[][..], Vec::as_slice);
                    let weights = if self.n_targets == 1 {
                        // One target: a leaf counts once, with its first weight, or with
                        // its own value when no weight names it (as onnxruntime does).
                        vec![(0, weights.first().map_or(node.value, |&(_, weight)| weight))]
                    } else {
                        weights.to_vec()
                    };
                    placed.leaves.push((index, weights));
                }
            }
        }
        if index_of.len() != nodes.len() {
            // Nodes unreachable from the root: not what any exporter writes.
            let stray = nodes
                .keys()
                .find(|id| !index_of.contains_key(id))
                .copied()
                .unwrap_or(0);
            return Err(CompileError::NotATree { tree, id: stray });
        }
        self.trees.push(Tree {
            root: root_index,
            depth,
            target: 0,
        });
        Ok(placed)
    }

    /// Appends `count` leaves to be filled in; returns the first one's index.
    fn reserve(&mut self, count: u32) -> Result<u32, CompileError> {
        let first = u32::try_from(self.nodes.len()).map_err(|_| CompileError::TooLarge)?;
        for index in first..first.checked_add(count).ok_or(CompileError::TooLarge)? {
            self.nodes.push(Node::leaf(index));
            self.careful.modes.push(Mode::Leq);
            self.careful.missing_true.push(false);
        }
        Ok(first)
    }

    /// Puts leaf weights in the leaves themselves when every leaf has one and every tree
    /// weighs one target; otherwise in arrays beside the nodes.
    fn lay_out_leaves(&mut self, placed: Vec<Placed>) {
        let tree_target = |tree: &Placed| -> Option<usize> {
            let first = tree.leaves.first()?.1.first()?.0;
            tree.leaves
                .iter()
                .all(|(_, weights)| matches!(weights[..], [(target, _)] if target == first))
                .then_some(first)
        };
        let targets: Option<Vec<usize>> = placed.iter().map(tree_target).collect();
        if let Some(targets) = targets {
            for ((tree, target), placed) in self.trees.iter_mut().zip(targets).zip(&placed) {
                tree.target = target as u32;
                for (index, weights) in &placed.leaves {
                    self.nodes[*index as usize].value = T::from_f64(weights[0].1);
                }
            }
            return;
        }
        let mut by_node: HashMap<u32, &Vec<(usize, f64)>> = HashMap::new();
        for (index, weights) in placed.iter().flat_map(|tree| &tree.leaves) {
            by_node.insert(*index, weights);
        }
        let mut first = Vec::with_capacity(self.nodes.len() + 1);
        let (mut targets, mut weights) = (Vec::new(), Vec::new());
        for index in 0..self.nodes.len() as u32 {
            first.push(weights.len() as u32);
            for &(target, weight) in by_node.get(&index).into_iter().flat_map(|w| w.iter()) {
                targets.push(target as u32);
                weights.push(T::from_f64(weight));
            }
        }
        first.push(weights.len() as u32);
        self.leaves = Leaves::Apart {
            first,
            targets,
            weights,
        };
    }

    /// Scores `rows` rows of `width` features (row-major) into raw per-target sums (or
    /// minima, maxima), before base values and post-transforms.
    pub(crate) fn scores(&self, x: &[T], rows: usize, width: usize) -> Scores<T> {
        assert!(
            x.len() == rows * width && self.max_feature < width,
            "the caller checks the input's shape against the ensemble"
        );
        let mut scores = Scores {
            values: vec![T::default(); rows * self.n_targets],
            contributed: vec![false; rows * self.n_targets],
        };
        match self.uniform_mode {
            Some(Mode::Leq) => self.walk_all::<LEQ>(x, rows, width, &mut scores),
            Some(Mode::Lt) => self.walk_all::<LT>(x, rows, width, &mut scores),
            Some(Mode::Gte) => self.walk_all::<GTE>(x, rows, width, &mut scores),
            Some(Mode::Gt) => self.walk_all::<GT>(x, rows, width, &mut scores),
            _ => self.walk_all::<MIXED>(x, rows, width, &mut scores),
        }
        if self.aggregate_kind() == SUM && matches!(self.leaves, Leaves::InNode) {
            // Every tree scores its target for every row: mark each target the trees
            // score once per row, not once per tree and leaf.
            let mut scored = vec![false; self.n_targets];
            for tree in &self.trees {
                scored[tree.target as usize] = true;
            }
            for row in scores.contributed.chunks_exact_mut(self.n_targets) {
                for (contributed, scored) in row.iter_mut().zip(&scored) {
                    *contributed |= *scored;
                }
            }
        }
        scores
    }

    fn aggregate_kind(&self) -> u8 {
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => SUM,
            Aggregate::Min => MIN,
            Aggregate::Max => MAX,
        }
    }

    /// Tree by tree, so each tree's nodes stay in cache while every row walks it; within
    /// a tree, rows in blocks walked in lockstep. A block takes the fast walk (one
    /// comparison per step, fixed at compile time) unless the ensemble mixes modes or the
    /// block holds a missing value that some split treats specially.
    fn walk_all<const MODE: u8>(&self, x: &[T], rows: usize, width: usize, scores: &mut Scores<T>) {
        let careful = |values: &[T]| {
            MODE == MIXED || (self.careful.any_missing_true && values.iter().any(|v| v.is_nan()))
        };
        // Each full block transposed, feature by feature: a step then reads
        // `block[feature * BLOCK + row]`, one addressing mode with no per-row offset.
        let full = rows / BLOCK;
        let mut blocks: Vec<(usize, bool)> = Vec::with_capacity(full);
        let mut transposed = vec![T::default(); full * BLOCK * width];
        for (block, out) in transposed.chunks_exact_mut(BLOCK * width).enumerate() {
            let rows = &x[block * BLOCK * width..(block + 1) * BLOCK * width];
            for (row, values) in rows.chunks_exact(width).enumerate() {
                for (feature, value) in values.iter().enumerate() {
                    out[feature * BLOCK + row] = *value;
                }
            }
            blocks.push((block * BLOCK, careful(rows)));
        }
        let singles: Vec<(usize, bool)> = (full * BLOCK..rows)
            .map(|row| (row, careful(&x[row * width..(row + 1) * width])))
            .collect();
        for tree in &self.trees {
            for (&(start, careful), block) in blocks.iter().zip(transposed.chunks_exact(BLOCK * width)) {
                let leaves = if careful {
                    self.walk::<BLOCK, MIXED>(tree, block)
                } else {
                    self.walk::<BLOCK, MODE>(tree, block)
                };
                self.accumulate_any(tree, start, &leaves, scores);
            }
            for &(row, careful) in &singles {
                let one = &x[row * width..(row + 1) * width];
                let leaves = if careful {
                    self.walk::<1, MIXED>(tree, one)
                } else {
                    self.walk::<1, MODE>(tree, one)
                };
                self.accumulate_any(tree, row, &leaves, scores);
            }
        }
    }

    /// Walks `B` rows down `tree` together; `x` holds their features transposed
    /// (`x[feature * B + row]`). Returns the leaf each row reached.
    #[inline(always)]
    fn walk<const B: usize, const MODE: u8>(&self, tree: &Tree, x: &[T]) -> [u32; B] {
        let nodes = self.nodes.as_slice();
        assert!(
            x.len() >= B * (self.max_feature + 1),
            "a block holds every feature a split reads"
        );
        let mut at = [tree.root; B];
        for _ in 0..tree.depth {
            for (row, position) in at.iter_mut().enumerate() {
                // The walk's two loads are unchecked: bounds checks cost 40% of the time
                // here. SAFETY: a position is a root or some node's `child + 0 or 1`,
                // and `check_indices` proves all of those inside `nodes` before a Forest
                // exists; every
                // feature is at most `max_feature`, and the assertion above holds the
                // block to at least `max_feature + 1` features of `B` rows.
                #[allow(unsafe_code)]
                let node = unsafe { nodes.get_unchecked(*position as usize) };
                #[allow(unsafe_code)]
                let value = unsafe { *x.get_unchecked(node.feature as usize * B + row) };
                let go_true = match MODE {
                    LEQ => value <= node.threshold,
                    LT => value < node.threshold,
                    GTE => value >= node.threshold,
                    GT => value > node.threshold,
                    _ => self.careful_step(*position, node, value),
                };
                *position = node.child + u32::from(go_true);
            }
        }
        at
    }

    /// A step that reads the node's own mode and missing-value direction.
    #[inline(always)]
    fn careful_step(&self, index: u32, node: &Node<T>, value: T) -> bool {
        let careful = &self.careful;
        let mode = careful.modes[index as usize];
        let compared = if mode == Mode::Member {
            careful
                .members
                .get(&index)
                .is_some_and(|set| set.contains(&value))
        } else {
            mode.compare(value, node.threshold)
        };
        compared || (value.is_nan() && careful.missing_true[index as usize])
    }

    #[inline(always)]
    fn accumulate_any(&self, tree: &Tree, first_row: usize, leaves: &[u32], scores: &mut Scores<T>) {
        match (self.aggregate_kind(), &self.leaves) {
            (SUM, Leaves::InNode) => self.accumulate::<SUM, true>(tree, first_row, leaves, scores),
            (SUM, _) => self.accumulate::<SUM, false>(tree, first_row, leaves, scores),
            (MIN, Leaves::InNode) => self.accumulate::<MIN, true>(tree, first_row, leaves, scores),
            (MIN, _) => self.accumulate::<MIN, false>(tree, first_row, leaves, scores),
            (_, Leaves::InNode) => self.accumulate::<MAX, true>(tree, first_row, leaves, scores),
            (_, _) => self.accumulate::<MAX, false>(tree, first_row, leaves, scores),
        }
    }

    /// Adds each row's leaf weights into its scores. Sums with weights in the leaves
    /// (the common case) only add: which targets were scored is marked once at the end.
    #[inline(always)]
    fn accumulate<const AGG: u8, const IN_NODE: bool>(
        &self,
        tree: &Tree,
        first_row: usize,
        leaves: &[u32],
        scores: &mut Scores<T>,
    ) {
        let add = |scores: &mut Scores<T>, slot: usize, weight: T| {
            let value = &mut scores.values[slot];
            match AGG {
                SUM => *value = value.add(weight),
                _ => {
                    let contributed = &mut scores.contributed[slot];
                    let replace = !*contributed
                        || if AGG == MIN {
                            weight < *value
                        } else {
                            weight > *value
                        };
                    if replace {
                        *value = weight;
                    }
                    *contributed = true;
                }
            }
        };
        for (row, &leaf) in leaves.iter().enumerate() {
            let base = (first_row + row) * self.n_targets;
            match &self.leaves {
                Leaves::InNode if IN_NODE => add(
                    scores,
                    base + tree.target as usize,
                    self.nodes[leaf as usize].value,
                ),
                Leaves::InNode => unreachable!("dispatched on the layout"),
                Leaves::Apart {
                    first,
                    targets,
                    weights,
                } => {
                    let range = first[leaf as usize] as usize..first[leaf as usize + 1] as usize;
                    for (target, weight) in targets[range.clone()].iter().zip(&weights[range]) {
                        add(scores, base + *target as usize, *weight);
                        if AGG == SUM {
                            scores.contributed[base + *target as usize] = true;
                        }
                    }
                }
            }
        }
    }
}

/// Rows walked together: enough independent loads in flight to hide a cache miss, few
/// enough that their positions stay in registers.
const BLOCK: usize = 16;

// The fast walk's comparison, fixed at compile time; MIXED reads each node's own.
const LEQ: u8 = 0;
const LT: u8 = 1;
const GTE: u8 = 2;
const GT: u8 = 3;
const MIXED: u8 = 4;

// How scores combine, fixed at compile time.
const SUM: u8 = 0;
const MIN: u8 = 1;
const MAX: u8 = 2;

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
