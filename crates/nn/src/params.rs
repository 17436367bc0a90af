//! Parameters on a tape: [`Params`], what a module's `forward` reads its weights from, and
//! the training step that makes them ([`Session`], [`train_step`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use ndarray::ArrayD;
use rand::rngs::StdRng;
use retrograd_tape::{GradOptions, ScopeGuard, Tape, Tensor, Var};

use crate::gradients::ParamGradients;
use crate::init::rng_from_seed;
use crate::scalar::Scalar;
use crate::store::ParamStore;

/// What the modules of one forward pass share: the tape, the parameters by full name,
/// the mode, and the random stream of stochastic layers.
struct Shared<'t, T: Scalar> {
    tape: &'t Tape<T>,
    vars: HashMap<String, Var<'t, T>>,
    /// Names in the order they were entered (for error messages and `names`).
    order: Vec<String>,
    training: bool,
    rng: RefCell<StdRng>,
    /// New values of non-trained state (running statistics) reported by layers in this
    /// pass, by full name.
    buffers: RefCell<Vec<(String, ArrayD<T>)>>,
}

/// The parameters of one forward pass, as Vars on its tape, looked up by name; plus the
/// mode (training or evaluation) and a seeded random stream for layers like
/// [`Dropout`](crate::layers::Dropout).
///
/// A `Params` is a view with a name prefix: a container hands each child module
/// [`child`](Params::child)`("encoder")`, in which `get("0.weight")` reads the parameter
/// stored as `"encoder.0.weight"`. Views are cheap (a shared pointer and a string).
///
/// Made by [`Session::train_step`], [`Session::eval`] and [`train_step`]; or by hand with
/// [`Params::new`] and [`Params::insert`] (for example to check a layer's gradients with
/// Vars the gradient-checking kit made).
#[derive(Clone)]
pub struct Params<'t, T: Scalar> {
    shared: Rc<Shared<'t, T>>,
    prefix: String,
}

impl<'t, T: Scalar> Params<'t, T> {
    /// An empty set of parameters on `tape`, in training mode, with a random stream drawn
    /// from `seed`.
    pub fn new(tape: &'t Tape<T>, seed: u64) -> Self {
        Params {
            shared: Rc::new(Shared {
                tape,
                vars: HashMap::new(),
                order: Vec::new(),
                training: true,
                rng: RefCell::new(rng_from_seed(seed)),
                buffers: RefCell::new(Vec::new()),
            }),
            prefix: String::new(),
        }
    }

    /// Every parameter of `store` entered on `tape`: as leaves that require a gradient
    /// when `trainable`, else as constants (evaluation: nothing is recorded). Each is
    /// labelled with its name, which tape dumps and exports show.
    #[track_caller]
    pub fn from_store(
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        trainable: bool,
        seed: u64,
    ) -> Self {
        let mut p = Self::new(tape, seed);
        // The store's buffers are shared with the tape, not copied.
        for (name, value) in store.tensors() {
            let var = if trainable {
                tape.var(value)
            } else {
                tape.constant(value)
            };
            // Named on the tape too, so dumps and DOT exports show "0.weight", not a bare id.
            tape.label(var, name);
            p = p.insert(name, var);
        }
        p
    }

    /// Adds (or replaces) the parameter `name` (relative to this view's prefix).
    ///
    /// # Panics
    /// When other views of the same parameters are alive (insert while building, before
    /// handing out children), or `var` belongs to another tape.
    #[track_caller]
    pub fn insert(mut self, name: &str, var: Var<'t, T>) -> Self {
        let full = self.full_name(name);
        let shared = Rc::get_mut(&mut self.shared)
            .expect("Params::insert: other views of these parameters are alive");
        assert!(
            std::ptr::eq(var.tape(), shared.tape),
            "Params::insert: the Var for {full:?} (created at {}) belongs to another tape",
            var.location()
        );
        if shared.vars.insert(full.clone(), var).is_none() {
            shared.order.push(full);
        }
        self
    }

    /// Sets training mode (`true`, the default) or evaluation mode (`false`): dropout is
    /// active only in training mode.
    ///
    /// # Panics
    /// When other views of the same parameters are alive.
    pub fn training(mut self, training: bool) -> Self {
        Rc::get_mut(&mut self.shared)
            .expect("Params::training: other views of these parameters are alive")
            .training = training;
        self
    }

    /// The view of a child module: names are looked up under `prefix.`.
    pub fn child(&self, prefix: &str) -> Params<'t, T> {
        Params {
            shared: Rc::clone(&self.shared),
            prefix: self.full_name(prefix),
        }
    }

    /// The full name of `name` in this view: `"encoder.0"` + `"weight"` is
    /// `"encoder.0.weight"`.
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else if name.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// This view's prefix (empty at the top).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The parameter `name` (relative to this view), if there is one.
    pub fn try_get(&self, name: &str) -> Option<Var<'t, T>> {
        self.shared.vars.get(&self.full_name(name)).copied()
    }

    /// The parameter `name` (relative to this view).
    ///
    /// # Panics
    /// When there is no such parameter; the message gives the full name and the names
    /// there are (the usual cause: a store made for another model).
    #[track_caller]
    pub fn get(&self, name: &str) -> Var<'t, T> {
        match self.try_get(name) {
            Some(v) => v,
            None => panic!(
                "no parameter {:?} among {:?}: was the store made for this model (Module::init_store)?",
                self.full_name(name),
                self.shared.order
            ),
        }
    }

    /// Every parameter's full name, in the order they were entered.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.shared.order.iter().map(String::as_str)
    }

    /// `(full name, Var)` of every parameter, in the order they were entered.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Var<'t, T>)> {
        self.shared
            .order
            .iter()
            .map(|n| (n.as_str(), self.shared.vars[n]))
    }

    /// The tape the parameters live on.
    pub fn tape(&self) -> &'t Tape<T> {
        self.shared.tape
    }

    /// Enters data (a batch of inputs, targets) on the tape as a constant: no gradient
    /// flows to it. An owned array is moved in without a copy.
    #[track_caller]
    pub fn input(&self, value: impl Into<Tensor<T>>) -> Var<'t, T> {
        self.shared.tape.constant(value)
    }

    /// Opens the tape scope of the layer this view belongs to, called by its parameter path
    /// and `kind` (`"encoder.0 (Linear)"`, or just `"Linear"` at the top): tape dumps then
    /// say which layer recorded each op. Every layer of this crate, and every
    /// `#[derive(Module)]` model, opens one in `forward`; the scope closes when the guard
    /// drops.
    pub fn scope(&self, kind: &str) -> ScopeGuard<'t, T> {
        let name = if self.prefix.is_empty() {
            kind.to_owned()
        } else {
            format!("{} ({kind})", self.prefix)
        };
        self.shared.tape.scope(name)
    }

    /// Whether this is a training pass (dropout active).
    pub fn is_training(&self) -> bool {
        self.shared.training
    }

    /// Reports the new value of the non-trained state `name` (relative to this view), such
    /// as a batch norm's running mean: the training step hands it back and
    /// [`Session::update_buffers`] writes it into the store. The latest report of a name
    /// wins.
    pub fn update_buffer(&self, name: &str, value: ArrayD<T>) {
        let full = self.full_name(name);
        let mut buffers = self.shared.buffers.borrow_mut();
        buffers.retain(|(n, _)| *n != full);
        buffers.push((full, value));
    }

    /// Takes the buffers the pass's layers reported so far (full names).
    pub(crate) fn take_buffers(&self) -> Vec<(String, ArrayD<T>)> {
        self.shared.buffers.take()
    }

    /// Runs `f` with the pass's random stream (seeded, so a step is reproducible).
    pub fn with_rng<R>(&self, f: impl FnOnce(&mut StdRng) -> R) -> R {
        f(&mut self.shared.rng.borrow_mut())
    }
}

impl<T: Scalar> fmt::Debug for Params<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Params")
            .field("prefix", &self.prefix)
            .field("names", &self.shared.order)
            .field("training", &self.shared.training)
            .finish()
    }
}

/// Runs training steps and evaluations on one tape that is cleared and refilled each time,
/// so a training loop reuses the tape's memory instead of allocating it afresh every step.
///
/// Each call gets its own random stream for dropout, derived from the session's seed and a
/// call counter, so a run is reproducible from the seed.
///
/// The [`ParamStore`] outlives tapes. Each step enters every stored parameter on a tape as a
/// leaf that requires a gradient, hands the model a [`Params`] that maps names to those
/// leaves, runs the user's forward pass and loss, sweeps backwards once, and returns the
/// loss and the gradients by name ([`ParamGradients`]), ready for an optimiser:
///
/// ```
/// use retrograd_nn::{Module, Session, layers::{mlp, Activation}, loss, optim::{Adam, Optimizer}};
/// use ndarray::array;
///
/// let model = mlp::<f64>(&[2, 8, 2], Activation::Tanh);
/// let mut store = model.init_store(0);
/// let mut opt = Adam::new(1e-2);
/// let mut session = Session::new(0);
/// let x = array![[0.0, 1.0], [1.0, 0.0]];
/// let labels = [1, 0];
/// for _ in 0..5 {
///     let (loss, grads) = session.train_step(&store, |p| {
///         let logits = model.forward(p.input(x.clone()), p);
///         loss::cross_entropy(&logits, &labels)
///     })?;
///     assert!(loss.is_finite());
///     opt.step(&mut store, &grads)?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Parameters enter the tape without a copy: the tape shares the store's buffers (see
/// [`ParamStore`]) and lets go of them when the step returns, so an optimiser then updates
/// them in place. A failed or abandoned step leaves the store as it was.
pub struct Session<T: Scalar> {
    tape: Tape<T>,
    seed: u64,
    calls: u64,
    /// Buffer values the last training step reported, not yet written to a store.
    buffers: Vec<(String, ArrayD<T>)>,
}

impl<T: Scalar> fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("seed", &self.seed)
            .field("calls", &self.calls)
            .finish()
    }
}

impl<T: Scalar> Session<T> {
    /// A session whose stochastic layers draw from streams derived from `seed`.
    pub fn new(seed: u64) -> Self {
        Session {
            tape: Tape::new(),
            seed,
            calls: 0,
            buffers: Vec::new(),
        }
    }

    /// The seed of the next call's random stream (SplitMix64 of the seed and the call
    /// number: well-mixed, and distinct for every call).
    fn next_seed(&mut self) -> u64 {
        self.calls += 1;
        let mut z = self
            .seed
            .wrapping_add(self.calls.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// One training step: enters `store`'s parameters as leaves on the (cleared) tape, runs
    /// `loss_fn` in training mode, and returns the loss and the gradient of every
    /// parameter it depends on, by name. Parameters the loss does not depend on get no
    /// entry (optimisers skip them).
    ///
    /// # Errors
    /// The engine's error when the backward sweep fails (e.g. the loss is not a scalar).
    pub fn train_step<F>(
        &mut self,
        store: &ParamStore<T>,
        loss_fn: F,
    ) -> Result<(T, ParamGradients<T>), retrograd_tape::Error>
    where
        F: for<'t> FnOnce(&Params<'t, T>) -> Var<'t, T>,
    {
        let seed = self.next_seed();
        self.tape.clear();
        let result = step_on(&self.tape, store, seed, loss_fn);
        // Cleared now rather than at the next step, so that the tape no longer shares the
        // store's buffers and the optimiser's update needs no copy (the memory is kept).
        self.tape.clear();
        let (loss, grads, buffers) = result?;
        self.buffers = buffers;
        Ok((loss, grads))
    }

    /// Writes the non-trained state the last [`train_step`](Session::train_step) reported
    /// (a batch norm's running statistics) into `store`; call it once per step, beside the
    /// optimiser's `step`. Names the store does not hold are skipped.
    pub fn update_buffers(&mut self, store: &mut ParamStore<T>) {
        write_buffers(&mut self.buffers, store);
    }

    /// A forward pass in evaluation mode (dropout off), recording nothing: the parameters
    /// enter as constants. Returns `forward`'s result as an array.
    pub fn eval<F>(&mut self, store: &ParamStore<T>, forward: F) -> ArrayD<T>
    where
        F: for<'t> FnOnce(&Params<'t, T>) -> Var<'t, T>,
    {
        let seed = self.next_seed();
        self.tape.clear();
        let value = {
            let p = Params::from_store(&self.tape, store, false, seed).training(false);
            forward(&p).value()
        };
        // Clearing drops the tape's reference, so the result is moved out without a copy.
        self.tape.clear();
        value.into_array()
    }
}

/// One training step on a fresh tape: [`Session::train_step`] without the reuse (and with
/// the random stream of `seed`). Handy for tests and one-off gradients; buffer values
/// layers report (running statistics) are dropped, so train batch-normalised models with a
/// [`Session`].
///
/// ```
/// use retrograd_nn::{Module, layers::Linear, train_step};
/// use retrograd_ops::prelude::*;
///
/// let layer = Linear::new(3, 2);
/// let store = Module::<f64>::init_store(&layer, 1);
/// let (loss, grads) = train_step(&store, 0, |p| {
///     layer.forward(p.input(ndarray::array![[1.0, 2.0, 3.0]]), p).square().sum_all()
/// })?;
/// assert!(loss > 0.0);
/// assert_eq!(grads["weight"].shape(), &[2, 3]);
/// # Ok::<(), retrograd_tape::Error>(())
/// ```
///
/// # Errors
/// As [`Session::train_step`].
pub fn train_step<T, F>(
    store: &ParamStore<T>,
    seed: u64,
    loss_fn: F,
) -> Result<(T, ParamGradients<T>), retrograd_tape::Error>
where
    T: Scalar,
    F: for<'t> FnOnce(&Params<'t, T>) -> Var<'t, T>,
{
    step_on(&Tape::new(), store, seed, loss_fn).map(|(loss, grads, _)| (loss, grads))
}

/// A training step's loss, gradients and reported buffer values.
pub(crate) type StepResult<T> = (T, ParamGradients<T>, Buffers<T>);

/// Buffer values a training step reported, by name, in the order they were reported.
pub(crate) type Buffers<T> = Vec<(String, ArrayD<T>)>;

/// One training step recorded on `tape`: the loss, the gradients by name, and the buffer
/// values the step reported (a batch norm's running statistics), as
/// [`Session::update_buffers`] would write them.
pub(crate) fn step_on<T, F>(
    tape: &Tape<T>,
    store: &ParamStore<T>,
    seed: u64,
    loss_fn: F,
) -> Result<StepResult<T>, retrograd_tape::Error>
where
    T: Scalar,
    F: for<'t> FnOnce(&Params<'t, T>) -> Var<'t, T>,
{
    let p = Params::from_store(tape, store, true, seed);
    let loss = loss_fn(&p);
    let value = loss.value();
    // Nothing but the loss outlives `loss_fn` (its Vars cannot escape the closure), so the
    // sweep may free each activation once it has passed it.
    let mut gradients = loss.backward_with(&GradOptions::new().free_values())?;
    let mut grads = ParamGradients::with_capacity(store.len());
    for (name, var) in p.iter() {
        if let Some(g) = gradients.take(var) {
            grads.insert(name, g);
        }
    }
    // A non-scalar loss was refused by `backward` above, so the value has one element.
    let loss = value.try_item().unwrap_or_else(|_| T::nan());
    let buffers = p.shared.buffers.take();
    Ok((loss, grads, buffers))
}

/// Moves reported buffer values into `store`, skipping names it does not hold.
pub(crate) fn write_buffers<T: Scalar>(buffers: &mut Buffers<T>, store: &mut ParamStore<T>) {
    for (name, value) in buffers.drain(..) {
        if let Some(slot) = store.get_mut(&name) {
            *slot = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint;
    use crate::data::{digits, train_test_split};
    use crate::layers::{Activation, Dropout, Linear, mlp};
    use crate::loss;
    use crate::module::{Module, Sequential};
    use crate::optim::{Adam, Optimizer};
    use ndarray::{Array2, array, s};
    use retrograd_ops::prelude::*;

    #[test]
    fn parameters_from_a_store_carry_their_names_on_the_tape() {
        let model = mlp(&[3, 4, 2], Activation::Relu);
        let store: ParamStore<f64> = model.init_store(1);
        let tape = Tape::<f64>::new();
        let p = Params::from_store(&tape, &store, true, 0);
        for name in store.names() {
            assert_eq!(p.get(name).label().as_deref(), Some(name), "{name}");
        }
        assert!(tape.dump().to_string().contains("0.weight"));
    }

    #[test]
    fn views_nest_names_and_report_missing_ones() {
        let tape = Tape::<f64>::new();
        let p = Params::new(&tape, 0)
            .insert("encoder.0.weight", tape.var(1.0))
            .insert("head.bias", tape.var(2.0));
        let enc = p.child("encoder").child("0");
        assert_eq!(enc.prefix(), "encoder.0");
        assert_eq!(enc.get("weight").item(), 1.0);
        assert!(enc.try_get("bias").is_none());
        assert_eq!(
            p.names().collect::<Vec<_>>(),
            ["encoder.0.weight", "head.bias"]
        );
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| enc.get("bias")));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.contains("\"encoder.0.bias\"") && msg.contains("head.bias"),
            "{msg}"
        );
    }

    #[test]
    #[should_panic(expected = "belongs to another tape")]
    fn a_var_of_another_tape_is_refused() {
        let (a, b) = (Tape::<f64>::new(), Tape::<f64>::new());
        let _ = Params::new(&a, 0).insert("w", b.var(1.0));
    }

    #[test]
    fn train_step_returns_gradients_by_name() {
        // loss = sum((x Wᵀ + b)²) with x = [1, 2], W = [[1, 0], [0, 1]], b = [0, 1]:
        // y = [1, 3], dL/dy = 2y = [2, 6], dL/dW = dL/dyᵀ x = [[2, 4], [6, 12]], dL/db = [2, 6]
        let layer = Linear::new(2, 2);
        let mut store = Module::<f64>::init_store(&layer, 0);
        store.insert("weight", array![[1.0, 0.0], [0.0, 1.0]].into_dyn());
        store.insert("bias", array![0.0, 1.0].into_dyn());
        store.insert("unused", array![5.0].into_dyn());
        let (loss, grads) = train_step(&store, 0, |p| {
            layer
                .forward(p.input(array![1.0, 2.0]), p)
                .square()
                .sum_all()
        })
        .unwrap();
        assert_eq!(loss, 10.0);
        assert_eq!(grads["weight"], array![[2.0, 4.0], [6.0, 12.0]].into_dyn());
        assert_eq!(grads["bias"], array![2.0, 6.0].into_dyn());
        assert!(!grads.contains("unused"));

        // A session reuses its tape and gives the same answer.
        let mut session = Session::new(0);
        for _ in 0..3 {
            let (l, g) = session
                .train_step(&store, |p| {
                    layer
                        .forward(p.input(array![1.0, 2.0]), p)
                        .square()
                        .sum_all()
                })
                .unwrap();
            assert_eq!((l, &g["bias"]), (10.0, &grads["bias"]));
        }
    }

    #[test]
    fn a_session_step_and_an_sgd_update_copy_no_parameter() {
        let model = mlp::<f64>(&[3, 4, 2], Activation::Relu);
        let mut store = model.init_store(1);
        let buffers = |s: &ParamStore<f64>| s.iter().map(|(_, v)| v.as_ptr()).collect::<Vec<_>>();
        let before = buffers(&store);
        let mut session = Session::new(0);
        let mut opt = crate::optim::Sgd::new(0.1).momentum(0.9);
        let x = array![[1.0, 2.0, 3.0]];
        for _ in 0..3 {
            let (_, grads) = session
                .train_step(&store, |p| {
                    // The tape reads the store's own buffers.
                    let w = p.get("0.weight").value();
                    assert_eq!(w.view().as_ptr(), store.get("0.weight").unwrap().as_ptr());
                    loss::cross_entropy(&model.forward(p.input(x.clone()), p), &[1])
                })
                .unwrap();
            opt.step(&mut store, &grads).unwrap();
        }
        assert_ne!(
            store,
            model.init_store(1),
            "the steps changed the parameters"
        );
        assert_eq!(
            buffers(&store),
            before,
            "updated where they lie, never copied"
        );

        // A clone shares the buffers until one side writes: the writer copies.
        let kept = store.clone();
        let (_, grads) = session
            .train_step(&store, |p| model.forward(p.input(x.clone()), p).sum_all())
            .unwrap();
        opt.step(&mut store, &grads).unwrap();
        assert_eq!(buffers(&kept), before);
        assert_ne!(buffers(&store), before);
        assert_ne!(store, kept);
    }

    #[test]
    fn a_step_hands_over_the_sweeps_gradients_unshared_so_clipping_copies_none() {
        let model = mlp::<f64>(&[3, 4, 2], Activation::Relu);
        let store = model.init_store(1);
        let mut session = Session::new(0);
        let (_, mut grads) = session
            .train_step(&store, |p| {
                loss::cross_entropy(&model.forward(p.input(array![[1.0, 2.0, 3.0]]), p), &[1])
            })
            .unwrap();
        assert_eq!(
            grads.names().collect::<Vec<_>>(),
            ["0.weight", "0.bias", "2.weight", "2.bias"]
        );
        for (name, g) in grads.iter() {
            // Moved out of the sweep, not copied: nothing else holds the buffer.
            assert!(
                matches!(g, Tensor::Array(a) if std::sync::Arc::strong_count(a) == 1),
                "{name} is shared"
            );
        }
        let buffers =
            |g: &ParamGradients<f64>| g.iter().map(|(_, t)| t.view().as_ptr()).collect::<Vec<_>>();
        let before = buffers(&grads);
        let norm = crate::optim::clip_grad_norm(&mut grads, 1e-3);
        assert!(norm > 1e-3, "the clip scaled them: {norm}");
        assert_eq!(buffers(&grads), before, "scaled where they lie");
    }

    #[test]
    fn a_non_scalar_loss_is_an_error() {
        let layer = Linear::new(2, 2);
        let store = Module::<f64>::init_store(&layer, 0);
        let r = train_step(&store, 0, |p| layer.forward(p.input(array![1.0, 2.0]), p));
        assert!(r.is_err());
    }

    #[test]
    fn dropout_is_seeded_per_step_and_off_in_eval() {
        let model = Sequential::<f64>::new().append(Dropout::new(0.5));
        let store = model.init_store(0);
        let x = Array2::<f64>::ones((4, 8));
        let run = |seed| {
            let mut s = Session::new(seed);
            let a = s.eval(&store, |p| model.forward(p.input(x.clone()), p));
            let b = train_step(&store, seed, |p| {
                let y = model.forward(p.input(x.clone()), p);
                y.sum_all()
            });
            (a, b.unwrap().0)
        };
        let (eval, l1) = run(1);
        assert_eq!(eval, x.clone().into_dyn());
        let (_, l1_again) = run(1);
        assert_eq!(l1, l1_again);
        // Half the units survive, scaled by 2: the sum is 2 · (number kept), not 32.
        assert!(l1 != 32.0 && l1 % 2.0 == 0.0, "{l1}");
    }

    /// The four XOR points; a 2-8-2 tanh MLP trained with Adam from a fixed seed.
    fn train_xor() -> Vec<f64> {
        let model = mlp::<f64>(&[2, 8, 2], Activation::Tanh);
        let mut store = model.init_store(3);
        let mut opt = Adam::new(0.05);
        let mut session = Session::new(0);
        let x = array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
        let y = [0, 1, 1, 0];
        let mut losses = Vec::new();
        for _ in 0..200 {
            let (l, g) = session
                .train_step(&store, |p| {
                    loss::cross_entropy(&model.forward(p.input(x.clone()), p), &y)
                })
                .unwrap();
            opt.step(&mut store, &g).unwrap();
            losses.push(l);
        }
        let logits = session.eval(&store, |p| model.forward(p.input(x.clone()), p));
        let logits = logits.into_dimensionality::<ndarray::Ix2>().unwrap();
        assert_eq!(loss::accuracy(&logits, &y), 1.0);
        losses
    }

    #[test]
    fn xor_is_learned_deterministically() {
        let losses = train_xor();
        assert!(losses[0] > 0.5, "starts near ln 2: {}", losses[0]);
        assert!(
            *losses.last().unwrap() < 0.05,
            "final loss {:?}",
            losses.last()
        );
        assert_eq!(losses, train_xor());
    }

    #[test]
    fn a_digits_slice_is_learned_and_survives_a_checkpoint() {
        let (x, y) = digits::load::<f32>().unwrap();
        let (x, y) = (
            x.slice(s![..250, ..]).to_owned(),
            y.slice(s![..250]).to_owned(),
        );
        let split = train_test_split(&x, &y, 0.2, 0);
        let model = mlp::<f32>(&[64, 32, 10], Activation::Relu);
        let mut store = model.init_store(0);
        let mut opt = Adam::new(3e-3);
        let mut session = Session::new(0);
        let mut first = None;
        let mut last = 0.0;
        for epoch in 0..40u64 {
            let mut total = 0.0;
            let batches =
                crate::data::Batches::new(&split.x_train, &split.y_train, 25).shuffled(epoch);
            let n = batches.len();
            for (xb, yb) in batches {
                let labels = yb.to_vec();
                let (l, g) = session
                    .train_step(&store, |p| {
                        loss::cross_entropy(&model.forward(p.input(xb), p), &labels)
                    })
                    .unwrap();
                opt.step(&mut store, &g).unwrap();
                total += l;
            }
            last = total / n as f32;
            first.get_or_insert(last);
        }
        assert!(
            first.unwrap() > 1.0 && last < 0.1,
            "mean loss {first:?} -> {last}"
        );

        // Round trip through a checkpoint: a fresh store (other initial values) loads the
        // trained parameters and computes exactly the same logits.
        let logits = |s: &ParamStore<f32>, session: &mut Session<f32>| {
            session.eval(s, |p| model.forward(p.input(split.x_test.clone()), p))
        };
        let trained = logits(&store, &mut session);
        let bytes = checkpoint::to_bytes(&store).unwrap();
        let mut fresh = model.init_store(99);
        assert_ne!(fresh, store);
        checkpoint::load_bytes(&mut fresh, &bytes).unwrap();
        assert_eq!(fresh, store);
        assert_eq!(logits(&fresh, &mut session), trained);
        let acc = loss::accuracy(
            &trained.into_dimensionality::<ndarray::Ix2>().unwrap(),
            split.y_test.as_slice().unwrap(),
        );
        assert!(acc > 0.8, "held-out accuracy {acc}");

        // A model of another shape refuses the checkpoint and keeps its values.
        let other = mlp::<f32>(&[64, 16, 10], Activation::Relu);
        let mut wrong = other.init_store(0);
        let before = wrong.clone();
        let err = checkpoint::load_bytes(&mut wrong, &bytes).unwrap_err();
        assert!(err.to_string().contains("0.weight"), "{err}");
        assert_eq!(wrong, before);
    }
}
