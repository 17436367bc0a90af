//! `matmul` on a batch of tangents or cotangents: `k` products with one shared operand
//! computed as one matrix product with `k` times the rows or columns, so that a Jacobian
//! built from `k` tangents at once costs matrix-matrix work, not `k` matrix-vector
//! products.
//!
//! A batch stands on the left (`op(Aᵦ) · op(B)` for `β < k`) or on the right
//! (`op(A) · op(Bᵦ)`):
//! - left, shared right operand a plain matrix: the batch folds into the rows, one GEMM
//!   `[k·m, n] · [n, p]` (the forward's own fold);
//! - right, shared left operand a plain matrix: the batch is laid out as columns,
//!   `op(A) · [op(B₀) … op(Bₖ₋₁)]`, one GEMM `[m, n] · [n, k·p]`, and the result's columns
//!   are put back in batch order;
//! - otherwise the batch becomes a leading batch axis of a broadcast batched product.
//!
//! 1-D operands are promoted as the forward promotes them (a row on the left, a column on
//! the right) and the promoted axes dropped at the end, by one reshape to `[k] ++ out`.

use ndarray::{ArrayD, Ix2, IxDyn};
use retrograd_tape::batch::{self, batched_shape};
use retrograd_tape::{Float, Shape, Tensor};

use super::matmul::product;

/// Which operand of a product carries the batch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    Left,
    Right,
}

/// One operand: its value and its promoted per-sample shape.
struct Operand<'a, T> {
    value: &'a Tensor<T>,
    /// The per-sample shape with a 1-D operand promoted (row on the left, column on the
    /// right).
    shape: Shape,
    /// The transpose flag as the product applies it (never for a promoted vector).
    transposed: bool,
}

fn promote<'a, T: Float>(value: &'a Tensor<T>, sample: &[usize], side: Side, t: bool) -> Operand<'a, T> {
    let shape: Shape = match (sample.len(), side) {
        (1, Side::Left) => Shape::from_slice(&[1, sample[0]]),
        (1, Side::Right) => Shape::from_slice(&[sample[0], 1]),
        _ => Shape::from_slice(sample),
    };
    Operand {
        value,
        shape,
        transposed: t && sample.len() != 1,
    }
}

/// `k` products `op(Xᵦ) · op(Y)` (batch on the left) or `op(Y) · op(Xᵦ)` (batch on the
/// right) of a batch `batched` (shape `[k] ++ per-sample shape`) with a shared operand
/// `shared`, reshaped to `[k] ++ out_shape`. `flags` are the transpose flags of the
/// (left, right) operands. Without `out_shape` the result keeps the product's own shape,
/// `[k] ++ batch ++ [rows, columns]` (promoted axes included).
pub(crate) fn product_batch<T: Float>(
    batched: &Tensor<T>,
    shared: &Tensor<T>,
    side: Side,
    flags: (bool, bool),
    out_shape: Option<&[usize]>,
) -> Tensor<T> {
    let k = batched.shape()[0];
    let other = match side {
        Side::Left => Side::Right,
        Side::Right => Side::Left,
    };
    let (bt, st) = match side {
        Side::Left => flags,
        Side::Right => (flags.1, flags.0),
    };
    let x = promote(batched, &batched.shape()[1..], side, bt);
    let y = promote(shared, shared.shape(), other, st);
    let result = if y.shape.len() == 2 && x.shape.len() == 2 {
        match side {
            Side::Left => fold_rows(&x, &y, k),
            Side::Right => fold_columns(&x, &y, k),
        }
    } else {
        broadcast_batch(&x, &y, side, k)
    };
    match result {
        Ok(a) => match out_shape {
            Some(out) => batch::reshape(Tensor::from_array(a), &batched_shape(k, out)),
            None => Tensor::from_array(a),
        },
        // The shapes were checked by the forward on the same operands; a batch of them
        // multiplies alike.
        Err(e) => panic!("batched matmul: {e}"),
    }
}

/// `[k, m, n] · [n, p]`: the forward's fold of a stack into one GEMM.
fn fold_rows<T: Float>(x: &Operand<'_, T>, y: &Operand<'_, T>, k: usize) -> Result<ArrayD<T>, String> {
    let xv = x.value.view();
    let xv = xv
        .to_shape(IxDyn(&batched_shape(k, &x.shape)))
        .map_err(|e| e.to_string())?;
    let yv = y.value.view();
    let yv = yv.to_shape(IxDyn(&y.shape)).map_err(|e| e.to_string())?;
    product(xv.view(), yv.view(), x.transposed, y.transposed)
}

/// `[m, n] · [k, n, p]` as `[m, n] · [n, k·p]`: the batch's matrices side by side.
fn fold_columns<T: Float>(x: &Operand<'_, T>, y: &Operand<'_, T>, k: usize) -> Result<ArrayD<T>, String> {
    let xv = x.value.view();
    let xv = xv
        .to_shape(IxDyn(&batched_shape(k, &x.shape)))
        .map_err(|e| e.to_string())?;
    let mut xs = xv.view().into_dimensionality::<ndarray::Ix3>().map_err(|e| e.to_string())?;
    if x.transposed {
        xs.swap_axes(1, 2);
    }
    let (n, p) = (xs.shape()[1], xs.shape()[2]);
    // [k, n, p] → [n, k, p] → [n, k·p], one copy.
    let cols = xs.permuted_axes([1, 0, 2]).as_standard_layout().into_owned();
    let cols = cols.into_shape_with_order((n, k * p)).map_err(|e| e.to_string())?;
    let yv = y.value.view();
    let yv = yv.to_shape(IxDyn(&y.shape)).map_err(|e| e.to_string())?;
    let ym = yv.view().into_dimensionality::<Ix2>().map_err(|e| e.to_string())?;
    let c = product(ym.into_dyn(), cols.view().into_dyn(), y.transposed, false)?;
    let m = c.shape()[0];
    // [m, k·p] → [m, k, p] → [k, m, p].
    let c = c.into_shape_with_order((m, k, p)).map_err(|e| e.to_string())?;
    Ok(c.permuted_axes([1, 0, 2]).as_standard_layout().into_owned().into_dyn())
}

/// The general case: the batch as a new leading batch axis of a broadcast product, the
/// shared operand's own batch axes aligned after it.
fn broadcast_batch<T: Float>(
    x: &Operand<'_, T>,
    y: &Operand<'_, T>,
    side: Side,
    k: usize,
) -> Result<ArrayD<T>, String> {
    let rank = x.shape.len().max(y.shape.len());
    let mut xs: Shape = Shape::from_slice(&[k]);
    xs.extend(std::iter::repeat_n(1, rank - x.shape.len()));
    xs.extend_from_slice(&x.shape);
    let xv = x.value.view();
    let xv = xv.to_shape(IxDyn(&xs)).map_err(|e| e.to_string())?;
    let yv = y.value.view();
    let yv = yv.to_shape(IxDyn(&y.shape)).map_err(|e| e.to_string())?;
    match side {
        Side::Left => product(xv.view(), yv.view(), x.transposed, y.transposed),
        Side::Right => product(yv.view(), xv.view(), y.transposed, x.transposed),
    }
}

