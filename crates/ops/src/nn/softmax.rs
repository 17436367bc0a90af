//! `softmax`: `y = exp(x − max) / Σ exp(x − max)` along one axis, fused and stable.
//!
//! Subtracting the lane's maximum before exponentiating keeps every `exp` in `(0, 1]`, so
//! logits of ±1000 give exact probabilities rather than `inf / inf`. A lane whose
//! maximum is not finite (all `−inf`, or a `+inf` entry) gives NaN, as in PyTorch.
//!
//! The Jacobian `diag(y) − y yᵀ` (per lane) is symmetric, so both rules have one form:
//! - VJP: `x̄ = y ⊙ (ȳ − Σ_axis(ȳ ⊙ y))`;
//! - JVP: `ẏ = y ⊙ (ẋ − Σ_axis(ẋ ⊙ y))`.
//!
//! Both are written with `mul`, `sub` and a keep-dims sum on the output `y`, so second
//! derivatives flow through this op's own node.

use ndarray::{ArrayBase, Axis, Data, Dimension};

use retrograd_tape::summation::{sum_iter, sum_slice};
use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use crate::reduce::{ReduceOps, normalize_axis};

/// Softmax along `axis`; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct Softmax {
    axis: isize,
    /// The axis resolved against the input in `forward`.
    resolved: usize,
}

impl Softmax {
    /// Softmax along `axis` (negative counts from the end).
    pub fn new(axis: isize) -> Self {
        Softmax { axis, resolved: 0 }
    }
}

/// `softmax(x)` along the resolved axis `axis`.
#[track_caller]
pub(crate) fn softmax<'t, T: Float, X: Operand<'t, T>>(x: &X, axis: usize) -> X {
    X::apply(Softmax::new(axis as isize), &[x])
}

/// The lane maximum used as the stabilising shift (0 when it is not finite, so that an
/// infinite entry is not turned into `∞ − ∞ = NaN` by the shift itself).
#[inline]
pub(crate) fn shift<T: Float, S: Data<Elem = T>, D: Dimension>(lane: &ArrayBase<S, D>) -> T {
    let m = lane.fold(T::neg_infinity(), |m, &v| if v > m { v } else { m });
    if m.is_finite() { m } else { T::zero() }
}

/// `ln Σ exp(lane)`, shifted by the lane's maximum so that no exponential overflows: the
/// forward computation shared by `log_softmax` and `cross_entropy`.
#[inline]
pub(crate) fn lane_logsumexp<T: Float, S: Data<Elem = T>, D: Dimension>(
    lane: &ArrayBase<S, D>,
) -> T {
    let m = shift(lane);
    m + sum_iter(lane.iter().map(|&v| (v - m).exp())).ln()
}

/// The sum of one lane, accurately (see [`summation`](retrograd_tape::summation)).
#[inline]
fn sum_lane<T: Float>(lane: ndarray::ArrayView1<'_, T>) -> T {
    match lane.as_slice() {
        Some(xs) => sum_slice(xs),
        None => sum_iter(lane.iter().copied()),
    }
}

impl<T: Float> Rule<T> for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("axis", self.axis.to_string())]
    }
    /// Three passes per lane: the maximum, the shifted exponentials, the normalisation.
    fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
        3 * crate::elements(input_shapes[0])
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        self.resolved = normalize_axis(self.axis, x[0].ndim())?;
        let mut y = x[0].to_array();
        if y.is_empty() {
            // No lanes worth visiting (`[2^40, 0]` has 2^40 empty ones along axis 1).
            return Ok(Tensor::from_array(y));
        }
        for mut lane in y.lanes_mut(Axis(self.resolved)) {
            let m = shift(&lane);
            lane.mapv_inplace(|v| (v - m).exp());
            let s = sum_lane(lane.view());
            lane.mapv_inplace(|v| v / s);
        }
        Ok(Tensor::from_array(y))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(self.product(cx.output(), g))])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| self.product(cx.output(), t))
    }
}

impl Softmax {
    /// `y ⊙ (v − Σ_axis(v ⊙ y))`: the (symmetric) Jacobian of softmax applied to `v`.
    fn product<'t, T: Float>(&self, y: &Val<'t, T>, v: &Val<'t, T>) -> Val<'t, T> {
        if v.shape().contains(&0) {
            // Empty, so `v` is its own product; the lane sums could be 2^40 zeros.
            return v.clone();
        }
        y * &(v - &(v * y).sum(self.resolved as isize, true))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::testing::{assert_panics_with, check_many};
    use ndarray::{ArrayD, Axis, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;
    use retrograd_tape::strategies::{array, config, shape};

    use crate::nn::NnOps;

    /// An array of rank ≥ 1 and an axis of it, possibly negative.
    pub(crate) fn array_and_axis() -> impl Strategy<Value = (ArrayD<f64>, isize)> {
        shape(3, 4)
            .prop_filter("rank ≥ 1", |s| !s.is_empty())
            .prop_flat_map(|s| {
                let r = s.len() as isize;
                (array(s, -3.0, 3.0), -r..r)
            })
    }

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn softmax_sums_to_one_and_checks((x, axis) in array_and_axis()) {
            let tape = Tape::<f64>::new();
            let y = tape.var(x.clone()).softmax(axis).array();
            let ax = if axis < 0 { axis + x.ndim() as isize } else { axis } as usize;
            for s in y.sum_axis(Axis(ax)).iter() {
                prop_assert!((s - 1.0).abs() < 1e-12);
            }
            check_many(&[x], |v| v[0].softmax(axis))?;
        }
    }

    /// Softmax-like ops and the losses cost a few operations per input element, though a
    /// loss's output is one scalar.
    #[test]
    fn madds_count_a_few_per_element() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ndarray::ArrayD::zeros(vec![2, 5]));
        assert_eq!(tape.node_info(x.softmax(-1)).madds, 30);
        assert_eq!(tape.node_info(x.log_softmax(-1)).madds, 30);
        assert_eq!(tape.node_info(x.cross_entropy(&[0, 4])).madds, 30);
        assert_eq!(tape.node_info(x.mse(&x)).madds, 20);
        assert_eq!(tape.node_info(x.bce_with_logits(&x)).madds, 30);
    }

    #[test]
    fn softmax_is_finite_for_huge_logits() {
        let tape = Tape::<f32>::new();
        let x = tape.var(array![
            [1000.0f32, -1000.0, 0.0],
            [-1000.0, -1000.0, -1000.0]
        ]);
        let y = x.softmax(1);
        let third = 1.0f32 / 3.0;
        assert_eq!(
            y.array(),
            array![[1.0f32, 0.0, 0.0], [third, third, third]].into_dyn()
        );
        let g = tape
            .vjp(y, array![[1.0f32, 2.0, 3.0], [1.0, 0.0, 0.0]], &[x])
            .unwrap();
        assert!(g[0].iter().all(|v| v.is_finite()), "{}", g[0]);
    }

    #[test]
    fn bad_axis_panics_naming_the_op() {
        assert_panics_with(
            |tape| {
                tape.var(array![1.0, 2.0]).softmax(1);
            },
            &["softmax", "axis 1", "[2]", file!()],
        );
    }
}
