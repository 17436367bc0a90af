//! `max_pool2d`: the maximum over each window of an NCHW batch.
//!
//! Windows follow [`PoolSpec`]: stride, padding (which never wins), dilation (taps
//! `d` apart) and `ceil_mode` (a last, partial window). The forward pass keeps, per output entry, where in its input plane the maximum was (the
//! first one on ties; NaN wins, so it propagates). The op is then a gather at those
//! positions, linear in `x` for fixed positions:
//! - VJP: `x̄ = scatter_add(ȳ)` at the kept positions (a window's cotangent goes to its
//!   maximum; overlapping windows add up),
//! - JVP: `ẏ = gather(ẋ)` at the kept positions.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Shape, Tensor, Val};

use super::{PoolSpec, Taps};
use crate::shape::reshape_exact;
use crate::shape::{Gather, ScatterAdd};

/// Max pooling; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct MaxPool2d {
    pool: PoolSpec,
    /// `[N, C, OH·OW]`: each output's position `h·W + w` in its input plane.
    index: Arc<ArrayD<usize>>,
    input: Shape,
}

impl MaxPool2d {
    /// Max pooling with this window.
    pub fn new(pool: PoolSpec) -> Self {
        MaxPool2d {
            pool,
            index: Arc::new(ArrayD::zeros(IxDyn(&[0]))),
            input: Shape::new(),
        }
    }
}

/// The maximum over the `rows × cols` taps of a row-major plane of width `w`, and its
/// position (the first on ties; the first NaN wins and stays). One comparison per tap on
/// the hot path: `!(v <= best)` is also true for a NaN, which then ends the search.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // true for a NaN `v`: that is the point
fn window_max<T: Float>(plane: &[T], w: usize, rows: &Taps, cols: &Taps) -> (T, usize) {
    let mut at = rows.first * w + cols.first;
    let mut best = plane[at];
    if best.is_nan() {
        return (best, at);
    }
    // Plain index loops: windows are small, so per-window iterator set-up would dominate.
    let mut line = rows.first * w + cols.first;
    for _ in 0..rows.count {
        let mut k = line;
        for _ in 0..cols.count {
            let v = plane[k];
            if !(v <= best) {
                best = v;
                at = k;
                if v.is_nan() {
                    return (best, at);
                }
            }
            k += cols.step;
        }
        line += rows.step * w;
    }
    (best, at)
}

impl<T: Float> Rule<T> for MaxPool2d {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        self.pool.attributes()
    }

    fn madds(&self, inputs: &[&[usize]], output: &[usize]) -> u64 {
        let _ = inputs;
        crate::elements(output) * (self.pool.kernel[0] * self.pool.kernel[1]) as u64
    }

    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let &[n, c, h, w] = x.shape() else {
            return Err("takes a 4-D input [N, C, H, W]".into());
        };
        if !self.pool.count_include_pad {
            return Err("count_include_pad applies to avg_pool2d only".into());
        }
        let [rows, cols] = self.pool.taps([h, w])?;
        let (oh, ow) = (rows.len(), cols.len());
        let view = x.view();
        let data = view.as_standard_layout();
        let data = data.as_slice().unwrap_or(&[]);
        let mut out = Vec::with_capacity(n * c * oh * ow);
        let mut index = Vec::with_capacity(n * c * oh * ow);
        for plane in data.chunks_exact((h * w).max(1)).take(n * c) {
            for r in &rows {
                for c in &cols {
                    let (v, at) = window_max(plane, w, r, c);
                    out.push(v);
                    index.push(at);
                }
            }
        }
        let index = ArrayD::from_shape_vec(IxDyn(&[n, c, oh * ow]), index);
        self.index = Arc::new(index.map_err(|e| e.to_string())?);
        self.input = Shape::from_slice(x.shape());
        let out = ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), out);
        Ok(Tensor::from_array(out.map_err(|e| e.to_string())?))
    }

    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let s = &self.input;
        let flat = reshape_exact(g, self.index.shape());
        let scatter = ScatterAdd::shared(2, self.index.clone(), &[s[0], s[1], s[2] * s[3]]);
        let dx = Val::apply(scatter, &[&flat]);
        Cotangents::from([Some(reshape_exact(&dx, s))])
    }

    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let s = &self.input;
        let flat = reshape_exact(t[0].as_ref()?, &[s[0], s[1], s[2] * s[3]]);
        let picked = Val::apply(Gather::shared(2, self.index.clone()), &[&flat]);
        Some(reshape_exact(&picked, &cx.output().shape()))
    }

    fn saved_bytes(&self) -> usize {
        self.index.len() * std::mem::size_of::<usize>()
    }
}
