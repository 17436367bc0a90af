//! Gradients of a time loop under a memory budget: the step `x_{t+1} = f(x_t, θ)` run `T`
//! times, differentiated with revolve's binomial checkpointing ([`revolve`](crate::revolve)).
//!
//! A plain tape of the loop holds every step's intermediates, so its memory grows with
//! `T`. [`TimeLoop`] keeps at most `s` states instead and records one step at a time: each
//! step is evaluated on a small tape when the reverse sweep reaches it, from a state that
//! was stored or recomputed from the nearest stored one. Peak memory is `s` states plus one
//! step's tape; the extra work is revolve's optimum of untaped steps, reported as
//! [`TimeLoopGrad::advances`].
//!
//! ```
//! use retrograd_tape::{Tensor, arith::sum_to, time_loop::TimeLoop};
//! use ndarray::array;
//! let x0 = Tensor::from(array![0.5, -0.25]);
//! let theta = [Tensor::from(0.9)];
//! // x_{t+1} = θ·x_t + x_t², loss Σ x_T².
//! let out = TimeLoop::new(100)
//!     .snapshots(5)
//!     .grad(
//!         &x0,
//!         &theta,
//!         |x, p| x * p[0] + x * x,
//!         |_, x| sum_to(&(x * x), &[]),
//!     )
//!     .unwrap();
//! assert_eq!(out.advances, retrograd_tape::revolve::optimal_advances(100, 5));
//! assert_eq!(out.initial.shape(), &[2]);
//! ```

use crate::error::{Error, Result};
use crate::grad::GradOptions;
use crate::revolve::{Action, Schedule};
use crate::tape::Tape;
use crate::tensor::{Shape, Tensor, shape_eq};
use crate::var::Var;
use crate::{Float, arith};

/// Returns `f` unchanged, with its signature pinned to "a state and the parameters on any
/// tape in, the next state on the same tape out", so that a step closure stored in a `let`
/// can be handed to [`TimeLoop::grad`] (closures written in the call need no help).
///
/// ```
/// use retrograd_tape::{Tensor, arith::sum_to, time_loop::{TimeLoop, step_fn}};
/// let decay = step_fn(|x, p| x * p[0]);
/// let out = TimeLoop::new(3)
///     .grad(&Tensor::from(2.0), &[Tensor::from(0.5)], decay, |_, x| x * 1.0)
///     .unwrap();
/// assert_eq!(out.loss, 0.25); // 2 · 0.5³
/// assert_eq!(out.initial.item(), 0.125);
/// ```
pub fn step_fn<T: Float, F>(f: F) -> F
where
    F: for<'s> Fn(Var<'s, T>, &[Var<'s, T>]) -> Var<'s, T>,
{
    f
}

/// A time loop to differentiate: its length, the snapshot budget and where the loss is
/// taken. Built with [`TimeLoop::new`] and run with [`TimeLoop::grad`].
#[derive(Clone, Debug)]
pub struct TimeLoop {
    steps: usize,
    snapshots: usize,
    every_state: bool,
}

/// What [`TimeLoop::grad`] returns.
#[derive(Clone, Debug)]
pub struct TimeLoopGrad<T: Float> {
    /// The loss: its value at the final state, or the sum over every state.
    pub loss: T,
    /// The final state `x_T`.
    pub final_state: Tensor<T>,
    /// The gradient with respect to the initial state `x_0`.
    pub initial: Tensor<T>,
    /// The gradient with respect to each parameter, in order.
    pub params: Vec<Tensor<T>>,
    /// Untaped forward steps taken (counted as they ran): the work beyond a plain tape's
    /// `T` taped steps, revolve's optimum for the loop's length and budget.
    pub advances: u64,
    /// The most states stored at once (within the budget), counted as they were stored.
    pub peak_snapshots: usize,
}

impl TimeLoop {
    /// A loop of `steps` steps with the budget of a plain tape's states (every state
    /// stored: `steps` snapshots), the loss on the final state.
    pub fn new(steps: usize) -> Self {
        TimeLoop {
            steps,
            snapshots: steps.max(1),
            every_state: false,
        }
    }

    /// Stores at most `snapshots` states (the initial one included; at least 1).
    pub fn snapshots(mut self, snapshots: usize) -> Self {
        self.snapshots = snapshots;
        self
    }

    /// Takes the loss at every state `x_1 … x_T` and sums it, instead of at `x_T` only
    /// (`x_0` for a loop of no step).
    pub fn loss_on_every_state(mut self) -> Self {
        self.every_state = true;
        self
    }

    /// Runs the loop from `initial` with parameters `params` and returns the loss, the
    /// final state and the gradients with respect to `initial` and each parameter.
    ///
    /// `step(x, params)` computes the next state, of the state's shape; `loss(t, x_t)`
    /// returns a scalar. Both run on several tapes (one per recorded step, one for the
    /// untaped advances), so they must compute the same function each time.
    ///
    /// # Errors
    /// - [`Error::InvalidOp`]: a budget of no snapshot.
    /// - [`Error::ShapeMismatch`]: a step returned a state of another shape.
    /// - [`Error::NonScalarOutput`]: the loss is not a scalar.
    pub fn grad<T, S, L>(
        &self,
        initial: &Tensor<T>,
        params: &[Tensor<T>],
        step: S,
        loss: L,
    ) -> Result<TimeLoopGrad<T>>
    where
        T: Float,
        S: for<'s> Fn(Var<'s, T>, &[Var<'s, T>]) -> Var<'s, T>,
        L: for<'s> Fn(usize, Var<'s, T>) -> Var<'s, T>,
    {
        if self.snapshots == 0 {
            return Err(Error::InvalidOp {
                op: "time_loop",
                shapes: vec![],
                message: "a time loop needs at least one snapshot (the initial state's)".into(),
                location: std::panic::Location::caller(),
            });
        }
        let plan = Schedule::new(self.steps, self.snapshots);
        let mut run = Run {
            lp: self,
            params,
            step: &step,
            loss: &loss,
            shape: Shape::from_slice(initial.shape()),
            current: Some(initial.clone()),
            stored: Vec::new(),
            adjoint: None,
            out: TimeLoopGrad {
                loss: T::zero(),
                final_state: initial.clone(),
                initial: Tensor::zeros(initial.shape()),
                params: params.iter().map(|p| Tensor::zeros(p.shape())).collect(),
                advances: 0,
                peak_snapshots: 0,
            },
        };
        for action in plan.actions() {
            run.act(action)?;
        }
        if self.steps == 0 {
            run.loss_at_start()?;
        }
        if let Some(adjoint) = run.adjoint.take() {
            run.out.initial = adjoint;
        }
        Ok(run.out)
    }
}

/// A loop being differentiated: the state in hand, the snapshots and the cotangent of the
/// earliest state reversed so far.
struct Run<'a, T: Float, S, L> {
    lp: &'a TimeLoop,
    params: &'a [Tensor<T>],
    step: &'a S,
    loss: &'a L,
    shape: Shape,
    current: Option<Tensor<T>>,
    stored: Vec<(usize, Tensor<T>)>,
    adjoint: Option<Tensor<T>>,
    out: TimeLoopGrad<T>,
}

impl<T, S, L> Run<'_, T, S, L>
where
    T: Float,
    S: for<'s> Fn(Var<'s, T>, &[Var<'s, T>]) -> Var<'s, T>,
    L: for<'s> Fn(usize, Var<'s, T>) -> Var<'s, T>,
{
    fn act(&mut self, action: Action) -> Result<()> {
        match action {
            Action::Store(i) => {
                let x = self
                    .current
                    .clone()
                    .expect("a schedule stores a state in hand");
                self.stored.push((i, x));
                self.out.peak_snapshots = self.out.peak_snapshots.max(self.stored.len());
            }
            Action::Restore(i) => {
                let found = self.stored.iter().find(|(j, _)| *j == i);
                self.current = found.map(|(_, x)| x.clone());
            }
            Action::Forget(i) => self.stored.retain(|(j, _)| *j != i),
            Action::Advance(n) => self.advance(n)?,
            Action::Reverse(i) => self.reverse(i)?,
        }
        Ok(())
    }

    /// `n` steps forward on one reused tape, cleared after each step.
    fn advance(&mut self, n: usize) -> Result<()> {
        let mut tape = Tape::new();
        let mut x = self
            .current
            .take()
            .expect("a schedule advances a state in hand");
        for _ in 0..n {
            x = {
                let xv = tape.constant(x);
                let ps: Vec<Var<'_, T>> = self
                    .params
                    .iter()
                    .map(|p| tape.constant(p.clone()))
                    .collect();
                let y = (self.step)(xv, &ps);
                self.check_state(&y.value())?;
                y.value()
            };
            tape.clear();
        }
        self.out.advances += n as u64;
        self.current = Some(x);
        Ok(())
    }

    /// Step `i` on a tape: the cotangent of `x_{i+1}` (and the loss at it) pulled back to
    /// `x_i` and the parameters.
    fn reverse(&mut self, i: usize) -> Result<()> {
        let tape = Tape::new();
        let x = self
            .current
            .take()
            .expect("a schedule reverses a state in hand");
        let xv = tape.var(x);
        let ps: Vec<Var<'_, T>> = self.params.iter().map(|p| tape.var(p.clone())).collect();
        let y = (self.step)(xv, &ps);
        self.check_state(&y.value())?;
        let mut total = self
            .adjoint
            .take()
            .map(|a| arith::sum_to(&(y * tape.constant(a)), &[]));
        if self.lp.every_state || i + 1 == self.lp.steps {
            let l = (self.loss)(i + 1, y);
            let value = l.value().try_item().map_err(|_| Error::NonScalarOutput {
                shape: l.shape(),
                location: l.location(),
            })?;
            self.out.loss += value;
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
        if i + 1 == self.lp.steps {
            self.out.final_state = y.value();
        }
        let Some(total) = total else { return Ok(()) };
        let wrt: Vec<Var<'_, T>> = std::iter::once(xv).chain(ps.iter().copied()).collect();
        // `grad_with`, not `grad`: its constants are moved out, where `grad` copies each
        // gradient into an owned array (a copy of every parameter's size per step).
        let grads = tape.grad_with(total, &wrt, &GradOptions::new())?;
        let mut grads = grads.into_iter().map(|g| g.value());
        self.adjoint = grads.next();
        for (acc, g) in self.out.params.iter_mut().zip(grads) {
            acc.add_assign(&g);
        }
        Ok(())
    }

    /// A loop of no step: the loss at the initial state, which is also the final one.
    fn loss_at_start(&mut self) -> Result<()> {
        let tape = Tape::new();
        let xv = tape.var(self.current.clone().expect("the initial state is in hand"));
        let l = (self.loss)(0, xv);
        self.out.loss = l.value().try_item().map_err(|_| Error::NonScalarOutput {
            shape: l.shape(),
            location: l.location(),
        })?;
        let g = tape.grad(l, &[xv])?.remove(0);
        self.adjoint = Some(Tensor::from_array(g));
        Ok(())
    }

    fn check_state(&self, y: &Tensor<T>) -> Result<()> {
        if shape_eq(y.shape(), &self.shape) {
            return Ok(());
        }
        Err(Error::ShapeMismatch {
            what: "the state a time-loop step returned".into(),
            expected: self.shape.clone(),
            got: Shape::from_slice(y.shape()),
        })
    }
}

#[cfg(test)]
mod tests;
