//! The shape arithmetic of a convolution and its three kernels (the convolution, its
//! transpose and its weight gradient), all through `im2col`/`col2im` and the matmul kernel
//! seam.
//!
//! One [`Geometry`] describes a convolution `x [N, C, H, W] ⊛ w [O, C/G, kh, kw] → y [N, O,
//! OH, OW]` with every extent resolved. The three primitives of the module share it: the
//! convolution maps `x`-shaped values to `y`-shaped ones, the transposed convolution maps
//! back, and the weight gradient pairs an `x`-shaped and a `y`-shaped value into a
//! `w`-shaped one. A 1-D convolution is the same geometry with a height of 1.
//!
//! The kernels work one sample at a time: the sample is unfolded into a column matrix
//! `cols [C·kh·kw, OH·OW]` (its receptive fields, zeros where they reach into the padding)
//! and each group's product is one GEMM into the output, so no buffer larger than one
//! sample's columns is ever allocated.

use std::ops::Range;

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, IxDyn, s};

use retrograd_tape::{Float, Shape};

use super::{ConvSpec, Padding};
use crate::linalg::kernel::gemm;

/// A convolution with every extent resolved; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// 1 for `conv1d` (height 1, and the shapes drop that axis), 2 for `conv2d`.
    pub spatial: usize,
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub o: usize,
    /// Channel groups (both `c` and `o` are multiples).
    pub groups: usize,
    /// Input extents `[H, W]`.
    pub input: [usize; 2],
    /// Kernel extents `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Output extents `[OH, OW]`.
    pub output: [usize; 2],
    /// Stride per axis.
    pub stride: [usize; 2],
    /// Dilation per axis.
    pub dilation: [usize; 2],
    /// Zeros before the input per axis (those after follow from the extents).
    pub pad_before: [usize; 2],
}

/// The spatial extents of a `spatial`-D shape's trailing axes, as `[H, W]`.
fn extents(shape: &[usize], spatial: usize) -> [usize; 2] {
    if spatial == 1 {
        [1, shape[2]]
    } else {
        [shape[2], shape[3]]
    }
}

/// The spec's pairs as the kernels use them: for 1-D the height gets stride, dilation 1 and
/// no padding, and the width takes the spec's (equal) components.
fn spec_pairs(spec: &ConvSpec, spatial: usize) -> Result<ConvSpec, String> {
    if spatial == 2 {
        return Ok(*spec);
    }
    let uniform = |p: [usize; 2]| p[0] == p[1];
    let pad_uniform = match spec.padding {
        Padding::Same => true,
        Padding::Explicit(p) => p[0] == p[1],
    };
    let all = [spec.stride, spec.dilation, spec.output_padding];
    if !(all.into_iter().all(uniform) && pad_uniform) {
        return Err("a 1-D convolution takes one stride, padding and dilation, not pairs".into());
    }
    let mut s = *spec;
    s.stride[0] = 1;
    s.dilation[0] = 1;
    s.output_padding[0] = 0;
    if let Padding::Explicit(p) = &mut s.padding {
        p[0] = (0, 0);
    }
    Ok(s)
}

/// The checks both directions share: ranks, channel counts against the groups, nonzero
/// strides and dilations.
fn check_common(
    spec: &ConvSpec,
    spatial: usize,
    x: &[usize],
    w: &[usize],
    what: &str,
) -> Result<(), String> {
    let rank = spatial + 2;
    let layout = if spatial == 1 {
        "[N, C, L]"
    } else {
        "[N, C, H, W]"
    };
    let kernel = if spatial == 1 { "k" } else { "kh, kw" };
    if x.len() != rank || w.len() != rank {
        return Err(format!(
            "takes a {rank}-D input {layout} and a {rank}-D weight [{what}, {kernel}]"
        ));
    }
    if spec.groups == 0 || spec.stride.contains(&0) || spec.dilation.contains(&0) {
        return Err("groups, stride and dilation must be at least 1".into());
    }
    Ok(())
}

impl Geometry {
    /// The geometry of `conv(x, w)` for inputs of these shapes, or why they do not fit.
    pub fn of_conv(
        spec: &ConvSpec,
        spatial: usize,
        x: &[usize],
        w: &[usize],
    ) -> Result<Self, String> {
        check_common(spec, spatial, x, w, "out, in/groups")?;
        let spec = spec_pairs(spec, spatial)?;
        let (n, c, o, groups) = (x[0], x[1], w[0], spec.groups);
        if !c.is_multiple_of(groups) || !o.is_multiple_of(groups) {
            return Err(format!(
                "{c} input and {o} output channels must both be divisible by groups = {groups}"
            ));
        }
        if w[1] * groups != c {
            return Err(format!(
                "the weight has {} input channels per group, the input {c} channels in {groups} group(s)",
                w[1]
            ));
        }
        if spec.output_padding != [0, 0] {
            return Err("output_padding applies to conv_transpose only".into());
        }
        let (input, kernel) = (extents(x, spatial), extents(w, spatial));
        let mut g = Geometry {
            spatial,
            n,
            c,
            o,
            groups,
            input,
            kernel,
            output: [0; 2],
            stride: spec.stride,
            dilation: spec.dilation,
            pad_before: [0; 2],
        };
        for a in 0..2 {
            let span = g.span(a);
            let (before, after) = match spec.padding {
                Padding::Explicit(p) => p[a],
                Padding::Same if spec.stride[a] != 1 => {
                    return Err("'same' padding needs a stride of 1".into());
                }
                Padding::Same => ((span - 1) / 2, span - 1 - (span - 1) / 2),
            };
            let padded = input[a] + before + after;
            if padded < span {
                return Err(format!(
                    "the kernel (extent {span} with dilation) is larger than the padded input (extent {padded})"
                ));
            }
            g.pad_before[a] = before;
            g.output[a] = (padded - span) / spec.stride[a] + 1;
        }
        Ok(g)
    }

    /// The geometry of the convolution whose transpose `conv_transpose(x, w)` is, for
    /// `x [N, C_in, H, W]` and `w [C_in, C_out/G, kh, kw]` (PyTorch's layout): the
    /// convolution maps `[N, C_out, H', W']` to `x`'s shape, with `H' = (H−1)·s − pads +
    /// d·(kh−1) + output_padding + 1`.
    pub fn of_transpose(
        spec: &ConvSpec,
        spatial: usize,
        x: &[usize],
        w: &[usize],
    ) -> Result<Self, String> {
        check_common(spec, spatial, x, w, "in, out/groups")?;
        let spec = spec_pairs(spec, spatial)?;
        let groups = spec.groups;
        let Padding::Explicit(pads) = spec.padding else {
            return Err("'same' padding is not defined for a transposed convolution".into());
        };
        if x[1] != w[0] || !x[1].is_multiple_of(groups) {
            return Err(format!(
                "the input's {} channels must equal the weight's first extent {} and be divisible by groups = {groups}",
                x[1], w[0]
            ));
        }
        let (kernel, out) = (extents(w, spatial), extents(x, spatial));
        let mut input = [0; 2];
        for a in 0..2 {
            let (s, d, op) = (spec.stride[a], spec.dilation[a], spec.output_padding[a]);
            if op >= s && op >= d {
                return Err(
                    "output_padding must be smaller than the stride or the dilation".into(),
                );
            }
            let full = (out[a] - 1) * s + d * (kernel[a] - 1) + op + 1;
            let (before, after) = pads[a];
            input[a] = full
                .checked_sub(before + after)
                .filter(|&e| e > 0)
                .ok_or_else(|| {
                    format!("the padding {before}+{after} leaves no output along spatial axis {a}")
                })?;
        }
        let mut conv_x: Shape = [x[0], w[1] * groups].into_iter().collect();
        let mut conv_w: Shape = [x[1], w[1]].into_iter().collect();
        conv_x.extend_from_slice(&input[2 - spatial..]);
        conv_w.extend_from_slice(&kernel[2 - spatial..]);
        let conv_spec = ConvSpec {
            output_padding: [0; 2],
            ..spec
        };
        let g = Geometry::of_conv(&conv_spec, spatial, &conv_x, &conv_w)?;
        debug_assert_eq!(g.output, out);
        Ok(g)
    }

    /// The dilated kernel's extent along spatial axis `a`.
    fn span(&self, a: usize) -> usize {
        self.dilation[a] * (self.kernel[a] - 1) + 1
    }

    fn shape_of(&self, lead: [usize; 2], spatial: [usize; 2]) -> Shape {
        let mut s: Shape = lead.into_iter().collect();
        s.extend_from_slice(&spatial[2 - self.spatial..]);
        s
    }

    /// The convolution's input shape.
    pub fn x_shape(&self) -> Shape {
        self.shape_of([self.n, self.c], self.input)
    }

    /// The convolution's output shape.
    pub fn y_shape(&self) -> Shape {
        self.shape_of([self.n, self.o], self.output)
    }

    /// The weight's shape `[O, C/G, kh, kw]`.
    pub fn w_shape(&self) -> Shape {
        self.shape_of([self.o, self.c / self.groups], self.kernel)
    }

    /// The length of one group's receptive field, `C/G · kh · kw`.
    fn field(&self) -> usize {
        self.c / self.groups * self.kernel[0] * self.kernel[1]
    }

    /// Output positions per channel, `OH · OW`.
    fn positions(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// The multiply-adds of any of the three kernels: `N · O · OH·OW · C/G·kh·kw`.
    pub fn madds(&self) -> u64 {
        [self.n, self.o, self.positions(), self.field()]
            .iter()
            .map(|&d| d as u64)
            .product()
    }

    /// The output positions `i` (of `len`) whose input position `i·stride + offset` falls
    /// inside `0..extent`.
    fn inside(len: usize, stride: usize, offset: isize, extent: usize) -> Range<usize> {
        let s = stride as isize;
        let lo = if offset >= 0 {
            0
        } else {
            (-offset + s - 1) / s
        };
        let room = extent as isize - offset;
        let hi = if room <= 0 { 0 } else { (room + s - 1) / s };
        let hi = (hi.max(0) as usize).min(len);
        (lo as usize).min(hi)..hi
    }

    /// Visits each `(row, output row, input row slice offset, valid columns, first input
    /// column)` of the column matrix: the shared walk of `im2col` and `col2im`.
    fn walk(&self, mut visit: impl FnMut(usize, usize, Option<usize>, Range<usize>, usize)) {
        let ([h, w], [kh, kw], [oh, ow]) = (self.input, self.kernel, self.output);
        let ([sh, sw], [dh, dw], [ph, pw]) = (self.stride, self.dilation, self.pad_before);
        for ci in 0..self.c {
            for a in 0..kh {
                let rows = Self::inside(oh, sh, (a * dh) as isize - ph as isize, h);
                for b in 0..kw {
                    let row = (ci * kh + a) * kw + b;
                    let offset = (b * dw) as isize - pw as isize;
                    let cols = Self::inside(ow, sw, offset, w);
                    let first = (cols.start * sw) as isize + offset;
                    for oi in 0..oh {
                        let src = rows.contains(&oi).then(|| {
                            let ii = oi * sh + a * dh - ph;
                            (ci * h + ii) * w
                        });
                        visit(row, oi, src, cols.clone(), first.max(0) as usize);
                    }
                }
            }
        }
    }

    /// Unfolds one sample `x [C·H·W]` into `cols [C·kh·kw, OH·OW]` (every entry written).
    fn im2col<T: Float>(&self, x: &[T], cols: &mut [T]) {
        let (ow, l, sw) = (self.output[1], self.positions(), self.stride[1]);
        self.walk(|row, oi, src, valid, first| {
            let dst = &mut cols[row * l + oi * ow..][..ow];
            let Some(src) = src.filter(|_| !valid.is_empty()) else {
                dst.fill(T::zero());
                return;
            };
            dst[..valid.start].fill(T::zero());
            dst[valid.end..].fill(T::zero());
            let src = &x[src + first..];
            let dst = &mut dst[valid];
            if sw == 1 {
                dst.copy_from_slice(&src[..dst.len()]);
            } else {
                for (d, &v) in dst.iter_mut().zip(src.iter().step_by(sw)) {
                    *d = v;
                }
            }
        });
    }

    /// Folds `cols [C·kh·kw, OH·OW]` back onto one sample `x [C·H·W]`, adding where
    /// receptive fields overlap: the transpose of [`im2col`](Self::im2col).
    fn col2im<T: Float>(&self, cols: &[T], x: &mut [T]) {
        let (ow, l, sw) = (self.output[1], self.positions(), self.stride[1]);
        self.walk(|row, oi, src, valid, first| {
            let Some(src) = src.filter(|_| !valid.is_empty()) else {
                return;
            };
            let from = &cols[row * l + oi * ow..][..ow];
            let dst = &mut x[src + first..];
            let from = &from[valid];
            if sw == 1 {
                for (d, &v) in dst[..from.len()].iter_mut().zip(from) {
                    *d += v;
                }
            } else {
                for (d, &v) in dst.iter_mut().step_by(sw).zip(from) {
                    *d += v;
                }
            }
        });
    }

    /// Group `gi`'s rows of a `[rows_per_group · G, cols]` matrix.
    fn group<'a, T>(m: ArrayView2<'a, T>, gi: usize, per: usize) -> ArrayView2<'a, T> {
        m.slice_move(s![gi * per..(gi + 1) * per, ..])
    }

    /// `y = conv(x, w)`.
    pub fn conv<T: Float>(&self, x: ArrayViewD<'_, T>, w: ArrayViewD<'_, T>) -> ArrayD<T> {
        let (x, w) = (x.as_standard_layout(), w.as_standard_layout());
        let (xs, k, l) = (x.as_slice().unwrap_or(&[]), self.field(), self.positions());
        let w2 = ArrayView2::from_shape((self.o, k), w.as_slice().unwrap_or(&[]))
            .expect("the weight was validated");
        let og = self.o / self.groups;
        let sample = self.c * self.input[0] * self.input[1];
        let mut y = ndarray::Array3::<T>::zeros((self.n, self.o, l));
        let mut cols = Array2::<T>::zeros((self.c * self.kernel[0] * self.kernel[1], l));
        for i in 0..self.n {
            self.im2col(
                &xs[i * sample..][..sample],
                cols.as_slice_mut().unwrap_or(&mut []),
            );
            for gi in 0..self.groups {
                let out = y.slice_mut(s![i, gi * og..(gi + 1) * og, ..]);
                let field = Self::group(cols.view(), gi, k);
                gemm(T::one(), Self::group(w2, gi, og), field, T::zero(), out);
            }
        }
        y.into_shape_with_order(IxDyn(&self.y_shape()))
            .expect("the output has y's elements")
    }

    /// `x = convᵀ(y, w)`: the adjoint of [`conv`](Self::conv) in its first argument.
    pub fn conv_transpose<T: Float>(
        &self,
        y: ArrayViewD<'_, T>,
        w: ArrayViewD<'_, T>,
    ) -> ArrayD<T> {
        let (y, w) = (y.as_standard_layout(), w.as_standard_layout());
        let (k, l) = (self.field(), self.positions());
        let y3 = y
            .view()
            .into_shape_with_order((self.n, self.o, l))
            .expect("y was validated");
        let w2 = ArrayView2::from_shape((self.o, k), w.as_slice().unwrap_or(&[]))
            .expect("the weight was validated");
        let og = self.o / self.groups;
        let sample = self.c * self.input[0] * self.input[1];
        let mut x = vec![T::zero(); self.n * sample];
        let mut cols = Array2::<T>::zeros((self.c * self.kernel[0] * self.kernel[1], l));
        for i in 0..self.n {
            for gi in 0..self.groups {
                let yg = y3.slice(s![i, gi * og..(gi + 1) * og, ..]);
                let field = cols.slice_mut(s![gi * k..(gi + 1) * k, ..]);
                gemm(T::one(), Self::group(w2, gi, og).t(), yg, T::zero(), field);
            }
            let xs = &mut x[i * sample..][..sample];
            self.col2im(cols.as_slice().unwrap_or(&[]), xs);
        }
        ArrayD::from_shape_vec(IxDyn(&self.x_shape()), x).expect("x has its elements")
    }

    /// `w̄ = Σ_n y_n · im2col(x_n)ᵀ` per group: the adjoint of [`conv`](Self::conv) in its
    /// second argument (the weight gradient when `y` is the output's cotangent).
    pub fn conv_weight<T: Float>(&self, x: ArrayViewD<'_, T>, y: ArrayViewD<'_, T>) -> ArrayD<T> {
        let (x, y) = (x.as_standard_layout(), y.as_standard_layout());
        let (xs, k, l) = (x.as_slice().unwrap_or(&[]), self.field(), self.positions());
        let y3 = y
            .view()
            .into_shape_with_order((self.n, self.o, l))
            .expect("y was validated");
        let og = self.o / self.groups;
        let sample = self.c * self.input[0] * self.input[1];
        let mut w = Array2::<T>::zeros((self.o, k));
        let mut cols = Array2::<T>::zeros((self.c * self.kernel[0] * self.kernel[1], l));
        for i in 0..self.n {
            self.im2col(
                &xs[i * sample..][..sample],
                cols.as_slice_mut().unwrap_or(&mut []),
            );
            for gi in 0..self.groups {
                let yg = y3.slice(s![i, gi * og..(gi + 1) * og, ..]);
                let field = Self::group(cols.view(), gi, k).reversed_axes();
                let out = w.slice_mut(s![gi * og..(gi + 1) * og, ..]);
                gemm(T::one(), yg, field, T::one(), out);
            }
        }
        w.into_shape_with_order(IxDyn(&self.w_shape()))
            .expect("the weight has its elements")
    }

    /// Checks that two inputs have the shapes this geometry expects.
    pub fn expect(&self, got: [&[usize]; 2], want: [Shape; 2]) -> Result<(), String> {
        for (g, w) in got.iter().zip(&want) {
            if *g != w.as_slice() {
                return Err(format!(
                    "expected inputs of shapes {:?} and {:?}",
                    want[0].as_slice(),
                    want[1].as_slice()
                ));
            }
        }
        Ok(())
    }
}
