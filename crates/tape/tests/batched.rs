//! Batched sweeps as a user with their own rules meets them: a rule that implements only
//! `vjp`/`jvp` works batched through the default loops, and the gradient-checking kit
//! catches a batched rule that disagrees with the one-tangent rule.

use ndarray::array;
use retrograd_tape::check::{CheckOptions, check_gradients};
use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Tape, Tensor, Val, Var};

/// `x³`, with only the one-tangent rules.
struct Cube;

impl<T: Float> Rule<T> for Cube {
    fn name(&self) -> &'static str {
        "cube"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Ok(x[0].map(|v| v * v * v))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let x = cx.input(0);
        Cotangents::one(g * &(x * x) * T::of(3.0))
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let x = cx.input(0);
        t[0].as_ref().map(|t| t * &(x * x) * T::of(3.0))
    }
}

/// `x³` whose batched JVP forgets the factor 3.
struct WrongBatch;

impl<T: Float> Rule<T> for WrongBatch {
    fn name(&self) -> &'static str {
        "wrong_batch"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Cube.forward(x)
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cube.vjp(cx, g)
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        Cube.jvp(cx, t)
    }
    fn jvp_batch(
        &self,
        cx: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        let x = cx.input(0).value();
        let slope = x.map(|v| v * v);
        t[0].as_ref().and_then(|t| t.zip_map(&slope, |a, b| a * b))
    }
}

#[test]
fn a_rule_without_batched_methods_works_batched() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let y = Var::apply(Cube, &[&x]) * 2.0;
    // Two tangents: e0 and e1, as rows; J = diag(6x²).
    let eye = Tensor::from_vec(&[2, 2], vec![1.0, 0.0, 0.0, 1.0]);
    let cols = tape.jvp_batch(&[y], &[x], vec![eye.clone()]).unwrap();
    assert_eq!(cols[0], array![[6.0, 0.0], [0.0, 24.0]].into_dyn());
    let rows = tape.vjp_batch(y, eye, &[x]).unwrap();
    assert_eq!(rows[0], array![[6.0, 0.0], [0.0, 24.0]].into_dyn());
    // The kit agrees, batched comparisons included.
    check_gradients(
        |x| Var::apply(Cube, &[&x[0]]),
        &[array![0.5, -1.5, 2.0].into_dyn()],
        &CheckOptions::default(),
    )
    .unwrap();
}

#[test]
fn the_kit_catches_a_batched_rule_that_disagrees() {
    let err = check_gradients(
        |x| Var::apply(WrongBatch, &[&x[0]]),
        &[array![0.5, -1.5].into_dyn()],
        &CheckOptions::default(),
    )
    .unwrap_err();
    let m = err.mismatch().expect("a mismatch, not a failed sweep");
    assert_eq!(m.check, "batched forward sweep vs one tangent at a time");
}

#[test]
fn batch_shapes_are_checked() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let y = x * x;
    // [2] is not [k] ++ [2].
    let err = tape.jvp_batch(&[y], &[x], vec![Tensor::from_vec(&[2], vec![1.0, 0.0])]);
    assert!(
        matches!(err, Err(retrograd_tape::Error::ShapeMismatch { .. })),
        "{err:?}"
    );
    let err = tape.vjp_batch(y, Tensor::from_vec(&[3, 3], vec![0.0; 9]), &[x]);
    assert!(
        matches!(err, Err(retrograd_tape::Error::ShapeMismatch { .. })),
        "{err:?}"
    );
    // A batch of zero tangents is a batch: an empty block.
    let empty = tape
        .jvp_batch(&[y], &[x], vec![Tensor::from_vec(&[0, 2], vec![])])
        .unwrap();
    assert_eq!(empty[0].shape(), &[0, 2]);
}

/// `x³` declaring that its rules broadcast over a batch: one call serves the batch.
struct CubeBroadcast;

impl<T: Float> Rule<T> for CubeBroadcast {
    fn name(&self) -> &'static str {
        "cube_broadcast"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        Cube.forward(x)
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cube.vjp(cx, g)
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        Cube.jvp(cx, t)
    }
    fn batch_broadcasts(&self) -> bool {
        true
    }
}

#[test]
fn an_elementwise_rule_serves_the_batch_in_one_call() {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1.0, 2.0]);
    let y = Var::apply(CubeBroadcast, &[&x]);
    let eye = Tensor::from_vec(&[2, 2], vec![1.0, 0.0, 0.0, 1.0]);
    let cols = tape.jvp_batch(&[y], &[x], vec![eye.clone()]).unwrap();
    assert_eq!(cols[0], array![[3.0, 0.0], [0.0, 12.0]].into_dyn());
    let rows = tape.vjp_batch(y, eye, &[x]).unwrap();
    assert_eq!(rows[0], array![[3.0, 0.0], [0.0, 12.0]].into_dyn());
    check_gradients(
        |x| Var::apply(CubeBroadcast, &[&x[0]]),
        &[array![[0.5, -1.5], [2.0, 0.3]].into_dyn()],
        &CheckOptions::default(),
    )
    .unwrap();
}
