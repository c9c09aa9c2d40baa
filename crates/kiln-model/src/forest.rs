//! A compact copy of a fitted forust booster's trees, for fast scoring.
//!
//! forust scores tree by tree over all rows, allocating a vector per tree, with nodes that carry
//! training statistics (about 80 bytes each). Scoring is what the server and batch scoring do all
//! day, so the trees are flattened once into 24-byte nodes and rows are scored in cache-sized
//! blocks, each row walking every tree, blocks spread over the cores; shallow trees are laid
//! out as complete binary trees and walked without branches ([`Complete`]). The arithmetic is
//! forust's exactly (start from the base score, add each tree's leaf value as f64 in tree
//! order, a NaN feature takes the node's missing branch, `value < threshold` goes left), so the
//! result is bit-identical to `GradientBooster::predict`, which a test checks.

use forust_ml::GradientBooster;

use crate::features::Transformed;

const LEAF: u32 = u32::MAX;
/// Rows scored together: their features stay in cache while every tree is walked.
const BLOCK: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f64,
    /// Feature index, or [`LEAF`].
    feature: u32,
    left: u32,
    right: u32,
    missing: u32,
    value: f32,
}

/// The trees of one booster, flattened.
#[derive(Debug, Clone)]
pub struct Forest {
    /// One more than the largest feature index a split uses.
    features: usize,
    base: f64,
    roots: Vec<u32>,
    nodes: Vec<Node>,
    /// The same trees as complete binary trees, when every tree is shallow enough.
    complete: Option<Complete>,
}

/// Deepest tree laid out as a complete binary tree (2^16 leaves); deeper forests use the
/// node-by-node walk.
const MAX_COMPLETE_DEPTH: u32 = 16;
/// Rows walked down a tree together.
const LANES: usize = 8;

/// Trees padded to complete binary trees: a row takes exactly `depth` steps, each choosing a
/// child by arithmetic (`2i + 1 + right`), so walking a tree costs no mispredicted branch,
/// which is what dominates scoring a tree node by node. A leaf above the bottom becomes a
/// chain of pass-through nodes whose children both lead to it.
#[derive(Debug, Clone)]
struct Complete {
    /// Per tree: depth, offset of its inner nodes, offset of its leaves.
    trees: Vec<(u32, usize, usize)>,
    threshold: Vec<f64>,
    feature: Vec<u32>,
    /// Whether a missing value goes right.
    missing_right: Vec<bool>,
    leaves: Vec<f32>,
}

impl Complete {
    fn of(b: &GradientBooster, n: usize) -> Option<Self> {
        let mut c = Complete {
            trees: Vec::with_capacity(n),
            threshold: Vec::new(),
            feature: Vec::new(),
            missing_right: Vec::new(),
            leaves: Vec::new(),
        };
        for tree in &b.trees[..n] {
            let nodes = &tree.nodes;
            // Depth of the tree, checking every missing branch is one of the two children.
            let mut depth = 0u32;
            let mut stack = vec![(0usize, 0u32)];
            while let Some((i, d)) = stack.pop() {
                let node = nodes.get(i)?;
                if node.is_leaf {
                    depth = depth.max(d);
                } else {
                    if node.missing_node != node.left_child && node.missing_node != node.right_child
                    {
                        return None;
                    }
                    if d + 1 > MAX_COMPLETE_DEPTH {
                        return None;
                    }
                    stack.push((node.left_child, d + 1));
                    stack.push((node.right_child, d + 1));
                }
            }
            let inner = (1usize << depth) - 1;
            let (node_off, leaf_off) = (c.threshold.len(), c.leaves.len());
            c.threshold.resize(node_off + inner, f64::INFINITY);
            c.feature.resize(node_off + inner, 0);
            c.missing_right.resize(node_off + inner, false);
            c.leaves.resize(leaf_off + (1usize << depth), 0.0);
            // (node, position in the complete tree, depth)
            let mut stack = vec![(0usize, 0usize, 0u32)];
            while let Some((i, pos, d)) = stack.pop() {
                let node = nodes.get(i)?;
                if d == depth {
                    c.leaves[leaf_off + pos - inner] = node.weight_value;
                } else if node.is_leaf {
                    // Pass-through: both children lead to this leaf.
                    stack.push((i, 2 * pos + 1, d + 1));
                    stack.push((i, 2 * pos + 2, d + 1));
                } else {
                    c.threshold[node_off + pos] = node.split_value;
                    c.feature[node_off + pos] = u32::try_from(node.split_feature).ok()?;
                    c.missing_right[node_off + pos] = node.missing_node == node.right_child;
                    stack.push((node.left_child, 2 * pos + 1, d + 1));
                    stack.push((node.right_child, 2 * pos + 2, d + 1));
                }
            }
            c.trees.push((depth, node_off, leaf_off));
        }
        Some(c)
    }

    /// Adds every tree's leaf value to `out` (rows `start..`), tree by tree. Rows go down a
    /// tree [`LANES`] at a time, in lockstep: their walks are independent, so the processor
    /// overlaps them instead of waiting on one chain of loads.
    fn add_block(&self, x: &Transformed, start: usize, out: &mut [f64]) {
        if out.len() < LANES {
            return self.add_few(x, start, out);
        }
        for &(depth, node_off, leaf_off) in &self.trees {
            let inner = (1usize << depth) - 1;
            let step = |i: usize, row: usize| -> usize {
                let at = node_off + i;
                let v = x.data[self.feature[at] as usize * x.rows + row];
                // NaN compares false both ways: right only if its missing branch is.
                let right = (v >= self.threshold[at]) | (v.is_nan() & self.missing_right[at]);
                2 * i + 1 + usize::from(right)
            };
            let mut lanes = out.chunks_exact_mut(LANES);
            let mut row0 = start;
            for o in &mut lanes {
                let mut i = [0usize; LANES];
                for _ in 0..depth {
                    for (l, il) in i.iter_mut().enumerate() {
                        *il = step(*il, row0 + l);
                    }
                }
                for (l, ol) in o.iter_mut().enumerate() {
                    *ol += f64::from(self.leaves[leaf_off + i[l] - inner]);
                }
                row0 += LANES;
            }
            for (k, o) in lanes.into_remainder().iter_mut().enumerate() {
                let mut i = 0usize;
                for _ in 0..depth {
                    i = step(i, row0 + k);
                }
                *o += f64::from(self.leaves[leaf_off + i - inner]);
            }
        }
    }
}

impl Complete {
    /// [`Self::add_block`] for fewer rows than [`LANES`] (a served request): too few rows to
    /// overlap, so a row goes down [`LANES`] trees at once instead. Leaves are still added in
    /// tree order, so the sum is the same to the bit.
    fn add_few(&self, x: &Transformed, start: usize, out: &mut [f64]) {
        for (k, o) in out.iter_mut().enumerate() {
            let row = start + k;
            for group in self.trees.chunks(LANES) {
                let mut i = [0usize; LANES];
                let deepest = group.iter().map(|t| t.0).max().unwrap_or(0);
                for level in 0..deepest {
                    for (il, &(depth, node_off, _)) in i.iter_mut().zip(group) {
                        if level < depth {
                            let at = node_off + *il;
                            let v = x.data[self.feature[at] as usize * x.rows + row];
                            let right =
                                (v >= self.threshold[at]) | (v.is_nan() & self.missing_right[at]);
                            *il = 2 * *il + 1 + usize::from(right);
                        }
                    }
                }
                for (il, &(depth, _, leaf_off)) in i.iter().zip(group) {
                    let inner = (1usize << depth) - 1;
                    *o += f64::from(self.leaves[leaf_off + il - inner]);
                }
            }
        }
    }
}

impl Forest {
    /// Flattens `b`'s trees; `None` when it uses a setting this scorer does not reproduce
    /// (a missing-value marker other than NaN), in which case forust scores it.
    pub fn of(b: &GradientBooster) -> Option<Self> {
        if !b.missing.is_nan() {
            return None;
        }
        let n = b
            .prediction_iteration
            .unwrap_or(b.trees.len())
            .min(b.trees.len());
        let mut roots = Vec::with_capacity(n);
        let mut nodes = Vec::new();
        for tree in &b.trees[..n] {
            let offset = nodes.len();
            let at = |i: usize| -> Option<u32> { u32::try_from(offset + i).ok() };
            roots.push(at(0)?);
            for node in &tree.nodes {
                if node.is_leaf {
                    nodes.push(Node {
                        threshold: 0.0,
                        feature: LEAF,
                        left: 0,
                        right: 0,
                        missing: 0,
                        value: node.weight_value,
                    });
                } else {
                    nodes.push(Node {
                        threshold: node.split_value,
                        feature: u32::try_from(node.split_feature).ok()?,
                        left: at(node.left_child)?,
                        right: at(node.right_child)?,
                        missing: at(node.missing_node)?,
                        value: node.weight_value,
                    });
                }
            }
        }
        let features = nodes
            .iter()
            .filter(|n| n.feature != LEAF)
            .map(|n| n.feature as usize + 1)
            .max()
            .unwrap_or(0);
        Some(Self {
            features,
            base: b.base_score,
            roots,
            nodes,
            complete: Complete::of(b, n),
        })
    }

    /// Scores rows `start..start + out.len()` of `x` into `out`.
    fn score_block(&self, x: &Transformed, start: usize, out: &mut [f64]) {
        out.fill(self.base);
        if let Some(c) = &self.complete {
            return c.add_block(x, start, out);
        }
        for root in &self.roots {
            for (k, o) in out.iter_mut().enumerate() {
                let row = start + k;
                let mut i = *root as usize;
                let leaf = loop {
                    let n = &self.nodes[i];
                    if n.feature == LEAF {
                        break n.value;
                    }
                    let v = x.data[n.feature as usize * x.rows + row];
                    i = if v.is_nan() {
                        n.missing
                    } else if v < n.threshold {
                        n.left
                    } else {
                        n.right
                    } as usize;
                };
                *o += f64::from(leaf);
            }
        }
    }

    /// How many features a matrix must have for these trees.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The raw score of every row (before any link function), on all cores for big batches.
    /// `x` must have at least [`Self::features`] features.
    pub fn predict(&self, x: &Transformed, parallel: bool) -> Vec<f64> {
        let mut out = vec![0.0; x.rows];
        let threads = if parallel {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            1
        };
        if threads <= 1 || x.rows < 2 * BLOCK {
            for (b, chunk) in out.chunks_mut(BLOCK).enumerate() {
                self.score_block(x, b * BLOCK, chunk);
            }
            return out;
        }
        // Contiguous shares of whole blocks, one per thread.
        let per = x.rows.div_ceil(BLOCK).div_ceil(threads) * BLOCK;
        std::thread::scope(|s| {
            for (t, share) in out.chunks_mut(per).enumerate() {
                s.spawn(move || {
                    for (b, chunk) in share.chunks_mut(BLOCK).enumerate() {
                        self.score_block(x, t * per + b * BLOCK, chunk);
                    }
                });
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::{Fitted, GbdtParams, Task};

    /// Both walks (complete-tree and node-by-node) give forust's bits, gaps included.
    #[test]
    fn both_walks_match_forust() {
        let rows = 3000;
        let mut data = Vec::with_capacity(rows * 3);
        for f in 0..3 {
            for i in 0..rows {
                let v = ((i * (7 + f * 13)) % 101) as f64 / 10.0;
                data.push(if (i + f) % 17 == 0 { f64::NAN } else { v });
            }
        }
        let y: Vec<f64> = (0..rows)
            .map(|i| {
                let a = data[i];
                let b = data[rows + i];
                (if a.is_nan() { 3.0 } else { a * 2.0 }) - if b.is_nan() { 1.0 } else { b }
            })
            .collect();
        let x = Transformed {
            data,
            rows,
            features: 3,
            unknown: vec![],
        };
        let params = GbdtParams {
            iterations: 20,
            ..GbdtParams::default()
        };
        let Fitted::Gbdt { boosters, .. } =
            Fitted::fit_gbdt(Task::Regression, &params, &x, &y).unwrap()
        else {
            panic!("trees")
        };
        let reference = boosters[0].predict(&forust_ml::Matrix::new(&x.data, rows, 3), false);
        let complete = Forest::of(&boosters[0]).unwrap();
        assert!(complete.complete.is_some());
        let walk = Forest {
            complete: None,
            ..complete.clone()
        };
        for f in [&complete, &walk] {
            for parallel in [false, true] {
                let ours = f.predict(&x, parallel);
                assert!(
                    ours.iter()
                        .zip(&reference)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
            }
        }
        // Fewer rows than a lane group (a served request) take the tree-interleaved walk.
        for (start, n) in [(0, 1), (17, 1), (100, 3), (2990, 7), (500, 9)] {
            let few = Transformed {
                data: (0..3)
                    .flat_map(|f| x.data[f * rows + start..f * rows + start + n].to_vec())
                    .collect(),
                rows: n,
                features: 3,
                unknown: vec![],
            };
            let ours = complete.predict(&few, false);
            for (k, v) in ours.iter().enumerate() {
                assert_eq!(
                    v.to_bits(),
                    reference[start + k].to_bits(),
                    "row {}",
                    start + k
                );
            }
        }
    }
}
