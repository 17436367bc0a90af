//! `pad`: surrounds a value with zeros.
//!
//! `pad(x, [(b₀, a₀), (b₁, a₁), ..])` adds `bᵢ` zeros before and `aᵢ` after along axis `i`;
//! one pair per axis. Linear, the transpose of taking the interior:
//! - VJP: `x̄ = ȳ[b₀ .. b₀+n₀, b₁ .. b₁+n₁, ..]` (a [`Slice`]),
//! - JVP: `ẏ = pad(ẋ)`.

use smallvec::SmallVec;

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::Slice;
use super::scatter_slice::embed;
use super::slice::{Ranges, SliceSpec};

/// Zero padding; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Pad {
    widths: SmallVec<[(usize, usize); 4]>,
}

impl Pad {
    /// Pads axis `i` with `widths[i].0` zeros before and `widths[i].1` after.
    pub fn new(widths: &[(usize, usize)]) -> Self {
        Pad {
            widths: widths.iter().copied().collect(),
        }
    }

    /// Where the input sits inside the output, per axis.
    fn interior(&self, shape: &[usize]) -> SmallVec<[SliceSpec; 4]> {
        self.widths
            .iter()
            .zip(shape)
            .enumerate()
            .map(|(a, (&(before, _), &d))| SliceSpec::new(a as isize, before..before + d))
            .collect()
    }
}

impl<T: Float> Rule<T> for Pad {
    fn name(&self) -> &'static str {
        "pad"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("widths", format!("{:?}", self.widths.as_slice()))]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        if self.widths.len() != x.ndim() {
            return Err(format!(
                "{} (before, after) pairs given for a value of {} axes; give one per axis",
                self.widths.len(),
                x.ndim()
            ));
        }
        if self.widths.iter().all(|&w| w == (0, 0)) {
            return Ok(x.clone());
        }
        let shape = self
            .widths
            .iter()
            .zip(x.shape())
            .map(|(&(b, a), &d)| b.checked_add(d)?.checked_add(a))
            .collect::<Option<SmallVec<[usize; 4]>>>()
            .ok_or_else(|| {
                format!(
                    "padding {:?} by {:?} overflows usize",
                    x.shape(),
                    self.widths.as_slice()
                )
            })?;
        retrograd_tape::checked_len::<T>(&shape)?;
        let ranges: Ranges = self
            .widths
            .iter()
            .zip(x.shape())
            .map(|(&(b, _), &d)| (b, b + d, 1))
            .collect();
        Ok(embed(x, &shape, &ranges))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let interior = self.interior(&cx.input_shape(0));
        Cotangents::from([Some(Val::apply(Slice::new(&interior), &[g]))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| Val::apply(self.clone(), &[t]))
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
        let x = tape.var(array![[1.0, 2.0]]);
        assert_eq!(
            x.pad(&[(1, 0), (0, 2)]).array(),
            array![[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]].into_dyn()
        );
        assert_eq!(x.pad(&[(0, 0), (0, 0)]).array(), x.array());
        assert_eq!(tape.var(3.0).pad(&[]).item(), 3.0);
    }

    #[test]
    fn wrong_number_of_pairs_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).pad(&[(1, 1)]);
            },
            &["pad", "[2, 3]", "one per axis", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients(x in array_any(3, 3, -2.0, 2.0), widths in prop::collection::vec((0..3usize, 0..3usize), 3)) {
            let w: Vec<_> = widths[..x.ndim()].to_vec();
            let w2 = w.clone();
            check(&x, move |x| x.pad(&w))?;
            check_squared(&x, move |x| x.pad(&w2))?;
        }
    }
}
