//! `stack`: joins values of one shape along a new axis.
//!
//! `y = stack(x₀, x₁, .., axis)` inserts an axis at `axis` (in `-(ndim+1) ..= ndim`) with
//! `y[.., i, ..] = xᵢ`. Linear in every input:
//! - VJP: `x̄ᵢ = reshape(slice(ȳ, axis, i .. i+1), shape(xᵢ))` (the entry, axis removed),
//! - JVP: `ẏ = stack(ẋ₀, ẋ₁, ..)`, zeros standing in for inputs without a tangent.

use smallvec::SmallVec;

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::{Slice, SliceSpec, reshape_exact, tangents_or_zeros};
use crate::reduce::normalize_axis;

/// Stacking along a new axis; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Stack {
    axis: isize,
    resolved: usize,
}

impl Stack {
    /// Stacks along a new axis at `axis` of the output (negative counts from the end).
    pub fn new(axis: isize) -> Self {
        Stack { axis, resolved: 0 }
    }
}

impl<T: Float> Rule<T> for Stack {
    fn name(&self) -> &'static str {
        "stack"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("axis", self.axis.to_string())]
    }
    fn forward(&mut self, xs: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let Some(first) = xs.first() else {
            return Err("nothing to stack: give at least one value".to_string());
        };
        let a = normalize_axis(self.axis, first.ndim() + 1)?;
        self.resolved = a;
        if let Some(x) = xs.iter().find(|x| x.shape() != first.shape()) {
            return Err(format!(
                "shapes {:?} and {:?} differ; stacked values must have one shape",
                first.shape(),
                x.shape()
            ));
        }
        let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
        match ndarray::stack(ndarray::Axis(a), &views) {
            Ok(out) => Ok(Tensor::from_array(out)),
            Err(e) => Err(e.to_string()),
        }
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        (0..cx.inputs().len())
            .map(|i| {
                cx.needs(i).then(|| {
                    let spec = SliceSpec::new(self.resolved as isize, i..i + 1);
                    let entry = Val::apply(Slice::new(&[spec]), &[g]);
                    reshape_exact(&entry, &cx.input_shape(i))
                })
            })
            .collect()
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let filled = tangents_or_zeros(cx, t)?;
        let refs: SmallVec<[&Val<'t, T>; 4]> = filled.iter().collect();
        Some(Val::apply(Stack::new(self.resolved as isize), &refs))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;

    use crate::shape::stack;
    use crate::testing::{assert_panics_with, check_many};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let a = tape.var(array![1.0, 2.0]);
        let b = tape.var(array![3.0, 4.0]);
        assert_eq!(
            stack(&[&a, &b], 0).array(),
            array![[1.0, 2.0], [3.0, 4.0]].into_dyn()
        );
        assert_eq!(
            stack(&[&a, &b], -1).array(),
            array![[1.0, 3.0], [2.0, 4.0]].into_dyn()
        );
        let s = tape.var(5.0);
        assert_eq!(stack(&[&s, &s], 0).array(), array![5.0, 5.0].into_dyn());
        let y = stack(&[&a, &b], 1);
        let g = tape
            .vjp(y, array![[1.0, 2.0], [3.0, 4.0]], &[a, b])
            .unwrap();
        assert_eq!(g[0], array![1.0, 3.0].into_dyn());
        assert_eq!(g[1], array![2.0, 4.0].into_dyn());
    }

    #[test]
    fn mismatched_shapes_panic() {
        assert_panics_with(
            |tape| {
                let a = tape.var(ArrayD::zeros(vec![2, 3]));
                let b = tape.var(ArrayD::zeros(vec![3, 2]));
                stack(&[&a, &b], 0);
            },
            &["stack", "[2, 3]", "[3, 2]", file!()],
        );
        assert_panics_with(
            |tape| {
                let a = tape.var(ArrayD::zeros(vec![2, 3]));
                stack(&[&a, &a], 3);
            },
            &["stack", "[2, 3]", "axis 3", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients(
            x in array_any(2, 3, -2.0, 2.0),
            count in 1..4usize,
            pick in any::<prop::sample::Index>(),
        ) {
            let xs: Vec<_> = (0..count).map(|k| x.mapv(|v| v + k as f64 * 0.3)).collect();
            let n = x.ndim() + 1;
            let axis = pick.index(2 * n) as isize - n as isize;
            check_many(&xs, |v| {
                let refs: Vec<_> = v.iter().collect();
                stack(&refs, axis)
            })?;
            check_many(&xs, |v| {
                let refs: Vec<_> = v.iter().collect();
                let y = stack(&refs, axis);
                y * y
            })?;
        }
    }
}
