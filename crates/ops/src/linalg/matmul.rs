//! `matmul` (and `dot`): the matrix product under numpy's rules.
//!
//! `C = op(A) · op(B)`, where `op` is the identity or, when the op's transpose flag is
//! set, the swap of the last two axes (a strided view: never a copy). Shapes follow
//! `numpy.matmul`:
//! - 1-D · 1-D: the inner product, a scalar;
//! - 1-D · N-D: the vector is promoted to a row `[1, k]`, and the added axis removed from
//!   the result; N-D · 1-D: the vector is promoted to a column `[k, 1]`, likewise;
//! - N-D · N-D: a stack of matrix products over the leading (batch) axes, which broadcast
//!   against each other like elementwise ops (`[5, 1, 2, 3] · [4, 3, 6] → [5, 4, 2, 6]`).
//!
//! Every product goes through the one kernel seam, [`kernel::gemm`](super::kernel::gemm);
//! a batch whose right operand is a single matrix (`[b, m, k] · [k, n]`, a linear layer on
//! a sequence) is folded into one `[b·m, k] · [k, n]` GEMM.
//!
//! Rules (for `C = A·B`; the transposed variants follow by transposing both sides):
//! - VJP: `Ā = sum_to(C̄ · Bᵀ)`, `B̄ = sum_to(Aᵀ · C̄)`, where `sum_to` sums the batch axes
//!   that broadcasting stretched back to the input's shape. Each is computed only when
//!   the sweep needs it (a network's data input needs none, which saves a third of the
//!   backward pass of a first layer). The transposes are flags on the product, not
//!   copies, and the products are `matmul`s again, so second derivatives work.
//!   When the input is a plain matrix shared across a batch (a weight), the batch sum
//!   happens inside the kernel (`β = 1` accumulation, or one GEMM over the flattened batch
//!   for `Σᵢ Aᵢᵀ C̄ᵢ`), never through a `[batch, k, n]` temporary.
//!   For 1-D · 1-D: `ā = c̄ · b`, `b̄ = c̄ · a`.
//! - JVP: `Ċ = Ȧ·B + A·Ḃ`.

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, IxDyn};

use retrograd_tape::arith::{broadcast_to, sum_to};
use retrograd_tape::{
    Cotangents, Float, Operand, Rule, RuleCtx, Shape, Tensor, Val, broadcast_shapes,
};

use super::batched::{Side, product_batch};
use super::kernel::{gemm, gemm_new};
use crate::shape::reshape_exact;
use retrograd_tape::batch;

/// The matrix product `op(A) · op(B)` under numpy's `matmul` rules; see the
/// [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatMul {
    /// Whether the last two axes of the first operand are swapped (ignored for a 1-D one).
    pub transpose_a: bool,
    /// Whether the last two axes of the second operand are swapped (ignored for a 1-D one).
    pub transpose_b: bool,
    /// `dot`: accept only two 1-D vectors (and name the op `dot`).
    vectors_only: bool,
    /// Sum the products over the (broadcast) batch axes: `C = Σᵢ op(Aᵢ) op(Bᵢ)`, a single
    /// matrix. The VJP of a batched product with respect to an unbatched matrix (a weight
    /// shared across a batch) is this, accumulated in the kernel (`β = 1`) instead of
    /// materialising one product per batch element and summing them.
    sum_batch: bool,
}

impl MatMul {
    /// The plain product `A · B`.
    pub fn new() -> Self {
        MatMul::default()
    }

    /// The product `op(A) · op(B)` with the given transpose flags.
    pub fn transposed(transpose_a: bool, transpose_b: bool) -> Self {
        MatMul {
            transpose_a,
            transpose_b,
            ..MatMul::default()
        }
    }

    /// The inner product of two 1-D vectors (any other shape is an error).
    pub fn dot() -> Self {
        MatMul {
            vectors_only: true,
            ..MatMul::default()
        }
    }
}

/// `op(a) · op(b)` as a recorded (or, on constants, immediate) op.
#[track_caller]
pub(crate) fn mm<'t, T: Float, X: Operand<'t, T>>(a: &X, b: &X, ta: bool, tb: bool) -> X {
    X::apply(MatMul::transposed(ta, tb), &[a, b])
}

/// The batch axes of a product of two ≥2-D operands (empty when they do not broadcast:
/// the product itself then reports the error).
fn batch_of(a: &[usize], b: &[usize]) -> Shape {
    broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2]).unwrap_or_default()
}

/// The cotangent of a ≥2-D input from one of the products below: `op(x)·op(y)`, summed
/// over the batch in the kernel when the input is a plain matrix, else batched and summed
/// (`sum_to`) over the batch axes the input was broadcast along.
fn cotangent<'t, T: Float>(
    (x, y): (&Val<'t, T>, &Val<'t, T>),
    (tx, ty): (bool, bool),
    target: &[usize],
    out_batch: &[usize],
) -> Val<'t, T> {
    let (sx, sy) = (x.shape(), y.shape());
    let batch = batch_of(&sx, &sy);
    if target.len() == 2 && !batch.is_empty() {
        let rule = MatMul {
            sum_batch: true,
            ..MatMul::transposed(tx, ty)
        };
        return Val::apply(rule, &[x, y]);
    }
    let d = mm(x, y, tx, ty);
    let ds = d.shape();
    let mut full: Shape = out_batch.into();
    full.extend_from_slice(&ds[ds.len() - 2..]);
    sum_to(&broadcast_to(&d, &full), target)
}

impl<T: Float> Rule<T> for MatMul {
    fn name(&self) -> &'static str {
        if self.vectors_only { "dot" } else { "matmul" }
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attrs = Vec::new();
        if self.transpose_a {
            attrs.push(("transpose_a", "true".to_string()));
        }
        if self.transpose_b {
            attrs.push(("transpose_b", "true".to_string()));
        }
        attrs
    }

    /// Each output element is an inner product of length `k` (`m·k·n` per matrix of the
    /// batch); a batch-summed product also sums over the batch.
    fn madds(&self, input_shapes: &[&[usize]], output_shape: &[usize]) -> u64 {
        let (a, b) = (input_shapes[0], input_shapes[1]);
        let k = match *a {
            [] => 0,
            [k] => k,
            [.., r, c] => {
                if self.transpose_a {
                    r
                } else {
                    c
                }
            }
        };
        let batch = if self.sum_batch && a.len() >= 2 && b.len() >= 2 {
            crate::elements(&batch_of(a, b))
        } else {
            1
        };
        crate::elements(output_shape) * k as u64 * batch
    }

    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let (a, b) = (x[0], x[1]);
        if self.vectors_only && (a.ndim() != 1 || b.ndim() != 1) {
            return Err("dot takes two 1-D vectors (use matmul for matrices)".to_string());
        }
        if !self.sum_batch && a.ndim() == 1 && b.ndim() == 1 && a.len() == b.len() {
            // An inner product adds with the accuracy of every reduction (the GEMM kernel
            // accumulates serially along `k`).
            return Ok(Tensor::scalar(crate::sum_pairs(a, b, |x, y| x * y)));
        }
        if self.sum_batch {
            return summed_product(a.view(), b.view(), self.transpose_a, self.transpose_b)
                .map(Tensor::from_array);
        }
        product(a.view(), b.view(), self.transpose_a, self.transpose_b).map(Tensor::from_array)
    }

    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let (a, b) = (cx.input(0), cx.input(1));
        let (sa, sb) = (a.shape(), b.shape());
        let (a_vec, b_vec) = (sa.len() == 1, sb.len() == 1);
        if a_vec && b_vec {
            // The inner product: the cotangent is a scalar.
            return Cotangents::from([cx.needs(0).then(|| g * b), cx.needs(1).then(|| g * a)]);
        }
        // Promote vectors to matrices as the forward did, and the cotangent with them.
        let a2 = if a_vec {
            reshape_exact(a, &[1, sa[0]])
        } else {
            a.clone()
        };
        let b2 = if b_vec {
            reshape_exact(b, &[sb[0], 1])
        } else {
            b.clone()
        };
        let mut sg = g.shape();
        if a_vec {
            let pos = sg.len() - usize::from(!b_vec);
            sg.insert(pos, 1);
        }
        if b_vec {
            sg.push(1);
        }
        let g2 = reshape_exact(g, &sg);
        // The transpose flags as the forward applied them (a vector is never transposed).
        let ta = self.transpose_a && !a_vec;
        let tb = self.transpose_b && !b_vec;
        let (sa2, sb2) = (a2.shape(), b2.shape());
        let out_batch = batch_of(&sa2, &sb2);
        let da = cx.needs(0).then(|| {
            // d op(A) = G · op(B)ᵀ; when op(A) = Aᵀ, dA = op(B) · Gᵀ.
            let d = if ta {
                cotangent((&b2, &g2), (tb, true), &sa2, &out_batch)
            } else {
                cotangent((&g2, &b2), (false, !tb), &sa2, &out_batch)
            };
            reshape_exact(&d, &sa)
        });
        let db = cx.needs(1).then(|| {
            // d op(B) = op(A)ᵀ · G; when op(B) = Bᵀ, dB = Gᵀ · op(A).
            let d = if tb {
                cotangent((&g2, &a2), (true, ta), &sb2, &out_batch)
            } else {
                cotangent((&a2, &g2), (!ta, false), &sb2, &out_batch)
            };
            reshape_exact(&d, &sb)
        });
        Cotangents::from([da, db])
    }

    /// One product per side for the whole batch: the batch folds into the rows of one GEMM.
    fn jvp_batch(
        &self,
        cx: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        k: usize,
    ) -> Option<Tensor<T>> {
        if self.sum_batch {
            return batch::jvp_each(self, cx, t, k);
        }
        let (a, b) = (cx.input(0).value(), cx.input(1).value());
        let out = cx.output().shape();
        let flags = (self.transpose_a, self.transpose_b);
        let terms = [
            t[0].as_ref()
                .map(|ta| product_batch(ta, &b, Side::Left, flags, Some(&out))),
            t[1].as_ref()
                .map(|tb| product_batch(tb, &a, Side::Right, flags, Some(&out))),
        ];
        batch::linear_combination(&terms, &[T::one(), T::one()], &out)
    }

    /// The rules of [`vjp`](Rule::vjp) on promoted operands, one product per input for the
    /// whole batch.
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, k: usize) -> Vec<Option<Tensor<T>>> {
        let (sa, sb) = (cx.input_shape(0), cx.input_shape(1));
        if self.sum_batch || (sa.len() == 1 && sb.len() == 1) {
            return batch::vjp_each(self, cx, g, k);
        }
        let (a_vec, b_vec) = (sa.len() == 1, sb.len() == 1);
        let sa2: Shape = if a_vec {
            Shape::from_slice(&[1, sa[0]])
        } else {
            sa.clone()
        };
        let sb2: Shape = if b_vec {
            Shape::from_slice(&[sb[0], 1])
        } else {
            sb.clone()
        };
        let mut sg = cx.output().shape();
        if a_vec {
            let pos = sg.len() - usize::from(!b_vec);
            sg.insert(pos, 1);
        }
        if b_vec {
            sg.push(1);
        }
        let a2 = batch::reshape(cx.input(0).value(), &sa2);
        let b2 = batch::reshape(cx.input(1).value(), &sb2);
        let g2 = batch::reshape(g.clone(), &batch::batched_shape(k, &sg));
        let ta = self.transpose_a && !a_vec;
        let tb = self.transpose_b && !b_vec;
        let finish = |d: Tensor<T>, promoted: &[usize], shape: &[usize]| {
            batch::reshape(batch::sum_to(d, promoted), &batch::batched_shape(k, shape))
        };
        let da = cx.needs(0).then(|| {
            let d = if ta {
                product_batch(&g2, &b2, Side::Right, (tb, true), None)
            } else {
                product_batch(&g2, &b2, Side::Left, (false, !tb), None)
            };
            finish(d, &sa2, &sa)
        });
        let db = cx.needs(1).then(|| {
            let d = if tb {
                product_batch(&g2, &a2, Side::Left, (true, ta), None)
            } else {
                product_batch(&g2, &a2, Side::Right, (!ta, false), None)
            };
            finish(d, &sb2, &sb)
        });
        vec![da, db]
    }

    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        let apply = |x: &Val<'t, T>, y: &Val<'t, T>| Val::apply(*self, &[x, y]);
        match (&t[0], &t[1]) {
            (Some(ta), Some(tb)) => Some(apply(ta, b) + apply(a, tb)),
            (Some(ta), None) => Some(apply(ta, b)),
            (None, Some(tb)) => Some(apply(a, tb)),
            (None, None) => None,
        }
    }
}

/// Two operands as a product sees them: 1-D operands promoted to a row (left) or a
/// column (right), the transpose flags applied (views: never a copy), the contracted
/// extents checked and the batch axes broadcast. Shared by [`product`] and
/// [`summed_product`].
struct Operands<'a, T> {
    /// `op(A)`, `[..batch_a, m, k]`.
    a: ArrayViewD<'a, T>,
    /// `op(B)`, `[..batch_b, k, n]`.
    b: ArrayViewD<'a, T>,
    m: usize,
    k: usize,
    n: usize,
    /// The broadcast batch axes.
    batch: Shape,
}

impl<'a, T: Float> Operands<'a, T> {
    fn new(a: ArrayViewD<'a, T>, b: ArrayViewD<'a, T>, ta: bool, tb: bool) -> Result<Self, String> {
        let (a_vec, b_vec) = (a.ndim() == 1, b.ndim() == 1);
        let mut a = if a_vec { a.insert_axis(Axis(0)) } else { a };
        if ta && !a_vec {
            let n = a.ndim();
            a.swap_axes(n - 2, n - 1);
        }
        let mut b = if b_vec { b.insert_axis(Axis(1)) } else { b };
        if tb && !b_vec {
            let n = b.ndim();
            b.swap_axes(n - 2, n - 1);
        }
        let ((m, k), (k2, n)) = (last2(&a), last2(&b));
        if k != k2 {
            return Err(format!(
                "the contracted extents differ: {k} (columns of the first operand{}) vs {k2} \
                 (rows of the second{})",
                if ta && !a_vec { ", transposed" } else { "" },
                if tb && !b_vec { ", transposed" } else { "" },
            ));
        }
        let (batch_a, batch_b) = (&a.shape()[..a.ndim() - 2], &b.shape()[..b.ndim() - 2]);
        let batch = broadcast_shapes(batch_a, batch_b).ok_or_else(|| {
            format!("the batch axes {batch_a:?} and {batch_b:?} do not broadcast")
        })?;
        Ok(Operands {
            a,
            b,
            m,
            k,
            n,
            batch,
        })
    }

    fn batch_a(&self) -> &[usize] {
        &self.a.shape()[..self.a.ndim() - 2]
    }

    fn batch_b(&self) -> &[usize] {
        &self.b.shape()[..self.b.ndim() - 2]
    }

    /// The number of matrix products.
    fn batch_len(&self) -> usize {
        self.batch.iter().product()
    }

    /// Calls `f` with each pair of matrices `(op(Aᵢ), op(Bᵢ))` of the broadcast batch, in
    /// row-major batch order.
    fn for_each_pair(
        &self,
        mut f: impl FnMut(ArrayView2<'_, T>, ArrayView2<'_, T>),
    ) -> Result<(), String> {
        let full = |r, c| {
            let mut s = self.batch.clone();
            s.extend([r, c]);
            s
        };
        let a = self
            .a
            .broadcast(IxDyn(&full(self.m, self.k)))
            .ok_or("internal: batch broadcast failed")?;
        let b = self
            .b
            .broadcast(IxDyn(&full(self.k, self.n)))
            .ok_or("internal: batch broadcast failed")?;
        let mut idx: Shape = self.batch.iter().map(|_| 0).collect();
        for _ in 0..self.batch_len() {
            f(matrix_at(&a, &idx)?, matrix_at(&b, &idx)?);
            // Next batch index, row-major.
            for ax in (0..idx.len()).rev() {
                idx[ax] += 1;
                if idx[ax] < self.batch[ax] {
                    break;
                }
                idx[ax] = 0;
            }
        }
        Ok(())
    }
}

/// `Σᵢ op(aᵢ) · op(bᵢ)` over the broadcast batch axes of two ≥2-D operands: one
/// matrix, accumulated by the kernel. When the contraction runs along the axis next to the
/// batch axes in both operands (`Σᵢ Aᵢᵀ Gᵢ`, a weight's gradient), the whole sum is one GEMM
/// over the flattened batch, on views.
pub(crate) fn summed_product<T: Float>(
    a: ArrayViewD<'_, T>,
    b: ArrayViewD<'_, T>,
    ta: bool,
    tb: bool,
) -> Result<ndarray::Array2<T>, String> {
    if a.ndim() < 2 || b.ndim() < 2 {
        return Err("a batch-summed product needs two operands of at least 2 axes".to_string());
    }
    let (raw_a, raw_b) = (a.clone(), b.clone());
    let ops = Operands::new(a, b, ta, tb)?;
    let (m, k, n, nb) = (ops.m, ops.k, ops.n, ops.batch_len());
    retrograd_tape::checked_len::<T>(&[m, n])?;
    let mut out = ndarray::Array2::<T>::zeros((m, n));
    if nb == 0 || m == 0 || n == 0 {
        return Ok(out);
    }
    if ta && !tb && ops.batch_a() == ops.batch_b() {
        let flat_a = raw_a.into_shape_with_order((nb * k, m));
        let flat_b = raw_b.into_shape_with_order((nb * k, n));
        if let (Ok(fa), Ok(fb)) = (flat_a, flat_b) {
            gemm(T::one(), fa.t(), fb, T::zero(), out.view_mut());
            return Ok(out);
        }
    }
    ops.for_each_pair(|ai, bi| gemm(T::one(), ai, bi, T::one(), out.view_mut()))?;
    Ok(out)
}

/// The extents of the last two axes.
fn last2<T>(v: &ArrayViewD<'_, T>) -> (usize, usize) {
    let s = v.shape();
    (s[s.len() - 2], s[s.len() - 1])
}

/// The matrix of a broadcast stack at batch index `idx`.
fn matrix_at<'a, T>(v: &ArrayViewD<'a, T>, idx: &[usize]) -> Result<ArrayView2<'a, T>, String> {
    let mut m = v.clone();
    for &i in idx {
        m = m.index_axis_move(Axis(0), i);
    }
    m.into_dimensionality::<Ix2>().map_err(|e| e.to_string())
}

/// `op(a) · op(b)` under numpy's matmul rules, each matrix product through the kernel.
pub(crate) fn product<T: Float>(
    a: ArrayViewD<'_, T>,
    b: ArrayViewD<'_, T>,
    ta: bool,
    tb: bool,
) -> Result<ArrayD<T>, String> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err("operands need at least one axis (scale by a scalar with `*`)".to_string());
    }
    let (a_vec, b_vec) = (a.ndim() == 1, b.ndim() == 1);
    let ops = Operands::new(a, b, ta, tb)?;
    let (m, k, n, nb) = (ops.m, ops.k, ops.n, ops.batch_len());
    let mut shape: Shape = ops.batch.clone();
    if !a_vec {
        shape.push(m);
    }
    if !b_vec {
        shape.push(n);
    }
    retrograd_tape::checked_len::<T>(&shape)?;
    let into_shape = |c: Array2<T>| {
        c.into_shape_with_order(IxDyn(&shape))
            .map_err(|e| e.to_string())
    };
    // One product: written straight into a new array, as is the one GEMM over all of A's
    // rows below.
    if nb == 1 && m > 0 && n > 0 {
        let mut product = None;
        ops.for_each_pair(|ai, bi| product = Some(gemm_new(T::one(), ai, bi)))?;
        return into_shape(product.ok_or("internal: no operand pair")?);
    }
    if nb > 1 && m > 0 && n > 0 && ops.batch_b().is_empty() && !ops.batch_a().is_empty() {
        // `[..., m, k] · [k, n]` with A's rows contiguous.
        if let Ok(a_flat) = ops.a.view().into_shape_with_order((nb * m, k)) {
            let b_mat = ops
                .b
                .view()
                .into_dimensionality::<Ix2>()
                .map_err(|e| e.to_string())?;
            return into_shape(gemm_new(T::one(), a_flat, b_mat));
        }
    }
    let mut out = ArrayD::<T>::zeros(IxDyn(&shape));
    if nb == 0 || m == 0 || n == 0 {
        return Ok(out);
    }
    // The output as a stack of `nb` contiguous m×n matrices (a fresh standard array).
    let mut out3 = out
        .view_mut()
        .into_shape_with_order((nb, m, n))
        .map_err(|e| e.to_string())?;
    let mut outs = out3.outer_iter_mut();
    ops.for_each_pair(|ai, bi| {
        if let Some(c) = outs.next() {
            gemm(T::one(), ai, bi, T::zero(), c);
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::linalg::Transpose;
    use crate::testing::{assert_panics_with, check_many, panic_message};
    use ndarray::{Array, ArrayD, Axis, Dimension, IxDyn, array};
    use proptest::prelude::*;
    use retrograd_tape::strategies::{array, config, matmul_shapes};
    use retrograd_tape::{GradOptions, Tape, broadcast_shapes};

    use crate::linalg::LinalgOps;

    /// `numpy.matmul` by its definition, with explicit loops.
    fn reference(a: &ArrayD<f64>, b: &ArrayD<f64>) -> ArrayD<f64> {
        let a2 = if a.ndim() == 1 {
            a.clone().insert_axis(Axis(0))
        } else {
            a.clone()
        };
        let b2 = if b.ndim() == 1 {
            b.clone().insert_axis(Axis(1))
        } else {
            b.clone()
        };
        let (sa, sb) = (a2.shape(), b2.shape());
        let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
        let batch = broadcast_shapes(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).unwrap();
        let full = |r, c| [batch.as_slice(), &[r, c]].concat();
        let ab = a2.broadcast(IxDyn(&full(m, k))).unwrap();
        let bb = b2.broadcast(IxDyn(&full(k, n))).unwrap();
        let nb = batch.len();
        let mut out = Array::zeros(IxDyn(&full(m, n)));
        for (idx, o) in out.indexed_iter_mut() {
            let idx = idx.slice().to_vec();
            for p in 0..k {
                let (mut ia, mut ib) = (idx.clone(), idx.clone());
                ia[nb + 1] = p;
                ib[nb] = p;
                *o += ab[IxDyn(&ia)] * bb[IxDyn(&ib)];
            }
        }
        if b.ndim() == 1 {
            out = out.index_axis_move(Axis(nb + 1), 0);
        }
        if a.ndim() == 1 {
            out = out.index_axis_move(Axis(nb), 0);
        }
        out
    }

    fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
        a.shape() == b.shape()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + y.abs()))
    }

    /// Random operands for `matmul`, with transpose flags for the ≥2-D ones: the arrays
    /// are stored transposed when their flag is set.
    fn operands() -> impl Strategy<Value = (ArrayD<f64>, ArrayD<f64>, bool, bool)> {
        (matmul_shapes(2, 3), any::<bool>(), any::<bool>()).prop_flat_map(|((sa, sb), ta, tb)| {
            let swap = |mut s: Vec<usize>, t: bool| {
                let n = s.len();
                if t && n >= 2 {
                    s.swap(n - 2, n - 1);
                }
                s
            };
            let (ta, tb) = (ta && sa.len() >= 2, tb && sb.len() >= 2);
            (
                array(swap(sa, ta), -2.0, 2.0),
                array(swap(sb, tb), -2.0, 2.0),
                Just(ta),
                Just(tb),
            )
        })
    }

    fn transposed(x: &ArrayD<f64>, t: bool) -> ArrayD<f64> {
        let mut v = x.view();
        if t {
            let n = v.ndim();
            v.swap_axes(n - 2, n - 1);
        }
        v.to_owned()
    }

    proptest! {
        #![proptest_config(config(48))]

        #[test]
        fn matmul_matches_numpy_and_its_derivatives_check((a, b, ta, tb) in operands()) {
            let tape = Tape::<f64>::new();
            let y = tape.var(a.clone()).matmul_transposed(&tape.var(b.clone()), Transpose::from_flags(ta, tb));
            let expected = reference(&transposed(&a, ta), &transposed(&b, tb));
            let got = y.array();
            prop_assert!(close(&got, &expected), "{} vs {}", got, expected);
            check_many(&[a, b], |x| x[0].matmul_transposed(&x[1], Transpose::from_flags(ta, tb)))?;
        }
    }

    #[test]
    fn batched_shapes_follow_numpy() {
        let tape = Tape::<f64>::new();
        let cases: [(&[usize], &[usize], &[usize]); 7] = [
            (&[3], &[3], &[]),
            (&[3], &[3, 4], &[4]),
            (&[2, 3], &[3], &[2]),
            (&[2, 3, 4], &[4, 5], &[2, 3, 5]),
            (&[3, 4], &[2, 4, 5], &[2, 3, 5]),
            (&[5, 1, 2, 3], &[4, 3, 6], &[5, 4, 2, 6]),
            (&[3], &[2, 3, 4], &[2, 4]),
        ];
        for (sa, sb, so) in cases {
            let a =
                ArrayD::from_shape_fn(IxDyn(sa), |i| i.slice().iter().sum::<usize>() as f64 - 1.5);
            let b = ArrayD::from_shape_fn(IxDyn(sb), |i| {
                (i.slice().iter().product::<usize>() as f64).sin()
            });
            let y = tape.var(a.clone()).matmul(&tape.var(b.clone()));
            assert_eq!(y.shape().as_slice(), so, "{sa:?} · {sb:?}");
            assert!(close(&y.array(), &reference(&a, &b)), "{sa:?} · {sb:?}");
        }
    }

    #[test]
    fn folded_and_broadcast_batches_have_correct_gradients() {
        // [2, 3, 4] · [4, 5] takes the one-GEMM path; [3, 4] · [2, 4, 5] broadcasts A.
        let a = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| {
            (i[0] * 12 + i[1] * 4 + i[2]) as f64 * 0.1 - 1.0
        });
        let w = ArrayD::from_shape_fn(IxDyn(&[4, 5]), |i| ((i[0] * 5 + i[1]) as f64).cos());
        let r = check_many(&[a.clone(), w.clone()], |x| x[0].matmul(&x[1]));
        assert!(r.is_ok(), "{}", r.unwrap_err());
        let b = ArrayD::from_shape_fn(IxDyn(&[2, 4, 5]), |i| ((i[0] + i[1] * i[2]) as f64).sin());
        let a2 = a.index_axis(Axis(0), 1).to_owned();
        let r = check_many(&[a2, b], |x| x[0].matmul(&x[1]));
        assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    #[test]
    fn vectors_against_stacks_have_correct_gradients() {
        // A 1-D operand against a batched one: the promotion goes through reshapes.
        let f = |s: &[usize], k: f64| {
            ArrayD::from_shape_fn(IxDyn(s), |i| {
                (i.slice().iter().sum::<usize>() as f64 * k).sin()
            })
        };
        for (sa, sb) in [
            (&[3][..], &[2, 3, 4][..]),
            (&[2, 2, 3, 4], &[4]),
            (&[4], &[2, 1, 4, 2]),
        ] {
            let r = check_many(&[f(sa, 0.7), f(sb, 1.3)], |x| x[0].matmul(&x[1]));
            assert!(r.is_ok(), "{sa:?} · {sb:?}: {}", r.unwrap_err());
        }
    }

    /// The cost estimate is `m·k·n` per matrix of the batch, whatever the transposes.
    #[test]
    fn madds_count_the_inner_products() {
        let tape = Tape::<f64>::new();
        let a = tape.var(ArrayD::zeros(IxDyn(&[5, 2, 3])));
        let w = tape.var(ArrayD::zeros(IxDyn(&[4, 3])));
        let madds = |v| tape.node_info(v).madds;
        assert_eq!(
            madds(a.matmul_transposed(&w, Transpose::Second)),
            5 * 2 * 3 * 4
        );
        let v = tape.var(ArrayD::zeros(IxDyn(&[3])));
        assert_eq!(madds(v.dot(&v)), 3);
        assert_eq!(madds(a.matmul(&v)), 5 * 2 * 3);
        // The batch-summed product of a weight's gradient: Σᵢ Aᵢᵀ Gᵢ over 5 matrices.
        let g = tape.var(ArrayD::zeros(IxDyn(&[5, 2, 4])));
        let rule = super::MatMul {
            sum_batch: true,
            ..super::MatMul::transposed(true, false)
        };
        assert_eq!(
            madds(retrograd_tape::Var::apply(rule, &[&a, &g])),
            5 * 3 * 2 * 4
        );
    }

    #[test]
    fn dot_and_f32() {
        let tape = Tape::<f32>::new();
        let a = tape.var(array![1.0f32, 2.0, 3.0]);
        let b = tape.var(array![4.0f32, 5.0, 6.0]);
        let d = a.dot(&b);
        assert_eq!(d.item(), 32.0);
        let g = tape.grad(d, &[a, b]).unwrap();
        assert_eq!(g[0], array![4.0f32, 5.0, 6.0].into_dyn());
        assert_eq!(g[1], array![1.0f32, 2.0, 3.0].into_dyn());
        let m = tape.var(array![[1.0f32, 2.0], [3.0, 4.0]]);
        assert_eq!(
            m.matmul(&m).array(),
            array![[7.0f32, 10.0], [15.0, 22.0]].into_dyn()
        );
    }

    #[test]
    fn the_data_input_of_a_layer_costs_no_gradient() {
        // With x a constant, the recorded backward of x·W holds one product (dW), not two.
        let recorded = |x_is_var: bool| {
            let tape = Tape::<f64>::new();
            let xv = ArrayD::from_elem(IxDyn(&[4, 3]), 0.5);
            let x = if x_is_var {
                tape.var(xv)
            } else {
                tape.constant(xv)
            };
            let w = tape.var(ArrayD::from_elem(IxDyn(&[3, 2]), 0.25));
            let y = x.matmul(&w);
            let before = tape.len();
            let wanted: Vec<_> = if x_is_var { vec![x, w] } else { vec![w] };
            let opts = GradOptions::new()
                .create_graph()
                .seed(ArrayD::from_elem(IxDyn(&[4, 2]), 1.0));
            let g = tape.grad_with(y, &wanted, &opts).unwrap();
            assert_eq!(
                g.last().unwrap().value().to_array(),
                ArrayD::from_elem(IxDyn(&[3, 2]), 2.0)
            );
            tape.len() - before
        };
        assert!(
            recorded(false) < recorded(true),
            "{} vs {}",
            recorded(false),
            recorded(true)
        );
    }

    #[test]
    fn incompatible_shapes_panic_naming_op_shapes_and_line() {
        assert_panics_with(
            |tape| {
                let a = tape.var(ArrayD::zeros(IxDyn(&[2, 3])));
                let b = tape.var(ArrayD::zeros(IxDyn(&[4, 5])));
                a.matmul(&b);
            },
            &["matmul", "[2, 3]", "[4, 5]", file!()],
        );
        let tape = Tape::<f64>::new();
        let a = tape.var(ArrayD::zeros(IxDyn(&[2, 2, 3])));
        let b = tape.var(ArrayD::zeros(IxDyn(&[3, 3, 1])));
        let e = a.try_matmul(&b).unwrap_err().to_string();
        assert!(e.contains("batch axes [2] and [3] do not broadcast"), "{e}");
        let v = tape.var(ArrayD::zeros(IxDyn(&[2, 2])));
        panic_message(|| {
            v.dot(&v);
        });
    }
}
