//! The graph layer: the arena of recorded nodes, and the answers to the questions every
//! sweep, transform and inspector asks of it (what is node `k`, what are its inputs, which
//! nodes lie between these sources and these sinks, lend me this node's rule).
//!
//! One identity per node: its [`NodeKey`]. The arena hands out slots in evaluation order
//! (slot `i + 1` holds the `i`-th node recorded; slotmap keeps slot 0 for itself), so a
//! key's index *is* the node's position and a topological order comes for free: no
//! position field, no separate order vector. [`Graph::clear`] frees the slots last-first,
//! which leaves slotmap's free list in ascending order, so a cleared tape refills its slots
//! in the same order. What the slotmap buys beyond a `Vec`: each slot's generation makes a
//! key kept past a clear (in a [`HookHandle`](crate::HookHandle), say) stale rather than a
//! silent alias of the new node in its slot.
//!
//! The graph also knows who still reads each value: a node's *readers* are the kept rules
//! that may read it (its own, and those of the ops it feeds). A sweep that does not keep
//! the graph drops rules as it goes ([`Graph::spend`]); asked to free values, it frees a
//! recorded op's array value there and then once its last reader is gone
//! ([`Graph::release`]), and only its shape is kept.

use slotmap::{Key, SlotMap, SparseSecondaryMap};
use smallvec::SmallVec;

use crate::Float;
use crate::error::{Error, SourceLocation};
use crate::rule::Rule;
use crate::tape::Tape;
use crate::tensor::{Shape, Tensor};

slotmap::new_key_type! {
    /// The key of a node in a tape's arena. Keys carry a generation, so a key kept past
    /// [`Tape::clear`] is recognised as stale rather than read as another node.
    pub struct NodeKey;
}

impl NodeKey {
    /// The node's position in evaluation order (its id in dumps: `%3`).
    #[inline]
    pub(crate) fn pos(self) -> usize {
        (self.data().as_ffi() as u32 as usize).wrapping_sub(1)
    }
}

/// A map by node, hashed with [`KeyHasher`].
pub(crate) type KeyMap<V> = std::collections::HashMap<NodeKey, V, BuildKeyHasher>;

/// Builds [`KeyHasher`]s.
pub(crate) type BuildKeyHasher = std::hash::BuildHasherDefault<KeyHasher>;

/// The hasher of maps by node: a key is a slot index and a generation the engine made, not
/// input anyone can choose to collide, so one multiply mixes it (SipHash, the default,
/// spent more on the gradients' index of a scalar graph than the rest of building it).
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    /// A key hashes as one `u64` (slot index in the low half, generation in the high).
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// How a node came to be, in two words: a recorded op's rule, or a plain origin that
/// names its op through the graph's name list (so that a node fits a 64-byte slot).
pub(crate) enum Origin<T: Float> {
    /// A recorded op with its rule.
    Op(Box<dyn Rule<T>>),
    /// Anything without a rule.
    Plain(Plain),
}

/// An origin without a rule.
#[derive(Clone, Copy)]
pub(crate) enum Plain {
    /// An input entered by the user; `requires_grad` says whether gradients flow to it.
    Leaf { requires_grad: bool },
    /// A value no gradient flows through: made by `detach`, or computed by the named op
    /// from inputs none of which requires a gradient (or under [`Tape::no_grad`]). Its
    /// rule was not kept.
    Constant(NameId),
    /// A recorded op whose rule a backward sweep without `retain_graph` consumed.
    Spent(NameId),
}

/// An op's name, as an index into [`Graph`]'s name list: a `&'static str` is two words,
/// this is half of one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct NameId(u32);

impl NameId {
    /// The placeholder of a node whose rule is lent out ([`RuleLoan`]).
    const LENT: NameId = NameId(u32::MAX);
}

impl<T: Float> Origin<T> {
    /// A user's input.
    pub(crate) const fn leaf(requires_grad: bool) -> Self {
        Origin::Plain(Plain::Leaf { requires_grad })
    }

    pub(crate) fn requires_grad(&self) -> bool {
        match self {
            Origin::Op(_) | Origin::Plain(Plain::Spent(_)) => true,
            Origin::Plain(Plain::Leaf { requires_grad }) => *requires_grad,
            Origin::Plain(Plain::Constant(_)) => false,
        }
    }

    /// Whether the node was recorded with a rule (derivatives flow through it).
    pub(crate) fn is_recorded(&self) -> bool {
        matches!(self, Origin::Op(_) | Origin::Plain(Plain::Spent(_)))
    }

    /// Whether the user entered the node.
    pub(crate) fn is_leaf(&self) -> bool {
        matches!(self, Origin::Plain(Plain::Leaf { .. }))
    }

    /// Whether a sweep consumed the node's rule.
    pub(crate) fn is_spent(&self) -> bool {
        matches!(self, Origin::Plain(Plain::Spent(_)))
    }
}

/// A node's inputs in 16 bytes: up to two keys inline (null-padded), or, for the rare op
/// with more, a range of the graph's side list.
#[derive(Clone, Copy)]
pub(crate) enum Inputs {
    Few([NodeKey; 2]),
    Many { start: u32, len: u32 },
}

/// One recorded value.
pub(crate) struct Node<T: Float> {
    pub(crate) value: Tensor<T>,
    pub(crate) origin: Origin<T>,
    inputs: Inputs,
    pub(crate) location: SourceLocation,
}

/// The arena: every recorded node, in evaluation order.
pub(crate) struct Graph<T: Float> {
    nodes: SlotMap<NodeKey, Node<T>>,
    /// The inputs of nodes with more than two.
    spilled: Vec<NodeKey>,
    /// Keys collected by `clear`, kept so clearing allocates nothing.
    clearing: Vec<NodeKey>,
    /// By position: how many kept rules may read the node's value (see the module docs),
    /// counted by a sweep that frees values.
    readers: Vec<u32>,
    /// The shapes of values freed at their last use, by node.
    freed: SparseSecondaryMap<NodeKey, Shape>,
    /// The names of constants and spent ops ([`NameId`]), each once.
    names: Vec<&'static str>,
    /// Recently used names by their address: a sweep that spends a node per op looks its
    /// name up here instead of growing `names` by a node's worth.
    name_cache: [Option<(&'static str, NameId)>; NAME_CACHE],
}

/// Entries of [`Graph`]'s name cache (a power of two).
const NAME_CACHE: usize = 16;

impl<T: Float> Graph<T> {
    pub(crate) fn with_capacity(nodes: usize) -> Self {
        Graph {
            nodes: SlotMap::with_capacity_and_key(nodes),
            spilled: Vec::new(),
            clearing: Vec::new(),
            readers: Vec::new(),
            freed: SparseSecondaryMap::new(),
            names: Vec::new(),
            name_cache: [None; NAME_CACHE],
        }
    }

    /// Keeps an op's name for a node that no longer has (or never kept) its rule. A name
    /// is found again by its address (a rule's name is a `&'static str`, one per op type),
    /// so the list holds each op's name about once however many nodes carry it.
    #[inline]
    pub(crate) fn name_id(&mut self, name: &'static str) -> NameId {
        // Op names are string literals that the linker may pack bytes apart, so the
        // address is mixed (Fibonacci hashing) before its top bits pick the entry.
        let mixed = (name.as_ptr() as usize as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let slot = (mixed >> (64 - NAME_CACHE.trailing_zeros())) as usize;
        if let Some((cached, id)) = self.name_cache[slot]
            && std::ptr::eq(cached, name)
        {
            return id;
        }
        let id = self.name_id_uncached(name);
        self.name_cache[slot] = Some((name, id));
        id
    }

    /// The name's entry in `names`, added if it is not there yet. Two names that share a
    /// cache entry evict each other on every lookup, so a miss searches the list instead of
    /// growing it: the list stays one entry per distinct name however the linker lays the
    /// names out.
    #[cold]
    fn name_id_uncached(&mut self, name: &'static str) -> NameId {
        if let Some(at) = self
            .names
            .iter()
            .rposition(|kept| std::ptr::eq(*kept, name))
        {
            return NameId(at as u32);
        }
        let id = NameId(self.names.len() as u32);
        self.names.push(name);
        id
    }

    /// The origin of a constant computed by op `name`.
    #[inline]
    pub(crate) fn constant(&mut self, name: &'static str) -> Origin<T> {
        Origin::Plain(Plain::Constant(self.name_id(name)))
    }

    /// The name of the op that made a node of this origin (`var` and `constant` for leaves).
    pub(crate) fn name(&self, origin: &Origin<T>) -> &'static str {
        match origin {
            Origin::Op(rule) => rule.name(),
            Origin::Plain(Plain::Leaf {
                requires_grad: true,
            }) => "var",
            Origin::Plain(Plain::Leaf {
                requires_grad: false,
            }) => "constant",
            Origin::Plain(Plain::Constant(id) | Plain::Spent(id)) => {
                self.names.get(id.0 as usize).copied().unwrap_or("")
            }
        }
    }

    /// The name of the op that made node `key`.
    pub(crate) fn op_name(&self, key: NodeKey) -> &'static str {
        self.name(&self.node(key).origin)
    }

    /// The number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// How many nodes fit before the arena reallocates.
    pub(crate) fn capacity(&self) -> usize {
        self.nodes.capacity()
    }

    /// Appends a node; its key's position is the number of nodes before it. Inlined into
    /// each op's recording: it is most of what recording a scalar op costs.
    #[inline(always)]
    pub(crate) fn push(
        &mut self,
        value: Tensor<T>,
        origin: Origin<T>,
        inputs: &[NodeKey],
        location: SourceLocation,
    ) -> NodeKey {
        let pos = self.nodes.len();
        assert!(
            pos < u32::MAX as usize - 1,
            "a tape holds fewer than 2^32 nodes"
        );
        let inputs = match *inputs {
            [] => Inputs::Few([NodeKey::null(); 2]),
            [a] => Inputs::Few([a, NodeKey::null()]),
            [a, b] => Inputs::Few([a, b]),
            ref many => {
                let start = self.spilled.len() as u32;
                self.spilled.extend_from_slice(many);
                Inputs::Many {
                    start,
                    len: many.len() as u32,
                }
            }
        };
        // The slot is filled with constants first and then field by field: a whole `Node`
        // handed to the arena's insert goes through memory in wide copies that read the
        // caller's narrower stores before they land, a stall on every recorded op.
        let key = self.nodes.insert_with_key(|_| Node {
            value: Tensor::Scalar(T::zero()),
            origin: Origin::leaf(false),
            inputs: Inputs::Few([NodeKey::null(); 2]),
            location,
        });
        debug_assert_eq!(key.pos(), pos, "slots are handed out in evaluation order");
        let node = self.node_mut(key);
        node.value = value;
        node.origin = origin;
        node.inputs = inputs;
        key
    }

    /// Counts, for every node, the kept rules that may read its value (its own and its
    /// consumers'), for [`release`](Graph::release). One pass over the graph, made by a
    /// sweep that frees values, so that recording pays nothing for it.
    pub(crate) fn count_readers(&mut self) {
        self.readers.clear();
        self.readers.resize(self.nodes.len(), 0);
        for (key, node) in &self.nodes {
            if let Origin::Op(_) = node.origin {
                self.readers[key.pos()] += 1;
                for input in Self::inputs_in(&self.spilled, node) {
                    self.readers[input.pos()] += 1;
                }
            }
        }
    }

    /// Drops the rule of op node `key`: a sweep that does not keep the graph is done with
    /// it (a later sweep through it gets [`Error::GraphFreed`]).
    #[inline]
    pub(crate) fn spend(&mut self, key: NodeKey, name: &'static str) {
        let id = self.name_id(name);
        self.node_mut(key).origin = Origin::Plain(Plain::Spent(id));
    }

    /// After [`spend`](Graph::spend), in a sweep that ran [`count_readers`]
    /// (Graph::count_readers) first: node `key`'s rule no longer reads its value nor its
    /// inputs', so frees every one of those array values that no kept rule reads any more
    /// and a recorded op computed, except `keep`'s (the sweep's output, which the caller
    /// reads after the sweep). Values the user entered (leaves) and constants are never
    /// freed; scalars are not worth it.
    pub(crate) fn release(&mut self, key: NodeKey, keep: NodeKey) {
        let inputs: SmallVec<[NodeKey; 4]> =
            SmallVec::from_slice(Self::inputs_in(&self.spilled, self.node(key)));
        for k in std::iter::once(key).chain(inputs) {
            // A node the count did not see (none should exist) is kept.
            let Some(readers) = self.readers.get_mut(k.pos()) else {
                continue;
            };
            *readers = readers.saturating_sub(1);
            if *readers > 0 || k == keep {
                continue;
            }
            let n = &mut self.nodes[k];
            if let (true, Tensor::Array(a)) = (n.origin.is_spent(), &n.value) {
                self.freed.insert(k, Shape::from_slice(a.shape()));
                n.value = Tensor::Scalar(T::nan());
            }
        }
    }

    /// The shape of a value freed at its last use, or `None` if node `key`'s value is there.
    #[inline]
    pub(crate) fn freed_shape(&self, key: NodeKey) -> Option<&Shape> {
        if self.freed.is_empty() {
            return None;
        }
        self.freed.get(key)
    }

    /// [`Error::ValueFreed`] for the first of `keys` whose value was freed (one branch when
    /// none was: the common case, on every op recorded).
    #[inline]
    pub(crate) fn check_values(&self, keys: &[NodeKey]) -> Result<(), Error> {
        if self.freed.is_empty() {
            return Ok(());
        }
        keys.iter().try_for_each(|k| self.value(*k).map(drop))
    }

    /// Node `key`'s shape, also when its value was freed.
    pub(crate) fn shape(&self, key: NodeKey) -> &[usize] {
        match self.freed_shape(key) {
            Some(shape) => shape,
            None => self.node(key).value.shape(),
        }
    }

    /// Node `key`'s value, or [`Error::ValueFreed`] when a sweep freed it.
    pub(crate) fn value(&self, key: NodeKey) -> Result<&Tensor<T>, Error> {
        let node = self.node(key);
        match self.freed_shape(key) {
            None => Ok(&node.value),
            Some(_) => Err(Error::ValueFreed {
                op: self.name(&node.origin),
                node: key.pos(),
                location: node.location,
            }),
        }
    }

    /// The node of `key`.
    ///
    /// # Panics
    /// When the key is stale. A `Var` always holds a live key (the tape can only be cleared
    /// when no Var borrows it), so this is an engine bug, not a user error.
    #[inline(always)]
    pub(crate) fn node(&self, key: NodeKey) -> &Node<T> {
        match self.nodes.get(key) {
            Some(node) => node,
            None => stale(key),
        }
    }

    #[inline(always)]
    pub(crate) fn node_mut(&mut self, key: NodeKey) -> &mut Node<T> {
        match self.nodes.get_mut(key) {
            Some(node) => node,
            None => stale(key),
        }
    }

    /// Whether `key` names a node of this graph (false for a key kept past a clear).
    #[cfg(test)]
    pub(crate) fn contains(&self, key: NodeKey) -> bool {
        self.nodes.contains_key(key)
    }

    /// A node's inputs, in the op's order.
    #[inline(always)]
    pub(crate) fn inputs<'a>(&'a self, node: &'a Node<T>) -> &'a [NodeKey] {
        Self::inputs_in(&self.spilled, node)
    }

    /// [`Graph::inputs`], borrowing only the side list (so the arena can be borrowed apart).
    #[inline(always)]
    fn inputs_in<'a>(spilled: &'a [NodeKey], node: &'a Node<T>) -> &'a [NodeKey] {
        match &node.inputs {
            Inputs::Few(keys) => {
                let n = if keys[0].is_null() {
                    0
                } else if keys[1].is_null() {
                    1
                } else {
                    2
                };
                &keys[..n]
            }
            Inputs::Many { start, len } => &spilled[*start as usize..(*start + *len) as usize],
        }
    }

    /// Every node with its key, in evaluation order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (NodeKey, &Node<T>)> {
        self.nodes.iter()
    }

    /// Removes every node, keeping the memory. Slots are freed last-first so that the
    /// free list hands them out again in ascending order (see the module docs).
    pub(crate) fn clear(&mut self) {
        self.clearing.clear();
        self.clearing.extend(self.nodes.keys());
        for key in self.clearing.drain(..).rev() {
            self.nodes.remove(key);
        }
        self.spilled.clear();
        self.readers.clear();
        self.freed.clear();
        self.names.clear();
        self.name_cache = [None; NAME_CACHE];
    }

    /// Which nodes lie on a path from a source to a sink, found by one depth-first walk
    /// back from the sinks (never recursion) over the recorded ops at or after the
    /// earliest source. A source is on a path when it reaches a sink; any other node when
    /// it is a recorded op and one of its inputs is on a path. `sources: None` means every
    /// node counts as a source (everything the sinks depend on). The result also keeps
    /// the key of each node it met, so callers can walk it in evaluation order.
    pub(crate) fn between(
        &self,
        sources: Option<&[NodeKey]>,
        sinks: &[NodeKey],
        reach: &mut Reach,
    ) {
        let lo = match sources {
            None => 0,
            Some(s) => s.iter().map(|k| k.pos()).min().unwrap_or(usize::MAX),
        };
        let hi = sinks.iter().map(|k| k.pos()).max();
        reach.reset(lo, hi.filter(|&hi| hi >= lo));
        let Some(hi) = reach.hi else { return };
        if let Some(sources) = sources {
            for &s in sources.iter().filter(|s| s.pos() <= hi) {
                reach.set(s, Mark::Source);
            }
        }
        let mut stack = std::mem::take(&mut reach.stack);
        // One walk per sink, each to completion, so that a node is decided only after
        // every one of its inputs is.
        for &sink in sinks.iter().filter(|k| k.pos() >= lo) {
            reach.visit(sink, &mut stack);
            while let Some((key, next)) = stack.pop() {
                let node = self.node(key);
                let follow = sources.is_none() || node.origin.is_recorded();
                let inputs = if follow { self.inputs(node) } else { &[] };
                if let Some(&input) = inputs.get(next) {
                    stack.push((key, next + 1));
                    if input.pos() >= lo {
                        reach.visit(input, &mut stack);
                    }
                    continue;
                }
                if reach.mark(key) == Mark::Visiting {
                    let live = sources.is_none()
                        || (node.origin.is_recorded() && inputs.iter().any(|i| reach.on_path(*i)));
                    reach.set(key, if live { Mark::OnPath } else { Mark::OffPath });
                }
            }
        }
        reach.stack = stack;
    }
}

/// A key that names no node: an engine bug (every `Var` holds a live key), kept out of the
/// hot path.
#[cold]
#[inline(never)]
fn stale(key: NodeKey) -> ! {
    panic!(
        "node %{} is not on this tape (a stale key: an engine bug)",
        key.pos()
    )
}

/// What [`Graph::between`] decided about a node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mark {
    Unseen,
    /// Met, not decided yet.
    Visiting,
    /// A source not (yet) met from a sink.
    Source,
    SourceOnPath,
    OnPath,
    OffPath,
}

impl Mark {
    pub(crate) fn on_path(self) -> bool {
        matches!(self, Mark::OnPath | Mark::SourceOnPath)
    }
}

/// The nodes between some sources and some sinks, by position, from [`Graph::between`].
/// Its buffers are reused from query to query.
#[derive(Default)]
pub(crate) struct Reach {
    lo: usize,
    hi: Option<usize>,
    marks: Vec<(Mark, Option<NodeKey>)>,
    stack: Vec<(NodeKey, usize)>,
}

impl Reach {
    fn reset(&mut self, lo: usize, hi: Option<usize>) {
        self.lo = lo;
        self.hi = hi;
        self.marks.clear();
        if let Some(hi) = hi {
            self.marks.resize(hi + 1 - lo, (Mark::Unseen, None));
        }
    }

    /// Marks a node met from a sink and queues its inputs, unless it was met before.
    fn visit(&mut self, key: NodeKey, stack: &mut Vec<(NodeKey, usize)>) {
        let mark = match self.mark(key) {
            Mark::Unseen => Mark::Visiting,
            Mark::Source => Mark::SourceOnPath,
            _ => return,
        };
        self.set(key, mark);
        stack.push((key, 0));
    }

    fn set(&mut self, key: NodeKey, mark: Mark) {
        self.marks[key.pos() - self.lo] = (mark, Some(key));
    }

    /// What the query decided about `key` (`Unseen` outside its range).
    #[inline]
    pub(crate) fn mark(&self, key: NodeKey) -> Mark {
        let p = key.pos();
        match self.hi {
            Some(hi) if p >= self.lo && p <= hi => self.marks[p - self.lo].0,
            _ => Mark::Unseen,
        }
    }

    /// Whether `key` lies on a path from a source to a sink.
    #[inline]
    pub(crate) fn on_path(&self, key: NodeKey) -> bool {
        self.mark(key).on_path()
    }

    /// The nodes on a path, in evaluation order.
    pub(crate) fn on_path_in_order(&self) -> impl Iterator<Item = NodeKey> + '_ {
        self.marks
            .iter()
            .filter(|(m, _)| m.on_path())
            .filter_map(|(_, k)| *k)
    }
}

/// A rule lent out of its node while it records ops on the tape (a recording sweep), so
/// that the tape is not borrowed during the call. Dropping the loan puts the rule back,
/// also when the rule panics, so a failed call never leaves its node without a rule.
pub(crate) struct RuleLoan<'a, T: Float> {
    tape: &'a Tape<T>,
    key: NodeKey,
    rule: Option<Box<dyn Rule<T>>>,
}

impl<'a, T: Float> RuleLoan<'a, T> {
    /// Takes the rule of op node `key`.
    ///
    /// # Errors
    /// [`Error::GraphFreed`] when a backward sweep without `retain_graph` consumed it.
    pub(crate) fn take(tape: &'a Tape<T>, key: NodeKey) -> Result<Self, Error> {
        let mut inner = tape.inner.borrow_mut();
        let node = inner.graph.node_mut(key);
        let lent = Origin::Plain(Plain::Spent(NameId::LENT));
        match std::mem::replace(&mut node.origin, lent) {
            Origin::Op(rule) => Ok(RuleLoan {
                tape,
                key,
                rule: Some(rule),
            }),
            other => {
                let location = node.location;
                node.origin = other;
                let op = inner.graph.op_name(key);
                Err(Error::GraphFreed { op, location })
            }
        }
    }

    pub(crate) fn rule(&self) -> &dyn Rule<T> {
        self.rule
            .as_deref()
            .expect("a loan holds its rule until dropped")
    }
}

impl<T: Float> Drop for RuleLoan<'_, T> {
    fn drop(&mut self) {
        if let (Some(rule), Ok(mut inner)) = (self.rule.take(), self.tape.inner.try_borrow_mut()) {
            inner.graph.node_mut(self.key).origin = Origin::Op(rule);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_fills_a_64_byte_slot() {
        assert_eq!(std::mem::size_of::<Inputs>(), 16);
        assert_eq!(std::mem::size_of::<Origin<f64>>(), 16);
        // slotmap adds a 4-byte generation to each slot: 60 bytes, aligned to 64.
        assert_eq!(std::mem::size_of::<Node<f64>>(), 56);
    }

    fn spent(graph: &mut Graph<f64>, name: &'static str) -> Origin<f64> {
        Origin::Plain(Plain::Spent(graph.name_id(name)))
    }

    fn chain(graph: &mut Graph<f64>, n: usize) -> Vec<NodeKey> {
        let here = std::panic::Location::caller();
        let mut keys = vec![graph.push(Tensor::Scalar(0.0), Origin::leaf(true), &[], here)];
        for i in 1..n {
            let prev = keys[i - 1];
            let f = spent(graph, "f");
            keys.push(graph.push(Tensor::Scalar(i as f64), f, &[prev], here));
        }
        keys
    }

    #[test]
    fn each_name_is_kept_once_however_many_nodes_carry_it() {
        let mut graph = Graph::<f64>::with_capacity(0);
        let ops = ["mul", "add", "tanh", "add_scalar", "add"];
        let ids: Vec<Vec<NameId>> = (0..1000)
            .map(|_| ops.iter().map(|name| graph.name_id(name)).collect())
            .collect();
        for round in &ids {
            for (id, name) in round.iter().zip(ops) {
                assert_eq!(graph.names[id.0 as usize], name);
            }
        }
        // "add" twice in a round is one static string: one entry per distinct string.
        assert_eq!(graph.names.len(), 4, "{:?}", graph.names);
        assert_eq!(graph.name(&Origin::Plain(Plain::Spent(NameId::LENT))), "");
    }

    #[test]
    fn names_that_share_a_cache_entry_are_still_kept_once() {
        // More distinct names than cache entries: some must share an entry and evict each
        // other on every round, whatever addresses the linker gives them.
        const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";
        let names: Vec<&'static str> = (0..LETTERS.len()).map(|i| &LETTERS[i..=i]).collect();
        assert!(names.len() > NAME_CACHE);
        let mut graph = Graph::<f64>::with_capacity(0);
        for _ in 0..100 {
            for name in &names {
                let id = graph.name_id(name);
                assert!(std::ptr::eq(graph.names[id.0 as usize], *name));
            }
        }
        assert_eq!(graph.names.len(), names.len());
    }

    #[test]
    fn cleared_graphs_refill_their_slots_in_order_and_old_keys_go_stale() {
        let mut graph = Graph::<f64>::with_capacity(0);
        let first = chain(&mut graph, 10);
        graph.clear();
        assert!(!graph.contains(first[3]));
        let second = chain(&mut graph, 4);
        graph.clear();
        let third = chain(&mut graph, 12);
        for (p, k) in third.iter().enumerate() {
            assert_eq!(k.pos(), p);
        }
        assert!(second.iter().all(|k| !graph.contains(*k)));
        let order: Vec<usize> = graph.iter().map(|(k, _)| k.pos()).collect();
        assert_eq!(order, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn many_inputs_spill_and_read_back_in_order() {
        let mut graph = Graph::<f64>::with_capacity(0);
        let keys = chain(&mut graph, 5);
        let here = std::panic::Location::caller();
        let g = spent(&mut graph, "g");
        let k = graph.push(Tensor::Scalar(1.0), g, &keys[..4], here);
        assert_eq!(graph.inputs(graph.node(k)), &keys[..4]);
        assert_eq!(graph.inputs(graph.node(keys[2])), &[keys[1]]);
        assert!(graph.inputs(graph.node(keys[0])).is_empty());
    }

    #[test]
    fn between_finds_the_nodes_on_a_path() {
        let mut graph = Graph::<f64>::with_capacity(0);
        let here = std::panic::Location::caller();
        let leaf = |g: &mut Graph<f64>| g.push(Tensor::Scalar(0.0), Origin::leaf(true), &[], here);
        let (a, b) = (leaf(&mut graph), leaf(&mut graph));
        let op = |g: &mut Graph<f64>, name, inputs: &[NodeKey]| {
            let origin = spent(g, name);
            g.push(Tensor::Scalar(0.0), origin, inputs, here)
        };
        let ab = op(&mut graph, "mul", &[a, b]);
        let bb = op(&mut graph, "sq", &[b]);
        let constant = graph.constant("const");
        let c = graph.push(Tensor::Scalar(0.0), constant, &[ab], here);
        let out = op(&mut graph, "add", &[ab, c]);
        let mut reach = Reach::default();
        graph.between(Some(&[a]), &[out], &mut reach);
        assert!(reach.on_path(a) && reach.on_path(ab) && reach.on_path(out));
        assert!(!reach.on_path(b) && !reach.on_path(bb) && !reach.on_path(c));
        assert_eq!(
            reach.on_path_in_order().collect::<Vec<_>>(),
            vec![a, ab, out]
        );
        // Everything the output depends on; `bb` is not among it.
        graph.between(None, &[out], &mut reach);
        assert_eq!(
            reach.on_path_in_order().collect::<Vec<_>>(),
            vec![a, b, ab, c, out]
        );
        // Several sinks, one the input of another: each is decided after its inputs.
        let neg = op(&mut graph, "neg", &[out]);
        graph.between(Some(&[a, b]), &[out, neg], &mut reach);
        assert!(reach.on_path(out) && reach.on_path(neg) && reach.on_path(b));
        // A source after the sink reaches nothing.
        graph.between(Some(&[bb]), &[ab], &mut reach);
        assert_eq!(reach.on_path_in_order().count(), 0);
    }
}
