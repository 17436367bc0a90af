//! `reshape`: the same elements, in row-major order, in a new shape.
//!
//! One extent of the requested shape may be `-1`, inferred so that the element count is
//! kept (as in numpy). Linear and a bijection:
//! - VJP: `x̄ = reshape(ȳ, shape(x))`,
//! - JVP: `ẏ = reshape(ẋ, shape(y))`.

use ndarray::IxDyn;
use smallvec::SmallVec;

use retrograd_tape::batch;
use retrograd_tape::{Cotangents, Float, Rule, RuleCtx, Shape, Tensor, Val};

use super::reshape_exact;

/// `x`'s elements, in logical row-major order, in `shape` (of the same element count): the
/// forward computation of every reshape-like op (`reshape`, `squeeze`, `unsqueeze`, and the
/// promotions inside `matmul`'s rules).
pub(crate) fn reshaped<T: Float>(x: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>, String> {
    match x.view().to_shape(IxDyn(shape)) {
        Ok(a) => Ok(Tensor::from_array(a.into_owned())),
        Err(e) => Err(format!("cannot reshape {:?} to {shape:?}: {e}", x.shape())),
    }
}

/// A reshape; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Reshape {
    /// The requested extents, at most one `-1`.
    spec: SmallVec<[isize; 4]>,
    /// The resolved output shape, set by `forward`.
    target: Shape,
}

impl Reshape {
    /// A reshape to `shape`; one extent may be `-1`.
    pub fn new(shape: &[isize]) -> Self {
        Reshape {
            spec: shape.iter().copied().collect(),
            target: Shape::new(),
        }
    }

    /// A reshape to an exact shape (no `-1`).
    pub fn exact(shape: &[usize]) -> Self {
        Reshape {
            spec: shape.iter().map(|&d| d as isize).collect(),
            target: Shape::new(),
        }
    }

    /// Resolves the spec against an element count.
    fn resolve(&self, len: usize, from: &[usize]) -> Result<Shape, String> {
        let mut inferred = None;
        let mut known = 1usize;
        for (i, &d) in self.spec.iter().enumerate() {
            match d {
                -1 if inferred.is_none() => inferred = Some(i),
                -1 => {
                    return Err(format!(
                        "shape {:?} has more than one -1",
                        self.spec.as_slice()
                    ));
                }
                d if d < 0 => {
                    return Err(format!(
                        "shape {:?} has a negative extent {d} (only -1, inferred, is allowed)",
                        self.spec.as_slice()
                    ));
                }
                d => {
                    known = known.checked_mul(d as usize).ok_or_else(|| {
                        format!(
                            "shape {:?} has more elements than fit in usize",
                            self.spec.as_slice()
                        )
                    })?;
                }
            }
        }
        let mut shape: Shape = self.spec.iter().map(|&d| d.max(0) as usize).collect();
        if let Some(i) = inferred {
            if known == 0 || !len.is_multiple_of(known) {
                return Err(format!(
                    "cannot reshape {from:?} ({len} elements) to {:?}: no extent for -1 fits",
                    self.spec.as_slice()
                ));
            }
            shape[i] = len / known;
        } else if known != len {
            return Err(format!(
                "cannot reshape {from:?} ({len} elements) to {:?} ({known} elements)",
                self.spec.as_slice()
            ));
        }
        Ok(shape)
    }
}

impl<T: Float> Rule<T> for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("shape", format!("{:?}", self.spec.as_slice()))]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        self.target = self.resolve(x.len(), x.shape())?;
        if self.target.as_slice() == x.shape() {
            return Ok(x.clone());
        }
        reshaped(x, &self.target)
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(reshape_exact(g, &cx.input_shape(0)))])
    }
    fn jvp_batch(
        &self,
        _: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        k: usize,
    ) -> Option<Tensor<T>> {
        let shape = batch::batched_shape(k, &self.target);
        t[0].as_ref().map(|t| batch::reshape(t.clone(), &shape))
    }
    fn vjp_batch(&self, cx: &RuleCtx<'_, T>, g: &Tensor<T>, k: usize) -> Vec<Option<Tensor<T>>> {
        let shape = batch::batched_shape(k, &cx.input_shape(0));
        vec![Some(batch::reshape(g.clone(), &shape))]
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| reshape_exact(t, &self.target))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;

    use crate::shape::ShapeOps;
    use crate::testing::{assert_panics_with, check, check_squared};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        assert_eq!(
            x.reshape(&[3, 2]).array(),
            array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]].into_dyn()
        );
        assert_eq!(
            x.reshape(&[-1]).array(),
            array![1.0, 2.0, 3.0, 4.0, 5.0, 6.0].into_dyn()
        );
        assert_eq!(x.reshape(&[1, -1, 2]).shape().as_slice(), &[1, 3, 2]);
        let s = tape.var(5.0);
        assert_eq!(s.reshape(&[1, 1]).array(), array![[5.0]].into_dyn());
        assert_eq!(s.reshape(&[1, 1]).reshape(&[]).item(), 5.0);
        // A transposed (non-contiguous) input reshapes in logical row-major order.
        let t = tape.var(array![[1.0, 2.0], [3.0, 4.0]].reversed_axes());
        assert_eq!(
            t.reshape(&[4]).array(),
            array![1.0, 3.0, 2.0, 4.0].into_dyn()
        );
    }

    #[test]
    fn wrong_size_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).reshape(&[4, 2]);
            },
            &["reshape", "[2, 3]", "[4, 2]", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).reshape(&[-1, 4]);
            },
            &["reshape", "[2, 3]", "-1", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![6])).reshape(&[-1, -1]);
            },
            &["reshape", "[6]", "more than one -1", file!()],
        );
    }

    /// An array and a reshape of it: reversed extents, flattened, an inserted 1, or the
    /// first two axes merged; sometimes with one extent left to infer (`-1`).
    fn reshaped() -> impl Strategy<Value = (ArrayD<f64>, Vec<isize>)> {
        (
            array_any(3, 4, -2.0, 2.0),
            0..4usize,
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(x, kind, pick, infer)| {
                let s = x.shape().to_vec();
                let target: Vec<usize> = match kind {
                    0 => s.iter().rev().copied().collect(),
                    1 => vec![x.len()],
                    2 => {
                        let mut t = s.clone();
                        t.insert(pick.index(s.len() + 1), 1);
                        t
                    }
                    _ if s.len() >= 2 => {
                        let mut t = vec![s[0] * s[1]];
                        t.extend_from_slice(&s[2..]);
                        t
                    }
                    _ => vec![1, x.len()],
                };
                let mut spec: Vec<isize> = target.iter().map(|&d| d as isize).collect();
                if infer && !spec.is_empty() {
                    let i = pick.index(spec.len());
                    spec[i] = -1;
                }
                (x, spec)
            })
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients((x, spec) in reshaped()) {
            check(&x, move |x| x.reshape(&spec))?;
        }

        #[test]
        fn second_order((x, spec) in reshaped()) {
            check_squared(&x, move |x| x.reshape(&spec))?;
        }
    }
}
