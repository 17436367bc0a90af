//! Jacobian plans: the bottlenecks of a recorded tape, and the cheapest way to build a
//! Jacobian through them.
//!
//! A **cut point** of a recording from an input `x` to an output `y` is a node that every
//! path from `x` to `y` passes through (in a layered chain, every layer's output). Between
//! two consecutive cut points the Jacobian of one from the other is a matrix of their
//! sizes, so the whole Jacobian is the product of the segments' Jacobians,
//! `J = J_l ··· J_1`, exactly the chain of the founding question, found on the tape by
//! itself instead of given by the user.
//!
//! [`Plan::of`] chooses, by a dynamic programme over the cut points (the matrix-chain
//! programme of [`chain`](crate::chain), with leaves that are sweeps), for every stretch
//! between two cut points either to sweep it directly (forward mode with one tangent per
//! element of its start, or reverse mode with one cotangent per element of its end, the
//! tangents in batches) or to split it at a cut point in between and multiply the two
//! halves. Costs are multiply-adds: a sweep costs its batch size times the multiply-adds
//! of the ops it crosses ([`Rule::madds`](crate::Rule::madds)), a product `m·k·n`. On a
//! tape without inner cut points the plan is the cheaper pure mode.
//!
//! The plan, with its estimates and (after [`jacobian`](crate::transforms::jacobian)
//! runs it) the measured time of each step, prints as a tree:
//!
//! ```
//! use retrograd_tape::plan::Plan;
//! use retrograd_tape::{arith::sum_to, Tape};
//! use ndarray::Array2;
//! let tape = Tape::<f64>::new();
//! let x = tape.var(Array2::<f64>::ones((100, 1)));
//! let (a, b) = (tape.constant(Array2::<f64>::ones((100, 2))), tape.constant(Array2::<f64>::ones((100, 2))));
//! // 100 → 2 → 100: a bottleneck of width 2.
//! let h = sum_to(&(a * x), &[1, 2]);
//! let y = sum_to(&(b * (h * h)), &[100, 1]);
//! let plan = Plan::of(x, y);
//! assert!(plan.cut_points.len() > 2);
//! assert!(plan.estimate < plan.forward.min(plan.reverse));
//! println!("{plan}");
//! ```

use std::fmt;

use crate::Float;
use crate::error::SourceLocation;
use crate::graph::{NodeKey, Reach};
use crate::transforms::Mode;
use crate::var::Var;

/// Plans consider at most this many cut points (the programme is cubic in their number);
/// beyond it they keep the narrowest, where the savings are.
pub const MAX_CUT_POINTS: usize = 64;

/// A node every path from the input to the output passes through.
#[derive(Clone, Debug, PartialEq)]
pub struct CutPoint {
    /// The node.
    pub key: NodeKey,
    /// The op that made it (`"input"` for the input).
    pub op: &'static str,
    /// Its number of elements: the width of the chain at this point.
    pub size: usize,
    /// Where it was recorded.
    pub location: SourceLocation,
    /// Multiply-adds of the ops from the input up to and including this node (on paths
    /// from the input).
    pub work: u64,
    /// Elements of the values from the input up to and including this node (on paths from
    /// the input, the input excluded): what a sweep keeps in flight per tangent.
    pub elements: usize,
}

/// One step of a plan: a segment's Jacobian by a sweep, or the product of two steps.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The Jacobian of cut point `to` with respect to cut point `from` (indices into
    /// [`Plan::cut_points`]), by batched sweeps in `mode` (`Forward`: one tangent per
    /// element of `from`; `Reverse`: one cotangent per element of `to`).
    Sweep {
        /// Index of the segment's start.
        from: usize,
        /// Index of the segment's end.
        to: usize,
        /// Forward or reverse.
        mode: Mode,
        /// Estimated multiply-adds.
        estimate: u64,
        /// Measured seconds, once run.
        seconds: Option<f64>,
    },
    /// `outer · inner`: `outer` is the output-side part.
    Product {
        /// The output-side factor.
        outer: Box<Step>,
        /// The input-side factor.
        inner: Box<Step>,
        /// Multiply-adds of this product alone.
        estimate: u64,
        /// Measured seconds of this product alone, once run.
        seconds: Option<f64>,
    },
}

impl Step {
    /// Estimated multiply-adds of this step and everything under it.
    pub fn total_estimate(&self) -> u64 {
        match self {
            Step::Sweep { estimate, .. } => *estimate,
            Step::Product {
                outer,
                inner,
                estimate,
                ..
            } => estimate + outer.total_estimate() + inner.total_estimate(),
        }
    }

    /// Measured seconds of this step and everything under it (0 for steps not run).
    pub fn total_seconds(&self) -> f64 {
        match self {
            Step::Sweep { seconds, .. } => seconds.unwrap_or(0.0),
            Step::Product {
                outer,
                inner,
                seconds,
                ..
            } => seconds.unwrap_or(0.0) + outer.total_seconds() + inner.total_seconds(),
        }
    }

    /// The first and last cut point the step spans.
    pub fn span(&self) -> (usize, usize) {
        match self {
            Step::Sweep { from, to, .. } => (*from, *to),
            Step::Product { outer, inner, .. } => (inner.span().0, outer.span().1),
        }
    }

    /// Whether the step is one sweep over the whole span in one mode.
    pub fn mode(&self) -> Option<Mode> {
        match self {
            Step::Sweep { mode, .. } => Some(*mode),
            Step::Product { .. } => None,
        }
    }
}

/// How to build one Jacobian: the recording's cut points and the chosen steps, with the
/// estimates of the two pure modes for comparison. See the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The cut points in evaluation order, the input first and the output last.
    pub cut_points: Vec<CutPoint>,
    /// The chosen steps.
    pub root: Step,
    /// Estimated multiply-adds of the chosen steps.
    pub estimate: u64,
    /// Estimated multiply-adds of one forward sweep per input element.
    pub forward: u64,
    /// Estimated multiply-adds of one reverse sweep per output element.
    pub reverse: u64,
}

impl Plan {
    /// Finds the cut points between `input` and `output` and the cheapest plan through
    /// them. One pass over the recorded ops between the two, then the cubic programme over
    /// at most [`MAX_CUT_POINTS`] cut points.
    ///
    /// # Panics
    /// When the two Vars belong to different tapes.
    #[track_caller]
    pub fn of<T: Float>(input: Var<'_, T>, output: Var<'_, T>) -> Plan {
        Self::with_pure(input, output, true)
    }

    /// [`Plan::of`], but with the pure modes over the whole span excluded when the tape has
    /// an inner cut point (what [`Mode::Bracketed`] asks for).
    #[track_caller]
    pub fn bracketed<T: Float>(input: Var<'_, T>, output: Var<'_, T>) -> Plan {
        Self::with_pure(input, output, false)
    }

    #[track_caller]
    fn with_pure<T: Float>(input: Var<'_, T>, output: Var<'_, T>, pure: bool) -> Plan {
        assert!(
            std::ptr::eq(input.tape, output.tape),
            "Plan::of: the input (created at {}) and the output (created at {}) belong to different tapes",
            input.location(),
            output.location()
        );
        let cut_points = cut_points(input, output);
        let sizes: Vec<u64> = cut_points.iter().map(|c| c.size as u64).collect();
        let work: Vec<u64> = cut_points.iter().map(|c| c.work).collect();
        let last = cut_points.len() - 1;
        let total = work[last] - work[0];
        let forward = sizes[0].saturating_mul(total);
        let reverse = sizes[last].saturating_mul(total);
        let root = Programme::new(&sizes, &work).solve(pure || last < 2);
        Plan {
            estimate: root.total_estimate(),
            cut_points,
            root,
            forward,
            reverse,
        }
    }

    /// What the plan amounts to: `Forward` or `Reverse` for one sweep over the whole tape,
    /// [`Mode::Bracketed`] for segments multiplied together.
    pub fn mode(&self) -> Mode {
        self.root.mode().unwrap_or(Mode::Bracketed)
    }
}

/// The cut points between `input` and `output`, input first, output last, thinned to
/// [`MAX_CUT_POINTS`] by keeping the narrowest.
fn cut_points<T: Float>(input: Var<'_, T>, output: Var<'_, T>) -> Vec<CutPoint> {
    let inner = input.tape.inner.borrow();
    let graph = &inner.graph;
    let mut reach = Reach::default();
    graph.between(Some(&[input.key]), &[output.key], &mut reach);
    let order: Vec<NodeKey> = reach.on_path_in_order().collect();
    if order.is_empty() {
        // The output does not depend on the input: the plan is a (zero) sweep.
        let point = |key: NodeKey, op| CutPoint {
            key,
            op,
            size: graph.shape(key).iter().product(),
            location: graph.node(key).location,
            work: 0,
            elements: 0,
        };
        return vec![
            point(input.key, "input"),
            point(output.key, graph.op_name(output.key)),
        ];
    }
    // An edge u → v on a path covers every node strictly between u and v in evaluation
    // order: a path can step over those. Uncovered nodes are the cut points.
    let index = |key: NodeKey| order.binary_search_by_key(&key.pos(), |k| k.pos()).ok();
    let size_of = |key: NodeKey| graph.shape(key).iter().product::<usize>() as u64;
    let mut cover = vec![0i64; order.len() + 1];
    let mut work = vec![0u64; order.len()];
    let mut elements = vec![0usize; order.len()];
    for (j, &key) in order.iter().enumerate().skip(1) {
        let node = graph.node(key);
        let inputs = graph.inputs(node);
        for i in inputs.iter().filter_map(|k| index(*k)) {
            if i + 1 < j {
                cover[i + 1] += 1;
                cover[j] -= 1;
            }
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|k| graph.shape(*k)).collect();
        let madds = match &node.origin {
            crate::graph::Origin::Op(rule) => rule.madds(&shapes, graph.shape(key)),
            _ => size_of(key),
        };
        work[j] = work[j - 1] + madds.max(1);
        elements[j] = elements[j - 1] + size_of(key) as usize;
    }
    let mut covered = 0;
    let mut points = Vec::new();
    for (j, &key) in order.iter().enumerate() {
        covered += cover[j];
        if covered == 0 || j == 0 || j + 1 == order.len() {
            let node = graph.node(key);
            points.push(CutPoint {
                key,
                op: if j == 0 {
                    "input"
                } else {
                    graph.name(&node.origin)
                },
                size: size_of(key) as usize,
                location: node.location,
                work: work[j],
                elements: elements[j],
            });
        }
    }
    thin(points)
}

/// Keeps the input, the output and the [`MAX_CUT_POINTS`] − 2 narrowest cut points between.
fn thin(mut points: Vec<CutPoint>) -> Vec<CutPoint> {
    if points.len() <= MAX_CUT_POINTS {
        return points;
    }
    let last = points.pop();
    let mut inner: Vec<CutPoint> = points.drain(1..).collect();
    inner.sort_by_key(|c| c.size);
    inner.truncate(MAX_CUT_POINTS - 2);
    inner.sort_by_key(|c| c.key.pos());
    points.extend(inner);
    points.extend(last);
    points
}

/// The interval programme: `best(i, j)`, the cheapest way to the Jacobian of cut point `j`
/// with respect to cut point `i`.
struct Programme<'a> {
    sizes: &'a [u64],
    work: &'a [u64],
    /// `(cost, split)` per `(i, j)`: `split` `None` for a direct sweep.
    table: Vec<(u64, Option<usize>)>,
    n: usize,
}

impl<'a> Programme<'a> {
    fn new(sizes: &'a [u64], work: &'a [u64]) -> Self {
        let n = sizes.len();
        Programme {
            sizes,
            work,
            table: vec![(0, None); n * n],
            n,
        }
    }

    /// The cheaper direct sweep over `i → j`: its mode and cost.
    fn sweep(&self, i: usize, j: usize) -> (Mode, u64) {
        let w = self.work[j] - self.work[i];
        let fwd = self.sizes[i].saturating_mul(w);
        let rev = self.sizes[j].saturating_mul(w);
        if fwd < rev {
            (Mode::Forward, fwd)
        } else {
            (Mode::Reverse, rev)
        }
    }

    /// Fills the table by span length and returns the plan over the whole chain; without
    /// `pure`, the whole span must be split (when it can be).
    fn solve(mut self, pure: bool) -> Step {
        let n = self.n;
        for len in 1..n {
            for i in 0..n - len {
                let j = i + len;
                let mut best = (self.sweep(i, j).1, None);
                if len == n - 1 && !pure {
                    best = (u64::MAX, None);
                }
                for l in i + 1..j {
                    let product = self.sizes[i] * self.sizes[l] * self.sizes[j];
                    let c = self.table[i * n + l]
                        .0
                        .saturating_add(self.table[l * n + j].0)
                        .saturating_add(product);
                    if c < best.0 {
                        best = (c, Some(l));
                    }
                }
                self.table[i * n + j] = best;
            }
        }
        self.step(0, n - 1)
    }

    fn step(&self, i: usize, j: usize) -> Step {
        match self.table[i * self.n + j].1 {
            None => {
                let (mode, estimate) = self.sweep(i, j);
                Step::Sweep {
                    from: i,
                    to: j,
                    mode,
                    estimate,
                    seconds: None,
                }
            }
            Some(l) => Step::Product {
                outer: Box::new(self.step(l, j)),
                inner: Box::new(self.step(i, l)),
                estimate: self.sizes[i] * self.sizes[l] * self.sizes[j],
                seconds: None,
            },
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mega = |m: u64| m as f64 / 1e6;
        writeln!(
            f,
            "Jacobian plan: {:.2}M multiply-adds (pure forward {:.2}M, pure reverse {:.2}M)",
            mega(self.estimate),
            mega(self.forward),
            mega(self.reverse)
        )?;
        writeln!(f, "cut points (width, op, recorded at):")?;
        for (i, c) in self.cut_points.iter().enumerate() {
            writeln!(f, "  [{i}] {:>8}  {:<14} {}", c.size, c.op, c.location)?;
        }
        writeln!(f, "steps:")?;
        self.write_step(f, &self.root, 1)
    }
}

impl Plan {
    fn write_step(&self, f: &mut fmt::Formatter<'_>, step: &Step, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        let time =
            |s: &Option<f64>| s.map_or(String::new(), |s| format!(", took {:.3} ms", s * 1e3));
        match step {
            Step::Sweep {
                from,
                to,
                mode,
                estimate,
                seconds,
            } => {
                let (a, b) = (self.cut_points[*from].size, self.cut_points[*to].size);
                let batch = if *mode == Mode::Forward { a } else { b };
                writeln!(
                    f,
                    "{pad}J[{to}<-{from}] ({b}x{a}) by {mode:?} sweeps, {batch} lines: {:.3}M madds{}",
                    *estimate as f64 / 1e6,
                    time(seconds)
                )
            }
            Step::Product {
                outer,
                inner,
                estimate,
                seconds,
            } => {
                let (i, j) = (step.span().0, step.span().1);
                let l = inner.span().1;
                writeln!(
                    f,
                    "{pad}J[{j}<-{i}] = J[{j}<-{l}] J[{l}<-{i}]: {:.3}M madds{}",
                    *estimate as f64 / 1e6,
                    time(seconds)
                )?;
                self.write_step(f, outer, depth + 1)?;
                self.write_step(f, inner, depth + 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tape;
    use crate::arith::sum_to;

    /// `[n, 1] → [1, w] → [n, 1]` through two broadcast-and-sum linear maps.
    fn hourglass<'t>(x: Var<'t, f64>, n: usize, w: usize) -> Var<'t, f64> {
        let t = x.tape();
        let a = t.constant(ndarray::Array2::<f64>::from_elem((n, w), 0.5));
        let h = sum_to(&(a * x), &[1, w]);
        sum_to(&(a * (h * h)), &[n, 1])
    }

    #[test]
    fn a_chain_has_every_layer_output_as_a_cut_point() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ndarray::Array2::<f64>::ones((40, 1)));
        let y = hourglass(x, 40, 3);
        let plan = Plan::of(x, y);
        let ops: Vec<_> = plan.cut_points.iter().map(|c| c.op).collect();
        assert_eq!(ops, ["input", "mul", "sum_to", "mul", "mul", "sum_to"]);
        let sizes: Vec<_> = plan.cut_points.iter().map(|c| c.size).collect();
        assert_eq!(sizes, [40, 120, 3, 3, 120, 40]);
        // Through the width-3 bottleneck: far cheaper than either pure mode.
        assert_eq!(plan.mode(), Mode::Bracketed);
        assert!(plan.estimate * 2 < plan.forward.min(plan.reverse));
    }

    #[test]
    fn a_skip_connection_leaves_no_cut_point_inside_it() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ndarray::Array2::<f64>::ones((40, 1)));
        // y = g(x) + x: every node of g is stepped over by the edge from x to the sum.
        let y = hourglass(x, 40, 3) + x;
        let plan = Plan::of(x, y);
        let ops: Vec<_> = plan.cut_points.iter().map(|c| c.op).collect();
        assert_eq!(ops, ["input", "add"]);
        assert_ne!(plan.mode(), Mode::Bracketed);
        // Asked to bracket, with nothing to split at, it sweeps.
        assert!(Plan::bracketed(x, y).root.mode().is_some());
    }

    #[test]
    fn the_programme_matches_the_chain_costs_of_given_widths() {
        // Widths 500, 500, 5, 500, 500 with unit work per element: the split at the
        // bottleneck is chosen and costs what the formula says.
        let sizes = [500u64, 500, 5, 500, 500];
        let work = [0u64, 250_000, 252_500, 255_000, 505_000];
        let step = Programme::new(&sizes, &work).solve(true);
        let (outer, inner) = match &step {
            Step::Product { outer, inner, .. } => (outer.span(), inner.span()),
            Step::Sweep { .. } => panic!("expected a split, got {step:?}"),
        };
        assert_eq!((inner, outer), ((0, 2), (2, 4)));
        assert_eq!(
            step.total_estimate(),
            5 * 252_500 + 5 * 252_500 + 500 * 5 * 500
        );
    }
}
