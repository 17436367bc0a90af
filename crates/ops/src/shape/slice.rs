//! `slice`: a strided range of entries along one or more axes.
//!
//! Each [`SliceSpec`] takes `start..end` with a `step` along one axis (axes not named are
//! kept whole). Bounds past an axis's extent are an error rather than clamped (numpy and
//! PyTorch clamp, which hides off-by-one mistakes). Linear:
//! - VJP: `x̄ = scatter_slice(ȳ)`, the cotangent written into zeros of the input's shape at
//!   the sliced positions ([`ScatterSlice`]),
//! - JVP: `ẏ = slice(ẋ)`.

use std::ops::RangeBounds;

use smallvec::{SmallVec, smallvec};

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::ScatterSlice;
use crate::reduce::normalize_axis;

/// A range with a step along one axis: `SliceSpec::new(1, 2..5).step(2)` takes entries 2
/// and 4 of axis 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceSpec {
    /// The axis (negative counts from the end).
    pub axis: isize,
    /// The first entry taken.
    pub start: usize,
    /// One past the last entry (the axis's extent when `None`).
    pub end: Option<usize>,
    /// The distance between entries taken (at least 1).
    pub step: usize,
}

impl SliceSpec {
    /// The entries of `range` along `axis`, step 1.
    pub fn new(axis: isize, range: impl RangeBounds<usize>) -> Self {
        let (start, end) = super::range_bounds(&range);
        SliceSpec {
            axis,
            start,
            end,
            step: 1,
        }
    }

    /// Takes every `step`-th entry of the range.
    pub fn step(mut self, step: usize) -> Self {
        self.step = step;
        self
    }
}

impl std::fmt::Display for SliceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}..", self.axis, self.start)?;
        if let Some(e) = self.end {
            write!(f, "{e}")?;
        }
        if self.step != 1 {
            write!(f, ";{}", self.step)?;
        }
        Ok(())
    }
}

/// One `(start, end, step)` per axis of the sliced array, validated.
pub(crate) type Ranges = SmallVec<[(usize, usize, usize); 4]>;

/// Resolves specs against a shape: every axis gets a range (whole when not named).
pub(crate) fn resolve(specs: &[SliceSpec], shape: &[usize]) -> Result<Ranges, String> {
    let mut ranges: Ranges = shape.iter().map(|&d| (0, d, 1)).collect();
    let mut named: SmallVec<[bool; 4]> = smallvec![false; shape.len()];
    for spec in specs {
        let a = normalize_axis(spec.axis, shape.len())?;
        if std::mem::replace(&mut named[a], true) {
            return Err(format!("axis {a} is sliced twice"));
        }
        let extent = shape[a];
        let end = spec.end.unwrap_or(extent);
        if spec.step == 0 || spec.step > isize::MAX as usize {
            // A larger step would turn negative in ndarray's `isize` and reverse the axis;
            // reversing is `flip`, never a side effect of a step.
            return Err(format!(
                "the step of the slice along axis {} is {} (it must be in 1 ..= {})",
                spec.axis,
                spec.step,
                isize::MAX
            ));
        }
        if end > extent || spec.start > end {
            return Err(format!(
                "range {}..{end} is out of bounds for axis {} of extent {extent}",
                spec.start, spec.axis
            ));
        }
        ranges[a] = (spec.start, end, spec.step);
    }
    Ok(ranges)
}

/// The extents a slice produces.
pub(crate) fn sliced_shape(ranges: &Ranges) -> SmallVec<[usize; 4]> {
    ranges
        .iter()
        .map(|&(s, e, step)| (e - s).div_ceil(step))
        .collect()
}

/// The specs of fully resolved ranges (what the rules pass to each other).
pub(crate) fn specs_of(ranges: &Ranges) -> SmallVec<[SliceSpec; 4]> {
    ranges
        .iter()
        .enumerate()
        .map(|(a, &(start, end, step))| SliceSpec {
            axis: a as isize,
            start,
            end: Some(end),
            step,
        })
        .collect()
}

/// The ndarray slice of one resolved range.
pub(crate) fn nd_slice((start, end, step): (usize, usize, usize)) -> ndarray::Slice {
    ndarray::Slice::new(start as isize, Some(end as isize), step as isize)
}

/// A slice along some axes; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Slice {
    specs: SmallVec<[SliceSpec; 4]>,
    ranges: Ranges,
}

impl Slice {
    /// A slice by `specs`, at most one per axis.
    pub fn new(specs: &[SliceSpec]) -> Self {
        Slice {
            specs: specs.iter().copied().collect(),
            ranges: Ranges::new(),
        }
    }
}

impl<T: Float> Rule<T> for Slice {
    fn name(&self) -> &'static str {
        "slice"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let specs: Vec<String> = self.specs.iter().map(ToString::to_string).collect();
        vec![("ranges", specs.join(", "))]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0];
        self.ranges = resolve(&self.specs, x.shape())?;
        if self
            .ranges
            .iter()
            .zip(x.shape())
            .all(|(&(s, e, step), &d)| s == 0 && e == d && (step == 1 || d <= 1))
        {
            return Ok(x.clone());
        }
        let view = x.view();
        let sliced = view.slice_each_axis(|ax| nd_slice(self.ranges[ax.axis.index()]));
        Ok(Tensor::from_array(sliced.as_standard_layout().into_owned()))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let scatter = ScatterSlice::new(&cx.input_shape(0), &specs_of(&self.ranges));
        Cotangents::from([Some(Val::apply(scatter, &[g]))])
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let t = t[0].as_ref()?;
        Some(Val::apply(Slice::new(&specs_of(&self.ranges)), &[t]))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;

    use super::SliceSpec;
    use crate::reduce::ReduceOps;
    use crate::shape::ShapeOps;
    use crate::testing::{assert_panics_with, check, check_squared};
    use retrograd_tape::strategies::array_any;

    #[test]
    fn exact_values() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]);
        assert_eq!(
            x.slice(1, 1..3).array(),
            array![[2.0, 3.0], [6.0, 7.0]].into_dyn()
        );
        assert_eq!(
            x.slice(0, 1..).array(),
            array![[5.0, 6.0, 7.0, 8.0]].into_dyn()
        );
        assert_eq!(x.slice(-1, ..=0).array(), array![[1.0], [5.0]].into_dyn());
        assert_eq!(
            x.slice_step(1, .., 2).array(),
            array![[1.0, 3.0], [5.0, 7.0]].into_dyn()
        );
        assert_eq!(x.slice(1, 2..2).shape().as_slice(), &[2, 0]);
        let both = x.slice_axes(&[SliceSpec::new(0, 1..2), SliceSpec::new(1, 1..).step(2)]);
        assert_eq!(both.array(), array![[6.0, 8.0]].into_dyn());
        let g = tape.grad(both.sum_all(), &[x]).unwrap();
        assert_eq!(
            g[0],
            array![[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]].into_dyn()
        );
    }

    #[test]
    fn out_of_range_panics() {
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).slice(1, 1..4);
            },
            &["slice", "[2, 3]", "out of bounds", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).slice(2, 0..1);
            },
            &["slice", "[2, 3]", "axis 2", file!()],
        );
        assert_panics_with(
            |tape| {
                tape.var(ArrayD::zeros(vec![2, 3])).slice_step(0, .., 0);
            },
            &["slice", "[2, 3]", "step", file!()],
        );
    }

    /// An array and one random (possibly strided, possibly empty) slice spec per axis.
    fn sliced() -> impl Strategy<Value = (ArrayD<f64>, Vec<SliceSpec>)> {
        array_any(3, 4, -2.0, 2.0).prop_flat_map(|x| {
            let n = x.ndim() as isize;
            let specs: Vec<_> = x
                .shape()
                .iter()
                .enumerate()
                .map(|(a, &d)| {
                    (0..=d, 0..=d, 1..3usize, any::<bool>(), any::<bool>()).prop_map(
                        move |(s, e, step, neg, keep)| {
                            let axis = if neg { a as isize - n } else { a as isize };
                            let (s, e) = (s.min(e), s.max(e));
                            keep.then(|| SliceSpec::new(axis, s..e).step(step))
                        },
                    )
                })
                .collect();
            (Just(x), specs).prop_map(|(x, specs)| (x, specs.into_iter().flatten().collect()))
        })
    }

    proptest! {
        #![proptest_config(retrograd_tape::strategies::config(32))]

        #[test]
        fn gradients((x, specs) in sliced()) {
            let s = specs.clone();
            check(&x, move |x| x.slice_axes(&s))?;
            check_squared(&x, move |x| x.slice_axes(&specs))?;
        }
    }
}
