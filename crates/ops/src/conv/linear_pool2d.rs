//! `avg_pool2d` and `adaptive_avg_pool2d`: window means of an NCHW batch, as one linear
//! primitive.
//!
//! Both poolings average rectangular windows, and a rectangle's mean is a mean of row
//! means, so each is separable: `Y = A_h · X · A_wᵀ` per plane, with `A_h [OH, H]` holding
//! `1/divisor` where window `i` covers row `r`. For `avg_pool2d` the windows are
//! `i·s − p .. i·s − p + k` clipped to the input, and the divisor is the window's extent
//! with its padding (`count_include_pad`, PyTorch's default; a `ceil_mode` window's
//! overhang past the padding does not count) or the number of rows it covers; both are
//! products of a row and a column factor, so the pooling stays separable. For the
//! adaptive one, PyTorch's `⌊i·H/OH⌋ .. ⌈(i+1)·H/OH⌉`. The op and its transpose are the
//! same primitive with the matrices' roles swapped:
//! - VJP: `X̄ = A_hᵀ · Ȳ · A_w` (the transposed pooling),
//! - JVP: `Ẏ = A_h · Ẋ · A_wᵀ`.
//!
//! Both products go through the matmul kernel: one GEMM over all rows for `A_wᵀ`, then one
//! small GEMM per plane for `A_h`.

use std::sync::Arc;

use ndarray::{Array2, Array3, ArrayView2, IxDyn, s};

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::{PoolSpec, Taps};
use crate::linalg::kernel::gemm;

/// Which windows the pooling averages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Windows {
    /// Fixed windows (`avg_pool2d`).
    Fixed(PoolSpec),
    /// PyTorch's adaptive windows for this output size.
    Adaptive([usize; 2]),
}

/// The averaging matrices `A_h [OH, H]` and `A_w [OW, W]`.
type Matrices<T> = Arc<[Array2<T>; 2]>;

/// Average pooling (fixed or adaptive windows), or its transpose; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct LinearPool2d<T> {
    windows: Windows,
    transposed: bool,
    matrices: Option<Matrices<T>>,
}

impl<T: Float> LinearPool2d<T> {
    /// `avg_pool2d` with this window.
    pub fn average(pool: PoolSpec) -> Self {
        LinearPool2d {
            windows: Windows::Fixed(pool),
            transposed: false,
            matrices: None,
        }
    }

    /// `adaptive_avg_pool2d` to `[OH, OW]`.
    pub fn adaptive(output: [usize; 2]) -> Self {
        LinearPool2d {
            windows: Windows::Adaptive(output),
            transposed: false,
            matrices: None,
        }
    }

    /// The same pooling in the other direction, with the same matrices.
    fn flipped(&self) -> Self {
        LinearPool2d {
            transposed: !self.transposed,
            ..self.clone()
        }
    }

    /// The matrices for an input of `[H, W]`.
    fn build(&self, input: [usize; 2]) -> Result<Matrices<T>, String> {
        let ranges: [Vec<(usize, usize, usize)>; 2] = match self.windows {
            Windows::Fixed(pool) => {
                if pool.dilation != [1, 1] {
                    return Err("avg_pool2d takes no dilation (as PyTorch's)".into());
                }
                let taps = pool.taps(input)?;
                taps.map(|axis| {
                    let divisor = |t: &Taps| match pool.count_include_pad {
                        true => t.with_padding,
                        false => t.count,
                    };
                    let ranges = axis
                        .iter()
                        .map(|t| (t.first, t.first + t.count, divisor(t)));
                    ranges.collect()
                })
            }
            Windows::Adaptive(out) => {
                if out.contains(&0) || input.contains(&0) {
                    return Err(format!("cannot pool an input of {input:?} to {out:?}"));
                }
                std::array::from_fn(|a| {
                    let (n, m) = (input[a], out[a]);
                    let ranges = (0..m).map(|i| {
                        let (lo, hi) = (i * n / m, ((i + 1) * n).div_ceil(m));
                        (lo, hi, hi - lo)
                    });
                    ranges.collect()
                })
            }
        };
        Ok(Arc::new(std::array::from_fn(|a| {
            let mut m = Array2::zeros((ranges[a].len(), input[a]));
            for (i, &(lo, hi, divisor)) in ranges[a].iter().enumerate() {
                m.slice_mut(s![i, lo..hi])
                    .fill(T::one() / T::of(divisor as f64));
            }
            m
        })))
    }

    fn input_extents(&self, m: &Matrices<T>) -> [usize; 2] {
        let [h, w] = &**m;
        if self.transposed {
            [h.nrows(), w.nrows()]
        } else {
            [h.ncols(), w.ncols()]
        }
    }
}

/// `left · X_p · right` for each plane `X_p` of `x [P, r, c]`.
fn separable<T: Float>(
    x: &Array3<T>,
    left: ArrayView2<'_, T>,
    right: ArrayView2<'_, T>,
) -> Array3<T> {
    let (planes, rows, cols) = x.dim();
    let mut z = Array2::<T>::zeros((planes * rows, right.ncols()));
    let flat = x.view().into_shape_with_order((planes * rows, cols));
    gemm(
        T::one(),
        flat.expect("a standard array"),
        right,
        T::zero(),
        z.view_mut(),
    );
    let mut out = Array3::<T>::zeros((planes, left.nrows(), right.ncols()));
    for p in 0..planes {
        let zp = z.slice(s![p * rows..(p + 1) * rows, ..]);
        gemm(T::one(), left, zp, T::zero(), out.slice_mut(s![p, .., ..]));
    }
    out
}

impl<T: Float> Rule<T> for LinearPool2d<T> {
    fn name(&self) -> &'static str {
        match (self.windows, self.transposed) {
            (Windows::Fixed(_), false) => "avg_pool2d",
            (Windows::Fixed(_), true) => "avg_pool2d_transpose",
            (Windows::Adaptive(_), false) => "adaptive_avg_pool2d",
            (Windows::Adaptive(_), true) => "adaptive_avg_pool2d_transpose",
        }
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        match self.windows {
            Windows::Fixed(p) => p.attributes(),
            Windows::Adaptive(out) => vec![("output", format!("{out:?}"))],
        }
    }

    fn madds(&self, inputs: &[&[usize]], output: &[usize]) -> u64 {
        crate::elements(inputs[0]).max(crate::elements(output))
    }

    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let &[n, c, h, w] = x.shape() else {
            return Err("takes a 4-D input [N, C, H, W]".into());
        };
        let m = match &self.matrices {
            Some(m) => m.clone(),
            None => self.build([h, w])?,
        };
        if self.input_extents(&m) != [h, w] {
            return Err(format!("expected planes of {:?}", self.input_extents(&m)));
        }
        let [mh, mw] = &*m;
        let planes = x.view().as_standard_layout().into_owned();
        let planes = planes
            .into_shape_with_order((n * c, h, w))
            .map_err(|e| e.to_string())?;
        let y = if self.transposed {
            separable(&planes, mh.t(), mw.view())
        } else {
            separable(&planes, mh.view(), mw.t())
        };
        let (_, oh, ow) = y.dim();
        self.matrices = Some(m);
        let y = y.into_shape_with_order(IxDyn(&[n, c, oh, ow]));
        Ok(Tensor::from_array(y.map_err(|e| e.to_string())?))
    }

    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(Val::apply(self.flipped(), &[g]))])
    }

    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        Some(Val::apply(self.clone(), &[t[0].as_ref()?]))
    }
}
