//! Optimisers that update a [`ParamStore`] from a step's [`ParamGradients`], learning-rate
//! schedules, and gradient clipping.
//!
//! The update rules follow PyTorch's `torch.optim` exactly (same order of weight decay,
//! momentum, dampening, Nesterov, bias correction and epsilon placement), so
//! hyperparameters and results carry over. Hyperparameters, learning rates and reported
//! norms are `f64` whatever the element type; arithmetic on parameters and optimiser state
//! is in the element type `T`.
//!
//! Optimiser state (momentum buffers, Adam moments) is keyed by parameter name, so it
//! follows a parameter regardless of the order gradients arrive in. A step validates all
//! gradients before touching anything: an unknown name or a wrong shape returns an
//! [`OptimError`] and leaves the store and the state as they were. A parameter with no
//! gradient this step is skipped (its state does not advance either).
//!
//! ```
//! use ndarray::arr1;
//! use retrograd_nn::{ParamStore, ParamGradients};
//! use retrograd_nn::optim::{Optimizer, Sgd};
//!
//! let mut store = ParamStore::<f64>::new();
//! store.insert("w", arr1(&[1.0, 2.0]).into_dyn());
//! let grads: ParamGradients<f64> = [("w", arr1(&[0.5, -1.0]))].into_iter().collect();
//! let mut opt = Sgd::new(0.1);
//! opt.step(&mut store, &grads).unwrap();
//! assert_eq!(store.get("w").unwrap(), &arr1(&[0.95, 2.1]).into_dyn());
//! ```

use std::collections::HashMap;
use std::f64::consts::PI;
use std::fmt;

use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::gradients::ParamGradients;
use crate::scalar::{Scalar, cast};
use crate::store::ParamStore;

/// Why an optimiser step was refused. The store and the optimiser state are unchanged.
///
/// `{:?}` prints the same text as `{}`: an error that reaches the end of `main` through `?`
/// is printed with `Debug`, and there the message is what helps. Match on the variants
/// (or read the fields) for the structured facts.
#[derive(Clone, PartialEq, Eq)]
pub enum OptimError {
    /// A gradient names a parameter the store does not have.
    UnknownParam {
        /// The gradient's name.
        name: String,
    },
    /// A gradient's shape differs from its parameter's.
    ShapeMismatch {
        /// The parameter's name.
        name: String,
        /// The parameter's shape.
        param: Vec<usize>,
        /// The gradient's shape.
        grad: Vec<usize>,
    },
    /// The optimiser holds state for this name with another shape: the parameter was
    /// replaced by one of a new shape. Call [`Optimizer::reset_state`] after reshaping
    /// parameters.
    StateShapeMismatch {
        /// The parameter's name.
        name: String,
        /// The parameter's shape now.
        param: Vec<usize>,
        /// The shape of the optimiser's state for it.
        state: Vec<usize>,
    },
    /// [`Optimizer::load_state`] was given an entry this optimiser cannot use.
    InvalidState {
        /// The entry's name in the state store.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for OptimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptimError::UnknownParam { name } => {
                write!(
                    f,
                    "gradient for unknown parameter {name:?}: it is not in the store"
                )
            }
            OptimError::ShapeMismatch { name, param, grad } => write!(
                f,
                "gradient for {name:?} has shape {grad:?} but the parameter has shape {param:?}"
            ),
            OptimError::StateShapeMismatch { name, param, state } => write!(
                f,
                "optimiser state for {name:?} has shape {state:?} but the parameter now has \
                 shape {param:?}; call reset_state() after replacing parameters"
            ),
            OptimError::InvalidState { key, reason } => {
                write!(f, "optimiser state entry {key:?}: {reason}")
            }
        }
    }
}

impl fmt::Debug for OptimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for OptimError {}

/// Something that updates parameters from gradients.
pub trait Optimizer<T: Scalar> {
    /// Applies one update to every parameter that has a gradient in `grads`.
    ///
    /// Everything is validated first; on error nothing has changed.
    fn step(
        &mut self,
        store: &mut ParamStore<T>,
        grads: &ParamGradients<T>,
    ) -> Result<(), OptimError>;

    /// The current learning rate.
    fn lr(&self) -> f64;

    /// Sets the learning rate for the following steps (what a schedule drives).
    fn set_lr(&mut self, lr: f64);

    /// Forgets all per-parameter state (momentum, moments, step counts).
    fn reset_state(&mut self);

    /// The per-parameter state (moments, step counts, momentum buffers) as named arrays,
    /// `"{kind}.{parameter}"` (`"exp_avg.0.weight"`, `"step.0.weight"`), ready for
    /// [`checkpoint::save`](crate::checkpoint::save). Saved beside the parameters and given
    /// back to [`load_state`](Optimizer::load_state) of an optimiser built with the same
    /// settings, it makes a resumed run take exactly the steps an uninterrupted one would.
    /// Empty for an optimiser without state.
    fn state(&self) -> ParamStore<T> {
        ParamStore::new()
    }

    /// Replaces the per-parameter state with `state`, as [`state`](Optimizer::state) made
    /// it. Everything is checked first; on error the optimiser is unchanged.
    ///
    /// # Errors
    /// [`OptimError::InvalidState`] for an entry of a kind this optimiser does not keep,
    /// or an incomplete or inconsistent one.
    fn load_state(&mut self, state: &ParamStore<T>) -> Result<(), OptimError> {
        match state.names().next() {
            None => Ok(()),
            Some(key) => Err(invalid_state(key, "this optimiser keeps no state")),
        }
    }
}

fn invalid_state(key: &str, reason: &str) -> OptimError {
    OptimError::InvalidState {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Splits the state entry `"kind.parameter"` into its kind (one of `kinds`) and parameter.
fn split_state_key<'a>(key: &'a str, kinds: &[&str]) -> Result<(&'a str, &'a str), OptimError> {
    match key.split_once('.') {
        Some((kind, name)) if kinds.contains(&kind) && !name.is_empty() => Ok((kind, name)),
        _ => Err(invalid_state(
            key,
            &format!("expected \"KIND.PARAMETER\" with KIND one of {kinds:?}"),
        )),
    }
}

/// The names of `map` in sorted order, so that state stores are deterministic.
fn sorted_names<V>(map: &HashMap<String, V>) -> Vec<&String> {
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    names
}

/// Checks every gradient against the store and the optimiser's per-name state shapes.
fn validate<T: Scalar>(
    store: &ParamStore<T>,
    grads: &ParamGradients<T>,
    state_shape: impl Fn(&str) -> Option<Vec<usize>>,
) -> Result<(), OptimError> {
    // In the gradients' order (the store's), so that the error reported for several bad
    // entries is always the same one.
    for (name, grad) in grads.iter() {
        let Some(param) = store.get(name) else {
            return Err(OptimError::UnknownParam {
                name: name.to_owned(),
            });
        };
        if param.shape() != grad.shape() {
            return Err(OptimError::ShapeMismatch {
                name: name.to_owned(),
                param: param.shape().to_vec(),
                grad: grad.shape().to_vec(),
            });
        }
        if let Some(state) = state_shape(name)
            && state != param.shape()
        {
            return Err(OptimError::StateShapeMismatch {
                name: name.to_owned(),
                param: param.shape().to_vec(),
                state,
            });
        }
    }
    Ok(())
}

/// Parameters that have a gradient, in store order (deterministic iteration), each with a
/// view of its gradient (read where it lies, never copied).
fn with_grads<'a, T: Scalar>(
    store: &'a mut ParamStore<T>,
    grads: &'a ParamGradients<T>,
) -> impl Iterator<Item = (&'a str, &'a mut ArrayD<T>, ArrayViewD<'a, T>)> {
    store
        .iter_mut()
        .filter_map(|(name, p)| grads.get(name).map(|g| (name, p, g.view())))
}

/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and
/// (L2) weight decay, as `torch.optim.SGD`:
///
/// ```text
/// g ← g + weight_decay·p
/// if momentum ≠ 0:
///     b ← g                                   (first step)
///     b ← momentum·b + (1 − dampening)·g      (later steps)
///     g ← g + momentum·b   if nesterov, else   g ← b
/// p ← p − lr·g
/// ```
#[derive(Clone, Debug)]
pub struct Sgd<T> {
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    buffers: HashMap<String, ArrayD<T>>,
}

impl<T: Scalar> Sgd<T> {
    /// Plain SGD with learning rate `lr`: no momentum, no weight decay.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            buffers: HashMap::new(),
        }
    }

    /// Sets the momentum factor (0 disables momentum). Panics if negative.
    pub fn momentum(mut self, momentum: f64) -> Self {
        assert!(
            momentum >= 0.0,
            "Sgd: momentum must be >= 0, got {momentum}"
        );
        self.momentum = momentum;
        self
    }

    /// Sets the dampening of the gradient's contribution to the momentum buffer.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }

    /// Enables Nesterov momentum (needs momentum > 0 and dampening = 0, checked at
    /// [`Optimizer::step`]).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// Sets the L2 weight decay added to the gradient. Panics if negative.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        assert!(
            weight_decay >= 0.0,
            "Sgd: weight_decay must be >= 0, got {weight_decay}"
        );
        self.weight_decay = weight_decay;
        self
    }
}

impl<T: Scalar> Optimizer<T> for Sgd<T> {
    fn step(
        &mut self,
        store: &mut ParamStore<T>,
        grads: &ParamGradients<T>,
    ) -> Result<(), OptimError> {
        assert!(
            !self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0),
            "Sgd: Nesterov momentum needs momentum > 0 and dampening = 0, got momentum = {}, dampening = {}",
            self.momentum,
            self.dampening
        );
        validate(store, grads, |n| {
            self.buffers.get(n).map(|b| b.shape().to_vec())
        })?;
        let neg_lr: T = cast(-self.lr);
        let wd: T = cast(self.weight_decay);
        let momentum: T = cast(self.momentum);
        let one_minus_damp: T = cast(1.0 - self.dampening);
        let (decays, nesterov) = (self.weight_decay != 0.0, self.nesterov);
        // The gradient with weight decay, element by element: nothing is cloned.
        let decayed = move |g: T, p: T| if decays { g + wd * p } else { g };
        for (name, p, g) in with_grads(store, grads) {
            if self.momentum == 0.0 {
                Zip::from(p)
                    .and(g)
                    .for_each(|p, &g| *p += neg_lr * decayed(g, *p));
                continue;
            }
            match self.buffers.get_mut(name) {
                Some(buf) => Zip::from(p).and(g).and(buf).for_each(|p, &g, b| {
                    let d = decayed(g, *p);
                    *b = momentum * *b + one_minus_damp * d;
                    *p += neg_lr * if nesterov { d + momentum * *b } else { *b };
                }),
                None => {
                    // The first step starts the buffer at the (decayed) gradient itself.
                    let buf = Zip::from(&*p).and(g).map_collect(|&p, &g| decayed(g, p));
                    Zip::from(p).and(&buf).for_each(|p, &b| {
                        *p += neg_lr * if nesterov { b + momentum * b } else { b };
                    });
                    self.buffers.insert(name.to_owned(), buf);
                }
            }
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn reset_state(&mut self) {
        self.buffers.clear();
    }

    fn state(&self) -> ParamStore<T> {
        sorted_names(&self.buffers)
            .into_iter()
            .map(|n| (format!("momentum_buffer.{n}"), self.buffers[n].clone()))
            .collect()
    }

    fn load_state(&mut self, state: &ParamStore<T>) -> Result<(), OptimError> {
        let mut buffers = HashMap::with_capacity(state.len());
        for (key, value) in state.iter() {
            let (_, name) = split_state_key(key, &["momentum_buffer"])?;
            buffers.insert(name.to_owned(), value.clone());
        }
        self.buffers = buffers;
        Ok(())
    }
}

/// Per-parameter Adam state.
#[derive(Clone, Debug)]
struct AdamState<T> {
    step: i32,
    m: ArrayD<T>,
    v: ArrayD<T>,
}

/// What Adam and AdamW share; `decoupled` picks how weight decay enters.
#[derive(Clone, Debug)]
struct AdamCore<T> {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    state: HashMap<String, AdamState<T>>,
}

/// The kinds of an Adam state entry, as PyTorch names them.
const ADAM_STATE: [&str; 3] = ["step", "exp_avg", "exp_avg_sq"];

impl<T: Scalar> AdamCore<T> {
    fn export_state(&self) -> ParamStore<T> {
        let mut out = ParamStore::new();
        for name in sorted_names(&self.state) {
            let st = &self.state[name];
            let step = ArrayD::from_elem(ndarray::IxDyn(&[]), cast::<T>(f64::from(st.step)));
            out.insert(format!("step.{name}"), step);
            out.insert(format!("exp_avg.{name}"), st.m.clone());
            out.insert(format!("exp_avg_sq.{name}"), st.v.clone());
        }
        out
    }

    fn import_state(&mut self, state: &ParamStore<T>) -> Result<(), OptimError> {
        let mut parts: HashMap<&str, [Option<&ArrayD<T>>; 3]> = HashMap::new();
        for (key, value) in state.iter() {
            let (kind, name) = split_state_key(key, &ADAM_STATE)?;
            let slot = ADAM_STATE.iter().position(|k| *k == kind).unwrap_or(0);
            parts.entry(name).or_default()[slot] = Some(value);
        }
        let mut new_state = HashMap::with_capacity(parts.len());
        for (name, entry) in parts {
            let [Some(step), Some(m), Some(v)] = entry else {
                let key = format!("step.{name}");
                return Err(invalid_state(
                    &key,
                    "needs step, exp_avg and exp_avg_sq together",
                ));
            };
            let step = match step.iter().next().map(|&s| crate::scalar::to_f64(s)) {
                Some(s)
                    if step.len() == 1
                        && s >= 1.0
                        && s.fract() == 0.0
                        && s <= f64::from(i32::MAX) =>
                {
                    s as i32
                }
                _ => {
                    return Err(invalid_state(
                        &format!("step.{name}"),
                        "is not one positive whole number",
                    ));
                }
            };
            if m.shape() != v.shape() {
                let reason = format!(
                    "shape {:?} differs from exp_avg's {:?}",
                    v.shape(),
                    m.shape()
                );
                return Err(invalid_state(&format!("exp_avg_sq.{name}"), &reason));
            }
            let st = AdamState {
                step,
                m: m.clone(),
                v: v.clone(),
            };
            new_state.insert(name.to_owned(), st);
        }
        self.state = new_state;
        Ok(())
    }

    fn new(lr: f64, weight_decay: f64, decoupled: bool) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled,
            state: HashMap::new(),
        }
    }

    fn set_betas(&mut self, beta1: f64, beta2: f64) {
        assert!(
            (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2),
            "Adam: betas must be in [0, 1), got ({beta1}, {beta2})"
        );
        self.beta1 = beta1;
        self.beta2 = beta2;
    }

    fn set_eps(&mut self, eps: f64) {
        assert!(eps >= 0.0, "Adam: eps must be >= 0, got {eps}");
        self.eps = eps;
    }

    fn set_weight_decay(&mut self, weight_decay: f64) {
        assert!(
            weight_decay >= 0.0,
            "Adam: weight_decay must be >= 0, got {weight_decay}"
        );
        self.weight_decay = weight_decay;
    }

    fn step(
        &mut self,
        store: &mut ParamStore<T>,
        grads: &ParamGradients<T>,
    ) -> Result<(), OptimError> {
        validate(store, grads, |n| {
            self.state.get(n).map(|s| s.m.shape().to_vec())
        })?;
        let (b1, b2) = (cast::<T>(self.beta1), cast::<T>(self.beta2));
        let (one_b1, one_b2) = (cast::<T>(1.0 - self.beta1), cast::<T>(1.0 - self.beta2));
        let eps: T = cast(self.eps);
        let l2: T = cast(if self.decoupled {
            0.0
        } else {
            self.weight_decay
        });
        let decay: T = cast(1.0 - self.lr * self.weight_decay);
        for (name, p, g) in with_grads(store, grads) {
            let st = self
                .state
                .entry(name.to_owned())
                .or_insert_with(|| AdamState {
                    step: 0,
                    m: ArrayD::zeros(p.raw_dim()),
                    v: ArrayD::zeros(p.raw_dim()),
                });
            st.step = st.step.saturating_add(1);
            let bc1 = 1.0 - self.beta1.powi(st.step);
            let bc2_sqrt: T = cast((1.0 - self.beta2.powi(st.step)).sqrt());
            let step_size: T = cast(self.lr / bc1);
            if self.decoupled && self.weight_decay != 0.0 {
                p.mapv_inplace(|x| x * decay);
            }
            Zip::from(p)
                .and(g)
                .and(&mut st.m)
                .and(&mut st.v)
                .for_each(|p, &g, m, v| {
                    let g = g + l2 * *p;
                    *m = b1 * *m + one_b1 * g;
                    *v = b2 * *v + one_b2 * g * g;
                    let denom = v.sqrt() / bc2_sqrt + eps;
                    *p -= step_size * *m / denom;
                });
        }
        Ok(())
    }
}

/// Adam (Kingma & Ba, 2015) with bias correction and optional L2 weight decay, as
/// `torch.optim.Adam` (without amsgrad):
///
/// ```text
/// g ← g + weight_decay·p
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·g²
/// p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
/// ```
///
/// Defaults: β = (0.9, 0.999), ε = 1e-8, weight decay 0. `t` counts this parameter's
/// steps. Weight decay here is L2 regularisation, which Adam's scaling weakens for
/// parameters with large gradients; prefer [`AdamW`] for decay.
#[derive(Clone, Debug)]
pub struct Adam<T>(AdamCore<T>);

/// AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, as
/// `torch.optim.AdamW`: first `p ← p·(1 − lr·weight_decay)`, then the Adam update with the
/// plain gradient.
///
/// Defaults: β = (0.9, 0.999), ε = 1e-8, weight decay 0.01.
#[derive(Clone, Debug)]
pub struct AdamW<T>(AdamCore<T>);

macro_rules! adam_api {
    ($ty:ident, $decoupled:expr, $wd:expr) => {
        impl<T: Scalar> $ty<T> {
            /// A new optimiser with learning rate `lr` and the defaults listed above.
            pub fn new(lr: f64) -> Self {
                Self(AdamCore::new(lr, $wd, $decoupled))
            }

            /// Sets the decay rates of the first and second moment estimates.
            /// Panics unless both are in `[0, 1)`.
            pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
                self.0.set_betas(beta1, beta2);
                self
            }

            /// Sets ε, added to the denominator for numerical stability. Panics if negative.
            pub fn eps(mut self, eps: f64) -> Self {
                self.0.set_eps(eps);
                self
            }

            /// Sets the weight decay. Panics if negative.
            pub fn weight_decay(mut self, weight_decay: f64) -> Self {
                self.0.set_weight_decay(weight_decay);
                self
            }
        }

        impl<T: Scalar> Optimizer<T> for $ty<T> {
            fn step(
                &mut self,
                store: &mut ParamStore<T>,
                grads: &ParamGradients<T>,
            ) -> Result<(), OptimError> {
                self.0.step(store, grads)
            }

            fn lr(&self) -> f64 {
                self.0.lr
            }

            fn set_lr(&mut self, lr: f64) {
                self.0.lr = lr;
            }

            fn reset_state(&mut self) {
                self.0.state.clear();
            }

            fn state(&self) -> ParamStore<T> {
                self.0.export_state()
            }

            fn load_state(&mut self, state: &ParamStore<T>) -> Result<(), OptimError> {
                self.0.import_state(state)
            }
        }
    };
}

adam_api!(Adam, false, 0.0);
adam_api!(AdamW, true, 0.01);

/// The global L2 norm of all gradients together: `√(Σ g²)` over every element of every
/// array, accumulated in `f64`.
pub fn grad_norm<T: Scalar>(grads: &ParamGradients<T>) -> f64 {
    // Summed in the gradients' order (the store's), so the result is reproducible.
    grads
        .iter()
        .flat_map(|(_, g)| g.view().into_iter())
        .map(|&x| {
            let x = crate::scalar::to_f64(x);
            x * x
        })
        .sum::<f64>()
        .sqrt()
}

/// Scales all gradients together so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_`, and returns the norm before clipping.
///
/// The scale is `max_norm / (norm + 1e-6)`, applied only when it is below 1. If the norm is
/// not finite (a NaN or infinite gradient) the gradients are left unchanged and the
/// returned norm shows it: check it before stepping.
///
/// # Panics
/// If `max_norm` is negative or NaN.
pub fn clip_grad_norm<T: Scalar>(grads: &mut ParamGradients<T>, max_norm: f64) -> f64 {
    assert!(
        max_norm >= 0.0,
        "clip_grad_norm: max_norm must be >= 0, got {max_norm}"
    );
    let norm = grad_norm(grads);
    let coef = max_norm / (norm + 1e-6);
    if norm.is_finite() && coef < 1.0 {
        let c: T = cast(coef);
        // In place: a gradient is copied only if something else shares it.
        for (_, g) in grads.iter_mut() {
            g.view_mut().mapv_inplace(|x| x * c);
        }
    }
    norm
}

/// A learning rate as a function of the step (or epoch) number, counted from 0.
///
/// Drive an optimiser with it by calling [`Optimizer::set_lr`] before each step, or
/// [`LrSchedule::apply`]:
///
/// ```
/// use retrograd_nn::optim::{CosineAnnealing, LrSchedule, Optimizer, Sgd};
/// let sched = CosineAnnealing::new(0.1, 100).warmup(10);
/// let mut opt = Sgd::<f32>::new(0.0);
/// for step in 0..100 {
///     sched.apply(&mut opt, step);
///     // ... compute grads, opt.step(&mut store, &grads)?
/// }
/// assert!(opt.lr() < 1e-3);
/// ```
pub trait LrSchedule {
    /// The learning rate for step `step`.
    fn lr_at(&self, step: usize) -> f64;

    /// Sets `opt`'s learning rate to `self.lr_at(step)`.
    fn apply<T: Scalar, O: Optimizer<T> + ?Sized>(&self, opt: &mut O, step: usize)
    where
        Self: Sized,
    {
        opt.set_lr(self.lr_at(step));
    }
}

/// Step decay, as `torch.optim.lr_scheduler.StepLR`:
/// `lr = base_lr · gamma^⌊step / step_size⌋`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepDecay {
    /// The learning rate of the first period.
    pub base_lr: f64,
    /// Steps per period. Must be positive.
    pub step_size: usize,
    /// Factor applied at the start of each new period.
    pub gamma: f64,
}

impl StepDecay {
    /// A step decay schedule. Panics if `step_size` is 0.
    pub fn new(base_lr: f64, step_size: usize, gamma: f64) -> Self {
        assert!(step_size > 0, "StepDecay: step_size must be > 0");
        Self {
            base_lr,
            step_size,
            gamma,
        }
    }
}

impl LrSchedule for StepDecay {
    fn lr_at(&self, step: usize) -> f64 {
        let periods = step / self.step_size.max(1);
        self.base_lr * self.gamma.powi(i32::try_from(periods).unwrap_or(i32::MAX))
    }
}

/// Cosine annealing from `base_lr` to `min_lr` over `total_steps`, with an optional linear
/// warmup:
///
/// - warmup, `step < warmup_steps`: `lr = base_lr · (step + 1) / warmup_steps`, rising to
///   `base_lr` (no step runs with a zero rate);
/// - then `lr = min_lr + (base_lr − min_lr)·(1 + cos(π·s / S))/2` with
///   `s = step − warmup_steps`, `S = total_steps − warmup_steps` (PyTorch's
///   `CosineAnnealingLR` with `T_max = S` when there is no warmup);
/// - from `total_steps` on: `min_lr`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealing {
    /// Peak learning rate (reached at the end of warmup).
    pub base_lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Steps of linear warmup (0 for none).
    pub warmup_steps: usize,
    /// Step at which the rate reaches `min_lr`, warmup included.
    pub total_steps: usize,
}

impl CosineAnnealing {
    /// Annealing from `base_lr` to 0 over `total_steps`, no warmup.
    pub fn new(base_lr: f64, total_steps: usize) -> Self {
        Self {
            base_lr,
            min_lr: 0.0,
            warmup_steps: 0,
            total_steps,
        }
    }

    /// Sets the final learning rate.
    pub fn min_lr(mut self, min_lr: f64) -> Self {
        self.min_lr = min_lr;
        self
    }

    /// Sets the number of warmup steps (counted within `total_steps`).
    pub fn warmup(mut self, warmup_steps: usize) -> Self {
        self.warmup_steps = warmup_steps;
        self
    }
}

impl LrSchedule for CosineAnnealing {
    fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if step >= self.total_steps {
            return self.min_lr;
        }
        let s = (step - self.warmup_steps) as f64;
        let span = (self.total_steps - self.warmup_steps) as f64;
        self.min_lr + (self.base_lr - self.min_lr) * (1.0 + (PI * s / span).cos()) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn, arr1};
    use proptest::prelude::*;

    fn store1(name: &str, v: &[f64]) -> ParamStore<f64> {
        let mut s = ParamStore::new();
        s.insert(name, arr1(v).into_dyn());
        s
    }

    fn grads1(name: &str, v: &[f64]) -> ParamGradients<f64> {
        ParamGradients::from_iter([(name, arr1(v).into_dyn())])
    }

    fn close(a: &ArrayD<f64>, b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a} vs {b:?}");
        }
    }

    #[test]
    fn sgd_momentum_by_hand() {
        // lr 0.1, momentum 0.9; p0 = [1, -2]; the same gradient g = [1, 0.5] each step.
        // step 1: b = g = [1, 0.5];          p = [1 - 0.1, -2 - 0.05]     = [0.9, -2.05]
        // step 2: b = 0.9b + g = [1.9, 0.95]; p = [0.9 - 0.19, -2.05 - 0.095] = [0.71, -2.145]
        // step 3: b = [2.71, 1.355];          p = [0.71 - 0.271, -2.145 - 0.1355] = [0.439, -2.2805]
        let mut s = store1("w", &[1.0, -2.0]);
        let g = grads1("w", &[1.0, 0.5]);
        let mut opt = Sgd::new(0.1).momentum(0.9);
        let want = [[0.9, -2.05], [0.71, -2.145], [0.439, -2.2805]];
        for w in want {
            opt.step(&mut s, &g).unwrap();
            close(s.get("w").unwrap(), &w, 1e-12);
        }
    }

    #[test]
    fn sgd_nesterov_with_weight_decay_by_hand() {
        // lr 0.1, momentum 0.5, Nesterov, weight decay 0.1; p0 = [1], g = [2] each step.
        // step 1: d = 2 + 0.1·1 = 2.1; b = 2.1; d = 2.1 + 0.5·2.1 = 3.15; p = 1 - 0.315 = 0.685
        // step 2: d = 2 + 0.0685 = 2.0685; b = 0.5·2.1 + 2.0685 = 3.1185;
        //         d = 2.0685 + 1.55925 = 3.62775; p = 0.685 - 0.362775 = 0.322225
        let mut s = store1("w", &[1.0]);
        let g = grads1("w", &[2.0]);
        let mut opt = Sgd::new(0.1).momentum(0.5).nesterov(true).weight_decay(0.1);
        opt.step(&mut s, &g).unwrap();
        close(s.get("w").unwrap(), &[0.685], 1e-12);
        opt.step(&mut s, &g).unwrap();
        close(s.get("w").unwrap(), &[0.322225], 1e-12);
    }

    #[test]
    fn sgd_dampening_by_hand() {
        // momentum 0.9, dampening 0.5, lr 1, g = 1: b1 = 1 (no dampening on the first
        // step, as PyTorch), b2 = 0.9 + 0.5 = 1.4; p = 0 - 1 - 1.4 = -2.4
        let mut s = store1("w", &[0.0]);
        let g = grads1("w", &[1.0]);
        let mut opt = Sgd::new(1.0).momentum(0.9).dampening(0.5);
        opt.step(&mut s, &g).unwrap();
        opt.step(&mut s, &g).unwrap();
        close(s.get("w").unwrap(), &[-2.4], 1e-12);
    }

    #[test]
    #[should_panic(expected = "Nesterov momentum needs momentum > 0")]
    fn nesterov_without_momentum_panics() {
        let mut s = store1("w", &[0.0]);
        let _ = Sgd::new(0.1)
            .nesterov(true)
            .step(&mut s, &grads1("w", &[1.0]));
    }

    #[test]
    fn adam_by_hand() {
        // lr 0.1, β = (0.9, 0.999), ε = 1e-8; p0 = [1, 1]; g1 = [0.5, -2], g2 = [-1, 1].
        // step 1: m = 0.1·g1 = [0.05, -0.2]; v = 0.001·g1² = [0.00025, 0.004]
        //   m̂ = m/0.1 = g1; √v̂ = √(v/0.001) = |g1| ⇒ update = 0.1·sign(g1) (ε negligible)
        //   p = [0.9, 1.1]
        // step 2: m = 0.9·[0.05, -0.2] + 0.1·[-1, 1] = [-0.055, -0.08]
        //   v = 0.999·[0.00025, 0.004] + 0.001·[1, 1] = [0.00124975, 0.004996]
        //   bc1 = 0.19, bc2 = 0.001999
        //   m̂ = [-0.289473684, -0.421052632]
        //   √v̂ = [√0.625187594, √2.499249625] = [0.790688620, 1.580901523]
        //   p = [0.9 + 0.1·0.366100, 1.1 + 0.1·0.266337] = [0.936610, 1.126634]
        let mut s = store1("w", &[1.0, 1.0]);
        let mut opt = Adam::new(0.1);
        opt.step(&mut s, &grads1("w", &[0.5, -2.0])).unwrap();
        close(s.get("w").unwrap(), &[0.9, 1.1], 1e-7);
        opt.step(&mut s, &grads1("w", &[-1.0, 1.0])).unwrap();
        close(s.get("w").unwrap(), &[0.936_610_0, 1.126_633_7], 1e-6);
    }

    #[test]
    fn adam_l2_versus_adamw_decoupled() {
        // p0 = 2, g = 0, lr 0.1, weight decay 0.5, one step.
        // Adam (L2): g' = 0.5·2 = 1 ⇒ update 0.1·sign(1) ⇒ p = 1.9
        // AdamW: p ← 2·(1 - 0.05) = 1.9, then g = 0 ⇒ m = v = 0 ⇒ no further change: 1.9
        // Second step with g = 0 tells them apart:
        // Adam: g' = 0.95; m = 0.09 + 0.095 = 0.185, v = 0.000999 + 0.0009025 = 0.0019015
        //   m̂ = 0.185/0.19 = 0.973684; √v̂ = √(0.0019015/0.001999) = 0.975301
        //   p = 1.9 - 0.1·0.998342 = 1.800166
        // AdamW: p = 1.9·0.95 = 1.805; m = v = 0: 0/(0 + ε) = 0 ⇒ 1.805
        let g = grads1("w", &[0.0]);
        let mut a = store1("w", &[2.0]);
        let mut adam = Adam::new(0.1).weight_decay(0.5);
        adam.step(&mut a, &g).unwrap();
        close(a.get("w").unwrap(), &[1.9], 1e-7);
        adam.step(&mut a, &g).unwrap();
        close(a.get("w").unwrap(), &[1.800_166], 1e-6);

        let mut w = store1("w", &[2.0]);
        let mut adamw = AdamW::new(0.1).weight_decay(0.5);
        adamw.step(&mut w, &g).unwrap();
        close(w.get("w").unwrap(), &[1.9], 1e-12);
        adamw.step(&mut w, &g).unwrap();
        close(w.get("w").unwrap(), &[1.805], 1e-12);
    }

    #[test]
    fn adamw_f32_by_hand() {
        let mut s32 = ParamStore::<f32>::new();
        s32.insert("w", arr1(&[1.0f32, 1.0]).into_dyn());
        let mut opt = AdamW::new(0.1);
        for g in [[0.5f32, -2.0], [-1.0, 1.0]] {
            let grads = ParamGradients::from_iter([("w", arr1(&g))]);
            opt.step(&mut s32, &grads).unwrap();
        }
        // AdamW's default decay 0.01 shrinks p by (1 - 0.1·0.01) = 0.999 before each Adam
        // update of adam_by_hand (the moments do not see the decay):
        // step 1: p = [0.999 - 0.1, 0.999 + 0.1] = [0.899, 1.099]
        // step 2: p = [0.899·0.999 + 0.0366100, 1.099·0.999 + 0.0266337] = [0.934711, 1.124535]
        let w = s32.get("w").unwrap();
        assert!(
            (w[0] - 0.934_711).abs() < 1e-5 && (w[1] - 1.124_535).abs() < 1e-5,
            "{w}"
        );
    }

    #[test]
    fn params_without_grads_are_skipped_and_state_is_per_name() {
        let mut s = ParamStore::<f64>::new();
        s.insert("a", arr1(&[1.0]).into_dyn());
        s.insert("b", arr1(&[1.0]).into_dyn());
        let mut opt = Sgd::new(1.0).momentum(0.5);
        opt.step(&mut s, &grads1("a", &[1.0])).unwrap();
        assert_eq!(s.get("b").unwrap()[0], 1.0);
        // b's first step starts a fresh buffer: b = 1 - 1 = 0; a's buffer goes on: 0 - 1.5
        let both: ParamGradients<f64> = [("a", 1.0), ("b", 1.0)]
            .into_iter()
            .map(|(n, g)| (n, arr1(&[g])))
            .collect();
        opt.step(&mut s, &both).unwrap();
        assert_eq!(s.get("a").unwrap()[0], -1.5);
        assert_eq!(s.get("b").unwrap()[0], 0.0);
    }

    /// Trains `steps` steps of a quadratic bowl, then checks that an optimiser rebuilt from
    /// the saved state (through checkpoint bytes) takes the very step the original takes.
    fn resumes_exactly<O: Optimizer<f64>>(make: impl Fn() -> O) {
        let target = arr1(&[1.0, -2.0, 3.0]).into_dyn();
        let grads_at = |s: &ParamStore<f64>| -> ParamGradients<f64> {
            let mut g = ParamGradients::new();
            g.insert("w", (s.get("w").unwrap() - &target) * 2.0);
            g.insert("b", s.get("b").unwrap().mapv(|b| b - 0.5));
            g
        };
        let mut store = ParamStore::new();
        store.insert("w", ArrayD::zeros(IxDyn(&[3])));
        store.insert("b", ArrayD::from_elem(IxDyn(&[]), 4.0));
        let mut opt = make();
        for _ in 0..5 {
            let g = grads_at(&store);
            opt.step(&mut store, &g).unwrap();
        }
        let saved_params = crate::checkpoint::to_bytes(&store).unwrap();
        let saved_state = crate::checkpoint::to_bytes(&opt.state()).unwrap();
        let g = grads_at(&store);
        opt.step(&mut store, &g).unwrap();

        let mut resumed_store: ParamStore<f64> =
            crate::checkpoint::new_from_bytes(&saved_params).unwrap();
        let mut resumed = make();
        resumed
            .load_state(&crate::checkpoint::new_from_bytes(&saved_state).unwrap())
            .unwrap();
        let g = grads_at(&resumed_store);
        resumed.step(&mut resumed_store, &g).unwrap();
        assert_eq!(resumed_store, store);

        // Without the state the step differs: the check above is not vacuous.
        let mut cold_store: ParamStore<f64> =
            crate::checkpoint::new_from_bytes(&saved_params).unwrap();
        let g = grads_at(&cold_store);
        make().step(&mut cold_store, &g).unwrap();
        assert_ne!(cold_store, store);
    }

    #[test]
    fn adam_adamw_and_sgd_resume_exactly_from_saved_state() {
        resumes_exactly(|| Adam::new(0.1));
        resumes_exactly(|| AdamW::new(0.1).weight_decay(0.05));
        resumes_exactly(|| Sgd::new(0.05).momentum(0.9).nesterov(true));
        let names: Vec<String> = {
            let mut s = ParamStore::new();
            s.insert("w", arr1(&[1.0]).into_dyn());
            let mut opt = Adam::new(0.1);
            opt.step(&mut s, &grads1("w", &[1.0])).unwrap();
            opt.state().names().map(str::to_owned).collect()
        };
        assert_eq!(names, ["step.w", "exp_avg.w", "exp_avg_sq.w"]);
    }

    #[test]
    fn bad_state_is_refused_and_nothing_changes() {
        let mut s = ParamStore::new();
        s.insert("w", arr1(&[1.0, 2.0]).into_dyn());
        let mut opt = Adam::new(0.1);
        opt.step(&mut s, &grads1("w", &[1.0, 1.0])).unwrap();
        let good = opt.state();

        let mut partial = good.clone();
        partial.insert("exp_avg.v", arr1(&[0.0]).into_dyn());
        let err = opt.load_state(&partial).unwrap_err();
        assert!(err.to_string().contains("\"step.v\""), "{err}");

        let unknown: ParamStore<f64> = [("momentum_buffer.w", arr1(&[0.0]).into_dyn())]
            .into_iter()
            .collect();
        assert!(matches!(
            opt.load_state(&unknown),
            Err(OptimError::InvalidState { .. })
        ));
        let mut bad_step = good.clone();
        bad_step.insert("step.w", ArrayD::from_elem(IxDyn(&[]), 0.5));
        assert!(opt.load_state(&bad_step).is_err());
        assert_eq!(opt.state(), good);

        // Plain SGD keeps no state: its store is empty, and an empty store loads.
        let mut sgd = Sgd::<f64>::new(0.1);
        assert!(sgd.load_state(&ParamStore::new()).is_ok());
        assert!(Optimizer::<f64>::state(&sgd).is_empty());
    }

    #[test]
    fn a_refused_step_shows_its_message_through_debug() {
        let err = OptimError::UnknownParam { name: "zzz".into() };
        assert_eq!(
            format!("{err:?}"),
            r#"gradient for unknown parameter "zzz": it is not in the store"#
        );
    }

    #[test]
    fn bad_gradients_are_refused_and_nothing_changes() {
        let mut s = ParamStore::<f64>::new();
        s.insert("a", arr1(&[1.0]).into_dyn());
        s.insert("b", arr1(&[1.0, 2.0]).into_dyn());
        let before = s.clone();
        let mut opt = Adam::new(0.1);

        let mut unknown = grads1("a", &[1.0]);
        unknown.insert("zzz", arr1(&[1.0]).into_dyn());
        assert_eq!(
            opt.step(&mut s, &unknown),
            Err(OptimError::UnknownParam { name: "zzz".into() })
        );
        let mut wrong = grads1("a", &[1.0]);
        wrong.insert("b", ArrayD::zeros(IxDyn(&[3])));
        let err = opt.step(&mut s, &wrong).unwrap_err();
        assert_eq!(
            err,
            OptimError::ShapeMismatch {
                name: "b".into(),
                param: vec![2],
                grad: vec![3]
            }
        );
        assert!(err.to_string().contains("[3]"));
        assert_eq!(s, before);

        // A parameter replaced by one of another shape: the stale state is reported.
        opt.step(&mut s, &grads1("a", &[1.0])).unwrap();
        s.insert("a", arr1(&[1.0, 1.0]).into_dyn());
        assert!(matches!(
            opt.step(&mut s, &grads1("a", &[1.0, 1.0])),
            Err(OptimError::StateShapeMismatch { .. })
        ));
        opt.reset_state();
        opt.step(&mut s, &grads1("a", &[1.0, 1.0])).unwrap();
    }

    #[test]
    fn clip_by_hand() {
        // g = [3, 4] and [0]: norm 5; max 1 ⇒ scale 1/(5 + 1e-6)
        let mut g: ParamGradients<f64> = ParamGradients::from_iter([
            ("a", arr1(&[3.0, 4.0]).into_dyn()),
            ("b", arr1(&[0.0]).into_dyn()),
        ]);
        assert_eq!(clip_grad_norm(&mut g, 10.0), 5.0);
        close(&g.array("a"), &[3.0, 4.0], 0.0);
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        close(&g.array("a"), &[0.6, 0.8], 1e-6);
        let mut bad: ParamGradients<f64> =
            ParamGradients::from_iter([("a", arr1(&[f64::NAN]).into_dyn())]);
        assert!(clip_grad_norm(&mut bad, 1.0).is_nan());
    }

    #[test]
    fn schedules_by_hand() {
        let s = StepDecay::new(1.0, 10, 0.5);
        assert_eq!([0, 9, 10, 25].map(|i| s.lr_at(i)), [1.0, 1.0, 0.5, 0.25]);

        let c = CosineAnnealing::new(1.0, 10).min_lr(0.1).warmup(2);
        assert_eq!(c.lr_at(0), 0.5);
        assert_eq!(c.lr_at(1), 1.0);
        assert_eq!(c.lr_at(2), 1.0); // cosine starts at the peak
        assert!((c.lr_at(6) - 0.55).abs() < 1e-12); // halfway: (1 + 0.1)/2
        assert_eq!(c.lr_at(10), 0.1);
        assert_eq!(c.lr_at(1000), 0.1);

        let mut opt = Sgd::<f64>::new(0.0);
        s.apply(&mut opt, 10);
        assert_eq!(opt.lr(), 0.5);
    }

    proptest! {
        #![proptest_config(crate::test_util::proptest_config())]

        #[test]
        fn clipped_norm_is_at_most_max(
            a in proptest::collection::vec(-1e3f32..1e3, 0..20),
            b in proptest::collection::vec(-1e3f32..1e3, 0..20),
            max_norm in 1e-3f64..100.0,
        ) {
            let mut g: ParamGradients<f32> = ParamGradients::from_iter([
                ("a", ArrayD::from_shape_vec(IxDyn(&[a.len()]), a.clone()).unwrap()),
                ("b", ArrayD::from_shape_vec(IxDyn(&[b.len()]), b.clone()).unwrap()),
            ]);
            let before = grad_norm(&g);
            let reported = clip_grad_norm(&mut g, max_norm);
            prop_assert_eq!(reported, before);
            let after = grad_norm(&g);
            prop_assert!(after <= max_norm * (1.0 + 1e-5), "{} > {}", after, max_norm);
            if before <= max_norm {
                prop_assert_eq!(after, before);
            }
        }

        #[test]
        fn cosine_stays_between_min_and_base(step in 0usize..500, warm in 0usize..50, total in 50usize..300) {
            let c = CosineAnnealing::new(0.3, total).min_lr(0.01).warmup(warm);
            let lr = c.lr_at(step);
            prop_assert!(lr > 0.0 && lr <= 0.3 + 1e-15);
            if step >= warm {
                prop_assert!(lr >= 0.01 - 1e-15);
            }
        }
    }
}
