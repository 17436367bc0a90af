//! Batched tangents and cotangents: what a rule needs to push `k` tangents (or pull `k`
//! cotangents) through itself at once.
//!
//! A batch of `k` tangents of a value of shape `s` is one tensor of shape `[k] ++ s`: the
//! batch is a new leading axis. The batched sweeps ([`Tape::jvp_batch`](crate::Tape::jvp_batch),
//! [`Tape::vjp_batch`](crate::Tape::vjp_batch)) hand each rule its inputs' batched tangents
//! through [`Rule::jvp_batch`] and its output's batched cotangent through
//! [`Rule::vjp_batch`]. Their default implementations, [`jvp_each`] and [`vjp_each`], call
//! the rule's one-tangent [`jvp`](Rule::jvp)/[`vjp`](Rule::vjp) once per batch element, so
//! every rule, a user's included, works batched without a line of new code. A rule
//! overrides them when one call on the whole batch does the work of `k` (a matmul becomes
//! one matmul with `k` times the columns instead of `k` matrix-vector products).
//!
//! The helpers below keep the batch axis where it belongs while an override broadcasts
//! and reduces: [`align`] lines a batch up with a higher-rank output, [`stretch`] and
//! [`sum_to`] are broadcasting and its adjoint with the batch axis kept.
//!
//! Batched sweeps are plain (they record nothing), so every value a batched rule sees is
//! a [`Val::Const`].
//!
//! ```
//! use retrograd_tape::Tape;
//! use retrograd_tape::Tensor;
//! let tape = Tape::<f64>::new();
//! let x = tape.var([1.0, 2.0]);
//! let y = x * x; // J = diag(2x)
//! // Two tangents at once, as the rows of one [2, 2] tensor.
//! let t = Tensor::from_vec(&[2, 2], vec![1.0, 0.0, 0.0, 1.0]);
//! let jt = tape.jvp_batch(&[y], &[x], vec![t]).unwrap();
//! assert_eq!(jt[0], ndarray::array![[2.0, 0.0], [0.0, 4.0]].into_dyn());
//! ```

use ndarray::{ArrayD, Axis, IxDyn};

use crate::Float;
use crate::rule::{Rule, RuleCtx};
use crate::tensor::{Shape, Tensor, shape_eq};
use crate::var::Val;

/// `[k] ++ shape`: the shape of a batch of `k` values of `shape`.
pub fn batched_shape(k: usize, shape: &[usize]) -> Shape {
    let mut s = Shape::with_capacity(shape.len() + 1);
    s.push(k);
    s.extend_from_slice(shape);
    s
}

/// `t` (any layout) as an array of `shape`, which must have as many elements: without a
/// copy when `t` is unshared and in standard layout.
///
/// # Panics
/// When the element counts differ.
pub fn reshape<T: Float>(t: Tensor<T>, shape: &[usize]) -> Tensor<T> {
    assert_eq!(
        t.len(),
        shape.iter().product::<usize>(),
        "batch::reshape: {:?} to {shape:?}",
        t.shape()
    );
    if shape_eq(t.shape(), shape) {
        return t;
    }
    let a = t.into_array();
    let a = if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    };
    let (data, _) = a.into_raw_vec_and_offset();
    match ArrayD::from_shape_vec(IxDyn(shape), data) {
        Ok(a) => Tensor::from_array(a),
        Err(_) => unreachable!("the element counts agree"),
    }
}

/// Batch element `b` of a batched tensor (shape `[k] ++ s`), as a tensor of shape `s`.
pub fn element<T: Float>(t: &Tensor<T>, b: usize) -> Tensor<T> {
    Tensor::from_array(t.view().index_axis(Axis(0), b).to_owned())
}

/// Stacks `k` tensors of one shape `s` into a batch of shape `[k] ++ s`.
///
/// # Panics
/// When the parts' shapes differ from `s`.
pub fn stack<T: Float>(parts: &[Tensor<T>], s: &[usize]) -> Tensor<T> {
    let mut data = Vec::with_capacity(parts.len() * s.iter().product::<usize>());
    for p in parts {
        assert!(
            shape_eq(p.shape(), s),
            "batch::stack: a part of shape {:?} in a batch of {s:?}",
            p.shape()
        );
        data.extend(p.view().iter().copied());
    }
    Tensor::from_vec(&batched_shape(parts.len(), s), data)
}

/// Lines a batch (`[k] ++ s`) up with values of rank `rank ≥ s.len()` by inserting unit
/// axes after the batch axis: `[k, 1, …, 1] ++ s`. Broadcasting it against an unbatched
/// value of rank `rank` then keeps the batch axis in front.
pub fn align<T: Float>(t: Tensor<T>, rank: usize) -> Tensor<T> {
    let s = t.shape();
    let inner = s.len().saturating_sub(1);
    if inner >= rank {
        return t;
    }
    let mut shape = Shape::with_capacity(rank + 1);
    shape.push(s[0]);
    shape.extend(std::iter::repeat_n(1, rank - inner));
    shape.extend_from_slice(&s[1..]);
    reshape(t, &shape)
}

/// Broadcasts a batch (`[k] ++ s`) to `[k] ++ shape` (materialised): numpy broadcasting of
/// each batch element to `shape`.
///
/// # Panics
/// When `s` does not broadcast to `shape`.
pub fn stretch<T: Float>(t: Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let k = t.shape()[0];
    let target = batched_shape(k, shape);
    if shape_eq(t.shape(), &target) {
        return t;
    }
    let t = align(t, shape.len());
    match t.broadcast_to(&target) {
        Some(t) => t,
        None => panic!(
            "batch::stretch: a batch of shape {:?} does not broadcast to {target:?}",
            t.shape()
        ),
    }
}

/// Sums a batch (`[k] ++ s`) down to `[k] ++ shape`, where `shape` broadcasts to `s`: the
/// adjoint of [`stretch`], each batch element summed as [`Tensor::sum_to`] would.
///
/// # Panics
/// When `shape` does not broadcast to `s`.
pub fn sum_to<T: Float>(t: Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let s = t.shape();
    let k = s[0];
    let inner = s.len() - 1;
    if shape_eq(&s[1..], shape) {
        return t;
    }
    assert!(
        inner >= shape.len(),
        "batch::sum_to: {shape:?} does not broadcast to the batch element shape {:?}",
        &s[1..]
    );
    // Sum to `[k, 1, …, 1] ++ shape` (the axes broadcasting added become unit axes after
    // the batch axis), then drop those unit axes.
    let mut keep = Shape::with_capacity(inner + 1);
    keep.push(k);
    keep.extend(std::iter::repeat_n(1, inner - shape.len()));
    keep.extend_from_slice(shape);
    reshape(t.sum_to(&keep), &batched_shape(k, shape))
}

/// Runs an elementwise-style computation on constants: `f` gets the batch as a
/// [`Val::Const`] and its result's value is returned. Rules whose one-tangent
/// [`jvp`](Rule::jvp) only broadcasts the tangent against values of the output's shape use
/// it to serve the batch with the same code.
pub fn on_const<'t, T: Float>(
    t: &Tensor<T>,
    f: impl FnOnce(&Val<'t, T>) -> Val<'t, T>,
) -> Tensor<T> {
    f(&Val::Const(t.clone())).value()
}

/// [`Rule::jvp_batch`] for an elementwise rule (every input of the output's shape) whose
/// [`jvp`](Rule::jvp) only multiplies or adds the tangents with values of that shape:
/// broadcasting then carries the batch axis through the rule's own code, in one call.
pub fn jvp_elementwise<T: Float, R: Rule<T> + ?Sized>(
    rule: &R,
    cx: &RuleCtx<'_, T>,
    tangents: &[Option<Tensor<T>>],
) -> Option<Tensor<T>> {
    let t: Vec<Option<Val<'_, T>>> = tangents.iter().map(|t| t.clone().map(Val::Const)).collect();
    rule.jvp(cx, &t).map(|v| v.value())
}

/// [`Rule::vjp_batch`] for an elementwise rule whose [`vjp`](Rule::vjp) only multiplies the
/// cotangent with values of the output's shape (see [`jvp_elementwise`]).
pub fn vjp_elementwise<T: Float, R: Rule<T> + ?Sized>(
    rule: &R,
    cx: &RuleCtx<'_, T>,
    cotangent: &Tensor<T>,
) -> Vec<Option<Tensor<T>>> {
    rule.vjp(cx, &Val::Const(cotangent.clone()))
        .into_iter()
        .map(|c| c.map(|c| c.value()))
        .collect()
}

/// The sum of batches of tangents, each scaled by its coefficient and stretched to
/// `[k] ++ shape` (the batched JVP of `Σ cᵢ xᵢ` under broadcasting); `None` when every
/// tangent is zero.
pub fn linear_combination<T: Float>(
    tangents: &[Option<Tensor<T>>],
    coefficients: &[T],
    shape: &[usize],
) -> Option<Tensor<T>> {
    let mut acc: Option<Tensor<T>> = None;
    for (t, &c) in tangents.iter().zip(coefficients) {
        let Some(t) = t else { continue };
        let t = if c == T::one() {
            t.clone()
        } else {
            t.map(|x| x * c)
        };
        let t = stretch(t, shape);
        match &mut acc {
            Some(a) => a.add_assign(&t),
            None => acc = Some(t),
        }
    }
    acc
}

/// The default [`Rule::jvp_batch`]: one [`jvp`](Rule::jvp) per batch element, stacked.
pub fn jvp_each<'t, T: Float, R: Rule<T> + ?Sized>(
    rule: &R,
    cx: &RuleCtx<'t, T>,
    tangents: &[Option<Tensor<T>>],
    k: usize,
) -> Option<Tensor<T>> {
    let out_shape = cx.output().shape();
    let mut parts = Vec::with_capacity(k);
    let mut any = false;
    for b in 0..k {
        let t: Vec<Option<Val<'t, T>>> = tangents
            .iter()
            .map(|t| t.as_ref().map(|t| Val::Const(element(t, b))))
            .collect();
        match rule.jvp(cx, &t) {
            Some(v) => {
                any = true;
                parts.push(v.value());
            }
            None => parts.push(Tensor::zeros(&out_shape)),
        }
    }
    any.then(|| stack(&parts, &out_shape))
}

/// The default [`Rule::vjp_batch`]: one [`vjp`](Rule::vjp) per batch element, stacked
/// per input.
pub fn vjp_each<T: Float, R: Rule<T> + ?Sized>(
    rule: &R,
    cx: &RuleCtx<'_, T>,
    cotangent: &Tensor<T>,
    k: usize,
) -> Vec<Option<Tensor<T>>> {
    let n = cx.inputs().len();
    let mut parts: Vec<Option<Vec<Tensor<T>>>> = vec![None; n];
    for b in 0..k {
        let cots = rule.vjp(cx, &Val::Const(element(cotangent, b)));
        for (i, c) in cots.into_iter().enumerate().take(n) {
            if let Some(c) = c {
                let shape = cx.input_shape(i);
                let list = parts[i].get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(k);
                    v.resize_with(b, || Tensor::zeros(&shape));
                    v
                });
                list.push(c.value());
            }
        }
        for (i, p) in parts.iter_mut().enumerate() {
            if let Some(list) = p
                && list.len() == b
            {
                list.push(Tensor::zeros(&cx.input_shape(i)));
            }
        }
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.map(|list| stack(&list, &cx.input_shape(i))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretch_and_sum_to_keep_the_batch_axis() {
        // Two batch elements of shape [3], stretched to [2, 3] and summed back.
        let t = Tensor::from_vec(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let s = stretch(t.clone(), &[2, 3]);
        assert_eq!(s.shape(), &[2, 2, 3]);
        assert_eq!(s.view()[[1, 0, 2]], 6.0);
        let back = sum_to(s, &[3]);
        assert_eq!(
            back,
            Tensor::from_vec(&[2, 3], vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
        );
        // A batch of scalars stretched to vectors and summed back.
        let k = Tensor::from_vec(&[2], vec![1.0, 2.0]);
        let v = stretch(k, &[3]);
        assert_eq!(v.shape(), &[2, 3]);
        assert_eq!(sum_to(v, &[]), Tensor::from_vec(&[2], vec![3.0, 6.0]));
        // Unit axes are summed too.
        let m = Tensor::from_vec(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(sum_to(m, &[1, 2]).shape(), &[1, 1, 2]);
    }

    #[test]
    fn align_inserts_unit_axes_after_the_batch() {
        let t = Tensor::from_vec(&[4, 3], vec![0.0; 12]);
        assert_eq!(align(t, 3).shape(), &[4, 1, 1, 3]);
    }

    #[test]
    fn element_and_stack_are_inverse() {
        let t = Tensor::from_vec(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let parts: Vec<_> = (0..3).map(|b| element(&t, b)).collect();
        assert_eq!(stack(&parts, &[2]), t);
    }
}
