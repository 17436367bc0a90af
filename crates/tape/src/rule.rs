//! The rule interface: what a primitive tells the tape.

use smallvec::SmallVec;

use crate::Float;
use crate::tensor::{Shape, Tensor};
use crate::var::Val;

/// The cotangents a VJP rule returns, one per input, in input order; `None` for an input
/// that gets no gradient (one [`RuleCtx::needs`] said nobody asked for, or an integer-like
/// input such as a mask). Two live inline.
///
/// ```
/// use retrograd_tape::{Cotangents, Val};
/// let g: Val<'_, f64> = Val::Const(2.0.into());
/// let one = Cotangents::one(g.clone());                 // a unary op
/// let two = Cotangents::two(g.clone(), None);           // the second input gets none
/// let many: Cotangents<'_, f64> = (0..3).map(|_| Some(g.clone())).collect();
/// assert_eq!((one.len(), two.len(), many.len()), (1, 2, 3));
/// ```
pub struct Cotangents<'t, T: Float>(SmallVec<[Option<Val<'t, T>>; 2]>);

impl<'t, T: Float> Cotangents<'t, T> {
    /// None yet: [`push`](Cotangents::push) one per input.
    pub fn new() -> Self {
        Cotangents(SmallVec::new())
    }

    /// The cotangent of a one-input op.
    pub fn one(a: impl Into<Option<Val<'t, T>>>) -> Self {
        Cotangents(smallvec::smallvec![a.into()])
    }

    /// The cotangents of a two-input op.
    pub fn two(a: impl Into<Option<Val<'t, T>>>, b: impl Into<Option<Val<'t, T>>>) -> Self {
        Cotangents(smallvec::smallvec![a.into(), b.into()])
    }

    /// The number of cotangents.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends the cotangent of the next input.
    pub fn push(&mut self, c: impl Into<Option<Val<'t, T>>>) {
        self.0.push(c.into());
    }
}

impl<T: Float> Default for Cotangents<'_, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'t, T: Float> FromIterator<Option<Val<'t, T>>> for Cotangents<'t, T> {
    fn from_iter<I: IntoIterator<Item = Option<Val<'t, T>>>>(iter: I) -> Self {
        Cotangents(iter.into_iter().collect())
    }
}

/// `Cotangents::from([Some(da), None])`: one per input, in order.
impl<'t, T: Float, const N: usize> From<[Option<Val<'t, T>>; N]> for Cotangents<'t, T> {
    fn from(cots: [Option<Val<'t, T>>; N]) -> Self {
        Cotangents(cots.into_iter().collect())
    }
}

impl<'t, T: Float> IntoIterator for Cotangents<'t, T> {
    type Item = Option<Val<'t, T>>;
    type IntoIter = smallvec::IntoIter<[Option<Val<'t, T>>; 2]>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'t, T: Float> std::ops::Index<usize> for Cotangents<'t, T> {
    type Output = Option<Val<'t, T>>;
    fn index(&self, i: usize) -> &Self::Output {
        &self.0[i]
    }
}

impl<'t, T: Float> std::ops::IndexMut<usize> for Cotangents<'t, T> {
    fn index_mut(&mut self, i: usize) -> &mut Self::Output {
        &mut self.0[i]
    }
}

/// A primitive operation: its name, its forward computation, and its two derivative rules.
///
/// Both rules are written in differentiable ops on [`Val`] (the same methods and operators
/// a user calls on a [`Var`](crate::Var)), and that one choice gives everything else:
///
/// - In a plain backward sweep every `Val` the rule sees is a constant tensor, so the rule
///   computes with plain arrays and records nothing.
/// - When the caller asks for a differentiable result (`create_graph`), the rule sees the
///   tape's own nodes as `Val::Var`, so the very same code records its ops: gradients of
///   gradients, Hessian-vector products and Hessians work for every primitive, custom
///   ones included, with no extra code.
/// - A forward (tangent) sweep calls [`Rule::jvp`] the same way.
///
/// The forward computation works on plain tensors and may keep what the rules need later
/// beyond the inputs and the output (an arg-max index, a mask) in `self`; the tape keeps the
/// inputs' and the output's values anyway, so rules read those through [`RuleCtx`].
///
/// # A custom primitive
/// ```
/// use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tape, Tensor, Val, Var, Operand};
///
/// /// `x³`, elementwise.
/// struct Cube;
///
/// impl<T: Float> Rule<T> for Cube {
///     fn name(&self) -> &'static str { "cube" }
///     fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
///         Ok(x[0].map(|v| v * v * v))
///     }
///     fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
///         let x = cx.input(0);
///         Cotangents::one(g * &(x * x) * T::of(3.0))
///     }
///     fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
///         let x = cx.input(0);
///         t[0].as_ref().map(|t| t * &(x * x) * T::of(3.0))
///     }
/// }
///
/// let tape = Tape::<f64>::new();
/// let x = tape.var(2.0);
/// let y = Var::apply(Cube, &[&x]);
/// assert_eq!(y.item(), 8.0);
/// // dy/dx = 3x² = 12, and d²y/dx² = 6x = 12 through the same rule.
/// let [dx] = tape.grad_graph(y, &[x]).unwrap()[..] else { unreachable!() };
/// assert_eq!(dx.item(), 12.0);
/// assert_eq!(tape.grad(dx, &[x]).unwrap()[0].sum(), 12.0);
/// ```
pub trait Rule<T: Float>: 'static {
    /// The op's name as dumps and error messages print it (`"matmul"`, `"tanh"`).
    fn name(&self) -> &'static str;

    /// The op's attributes as `(name, value)` pairs, for inspection (`[("axis", "1")]`).
    fn attributes(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Computes the output from the inputs' values. An `Err` describes why the inputs do
    /// not fit the op (their shapes); the tape turns it into a panic that names the op, the
    /// shapes and the caller's line, or into [`Error::InvalidOp`](crate::Error) for `try_`
    /// callers.
    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>, String>;

    /// The vector-Jacobian product: given the cotangent of the output, the cotangent of
    /// each input (in input order; `None` where [`RuleCtx::needs`] is false or the input
    /// has no gradient). Each returned cotangent must have its input's shape.
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, cotangent: &Val<'t, T>) -> Cotangents<'t, T>;

    /// The Jacobian-vector product: given a tangent per input (`None` for an input with a
    /// zero tangent; at least one is `Some`), the tangent of the output, of the output's
    /// shape. `None` means a zero tangent.
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, tangents: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>>;

    /// An optional fast path for recording on scalars: given the inputs' values, all
    /// scalars, the output's value, or `None` to have [`forward`](Rule::forward) compute
    /// it as usual (the default). The result stays in a register on its way into the
    /// tape, where a `Tensor` returned through `forward`'s `Result` goes through memory; on
    /// scalar chains that move costs more than the arithmetic. It must agree with
    /// `forward`.
    ///
    /// ```
    /// # use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};
    /// struct Square;
    /// impl<T: Float> Rule<T> for Square {
    ///     fn name(&self) -> &'static str { "square" }
    ///     fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
    ///         Ok(x[0].map(|v| v * v))
    ///     }
    ///     fn scalar_forward(&mut self, x: &[T]) -> Option<T> {
    ///         Some(x[0] * x[0])
    ///     }
    ///     fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
    ///         Cotangents::one(g * cx.input(0) * T::of(2.0))
    ///     }
    ///     fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
    ///         t[0].as_ref().map(|t| t * cx.input(0) * T::of(2.0))
    ///     }
    /// }
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let y = retrograd_tape::Var::apply(Square, &[&tape.var(3.0)]); // through scalar_forward
    /// assert_eq!(y.item(), 9.0);
    /// ```
    fn scalar_forward(&mut self, inputs: &[T]) -> Option<T> {
        let _ = inputs;
        None
    }

    /// An optional fast path for the plain reverse sweep over scalar nodes (scalar-heavy
    /// graphs spend most of their time in per-node bookkeeping, not arithmetic): given the
    /// inputs' values, the output's value and the output's cotangent `g`, all scalars,
    /// write each input's cotangent into `cotangents` and return `true`. The default
    /// returns `false`, and the sweep calls [`vjp`](Rule::vjp) as usual. It must agree
    /// with `vjp`; the sweep uses it only when nothing is recorded and every value is a
    /// scalar, so `vjp` still serves higher order.
    ///
    /// ```
    /// # use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tensor, Val};
    /// struct Cube;
    /// impl<T: Float> Rule<T> for Cube {
    ///     fn name(&self) -> &'static str { "cube" }
    ///     fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
    ///         Ok(x[0].map(|v| v * v * v))
    ///     }
    ///     fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
    ///         let x = cx.input(0);
    ///         Cotangents::one(g * &(x * x) * T::of(3.0))
    ///     }
    ///     fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
    ///         let x = cx.input(0);
    ///         t[0].as_ref().map(|t| t * &(x * x) * T::of(3.0))
    ///     }
    ///     fn scalar_vjp(&self, x: &[T], _y: T, g: T, cot: &mut [T]) -> bool {
    ///         cot[0] = g * x[0] * x[0] * T::of(3.0);
    ///         true
    ///     }
    /// }
    /// let tape = retrograd_tape::Tape::<f64>::new();
    /// let x = tape.var(2.0);
    /// let y = retrograd_tape::Var::apply(Cube, &[&x]);
    /// assert_eq!(y.backward().unwrap()[x].item(), 12.0); // through scalar_vjp
    /// ```
    fn scalar_vjp(&self, inputs: &[T], output: T, g: T, cotangents: &mut [T]) -> bool {
        let _ = (inputs, output, g, cotangents);
        false
    }

    /// Whether [`jvp`](Rule::jvp) and [`vjp`](Rule::vjp) only combine the tangent (or
    /// cotangent) elementwise with values of the output's shape, every input having that
    /// shape: then broadcasting carries a leading batch axis through the same code, and
    /// the default batched rules call them once on the whole batch instead of once per
    /// batch element. `false` by default; elementwise rules of one shape answer `true`
    /// (the kit's batched comparisons check the claim).
    fn batch_broadcasts(&self) -> bool {
        false
    }

    /// The batched JVP: `tangents[i]` is `None` (zero) or a plain tensor of shape
    /// `[k] ++ input_shape(i)` holding `k` tangents of input `i`; returns the `k` tangents of
    /// the output as one tensor of shape `[k] ++ output_shape` (`None`: all zero). The
    /// batched forward sweep ([`Tape::jvp_batch`](crate::Tape::jvp_batch)) calls it with a
    /// plain context. The default calls [`jvp`](Rule::jvp) once per batch element
    /// ([`batch::jvp_each`](crate::batch::jvp_each)), or once on the whole batch when
    /// [`batch_broadcasts`](Rule::batch_broadcasts); override it when one call on the
    /// whole batch is cheaper (see [`batch`](crate::batch) for the helpers). It must agree
    /// with `jvp`, which the gradient-checking kit verifies.
    fn jvp_batch(
        &self,
        cx: &RuleCtx<'_, T>,
        tangents: &[Option<Tensor<T>>],
        k: usize,
    ) -> Option<Tensor<T>> {
        if self.batch_broadcasts() {
            crate::batch::jvp_elementwise(self, cx, tangents)
        } else {
            crate::batch::jvp_each(self, cx, tangents, k)
        }
    }

    /// The batched VJP: `cotangent` has shape `[k] ++ output_shape` and holds `k` cotangents
    /// of the output; returns, per input, `None` (not needed, or zero) or the `k` cotangents
    /// of that input as one tensor of shape `[k] ++ input_shape(i)`. The default calls
    /// [`vjp`](Rule::vjp) once per batch element
    /// ([`batch::vjp_each`](crate::batch::vjp_each)).
    fn vjp_batch(
        &self,
        cx: &RuleCtx<'_, T>,
        cotangent: &Tensor<T>,
        k: usize,
    ) -> Vec<Option<Tensor<T>>> {
        if self.batch_broadcasts() {
            crate::batch::vjp_elementwise(self, cx, cotangent)
        } else {
            crate::batch::vjp_each(self, cx, cotangent, k)
        }
    }

    /// Bytes of state the forward computation kept in `self` for the rules (for the tape's
    /// memory accounting). Inputs and output are counted by the tape.
    fn saved_bytes(&self) -> usize {
        0
    }

    /// An estimate of the multiply-adds the forward computation costs for these shapes,
    /// for the tape summary ([`Tape::summary`](crate::Tape::summary)). The default counts
    /// one per output element, right for elementwise ops; ops whose work is not
    /// proportional to their output override it (a matmul `[m, k] x [k, n]` costs
    /// `m * k * n`, a reduction one per input element).
    fn madds(&self, input_shapes: &[&[usize]], output_shape: &[usize]) -> u64 {
        let _ = input_shapes;
        output_shape.iter().map(|&d| d as u64).product()
    }
}

/// What a rule can read while it computes a derivative: the op's inputs and output (as
/// constants in a plain sweep, as the tape's nodes when the sweep records itself) and which
/// inputs the sweep needs a cotangent for.
pub struct RuleCtx<'t, T: Float> {
    pub(crate) inputs: SmallVec<[Val<'t, T>; 2]>,
    pub(crate) output: Val<'t, T>,
    /// Bit `i` set: input `i`'s cotangent is needed. Inputs past the 64th are always
    /// reported as needed (the sweep ignores what it did not ask for).
    pub(crate) needs: u64,
}

impl<'t, T: Float> RuleCtx<'t, T> {
    /// Builds a context by hand, e.g. to unit-test a rule without a tape; every input is
    /// marked as needing a cotangent.
    pub fn new(inputs: Vec<Val<'t, T>>, output: Val<'t, T>) -> Self {
        let needs = u64::MAX;
        RuleCtx {
            inputs: inputs.into_iter().collect(),
            output,
            needs,
        }
    }

    /// Input `i` of the op.
    ///
    /// # Panics
    /// When the op has no input `i`.
    pub fn input(&self, i: usize) -> &Val<'t, T> {
        &self.inputs[i]
    }

    /// All inputs, in order.
    pub fn inputs(&self) -> &[Val<'t, T>] {
        &self.inputs
    }

    /// The op's output.
    pub fn output(&self) -> &Val<'t, T> {
        &self.output
    }

    /// The shape of input `i`.
    pub fn input_shape(&self, i: usize) -> Shape {
        self.inputs[i].shape()
    }

    /// Whether the sweep needs the cotangent of input `i`. A rule should skip the work for
    /// inputs that are not needed (e.g. the data input of a first layer).
    pub fn needs(&self, i: usize) -> bool {
        i < self.inputs.len() && (i >= 64 || self.needs >> i & 1 == 1)
    }
}
