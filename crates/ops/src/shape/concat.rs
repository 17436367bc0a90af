//! `concat`: joins values along an existing axis.
//!
//! All inputs have the same rank (at least 1) and the same extents except along `axis`.
//! With input `i` occupying `offᵢ .. offᵢ + nᵢ` of the output along the axis (linear in
//! every input):
//! - VJP: `x̄ᵢ = slice(ȳ, axis, offᵢ .. offᵢ + nᵢ)`,
//! - JVP: `ẏ = concat(ẋ₀, ẋ₁, ..)`, zeros standing in for inputs without a tangent.

use smallvec::SmallVec;

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::{Slice, SliceSpec, tangents_or_zeros};
use crate::reduce::normalize_axis;

/// Concatenation along an axis; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Concat {
    axis: isize,
    resolved: usize,
}

impl Concat {
    /// Concatenates along `axis` (negative counts from the end).
    pub fn new(axis: isize) -> Self {
        Concat { axis, resolved: 0 }
    }
}

impl<T: Float> Rule<T> for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("axis", self.axis.to_string())]
    }
    fn forward(&mut self, xs: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let Some(first) = xs.first() else {
            return Err("nothing to concatenate: give at least one value".to_string());
        };
        if first.ndim() == 0 {
            return Err("cannot concatenate 0-d values (they have no axis); use stack".into());
        }
        let a = normalize_axis(self.axis, first.ndim())?;
        self.resolved = a;
        for x in xs {
            let fits = x.ndim() == first.ndim()
                && x.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (d, e))| i == a || d == e);
            if !fits {
                return Err(format!(
                    "shapes {:?} and {:?} differ off axis {}",
                    first.shape(),
                    x.shape(),
                    self.axis
                ));
            }
        }
        let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
        match ndarray::concatenate(ndarray::Axis(a), &views) {
            Ok(out) => Ok(Tensor::from_array(out)),
            Err(e) => Err(e.to_string()),
        }
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let mut offset = 0;
        let mut out = Cotangents::new();
        for i in 0..cx.inputs().len() {
            let n = cx.input_shape(i)[self.resolved];
            out.push(cx.needs(i).then(|| {
                let spec = SliceSpec::new(self.resolved as isize, offset..offset + n);
                Val::apply(Slice::new(&[spec]), &[g])
            }));
            offset += n;
        }
        out
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let filled = tangents_or_zeros(cx, t)?;
        let refs: SmallVec<[&Val<'t, T>; 4]> = filled.iter().collect();
        Some(Val::apply(Concat::new(self.resolved as isize), &refs))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;

    use crate::shape::concat;
    use crate::testing::{assert_panics_with, check_many};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let a = tape.var(array![[1.0, 2.0], [3.0, 4.0]]);
        let b = tape.var(array![[5.0], [6.0]]);
        assert_eq!(
            concat(&[&a, &b], 1).array(),
            array![[1.0, 2.0, 5.0], [3.0, 4.0, 6.0]].into_dyn()
        );
        let c = tape.var(array![[7.0, 8.0]]);
        assert_eq!(concat(&[&a, &c], -2).shape().as_slice(), &[3, 2]);
        // The gradient of each input is its part of the cotangent.
        let y = concat(&[&a, &b], 1);
        let w = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let g = tape.vjp(y, w, &[a, b]).unwrap();
        assert_eq!(g[0], array![[1.0, 2.0], [4.0, 5.0]].into_dyn());
        assert_eq!(g[1], array![[3.0], [6.0]].into_dyn());
        // Forward mode with a tangent for one input only (a fresh tape: the forward sweep
        // would walk the branch the backward sweep above freed).
        let tape = Tape::<f64>::new();
        let (a, b) = (tape.var(a.array()), tape.var(b.array()));
        let y = concat(&[&a, &b], 1);
        let t = tape
            .jvp(&[y], &[b], vec![array![[1.0], [1.0]].into()])
            .unwrap();
        assert_eq!(t[0], array![[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]].into_dyn());
    }

    #[test]
    fn mismatched_shapes_panic() {
        assert_panics_with(
            |tape| {
                let a = tape.var(ArrayD::zeros(vec![2, 3]));
                let b = tape.var(ArrayD::zeros(vec![3, 2]));
                concat(&[&a, &b], 0);
            },
            &["concat", "[2, 3]", "[3, 2]", file!()],
        );
        assert_panics_with(
            |tape| {
                let a = tape.var(ArrayD::zeros(vec![2, 3]));
                let b = tape.var(ArrayD::zeros(vec![2, 3]));
                concat(&[&a, &b], 2);
            },
            &["concat", "[2, 3]", "axis 2", file!()],
        );
        assert_panics_with(
            |tape| {
                let a = tape.var(1.0);
                concat(&[&a, &a], 0);
            },
            &["concat", "0-d", file!()],
        );
    }

    /// Two or three arrays that concatenate along a random axis.
    fn parts() -> impl Strategy<Value = (Vec<ArrayD<f64>>, isize)> {
        (
            array_any(3, 3, -2.0, 2.0).prop_filter("at least one axis", |x| x.ndim() > 0),
            1..3usize,
        )
            .prop_flat_map(|(x, extra)| {
                let n = x.ndim();
                (
                    Just(x),
                    0..n,
                    prop::collection::vec(1..4usize, extra),
                    any::<bool>(),
                )
                    .prop_flat_map(move |(x, a, extents, neg)| {
                        let others: Vec<_> = extents
                            .iter()
                            .map(|&k| {
                                let mut s = x.shape().to_vec();
                                s[a] = k;
                                let len = s.iter().product::<usize>();
                                prop::collection::vec(-2.0..2.0f64, len).prop_map(move |v| {
                                    ArrayD::from_shape_vec(IxDyn(&s), v).expect("len elements")
                                })
                            })
                            .collect::<Vec<_>>();
                        let axis = if neg {
                            a as isize - n as isize
                        } else {
                            a as isize
                        };
                        (Just(x), others, Just(axis))
                    })
            })
            .prop_map(|(x, mut others, axis)| {
                others.insert(0, x);
                (others, axis)
            })
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients((xs, axis) in parts()) {
            check_many(&xs, |v| {
                let refs: Vec<_> = v.iter().collect();
                concat(&refs, axis)
            })?;
            check_many(&xs, |v| {
                let refs: Vec<_> = v.iter().collect();
                let y = concat(&refs, axis);
                y * y
            })?;
        }
    }
}
