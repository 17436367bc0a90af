//! `permute` and `transpose`: reorder the axes.
//!
//! `y = permute(x, p)` has `y.shape[i] = x.shape[p[i]]`. `transpose` is the permutation
//! that swaps the last two axes (the matrix transpose, batched over any leading axes).
//! Linear, with the inverse permutation `p⁻¹` as its transpose:
//! - VJP: `x̄ = permute(ȳ, p⁻¹)`,
//! - JVP: `ẏ = permute(ẋ, p)`.
//!
//! The result is materialised in row-major order.

use smallvec::{SmallVec, smallvec};

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

/// A permutation of the axes; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Permute {
    /// The permutation; `None` for `transpose`, resolved in `forward`.
    given: Option<SmallVec<[usize; 4]>>,
    perm: SmallVec<[usize; 4]>,
}

impl Permute {
    /// Output axis `i` is input axis `perm[i]`.
    pub fn new(perm: &[usize]) -> Self {
        Permute {
            given: Some(perm.iter().copied().collect()),
            perm: SmallVec::new(),
        }
    }

    /// Swaps the last two axes.
    pub fn transpose() -> Self {
        Permute {
            given: None,
            perm: SmallVec::new(),
        }
    }
}

impl<T: Float> Rule<T> for Permute {
    fn name(&self) -> &'static str {
        if self.given.is_some() {
            "permute"
        } else {
            "transpose"
        }
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        match &self.given {
            Some(p) => vec![("perm", format!("{:?}", p.as_slice()))],
            None => Vec::new(),
        }
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        let n = x.ndim();
        self.perm = match &self.given {
            None if n < 2 => {
                return Err(format!(
                    "transpose swaps the last two axes and needs at least two; this value has {n}"
                ));
            }
            None => {
                let mut p: SmallVec<[usize; 4]> = (0..n).collect();
                p.swap(n - 2, n - 1);
                p
            }
            Some(p) => {
                let mut seen: SmallVec<[bool; 4]> = smallvec![false; n];
                let valid = p.len() == n
                    && p.iter()
                        .all(|&a| a < n && !std::mem::replace(&mut seen[a], true));
                if !valid {
                    return Err(format!(
                        "{:?} is not a permutation of the {n} axes 0..{n}",
                        p.as_slice()
                    ));
                }
                p.clone()
            }
        };
        if self.perm.iter().enumerate().all(|(i, &a)| i == a) {
            return Ok(x.clone());
        }
        let permuted = x.view().permuted_axes(self.perm.as_slice());
        Ok(Tensor::from_array(
            permuted.as_standard_layout().into_owned(),
        ))
    }
    /// The same permutation of each batch element: axis 0 stays, the others move as in
    /// the forward.
    fn jvp_batch(
        &self,
        _: &RuleCtx<'_, T>,
        t: &[Option<Tensor<T>>],
        _k: usize,
    ) -> Option<Tensor<T>> {
        t[0].as_ref().map(|t| permute_batch(t, &self.perm))
    }
    fn vjp_batch(&self, _: &RuleCtx<'_, T>, g: &Tensor<T>, _k: usize) -> Vec<Option<Tensor<T>>> {
        let mut inverse: SmallVec<[usize; 4]> = smallvec![0; self.perm.len()];
        for (i, &a) in self.perm.iter().enumerate() {
            inverse[a] = i;
        }
        vec![Some(permute_batch(g, &inverse))]
    }
    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let mut inverse: SmallVec<[usize; 4]> = smallvec![0; self.perm.len()];
        for (i, &a) in self.perm.iter().enumerate() {
            inverse[a] = i;
        }
        Cotangents::from([Some(Val::apply(Permute::new(&inverse), &[g]))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref()
            .map(|t| Val::apply(Permute::new(&self.perm), &[t]))
    }
}

/// Permutes the axes of each batch element of `t` (`[k] ++ shape`) by `perm`.
fn permute_batch<T: Float>(t: &Tensor<T>, perm: &[usize]) -> Tensor<T> {
    let full: SmallVec<[usize; 5]> = std::iter::once(0)
        .chain(perm.iter().map(|a| a + 1))
        .collect();
    let permuted = t.view().permuted_axes(full.as_slice());
    Tensor::from_array(permuted.as_standard_layout().into_owned())
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
            x.transpose().array(),
            array![[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]].into_dyn()
        );
        assert_eq!(x.permute(&[1, 0]).array(), x.transpose().array());
        let b = tape.var(ArrayD::from_shape_fn(vec![2, 3, 4], |i| {
            (i[0] * 100 + i[1] * 10 + i[2]) as f64
        }));
        let p = b.permute(&[2, 0, 1]).array();
        assert_eq!(p.shape(), &[4, 2, 3]);
        assert_eq!(p[[3, 1, 2]], 123.0);
        assert_eq!(b.transpose().array()[[1, 3, 2]], 123.0);
    }

    #[test]
    fn bad_permutations_panic() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).permute(&[0, 0]);
            },
            &["permute", "[2, 3]", "not a permutation", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).permute(&[1, 0, 2]);
            },
            &["permute", "[2, 3]", "[1, 0, 2]", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![3])).transpose();
            },
            &["transpose", "[3]", "at least two", file!()],
        );
    }

    fn permuted() -> impl Strategy<Value = (ArrayD<f64>, Vec<usize>)> {
        array_any(3, 4, -2.0, 2.0).prop_flat_map(|x| {
            let perm = Just((0..x.ndim()).collect::<Vec<_>>()).prop_shuffle();
            (Just(x), perm)
        })
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn permute_gradients((x, perm) in permuted()) {
            let p = perm.clone();
            check(&x, move |x| x.permute(&p))?;
            check_squared(&x, move |x| x.permute(&perm))?;
        }

        #[test]
        fn transpose_gradients(x in array_any(3, 4, -2.0, 2.0)
            .prop_filter("two axes or more", |x| x.ndim() >= 2)) {
            check(&x, |x| x.transpose())?;
            check_squared(&x, |x| x.transpose())?;
        }
    }
}
