//! Reading a recorded tape: per-node information, a table dump with filters, a summary,
//! labels, and the gradient norms of the last reverse sweep.
//!
//! Everything here reads the tape after the fact; recording pays nothing for it. Labels
//! and gradient norms live beside the nodes (not in them), so a node stays as small as the
//! W1 scalar-chain benchmark needs.
//!
//! ```
//! use retrograd_tape::Tape;
//! let tape = Tape::<f64>::new();
//! tape.set_record_grad_norms(true);
//! let w = tape.var(3.0).named("w");
//! let x = tape.constant(2.0);
//! let y = w * x + 1.0;
//! y.backward().unwrap();
//! let nodes = tape.nodes();
//! assert_eq!(nodes[2].op, "mul");
//! assert_eq!(nodes[0].label.as_deref(), Some("w"));
//! assert_eq!(nodes[0].grad_norm, Some(2.0));
//! println!("{}", tape.dump().path_to(y));
//! println!("{}", tape.summary());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use slotmap::SecondaryMap;

use crate::Float;
use crate::graph::{NodeKey, Origin, Plain, Reach};
use crate::tape::Tape;
use crate::tensor::Tensor;
use crate::var::Var;

/// What the tape keeps for inspection beside its nodes.
#[derive(Default)]
pub(crate) struct InspectState {
    pub(crate) labels: SecondaryMap<NodeKey, String>,
    /// The part of a model each node was recorded in ([`Tape::scope`]).
    pub(crate) scopes: crate::scope::Scopes,
    pub(crate) record_grad_norms: bool,
    /// By node position; `None` where the last sweep did not visit the node.
    grad_norms: Vec<Option<f64>>,
    /// Reverse sweeps running on the tape: one nested in another (a checkpoint's
    /// recording VJP sweeps its block inside the outer sweep) belongs to the outer sweep's
    /// table rather than starting a new one.
    sweeps_running: u32,
    /// The block of each checkpointed node, so a dump can expand it
    /// ([`Tape::checkpoint_dump`]); the `Any` is the crate's checkpoint block type.
    pub(crate) checkpoints: SecondaryMap<NodeKey, std::rc::Rc<dyn std::any::Any>>,
}

impl InspectState {
    pub(crate) fn clear(&mut self) {
        self.labels.clear();
        self.scopes.clear();
        self.grad_norms.clear();
        self.checkpoints.clear();
    }

    /// A reverse sweep starts. An outermost one forgets the previous sweep's norms (the
    /// table shows the last sweep's only), when norms are recorded; a nested one keeps them.
    pub(crate) fn enter_sweep(&mut self, nodes: usize) {
        if self.sweeps_running == 0 && self.record_grad_norms {
            self.grad_norms.clear();
            self.grad_norms.resize(nodes, None);
        }
        self.sweeps_running += 1;
    }

    /// A reverse sweep ended, returned an error or unwound.
    pub(crate) fn leave_sweep(&mut self) {
        self.sweeps_running = self.sweeps_running.saturating_sub(1);
    }

    pub(crate) fn set_grad_norm(&mut self, pos: usize, norm: f64) {
        if let Some(slot) = self.grad_norms.get_mut(pos) {
            *slot = Some(norm);
        }
    }
}

/// How a node came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// An input entered with [`Tape::var`] or [`Tape::constant`].
    Leaf,
    /// A value no gradient flows through: computed from constants, under `no_grad`, by
    /// `detach`, or a constant a rule entered (its rule was not kept).
    Constant,
    /// A recorded op whose rule is kept (a reverse sweep can run through it).
    Op,
    /// A recorded op whose rule a reverse sweep without `retain_graph` freed: its
    /// attributes and exact cost estimate are gone with it.
    Spent,
}

/// A user's source location (`file:line:column`), owned so that it can be read back from
/// JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceLine {
    /// The source file, as the compiler names it (relative to the workspace for local
    /// crates).
    pub file: String,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

impl fmt::Display for SourceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// What one recorded node is, holds and costs: a row of the tape dump, a node of the DOT
/// and JSON exports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id: its position in evaluation order (`%id` in dumps and errors).
    pub id: usize,
    /// The op's name (`"mul"`, `"matmul"`); `"var"` and `"constant"` for leaves.
    pub op: String,
    /// How the node came to be.
    pub kind: NodeKind,
    /// The op's attributes as `(name, value)` pairs (empty once the rule is freed).
    pub attributes: Vec<(String, String)>,
    /// The ids of its inputs, in order.
    pub inputs: Vec<usize>,
    /// The value's shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The element type (`"f32"`, `"f64"`).
    pub dtype: String,
    /// Bytes of the value this node holds (0 once freed).
    pub bytes: usize,
    /// Whether a backward sweep that did not keep the graph freed the value at its last
    /// use (its shape is still known; reading it is [`Error::ValueFreed`](crate::Error)).
    #[serde(default)]
    pub value_freed: bool,
    /// Bytes held for the backward pass: the state the rule kept
    /// ([`Rule::saved_bytes`](crate::Rule::saved_bytes)) plus, for a value that is not a
    /// leaf, its own bytes when a kept rule may read it (its own rule, which may read the
    /// output, or a consumer's, which may read its inputs). Each value is counted once, at
    /// the node that made it, so the column sums to the tape's total. Leaves are the
    /// caller's inputs and are not counted. Zero once the rules are freed.
    pub saved_bytes: usize,
    /// Estimated multiply-adds of the forward computation
    /// ([`Rule::madds`](crate::Rule::madds); one per output element for an op whose rule
    /// is freed or was not kept, zero for leaves and constants entered without an op).
    pub madds: u64,
    /// Whether gradients flow through this node.
    pub requires_grad: bool,
    /// The user's line that created the node.
    pub location: SourceLine,
    /// The node's name, given with [`Var::named`] or [`Tape::label`].
    pub label: Option<String>,
    /// The scope it was recorded in ([`Tape::scope`]): for a model built with
    /// `retrograd-nn`, the layer, as `encoder.0 (Linear)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The L2 norm of the node's complete cotangent in the last reverse sweep, when
    /// [`Tape::set_record_grad_norms`] is on and the sweep visited the node. For a leaf
    /// that is its gradient's norm.
    pub grad_norm: Option<f64>,
}

impl NodeInfo {
    /// The op with its attributes, as the dump prints it: `mul_scalar(c=2)`.
    pub fn op_with_attributes(&self) -> String {
        if self.attributes.is_empty() {
            return self.op.clone();
        }
        let attrs: Vec<String> = self
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}({})", self.op, attrs.join(", "))
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Names this value (e.g. a parameter, `"layer1.weight"`) for dumps, DOT and JSON
    /// exports and `Debug`; returns the Var so it chains after [`Tape::var`].
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let w = tape.var(1.0).named("layer1.weight");
    /// assert_eq!(w.label().as_deref(), Some("layer1.weight"));
    /// assert!(format!("{w:?}").contains("layer1.weight"));
    /// ```
    pub fn named(self, name: impl Into<String>) -> Self {
        self.tape.label(self, name);
        self
    }

    /// The name given with [`named`](Var::named) or [`Tape::label`], if any.
    pub fn label(&self) -> Option<String> {
        self.tape
            .inner
            .borrow()
            .inspect
            .labels
            .get(self.key)
            .cloned()
    }
}

/// The bytes a tensor holds, and the identity of its shared buffer (values shared by
/// several nodes, e.g. through `detach`, are counted once in totals).
fn buffer_id<T: Float>(t: &Tensor<T>) -> Option<usize> {
    match t {
        Tensor::Scalar(_) => None,
        Tensor::Array(a) => Some(Arc::as_ptr(a) as usize),
    }
}

impl<T: Float> Tape<T> {
    /// Names a value (see [`Var::named`]); a second call renames it.
    ///
    /// # Panics
    /// When `var` belongs to another tape.
    #[track_caller]
    pub fn label(&self, var: Var<'_, T>, name: impl Into<String>) {
        assert!(
            std::ptr::eq(var.tape, self),
            "label: the Var (created at {}) belongs to another tape",
            var.location()
        );
        self.inner
            .borrow_mut()
            .inspect
            .labels
            .insert(var.key, name.into());
    }

    /// Whether reverse sweeps record the norm of each visited node's cotangent (off by
    /// default). When on, each sweep costs one pass over every cotangent it computes; when
    /// off, nothing. The norms show in [`nodes`](Tape::nodes), the dump and the exports,
    /// and are those of the last sweep.
    pub fn set_record_grad_norms(&self, on: bool) {
        self.inner.borrow_mut().inspect.record_grad_norms = on;
    }

    /// Whether reverse sweeps record gradient norms.
    pub fn records_grad_norms(&self) -> bool {
        self.inner.borrow().inspect.record_grad_norms
    }

    /// Every recorded node, in evaluation order (so `nodes()[i].id == i`).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.collect().into_iter().map(|(info, _)| info).collect()
    }

    /// The information of one node.
    ///
    /// # Panics
    /// When `var` belongs to another tape.
    #[track_caller]
    pub fn node_info(&self, var: Var<'_, T>) -> NodeInfo {
        assert!(
            std::ptr::eq(var.tape, self),
            "node_info: the Var (created at {}) belongs to another tape",
            var.location()
        );
        let pos = var.key.pos();
        self.nodes().swap_remove(pos)
    }

    /// Node infos with the identity of each value's buffer.
    fn collect(&self) -> Vec<(NodeInfo, Option<usize>)> {
        let inner = self.inner.borrow();
        let graph = &inner.graph;
        // Which values a kept rule may read: its own output and its inputs.
        let mut read = vec![false; graph.len()];
        for (key, n) in graph.iter() {
            if let Origin::Op(_) = n.origin {
                read[key.pos()] = true;
                for i in graph.inputs(n) {
                    read[i.pos()] = true;
                }
            }
        }
        let norms = &inner.inspect.grad_norms;
        graph
            .iter()
            .map(|(key, n)| {
                let p = key.pos();
                let inputs = graph.inputs(n);
                let kind = match n.origin {
                    Origin::Op(_) => NodeKind::Op,
                    Origin::Plain(Plain::Leaf { .. }) => NodeKind::Leaf,
                    Origin::Plain(Plain::Constant(_)) => NodeKind::Constant,
                    Origin::Plain(Plain::Spent(_)) => NodeKind::Spent,
                };
                let input_shapes: Vec<&[usize]> = inputs.iter().map(|i| graph.shape(*i)).collect();
                let value_freed = graph.freed_shape(key).is_some();
                let shape = graph.shape(key);
                let out_len = shape.iter().product::<usize>() as u64;
                let (attributes, rule_saved, madds) = match &n.origin {
                    Origin::Op(rule) => (
                        rule.attributes()
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                        rule.saved_bytes(),
                        rule.madds(&input_shapes, n.value.shape()),
                    ),
                    Origin::Plain(Plain::Leaf { .. }) => (Vec::new(), 0, 0),
                    _ if inputs.is_empty() => (Vec::new(), 0, 0),
                    _ => (Vec::new(), 0, out_len),
                };
                let bytes = if value_freed { 0 } else { n.value.bytes() };
                let value_saved = if kind != NodeKind::Leaf && read[p] {
                    bytes
                } else {
                    0
                };
                let info = NodeInfo {
                    id: p,
                    op: graph.name(&n.origin).to_string(),
                    kind,
                    attributes,
                    inputs: inputs.iter().map(|i| i.pos()).collect(),
                    shape: shape.to_vec(),
                    dtype: T::NAME.to_string(),
                    bytes,
                    value_freed,
                    saved_bytes: rule_saved + value_saved,
                    madds,
                    requires_grad: n.origin.requires_grad(),
                    location: SourceLine {
                        file: n.location.file().to_string(),
                        line: n.location.line(),
                        column: n.location.column(),
                    },
                    label: inner.inspect.labels.get(key).cloned(),
                    scope: inner.inspect.scopes.of(key).map(str::to_owned),
                    grad_norm: norms.get(p).copied().flatten(),
                };
                (info, buffer_id(&n.value))
            })
            .collect()
    }

    /// The tape as a table, one row per node, with filters (see [`Dump`]).
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let x = tape.var(2.0).named("x");
    /// let y = x * x + x;
    /// let table = tape.dump().to_string();
    /// assert!(table.contains("mul") && table.contains(file!()));
    /// assert_eq!(tape.dump().op("add").len(), 1);
    /// ```
    pub fn dump(&self) -> Dump {
        let nodes = self.nodes();
        Dump {
            tape: self as *const Tape<T> as usize,
            keep: vec![true; nodes.len()],
            nodes,
            dtype: T::NAME,
        }
    }

    /// Counts and costs of the whole tape (see [`Summary`]).
    ///
    /// ```
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let x = tape.var(ndarray::array![1.0, 2.0, 3.0]);
    /// let y = x * x + x;
    /// let s = tape.summary();
    /// assert_eq!((s.nodes, s.ops), (3, 2));
    /// assert_eq!(s.forward_madds, 6);
    /// assert_eq!(s.value_bytes, 3 * 3 * 8);
    /// ```
    pub fn summary(&self) -> Summary {
        let all = self.collect();
        let mut seen = std::collections::HashSet::new();
        let mut s = Summary {
            dtype: T::NAME,
            ..Summary::default()
        };
        let mut by_op: BTreeMap<String, usize> = BTreeMap::new();
        for (n, buffer) in &all {
            s.nodes += 1;
            match n.kind {
                NodeKind::Leaf if n.requires_grad => s.leaves += 1,
                NodeKind::Leaf | NodeKind::Constant => s.constants += 1,
                NodeKind::Op | NodeKind::Spent => {
                    s.ops += 1;
                    s.reverse_madds += 2 * n.madds;
                }
            }
            if n.kind != NodeKind::Leaf {
                *by_op.entry(n.op.clone()).or_default() += 1;
            }
            if n.label.is_some() {
                s.labelled += 1;
            }
            let first = buffer.is_none_or(|b| seen.insert(b));
            if first {
                s.value_bytes += n.bytes;
                s.saved_bytes += n.saved_bytes;
            }
            s.forward_madds += n.madds;
        }
        let mut by_op: Vec<(String, usize)> = by_op.into_iter().collect();
        by_op.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        s.by_op = by_op;
        s
    }
}

/// Counts and costs of a tape, from [`Tape::summary`]; `Display` prints them in a few lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// The element type.
    pub dtype: &'static str,
    /// Every node.
    pub nodes: usize,
    /// Inputs entered with [`Tape::var`](crate::Tape::var): the values gradients are for.
    pub leaves: usize,
    /// Recorded ops (kept or freed).
    pub ops: usize,
    /// Values no gradient flows through: entered with [`Tape::constant`](crate::Tape::constant)
    /// (the dump's `constant` rows), or made by ops on constants, under `no_grad` or by
    /// `detach`.
    pub constants: usize,
    /// Nodes with a name.
    pub labelled: usize,
    /// Nodes per op name (leaves excluded), most frequent first.
    pub by_op: Vec<(String, usize)>,
    /// Bytes of every value on the tape (a buffer shared by several nodes counted once).
    pub value_bytes: usize,
    /// Bytes held for the backward pass ([`NodeInfo::saved_bytes`], summed).
    pub saved_bytes: usize,
    /// Estimated multiply-adds of the forward computation ([`NodeInfo::madds`], summed).
    pub forward_madds: u64,
    /// Estimated multiply-adds of a reverse sweep through every recorded op: twice each
    /// op's forward estimate (exact for matmul, whose VJP is two products of its size; an
    /// upper bound for most elementwise ops) — Griewank's cheap gradient principle says a
    /// small constant times the forward.
    pub reverse_madds: u64,
}

/// Bytes in binary units, for tables.
pub(crate) fn human_bytes(b: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A gradient norm for the table: plain for moderate values, scientific otherwise.
fn format_norm(g: f64) -> String {
    if g == 0.0 || (1e-3..1e5).contains(&g.abs()) {
        format!("{g:.4}")
    } else {
        format!("{g:.3e}")
    }
}

/// Large counts with a metric suffix, for tables.
fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1}k", n as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "tape<{}>: {} nodes ({} leaves, {} ops, {} constants, {} labelled)",
            self.dtype, self.nodes, self.leaves, self.ops, self.constants, self.labelled
        )?;
        let ops: Vec<String> = self
            .by_op
            .iter()
            .map(|(op, n)| format!("{op} x{n}"))
            .collect();
        writeln!(
            f,
            "ops: {}",
            if ops.is_empty() {
                "-".into()
            } else {
                ops.join(", ")
            }
        )?;
        writeln!(
            f,
            "memory: {} in values, {} held for backward",
            human_bytes(self.value_bytes),
            human_bytes(self.saved_bytes)
        )?;
        write!(
            f,
            "multiply-adds (estimated): forward {}, reverse sweep {}",
            human_count(self.forward_madds),
            human_count(self.reverse_madds)
        )
    }
}

/// A tape as a table with filters, from [`Tape::dump`]. Filters narrow the rows in the
/// order they are called and combine (each keeps a subset of what the previous kept);
/// `Display` prints the kept rows.
///
/// ```
/// let tape = retrograd_tape::Tape::<f64>::new();
/// let (a, b) = (tape.var(1.0), tape.var(2.0));
/// let y = a * b;
/// let unrelated = b + 1.0;
/// let d = tape.dump().path_to(y);
/// assert_eq!(d.ids(), vec![0, 1, 2]);
/// assert_eq!(tape.dump().last(1).ids(), vec![3]);
/// assert_eq!(tape.dump().ops(&["mul", "add_scalar"]).ids(), vec![2, 3]);
/// ```
#[derive(Debug, Clone)]
pub struct Dump {
    tape: usize,
    nodes: Vec<NodeInfo>,
    keep: Vec<bool>,
    dtype: &'static str,
}

impl Dump {
    /// Keeps only the nodes on a path to `output`: `output` and every node it depends on.
    ///
    /// # Panics
    /// When `output` belongs to another tape.
    #[track_caller]
    pub fn path_to<T: Float>(mut self, output: Var<'_, T>) -> Self {
        assert!(
            output.tape as *const Tape<T> as usize == self.tape,
            "Dump::path_to: the Var (created at {}) belongs to another tape",
            output.location()
        );
        let on_path = output.tape.ancestors(output.key);
        for (k, on) in self.keep.iter_mut().zip(on_path) {
            *k &= on;
        }
        self
    }

    /// Keeps only nodes of this op (`"matmul"`; leaves are `"var"` and `"constant"`).
    pub fn op(self, name: &str) -> Self {
        self.ops(&[name])
    }

    /// Keeps only nodes of any of these ops.
    pub fn ops(mut self, names: &[&str]) -> Self {
        for (k, n) in self.keep.iter_mut().zip(&self.nodes) {
            *k &= names.contains(&n.op.as_str());
        }
        self
    }

    /// Keeps only nodes that carry a name.
    pub fn labelled(mut self) -> Self {
        for (k, n) in self.keep.iter_mut().zip(&self.nodes) {
            *k &= n.label.is_some();
        }
        self
    }

    /// Keeps only the last `n` of the nodes kept so far.
    pub fn last(mut self, n: usize) -> Self {
        let mut left = n;
        for k in self.keep.iter_mut().rev() {
            if *k {
                if left == 0 {
                    *k = false;
                } else {
                    left -= 1;
                }
            }
        }
        self
    }

    /// The kept nodes, in evaluation order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes
            .iter()
            .zip(&self.keep)
            .filter(|(_, k)| **k)
            .map(|(n, _)| n)
    }

    /// The ids of the kept nodes.
    pub fn ids(&self) -> Vec<usize> {
        self.nodes().map(|n| n.id).collect()
    }

    /// The number of kept nodes.
    pub fn len(&self) -> usize {
        self.keep.iter().filter(|k| **k).count()
    }

    /// Whether no node is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type of the tape.
    pub fn dtype(&self) -> &'static str {
        self.dtype
    }

    /// Every node of the tape, kept or not (for exports that need the whole graph).
    pub(crate) fn all_nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The tape's identity, to check Vars against.
    pub(crate) fn tape_id(&self) -> usize {
        self.tape
    }
}

/// `target` and every node it depends on, by position.
impl<T: Float> Tape<T> {
    /// By position: whether `output` depends on the node (itself included).
    pub(crate) fn ancestors(&self, output: NodeKey) -> Vec<bool> {
        let inner = self.inner.borrow();
        let mut reach = Reach::default();
        inner.graph.between(None, &[output], &mut reach);
        let mut on = vec![false; inner.graph.len()];
        for k in reach.on_path_in_order() {
            on[k.pos()] = true;
        }
        on
    }
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEAD: [&str; 12] = [
            "id", "op", "inputs", "shape", "dtype", "bytes", "saved", "grad", "|grad|", "label",
            "scope", "location",
        ];
        const SCOPE: usize = 10;
        let rows: Vec<[String; 12]> = self
            .nodes()
            .map(|n| {
                let inputs: Vec<String> = n.inputs.iter().map(|i| format!("%{i}")).collect();
                let mut op = n.op_with_attributes();
                if n.kind == NodeKind::Spent {
                    op.push_str(" (freed)");
                }
                [
                    format!("%{}", n.id),
                    op,
                    inputs.join(" "),
                    format!("{:?}", n.shape),
                    n.dtype.clone(),
                    if n.value_freed {
                        "freed".into()
                    } else {
                        human_bytes(n.bytes)
                    },
                    human_bytes(n.saved_bytes),
                    if n.requires_grad { "yes" } else { "no" }.into(),
                    n.grad_norm.map_or("-".into(), format_norm),
                    n.label.clone().unwrap_or_else(|| "-".into()),
                    n.scope.clone().unwrap_or_else(|| "-".into()),
                    n.location.to_string(),
                ]
            })
            .collect();
        // The scope column only when some node has one (a tape recorded outside models).
        let scoped = self.nodes().any(|n| n.scope.is_some());
        let mut width = HEAD.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            let last = cells.len() - 1;
            for (i, (c, w)) in cells.iter().zip(width).enumerate() {
                if i == SCOPE && !scoped {
                    continue;
                } else if i == last {
                    writeln!(f, "{c}")?;
                } else if matches!(i, 5 | 6 | 8) {
                    write!(f, "{c:>w$}  ")?;
                } else {
                    write!(f, "{c:<w$}  ")?;
                }
            }
            Ok(())
        };
        line(f, &HEAD)?;
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            line(f, &cells)?;
        }
        let hidden = self.nodes.len() - rows.len();
        if hidden > 0 {
            writeln!(f, "({} of {} nodes shown)", rows.len(), self.nodes.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;
    use crate::GradOptions;
    use crate::arith::sum_to;

    #[test]
    fn the_dump_names_the_tests_own_lines() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1.0, 2.0]).named("x");
        let line_y = line!() + 1;
        let y = x * x;
        let line_s = line!() + 1;
        let s = sum_to(&y, &[]);
        let nodes = tape.nodes();
        assert_eq!(nodes[1].location.file, file!());
        assert_eq!(nodes[1].location.line, line_y);
        assert_eq!(nodes[2].location.line, line_s);
        let table = tape.dump().to_string();
        assert!(
            table.contains(&format!("{}:{}:", file!(), line_y)),
            "{table}"
        );
        assert!(
            table.contains(&format!("{}:{}:", file!(), line_s)),
            "{table}"
        );
        assert!(table.contains("sum_to(shape=[])"), "{table}");
        assert!(table.contains("x"), "{table}");
        // Display of the tape is the dump; Debug of a Var names its op, shape and line.
        assert_eq!(tape.to_string(), table);
        let dbg = format!("{s:?}");
        assert!(
            dbg.contains("sum_to") && dbg.contains(&format!(":{line_s}:")),
            "{dbg}"
        );
    }

    #[test]
    fn node_info_fields() {
        let tape = Tape::<f32>::new();
        let w = tape.var(array![[1.0f32, 2.0], [3.0, 4.0]]);
        let c = tape.constant(array![1.0f32, 1.0]);
        let y = w * c * 2.0f32;
        tape.label(y, "scaled");
        let info = tape.node_info(y);
        assert_eq!(info.id, 3);
        assert_eq!(info.op, "mul_scalar");
        assert_eq!(info.kind, NodeKind::Op);
        assert_eq!(info.attributes, vec![("c".to_string(), "2".to_string())]);
        assert_eq!(info.inputs, vec![2]);
        assert_eq!(info.shape, vec![2, 2]);
        assert_eq!(info.dtype, "f32");
        assert_eq!(info.bytes, 16);
        assert_eq!(info.madds, 4);
        assert!(info.requires_grad);
        assert_eq!(info.label.as_deref(), Some("scaled"));
        assert_eq!(info.grad_norm, None);
        let nodes = tape.nodes();
        assert_eq!(nodes[1].kind, NodeKind::Leaf);
        assert_eq!(nodes[1].op, "constant");
        assert!(!nodes[1].requires_grad);
        // Leaves are not counted as saved; the intermediate `w * c` and the output are.
        assert_eq!(nodes[0].saved_bytes, 0);
        assert_eq!(nodes[2].saved_bytes, 16);
        assert_eq!(nodes[3].saved_bytes, 16);
        // After a sweep that frees the graph nothing is held for backward any more.
        sum_to(&y, &[]).backward().unwrap();
        let nodes = tape.nodes();
        assert!(nodes.iter().all(|n| n.saved_bytes == 0));
        assert_eq!(nodes[3].kind, NodeKind::Spent);
        assert!(tape.dump().to_string().contains("(freed)"));
    }

    #[test]
    fn gradient_norms_are_recorded_only_when_asked() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![3.0, 4.0]);
        let y = sum_to(&(x * x * 0.5), &[]);
        let opts = GradOptions::new().retain_graph();
        y.backward_with(&opts).unwrap();
        assert!(tape.nodes().iter().all(|n| n.grad_norm.is_none()));
        tape.set_record_grad_norms(true);
        assert!(tape.records_grad_norms());
        y.backward_with(&opts).unwrap();
        let nodes = tape.nodes();
        assert_eq!(nodes[0].grad_norm, Some(5.0)); // the gradient is x
        assert_eq!(nodes.last().unwrap().grad_norm, Some(1.0)); // the seed
        // A sweep to an intermediate only visits nodes up to it.
        let mid = x * 2.0;
        let _ = tape.grad_with(sum_to(&mid, &[]), &[x], &opts).unwrap();
        let nodes = tape.nodes();
        assert_eq!(nodes[1].grad_norm, None, "not on the last sweep's path");
        assert!((nodes[0].grad_norm.unwrap() - 8f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn a_sweep_nested_in_another_keeps_the_outer_sweeps_norms() {
        // Under create_graph, a checkpoint's VJP runs a second sweep on this tape while
        // the first is under way; the table must still be the outer sweep's.
        let tape = Tape::<f64>::new();
        tape.set_record_grad_norms(true);
        let x = tape.var(array![3.0, 4.0]);
        let y = crate::checkpoint::checkpoint(|v| sum_to(&(v[0] * v[0] * 0.5), &[]), &[x]);
        let grads = tape
            .grad_with(y, &[x], &GradOptions::new().create_graph())
            .unwrap();
        assert_eq!(grads[0].value(), Tensor::from(array![3.0, 4.0]));
        let nodes = tape.nodes();
        assert_eq!(nodes[0].grad_norm, Some(5.0), "the leaf's gradient is x");
        assert_eq!(nodes[y.key.pos()].grad_norm, Some(1.0), "the seed");
    }

    #[test]
    fn filters() {
        let tape = Tape::<f64>::new();
        let a = tape.var(1.0).named("a");
        let b = tape.var(2.0);
        let p = a * b; // %2
        let q = b * b; // %3
        let y = p + a; // %4
        let _z = q + 1.0; // %5
        assert_eq!(tape.dump().len(), 6);
        assert_eq!(tape.dump().path_to(y).ids(), vec![0, 1, 2, 4]);
        assert_eq!(tape.dump().path_to(q).ids(), vec![1, 3]);
        assert_eq!(tape.dump().op("mul").ids(), vec![2, 3]);
        assert_eq!(tape.dump().op("var").ids(), vec![0, 1]);
        assert_eq!(tape.dump().last(2).ids(), vec![4, 5]);
        assert_eq!(tape.dump().last(0).ids(), Vec::<usize>::new());
        assert_eq!(tape.dump().path_to(y).op("mul").ids(), vec![2]);
        assert_eq!(tape.dump().path_to(y).last(2).ids(), vec![2, 4]);
        assert_eq!(tape.dump().labelled().ids(), vec![0]);
        let shown = tape.dump().path_to(y).to_string();
        assert!(shown.contains("(4 of 6 nodes shown)"), "{shown}");
        assert!(tape.dump().op("matmul").is_empty());
    }

    #[test]
    fn summary_counts_and_costs() {
        /// A test op with a matmul-like cost, to see `madds` overridden.
        struct Dot3;
        impl Rule<f64> for Dot3 {
            fn name(&self) -> &'static str {
                "dot3"
            }
            fn forward(&mut self, x: &[&Tensor<f64>]) -> Result<Tensor<f64>, String> {
                Ok(Tensor::scalar(x[0].view().sum()))
            }
            fn vjp<'t>(
                &self,
                cx: &crate::RuleCtx<'t, f64>,
                g: &crate::Val<'t, f64>,
            ) -> crate::Cotangents<'t, f64> {
                crate::Cotangents::one(crate::arith::broadcast_to(g, &cx.input_shape(0)))
            }
            fn jvp<'t>(
                &self,
                _: &crate::RuleCtx<'t, f64>,
                t: &[Option<crate::Val<'t, f64>>],
            ) -> Option<crate::Val<'t, f64>> {
                t[0].as_ref().map(|t| sum_to(t, &[]))
            }
            fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
                1000 * input_shapes[0].iter().product::<usize>() as u64
            }
            fn saved_bytes(&self) -> usize {
                7
            }
        }
        use crate::Rule;
        let tape = Tape::<f64>::new();
        let x = tape.var(array![1.0, 2.0, 3.0]);
        let d = x.detach(); // shares x's buffer
        let y = x * d; // 3 madds, 24 bytes
        let s = Var::apply(Dot3, &[&y]); // 3000 madds
        let _ = s.value();
        let sum = tape.summary();
        assert_eq!(sum.nodes, 4);
        assert_eq!((sum.leaves, sum.ops, sum.constants), (1, 2, 1));
        // An entered constant counts as a constant, as its dump row says.
        let other = Tape::<f64>::new();
        let (v, c) = (other.var(array![1.0]), other.constant(array![1.0]));
        let _ = v * c;
        let s2 = other.summary();
        assert_eq!((s2.leaves, s2.ops, s2.constants), (1, 1, 1));
        assert_eq!(
            sum.by_op,
            vec![("detach".into(), 1), ("dot3".into(), 1), ("mul".into(), 1)]
        );
        assert_eq!(
            sum.value_bytes,
            24 + 24 + 8,
            "the detached copy shares x's buffer"
        );
        // mul's output (read by dot3 and by mul's own rule) and dot3's output + state;
        // the detached value is read by mul's rule but shares x's buffer.
        assert_eq!(sum.saved_bytes, 24 + 8 + 7);
        assert_eq!(sum.forward_madds, 3003);
        assert_eq!(sum.reverse_madds, 6006);
        let text = sum.to_string();
        assert!(
            text.contains("4 nodes") && text.contains("forward 3003"),
            "{text}"
        );
        assert_eq!(x.shape().as_slice(), &[3]);
    }
}
