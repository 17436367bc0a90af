//! Shared helpers of retrograd's cross-crate tests (the tests themselves live in
//! `tests/tests/`): a proptest strategy for **random programs** over the op set, an
//! interpreter that runs a program on [`Var`]s of any element type, and small numeric
//! helpers (finite-difference Jacobians, closeness checks).
//!
//! A [`Program`] is a straight-line sequence of instructions over registers: registers
//! `%0 .. %n-1` are the inputs, each instruction appends one register, and the last
//! register is the output. Programs are built from random "choice words" so that every
//! instruction is valid for the shapes at hand (broadcasting operands, matmul-compatible
//! pairs, axes in range, slices inside the extent); domains are respected by construction
//! (`ln`, `sqrt`, `recip`, `powf`, `log1p`, the base of `pow` and the denominator of `div`
//! are applied to `pos(x) = softplus(x) + 0.1`). A failing case prints the program as
//! readable code:
//!
//! ```text
//! program(%0: [2, 3], %1: [3]) {
//!   %2 = exp(%0)                                 # [2, 3]
//!   %3 = div(%2, pos(%1))                        # [2, 3]
//!   %4 = logsumexp(%3, axes=[-1], keepdims=true) # [2, 1]
//!   return %4
//! }
//! ```
//!
//! ```
//! use proptest::prelude::*;
//! use retrograd::tape::check::{check_gradients, CheckOptions};
//! use retrograd::tape::strategies::config;
//! use retrograd_tests::{ProgramConfig, program_case};
//!
//! proptest! {
//!     #![proptest_config(config(4))]
//!     fn random_programs_have_right_gradients(case in program_case(ProgramConfig::default())) {
//!         let r = check_gradients(|x| case.program.eval(x), &case.inputs, &CheckOptions::default());
//!         prop_assert!(r.is_ok(), "{}", r.unwrap_err());
//!     }
//! }
//! # random_programs_have_right_gradients();
//! ```

pub mod fuzz;

use std::fmt;

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use retrograd::ops::prelude::*;
use retrograd::ops::reduce::Axes;
use retrograd::ops::shape::concat;
use retrograd::tape::arith::ScalarLhs;
use retrograd::tape::broadcast_shapes;

/// Functions of one tensor. Those marked "on `pos`" are applied to
/// `pos(x) = softplus(x) + 0.1`, which keeps them inside their domain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `eˣ`.
    Exp,
    /// `sin x`.
    Sin,
    /// `cos x`.
    Cos,
    /// `tanh x`.
    Tanh,
    /// The logistic function.
    Sigmoid,
    /// `ln(1 + eˣ)`.
    Softplus,
    /// `x²`.
    Square,
    /// Exact GELU.
    Gelu,
    /// GELU, tanh approximation.
    GeluTanh,
    /// The error function.
    Erf,
    /// `eˣ − 1`.
    Expm1,
    /// `ln` on `pos`.
    Ln,
    /// `√` on `pos`.
    Sqrt,
    /// `1/x` on `pos`.
    Recip,
    /// `xᵖ` on `pos`.
    Powf(f64),
    /// `ln(1 + x)` on `pos`.
    Log1p,
    /// `max(x, 0)`: has a kink at 0.
    Relu,
    /// `|x|`: has a kink at 0.
    Abs,
    /// Leaky ReLU with slope 0.1: has a kink at 0.
    LeakyRelu,
    /// `clamp(x, -1, 1)`: has kinks at ±1.
    Clamp,
}

impl UnaryOp {
    const SMOOTH: [UnaryOp; 17] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Softplus,
        UnaryOp::Square,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Erf,
        UnaryOp::Expm1,
        UnaryOp::Ln,
        UnaryOp::Sqrt,
        UnaryOp::Recip,
        UnaryOp::Powf(1.5),
        UnaryOp::Log1p,
    ];
    const KINKED: [UnaryOp; 5] = [
        UnaryOp::Relu,
        UnaryOp::Abs,
        UnaryOp::LeakyRelu,
        UnaryOp::Clamp,
        UnaryOp::Powf(-0.5),
    ];

    /// Whether the op is applied to `pos(x)` rather than `x`.
    fn on_pos(self) -> bool {
        matches!(
            self,
            UnaryOp::Ln | UnaryOp::Sqrt | UnaryOp::Recip | UnaryOp::Powf(_) | UnaryOp::Log1p
        )
    }

    fn is_smooth(self) -> bool {
        !matches!(
            self,
            UnaryOp::Relu | UnaryOp::Abs | UnaryOp::LeakyRelu | UnaryOp::Clamp
        )
    }

    fn name(self) -> String {
        match self {
            UnaryOp::Powf(p) => format!("powf[{p}]"),
            UnaryOp::GeluTanh => "gelu_tanh".into(),
            UnaryOp::LeakyRelu => "leaky_relu[0.1]".into(),
            UnaryOp::Clamp => "clamp[-1, 1]".into(),
            op => format!("{op:?}").to_lowercase(),
        }
    }
}

/// Broadcasting functions of two tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a − b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / pos(b)`.
    Div,
    /// `pos(a) ^ b`.
    Pow,
    /// Elementwise maximum: kinked where `a = b`.
    Maximum,
    /// Elementwise minimum: kinked where `a = b`.
    Minimum,
}

/// An op with a scalar constant `c`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalarOp {
    /// `x + c`.
    Add(f64),
    /// `x · c`.
    Mul(f64),
    /// `c − x`.
    SubFrom(f64),
    /// `x / c`.
    Div(f64),
}

/// Reductions over axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Mean.
    Mean,
    /// Population variance.
    Var,
    /// `ln Σ eˣ`.
    LogSumExp,
    /// Maximum: kinked at ties.
    Max,
    /// Minimum: kinked at ties.
    Min,
}

/// One instruction; operands are register numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum Instr {
    /// An elementwise function.
    Unary(UnaryOp, usize),
    /// A broadcasting function of two registers.
    Binary(BinaryOp, usize, usize),
    /// A function of a register and a scalar constant.
    Scalar(ScalarOp, usize),
    /// A reduction over `axes` (`None`: all of them).
    Reduce {
        /// Which reduction.
        op: ReduceOp,
        /// The operand.
        x: usize,
        /// The axes, `None` for all.
        axes: Option<Vec<isize>>,
        /// Whether reduced axes are kept with extent 1.
        keepdims: bool,
    },
    /// Reshape (one extent may be `-1`).
    Reshape(usize, Vec<isize>),
    /// Swap the last two axes.
    Transpose(usize),
    /// `x[start..end]` along `axis`.
    Slice {
        /// The operand.
        x: usize,
        /// The axis.
        axis: isize,
        /// First index kept.
        start: usize,
        /// One past the last index kept.
        end: usize,
    },
    /// Concatenation along `axis`.
    Concat(usize, usize, isize),
    /// numpy's matmul of rank-1 or rank-2 operands.
    MatMul(usize, usize),
    /// Softmax along an axis.
    Softmax(usize, isize),
    /// Log-softmax along an axis.
    LogSoftmax(usize, isize),
}

impl Instr {
    fn is_smooth(&self) -> bool {
        match self {
            Instr::Unary(op, _) => op.is_smooth(),
            Instr::Binary(op, ..) => !matches!(op, BinaryOp::Maximum | BinaryOp::Minimum),
            Instr::Reduce { op, .. } => !matches!(op, ReduceOp::Max | ReduceOp::Min),
            _ => true,
        }
    }

    fn text(&self) -> String {
        match self {
            Instr::Unary(op, x) if op.on_pos() => format!("{}(pos(%{x}))", op.name()),
            Instr::Unary(op, x) => format!("{}(%{x})", op.name()),
            Instr::Binary(BinaryOp::Div, a, b) => format!("div(%{a}, pos(%{b}))"),
            Instr::Binary(BinaryOp::Pow, a, b) => format!("pow(pos(%{a}), %{b})"),
            Instr::Binary(op, a, b) => format!("{}(%{a}, %{b})", format!("{op:?}").to_lowercase()),
            Instr::Scalar(ScalarOp::Add(c), x) => format!("%{x} + {c}"),
            Instr::Scalar(ScalarOp::Mul(c), x) => format!("%{x} * {c}"),
            Instr::Scalar(ScalarOp::SubFrom(c), x) => format!("{c} - %{x}"),
            Instr::Scalar(ScalarOp::Div(c), x) => format!("%{x} / {c}"),
            Instr::Reduce {
                op,
                x,
                axes,
                keepdims,
            } => {
                let axes = axes
                    .as_ref()
                    .map_or("all".to_string(), |a| format!("{a:?}"));
                let op = format!("{op:?}").to_lowercase();
                format!("{op}(%{x}, axes={axes}, keepdims={keepdims})")
            }
            Instr::Reshape(x, s) => format!("reshape(%{x}, {s:?})"),
            Instr::Transpose(x) => format!("transpose(%{x})"),
            Instr::Slice {
                x,
                axis,
                start,
                end,
            } => format!("slice(%{x}, axis={axis}, {start}..{end})"),
            Instr::Concat(a, b, axis) => format!("concat([%{a}, %{b}], axis={axis})"),
            Instr::MatMul(a, b) => format!("matmul(%{a}, %{b})"),
            Instr::Softmax(x, axis) => format!("softmax(%{x}, axis={axis})"),
            Instr::LogSoftmax(x, axis) => format!("log_softmax(%{x}, axis={axis})"),
        }
    }
}

/// A straight-line program over tensors: inputs `%0 ..`, one register per instruction,
/// the last register is the output. `Debug` prints it as code.
#[derive(Clone, PartialEq)]
pub struct Program {
    /// The input shapes.
    pub inputs: Vec<Vec<usize>>,
    /// The instructions, in order.
    pub instrs: Vec<Instr>,
    /// The shape of every register (inputs first), as the builder inferred it; the
    /// interpreter asserts that the engine agrees.
    pub shapes: Vec<Vec<usize>>,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ins: Vec<String> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, s)| format!("%{i}: {s:?}"))
            .collect();
        writeln!(f, "program({}) {{", ins.join(", "))?;
        let n = self.inputs.len();
        for (k, instr) in self.instrs.iter().enumerate() {
            let line = format!("%{} = {}", n + k, instr.text());
            writeln!(f, "  {line:<44} # {:?}", self.shapes[n + k])?;
        }
        writeln!(f, "  return %{}", self.shapes.len() - 1)?;
        write!(f, "}}")
    }
}

/// What kind of programs [`program_case`] makes.
#[derive(Clone, Debug)]
pub struct ProgramConfig {
    /// At most this many instructions (at least one).
    pub max_instrs: usize,
    /// At most this many inputs (at least one).
    pub max_inputs: usize,
    /// Largest extent of the base dimensions (tensors have rank at most 2).
    pub max_extent: usize,
    /// Whether kinked ops (relu, abs, leaky_relu, clamp, maximum, minimum, max, min) may
    /// appear. Cases are then kept only where every kink is at least `kink_gap` away.
    pub kinked: bool,
    /// The smallest distance from a kink a kept case has (see [`Program::kink_margin`]).
    pub kink_gap: f64,
    /// Cases where any register holds a value larger than this in magnitude (or a
    /// non-finite one) are discarded: finite differences lose their accuracy there.
    pub max_magnitude: f64,
    /// Cases where any register's derivative with respect to any input element exceeds
    /// this in magnitude are discarded: central differences (whose error grows with the
    /// third derivative) cannot check them at a fixed tolerance.
    pub max_slope: f64,
    /// Input values are uniform in `[-range, range]`.
    pub range: f64,
}

impl Default for ProgramConfig {
    fn default() -> Self {
        ProgramConfig {
            max_instrs: 8,
            max_inputs: 3,
            max_extent: 3,
            kinked: false,
            kink_gap: 1e-2,
            max_magnitude: 1e3,
            max_slope: 30.0,
            range: 2.0,
        }
    }
}

impl ProgramConfig {
    /// Smooth programs only (every op twice differentiable everywhere).
    pub fn smooth() -> Self {
        Self::default()
    }

    /// Programs that may use kinked ops, kept only away from their kinks.
    pub fn with_kinks() -> Self {
        ProgramConfig {
            kinked: true,
            ..Self::default()
        }
    }
}

/// The random choices one instruction is built from.
type Choice = (u32, u32, u32, u32);

/// Builds programs from choice words, tracking register shapes.
struct Builder<'c> {
    cfg: &'c ProgramConfig,
    shapes: Vec<Vec<usize>>,
    instrs: Vec<Instr>,
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

impl Builder<'_> {
    /// An operand: the latest register half the time (deep chains), any register else.
    fn pick(&self, w: u32) -> usize {
        let n = self.shapes.len();
        if w & 1 == 0 {
            n - 1
        } else {
            (w as usize >> 1) % n
        }
    }

    fn push(&mut self, instr: Instr, shape: Vec<usize>) {
        self.instrs.push(instr);
        self.shapes.push(shape);
    }

    fn unary(&mut self, w: u32, x: usize) {
        let smooth = &UnaryOp::SMOOTH;
        let kinked = &UnaryOp::KINKED;
        let n = smooth.len() + if self.cfg.kinked { kinked.len() } else { 0 };
        let i = w as usize % n;
        let op = if i < smooth.len() {
            smooth[i]
        } else {
            kinked[i - smooth.len()]
        };
        let shape = self.shapes[x].clone();
        self.push(Instr::Unary(op, x), shape);
    }

    /// Appends one instruction chosen by `c`; falls back to a unary op of the latest
    /// register when the chosen kind does not fit any operand.
    fn step(&mut self, (kind, w1, w2, w3): Choice) {
        let x = self.pick(w1);
        let sx = self.shapes[x].clone();
        let done = match kind % 11 {
            0 | 1 => {
                self.unary(w2, x);
                true
            }
            2 => self.binary(x, w2, w3),
            3 => {
                let c = [0.5, -1.5, 2.0, 0.3][w3 as usize % 4];
                let op = match w2 % 4 {
                    0 => ScalarOp::Add(c),
                    1 => ScalarOp::Mul(c),
                    2 => ScalarOp::SubFrom(c),
                    _ => ScalarOp::Div(c),
                };
                self.push(Instr::Scalar(op, x), sx);
                true
            }
            4 => self.reduce(x, w2, w3),
            5 => self.reshape(x, w2, w3),
            6 if sx.len() == 2 => {
                self.push(Instr::Transpose(x), vec![sx[1], sx[0]]);
                true
            }
            7 => self.slice(x, w2, w3),
            8 => self.concat(x, w2, w3),
            9 => self.matmul(w2),
            10 if !sx.is_empty() => {
                let r = sx.len() as isize;
                let axis = (w2 as isize % (2 * r)) - r;
                let instr = if w3 & 1 == 0 {
                    Instr::Softmax(x, axis)
                } else {
                    Instr::LogSoftmax(x, axis)
                };
                self.push(instr, sx);
                true
            }
            _ => false,
        };
        if !done {
            let last = self.shapes.len() - 1;
            self.unary(w2, last);
        }
    }

    fn binary(&mut self, a: usize, w2: u32, w3: u32) -> bool {
        let sa = self.shapes[a].clone();
        let partners: Vec<(usize, Vec<usize>)> = (0..self.shapes.len())
            .filter_map(|b| broadcast_shapes(&sa, &self.shapes[b]).map(|s| (b, s.to_vec())))
            .collect();
        let (b, shape) = partners[w2 as usize % partners.len()].clone();
        let ops: &[BinaryOp] = if self.cfg.kinked {
            &[
                BinaryOp::Add,
                BinaryOp::Sub,
                BinaryOp::Mul,
                BinaryOp::Div,
                BinaryOp::Pow,
                BinaryOp::Maximum,
                BinaryOp::Minimum,
            ]
        } else {
            &[
                BinaryOp::Add,
                BinaryOp::Sub,
                BinaryOp::Mul,
                BinaryOp::Div,
                BinaryOp::Pow,
            ]
        };
        let op = ops[w3 as usize % ops.len()];
        // Swap sides sometimes, so either operand may be the broadcast one.
        let (a, b) = if (w3 >> 3) & 1 == 0 { (a, b) } else { (b, a) };
        self.push(Instr::Binary(op, a, b), shape);
        true
    }

    fn reduce(&mut self, x: usize, w2: u32, w3: u32) -> bool {
        let sx = self.shapes[x].clone();
        let r = sx.len();
        let ops: &[ReduceOp] = if self.cfg.kinked {
            &[
                ReduceOp::Sum,
                ReduceOp::Mean,
                ReduceOp::Var,
                ReduceOp::LogSumExp,
                ReduceOp::Max,
                ReduceOp::Min,
            ]
        } else {
            &[
                ReduceOp::Sum,
                ReduceOp::Mean,
                ReduceOp::Var,
                ReduceOp::LogSumExp,
            ]
        };
        let op = ops[w2 as usize % ops.len()];
        let keepdims = w3 & 1 == 0;
        // Axes: all, one (possibly negative), or (rank 2) both in either order.
        let axes: Option<Vec<isize>> = match (r, (w3 / 2) % 4) {
            (0, _) | (_, 0) => None,
            (2, 3) => Some(if (w3 >> 3) & 1 == 0 {
                vec![0, 1]
            } else {
                vec![-1, 0]
            }),
            _ => {
                let ri = r as isize;
                Some(vec![((w3 / 8) as isize % (2 * ri)) - ri])
            }
        };
        let reduced: Vec<usize> = match &axes {
            None => (0..r).collect(),
            Some(a) => a
                .iter()
                .map(|&i| {
                    if i < 0 {
                        (i + r as isize) as usize
                    } else {
                        i as usize
                    }
                })
                .collect(),
        };
        let shape: Vec<usize> = (0..r)
            .filter_map(|i| {
                if !reduced.contains(&i) {
                    Some(sx[i])
                } else if keepdims {
                    Some(1)
                } else {
                    None
                }
            })
            .collect();
        self.push(
            Instr::Reduce {
                op,
                x,
                axes,
                keepdims,
            },
            shape,
        );
        true
    }

    fn reshape(&mut self, x: usize, w2: u32, w3: u32) -> bool {
        let n = numel(&self.shapes[x]);
        let mut targets: Vec<Vec<usize>> = vec![vec![n], vec![1, n], vec![n, 1]];
        targets.extend(
            (2..n)
                .filter(|&p| n.is_multiple_of(p))
                .map(|p| vec![p, n / p]),
        );
        if n == 1 {
            targets.push(vec![]);
        }
        let shape = targets[w2 as usize % targets.len()].clone();
        let mut spec: Vec<isize> = shape.iter().map(|&e| e as isize).collect();
        if !spec.is_empty() && w3 % 2 == 1 {
            let i = (w3 as usize / 2) % spec.len();
            spec[i] = -1;
        }
        self.push(Instr::Reshape(x, spec), shape);
        true
    }

    fn slice(&mut self, x: usize, w2: u32, w3: u32) -> bool {
        let sx = self.shapes[x].clone();
        let axes: Vec<usize> = (0..sx.len()).filter(|&i| sx[i] >= 2).collect();
        if axes.is_empty() {
            return false;
        }
        let ax = axes[w2 as usize % axes.len()];
        let e = sx[ax];
        let start = w3 as usize % e;
        let end = start + 1 + (w3 as usize / 8) % (e - start);
        let axis = if (w2 >> 4) & 1 == 0 {
            ax as isize
        } else {
            ax as isize - sx.len() as isize
        };
        let mut shape = sx;
        shape[ax] = end - start;
        self.push(
            Instr::Slice {
                x,
                axis,
                start,
                end,
            },
            shape,
        );
        true
    }

    fn concat(&mut self, a: usize, w2: u32, w3: u32) -> bool {
        let sa = self.shapes[a].clone();
        let mut options = Vec::new();
        for (b, sb) in self.shapes.iter().enumerate() {
            if sb.len() != sa.len() || sa.is_empty() {
                continue;
            }
            for ax in 0..sa.len() {
                let fits = (0..sa.len()).all(|i| i == ax || sa[i] == sb[i]);
                if fits && sa[ax] + sb[ax] <= 2 * self.cfg.max_extent {
                    options.push((b, ax));
                }
            }
        }
        if options.is_empty() {
            return false;
        }
        let (b, ax) = options[w2 as usize % options.len()];
        let mut shape = sa.clone();
        shape[ax] += self.shapes[b][ax];
        let axis = if w3 & 1 == 0 {
            ax as isize
        } else {
            ax as isize - sa.len() as isize
        };
        self.push(Instr::Concat(a, b, axis), shape);
        true
    }

    fn matmul(&mut self, w2: u32) -> bool {
        let mut pairs = Vec::new();
        for (a, sa) in self.shapes.iter().enumerate() {
            for (b, sb) in self.shapes.iter().enumerate() {
                if !sa.is_empty() && !sb.is_empty() && sa[sa.len() - 1] == sb[0] {
                    let mut shape: Vec<usize> = sa[..sa.len() - 1].to_vec();
                    shape.extend(&sb[1..]);
                    pairs.push((a, b, shape));
                }
            }
        }
        if pairs.is_empty() {
            return false;
        }
        // Prefer products that involve the latest register.
        let last = self.shapes.len() - 1;
        let recent: Vec<_> = pairs
            .iter()
            .filter(|(a, b, _)| *a == last || *b == last)
            .cloned()
            .collect();
        let pool = if !recent.is_empty() && w2 & 1 == 0 {
            recent
        } else {
            pairs
        };
        let (a, b, shape) = pool[(w2 as usize / 2) % pool.len()].clone();
        self.push(Instr::MatMul(a, b), shape);
        true
    }
}

impl Program {
    /// Builds a program over inputs of the given shapes, one instruction per choice.
    ///
    /// # Panics
    /// With no inputs.
    pub fn build(inputs: Vec<Vec<usize>>, choices: &[Choice], cfg: &ProgramConfig) -> Self {
        assert!(!inputs.is_empty(), "a program needs an input");
        let mut b = Builder {
            cfg,
            shapes: inputs.clone(),
            instrs: Vec::new(),
        };
        for &c in choices {
            b.step(c);
        }
        Program {
            inputs,
            instrs: b.instrs,
            shapes: b.shapes,
        }
    }

    /// The output's shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.shapes[self.shapes.len() - 1]
    }

    /// The number of input elements.
    pub fn input_len(&self) -> usize {
        self.inputs.iter().map(|s| numel(s)).sum()
    }

    /// Whether every op is twice differentiable everywhere.
    pub fn is_smooth(&self) -> bool {
        self.instrs.iter().all(Instr::is_smooth)
    }

    /// Runs the program on `inputs` (of the program's input shapes) and returns the output.
    ///
    /// # Panics
    /// When an input's shape is wrong, or the engine's shapes disagree with the builder's.
    pub fn eval<'t, T: Float>(&self, inputs: &[Var<'t, T>]) -> Var<'t, T> {
        let regs = self.eval_all(inputs);
        regs[regs.len() - 1]
    }

    /// Runs the program and returns every register (inputs first).
    ///
    /// # Panics
    /// As [`eval`](Program::eval).
    pub fn eval_all<'t, T: Float>(&self, inputs: &[Var<'t, T>]) -> Vec<Var<'t, T>> {
        assert_eq!(inputs.len(), self.inputs.len(), "input count\n{self:?}");
        let mut r: Vec<Var<'t, T>> = inputs.to_vec();
        for (k, (v, s)) in r.iter().zip(&self.inputs).enumerate() {
            assert_eq!(v.shape().as_slice(), s.as_slice(), "input %{k}\n{self:?}");
        }
        let c = T::of;
        let pos = |x: Var<'t, T>| x.softplus() + c(0.1);
        for instr in &self.instrs {
            let y = match instr {
                Instr::Unary(op, x) => {
                    let x = if op.on_pos() { pos(r[*x]) } else { r[*x] };
                    match op {
                        UnaryOp::Neg => -x,
                        UnaryOp::Exp => x.exp(),
                        UnaryOp::Sin => x.sin(),
                        UnaryOp::Cos => x.cos(),
                        UnaryOp::Tanh => x.tanh(),
                        UnaryOp::Sigmoid => x.sigmoid(),
                        UnaryOp::Softplus => x.softplus(),
                        UnaryOp::Square => x.square(),
                        UnaryOp::Gelu => x.gelu(),
                        UnaryOp::GeluTanh => x.gelu_tanh(),
                        UnaryOp::Erf => x.erf(),
                        UnaryOp::Expm1 => x.expm1(),
                        UnaryOp::Ln => x.ln(),
                        UnaryOp::Sqrt => x.sqrt(),
                        UnaryOp::Recip => x.recip(),
                        UnaryOp::Powf(p) => x.powf(c(*p)),
                        UnaryOp::Log1p => x.log1p(),
                        UnaryOp::Relu => x.relu(),
                        UnaryOp::Abs => x.abs(),
                        UnaryOp::LeakyRelu => x.leaky_relu(c(0.1)),
                        UnaryOp::Clamp => x.clamp(c(-1.0), c(1.0)),
                    }
                }
                Instr::Binary(op, a, b) => {
                    let (a, b) = (r[*a], r[*b]);
                    match op {
                        BinaryOp::Add => a + b,
                        BinaryOp::Sub => a - b,
                        BinaryOp::Mul => a * b,
                        BinaryOp::Div => a / pos(b),
                        BinaryOp::Pow => pos(a).pow(&b),
                        BinaryOp::Maximum => a.maximum(&b),
                        BinaryOp::Minimum => a.minimum(&b),
                    }
                }
                Instr::Scalar(op, x) => {
                    let x = r[*x];
                    match *op {
                        ScalarOp::Add(k) => x + c(k),
                        ScalarOp::Mul(k) => x * c(k),
                        ScalarOp::SubFrom(k) => x.rsub(c(k)),
                        ScalarOp::Div(k) => x / c(k),
                    }
                }
                Instr::Reduce {
                    op,
                    x,
                    axes,
                    keepdims,
                } => {
                    let x = r[*x];
                    let axes = axes.clone().map_or(Axes::All, Axes::from);
                    let k = *keepdims;
                    match op {
                        ReduceOp::Sum => x.sum(axes, k),
                        ReduceOp::Mean => x.mean(axes, k),
                        ReduceOp::Var => x.var(axes, k),
                        ReduceOp::LogSumExp => x.logsumexp(axes, k),
                        ReduceOp::Max => x.max(axes, k),
                        ReduceOp::Min => x.min(axes, k),
                    }
                }
                Instr::Reshape(x, s) => r[*x].reshape(s),
                Instr::Transpose(x) => r[*x].transpose(),
                Instr::Slice {
                    x,
                    axis,
                    start,
                    end,
                } => r[*x].slice(*axis, *start..*end),
                Instr::Concat(a, b, axis) => concat(&[&r[*a], &r[*b]], *axis),
                Instr::MatMul(a, b) => r[*a].matmul(&r[*b]),
                Instr::Softmax(x, axis) => r[*x].softmax(*axis),
                Instr::LogSoftmax(x, axis) => r[*x].log_softmax(*axis),
            };
            let k = r.len();
            assert_eq!(
                y.shape().as_slice(),
                self.shapes[k].as_slice(),
                "%{k} has the wrong shape\n{self:?}"
            );
            r.push(y);
        }
        r
    }

    /// The program's output at `inputs`, computed in `f64` without recording gradients.
    pub fn value(&self, inputs: &[ArrayD<f64>]) -> ArrayD<f64> {
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = inputs.iter().map(|x| tape.constant(x.clone())).collect();
        self.eval(&xs).array()
    }

    /// The largest magnitude held by any register at `inputs` (infinite when a value is
    /// NaN or infinite).
    pub fn max_magnitude(&self, inputs: &[ArrayD<f64>]) -> f64 {
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = inputs.iter().map(|x| tape.constant(x.clone())).collect();
        let mut m: f64 = 0.0;
        for v in self.eval_all(&xs) {
            for &e in v.array().iter() {
                if !e.is_finite() {
                    return f64::INFINITY;
                }
                m = m.max(e.abs());
            }
        }
        m
    }

    /// The largest `|∂ register / ∂ input element|` over every register the program
    /// computes: one forward sweep per input element (programs are tiny).
    pub fn max_slope(&self, inputs: &[ArrayD<f64>]) -> f64 {
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = inputs.iter().map(|x| tape.var(x.clone())).collect();
        let regs = self.eval_all(&xs);
        let outs = &regs[xs.len()..];
        let mut m: f64 = 0.0;
        for (i, x) in inputs.iter().enumerate() {
            for j in 0..x.len() {
                let tangents: Vec<Tensor<f64>> = inputs
                    .iter()
                    .enumerate()
                    .map(|(k, y)| {
                        let mut t = ArrayD::zeros(y.raw_dim());
                        if k == i {
                            t.as_slice_mut().expect("standard layout")[j] = 1.0;
                        }
                        Tensor::from_array(t)
                    })
                    .collect();
                let Ok(ts) = tape.jvp(outs, &xs, tangents) else {
                    return f64::INFINITY;
                };
                for t in ts {
                    for &e in t.iter() {
                        if !e.is_finite() {
                            return f64::INFINITY;
                        }
                        m = m.max(e.abs());
                    }
                }
            }
        }
        m
    }

    /// How far the point is from the nearest kink of a kinked op: the smallest `|x|` a
    /// relu, abs or leaky_relu sees, the smallest distance of a clamp's input to ±1, of
    /// maximum's/minimum's operands to each other, and of a max/min reduction's winner to
    /// the runner-up (0 on a tie). Infinite for a smooth program.
    pub fn kink_margin(&self, inputs: &[ArrayD<f64>]) -> f64 {
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = inputs.iter().map(|x| tape.constant(x.clone())).collect();
        let r = self.eval_all(&xs);
        let min_abs = |v: Var<'_, f64>| v.array().iter().fold(f64::INFINITY, |m, e| m.min(e.abs()));
        let mut margin = f64::INFINITY;
        for instr in &self.instrs {
            let m = match instr {
                Instr::Unary(UnaryOp::Relu | UnaryOp::Abs | UnaryOp::LeakyRelu, x) => {
                    min_abs(r[*x])
                }
                Instr::Unary(UnaryOp::Clamp, x) => min_abs(r[*x] - 1.0).min(min_abs(r[*x] + 1.0)),
                Instr::Binary(BinaryOp::Maximum | BinaryOp::Minimum, a, b) => {
                    min_abs(r[*a] - r[*b])
                }
                Instr::Reduce {
                    op: op @ (ReduceOp::Max | ReduceOp::Min),
                    x,
                    axes,
                    ..
                } => {
                    // Within each group, the entries closer than the gap to the extremum
                    // must be the extremum alone: count those within `kink_gap`.
                    let x = r[*x];
                    let axes = axes.clone().map_or(Axes::All, Axes::from);
                    let ext = if *op == ReduceOp::Max {
                        x.max(axes.clone(), true)
                    } else {
                        x.min(axes.clone(), true)
                    };
                    let d = (x - ext).abs();
                    // The runner-up's distance: the smallest nonzero distance, or 0 when
                    // the extremum appears twice.
                    let counts = d.lt(&tape.constant(1e-300)).sum(axes, false).array();
                    if counts.iter().any(|&n| n > 1.0) {
                        0.0
                    } else {
                        d.array()
                            .iter()
                            .filter(|&&e| e > 1e-300)
                            .fold(f64::INFINITY, |m, &e| m.min(e))
                    }
                }
                _ => f64::INFINITY,
            };
            margin = margin.min(m);
        }
        margin
    }
}

/// A program and a point to run it at.
#[derive(Clone)]
pub struct Case {
    /// The program.
    pub program: Program,
    /// Its inputs.
    pub inputs: Vec<ArrayD<f64>>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:?}", self.program)?;
        for (i, x) in self.inputs.iter().enumerate() {
            writeln!(f, "%{i} = {x}")?;
        }
        Ok(())
    }
}

impl Case {
    /// The inputs flattened into one vector, in order (see [`Case::unpack`]).
    pub fn packed(&self) -> ArrayD<f64> {
        let data: Vec<f64> = self.inputs.iter().flat_map(|x| x.iter().copied()).collect();
        ArrayD::from_shape_vec(IxDyn(&[data.len()]), data).expect("a vector")
    }

    /// Splits one flat vector Var into the program's inputs (slices and reshapes, which
    /// are themselves differentiated).
    pub fn unpack<'t, T: Float>(&self, flat: Var<'t, T>) -> Vec<Var<'t, T>> {
        let mut at = 0;
        self.program
            .inputs
            .iter()
            .map(|s| {
                let n = numel(s);
                let piece = flat.slice(0, at..at + n);
                at += n;
                let spec: Vec<isize> = s.iter().map(|&e| e as isize).collect();
                piece.reshape(&spec)
            })
            .collect()
    }

    /// The program as a function of the packed inputs.
    pub fn eval_packed<'t, T: Float>(&self, flat: Var<'t, T>) -> Var<'t, T> {
        self.program.eval(&self.unpack(flat))
    }
}

/// The shapes inputs are drawn from, given base extents `m`, `n`, `k`: scalars, vectors,
/// matrices, and broadcastable rows and columns.
fn input_shape(menu: usize, (m, n, k): (usize, usize, usize)) -> Vec<usize> {
    match menu % 7 {
        0 => vec![],
        1 => vec![n],
        2 => vec![m],
        3 => vec![m, n],
        4 => vec![1, n],
        5 => vec![m, 1],
        _ => vec![n, k],
    }
}

/// Random programs (without their inputs) of the kind `cfg` says.
pub fn program(cfg: ProgramConfig) -> impl Strategy<Value = Program> {
    let e = 1..=cfg.max_extent.max(1);
    (
        (e.clone(), e.clone(), e),
        prop::collection::vec(0..7usize, 1..=cfg.max_inputs.max(1)),
        prop::collection::vec(
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
            1..=cfg.max_instrs.max(1),
        ),
    )
        .prop_map(move |(dims, menu, choices)| {
            let inputs = menu.iter().map(|&i| input_shape(i, dims)).collect();
            Program::build(inputs, &choices, &cfg)
        })
}

/// Random programs with inputs in `[-cfg.range, cfg.range]`, kept only where every
/// register is finite and at most `cfg.max_magnitude`, no derivative of a register exceeds
/// `cfg.max_slope`, and (for kinked programs) every
/// kink is at least `cfg.kink_gap` away.
pub fn program_case(cfg: ProgramConfig) -> impl Strategy<Value = Case> {
    let (range, max_mag, gap, max_slope) =
        (cfg.range, cfg.max_magnitude, cfg.kink_gap, cfg.max_slope);
    program(cfg)
        .prop_flat_map(move |p| {
            let arrays: Vec<_> = p
                .inputs
                .iter()
                .map(|s| retrograd::tape::strategies::array(s.clone(), -range, range))
                .collect();
            (Just(p), arrays)
        })
        .prop_map(|(program, inputs)| Case { program, inputs })
        .prop_filter(
            "values finite, moderate, not too steep, and away from kinks",
            move |c| {
                c.program.max_magnitude(&c.inputs) <= max_mag
                    && c.program.kink_margin(&c.inputs) >= gap
                    && c.program.max_slope(&c.inputs) <= max_slope
            },
        )
}

/// The Jacobian of `f` at `x` by the five-point central stencil with step `h` (error
/// `O(h⁴)`), shaped `output shape ++ input shape` like
/// `retrograd::tape::transforms::jacfwd`.
pub fn fd_jacobian(
    f: impl Fn(&ArrayD<f64>) -> ArrayD<f64>,
    x: &ArrayD<f64>,
    h: f64,
) -> ArrayD<f64> {
    let y0 = f(x);
    let (m, n) = (y0.len(), x.len());
    let mut jac = ndarray::Array2::<f64>::zeros((m, n));
    let at = |j: usize, s: f64| {
        let mut p = x.clone();
        p.as_slice_mut().expect("standard layout")[j] += s;
        f(&p)
    };
    for j in 0..n {
        let d = ((at(j, h) - at(j, -h)) * 8.0 - (at(j, 2.0 * h) - at(j, -2.0 * h))) / (12.0 * h);
        for (i, v) in d.iter().enumerate() {
            jac[[i, j]] = *v;
        }
    }
    let mut shape = y0.shape().to_vec();
    shape.extend(x.shape());
    let (data, _) = jac.into_raw_vec_and_offset();
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("out × in elements")
}

/// The worst entry of `|a − b| / (atol + rtol · max(|a|, |b|))` (above 1 fails), with its
/// flat index; infinite for a NaN or a shape mismatch.
pub fn worst(a: &ArrayD<f64>, b: &ArrayD<f64>, rtol: f64, atol: f64) -> (f64, usize) {
    if a.shape() != b.shape() {
        return (f64::INFINITY, 0);
    }
    let mut w = (0.0, 0);
    for (i, (&x, &y)) in a.iter().zip(b.iter()).enumerate() {
        let tol = atol + rtol * x.abs().max(y.abs());
        let e = if (x - y).abs() <= f64::MAX {
            (x - y).abs() / tol
        } else {
            f64::INFINITY
        };
        if e > w.0 || e.is_nan() {
            w = (if e.is_nan() { f64::INFINITY } else { e }, i);
        }
    }
    w
}

/// Asserts `a ≈ b` entry by entry, printing the worst entry and `context` on failure.
///
/// # Panics
/// When they differ by more than `atol + rtol · max(|a|, |b|)` somewhere.
#[track_caller]
pub fn assert_close(
    a: &ArrayD<f64>,
    b: &ArrayD<f64>,
    rtol: f64,
    atol: f64,
    context: &dyn fmt::Debug,
) {
    let (e, i) = worst(a, b, rtol, atol);
    assert!(
        e <= 1.0,
        "arrays differ at flat index {i} ({:?} vs {:?}), error {e:.3} of tolerance\n{a}\nvs\n{b}\n{context:?}",
        a.iter().nth(i),
        b.iter().nth(i),
    );
}

/// A fixed, irregular weight tensor of `shape` (to turn an output into a scalar
/// `⟨w, f(x)⟩` without symmetries that could hide an error).
pub fn weights(shape: &[usize]) -> ArrayD<f64> {
    let mut k: f64 = 0.0;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        k += 1.0;
        (1.3 * k + 0.4).sin()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    /// The builder's shape inference matches the engine on many programs (the interpreter
    /// asserts it), and the generator really produces each instruction kind.
    #[test]
    fn generated_programs_run_and_cover_the_op_set() {
        let mut runner = TestRunner::new(retrograd::tape::strategies::config(1));
        let strat = program(ProgramConfig::with_kinks());
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let p = strat.new_tree(&mut runner).unwrap().current();
            let inputs: Vec<_> = p.inputs.iter().map(|s| weights(s)).collect();
            let _ = p.value(&inputs);
            for i in &p.instrs {
                let name = i.text();
                kinds.insert(name[..name.find(['(', ' ']).unwrap_or(name.len())].to_string());
            }
        }
        for k in [
            "exp",
            "ln",
            "add",
            "div",
            "pow",
            "maximum",
            "sum",
            "logsumexp",
            "max",
            "reshape",
            "transpose",
            "slice",
            "concat",
            "matmul",
            "softmax",
            "log_softmax",
            "relu",
        ] {
            assert!(kinds.contains(k), "{k} never generated: {kinds:?}");
        }
    }

    #[test]
    fn debug_prints_the_program() {
        let p = Program::build(
            vec![vec![2, 3], vec![3]],
            &[(2, 0, 0, 3), (4, 0, 3, 0)],
            &ProgramConfig::default(),
        );
        let text = format!("{p:?}");
        assert!(text.starts_with("program(%0: [2, 3], %1: [3]) {"), "{text}");
        assert!(text.contains("%2 = div(%1, pos(%0))"), "{text}");
        assert!(
            text.contains("%3 = logsumexp(%2, axes=all, keepdims=true)  # [1, 1]"),
            "{text}"
        );
        assert!(text.contains("return %3"), "{text}");
    }

    #[test]
    fn kink_margin_sees_ties_of_max() {
        let p = Program {
            inputs: vec![vec![3]],
            instrs: vec![Instr::Reduce {
                op: ReduceOp::Max,
                x: 0,
                axes: None,
                keepdims: false,
            }],
            shapes: vec![vec![3], vec![]],
        };
        let tie = ndarray::array![1.0, 2.0, 2.0].into_dyn();
        assert_eq!(p.kink_margin(&[tie]), 0.0);
        let apart = ndarray::array![1.0, 2.0, 1.5].into_dyn();
        assert!((p.kink_margin(&[apart]) - 0.5).abs() < 1e-12);
    }
}
