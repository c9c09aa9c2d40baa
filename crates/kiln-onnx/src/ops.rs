//! The ONNX-ML operators that kiln-onnx adds to (or fixes in) tract-onnx's registry, and its
//! tree-ensemble evaluator.
//!
//! * `TreeEnsembleRegressor` (missing in tract-onnx 0.23): parsed here into tract's own
//!   tree-ensemble data ([`TreeEnsembleData`], the layout tract-onnx builds for classifiers)
//!   and scored by [`Forest`], base values included.
//! * `Scaler` (missing): `(x - offset) * scale`, wired as two broadcast tract operators.
//! * `TreeEnsembleClassifier` (present): a thin wrapper around tract's own parser that first
//!   checks the trees (tract walks them with unchecked indexing, so a malformed file must not
//!   reach it), rewrites `BRANCH_GTE` nodes (which tract 0.23 reads as leaves), and pads the
//!   single `base_values` entry that skl2onnx writes for binary gradient boosting (tract
//!   expects one per class). After typing, [`use_kiln_forests`] swaps tract-onnx-opl's
//!   tree-ensemble operator for [`Forest`] on the same data (see [`Forest`] for why).

use std::collections::HashMap;
use std::sync::OnceLock;

use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::{AttributeProto, NodeProto};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx_opl::ml::tree::{Aggregate, Cmp, TreeEnsemble, TreeEnsembleData};
use tract_onnx_opl::ml::tree_ensemble_classifier::TreeEnsembleClassifier as TractTreeEnsemble;

/// The signature of an operator constructor in tract-onnx's registry.
type OpBuilder =
    fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract-onnx's own `TreeEnsembleClassifier` constructor, called after our checks.
static TRACT_TREE_CLASSIFIER: OnceLock<Option<OpBuilder>> = OnceLock::new();

/// tract-onnx's registry plus kiln-onnx's operators.
pub(crate) fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    let original = onnx.op_register.0.get("TreeEnsembleClassifier").copied();
    TRACT_TREE_CLASSIFIER.get_or_init(|| original);
    onnx.op_register
        .insert("TreeEnsembleClassifier", tree_classifier);
    onnx.op_register
        .insert("TreeEnsembleRegressor", tree_regressor);
    onnx.op_register.insert("Scaler", scaler);
    onnx
}

// ---------------------------------------------------------------------------------------------
// Scaler

/// `Scaler` from ai.onnx.ml: `y = (x - offset) * scale`, offset and scale of length 1 or F.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Scaler {
    offset: Arc<Tensor>,
    scale: Arc<Tensor>,
}

fn scaler(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let offset: Vec<f32> = node
        .get_attr_opt_vec("offset")?
        .unwrap_or_else(|| vec![0.0]);
    let scale: Vec<f32> = node.get_attr_opt_vec("scale")?.unwrap_or_else(|| vec![1.0]);
    node.expect_attr("offset", !offset.is_empty(), "at least one value")?;
    node.expect_attr("scale", !scale.is_empty(), "at least one value")?;
    Ok((
        expand(Scaler {
            offset: rctensor1(&offset),
            scale: rctensor1(&scale),
        }),
        vec![],
    ))
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        ensure!(
            fact.rank() == 2,
            "Scaler expects a [N, F] input, got rank {}",
            fact.rank()
        );
        if let Ok(features) = fact.shape[1].to_usize() {
            for (name, t) in [("offset", &self.offset), ("scale", &self.scale)] {
                ensure!(
                    t.len() == 1 || t.len() == features,
                    "Scaler `{name}` has {} values for {features} input features",
                    t.len()
                );
            }
        }
        let mut x = inputs[0];
        if fact.datum_type != f32::datum_type() {
            x = model.wire_node(
                format!("{prefix}.to_f32"),
                tract_core::ops::cast::cast(f32::datum_type()),
                &[x],
            )?[0];
        }
        let row = |t: &Arc<Tensor>| -> TractResult<Arc<Tensor>> {
            Ok(t.clone()
                .into_tensor()
                .into_shape(&[1, t.len()])?
                .into_arc_tensor())
        };
        let offset = model.add_const(format!("{prefix}.offset"), row(&self.offset)?)?;
        let scale = model.add_const(format!("{prefix}.scale"), row(&self.scale)?)?;
        let centered = wire_with_rank_broadcast(
            format!("{prefix}.sub"),
            model,
            tract_core::ops::math::sub(),
            &[x, offset],
        )?[0];
        wire_with_rank_broadcast(
            format!("{prefix}.mul"),
            model,
            tract_core::ops::math::mul(),
            &[centered, scale],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tree ensembles: reading and checking the node/leaf attributes

/// The attributes of a tree-ensemble node, checked: every tree's node ids are `0..k`, every
/// branch points inside its tree, no node is reached twice from the root, every leaf weight
/// belongs to a leaf and an output in range. `BRANCH_GTE` is rewritten as `BRANCH_LT` with the
/// children (and the missing-value direction) swapped.
struct Trees {
    tree_ids: Vec<usize>,
    feature_ids: Vec<usize>,
    true_ids: Vec<usize>,
    false_ids: Vec<usize>,
    values: Vec<f32>,
    /// `None` for a leaf.
    modes: Vec<Option<Cmp>>,
    nan_is_true: Vec<bool>,
    leaf_tree_ids: Vec<usize>,
    leaf_node_ids: Vec<usize>,
    leaf_out_ids: Vec<usize>,
    leaf_weights: Vec<f32>,
    n_trees: usize,
    /// For each tree, the attribute index of each node id (`nodes_by_tree[t][id]`).
    nodes_by_tree: Vec<Vec<usize>>,
}

fn ids_attr(node: &NodeProto, name: &str, n: usize) -> TractResult<Vec<usize>> {
    let Some(values) = node.get_attr_opt_slice::<i64>(name)? else {
        bail!("missing attribute `{name}`");
    };
    ensure!(
        values.len() == n,
        "attribute `{name}` has {} values, expected {n}",
        values.len()
    );
    values
        .iter()
        .map(|&v| {
            ensure!(
                (0..=i64::from(u32::MAX)).contains(&v),
                "attribute `{name}` has an out-of-range id {v}"
            );
            Ok(v as usize)
        })
        .collect()
}

fn floats_attr(node: &NodeProto, name: &str, n: usize) -> TractResult<Vec<f32>> {
    let Some(values) = node.get_attr_opt_slice::<f32>(name)? else {
        if node
            .attribute
            .iter()
            .any(|a| a.name == format!("{name}_as_tensor"))
        {
            bail!(
                "`{name}_as_tensor` (double-precision trees) is not supported; \
                 export the model with a float32 input (FloatTensorType)"
            );
        }
        bail!("missing attribute `{name}`");
    };
    ensure!(
        values.len() == n,
        "attribute `{name}` has {} values, expected {n}",
        values.len()
    );
    Ok(values.to_vec())
}

impl Trees {
    fn read(node: &NodeProto, leaf_prefix: &str, n_outputs: usize) -> TractResult<Trees> {
        let modes: TVec<&str> = node.get_attr_opt_tvec("nodes_modes")?.unwrap_or_default();
        let n = modes.len();
        ensure!(
            n > 0,
            "the ensemble has no nodes (`nodes_modes` is missing or empty)"
        );
        let tree_ids = ids_attr(node, "nodes_treeids", n)?;
        let node_ids = ids_attr(node, "nodes_nodeids", n)?;
        let feature_ids = ids_attr(node, "nodes_featureids", n)?;
        let mut true_ids = ids_attr(node, "nodes_truenodeids", n)?;
        let mut false_ids = ids_attr(node, "nodes_falsenodeids", n)?;
        let values = floats_attr(node, "nodes_values", n)?;
        let mut nan_is_true =
            match node.get_attr_opt_slice::<i64>("nodes_missing_value_tracks_true")? {
                Some(v) => {
                    ensure!(
                        v.len() == n,
                        "attribute `nodes_missing_value_tracks_true` has {} values, expected {n}",
                        v.len()
                    );
                    v.iter().map(|&b| b != 0).collect()
                }
                None => vec![false; n],
            };
        let mut parsed_modes = Vec::with_capacity(n);
        for (i, mode) in modes.iter().enumerate() {
            parsed_modes.push(match *mode {
                "LEAF" => None,
                "BRANCH_LEQ" => Some(Cmp::LessEqual),
                "BRANCH_LT" => Some(Cmp::Less),
                "BRANCH_GT" => Some(Cmp::Greater),
                "BRANCH_EQ" => Some(Cmp::Equal),
                "BRANCH_NEQ" => Some(Cmp::NotEqual),
                "BRANCH_GTE" => {
                    // x >= v  <=>  !(x < v): same test with the branches swapped.
                    std::mem::swap(&mut true_ids[i], &mut false_ids[i]);
                    nan_is_true[i] = !nan_is_true[i];
                    Some(Cmp::Less)
                }
                other => bail!("unsupported node mode `{other}` in `nodes_modes`"),
            });
        }

        let n_leaves = node
            .get_attr_opt_slice::<i64>(&format!("{leaf_prefix}_ids"))?
            .map(<[i64]>::len)
            .unwrap_or(0);
        ensure!(
            n_leaves > 0,
            "the ensemble has no leaf weights (`{leaf_prefix}_ids`)"
        );
        let leaf_tree_ids = ids_attr(node, &format!("{leaf_prefix}_treeids"), n_leaves)?;
        let leaf_node_ids = ids_attr(node, &format!("{leaf_prefix}_nodeids"), n_leaves)?;
        let leaf_out_ids = ids_attr(node, &format!("{leaf_prefix}_ids"), n_leaves)?;
        let leaf_weights = floats_attr(node, &format!("{leaf_prefix}_weights"), n_leaves)?;

        // Trees are numbered 0..T and each one's nodes 0..k.
        let n_trees = tree_ids.iter().max().map_or(0, |m| m + 1);
        let mut nodes_by_tree: Vec<Vec<Option<usize>>> = vec![vec![]; n_trees];
        for i in 0..n {
            let slots = &mut nodes_by_tree[tree_ids[i]];
            if slots.len() <= node_ids[i] {
                ensure!(
                    node_ids[i] < n,
                    "tree {} has node id {} but the ensemble has only {n} nodes",
                    tree_ids[i],
                    node_ids[i]
                );
                slots.resize(node_ids[i] + 1, None);
            }
            ensure!(
                slots[node_ids[i]].replace(i).is_none(),
                "tree {} has node id {} twice",
                tree_ids[i],
                node_ids[i]
            );
        }
        let mut by_tree = Vec::with_capacity(n_trees);
        for (t, slots) in nodes_by_tree.into_iter().enumerate() {
            ensure!(
                !slots.is_empty(),
                "tree ids are not contiguous: tree {t} has no nodes"
            );
            let slots: Option<Vec<usize>> = slots.into_iter().collect();
            let Some(slots) = slots else {
                bail!("the node ids of tree {t} are not contiguous from 0");
            };
            by_tree.push(slots);
        }
        // Every branch points inside its tree, and the nodes form a tree from node 0.
        for (t, slots) in by_tree.iter().enumerate() {
            let mut seen = vec![false; slots.len()];
            let mut stack = vec![0usize];
            while let Some(id) = stack.pop() {
                ensure!(
                    !seen[id],
                    "tree {t} is not a tree: node {id} is reached twice"
                );
                seen[id] = true;
                let i = slots[id];
                if parsed_modes[i].is_some() {
                    for child in [true_ids[i], false_ids[i]] {
                        ensure!(
                            child < slots.len(),
                            "node {id} of tree {t} points to node {child}, which does not exist"
                        );
                        stack.push(child);
                    }
                }
            }
        }
        for j in 0..n_leaves {
            let (t, id, out) = (leaf_tree_ids[j], leaf_node_ids[j], leaf_out_ids[j]);
            let slot = by_tree.get(t).and_then(|s| s.get(id)).copied();
            let Some(i) = slot else {
                bail!("leaf weight {j} refers to node {id} of tree {t}, which does not exist");
            };
            ensure!(
                parsed_modes[i].is_none(),
                "leaf weight {j} refers to node {id} of tree {t}, which is not a leaf"
            );
            ensure!(
                out < n_outputs,
                "leaf weight {j} is for output {out} but the model has {n_outputs} outputs"
            );
        }
        Ok(Trees {
            tree_ids,
            feature_ids,
            true_ids,
            false_ids,
            values,
            modes: parsed_modes,
            nan_is_true,
            leaf_tree_ids,
            leaf_node_ids,
            leaf_out_ids,
            leaf_weights,
            n_trees,
            nodes_by_tree: by_tree,
        })
    }

    /// Lays the trees out as tract's [`TreeEnsembleData`] (see its field docs), the layout
    /// tract-onnx builds for `TreeEnsembleClassifier`.
    fn ensemble(&self, n_outputs: usize, aggregate: Aggregate) -> TractResult<TreeEnsemble> {
        let mut leaves_of: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
        for j in 0..self.leaf_tree_ids.len() {
            leaves_of
                .entry((self.leaf_tree_ids[j], self.leaf_node_ids[j]))
                .or_default()
                .push(j);
        }
        let mut trees: Vec<u32> = Vec::with_capacity(self.n_trees);
        let mut nodes: Vec<u32> = Vec::with_capacity(self.tree_ids.len() * 5);
        let mut leaves: Vec<u32> = Vec::with_capacity(self.leaf_tree_ids.len() * 2);
        let mut max_feature = 0;
        for (t, slots) in self.nodes_by_tree.iter().enumerate() {
            let root = u32::try_from(nodes.len() / 5)?;
            trees.push(root);
            for (id, &i) in slots.iter().enumerate() {
                let row = match self.modes[i] {
                    Some(cmp) => {
                        max_feature = max_feature.max(self.feature_ids[i]);
                        [
                            u32::try_from(self.feature_ids[i])?,
                            root + u32::try_from(self.true_ids[i])?,
                            root + u32::try_from(self.false_ids[i])?,
                            self.values[i].to_bits(),
                            (0x0100u32 * u32::from(self.nan_is_true[i])) | cmp as u32,
                        ]
                    }
                    None => {
                        let start = u32::try_from(leaves.len() / 2)?;
                        for &j in leaves_of.get(&(t, id)).map(Vec::as_slice).unwrap_or(&[]) {
                            leaves.push(u32::try_from(self.leaf_out_ids[j])?);
                            leaves.push(self.leaf_weights[j].to_bits());
                        }
                        [start, u32::try_from(leaves.len() / 2)?, 0, 0, 0]
                    }
                };
                nodes.extend(row);
            }
        }
        let n_rows = nodes.len() / 5;
        let n_leaf_rows = leaves.len() / 2;
        let data = TreeEnsembleData {
            trees: rctensor1(&trees),
            nodes: tensor1(&nodes).into_shape(&[n_rows, 5])?.into_arc_tensor(),
            leaves: tensor1(&leaves)
                .into_shape(&[n_leaf_rows, 2])?
                .into_arc_tensor(),
        };
        TreeEnsemble::build(data, max_feature, n_outputs, aggregate)
    }

    /// Writes the (possibly rewritten) branch attributes back into `node`.
    fn write_back(&self, node: &mut NodeProto) {
        let modes = self
            .modes
            .iter()
            .map(|m| {
                match m {
                    None => "LEAF",
                    Some(Cmp::LessEqual) => "BRANCH_LEQ",
                    Some(Cmp::Less) => "BRANCH_LT",
                    Some(Cmp::Greater) => "BRANCH_GT",
                    Some(Cmp::GreaterEqual) => "BRANCH_GTE",
                    Some(Cmp::Equal) => "BRANCH_EQ",
                    Some(Cmp::NotEqual) => "BRANCH_NEQ",
                }
                .as_bytes()
                .to_vec()
            })
            .collect();
        set_attr(node, "nodes_modes", AttributeType::Strings, |a| {
            a.strings = modes
        });
        let ints = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        let (t, f) = (ints(&self.true_ids), ints(&self.false_ids));
        set_attr(node, "nodes_truenodeids", AttributeType::Ints, |a| {
            a.ints = t
        });
        set_attr(node, "nodes_falsenodeids", AttributeType::Ints, |a| {
            a.ints = f
        });
        let nan = self.nan_is_true.iter().map(|&b| i64::from(b)).collect();
        set_attr(
            node,
            "nodes_missing_value_tracks_true",
            AttributeType::Ints,
            |a| a.ints = nan,
        );
    }
}

fn set_attr(
    node: &mut NodeProto,
    name: &str,
    ty: AttributeType,
    f: impl FnOnce(&mut AttributeProto),
) {
    let ix = match node.attribute.iter().position(|a| a.name == name) {
        Some(ix) => ix,
        None => {
            node.attribute.push(AttributeProto {
                name: name.to_string(),
                r#type: ty as i32,
                ..Default::default()
            });
            node.attribute.len() - 1
        }
    };
    f(&mut node.attribute[ix]);
}

// ---------------------------------------------------------------------------------------------
// TreeEnsembleClassifier: checks and fixes, then tract-onnx's own parser

fn tree_classifier(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let Some(Some(original)) = TRACT_TREE_CLASSIFIER.get().copied() else {
        bail!("tract-onnx has no TreeEnsembleClassifier");
    };
    let labels = match (
        node.get_attr_opt_slice::<i64>("classlabels_int64s")?,
        node.get_attr_opt_slice::<Vec<u8>>("classlabels_strings")?,
    ) {
        (Some(ints), None) => ints.len(),
        (None, Some(strings)) => strings.len(),
        _ => bail!("exactly one of `classlabels_int64s` and `classlabels_strings` must be set"),
    };
    ensure!(labels > 0, "the classifier has no class labels");
    let trees = Trees::read(node, "class", labels)?;
    let mut node = node.clone();
    trees.write_back(&mut node);

    // skl2onnx writes one base value for a binary GradientBoostingClassifier, whose leaves all
    // vote for class 0; tract builds scores for both classes and wants one base value per
    // class. In that "binary layout" tract keeps only the column-0 score (then p1 = that
    // score, after the transform, and p0 = 1 - p1), so the single value belongs to column 0.
    let binary_layout = labels < 3 && trees.leaf_out_ids.iter().all(|&c| c == 0);
    let single_base = match node.get_attr_opt_slice::<f32>("base_values")? {
        Some([b]) if binary_layout && labels == 2 => Some(*b),
        _ => None,
    };
    if let Some(b) = single_base {
        set_attr(&mut node, "base_values", AttributeType::Floats, |a| {
            a.floats = vec![b, 0.0]
        });
    }
    original(ctx, &node)
}

// ---------------------------------------------------------------------------------------------
// TreeEnsembleRegressor

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct TreeEnsembleRegressor {
    forest: Forest,
}

fn tree_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let n_targets: usize = node.get_attr_opt("n_targets")?.unwrap_or(1);
    ensure!(n_targets > 0, "`n_targets` must be positive");
    let post_transform: &str = node.get_attr_opt("post_transform")?.unwrap_or("NONE");
    ensure!(
        post_transform == "NONE",
        "post_transform `{post_transform}` is not supported for TreeEnsembleRegressor (only NONE)"
    );
    let aggregate = match node
        .get_attr_opt::<&str>("aggregate_function")?
        .unwrap_or("SUM")
    {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Avg,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => bail!("unsupported aggregate_function `{other}`"),
    };
    if node
        .attribute
        .iter()
        .any(|a| a.name == "base_values_as_tensor")
    {
        bail!(
            "`base_values_as_tensor` (double-precision trees) is not supported; \
             export the model with a float32 input (FloatTensorType)"
        );
    }
    let base_values = node.get_attr_opt_slice::<f32>("base_values")?;
    if let Some(b) = base_values {
        ensure!(
            b.len() == n_targets,
            "`base_values` has {} values for {n_targets} targets",
            b.len()
        );
    }
    let trees = Trees::read(node, "target", n_targets)?;
    let ensemble = trees.ensemble(n_targets, aggregate)?;
    let forest = Forest::from_ensemble(&ensemble, base_values)?;
    Ok((expand(TreeEnsembleRegressor { forest }), vec![]))
}

impl Expansion for TreeEnsembleRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.forest.n_outputs.to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(format!("{prefix}.forest"), self.forest.clone(), inputs)
    }
}

// ---------------------------------------------------------------------------------------------
// The evaluator

/// Replaces tract-onnx-opl's tree-ensemble operator (wired by tract's `TreeEnsembleClassifier`)
/// with [`Forest`], on the same trees.
pub(crate) fn use_kiln_forests(model: &mut TypedModel) -> TractResult<()> {
    for node in model.nodes_mut() {
        if let Some(op) = node.op_as::<TractTreeEnsemble>() {
            let forest = Forest::from_ensemble(&op.ensemble, None)?;
            node.op = Box::new(forest);
        }
    }
    Ok(())
}

/// The comparison of a branch node (`Leaf` for leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Test {
    Leaf,
    Leq,
    Lt,
    Gt,
    Gte,
    Eq,
    Neq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlatNode {
    test: Test,
    /// Missing values (NaN) take the `yes` branch.
    nan_yes: bool,
    feature: u32,
    /// The threshold's f32 bits (kept as bits so the operator can be `Eq`/`Hash`).
    value: u32,
    /// Branch: the node when the test holds. Leaf: the first of its weights in `leaves`.
    yes: u32,
    /// Branch: the node otherwise. Leaf: the end of its weights in `leaves`.
    no: u32,
}

/// kiln-onnx's tree-ensemble operator: tract's tree data (as built by tract-onnx's parser, or
/// by [`Trees::ensemble`]), flattened and checked, scored row by row with the votes summed in
/// f64.
///
/// Why not tract-onnx-opl's own evaluator: it sums the votes in f32, which on the bikeshare
/// 100-tree gradient boosting regressor drifts up to 4.6e-5 × max(1, |y|) from scikit-learn
/// (which sums in f64) where partial sums cancel; it looks up each leaf's weights by skipping
/// from the start of the leaf table (`outer_iter().skip(start)`), so scoring costs O(leaves)
/// per tree per row (about 1 ms per row on that model); and it walks the trees with unchecked
/// indexing. Here the structure is checked when the operator is built (every index in range,
/// every tree a tree, its depth known) and the walk indexes with bounds checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Forest {
    roots: Vec<u32>,
    nodes: Vec<FlatNode>,
    /// (output, weight f32 bits) for every leaf.
    leaves: Vec<(u32, u32)>,
    n_outputs: usize,
    /// Inputs need at least this many features (the largest feature index used + 1).
    min_features: usize,
    aggregate: Aggregate,
    /// One f32 per output (as bits), added after aggregation.
    base: Option<Vec<u32>>,
    /// The deepest path in any tree (the walk never takes more steps).
    max_depth: usize,
    /// When every branch is `x <= v` with missing values going `no`: per node
    /// `[feature, threshold bits, yes, no]`, leaves pointing to themselves.
    leq_steps: Option<Vec<[u32; 4]>>,
}

fn u32_slice(t: &Tensor) -> TractResult<&[u32]> {
    t.try_as_plain_ram()?.as_slice::<u32>()
}

impl Forest {
    fn from_ensemble(e: &TreeEnsemble, base: Option<&[f32]>) -> TractResult<Forest> {
        let roots = u32_slice(&e.data.trees)?.to_vec();
        let raw_nodes = u32_slice(&e.data.nodes)?;
        let raw_leaves = u32_slice(&e.data.leaves)?;
        ensure!(
            raw_nodes.len() % 5 == 0 && raw_leaves.len() % 2 == 0,
            "malformed tree data"
        );
        let n_outputs = e.n_classes();
        ensure!(n_outputs > 0, "the ensemble has no outputs");
        let leaves: Vec<(u32, u32)> = raw_leaves.chunks_exact(2).map(|l| (l[0], l[1])).collect();
        for &(output, _) in &leaves {
            ensure!(
                (output as usize) < n_outputs,
                "a leaf votes for output {output} of {n_outputs}"
            );
        }
        let n_rows = raw_nodes.len() / 5;
        let mut nodes = Vec::with_capacity(n_rows);
        let mut min_features = 1;
        for row in raw_nodes.chunks_exact(5) {
            let test = match row[4] & 0xFF {
                0 => Test::Leaf,
                1 => Test::Eq,
                2 => Test::Neq,
                3 => Test::Lt,
                4 => Test::Gt,
                5 => Test::Leq,
                6 => Test::Gte,
                other => bail!("unknown tree node comparison code {other}"),
            };
            if test == Test::Leaf {
                ensure!(
                    row[0] <= row[1] && (row[1] as usize) <= leaves.len(),
                    "a leaf's weights are out of range"
                );
            } else {
                ensure!(
                    (row[1] as usize) < n_rows && (row[2] as usize) < n_rows,
                    "a branch points outside the ensemble"
                );
                min_features = min_features.max(row[0] as usize + 1);
            }
            // tract's rows: branch [feature, true row, false row, threshold bits, flags],
            // leaf [first weight, end of weights, 0, 0, 0].
            let (feature, yes, no) = if test == Test::Leaf {
                (0, row[0], row[1])
            } else {
                (row[0], row[1], row[2])
            };
            nodes.push(FlatNode {
                test,
                nan_yes: row[4] & 0x0100 != 0,
                feature,
                value: row[3],
                yes,
                no,
            });
        }
        // Depth of every tree, refusing anything that is not a tree (a node reached twice
        // means a cycle or shared nodes; the walk below is bounded by the depth).
        let mut visits = 0usize;
        let mut max_depth = 0;
        let mut stack: Vec<(u32, usize)> = vec![];
        for &root in &roots {
            ensure!(
                (root as usize) < n_rows,
                "a tree's root is outside the ensemble"
            );
            stack.push((root, 0));
            while let Some((i, depth)) = stack.pop() {
                visits += 1;
                ensure!(
                    visits <= n_rows,
                    "the tree data is not a forest (a node is shared)"
                );
                max_depth = max_depth.max(depth);
                let node = nodes[i as usize];
                if node.test != Test::Leaf {
                    stack.push((node.yes, depth + 1));
                    stack.push((node.no, depth + 1));
                }
            }
        }
        let base = match base {
            Some(b) => {
                ensure!(
                    b.len() == n_outputs,
                    "{} base values for {n_outputs} outputs",
                    b.len()
                );
                Some(b.iter().map(|v| v.to_bits()).collect())
            }
            None => None,
        };
        let all_leq = nodes
            .iter()
            .all(|n| n.test == Test::Leaf || (n.test == Test::Leq && !n.nan_yes));
        let leq_steps = all_leq.then(|| {
            nodes
                .iter()
                .enumerate()
                .map(|(i, n)| match n.test {
                    Test::Leaf => [0, 0, i as u32, i as u32],
                    _ => [n.feature, n.value, n.yes, n.no],
                })
                .collect()
        });
        Ok(Forest {
            leq_steps,
            roots,
            nodes,
            leaves,
            n_outputs,
            min_features: min_features.max(e.max_used_feature + 1),
            aggregate: e.aggregate_fn,
            base,
            max_depth,
        })
    }

    /// The leaf that `row` reaches in the tree rooted at `root`.
    #[inline]
    fn leaf(&self, root: u32, row: &[f32]) -> TractResult<FlatNode> {
        let mut node = self.nodes[root as usize];
        for _ in 0..=self.max_depth {
            let value = f32::from_bits(node.value);
            let yes = match node.test {
                Test::Leaf => return Ok(node),
                _ if row[node.feature as usize].is_nan() => node.nan_yes,
                Test::Leq => row[node.feature as usize] <= value,
                Test::Lt => row[node.feature as usize] < value,
                Test::Gt => row[node.feature as usize] > value,
                Test::Gte => row[node.feature as usize] >= value,
                Test::Eq => row[node.feature as usize] == value,
                Test::Neq => row[node.feature as usize] != value,
            };
            node = self.nodes[if yes { node.yes } else { node.no } as usize];
        }
        bail!("tree walk did not reach a leaf")
    }

    /// Adds the votes of `leaf` to one row's accumulators.
    #[inline]
    fn vote(&self, leaf: FlatNode, acc: &mut [f64], hit: &mut [bool]) {
        for &(output, weight) in &self.leaves[leaf.yes as usize..leaf.no as usize] {
            let (o, w) = (output as usize, f64::from(f32::from_bits(weight)));
            acc[o] = match self.aggregate {
                Aggregate::Sum | Aggregate::Avg => acc[o] + w,
                Aggregate::Min if hit[o] => acc[o].min(w),
                Aggregate::Max if hit[o] => acc[o].max(w),
                Aggregate::Min | Aggregate::Max => w,
            };
            hit[o] = true;
        }
    }

    /// One row's outputs from its accumulators: average, base value, f32.
    #[inline]
    fn finish(&self, acc: &[f64], out: &mut [f32]) {
        for (o, (out, &v)) in out.iter_mut().zip(acc).enumerate() {
            let mut v = v;
            if self.aggregate == Aggregate::Avg && !self.roots.is_empty() {
                v /= self.roots.len() as f64;
            }
            if let Some(base) = &self.base {
                v += f64::from(f32::from_bits(base[o]));
            }
            *out = v as f32;
        }
    }

    fn score(&self, x: &[f32], features: usize, out: &mut [f32]) -> TractResult<()> {
        let k = self.n_outputs;
        if let Some(steps) = &self.leq_steps {
            return self.score_leq(steps, x, features, out);
        }
        let mut acc = vec![0f64; k];
        let mut hit = vec![false; k];
        for (row, out) in x.chunks_exact(features).zip(out.chunks_exact_mut(k)) {
            acc.fill(0.0);
            hit.fill(false);
            for &root in &self.roots {
                let leaf = self.leaf(root, row)?;
                self.vote(leaf, &mut acc, &mut hit);
            }
            self.finish(&acc, out);
        }
        Ok(())
    }

    /// The common case (every branch `x <= v`, missing values going to the `no` side, as
    /// scikit-learn trees are exported): walks [`BLOCK`] rows through each tree in lockstep,
    /// a fixed `max_depth` steps with leaves looping to themselves, so the rows' walks are
    /// independent and branch-free, and the CPU overlaps them.
    fn score_leq(
        &self,
        steps: &[[u32; 4]],
        x: &[f32],
        features: usize,
        out: &mut [f32],
    ) -> TractResult<()> {
        const BLOCK: usize = 16;
        let k = self.n_outputs;
        let mut acc = vec![0f64; k * BLOCK];
        let mut hit = vec![false; k * BLOCK];
        for (rows, out) in x.chunks(features * BLOCK).zip(out.chunks_mut(k * BLOCK)) {
            let b = rows.len() / features;
            acc.fill(0.0);
            hit.fill(false);
            for &root in &self.roots {
                let mut at = [root; BLOCK];
                for _ in 0..self.max_depth {
                    for (j, at) in at.iter_mut().take(b).enumerate() {
                        let [feature, value, yes, no] = steps[*at as usize];
                        let v = rows[j * features + feature as usize];
                        *at = if v <= f32::from_bits(value) { yes } else { no };
                    }
                }
                for (j, &at) in at.iter().take(b).enumerate() {
                    let leaf = self.nodes[at as usize];
                    ensure!(leaf.test == Test::Leaf, "tree walk did not reach a leaf");
                    self.vote(leaf, &mut acc[j * k..][..k], &mut hit[j * k..][..k]);
                }
            }
            for (j, out) in out.chunks_exact_mut(k).enumerate() {
                self.finish(&acc[j * k..][..k], out);
            }
        }
        Ok(())
    }
}

impl Op for Forest {
    fn name(&self) -> StaticName {
        "KilnTreeEnsemble".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Forest {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.cast_to::<f32>()?;
        let view = input.to_plain_array_view::<f32>()?;
        ensure!(
            view.ndim() == 2,
            "tree ensemble input must be [N, F], got {:?}",
            view.shape()
        );
        let (n, features) = (view.shape()[0], view.shape()[1]);
        ensure!(
            features >= self.min_features,
            "tree ensemble uses feature #{} but the input has {features} features",
            self.min_features - 1
        );
        let copy: Vec<f32>;
        let x = match view.as_slice() {
            Some(x) => x,
            None => {
                copy = view.iter().copied().collect();
                &copy
            }
        };
        let mut out = vec![0f32; n * self.n_outputs];
        self.score(x, features, &mut out)?;
        Ok(tvec!(
            Tensor::from_shape(&[n, self.n_outputs], &out)?.into_tvalue()
        ))
    }
}

impl TypedOp for Forest {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].rank() == 2, "tree ensemble input must be [N, F]");
        Ok(tvec!(f32::fact([
            inputs[0].shape[0].clone(),
            self.n_outputs.to_dim()
        ])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    fn floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Floats as i32,
            floats: v.to_vec(),
            ..Default::default()
        }
    }

    fn strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Strings as i32,
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    /// Two trees over two features:
    /// tree 0: node 0 `x0 >= 1` (NaN -> yes) ? leaf 1 (+10) : node 2 `x1 < 5` ? leaf 3 (+1) : leaf 4 (+2)
    /// tree 1: node 0 `x1 <= 0` ? leaf 1 (+100) : leaf 2 (+200)
    fn regressor(modes: &[&str]) -> NodeProto {
        NodeProto {
            op_type: "TreeEnsembleRegressor".into(),
            attribute: vec![
                strings("nodes_modes", modes),
                ints("nodes_treeids", &[0, 0, 0, 0, 0, 1, 1, 1]),
                ints("nodes_nodeids", &[0, 1, 2, 3, 4, 0, 1, 2]),
                ints("nodes_featureids", &[0, 0, 1, 0, 0, 1, 0, 0]),
                floats("nodes_values", &[1.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
                ints("nodes_truenodeids", &[1, 0, 3, 0, 0, 1, 0, 0]),
                ints("nodes_falsenodeids", &[2, 0, 4, 0, 0, 2, 0, 0]),
                ints("nodes_missing_value_tracks_true", &[1, 0, 0, 0, 0, 0, 0, 0]),
                ints("target_treeids", &[0, 0, 0, 1, 1]),
                ints("target_nodeids", &[1, 3, 4, 1, 2]),
                ints("target_ids", &[0, 0, 0, 0, 0]),
                floats("target_weights", &[10.0, 1.0, 2.0, 100.0, 200.0]),
                floats("base_values", &[0.5]),
            ],
            ..Default::default()
        }
    }

    const MIXED: [&str; 8] = [
        "BRANCH_GTE",
        "LEAF",
        "BRANCH_LT",
        "LEAF",
        "LEAF",
        "BRANCH_LEQ",
        "LEAF",
        "LEAF",
    ];

    fn forest(node: &NodeProto) -> TractResult<Forest> {
        let trees = Trees::read(node, "target", 1)?;
        let base = node.get_attr_opt_slice::<f32>("base_values")?;
        Forest::from_ensemble(&trees.ensemble(1, Aggregate::Sum)?, base)
    }

    fn score(forest: &Forest, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; x.len() / 2];
        forest.score(x, 2, &mut out).expect("score");
        out
    }

    #[test]
    fn mixed_comparisons_and_missing_values() {
        let forest = forest(&regressor(&MIXED)).expect("forest");
        assert!(forest.leq_steps.is_none());
        let x = [
            1.0,
            0.0, // x0 >= 1 -> 10; x1 <= 0 -> 100
            0.5,
            4.9, // x0 < 1, x1 < 5 -> 1; x1 > 0 -> 200
            0.5,
            5.0, // x1 not < 5 -> 2; -> 200
            f32::NAN,
            9.0, // NaN tracks true -> 10; -> 200
            0.0,
            f32::NAN, // x1 NaN: `<` goes no -> 2; `<=` goes no -> 200
        ];
        assert_eq!(score(&forest, &x), vec![110.5, 201.5, 202.5, 210.5, 202.5]);
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_walk() {
        let mut node = regressor(&MIXED);
        let modes = [
            "BRANCH_LEQ",
            "LEAF",
            "BRANCH_LEQ",
            "LEAF",
            "LEAF",
            "BRANCH_LEQ",
            "LEAF",
            "LEAF",
        ];
        set_attr(&mut node, "nodes_modes", AttributeType::Strings, |a| {
            a.strings = modes.iter().map(|s| s.as_bytes().to_vec()).collect()
        });
        set_attr(
            &mut node,
            "nodes_missing_value_tracks_true",
            AttributeType::Ints,
            |a| a.ints = vec![0; 8],
        );
        let fast = forest(&node).expect("forest");
        assert!(fast.leq_steps.is_some());
        let general = Forest {
            leq_steps: None,
            ..fast.clone()
        };
        // 37 rows: more than two blocks, and a partial one.
        let values = [-1.0, 0.0, 0.5, 1.0, 4.0, 5.0, 6.0, f32::NAN];
        let x: Vec<f32> = (0..74)
            .map(|i| values[(i * 5 + i / 3) % values.len()])
            .collect();
        assert_eq!(score(&fast, &x), score(&general, &x));
    }

    #[test]
    fn malformed_trees_are_refused() {
        let cases: [(&str, &[i64], &str); 4] = [
            (
                "nodes_truenodeids",
                &[0, 0, 3, 0, 0, 1, 0, 0],
                "reached twice",
            ),
            (
                "nodes_falsenodeids",
                &[2, 0, 9, 0, 0, 2, 0, 0],
                "does not exist",
            ),
            ("target_nodeids", &[1, 3, 2, 1, 2], "not a leaf"),
            ("target_ids", &[0, 0, 0, 0, 1], "output 1"),
        ];
        for (attr, values, expected) in cases {
            let mut node = regressor(&MIXED);
            set_attr(&mut node, attr, AttributeType::Ints, |a| {
                a.ints = values.to_vec()
            });
            match forest(&node) {
                Err(e) => assert!(format!("{e:#}").contains(expected), "{attr}: {e:#}"),
                Ok(_) => panic!("{attr}: accepted"),
            }
        }
        let mut node = regressor(&MIXED);
        node.attribute.retain(|a| a.name != "nodes_values");
        node.attribute.push(AttributeProto {
            name: "nodes_values_as_tensor".into(),
            ..Default::default()
        });
        let message = format!("{:#}", forest(&node).expect_err("refused"));
        assert!(message.contains("double-precision"), "{message}");
    }
}
