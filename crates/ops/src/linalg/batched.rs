//! `matmul` on a batch of tangents or cotangents: `k` products with one shared operand
//! computed as one matrix product with `k` times the rows or columns, so that a Jacobian
//! built from `k` tangents at once costs matrix-matrix work, not `k` matrix-vector
//! products.
//!
//! A batch stands on the left (`op(Aᵦ) · op(B)` for `β < k`) or on the right
//! (`op(A) · op(Bᵦ)`):
//! - left, shared right operand a plain matrix: the batch folds into the rows, one GEMM
//!   `[k·m, n] · [n, p]` (the forward's own fold);
//! - right, shared left operand a plain matrix, batch of vectors (the tangents of a
//!   layer's input): the batch becomes the rows of one GEMM, `[k, n] · op(A)ᵀ`;
//! - otherwise the batch becomes a leading batch axis of a broadcast batched product.
//!
//! 1-D operands are promoted as the forward promotes them (a row on the left, a column on
//! the right) and the promoted axes dropped at the end, by one reshape to `[k] ++ out`.

use ndarray::{ArrayD, IxDyn};
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

fn promote<'a, T: Float>(
    value: &'a Tensor<T>,
    sample: &[usize],
    side: Side,
    t: bool,
) -> Operand<'a, T> {
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
            Side::Right if columns(&x) == 1 => vector_rows(&x, &y, k),
            Side::Right => broadcast_batch(&x, &y, side, k),
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
fn fold_rows<T: Float>(
    x: &Operand<'_, T>,
    y: &Operand<'_, T>,
    k: usize,
) -> Result<ArrayD<T>, String> {
    let xv = x.value.view();
    let xv = xv
        .to_shape(IxDyn(&batched_shape(k, &x.shape)))
        .map_err(|e| e.to_string())?;
    let yv = y.value.view();
    let yv = yv.to_shape(IxDyn(&y.shape)).map_err(|e| e.to_string())?;
    product(xv.view(), yv.view(), x.transposed, y.transposed)
}

/// Below this many batch elements, a batch of vectors goes through the GEMM as columns.
const FEW_ROWS: usize = 32;

/// Columns of `op(X)` per batch element.
fn columns<T>(x: &Operand<'_, T>) -> usize {
    x.shape[if x.transposed { 0 } else { 1 }]
}

/// `op(Y) · xᵦ` for `k` column vectors `xᵦ` as one GEMM with the batch as rows:
/// `[x₀ … xₖ₋₁]ᵀ · op(Y)ᵀ`, `[k, n] · [n, m]`, which is already the batch in order (no
/// transpose of the batch is ever copied).
fn vector_rows<T: Float>(
    x: &Operand<'_, T>,
    y: &Operand<'_, T>,
    k: usize,
) -> Result<ArrayD<T>, String> {
    let n = x.shape.iter().product::<usize>();
    let xv = x.value.view();
    let rows = xv.to_shape(IxDyn(&[k, n])).map_err(|e| e.to_string())?;
    let yv = y.value.view();
    let yv = yv.to_shape(IxDyn(&y.shape)).map_err(|e| e.to_string())?;
    let c = if k < FEW_ROWS {
        // A GEMM with a handful of rows runs at a fraction of the kernel's rate (measured
        // 2x slower than the same product transposed); `op(Y) · Xᵀ` has them as columns.
        let ct = product(yv.view(), rows.t().into_dyn(), y.transposed, false)?;
        ct.t().as_standard_layout().into_owned()
    } else {
        product(rows.view(), yv.view(), false, !y.transposed)?
    };
    let m = c.shape()[1];
    c.into_shape_with_order(IxDyn(&[k, m, 1]))
        .map_err(|e| e.to_string())
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
