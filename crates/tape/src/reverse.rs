//! The reverse sweep: cotangents flow from one output back to the nodes it depends on, one
//! node at a time in reverse evaluation order (a plain loop over positions, never
//! recursion). Its main loop is [`Reverse::run`]; each step it takes is a method below.

use smallvec::SmallVec;

use crate::Float;
use crate::error::{Error, Result, SourceLocation};
use crate::grad::GradOptions;
use crate::graph::{Graph, Mark, Node, NodeKey, Origin, Plain, RuleLoan};
use crate::rule::{Cotangents, Rule, RuleCtx};
use crate::sweep::{Cot, Scratch};
use crate::tape::{Tape, TapeInner};
use crate::tensor::{Shape, Tensor, shape_eq};
use crate::var::{Val, Var};

/// Which inputs a sweep differentiates with respect to.
pub(crate) enum Targets<'a> {
    /// Every leaf that requires a gradient (what `backward` does).
    AllLeaves,
    /// These nodes.
    Keys(&'a [NodeKey]),
}

/// A reverse sweep in progress.
struct Reverse<'a, 't, T: Float> {
    tape: &'t Tape<T>,
    /// The node the sweep starts from; its value outlives the sweep.
    output: NodeKey,
    targets: Targets<'a>,
    opts: &'a GradOptions<T>,
    /// Hooks, gradient norms or anomaly checks are on: each complete cotangent is handed
    /// to [`Tape::finish_cotangent`] (off, the sweep pays one branch per node for all three).
    per_node: bool,
    /// The lowest position a cotangent can reach; `slots[p - lo]` is position `p`'s.
    lo: usize,
    scratch: Scratch<T>,
    /// The rule context, built once and refilled at each node.
    cx: RuleCtx<'t, T>,
    /// The targets' cotangents, in the order the sweep met them (last-first).
    found: Vec<(NodeKey, Cot<T>)>,
}

/// Marks a reverse sweep as running on a tape while it lives, also when the sweep returns
/// early or unwinds, so that a sweep nested in it is known as such
/// ([`InspectState::enter_sweep`](crate::inspect)).
struct SweepRunning<'t, T: Float>(&'t Tape<T>);

impl<'t, T: Float> SweepRunning<'t, T> {
    fn enter(tape: &'t Tape<T>) -> Self {
        let mut inner = tape.inner.borrow_mut();
        let nodes = inner.graph.len();
        inner.inspect.enter_sweep(nodes);
        SweepRunning(tape)
    }
}

impl<T: Float> Drop for SweepRunning<'_, T> {
    fn drop(&mut self) {
        // A panic that unwinds through a borrow of the tape leaves the count as it is
        // rather than panicking again.
        if let Ok(mut inner) = self.0.inner.try_borrow_mut() {
            inner.inspect.leave_sweep();
        }
    }
}

impl<T: Float> Tape<T> {
    /// Runs a reverse sweep from `output` and returns the cotangent of every target it
    /// reached, last-first. The sweep's buffers go back to the tape, also on an error.
    pub(crate) fn reverse_sweep(
        &self,
        output: NodeKey,
        targets: Targets<'_>,
        opts: &GradOptions<T>,
    ) -> Result<Vec<(NodeKey, Cot<T>)>> {
        let _running = SweepRunning::enter(self);
        let mut sweep = Reverse::begin(self, output, targets, opts)?;
        let result = sweep.run();
        let Reverse {
            mut scratch, found, ..
        } = sweep;
        if result.is_err() {
            // A finished sweep took every slot; one that stopped early may leave some full.
            scratch.slots.clear();
        }
        self.inner.borrow_mut().scratch = scratch;
        result.map(|()| found)
    }
}

impl<'a, 't, T: Float> Reverse<'a, 't, T> {
    /// Checks the seed, decides which nodes lead to a target and seeds the output's slot.
    fn begin(
        tape: &'t Tape<T>,
        output: NodeKey,
        targets: Targets<'a>,
        opts: &'a GradOptions<T>,
    ) -> Result<Self> {
        let mut inner = tape.inner.borrow_mut();
        if let Some(e) = &inner.anomaly {
            return Err(e.clone());
        }
        let seed = seed_cotangent(&inner, output, opts)?;
        let per_node =
            !inner.hooks.is_empty() || inner.inspect.record_grad_norms || inner.anomaly_mode;
        if opts.free_values && !opts.retain_graph {
            inner.graph.count_readers();
        }
        let mut scratch = std::mem::take(&mut inner.scratch);
        let lo = match targets {
            Targets::AllLeaves => 0,
            Targets::Keys(keys) => {
                let sources: SmallVec<[NodeKey; 8]> = keys
                    .iter()
                    .copied()
                    .filter(|k| inner.graph.node(*k).origin.requires_grad())
                    .collect();
                inner
                    .graph
                    .between(Some(&sources), &[output], &mut scratch.reach);
                sources.iter().map(|k| k.pos()).min().unwrap_or(usize::MAX)
            }
        };
        drop(inner);
        let mut sweep = Reverse {
            tape,
            output,
            targets,
            opts,
            per_node,
            lo,
            scratch,
            cx: RuleCtx {
                inputs: SmallVec::new(),
                output: Val::Const(Tensor::Scalar(T::zero())),
                needs: 0,
            },
            found: Vec::new(),
        };
        let out = output.pos();
        let live = out >= lo && sweep.live(&tape.inner.borrow().graph, output);
        let slots = &mut sweep.scratch.slots;
        if live {
            // Between sweeps every slot is empty, so only the length changes.
            slots.truncate(out + 1 - lo);
            slots.resize_with(out + 1 - lo, || None);
            slots[out - lo] = Some((output, Cot::Tensor(seed)));
        } else {
            slots.clear();
        }
        Ok(sweep)
    }

    /// The main loop: pop each complete cotangent, last position first, hand it back if
    /// its node is a target, and pass it on through the node's rule.
    fn run(&mut self) -> Result<()> {
        let plain = !self.opts.create_graph;
        for i in (0..self.scratch.slots.len()).rev() {
            let Some((key, mut g)) = self.scratch.slots[i].take() else {
                continue;
            };
            if self.per_node {
                g = self.tape.finish_cotangent(key, g, self.opts.create_graph)?;
            }
            match g {
                Cot::Tensor(g) if plain => self.step_plain(key, g)?,
                g => self.step_recorded(key, g)?,
            }
        }
        Ok(())
    }

    fn is_target(&self, key: NodeKey, origin: &Origin<T>) -> bool {
        match self.targets {
            Targets::AllLeaves => origin.is_leaf() && origin.requires_grad(),
            Targets::Keys(_) => self.scratch.reach.mark(key) == Mark::SourceOnPath,
        }
    }

    /// Whether a cotangent of `key` is wanted: it lies on a path to a target.
    #[inline]
    fn live(&self, graph: &Graph<T>, key: NodeKey) -> bool {
        match self.targets {
            Targets::AllLeaves => graph.node(key).origin.requires_grad(),
            Targets::Keys(_) => self.scratch.reach.on_path(key),
        }
    }

    /// Bit `i` set: input `i` needs a cotangent (bit 63 stands for every input from the
    /// 64th on, which [`receive`](Self::receive) checks one by one).
    fn needs(&self, graph: &Graph<T>, inputs: &[NodeKey]) -> u64 {
        inputs
            .iter()
            .enumerate()
            .filter(|(_, k)| self.live(graph, **k))
            .fold(0, |m, (i, _)| m | 1 << i.min(63))
    }

    /// One node of a plain sweep, under one borrow of the tape: a target's cotangent is
    /// handed back, and a recorded op's passed on through its rule. The rule computes on
    /// plain values and touches no tape, so it stays in its node during the call (a
    /// panicking rule leaves the node as it was) and is freed after it, unless the graph
    /// is kept. Scalar nodes take the rule's scalar path when it has one.
    fn step_plain(&mut self, key: NodeKey, g: Tensor<T>) -> Result<()> {
        let tape = self.tape;
        let mut inner = tape.inner.borrow_mut();
        let graph = &inner.graph;
        let node = graph.node(key);
        let rule = match &node.origin {
            Origin::Op(rule) => rule.as_ref(),
            spent @ Origin::Plain(Plain::Spent(_)) => {
                return Err(freed(graph.name(spent), node.location));
            }
            leaf_or_constant => {
                if self.is_target(key, leaf_or_constant) {
                    self.found.push((key, Cot::Tensor(g)));
                }
                return Ok(());
            }
        };
        // Only chosen inputs can be ops (`backward` hands back leaves only).
        if let Targets::Keys(_) = self.targets
            && self.is_target(key, &node.origin)
        {
            self.found.push((key, Cot::Tensor(g.clone())));
        }
        match self.scalar_step(graph, node, rule, &g) {
            Some(true) if !self.opts.retain_graph => {
                let name = rule.name();
                self.spend(&mut inner.graph, key, name, true);
                Ok(())
            }
            Some(_) => Ok(()),
            None => {
                drop(inner);
                self.vjp_plain(key, g)
            }
        }
    }

    /// The general plain step of op node `key` (beyond the scalar path): its rule's VJP
    /// on constant inputs, output and cotangent, whose results are checked and added into
    /// the inputs' slots. Out of line, so that the scalar path keeps its registers.
    #[inline(never)]
    fn vjp_plain(&mut self, key: NodeKey, g: Tensor<T>) -> Result<()> {
        let tape = self.tape;
        let inner = tape.inner.borrow();
        let graph = &inner.graph;
        let node = graph.node(key);
        let Origin::Op(rule) = &node.origin else {
            return Err(freed(graph.name(&node.origin), node.location));
        };
        let name = rule.name();
        let inputs = graph.inputs(node);
        let needs = self.needs(graph, inputs);
        if needs == 0 {
            return Ok(());
        }
        self.cx.inputs.clear();
        self.cx.inputs.extend(
            inputs
                .iter()
                .map(|k| Val::Const(graph.node(*k).value.clone())),
        );
        self.cx.output = Val::Const(node.value.clone());
        self.cx.needs = needs;
        let cots = rule.vjp(&self.cx, &Val::Const(g));
        let location = node.location;
        let inputs: SmallVec<[NodeKey; 4]> = SmallVec::from_slice(inputs);
        drop(inner);
        self.receive(key, name, location, &inputs, needs, cots)?;
        if !self.opts.retain_graph {
            self.spend(&mut tape.inner.borrow_mut().graph, key, name, false);
        }
        Ok(())
    }

    /// After a node's step, when the graph is not kept: drops its rule and, when asked
    /// ([`GradOptions::free_values`]), frees the values that rule was the last to read (its
    /// own and its inputs', see [`Graph::release`]). A scalar step read only scalars, which
    /// are not freed.
    fn spend(&self, graph: &mut Graph<T>, key: NodeKey, name: &'static str, scalar: bool) {
        graph.spend(key, name);
        if self.opts.free_values && !scalar {
            graph.release(key, self.output);
        }
    }

    /// The scalar path of a plain step, taken when every value is a scalar, no per-node
    /// checks are on and the rule has a [`Rule::scalar_vjp`]: one look-up per input gives
    /// its value and whether it needs a cotangent. `Some(ran)` when taken (`ran` false:
    /// no input needed one), `None` (having done nothing) otherwise.
    #[inline]
    fn scalar_step(
        &mut self,
        graph: &Graph<T>,
        node: &Node<T>,
        rule: &dyn Rule<T>,
        g: &Tensor<T>,
    ) -> Option<bool> {
        let (Tensor::Scalar(g), Tensor::Scalar(y)) = (g, &node.value) else {
            return None;
        };
        let inputs = graph.inputs(node);
        if self.per_node || inputs.len() > 2 {
            return None;
        }
        let (mut xs, mut live) = ([T::zero(); 2], [false; 2]);
        for (i, k) in inputs.iter().enumerate() {
            let input = graph.node(*k);
            let Tensor::Scalar(v) = input.value else {
                return None;
            };
            xs[i] = v;
            live[i] = match self.targets {
                Targets::AllLeaves => input.origin.requires_grad(),
                Targets::Keys(_) => self.scratch.reach.on_path(*k),
            };
        }
        if !live.iter().any(|l| *l) {
            return Some(false);
        }
        let n = inputs.len();
        let mut cots = [T::zero(); 2];
        if !rule.scalar_vjp(&xs[..n], *y, *g, &mut cots[..n]) {
            return None;
        }
        for ((k, c), live) in inputs.iter().zip(cots).zip(live) {
            if !live {
                continue;
            }
            match &mut self.scratch.slots[k.pos() - self.lo] {
                Some((_, Cot::Tensor(Tensor::Scalar(acc)))) => *acc += c,
                Some((_, Cot::Tensor(acc))) => acc.add_assign(&Tensor::Scalar(c)),
                slot => *slot = Some((*k, Cot::Tensor(Tensor::Scalar(c)))),
            }
        }
        Some(true)
    }

    /// One node of a recording sweep (`create_graph`): a target's cotangent is handed
    /// back, and a recorded op's passed on through its rule.
    #[inline(never)]
    fn step_recorded(&mut self, key: NodeKey, g: Cot<T>) -> Result<()> {
        let (is_target, has_rule) = {
            let inner = self.tape.inner.borrow();
            let origin = &inner.graph.node(key).origin;
            (self.is_target(key, origin), origin.is_recorded())
        };
        if !has_rule {
            if is_target {
                self.found.push((key, g));
            }
            return Ok(());
        }
        if is_target {
            self.found.push((key, g.share()));
        }
        self.pass_on_recorded(key, g)
    }

    /// Passes a cotangent on through op node `key`'s rule, recording: the rule is lent out
    /// of its node (the tape must not be borrowed while the rule records), and returned
    /// afterwards, also if it panics.
    fn pass_on_recorded(&mut self, key: NodeKey, g: Cot<T>) -> Result<()> {
        let tape = self.tape;
        let (inputs, needs, location) = {
            let inner = tape.inner.borrow();
            let node = inner.graph.node(key);
            let inputs: SmallVec<[NodeKey; 4]> = SmallVec::from_slice(inner.graph.inputs(node));
            let needs = self.needs(&inner.graph, &inputs);
            (inputs, needs, node.location)
        };
        if needs == 0 {
            return Ok(());
        }
        let loan = RuleLoan::take(tape, key)?;
        self.cx.inputs.clear();
        self.cx
            .inputs
            .extend(inputs.iter().map(|&key| Val::Var(Var { tape, key })));
        self.cx.output = Val::Var(Var { tape, key });
        self.cx.needs = needs;
        let cots = loan.rule().vjp(&self.cx, &tape.cot_to_val(g));
        let name = loan.rule().name();
        drop(loan);
        self.receive(key, name, location, &inputs, needs, cots)
    }

    /// Checks what a rule returned (count, shapes, finiteness in anomaly mode) and adds each
    /// needed cotangent into its input's slot.
    fn receive(
        &mut self,
        key: NodeKey,
        name: &'static str,
        location: SourceLocation,
        inputs: &[NodeKey],
        needs: u64,
        cots: Cotangents<'t, T>,
    ) -> Result<()> {
        let tape = self.tape;
        if cots.len() != inputs.len() {
            wrong_count(name, location, cots.len(), inputs.len());
        }
        for (i, (c, &input)) in cots.into_iter().zip(inputs).enumerate() {
            let Some(c) = c else { continue };
            {
                let inner = tape.inner.borrow();
                let needed = if i < 63 {
                    needs >> i & 1 == 1
                } else {
                    self.live(&inner.graph, input)
                };
                if !needed {
                    continue;
                }
                let value = match &c {
                    Val::Const(t) => t,
                    Val::Var(v) => &inner.graph.node(v.key).value,
                };
                let expected = inner.graph.node(input).value.shape();
                if !shape_eq(value.shape(), expected) {
                    wrong_shape(name, location, i, value.shape(), expected);
                }
                if inner.anomaly_mode && !value.all_finite() {
                    let n = inner.graph.node(input);
                    return Err(Error::NonFinite {
                        what: "cotangent",
                        op: name,
                        node: key.pos(),
                        location,
                        into: Some((input.pos(), inner.graph.name(&n.origin), n.location)),
                    });
                }
            }
            let slot = &mut self.scratch.slots[input.pos() - self.lo];
            match (slot, c) {
                (Some((_, Cot::Tensor(acc))), Val::Const(c)) => acc.add_assign(&c),
                (slot, c) => tape.accumulate(slot, input, c),
            }
        }
        Ok(())
    }
}

impl<T: Float> Tape<T> {
    /// The per-node work on a complete cotangent, when some of it is on: the node's hooks
    /// (which may replace it), anomaly mode's check of the sum, and recording its norm.
    fn finish_cotangent(&self, key: NodeKey, g: Cot<T>, create_graph: bool) -> Result<Cot<T>> {
        let (has_hooks, anomaly_mode, record_norm) = {
            let inner = self.inner.borrow();
            (
                inner.hooks.by_node.contains_key(key),
                inner.anomaly_mode,
                inner.inspect.record_grad_norms,
            )
        };
        let value = |g: &Cot<T>| match g {
            Cot::Tensor(t) => t.clone(),
            Cot::Node(k) => self.with_node(*k, |n| n.value.clone()),
        };
        let mut g = g;
        let mut hooked = false;
        if has_hooks && let Some(new) = self.run_hooks(key, &value(&g)) {
            hooked = true;
            g = if create_graph {
                let location = self.with_node(key, |n| n.location);
                Cot::Node(self.push_constant(new, "hook", location))
            } else {
                Cot::Tensor(new)
            };
        }
        if anomaly_mode || record_norm {
            let v = value(&g);
            if anomaly_mode && !v.all_finite() {
                // Every contribution was checked as it was made, so a non-finite total
                // comes from a hook or from a sum that overflowed.
                let (op, location) = self.with_graph(|g| (g.op_name(key), g.node(key).location));
                return Err(Error::NonFinite {
                    what: if hooked {
                        "hooked cotangent"
                    } else {
                        "cotangent sum"
                    },
                    op: if hooked { "hook" } else { "add" },
                    node: key.pos(),
                    location,
                    into: Some((key.pos(), op, location)),
                });
            }
            if record_norm {
                let norm = v
                    .view()
                    .iter()
                    .map(|x| x.as_f64() * x.as_f64())
                    .sum::<f64>()
                    .sqrt();
                self.inner
                    .borrow_mut()
                    .inspect
                    .set_grad_norm(key.pos(), norm);
            }
        }
        Ok(g)
    }
}

/// The output's cotangent: the caller's seed, checked, or 1 for a one-element output.
fn seed_cotangent<T: Float>(
    inner: &TapeInner<T>,
    output: NodeKey,
    opts: &GradOptions<T>,
) -> Result<Tensor<T>> {
    let node = inner.graph.node(output);
    if inner.graph.freed_shape(output).is_some() {
        return Err(freed(inner.graph.name(&node.origin), node.location));
    }
    let shape = node.value.shape();
    match &opts.seed {
        Some(s) if s.shape() != shape => Err(Error::ShapeMismatch {
            what: "seed cotangent".into(),
            expected: Shape::from_slice(shape),
            got: Shape::from_slice(s.shape()),
        }),
        Some(s) if inner.anomaly_mode && !s.all_finite() => Err(Error::NonFinite {
            what: "seed cotangent",
            op: inner.graph.name(&node.origin),
            node: output.pos(),
            location: node.location,
            into: None,
        }),
        Some(s) => Ok(s.clone()),
        None if node.value.len() == 1 => Ok(Tensor::ones(shape)),
        None => Err(Error::NonScalarOutput {
            shape: Shape::from_slice(shape),
            location: node.location,
        }),
    }
}

/// The error for a node whose rule is gone.
fn freed(op: &'static str, location: SourceLocation) -> Error {
    Error::GraphFreed { op, location }
}

/// A VJP rule returned the wrong number of cotangents: a bug in that rule.
#[cold]
#[inline(never)]
fn wrong_count(name: &str, location: SourceLocation, got: usize, inputs: usize) -> ! {
    panic!(
        "the VJP rule of `{name}` (recorded at {location}) returned {got} cotangents for {inputs} inputs"
    )
}

/// A VJP rule returned a cotangent of the wrong shape: a bug in that rule.
#[cold]
#[inline(never)]
fn wrong_shape(
    name: &str,
    location: SourceLocation,
    i: usize,
    got: &[usize],
    expected: &[usize],
) -> ! {
    panic!(
        "the VJP rule of `{name}` (recorded at {location}) returned a cotangent of shape {got:?} \
         for input {i} of shape {expected:?}"
    )
}

#[cfg(test)]
mod anomaly_tests {
    use ndarray::array;

    use crate::arith::sum_to;
    use crate::{Cotangents, Error, Float, GradOptions, Rule, RuleCtx, Tape, Tensor, Val, Var};

    /// `ln x`, as a test rule (the real one lives in retrograd-ops).
    struct Ln;
    impl<T: Float> Rule<T> for Ln {
        fn name(&self) -> &'static str {
            "ln"
        }
        fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
            Ok(x[0].map(|v| v.ln()))
        }
        fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
            Cotangents::from([Some(g / cx.input(0))])
        }
        fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
            t[0].as_ref().map(|t| t / cx.input(0))
        }
    }

    /// `√x`, whose derivative is infinite at 0 although its value is finite.
    struct Sqrt;
    impl<T: Float> Rule<T> for Sqrt {
        fn name(&self) -> &'static str {
            "sqrt"
        }
        fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
            Ok(x[0].map(|v| v.sqrt()))
        }
        fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
            Cotangents::from([Some(g / &(cx.output() * T::of(2.0)))])
        }
        fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
            t[0].as_ref().map(|t| t / &(cx.output() * T::of(2.0)))
        }
    }

    fn non_finite(
        e: &Error,
    ) -> (
        &'static str,
        &'static str,
        usize,
        u32,
        Option<(usize, &'static str)>,
    ) {
        match e {
            Error::NonFinite {
                what,
                op,
                node,
                location,
                into,
            } => (
                what,
                op,
                *node,
                location.line(),
                into.map(|(n, op, _)| (n, op)),
            ),
            other => panic!("expected NonFinite, got {other}"),
        }
    }

    #[test]
    fn anomaly_mode_catches_nan_in_forward_and_names_the_op_and_line() {
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        assert!(tape.anomaly_mode());
        let x = tape.var(array![1.0, -1.0]);
        let a = x * 2.0;
        let line = line!() + 1;
        let l = Var::apply(Ln, &[&a]); // ln(-2) = NaN
        let y = sum_to(&(l * 3.0), &[]);
        let err = y.backward().unwrap_err();
        assert_eq!(non_finite(&err), ("forward value", "ln", 2, line, None));
        let text = err.to_string();
        assert!(text.contains("`ln` (node %2)"), "{text}");
        assert!(text.contains(&format!("{}:{line}:", file!())), "{text}");
        assert_eq!(tape.check_anomaly(), Err(err.clone()));
        // The first one found is kept; later NaNs do not overwrite it.
        let _ = x / (x * 0.0);
        assert_eq!(tape.check_anomaly(), Err(err));

        // 0/0 through the engine's own arithmetic.
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let z = tape.var(0.0);
        let line = line!() + 1;
        let q = z / z;
        assert_eq!(
            non_finite(&q.backward().unwrap_err()),
            ("forward value", "div", 1, line, None)
        );
    }

    #[test]
    fn anomaly_mode_catches_nan_in_backward_and_names_the_rule_that_made_it() {
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let x = tape.var(array![4.0, 0.0]);
        let line = line!() + 1;
        let r = Var::apply(Sqrt, &[&x]); // finite: [2, 0]
        let y = sum_to(&r, &[]);
        let err = y.backward().unwrap_err();
        // The cotangent sqrt's VJP made for x is infinite at 0.
        assert_eq!(
            non_finite(&err),
            ("cotangent", "sqrt", 1, line, Some((0, "var")))
        );
        assert!(
            err.to_string().contains("flowing into `var` (node %0)"),
            "{err}"
        );
        assert_eq!(
            tape.check_anomaly(),
            Ok(()),
            "the forward values were finite"
        );

        // Engine arithmetic: a / b with a tiny b is finite, its derivative in b overflows.
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let (a, b) = (tape.var(1.0), tape.var(1e-200));
        let line = line!() + 1;
        let q = a / b;
        let err = tape.grad(q, &[a, b]).unwrap_err();
        assert_eq!(
            non_finite(&err),
            ("cotangent", "div", 2, line, Some((1, "var")))
        );

        // Also under create_graph, where cotangents are nodes.
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let x = tape.var(0.0);
        let r = Var::apply(Sqrt, &[&x]);
        let err = tape.grad_graph(r, &[x]).unwrap_err();
        assert_eq!(
            non_finite(&err),
            (
                "cotangent",
                "sqrt",
                1,
                r.location().line(),
                Some((0, "var"))
            )
        );
        // The VJP's own recorded ops made that infinity as a forward value on the tape, so
        // the tape's anomaly now names one of them too.
        assert!(tape.check_anomaly().is_err());
    }

    #[test]
    fn anomaly_mode_checks_seeds_and_hook_replacements() {
        let tape = Tape::<f64>::new();
        tape.set_anomaly_mode(true);
        let x = tape.var(array![1.0, 2.0]);
        let y = x * 2.0;
        let seed = GradOptions::new()
            .seed(array![f64::NAN, 1.0])
            .retain_graph();
        let err = tape.grad_with(y, &[x], &seed).unwrap_err();
        assert_eq!(non_finite(&err).0, "seed cotangent");
        x.register_hook(|g| Some(g.map(|_| f64::INFINITY)));
        let err = tape.vjp(y, array![1.0, 1.0], &[x]).unwrap_err();
        assert_eq!(
            non_finite(&err),
            (
                "hooked cotangent",
                "hook",
                0,
                x.location().line(),
                Some((0, "var"))
            )
        );
    }

    #[test]
    fn without_anomaly_mode_nothing_is_checked_and_check_finite_finds_it_after() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![4.0, 0.0]);
        let w = tape.var(1.0);
        let line = x.location().line();
        let y = sum_to(&(Var::apply(Sqrt, &[&x]) * w), &[]);
        let g = y.backward().unwrap();
        assert!(g[x].view().iter().any(|v| v.is_infinite()));
        assert_eq!(
            non_finite(&g.check_finite().unwrap_err()),
            ("gradient", "var", 0, line, None)
        );
        assert_eq!(tape.check_anomaly(), Ok(()));

        let tape = Tape::<f64>::new();
        let x = tape.var(2.0);
        let g = (x * x).backward().unwrap();
        assert_eq!(g.check_finite(), Ok(()));
    }

    #[test]
    fn a_failed_sweep_leaves_the_tape_usable() {
        let mut tape = Tape::<f64>::new();
        {
            tape.set_anomaly_mode(true);
            let x = tape.var(0.0);
            let r = Var::apply(Sqrt, &[&x]);
            assert!(r.backward().is_err());
        }
        tape.clear();
        assert_eq!(tape.check_anomaly(), Ok(()));
        let x = tape.var(3.0);
        assert_eq!((x * x).backward().unwrap()[x].item(), 6.0);
    }
}
