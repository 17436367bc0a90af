//! Functional derivative transforms: `jvp`, `vjp`, Jacobians, Hessians and gradients of
//! functions written as closures over [`Var`]s.
//!
//! Each transform takes a function of one tensor, `f: for<'t> Fn(Var<'t, T>) -> Var<'t, T>`,
//! and a point `x` (an [`ArrayD`]), records `f(x)` once on a fresh [`Tape`], and answers
//! with sweeps over that one recording:
//!
//! | transform | sweeps on one recording |
//! |---|---|
//! | [`jvp`] `(f(x), J v)` | one forward sweep |
//! | [`vjp`] `(f(x), pullback)` | one reverse sweep per call of the [`Pullback`] |
//! | [`linearize`] `(f(x), pushforward)` | one forward sweep per call of the [`Pushforward`] |
//! | [`jacfwd`] | forward sweeps, each pushing a batch of tangents (columns of `J`) |
//! | [`jacrev`] | reverse sweeps, each pulling a batch of cotangents (rows of `J`) |
//! | [`jacobian`], [`jacobian_with`] | the cheapest [`Plan`]: a pure mode, or segments between the tape's cut points multiplied in the cheapest order |
//! | [`grad`], [`value_and_grad`] | one reverse sweep |
//! | [`hvp`] `H v` | one recorded reverse sweep, then one forward sweep over it |
//! | [`hessian`], [`value_grad_hessian`] | one recorded reverse sweep, then batched forward sweeps over it (columns of `H`) |
//! | [`jacobian_args`] | as [`jacobian_with`], for one argument of a function of several |
//! | [`derivatives`] `f, f', …, f⁽ⁿ⁾` | `n` recorded reverse sweeps |
//!
//! Jacobians have shape `output shape ++ input shape` (so a function from `[n]` to `[m]`
//! has an `[m, n]` Jacobian, and a scalar function's Jacobian is its gradient).
//!
//! A function of several tensors is differentiated with respect to one of them by
//! [`jacobian_args`] (the others enter as constants sharing the caller's tensors), by
//! closing over the others (enter them inside the closure with `x.tape().constant(..)`;
//! a [`Tensor`] enters without a copy), or by packing them into one array.
//!
//! A closure passed straight to a transform gets the right signature by inference; one
//! stored in a `let` first needs [`func`] to say that it works for a Var of any tape
//! (Rust infers a closure's lifetimes from the call it is passed to, not from a later use):
//!
//! ```
//! use retrograd_tape::transforms::{func, jacfwd, jacrev};
//! let f = func(|x| x * x + 1.0);
//! let x = ndarray::array![1.0, 2.0].into_dyn();
//! assert_eq!(jacfwd(&f, &x).unwrap(), jacrev(&f, &x).unwrap());
//! ```
//!
//! [`grad_fn`] turns a scalar function into its gradient function, of the same kind, so it
//! composes to any depth:
//!
//! ```
//! use retrograd_tape::transforms::{derivatives, grad_fn};
//! use retrograd_tape::{Tape, Var};
//!
//! fn quintic<'t>(x: Var<'t, f64>) -> Var<'t, f64> {
//!     x * x * x * x * x
//! }
//! // Four derivatives of x⁵ by composing grad_fn: 120x at x = 2.
//! let d4 = grad_fn(grad_fn(grad_fn(grad_fn(quintic))));
//! let tape = Tape::<f64>::new();
//! assert_eq!(d4(tape.var(2.0)).item(), 240.0);
//!
//! // The same, all orders at once on one tape: x⁵, 5x⁴, 20x³, 60x², 120x, 120.
//! let d = derivatives(quintic, 2.0, 5).unwrap();
//! assert_eq!(d, vec![32.0, 80.0, 160.0, 240.0, 240.0, 120.0]);
//! ```

use ndarray::{ArrayD, IxDyn};

use crate::Float;
use crate::error::{Error, Result};
use crate::grad::GradOptions;
use crate::graph::{NodeKey, Reach};
use crate::plan::{Plan, Step};
use crate::tape::Tape;
use crate::tensor::{Shape, Tensor};
use crate::var::{Val, Var};

/// How [`jacobian`] builds a Jacobian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Let the recorded tape's [`CostEstimate`] choose the cheaper of the two.
    #[default]
    Auto,
    /// Forward mode: one tangent sweep per input element ([`jacfwd`]).
    Forward,
    /// Reverse mode: one cotangent sweep per output element ([`jacrev`]).
    Reverse,
    /// Segment by segment between the tape's cut points, the segments' Jacobians
    /// multiplied in the cheapest order (see [`plan`](crate::plan)). `Auto` picks it when
    /// its estimate beats both pure modes; asked for, it splits the tape at its cut points
    /// even when a pure mode is estimated cheaper.
    Bracketed,
}

/// How much more a reverse sweep over a recorded tape costs than a forward (tangent) sweep
/// over the same tape, per unit of work: `1.0`.
///
/// Why 1: operation counts alone (Griewank and Walther, *Evaluating Derivatives*, 2nd ed.,
/// ch. 4) would put a reverse sweep at one to two forward sweeps, but measured on this
/// engine the two cost the same per sweep: in the `jacobian_modes` example one reverse
/// sweep over the wide-in chain took 0.106 ms and one forward sweep over the wide-out
/// chain 0.114 ms, and on the square hourglass chain 300 reverse sweeps took between half
/// and 1.1 times the time of 300 forward sweeps over two runs (3.7 ms against 7.4 ms, then
/// 3.6 ms against 3.4 ms). A rule's VJP computes only the cotangents the sweep needs, so
/// the extra work of the reverse sweep (accumulating fan-out, reducing broadcasts) is
/// small next to the matrix products. On a tie the choice goes to reverse mode.
pub const REVERSE_SWEEP_FACTOR: f64 = 1.0;

/// A recorded tape's own estimate of what a Jacobian costs in each mode, in units of
/// "elements written by one op of the recording" (the output element counts of the ops on
/// the path, a proxy for their work; ops that do much more work per element, like matmul,
/// are undercounted alike in both modes, so the comparison stays fair).
#[derive(Clone, Debug, PartialEq)]
pub struct CostEstimate {
    /// Input elements: forward mode runs one sweep per input element.
    pub n_inputs: usize,
    /// Output elements: reverse mode runs one sweep per output element.
    pub n_outputs: usize,
    /// One forward (tangent) sweep: the elements written by the ops on a path from the
    /// input to the output (the only ops the sweep visits).
    pub forward_sweep: f64,
    /// One reverse sweep: [`REVERSE_SWEEP_FACTOR`] times the elements written by the ops
    /// on a path from the input to the output.
    pub reverse_sweep: f64,
}

impl CostEstimate {
    /// The estimated cost of the whole Jacobian in forward mode.
    pub fn forward_total(&self) -> f64 {
        self.n_inputs as f64 * self.forward_sweep
    }

    /// The estimated cost of the whole Jacobian in reverse mode.
    pub fn reverse_total(&self) -> f64 {
        self.n_outputs as f64 * self.reverse_sweep
    }

    /// The cheaper mode, [`Mode::Forward`] or [`Mode::Reverse`] (reverse on a tie).
    pub fn choice(&self) -> Mode {
        if self.forward_total() < self.reverse_total() {
            Mode::Forward
        } else {
            Mode::Reverse
        }
    }

    /// Estimates, from a recording of `output` computed from `input`, what the Jacobian
    /// `∂output/∂input` costs in each mode. One pass over the recorded ops between the two.
    ///
    /// ```
    /// use retrograd_tape::{Tape, transforms::{CostEstimate, Mode}};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(ndarray::Array1::<f64>::ones(100));
    /// let y = retrograd_tape::arith::sum_to(&(x * x), &[]); // 100 inputs, 1 output
    /// assert_eq!(CostEstimate::of(x, y).choice(), Mode::Reverse);
    /// ```
    ///
    /// # Panics
    /// When the two Vars belong to different tapes.
    #[track_caller]
    pub fn of<T: Float>(input: Var<'_, T>, output: Var<'_, T>) -> Self {
        assert!(
            std::ptr::eq(input.tape, output.tape),
            "CostEstimate::of: the input (created at {}) and the output (created at {}) belong to different tapes",
            input.location(),
            output.location()
        );
        let inner = input.tape.inner.borrow();
        let graph = &inner.graph;
        // Shapes, not values: a value freed by a sweep still has its size.
        let len = |k: NodeKey| graph.shape(k).iter().product::<usize>();
        let n_inputs = len(input.key);
        let n_outputs = len(output.key);
        // A forward sweep visits what lies downstream of the input, a reverse sweep what
        // lies upstream of the output; both visit the nodes between the two, and the
        // input's own node is not an op either sweep runs.
        let mut reach = Reach::default();
        graph.between(Some(&[input.key]), &[output.key], &mut reach);
        let work: f64 = reach
            .on_path_in_order()
            .filter(|k| *k != input.key)
            .map(|k| len(k) as f64)
            .sum();
        let (forward_sweep, reverse_sweep) = (work, work);
        CostEstimate {
            n_inputs,
            n_outputs,
            forward_sweep,
            reverse_sweep: REVERSE_SWEEP_FACTOR * reverse_sweep,
        }
    }
}

/// Returns `f` unchanged, with its signature pinned to "a Var of any tape in, a Var of the
/// same tape out", so that a closure can be stored in a `let` and then passed to several
/// transforms (see the [module docs](self)).
pub fn func<T: Float, F>(f: F) -> F
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    f
}

/// Records `f(x)` on `tape` and returns the input and output Vars.
fn record<'t, T: Float, F>(tape: &'t Tape<T>, f: &F, x: &ArrayD<T>) -> (Var<'t, T>, Var<'t, T>)
where
    F: for<'s> Fn(Var<'s, T>) -> Var<'s, T>,
{
    let xv = tape.var(Tensor::from_array(x.clone()));
    let y = f(xv);
    (xv, y)
}

/// Checks that `v` has `x`'s shape.
fn same_shape(what: &str, v: &[usize], expected: &[usize]) -> Result<()> {
    if v == expected {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what: what.to_string(),
            expected: Shape::from_slice(expected),
            got: Shape::from_slice(v),
        })
    }
}

/// The concatenation of two shapes.
fn concat(a: &[usize], b: &[usize]) -> Vec<usize> {
    a.iter().chain(b).copied().collect()
}

/// Reshapes a `[rows, cols]` matrix (row-major, standard layout) to `shape`.
fn reshape<T: Float>(m: ndarray::Array2<T>, shape: &[usize]) -> ArrayD<T> {
    let (data, _) = m.into_raw_vec_and_offset();
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .unwrap_or_else(|_| unreachable!("the Jacobian has out × in elements"))
}

/// The Jacobian-vector product: `(f(x), J v)` with `J = ∂f/∂x` at `x`, from one recording
/// and one forward sweep. `v` has `x`'s shape, `J v` has `f(x)`'s.
///
/// ```
/// use retrograd_tape::transforms::jvp;
/// use ndarray::array;
/// let (y, t) = jvp(|x| x * x, &array![1.0, 2.0].into_dyn(), &array![1.0, 0.5].into_dyn()).unwrap();
/// assert_eq!(y, array![1.0, 4.0].into_dyn());
/// assert_eq!(t, array![2.0, 2.0].into_dyn()); // 2x · v
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] when `v`'s shape is not `x`'s, and any error of the sweep.
pub fn jvp<T: Float, F>(f: F, x: &ArrayD<T>, v: &ArrayD<T>) -> Result<(ArrayD<T>, ArrayD<T>)>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    same_shape("tangent", v.shape(), x.shape())?;
    let tape = Tape::new();
    let (xv, y) = record(&tape, &f, x);
    let mut t = tape.jvp(&[y], &[xv], vec![Tensor::from_array(v.clone())])?;
    Ok((y.array(), t.remove(0)))
}

/// The pullback of a function at a point, from [`vjp`]: it owns the recording and maps a
/// cotangent of the output to the cotangent of the input, `u ↦ uᵀ J`, one reverse sweep
/// per call and no re-recording.
pub struct Pullback<T: Float> {
    tape: Tape<T>,
    x: NodeKey,
    y: NodeKey,
    out_shape: Shape,
}

impl<T: Float> Pullback<T> {
    /// `uᵀ J`: the cotangent of the input for the output cotangent `u` (of the output's
    /// shape); the result has the input's shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `u`'s shape is not the output's.
    pub fn call(&self, u: &ArrayD<T>) -> Result<ArrayD<T>> {
        same_shape("output cotangent", u.shape(), &self.out_shape)?;
        let (x, y) = self.vars();
        let opts = GradOptions::new()
            .retain_graph()
            .seed(Tensor::from_array(u.clone()));
        let mut g = self.tape.grad_with(y, &[x], &opts)?;
        Ok(g.remove(0).into_value().into_array())
    }

    /// The output's shape (what [`call`](Pullback::call) expects).
    pub fn output_shape(&self) -> &[usize] {
        &self.out_shape
    }

    /// The recorded tape, for inspection.
    pub fn tape(&self) -> &Tape<T> {
        &self.tape
    }

    fn vars(&self) -> (Var<'_, T>, Var<'_, T>) {
        (
            Var {
                tape: &self.tape,
                key: self.x,
            },
            Var {
                tape: &self.tape,
                key: self.y,
            },
        )
    }
}

/// The value and the pullback of `f` at `x`: record once, then pull back as many
/// cotangents as needed, each with one reverse sweep over the kept recording.
///
/// ```
/// use retrograd_tape::transforms::vjp;
/// use ndarray::array;
/// let x = array![1.0, 2.0, 3.0].into_dyn();
/// let (y, pullback) = vjp(|x| x * x, &x);
/// assert_eq!(y, array![1.0, 4.0, 9.0].into_dyn());
/// // Rows of J = diag(2x), without recording again.
/// assert_eq!(pullback.call(&array![1.0, 0.0, 0.0].into_dyn()).unwrap(), array![2.0, 0.0, 0.0].into_dyn());
/// assert_eq!(pullback.call(&array![0.0, 0.0, 1.0].into_dyn()).unwrap(), array![0.0, 0.0, 6.0].into_dyn());
/// ```
pub fn vjp<T: Float, F>(f: F, x: &ArrayD<T>) -> (ArrayD<T>, Pullback<T>)
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let (xk, yk, value) = {
        let (xv, y) = record(&tape, &f, x);
        (xv.key, y.key, y.array())
    };
    let out_shape = Shape::from_slice(value.shape());
    let pullback = Pullback {
        tape,
        x: xk,
        y: yk,
        out_shape,
    };
    (value, pullback)
}

/// The pushforward of a function at a point, from [`linearize`]: it owns the recording and
/// maps a tangent of the input to the tangent of the output, `v ↦ J v`, one forward sweep
/// per call.
pub struct Pushforward<T: Float> {
    tape: Tape<T>,
    x: NodeKey,
    y: NodeKey,
    in_shape: Shape,
}

impl<T: Float> Pushforward<T> {
    /// `J v` for a tangent `v` of the input's shape; the result has the output's shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `v`'s shape is not the input's.
    pub fn call(&self, v: &ArrayD<T>) -> Result<ArrayD<T>> {
        same_shape("tangent", v.shape(), &self.in_shape)?;
        let x = Var {
            tape: &self.tape,
            key: self.x,
        };
        let y = Var {
            tape: &self.tape,
            key: self.y,
        };
        let mut t = self
            .tape
            .jvp(&[y], &[x], vec![Tensor::from_array(v.clone())])?;
        Ok(t.remove(0))
    }

    /// The recorded tape, for inspection.
    pub fn tape(&self) -> &Tape<T> {
        &self.tape
    }
}

/// The value and the pushforward of `f` at `x`: record once, then push as many tangents
/// as needed, each with one forward sweep.
///
/// ```
/// use retrograd_tape::transforms::linearize;
/// use ndarray::array;
/// let (y, push) = linearize(|x| x * 3.0, &array![1.0, 2.0].into_dyn());
/// assert_eq!(y, array![3.0, 6.0].into_dyn());
/// assert_eq!(push.call(&array![1.0, -1.0].into_dyn()).unwrap(), array![3.0, -3.0].into_dyn());
/// ```
pub fn linearize<T: Float, F>(f: F, x: &ArrayD<T>) -> (ArrayD<T>, Pushforward<T>)
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let (xk, yk, value) = {
        let (xv, y) = record(&tape, &f, x);
        (xv.key, y.key, y.array())
    };
    let push = Pushforward {
        tape,
        x: xk,
        y: yk,
        in_shape: Shape::from_slice(x.shape()),
    };
    (value, push)
}

/// Tangents (or cotangents) per batched sweep when the caller does not say: as many as
/// keep one batch of every value on the path under 2^24 elements (128 MiB of `f64`).
pub const CHUNK_BUDGET: usize = 1 << 24;

/// The chunk for `lines` Jacobian lines over a path that holds `path_elements` values.
fn chunk_for(lines: usize, path_elements: usize, chunk: Option<usize>) -> usize {
    let auto = CHUNK_BUDGET / path_elements.max(1);
    chunk.unwrap_or(auto).clamp(1, lines.max(1))
}

/// The Jacobian of node `to` with respect to node `from` as a `[size(to), size(from)]`
/// matrix, by batched sweeps in `mode` (forward: a block of columns per sweep, from
/// identity tangents; reverse: a block of rows per sweep), `chunk` lines per sweep (by
/// default as many as keep `path_elements` values per line under [`CHUNK_BUDGET`]).
pub(crate) fn segment_jacobian<T: Float>(
    tape: &Tape<T>,
    (from, to): (NodeKey, NodeKey),
    mode: Mode,
    (chunk, path_elements): (Option<usize>, usize),
) -> Result<ndarray::Array2<T>> {
    let (in_shape, out_shape) = {
        let inner = tape.inner.borrow();
        let shape = |k| Shape::from_slice(inner.graph.shape(k));
        (shape(from), shape(to))
    };
    let (n, m) = (
        in_shape.iter().product::<usize>(),
        out_shape.iter().product::<usize>(),
    );
    let forward = mode == Mode::Forward;
    let lines = if forward { n } else { m };
    let chunk = chunk_for(lines, path_elements, chunk);
    let mut jac = ndarray::Array2::<T>::zeros((m, n));
    let mut start = 0;
    while start < lines {
        let c = chunk.min(lines - start);
        let mut seed = ndarray::Array2::<T>::zeros((c, lines));
        for b in 0..c {
            seed[[b, start + b]] = T::one();
        }
        let (seed_shape, block_shape) = if forward {
            (&in_shape, &out_shape)
        } else {
            (&out_shape, &in_shape)
        };
        let seed = crate::batch::reshape(
            Tensor::from_array(seed),
            &crate::batch::batched_shape(c, seed_shape),
        );
        let block = if forward {
            tape.forward_batch(&[from], &[to], vec![(from, seed)], c)?
                .remove(0)
        } else {
            tape.reverse_batch(&[from], to, seed, c)?.remove(0)
        };
        let width = block_shape.iter().product::<usize>();
        let block = reshape_to_matrix(block, c, width);
        if forward {
            jac.slice_mut(ndarray::s![.., start..start + c])
                .assign(&block.t());
        } else {
            jac.slice_mut(ndarray::s![start..start + c, ..])
                .assign(&block);
        }
        start += c;
    }
    Ok(jac)
}

/// A `[c] ++ shape` array as a `[c, width]` matrix.
fn reshape_to_matrix<T: Float>(a: ArrayD<T>, c: usize, width: usize) -> ndarray::Array2<T> {
    let a = if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    };
    let (data, _) = a.into_raw_vec_and_offset();
    ndarray::Array2::from_shape_vec((c, width), data)
        .unwrap_or_else(|_| unreachable!("a batch of c values of `width` elements"))
}

/// The Jacobian of `y` by `x` in one pure mode, shaped `y.shape ++ x.shape`.
fn jac_pure<T: Float>(
    x: Var<'_, T>,
    y: Var<'_, T>,
    mode: Mode,
    chunk: Option<usize>,
) -> Result<ArrayD<T>> {
    let elements = CostEstimate::of(x, y).forward_sweep as usize;
    let m = segment_jacobian(x.tape, (x.key, y.key), mode, (chunk, elements))?;
    Ok(reshape(m, &concat(&y.shape(), &x.shape())))
}

/// Runs a plan's steps on the recording, timing each, and returns the Jacobian of the
/// step's span as a matrix.
fn run_step<T: Float>(
    tape: &Tape<T>,
    cuts: &[crate::plan::CutPoint],
    step: &mut Step,
    chunk: Option<usize>,
) -> Result<ndarray::Array2<T>> {
    match step {
        Step::Sweep {
            from,
            to,
            mode,
            seconds,
            ..
        } => {
            let start = std::time::Instant::now();
            let (a, b) = (&cuts[*from], &cuts[*to]);
            let elements = b.elements - a.elements;
            let j = segment_jacobian(tape, (a.key, b.key), *mode, (chunk, elements))?;
            *seconds = Some(start.elapsed().as_secs_f64());
            Ok(j)
        }
        Step::Product {
            outer,
            inner,
            seconds,
            ..
        } => {
            let a = run_step(tape, cuts, outer, chunk)?;
            let b = run_step(tape, cuts, inner, chunk)?;
            let start = std::time::Instant::now();
            let p = crate::chain::product(&a, &b);
            *seconds = Some(start.elapsed().as_secs_f64());
            Ok(p)
        }
    }
}

/// The Jacobian of `f` at `x` by forward mode: one recording, then forward sweeps that
/// each push a batch of tangents (a block of the identity) at once, so a matmul on the
/// path is one matrix-matrix product per batch. Cheap when the input is small and the
/// output large. Shape `f(x).shape ++ x.shape`. The batch size bounds memory (see
/// [`CHUNK_BUDGET`]); [`jacobian_with`] sets it.
///
/// ```
/// use retrograd_tape::transforms::jacfwd;
/// use ndarray::array;
/// let j = jacfwd(|x| x * 2.0 + 1.0, &array![1.0, 2.0].into_dyn()).unwrap();
/// assert_eq!(j, array![[2.0, 0.0], [0.0, 2.0]].into_dyn());
/// ```
///
/// # Errors
/// Any error of the forward sweep.
pub fn jacfwd<T: Float, F>(f: F, x: &ArrayD<T>) -> Result<ArrayD<T>>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let (xv, y) = record(&tape, &f, x);
    jac_pure(xv, y, Mode::Forward, None)
}

/// The Jacobian of `f` at `x` by reverse mode: one recording, then reverse sweeps that
/// each pull a batch of cotangents (a block of the identity) at once. Cheap when the output
/// is small and the input large (for a scalar it is the gradient, at the cost of one
/// sweep). Shape `f(x).shape ++ x.shape`.
///
/// ```
/// use retrograd_tape::transforms::jacrev;
/// use ndarray::array;
/// let j = jacrev(|x| x * x, &array![1.0, 3.0].into_dyn()).unwrap();
/// assert_eq!(j, array![[2.0, 0.0], [0.0, 6.0]].into_dyn());
/// ```
///
/// # Errors
/// Any error of the reverse sweep.
pub fn jacrev<T: Float, F>(f: F, x: &ArrayD<T>) -> Result<ArrayD<T>>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let (xv, y) = record(&tape, &f, x);
    jac_pure(xv, y, Mode::Reverse, None)
}

/// How [`jacobian_with`] builds a Jacobian: the mode, and how many tangents or cotangents
/// each batched sweep carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JacobianOptions {
    /// The mode ([`Mode::Auto`] by default).
    pub mode: Mode,
    /// Tangents or cotangents per sweep; `None` (the default) takes as many as keep one
    /// batch of the path's values under [`CHUNK_BUDGET`] elements. `Some(1)` sweeps one
    /// at a time.
    pub chunk: Option<usize>,
}

impl JacobianOptions {
    /// The defaults: [`Mode::Auto`], chunks by memory budget.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the number of tangents or cotangents per sweep (at least 1).
    pub fn chunk(mut self, chunk: usize) -> Self {
        self.chunk = Some(chunk.max(1));
        self
    }
}

/// A Jacobian with the work that made it: from [`jacobian`] and [`jacobian_with`].
#[derive(Clone, Debug)]
pub struct Jacobian<T> {
    /// `f(x)`.
    pub value: ArrayD<T>,
    /// `∂f/∂x`, of shape `value.shape ++ x.shape`.
    pub jacobian: ArrayD<T>,
    /// The mode used: [`Mode::Forward`], [`Mode::Reverse`] or [`Mode::Bracketed`] (never
    /// `Auto`).
    pub mode: Mode,
    /// The recorded tape's element-count estimate of the two pure modes.
    pub estimate: CostEstimate,
    /// The plan that was run: the tape's cut points, the steps with their estimated
    /// multiply-adds and measured times. `println!("{}", j.plan)` shows what was chosen
    /// and why.
    pub plan: Plan,
}

/// The Jacobian of `f` at `x`, in the given mode, with batched sweeps chunked by memory
/// budget; see [`jacobian_with`].
///
/// ```
/// use retrograd_tape::transforms::{jacobian, Mode};
/// use ndarray::Array1;
/// // Many inputs, one output: reverse mode.
/// let x = Array1::<f64>::linspace(0.0, 1.0, 50).into_dyn();
/// let j = jacobian(|x| retrograd_tape::arith::sum_to(&(x * x), &[]), &x, Mode::Auto).unwrap();
/// assert_eq!(j.mode, Mode::Reverse);
/// assert_eq!(j.jacobian.shape(), &[50]);
/// ```
///
/// # Errors
/// Any error of the sweeps.
pub fn jacobian<T: Float, F>(f: F, x: &ArrayD<T>, mode: Mode) -> Result<Jacobian<T>>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    jacobian_with(f, x, &JacobianOptions::new().mode(mode))
}

/// The Jacobian of `f` at `x`: records `f` once, plans on that recording ([`Plan`]) and
/// runs the plan's batched sweeps on it.
///
/// [`Mode::Auto`] finds the tape's cut points (the nodes every path from `x` to `f(x)`
/// passes through: a layered chain's layer outputs) and picks the cheapest in multiply-adds
/// of: one pure mode over the whole tape, or segments between cut points, each swept in
/// its cheaper mode, multiplied in the cheapest order. On a bottleneck that is the
/// optimal bracketing of the founding question. `Forward` and `Reverse` force a pure mode,
/// `Bracketed` forces the segments.
///
/// ```
/// use retrograd_tape::transforms::{func, jacobian_with, JacobianOptions, Mode};
/// use retrograd_tape::arith::sum_to;
/// use ndarray::Array2;
/// // 50 → 2 → 50: a column of 50 mapped to a row of 2, squared, mapped back to 50.
/// let (a, b) = (Array2::<f64>::from_elem((50, 2), 0.1), Array2::<f64>::from_elem((50, 2), 0.2));
/// let f = func(|x| {
///     let t = x.tape();
///     let h = sum_to(&(t.constant(a.clone()) * x), &[1, 2]);
///     sum_to(&(t.constant(b.clone()) * (h * h)), &[50, 1])
/// });
/// let x = Array2::<f64>::from_shape_fn((50, 1), |(i, _)| i as f64 / 50.0).into_dyn();
/// let j = jacobian_with(&f, &x, &JacobianOptions::new()).unwrap();
/// assert_eq!(j.mode, Mode::Bracketed);
/// let fwd = jacobian_with(&f, &x, &JacobianOptions::new().mode(Mode::Forward).chunk(7)).unwrap();
/// assert!((&j.jacobian - &fwd.jacobian).iter().all(|d| d.abs() < 1e-12));
/// println!("{}", j.plan); // the cut points, the steps, their estimates and times
/// ```
///
/// # Errors
/// Any error of the sweeps.
pub fn jacobian_with<T: Float, F>(
    f: F,
    x: &ArrayD<T>,
    opts: &JacobianOptions,
) -> Result<Jacobian<T>>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let (xv, y) = record(&tape, &f, x);
    jacobian_of(xv, y, opts)
}

/// The Jacobian of `f(args)` with respect to `args[wrt]`, the other arguments held fixed:
/// a function of several tensors differentiated in one of them (JAX's `argnums`). The
/// fixed arguments enter the recording as constants that share the caller's tensors (an
/// `Arc` clone, never a copy of the data), so a model's weights are passed once, not
/// re-entered inside the closure.
///
/// ```
/// use retrograd_tape::transforms::{jacobian_args, JacobianOptions};
/// use retrograd_tape::Tensor;
/// use ndarray::array;
/// // f(x, w) = w ⊙ x ⊙ x, differentiated in x with w fixed: J = diag(2 w x).
/// let (x, w) = (Tensor::from(array![1.0, 2.0]), Tensor::from(array![3.0, 0.5]));
/// let j = jacobian_args(|v| v[1] * v[0] * v[0], &[x, w], 0, &JacobianOptions::new()).unwrap();
/// assert_eq!(j.jacobian, array![[6.0, 0.0], [0.0, 2.0]].into_dyn());
/// ```
///
/// # Errors
/// [`Error::InvalidOp`] when `wrt` is not an argument's index, and any error of the
/// sweeps.
#[track_caller]
pub fn jacobian_args<T: Float, F>(
    f: F,
    args: &[Tensor<T>],
    wrt: usize,
    opts: &JacobianOptions,
) -> Result<Jacobian<T>>
where
    F: for<'t> Fn(&[Var<'t, T>]) -> Var<'t, T>,
{
    if wrt >= args.len() {
        return Err(Error::InvalidOp {
            op: "jacobian_args",
            shapes: args.iter().map(|a| Shape::from_slice(a.shape())).collect(),
            message: format!("wrt = {wrt} but there are {} arguments", args.len()),
            location: std::panic::Location::caller(),
        });
    }
    let tape = Tape::new();
    let vars: Vec<Var<'_, T>> = args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if i == wrt {
                tape.var(a.clone())
            } else {
                tape.constant(a.clone())
            }
        })
        .collect();
    let y = f(&vars);
    jacobian_of(vars[wrt], y, opts)
}

/// Plans and runs the Jacobian of `y` by `x` on their recording.
fn jacobian_of<T: Float>(
    xv: Var<'_, T>,
    y: Var<'_, T>,
    opts: &JacobianOptions,
) -> Result<Jacobian<T>> {
    let mut plan = match opts.mode {
        Mode::Bracketed => Plan::bracketed(xv, y),
        _ => Plan::of(xv, y),
    };
    if let Mode::Forward | Mode::Reverse = opts.mode {
        let last = plan.cut_points.len() - 1;
        let estimate = if opts.mode == Mode::Forward {
            plan.forward
        } else {
            plan.reverse
        };
        plan.root = Step::Sweep {
            from: 0,
            to: last,
            mode: opts.mode,
            estimate,
            seconds: None,
        };
        plan.estimate = estimate;
    }
    let cuts = plan.cut_points.clone();
    let matrix = run_step(xv.tape, &cuts, &mut plan.root, opts.chunk)?;
    let (first, last) = (&cuts[0], &cuts[cuts.len() - 1]);
    let work = last.elements as f64;
    let estimate = CostEstimate {
        n_inputs: first.size,
        n_outputs: last.size,
        forward_sweep: work,
        reverse_sweep: REVERSE_SWEEP_FACTOR * work,
    };
    Ok(Jacobian {
        value: y.array(),
        jacobian: reshape(matrix, &concat(&y.shape(), &xv.shape())),
        mode: plan.mode(),
        estimate,
        plan,
    })
}

/// The gradient of a scalar function at `x`, of `x`'s shape: one reverse sweep.
///
/// ```
/// use retrograd_tape::transforms::grad;
/// use ndarray::array;
/// let g = grad(|x| retrograd_tape::arith::sum_to(&(x * x * x), &[]), &array![1.0, 2.0].into_dyn()).unwrap();
/// assert_eq!(g, array![3.0, 12.0].into_dyn());
/// ```
///
/// # Errors
/// [`Error::NonScalarOutput`] when `f(x)` has more than one element.
pub fn grad<T: Float, F>(f: F, x: &ArrayD<T>) -> Result<ArrayD<T>>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    value_and_grad(f, x).map(|(_, g)| g)
}

/// The value and the gradient of a scalar function at `x`, from one recording and one
/// reverse sweep.
///
/// # Errors
/// [`Error::NonScalarOutput`] when `f(x)` has more than one element.
pub fn value_and_grad<T: Float, F>(f: F, x: &ArrayD<T>) -> Result<(T, ArrayD<T>)>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let (xv, y) = record(&tape, &f, x);
    let value = scalar_of(y)?;
    let mut g = tape.grad(y, &[xv])?;
    Ok((value, g.remove(0)))
}

/// The single element of a scalar output, or [`Error::NonScalarOutput`].
fn scalar_of<T: Float>(y: Var<'_, T>) -> Result<T> {
    y.value().try_item().map_err(|_| Error::NonScalarOutput {
        shape: y.shape(),
        location: y.location(),
    })
}

/// The Hessian-vector product `H v` of a scalar function at `x`, by forward over reverse:
/// one recorded reverse sweep (the gradient as Vars, `create_graph`), then one forward
/// sweep over the recorded gradient with tangent `v`. Costs a small constant times one
/// gradient, never a Hessian. `v` and the result have `x`'s shape.
///
/// ```
/// use retrograd_tape::transforms::hvp;
/// use ndarray::array;
/// // f(x) = Σ x³, H = diag(6x).
/// let f = retrograd_tape::transforms::func(|x| retrograd_tape::arith::sum_to(&(x * x * x), &[]));
/// let hv = hvp(f, &array![1.0, 2.0].into_dyn(), &array![1.0, 1.0].into_dyn()).unwrap();
/// assert_eq!(hv, array![6.0, 12.0].into_dyn());
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] when `v`'s shape is not `x`'s, [`Error::NonScalarOutput`] when
/// `f(x)` has more than one element.
pub fn hvp<T: Float, F>(f: F, x: &ArrayD<T>, v: &ArrayD<T>) -> Result<ArrayD<T>>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    same_shape("tangent", v.shape(), x.shape())?;
    let tape = Tape::new();
    let (xv, y) = record(&tape, &f, x);
    let g = tape.grad_graph(y, &[xv])?[0];
    let mut hv = tape.jvp(&[g], &[xv], vec![Tensor::from_array(v.clone())])?;
    Ok(hv.remove(0))
}

/// The Hessian of a scalar function at `x`, of shape `x.shape ++ x.shape`: one recorded
/// gradient, then one forward sweep over it per input element (`n` Hessian-vector
/// products on one recording). Symmetric up to rounding: column `i` is `H e_i`, computed
/// independently of row `i`, so the symmetry is a check of the rules, not imposed.
///
/// ```
/// use retrograd_tape::transforms::hessian;
/// use ndarray::array;
/// // f(x) = x0² x1: H = [[2 x1, 2 x0], [2 x0, 0]].
/// let f = retrograd_tape::transforms::func(|x| {
///     let w = x.tape().constant(array![1.0, 0.0]);
///     let x0 = retrograd_tape::arith::sum_to(&(x * w), &[]);
///     x0 * x0 * retrograd_tape::arith::sum_to(&(x * (1.0 - w)), &[])
/// });
/// let h = hessian(f, &array![3.0, 5.0].into_dyn()).unwrap();
/// assert_eq!(h, array![[10.0, 6.0], [6.0, 0.0]].into_dyn());
/// ```
///
/// # Errors
/// [`Error::NonScalarOutput`] when `f(x)` has more than one element.
pub fn hessian<T: Float, F>(f: F, x: &ArrayD<T>) -> Result<ArrayD<T>>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let (xv, y) = record(&tape, &f, x);
    let g = tape.grad_graph(y, &[xv])?[0];
    jac_pure(xv, g, Mode::Forward, None)
}

/// The value, the gradient and the Hessian of a scalar function at `x`, all from one
/// recording: the recorded gradient is both read (the gradient) and swept (the Hessian,
/// by batched forward sweeps over it, as [`hessian`]).
///
/// ```
/// use retrograd_tape::transforms::{func, value_grad_hessian};
/// use ndarray::array;
/// // f(x) = Σ x³: ∇f = 3x², H = diag(6x).
/// let f = func(|x| retrograd_tape::arith::sum_to(&(x * x * x), &[]));
/// let (v, g, h) = value_grad_hessian(f, &array![1.0, 2.0].into_dyn()).unwrap();
/// assert_eq!(v, 9.0);
/// assert_eq!(g, array![3.0, 12.0].into_dyn());
/// assert_eq!(h, array![[6.0, 0.0], [0.0, 12.0]].into_dyn());
/// ```
///
/// # Errors
/// [`Error::NonScalarOutput`] when `f(x)` has more than one element.
pub fn value_grad_hessian<T: Float, F>(f: F, x: &ArrayD<T>) -> Result<(T, ArrayD<T>, ArrayD<T>)>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let (xv, y) = record(&tape, &f, x);
    let value = scalar_of(y)?;
    let g = tape.grad_graph(y, &[xv])?[0];
    let h = jac_pure(xv, g, Mode::Forward, None)?;
    Ok((value, g.array(), h))
}

/// The gradient of `f` as a function of the same kind, so that it composes to any depth:
/// `grad_fn(grad_fn(f))` is the second derivative of a scalar function of a scalar. The
/// gradient is recorded (`create_graph`) on the caller's tape, so it can be differentiated
/// again. See the [module docs](self) for four derivatives of `x⁵`.
///
/// # Panics
/// The returned function panics when `f`'s output has more than one element (a gradient
/// needs a scalar; sum first), naming where the output was created.
pub fn grad_fn<T: Float, F>(f: F) -> impl for<'t> Fn(Var<'t, T>) -> Var<'t, T>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    move |x| grad_at(&f, x)
}

#[track_caller]
fn grad_at<'t, T: Float, F>(f: &F, x: Var<'t, T>) -> Var<'t, T>
where
    F: for<'s> Fn(Var<'s, T>) -> Var<'s, T>,
{
    let y = f(x);
    match x.tape.grad_graph(y, &[x]) {
        Ok(g) => g[0],
        Err(e) => panic!("grad_fn: {e}"),
    }
}

/// `[f(x), f'(x), f''(x), …, f⁽ⁿ⁾(x)]` for a scalar function of a scalar: `n` recorded
/// reverse sweeps on one tape, each differentiating the previous derivative (grad of grad
/// to any depth). See the [module docs](self).
///
/// # Errors
/// [`Error::NonScalarOutput`] when `f(x)` has more than one element.
pub fn derivatives<T: Float, F>(f: F, x: T, n: usize) -> Result<Vec<T>>
where
    F: for<'t> Fn(Var<'t, T>) -> Var<'t, T>,
{
    let tape = Tape::new();
    let xv = tape.var(x);
    let mut d = f(xv);
    let mut out = vec![scalar_of(d)?];
    for _ in 0..n {
        d = match tape
            .grad_with(d, &[xv], &GradOptions::new().create_graph())?
            .remove(0)
        {
            Val::Var(v) => v,
            // A constant derivative (the function was polynomial of lower degree, or did
            // not depend on x): every further derivative is zero.
            Val::Const(t) => Val::Const(t).into_var(&tape),
        };
        out.push(scalar_of(d)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn jacobian_shape_is_output_then_input() {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 3]), (0..6).map(f64::from).collect()).unwrap();
        let f = func(|x| crate::arith::sum_to(&(x * x), &[3]));
        let jf = jacfwd(f, &x).unwrap();
        let jr = jacrev(f, &x).unwrap();
        assert_eq!(jf.shape(), &[3, 2, 3]);
        assert_eq!(jf, jr);
        // d(Σ_i x_ij²)/dx_kl = 2 x_kl [j == l].
        assert_eq!(jf[[1, 1, 1]], 8.0);
        assert_eq!(jf[[1, 1, 0]], 0.0);
    }

    #[test]
    fn pullback_is_reusable_and_checks_shapes() {
        let (_, pb) = vjp(|x| x * 3.0, &array![1.0, 2.0].into_dyn());
        for _ in 0..3 {
            assert_eq!(
                pb.call(&array![1.0, 1.0].into_dyn()).unwrap(),
                array![3.0, 3.0].into_dyn()
            );
        }
        assert!(matches!(
            pb.call(&array![1.0].into_dyn()),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn auto_picks_forward_for_wide_outputs() {
        let x = array![2.0].into_dyn();
        let w = ndarray::Array1::<f64>::linspace(0.0, 1.0, 40);
        let j = jacobian(
            move |x: Var<'_, f64>| x * x.tape().constant(w.clone()),
            &x,
            Mode::Auto,
        )
        .unwrap();
        assert_eq!(j.mode, Mode::Forward);
        assert_eq!(j.jacobian.shape(), &[40, 1]);
        assert!(j.estimate.forward_total() < j.estimate.reverse_total());
    }

    #[test]
    fn grad_of_a_non_scalar_is_a_typed_error() {
        let r = grad(|x| x * x, &array![1.0, 2.0].into_dyn());
        assert!(matches!(r, Err(Error::NonScalarOutput { .. })));
    }

    #[test]
    fn derivatives_of_a_constant_are_zero() {
        let d = derivatives(|x| x * 0.0 + 1.0, 3.0, 3).unwrap();
        assert_eq!(d, vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn jacobians_work_in_f32() {
        let j = jacrev(|x| x * x, &array![1.0f32, 2.0].into_dyn()).unwrap();
        assert_eq!(j, array![[2.0f32, 0.0], [0.0, 4.0]].into_dyn());
    }
}
