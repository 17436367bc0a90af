//! `where`: select elementwise between two tensors by a condition.

use ndarray::{IxDyn, Zip};

use retrograd_tape::arith::ScalarLhs;
use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val, broadcast_shapes};

use super::binary::{masked_jvp, masked_vjp};

/// `y = cond ≠ 0 ? a : b`, elementwise, with the three inputs broadcast together under
/// numpy's rules. Inputs are `[cond, a, b]`; any nonzero `cond` (NaN included, as numpy's
/// truthiness has it) selects `a`.
///
/// - VJP: `ā = sum_to(ȳ ⊙ m, shape(a))`, `b̄ = sum_to(ȳ ⊙ (1 - m), shape(b))` with the
///   constant mask `m = [cond ≠ 0]` at the output's shape; the condition gets **no
///   gradient** (it is piecewise constant). JVP: `ẏ = ȧ ⊙ m + ḃ ⊙ (1 - m)`.
/// - The unselected branch's values do not reach the output (a NaN or ∞ there stays out
///   of `y`), and its cotangent is an exact zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Where;

/// The constant mask `[cond ≠ 0]` at the output's shape.
fn mask<'t, T: Float>(cx: &RuleCtx<'t, T>) -> Val<'t, T> {
    let cond = cx.input(0).value();
    let shape = cx.output().shape();
    let m = cond
        .broadcast_to(&shape)
        .expect("the condition of a recorded `where` broadcasts to its output")
        .map(|c| if c != T::zero() { T::one() } else { T::zero() });
    cx.input(0).constant_like(m)
}

impl<T: Float> Rule<T> for Where {
    fn name(&self) -> &'static str {
        "where"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let (c, a, b) = (x[0], x[1], x[2]);
        let err = || {
            format!(
                "the condition {:?} and the branches {:?} and {:?} do not broadcast together",
                c.shape(),
                a.shape(),
                b.shape()
            )
        };
        let shape = broadcast_shapes(c.shape(), a.shape())
            .and_then(|s| broadcast_shapes(&s, b.shape()))
            .ok_or_else(err)?;
        let (cv, av, bv) = (c.view(), a.view(), b.view());
        let dim = IxDyn(&shape);
        let (Some(cv), Some(av), Some(bv)) = (
            cv.broadcast(dim.clone()),
            av.broadcast(dim.clone()),
            bv.broadcast(dim),
        ) else {
            return Err(err());
        };
        let out = Zip::from(&cv)
            .and(&av)
            .and(&bv)
            .map_collect(|&c, &a, &b| if c != T::zero() { a } else { b });
        Ok(Tensor::from_array(out))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let ma = || mask(cx);
        let mb = || mask(cx).rsub(T::one());
        masked_vjp(cx, g, &[(1, &ma), (2, &mb)])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let ma = || mask(cx);
        let mb = || mask(cx).rsub(T::one());
        masked_jvp(t, &[(1, &ma), (2, &mb)])
    }
}

/// Selects elementwise: `a` where `cond` is nonzero, `b` elsewhere, the three broadcast
/// together (numpy's `where`). Gradients flow to `a` and `b` only. See [`Where`].
///
/// ```
/// use retrograd_ops::prelude::*;
/// use retrograd_ops::elementwise::where_;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(ndarray::array![-2.0, 3.0]);
/// let y = where_(&x.gt(&tape.constant(0.0)), &x, &(x * 0.1)); // a leaky rectifier
/// assert_eq!(y.array(), ndarray::array![-0.2, 3.0].into_dyn());
/// ```
///
/// # Panics
/// When the three shapes do not broadcast together, naming `where`, the shapes and the
/// caller's line.
#[track_caller]
pub fn where_<'t, T: Float, X: Operand<'t, T>>(cond: &X, a: &X, b: &X) -> X {
    X::apply(Where, &[cond, a, b])
}

#[cfg(test)]
mod tests {
    use super::where_;
    use crate::prelude::*;
    use crate::testing::*;
    use ndarray::array;
    use proptest::prelude::*;
    use retrograd_tape::strategies::{array, broadcast_shapes_pair, config};

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn gradients_check(
            (c, a, b) in broadcast_shapes_pair(3, 4).prop_flat_map(|(sa, sb)| {
                let sc = if sa.len() >= sb.len() { sa.clone() } else { sb.clone() };
                (array(sc, -1.0, 1.0), array(sa, -2.0, 2.0), array(sb, -2.0, 2.0))
            })
        ) {
            let c = c.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
            // The condition enters as a constant; a and b are checked, to second order
            // (through a smooth function of the selection).
            check_many(&[a, b], move |v| {
                let cond = v[0].tape().constant(c.clone());
                let y = where_(&cond, &v[0], &v[1]);
                y * y
            })?;
        }
    }

    #[test]
    fn broadcasts_and_routes_gradients() {
        let tape = Tape::<f64>::new();
        let cond = tape.constant(array![[1.0], [0.0], [2.0]]);
        let a = tape.var(array![[10.0], [20.0], [30.0]]);
        let b = tape.var(array![1.0, 2.0, 3.0, 4.0]);
        let y = where_(&cond, &a, &b);
        assert_eq!(y.shape().as_slice(), &[3, 4]);
        let want = array![
            [10.0, 10.0, 10.0, 10.0],
            [1.0, 2.0, 3.0, 4.0],
            [30.0, 30.0, 30.0, 30.0]
        ];
        assert_eq!(y.array(), want.into_dyn());
        let s = retrograd_tape::arith::sum_to(&y, &[]);
        let g = tape.grad(s, &[a, b]).unwrap();
        assert_eq!(g[0], array![[4.0], [0.0], [4.0]].into_dyn());
        assert_eq!(g[1], array![1.0, 1.0, 1.0, 1.0].into_dyn());
        check_many(
            &[
                array![[1.0], [2.0], [3.0]].into_dyn(),
                array![1.0, 2.0, 3.0, 4.0].into_dyn(),
            ],
            |v| {
                let cond = v[0].tape().constant(array![[1.0], [0.0], [2.0]]);
                where_(&cond, &v[0], &v[1])
            },
        )
        .unwrap();
    }

    #[test]
    fn the_unselected_branch_stays_out() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![0.0, 4.0]);
        // ln(x) where x > 0, else 0: the unselected branch's -∞ stays out of the value.
        // (Its gradient is 0 · ∞ = NaN at x = 0, the usual caveat of select-based guards:
        // guard the branch's input too, e.g. ln(where(x > 0, x, 1)).)
        let pos = x.gt(&tape.constant(0.0));
        let y = where_(&pos, &x.ln(), &tape.constant(0.0));
        assert_eq!(y.array(), array![0.0, 4f64.ln()].into_dyn());
    }

    #[test]
    fn f32_forward() {
        let tape = Tape::<f32>::new();
        let y = where_(
            &tape.constant(array![1.0f32, 0.0]),
            &tape.var(array![1.0f32, 2.0]),
            &tape.var(3.0f32),
        );
        assert_eq!(y.array(), array![1.0f32, 3.0].into_dyn());
    }

    #[test]
    fn mismatched_shapes_are_reported() {
        let msg = panic_message(|| {
            let tape = Tape::<f64>::new();
            let c = tape.constant(ndarray::Array1::<f64>::ones(2));
            let _ = where_(
                &c,
                &tape.var(ndarray::Array1::<f64>::ones(3)),
                &tape.var(1.0),
            );
        });
        for part in ["where", "[2]", "[3]", file!()] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
    }
}
