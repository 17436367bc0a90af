//! Shared pieces of the broadcasting binary ops: the forward zip with its error message,
//! constant factors at the output's shape, and the rules of ops that are linear in their
//! inputs given a constant mask (maximum, minimum, where).

use retrograd_tape::arith::sum_to;
use retrograd_tape::{Cotangents, Float, Operand, RuleCtx, Tensor, Val};

/// `f` over two tensors with numpy broadcasting; an `Err` naming both shapes when they do
/// not broadcast (the tape adds the op's name and the caller's line).
pub(crate) fn zip_forward<T: Float>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    f: impl Fn(T, T) -> T,
) -> Result<Tensor<T>, String> {
    a.zip_map(b, f).ok_or_else(|| {
        format!(
            "shapes {:?} and {:?} do not broadcast",
            a.shape(),
            b.shape()
        )
    })
}

/// A constant of the output's shape computed elementwise from the values of inputs 0 and
/// 1 (masks and tie weights): not differentiated, by design.
pub(crate) fn factor<'t, T: Float>(cx: &RuleCtx<'t, T>, f: impl Fn(T, T) -> T) -> Val<'t, T> {
    let (a, b) = (cx.input(0).value(), cx.input(1).value());
    // The forward pass already checked that the shapes broadcast.
    let t = a
        .zip_map(&b, f)
        .expect("the inputs of a recorded op broadcast");
    cx.input(0).constant_like(t)
}

/// The VJP of `y = Σᵢ mᵢ ⊙ xᵢ` for constant masks `mᵢ` of the output's shape: `x̄ᵢ =
/// sum_to(ȳ ⊙ mᵢ, shape(xᵢ))`. Inputs without a part get `None`. The masks are built
/// lazily, only for inputs the sweep needs.
pub(crate) fn masked_vjp<'t, T: Float>(
    cx: &RuleCtx<'t, T>,
    g: &Val<'t, T>,
    parts: &[(usize, &dyn Fn() -> Val<'t, T>)],
) -> Cotangents<'t, T> {
    let mut out: Cotangents<'t, T> = cx.inputs().iter().map(|_| None).collect();
    for &(i, mask) in parts {
        if cx.needs(i) {
            out[i] = Some(sum_to(&(g * &mask()), &cx.input_shape(i)));
        }
    }
    out
}

/// The JVP of `y = Σᵢ mᵢ ⊙ xᵢ`: `ẏ = Σᵢ ẋᵢ ⊙ mᵢ` over the inputs with a tangent (each
/// product has the output's shape, since the masks do).
pub(crate) fn masked_jvp<'t, T: Float>(
    t: &[Option<Val<'t, T>>],
    parts: &[(usize, &dyn Fn() -> Val<'t, T>)],
) -> Option<Val<'t, T>> {
    let mut acc: Option<Val<'t, T>> = None;
    for &(i, mask) in parts {
        if let Some(ti) = &t[i] {
            let term = ti * &mask();
            acc = Some(match acc {
                None => term,
                Some(a) => a + term,
            });
        }
    }
    acc
}
