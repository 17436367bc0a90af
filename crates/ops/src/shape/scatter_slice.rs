//! `scatter_slice`: writes a value into zeros of a larger shape at a slice's positions.
//!
//! The transpose of [`Slice`] (its VJP), and a primitive in its own right so
//! that slicing is differentiable to any order: for `y = scatter_slice(x)` into `shape` at
//! the positions `specs` select,
//! - VJP: `x̄ = slice(ȳ, specs)`,
//! - JVP: `ẏ = scatter_slice(ẋ)`.

use smallvec::SmallVec;

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Shape, Tensor, Val};

use super::Slice;
use super::slice::{Ranges, SliceSpec, nd_slice, resolve, sliced_shape, specs_of};

/// Writes `x` into `zeros(shape)` at the positions `ranges` select (already validated).
pub(crate) fn embed<T: Float>(x: &Tensor<T>, shape: &[usize], ranges: &Ranges) -> Tensor<T> {
    let mut out = ndarray::ArrayD::zeros(ndarray::IxDyn(shape));
    out.slice_each_axis_mut(|ax| nd_slice(ranges[ax.axis.index()]))
        .assign(&x.view());
    Tensor::from_array(out)
}

/// Scatters into zeros at a slice's positions; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ScatterSlice {
    shape: Shape,
    specs: SmallVec<[SliceSpec; 4]>,
    ranges: Ranges,
}

impl ScatterSlice {
    /// Writes its input into zeros of `shape` where `Slice::new(specs)` would read.
    pub fn new(shape: &[usize], specs: &[SliceSpec]) -> Self {
        ScatterSlice {
            shape: Shape::from_slice(shape),
            specs: specs.iter().copied().collect(),
            ranges: Ranges::new(),
        }
    }
}

impl<T: Float> Rule<T> for ScatterSlice {
    fn name(&self) -> &'static str {
        "scatter_slice"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let specs: Vec<String> = self.specs.iter().map(ToString::to_string).collect();
        vec![
            ("shape", format!("{:?}", self.shape.as_slice())),
            ("ranges", specs.join(", ")),
        ]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        self.ranges = resolve(&self.specs, &self.shape)?;
        let expected = sliced_shape(&self.ranges);
        if x.shape() != expected.as_slice() {
            return Err(format!(
                "the value must have the slice's shape {:?} to scatter into {:?}",
                expected.as_slice(),
                self.shape.as_slice()
            ));
        }
        Ok(embed(x, &self.shape, &self.ranges))
    }
    fn vjp<'t>(&self, _: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        Cotangents::from([Some(Val::apply(Slice::new(&specs_of(&self.ranges)), &[g]))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let t = t[0].as_ref()?;
        let scatter = ScatterSlice::new(&self.shape, &specs_of(&self.ranges));
        Some(Val::apply(scatter, &[t]))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::{Tape, Var};

    use super::ScatterSlice;
    use crate::shape::SliceSpec;
    use crate::testing::{assert_panics_with, check, check_squared};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 2.0]]);
        let specs = [SliceSpec::new(0, 1..2), SliceSpec::new(1, 0..3).step(2)];
        let y = Var::apply(ScatterSlice::new(&[2, 3], &specs), &[&x]);
        assert_eq!(
            y.array(),
            array![[0.0, 0.0, 0.0], [1.0, 0.0, 2.0]].into_dyn()
        );
    }

    #[test]
    fn wrong_shape_panics() {
        assert_panics_with(
            |tape| {
                let x = tape.var(ArrayD::zeros(vec![2]));
                Var::apply(ScatterSlice::new(&[4], &[SliceSpec::new(0, 0..3)]), &[&x]);
            },
            &["scatter_slice", "[2]", "[3]", file!()],
        );
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        /// Scatter a random array into a larger one (each axis grown by up to 2 and
        /// strided by up to 2).
        #[test]
        fn gradients(x in array_any(3, 3, -2.0, 2.0), grow in prop::collection::vec((0..3usize, 1..3usize), 3)) {
            let mut shape = Vec::new();
            let mut specs = Vec::new();
            for (a, (&d, &(extra, step))) in x.shape().iter().zip(&grow).enumerate() {
                let start = extra.min(1);
                let end = start + (d - 1) * step + 1;
                shape.push(end + extra);
                specs.push(SliceSpec::new(a as isize, start..end).step(step));
            }
            let (s, p) = (shape.clone(), specs.clone());
            check(&x, move |x| Var::apply(ScatterSlice::new(&s, &p), &[&x]))?;
            check_squared(&x, move |x| Var::apply(ScatterSlice::new(&shape, &specs), &[&x]))?;
        }
    }
}
