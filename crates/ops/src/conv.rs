//! Convolution and pooling over NCHW images (and NCL sequences): `conv2d`, `conv1d`,
//! `conv_transpose2d`, `max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d` and
//! `global_avg_pool2d`, with PyTorch's layouts and semantics so that checkpoints and
//! intuitions carry over.
//!
//! A convolution's derivatives are convolutions: its VJP in the input is the transposed
//! convolution and in the weight a third primitive, [`ConvWeight`], and the three rules
//! close over each other (each one's VJP is made of the other two), so gradients of
//! gradients and Hessian-vector products work through conv nets. All three compute
//! through `im2col`/`col2im` and the matmul kernel seam ([`kernel::gemm`]), one sample at a
//! time (see `geometry.rs`).
//!
//! ```
//! use retrograd_ops::prelude::*;
//! use retrograd_ops::conv::{ConvSpec, PoolSpec};
//! use ndarray::ArrayD;
//! let tape = Tape::<f32>::new();
//! let x = tape.constant(ArrayD::from_elem(vec![2, 3, 8, 8], 1.0f32)); // [N, C, H, W]
//! let w = tape.var(ArrayD::from_elem(vec![4, 3, 3, 3], 0.1f32)); // [O, C, kh, kw]
//! let y = x.conv2d(&w, ConvSpec::new().padding(1)).relu().max_pool2d(PoolSpec::new(2));
//! assert_eq!(y.shape().as_slice(), &[2, 4, 4, 4]);
//! let g = tape.grad(y.sum_all(), &[w]).unwrap();
//! assert_eq!(g[0].shape(), &[4, 3, 3, 3]);
//! ```
//!
//! [`kernel::gemm`]: crate::linalg::kernel::gemm

pub mod conv2d;
pub mod conv_transpose2d;
pub mod conv_weight;
mod geometry;
pub mod kernel;
pub mod linear_pool2d;
pub mod max_pool2d;

pub use conv_transpose2d::ConvTranspose;
pub use conv_weight::ConvWeight;
pub use conv2d::Conv;
pub use linear_pool2d::LinearPool2d;
pub use max_pool2d::MaxPool2d;

use retrograd_tape::{Float, Operand, Result, Rule, RuleCtx, Val};

use crate::reduce::ReduceOps;
use geometry::Geometry;

/// One value per spatial axis, `[height, width]`; a single number stands for both
/// (`2.into()` is `[2, 2]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair(pub [usize; 2]);

impl From<usize> for Pair {
    fn from(v: usize) -> Self {
        Pair([v, v])
    }
}

impl From<[usize; 2]> for Pair {
    fn from(v: [usize; 2]) -> Self {
        Pair(v)
    }
}

/// How a convolution pads its input with zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// `(before, after)` zeros per spatial axis, `[height, width]`.
    Explicit([(usize, usize); 2]),
    /// As many zeros as keep the output the input's size at stride 1 (PyTorch's
    /// `padding="same"`): `d·(k−1)` in all, the odd one after.
    Same,
}

impl From<usize> for Padding {
    fn from(p: usize) -> Self {
        Padding::Explicit([(p, p); 2])
    }
}

impl From<[usize; 2]> for Padding {
    fn from([h, w]: [usize; 2]) -> Self {
        Padding::Explicit([(h, h), (w, w)])
    }
}

/// A convolution's settings: stride, padding, dilation, groups (and, for a transposed
/// convolution, output padding). Defaults are PyTorch's: stride 1, no padding, dilation 1,
/// one group.
///
/// `ConvSpec::new().stride(2).padding(1)`; `ConvSpec::new().padding(Padding::Same)`; a
/// depthwise convolution of `C` channels is `ConvSpec::new().groups(C)` with a weight
/// `[C·m, 1, kh, kw]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// The step between applications of the kernel, per axis.
    pub stride: [usize; 2],
    /// The zeros around the input.
    pub padding: Padding,
    /// The spacing between kernel taps, per axis (1: adjacent).
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels split into this many independent
    /// convolutions.
    pub groups: usize,
    /// Extra output rows/columns of a transposed convolution (below its stride).
    pub output_padding: [usize; 2],
}

impl Default for ConvSpec {
    fn default() -> Self {
        ConvSpec {
            stride: [1, 1],
            padding: Padding::Explicit([(0, 0); 2]),
            dilation: [1, 1],
            groups: 1,
            output_padding: [0, 0],
        }
    }
}

impl ConvSpec {
    /// PyTorch's defaults: stride 1, no padding, dilation 1, one group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the stride (one number for both axes, or `[sh, sw]`).
    pub fn stride(mut self, stride: impl Into<Pair>) -> Self {
        self.stride = stride.into().0;
        self
    }

    /// Sets the padding: a number, `[ph, pw]`, [`Padding::Same`] or explicit pairs.
    pub fn padding(mut self, padding: impl Into<Padding>) -> Self {
        self.padding = padding.into();
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dilation: impl Into<Pair>) -> Self {
        self.dilation = dilation.into().0;
        self
    }

    /// Sets the number of channel groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets a transposed convolution's output padding.
    pub fn output_padding(mut self, output_padding: impl Into<Pair>) -> Self {
        self.output_padding = output_padding.into().0;
        self
    }
}

/// A pooling window: kernel, stride (the kernel by default, as PyTorch), padding on each
/// side, and PyTorch's other pooling options with PyTorch's defaults.
///
/// `PoolSpec::new(2)` halves each axis; `PoolSpec::new(3).stride(1).padding(1)` keeps it;
/// `PoolSpec::new(3).stride(2).ceil_mode(true)` keeps a last, partial window;
/// `PoolSpec::new(2).padding(1).count_include_pad(false)` averages only real entries.
///
/// Along an axis of extent `H`, with kernel `k`, stride `s`, padding `p` and dilation `d`,
/// window `i` has taps `i·s − p + j·d` for `j < k`, and there are
/// `OH = ⌊(H + 2p − d·(k−1) − 1) / s⌋ + 1` windows (`⌈·⌉` with `ceil_mode`, dropping a last
/// window that would start in the right padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// The window's extent per axis.
    pub kernel: [usize; 2],
    /// The step between windows per axis.
    pub stride: [usize; 2],
    /// Padding on each side per axis (at most half the kernel): zeros for averages, `-∞`
    /// for maxima.
    pub padding: [usize; 2],
    /// The spacing between a window's taps per axis (1: adjacent). `max_pool2d` only, as
    /// in PyTorch.
    pub dilation: [usize; 2],
    /// Whether a last window that runs past the padded input's end is kept (`ceil` in the
    /// output size) rather than dropped (default `false`).
    pub ceil_mode: bool,
    /// Whether an average divides by the window's extent with its padding (`true`, PyTorch's
    /// default) or by the number of real entries it covers. `avg_pool2d` only.
    pub count_include_pad: bool,
}

impl PoolSpec {
    /// A window of `kernel` with stride `kernel`, no padding, dilation 1, floor mode, and
    /// padding counted in averages.
    pub fn new(kernel: impl Into<Pair>) -> Self {
        let kernel = kernel.into().0;
        PoolSpec {
            kernel,
            stride: kernel,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: impl Into<Pair>) -> Self {
        self.stride = stride.into().0;
        self
    }

    /// Sets the padding on each side.
    pub fn padding(mut self, padding: impl Into<Pair>) -> Self {
        self.padding = padding.into().0;
        self
    }

    /// Sets the dilation (`max_pool2d` only).
    pub fn dilation(mut self, dilation: impl Into<Pair>) -> Self {
        self.dilation = dilation.into().0;
        self
    }

    /// Keeps a last, partial window (PyTorch's `ceil_mode=True`).
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// Whether averages count the padding (PyTorch's `count_include_pad`, default `true`).
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }

    /// The settings that differ from the defaults, as dumps show them.
    pub(crate) fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attrs = vec![
            ("kernel", format!("{:?}", self.kernel)),
            ("stride", format!("{:?}", self.stride)),
            ("padding", format!("{:?}", self.padding)),
        ];
        if self.dilation != [1, 1] {
            attrs.push(("dilation", format!("{:?}", self.dilation)));
        }
        if self.ceil_mode {
            attrs.push(("ceil_mode", "true".into()));
        }
        if !self.count_include_pad {
            attrs.push(("count_include_pad", "false".into()));
        }
        attrs
    }

    /// The number of windows along an axis of `extent`, for axis `a`'s settings.
    fn windows_along(&self, a: usize, extent: usize) -> std::result::Result<usize, String> {
        let (k, s, p, d) = (
            self.kernel[a],
            self.stride[a],
            self.padding[a],
            self.dilation[a],
        );
        if k == 0 || s == 0 || d == 0 {
            return Err("the kernel, the stride and the dilation must be at least 1".into());
        }
        if 2 * p > k {
            return Err(format!("padding {p} is more than half the kernel {k}"));
        }
        let (span, padded) = (d * (k - 1) + 1, extent + 2 * p);
        if padded < span {
            return Err(format!(
                "the kernel (extent {span}) is larger than the padded input (extent {padded})"
            ));
        }
        let room = padded - span;
        if !self.ceil_mode {
            return Ok(room / s + 1);
        }
        let out = room.div_ceil(s) + 1;
        // The last window must start inside the input or its left padding.
        Ok(if (out - 1) * s >= extent + p {
            out - 1
        } else {
            out
        })
    }

    /// The output extents for an input of `[H, W]`, or why the window does not fit.
    pub(crate) fn output(&self, input: [usize; 2]) -> std::result::Result<[usize; 2], String> {
        Ok([
            self.windows_along(0, input[0])?,
            self.windows_along(1, input[1])?,
        ])
    }

    /// Every window along each axis of an `[H, W]` input, or why the window does not fit.
    pub(crate) fn taps(&self, input: [usize; 2]) -> std::result::Result<[Vec<Taps>; 2], String> {
        let out = self.output(input)?;
        let mut taps: [Vec<Taps>; 2] = Default::default();
        for a in 0..2 {
            let (k, s, p, d) = (
                self.kernel[a],
                self.stride[a],
                self.padding[a] as isize,
                self.dilation[a],
            );
            let extent = input[a] as isize;
            for i in 0..out[a] {
                let start = (i * s) as isize - p;
                let end = (start + (d * (k - 1) + 1) as isize).min(extent + p);
                // Taps j with 0 <= start + j·d < extent, j < k.
                let skip = if start < 0 {
                    (-start + d as isize - 1) / d as isize
                } else {
                    0
                };
                let last = ((extent - 1 - start).div_euclid(d as isize)).min(k as isize - 1);
                if last < skip {
                    return Err(format!(
                        "window {i} along spatial axis {a} covers only padding (extent {extent}, kernel {k}, dilation {d}, padding {p})"
                    ));
                }
                taps[a].push(Taps {
                    first: (start + skip * d as isize) as usize,
                    step: d,
                    count: (last - skip + 1) as usize,
                    with_padding: (end - start) as usize,
                });
            }
        }
        Ok(taps)
    }
}

/// One pooling window along one axis: the input positions `first + j·step` (`j < count`)
/// it covers, and its extent counting the padding it covers (PyTorch's divisor with
/// `count_include_pad`; a `ceil_mode` window's overhang past the padding does not count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taps {
    /// The first input position inside the input.
    pub first: usize,
    /// The spacing of the positions (the dilation).
    pub step: usize,
    /// How many positions are inside the input.
    pub count: usize,
    /// The extent counting padding.
    pub with_padding: usize,
}

/// The attributes a convolution shows in dumps.
fn spec_attributes(spec: &ConvSpec, g: Option<&Geometry>) -> Vec<(&'static str, String)> {
    let (stride, dilation, groups) = match g {
        Some(g) => (g.stride, g.dilation, g.groups),
        None => (spec.stride, spec.dilation, spec.groups),
    };
    let mut attrs = vec![
        ("stride", format!("{stride:?}")),
        ("dilation", format!("{dilation:?}")),
        ("groups", groups.to_string()),
    ];
    match g {
        Some(g) => attrs.push(("pad_before", format!("{:?}", g.pad_before))),
        None => attrs.push(("padding", format!("{:?}", spec.padding))),
    }
    attrs
}

/// The JVP of a bilinear primitive `f(a, b)`: `f(ȧ, b) + f(a, ḃ)`, dropping absent terms.
fn bilinear_jvp<'t, T: Float, R: Rule<T>>(
    rule: impl Fn() -> R,
    cx: &RuleCtx<'t, T>,
    t: &[Option<Val<'t, T>>],
) -> Option<Val<'t, T>> {
    let (a, b) = (cx.input(0), cx.input(1));
    let left = t[0].as_ref().map(|ta| Val::apply(rule(), &[ta, b]));
    let right = t[1].as_ref().map(|tb| Val::apply(rule(), &[a, tb]));
    match (left, right) {
        (Some(l), Some(r)) => Some(l + r),
        (l, r) => l.or(r),
    }
}

/// Convolution and pooling on [`Var`](retrograd_tape::Var) and [`Val`].
///
/// Every method panics on inputs that do not fit (a 3-D input to `conv2d`, channels not
/// divisible by the groups, a kernel larger than the padded input) with a message naming
/// the op, the shapes and the caller's line; each `try_` twin returns
/// [`Error::InvalidOp`](retrograd_tape::Error) instead.
pub trait ConvOps<'t, T: Float>: Operand<'t, T> {
    /// The 2-D convolution (cross-correlation) of `self [N, C, H, W]` with
    /// `weight [O, C/groups, kh, kw]`: `[N, O, OH, OW]` with
    /// `OH = (H + pads − dilation·(kh−1) − 1) / stride + 1`. No bias: add one shaped
    /// `[O, 1, 1]`.
    ///
    /// `x.conv2d(&w, ConvSpec::new().padding(1))` keeps a 3×3 convolution's size.
    #[track_caller]
    fn conv2d(&self, weight: &Self, spec: ConvSpec) -> Self {
        Self::apply(Conv::new_2d(spec), &[self, weight])
    }

    /// [`conv2d`](ConvOps::conv2d) returning an error instead of panicking.
    #[track_caller]
    fn try_conv2d(&self, weight: &Self, spec: ConvSpec) -> Result<Self> {
        Self::try_apply(Conv::new_2d(spec), &[self, weight])
    }

    /// The 1-D convolution of `self [N, C, L]` with `weight [O, C/groups, k]`: `[N, O, L']`.
    /// `spec`'s pairs must have equal components (`ConvSpec::new().stride(2)`).
    #[track_caller]
    fn conv1d(&self, weight: &Self, spec: ConvSpec) -> Self {
        Self::apply(Conv::new_1d(spec), &[self, weight])
    }

    /// [`conv1d`](ConvOps::conv1d) returning an error instead of panicking.
    #[track_caller]
    fn try_conv1d(&self, weight: &Self, spec: ConvSpec) -> Result<Self> {
        Self::try_apply(Conv::new_1d(spec), &[self, weight])
    }

    /// The transposed convolution of `self [N, C_in, H, W]` with
    /// `weight [C_in, C_out/groups, kh, kw]` (PyTorch's layout): `[N, C_out, H', W']`, with
    /// `H' = (H−1)·stride − pads + dilation·(kh−1) + output_padding + 1`. The adjoint of
    /// `conv2d` with the same weight and spec: it upsamples where `conv2d` downsamples.
    #[track_caller]
    fn conv_transpose2d(&self, weight: &Self, spec: ConvSpec) -> Self {
        Self::apply(ConvTranspose::new_2d(spec), &[self, weight])
    }

    /// [`conv_transpose2d`](ConvOps::conv_transpose2d) returning an error instead of
    /// panicking.
    #[track_caller]
    fn try_conv_transpose2d(&self, weight: &Self, spec: ConvSpec) -> Result<Self> {
        Self::try_apply(ConvTranspose::new_2d(spec), &[self, weight])
    }

    /// The maximum over each window of `self [N, C, H, W]` (padding never wins):
    /// `[N, C, OH, OW]`. The gradient flows to the first maximum of each window.
    #[track_caller]
    fn max_pool2d(&self, pool: PoolSpec) -> Self {
        Self::apply(MaxPool2d::new(pool), &[self])
    }

    /// [`max_pool2d`](ConvOps::max_pool2d) returning an error instead of panicking.
    #[track_caller]
    fn try_max_pool2d(&self, pool: PoolSpec) -> Result<Self> {
        Self::try_apply(MaxPool2d::new(pool), &[self])
    }

    /// The mean over each window of `self [N, C, H, W]`, padding counted as zeros in the
    /// divisor (PyTorch's `count_include_pad=True`): `[N, C, OH, OW]`.
    #[track_caller]
    fn avg_pool2d(&self, pool: PoolSpec) -> Self {
        Self::apply(LinearPool2d::average(pool), &[self])
    }

    /// [`avg_pool2d`](ConvOps::avg_pool2d) returning an error instead of panicking.
    #[track_caller]
    fn try_avg_pool2d(&self, pool: PoolSpec) -> Result<Self> {
        Self::try_apply(LinearPool2d::average(pool), &[self])
    }

    /// Average pooling of `self [N, C, H, W]` to `[N, C, OH, OW]` for any output size,
    /// with PyTorch's windows (`⌊i·H/OH⌋ .. ⌈(i+1)·H/OH⌉`).
    #[track_caller]
    fn adaptive_avg_pool2d(&self, output: impl Into<Pair>) -> Self {
        Self::apply(LinearPool2d::adaptive(output.into().0), &[self])
    }

    /// [`adaptive_avg_pool2d`](ConvOps::adaptive_avg_pool2d) returning an error instead of
    /// panicking.
    #[track_caller]
    fn try_adaptive_avg_pool2d(&self, output: impl Into<Pair>) -> Result<Self> {
        Self::try_apply(LinearPool2d::adaptive(output.into().0), &[self])
    }

    /// The mean of each channel of `self [N, C, H, W]` over its spatial axes: `[N, C]`,
    /// ready for a linear head (PyTorch's `AdaptiveAvgPool2d(1)` then `flatten(1)`).
    #[track_caller]
    fn global_avg_pool2d(&self) -> Self {
        self.mean(vec![2isize, 3], false)
    }
}

impl<'t, T: Float, X: Operand<'t, T>> ConvOps<'t, T> for X {}

#[cfg(test)]
mod tests;
