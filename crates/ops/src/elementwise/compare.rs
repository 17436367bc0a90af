//! Comparisons: `gt`, `ge`, `lt`, `le`, `eq`, `ne`, producing 0/1 masks.
//!
//! A comparison is piecewise constant, so its derivative is zero wherever it exists: the
//! result is entered as a **constant** (through `constant_like`), carrying no gradient and
//! recording no op. Use the mask with [`where_`](super::where_) or by multiplication.
//! Operands broadcast under numpy's rules; NaN compares false except under `ne`.

use std::panic::Location;

use retrograd_tape::{Error, Float, Operand, Shape, Tensor};

/// The right-hand side of a comparison: a tensor of the same kind (`a.gt(&b)`) or a plain
/// number (`a.gt(0.0)`), so that a mask against a threshold needs no constant entered by
/// hand.
pub trait Comparand<'t, T: Float, X> {
    /// The value compared against.
    fn compared_value(&self) -> Tensor<T>;
}

impl<'t, T: Float, X: Operand<'t, T>> Comparand<'t, T, X> for &X {
    fn compared_value(&self) -> Tensor<T> {
        self.value()
    }
}

impl<'t, X: Operand<'t, f64>> Comparand<'t, f64, X> for f64 {
    fn compared_value(&self) -> Tensor<f64> {
        Tensor::scalar(*self)
    }
}

impl<'t, X: Operand<'t, f32>> Comparand<'t, f32, X> for f32 {
    fn compared_value(&self) -> Tensor<f32> {
        Tensor::scalar(*self)
    }
}

/// Compares `a` and `b` elementwise with broadcasting: 1 where `f(a, b)`, else 0, as a
/// constant beside `a`.
///
/// # Panics
/// When the shapes do not broadcast, with the engine's message for an invalid op: the op's
/// name, both shapes and the caller's line.
#[track_caller]
pub(crate) fn compare<'t, T: Float, X: Operand<'t, T>>(
    op: &'static str,
    a: &X,
    b: impl Comparand<'t, T, X>,
    f: impl Fn(T, T) -> bool,
) -> X {
    let (va, vb) = (a.value(), b.compared_value());
    match va.zip_map(&vb, |x, y| if f(x, y) { T::one() } else { T::zero() }) {
        Some(mask) => a.constant_like(mask),
        None => {
            let err = Error::InvalidOp {
                op,
                shapes: vec![Shape::from_slice(va.shape()), Shape::from_slice(vb.shape())],
                message: format!(
                    "shapes {:?} and {:?} do not broadcast",
                    va.shape(),
                    vb.shape()
                ),
                location: Location::caller(),
            };
            panic!("{err}")
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::panic_message;
    use ndarray::array;

    #[test]
    fn masks_with_broadcasting() {
        let tape = Tape::<f64>::new();
        let a = tape.var(array![[1.0], [2.0], [3.0]]);
        let b = tape.var(array![1.0, 2.0, 3.0, 4.0]);
        let want = |f: fn(f64, f64) -> bool| {
            ndarray::Array2::from_shape_fn((3, 4), |(i, j)| {
                if f(i as f64 + 1.0, j as f64 + 1.0) {
                    1.0
                } else {
                    0.0
                }
            })
            .into_dyn()
        };
        assert_eq!(a.gt(&b).array(), want(|x, y| x > y));
        assert_eq!(a.ge(&b).array(), want(|x, y| x >= y));
        assert_eq!(a.lt(&b).array(), want(|x, y| x < y));
        assert_eq!(a.le(&b).array(), want(|x, y| x <= y));
        assert_eq!(a.eq(&b).array(), want(|x, y| x == y));
        assert_eq!(a.ne(&b).array(), want(|x, y| x != y));
        assert_eq!(a.gt(&b).shape().as_slice(), &[3, 4]);
    }

    #[test]
    fn masks_carry_no_gradient() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![-1.0, 2.0]);
        let m = x.gt(&tape.constant(0.0));
        assert!(!m.requires_grad());
        // x * mask: the gradient is the mask, with nothing flowing through the mask.
        let y = retrograd_tape::arith::sum_to(&(x * m), &[]);
        assert_eq!(tape.grad(y, &[x]).unwrap()[0], array![0.0, 1.0].into_dyn());
    }

    #[test]
    fn nan_compares_false_except_ne() {
        let tape = Tape::<f32>::new();
        let (n, one) = (tape.var(f32::NAN), tape.var(1.0f32));
        let all = [
            n.gt(&one),
            n.ge(&one),
            n.lt(&one),
            n.le(&one),
            n.eq(&n),
            n.ne(&n),
        ];
        let got: Vec<f32> = all.iter().map(|m| m.item()).collect();
        assert_eq!(got, vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn mismatched_shapes_name_the_op_the_shapes_and_the_caller() {
        let msg = panic_message(|| {
            let tape = Tape::<f64>::new();
            let a = tape.var(ndarray::Array2::<f64>::ones((2, 3)));
            let b = tape.var(ndarray::Array1::<f64>::ones(4));
            let _ = a.ge(&b);
        });
        for part in ["ge", "[2, 3]", "[4]", file!()] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
    }
}
