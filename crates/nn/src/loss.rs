//! Losses, as functions and as small configurable structs, each delegating to one fused
//! primitive of `retrograd_ops::nn` (stable for any logits, one node on the tape), and
//! [`accuracy`] for classification.
//!
//! | loss | input | target | PyTorch |
//! | --- | --- | --- | --- |
//! | [`mse`], [`MseLoss`] | predictions, any shape | same shape | `MSELoss` |
//! | [`cross_entropy`], [`CrossEntropyLoss`] | logits `[N, C]` | `N` labels in `0..C` | `CrossEntropyLoss` |
//! | [`bce_with_logits`], [`BceWithLogitsLoss`] | logits, any shape | same shape, in `[0, 1]` | `BCEWithLogitsLoss` |
//!
//! Every loss reduces by the mean by default; [`Reduction::Sum`] sums instead.
//!
//! ```
//! use retrograd_nn::loss::{self, CrossEntropyLoss, Reduction};
//! use retrograd_tape::Tape;
//! use ndarray::array;
//!
//! let tape = Tape::<f64>::new();
//! let logits = tape.var(array![[2.0, 0.5], [0.1, 1.0]]);
//! let mean = loss::cross_entropy(&logits, &[0, 1]);
//! let sum = CrossEntropyLoss::new().reduction(Reduction::Sum).forward(&logits, &[0, 1]);
//! assert!((sum.item() - 2.0 * mean.item()).abs() < 1e-12);
//! ```

use ndarray::{ArrayBase, Axis, Data, Ix2};
use retrograd_ops::nn::NnOps;
use retrograd_tape::Var;

pub use retrograd_ops::nn::Reduction;

use crate::scalar::Scalar;

/// Mean-squared error `mean((pred − target)²)`; shapes must match exactly.
#[track_caller]
pub fn mse<'t, T: Scalar>(pred: &Var<'t, T>, target: &Var<'t, T>) -> Var<'t, T> {
    pred.mse(target)
}

/// Softmax cross-entropy of `[N, C]` logits against `N` class labels, the mean over the
/// batch.
#[track_caller]
pub fn cross_entropy<'t, T: Scalar>(logits: &Var<'t, T>, labels: &[usize]) -> Var<'t, T> {
    logits.cross_entropy(labels)
}

/// Binary cross-entropy of logits against targets in `[0, 1]`, the mean over all elements.
#[track_caller]
pub fn bce_with_logits<'t, T: Scalar>(logits: &Var<'t, T>, targets: &Var<'t, T>) -> Var<'t, T> {
    logits.bce_with_logits(targets)
}

/// The mean-squared error with a chosen [`Reduction`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MseLoss {
    /// Mean (default) or sum.
    pub reduction: Reduction,
}

impl MseLoss {
    /// With the mean reduction.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// The loss of `pred` against `target` (same shape).
    #[track_caller]
    pub fn forward<'t, T: Scalar>(&self, pred: &Var<'t, T>, target: &Var<'t, T>) -> Var<'t, T> {
        pred.mse_with(target, self.reduction)
    }
}

/// Softmax cross-entropy with integer labels and a chosen [`Reduction`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrossEntropyLoss {
    /// Mean over the batch (default) or sum.
    pub reduction: Reduction,
}

impl CrossEntropyLoss {
    /// With the mean reduction.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// The loss of `[N, C]` logits against `N` labels in `0..C`.
    #[track_caller]
    pub fn forward<'t, T: Scalar>(&self, logits: &Var<'t, T>, labels: &[usize]) -> Var<'t, T> {
        logits.cross_entropy_with(labels, self.reduction)
    }
}

/// Binary cross-entropy from logits with a chosen [`Reduction`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BceWithLogitsLoss {
    /// Mean over all elements (default) or sum.
    pub reduction: Reduction,
}

impl BceWithLogitsLoss {
    /// With the mean reduction.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// The loss of logits against targets in `[0, 1]` of the same shape.
    #[track_caller]
    pub fn forward<'t, T: Scalar>(&self, logits: &Var<'t, T>, targets: &Var<'t, T>) -> Var<'t, T> {
        logits.bce_with_logits_with(targets, self.reduction)
    }
}

/// The predicted class of each row of `[N, C]` scores: the index of the row's maximum (the
/// first one on ties). NaN never wins against a number; a row that is all NaN has no
/// maximum and gets its last index.
pub fn argmax_rows<T: Scalar, S: Data<Elem = T>>(scores: &ArrayBase<S, Ix2>) -> Vec<usize> {
    scores
        .axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] || row[best].is_nan() {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// The fraction of rows of `[N, C]` scores whose maximum is at the row's label.
///
/// # Panics
/// When the number of labels is not `N`. An empty batch has accuracy 0.
pub fn accuracy<T: Scalar, S: Data<Elem = T>>(scores: &ArrayBase<S, Ix2>, labels: &[usize]) -> f64 {
    assert_eq!(
        scores.nrows(),
        labels.len(),
        "accuracy: {} rows of scores but {} labels",
        scores.nrows(),
        labels.len()
    );
    if labels.is_empty() {
        return 0.0;
    }
    let hits = argmax_rows(scores)
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    hits as f64 / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use retrograd_tape::Tape;

    #[test]
    fn structs_and_functions_agree_and_sum_is_n_times_mean() {
        let tape = Tape::<f64>::new();
        let pred = tape.var(array![[0.5, -1.0], [2.0, 0.0]]);
        let target = tape.constant(array![[1.0, 0.0], [1.0, 1.0]]);
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        // (0.25 + 1 + 1 + 1) / 4
        close(mse(&pred, &target).item(), 3.25 / 4.0);
        close(MseLoss::new().forward(&pred, &target).item(), 3.25 / 4.0);
        close(
            MseLoss::new()
                .reduction(Reduction::Sum)
                .forward(&pred, &target)
                .item(),
            3.25,
        );
        let bce = bce_with_logits(&pred, &target).item();
        // softplus(x) - x·t, averaged
        let want = [(0.5, 1.0), (-1.0, 0.0), (2.0, 1.0), (0.0, 1.0)]
            .iter()
            .map(|&(x, t): &(f64, f64)| x.exp().ln_1p() - x * t)
            .sum::<f64>();
        close(bce, want / 4.0);
        close(
            BceWithLogitsLoss::new()
                .reduction(Reduction::Sum)
                .forward(&pred, &target)
                .item(),
            want,
        );
        let ce = cross_entropy(&pred, &[0, 1]).item();
        close(
            CrossEntropyLoss::new()
                .reduction(Reduction::Sum)
                .forward(&pred, &[0, 1])
                .item(),
            2.0 * ce,
        );
    }

    #[test]
    fn accuracy_and_argmax() {
        let scores = array![
            [0.1, 0.7, 0.2],
            [1.0, 1.0, 0.0],
            [f64::NAN, 0.0, -1.0],
            [0.0, 0.0, 3.0]
        ];
        assert_eq!(argmax_rows(&scores), [1, 0, 1, 2]);
        assert_eq!(accuracy(&scores, &[1, 0, 0, 0]), 0.5);
        assert_eq!(accuracy(&ndarray::Array2::<f32>::zeros((0, 3)), &[]), 0.0);
    }

    #[test]
    #[should_panic(expected = "2 rows of scores but 3 labels")]
    fn accuracy_needs_one_label_per_row() {
        accuracy(&ndarray::Array2::<f32>::zeros((2, 3)), &[0, 1, 2]);
    }
}
