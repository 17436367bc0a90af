//! `cross_entropy`: softmax cross-entropy from logits and integer class labels, fused.
//!
//! For logits `x` of shape `[N, C]` and labels `ℓ ∈ {0..C}ᴺ`:
//! `L = s · Σᵢ (logsumexp(xᵢ) − xᵢ[ℓᵢ])` with `s = 1/N` (mean, the default) or `1` (sum).
//! The log-sum-exp is shifted by each row's maximum, so logits of ±1000 give exact
//! finite losses; no probability is formed in the forward pass.
//!
//! With `p = softmax(x)` along the class axis and `Y` the one-hot matrix of the labels:
//! - VJP: `x̄ = (p − Y) · L̄ · s`; labels get no gradient;
//! - JVP: `L̇ = s · Σ (p − Y) ⊙ ẋ`.
//!
//! `p` comes from the [`Softmax`](super::Softmax) primitive and `Y` is a constant, so
//! second derivatives (`s · (diag p − p pᵀ)` per row) go through softmax's rules.

use ndarray::{Array2, Axis};

use retrograd_tape::arith::sum_to;
use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::Reduction;
use super::softmax::{lane_logsumexp, softmax};

/// Softmax cross-entropy of `[N, C]` logits against `N` class labels; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct CrossEntropy {
    labels: Vec<usize>,
    reduction: Reduction,
    /// The number of classes, read from the logits in `forward`.
    classes: usize,
}

impl CrossEntropy {
    /// Cross-entropy against `labels` (one per row of the logits), reduced by `reduction`.
    pub fn new(labels: &[usize], reduction: Reduction) -> Self {
        CrossEntropy {
            labels: labels.to_vec(),
            reduction,
            classes: 0,
        }
    }

    /// The loss's scale: `1/N` for the mean, `1` for the sum.
    fn scale<T: Float>(&self) -> T {
        match self.reduction {
            Reduction::Mean => T::one() / T::of(self.labels.len() as f64),
            Reduction::Sum => T::one(),
        }
    }

    /// `p − Y`: the gradient of the summed loss with respect to the logits.
    fn residual<'t, T: Float>(&self, x: &Val<'t, T>) -> Val<'t, T> {
        let mut onehot = Array2::<T>::zeros((self.labels.len(), self.classes));
        for (i, &l) in self.labels.iter().enumerate() {
            onehot[[i, l]] = T::one();
        }
        let onehot = x.constant_like(Tensor::from_array(onehot));
        &softmax(x, 1) - &onehot
    }
}

impl<T: Float> Rule<T> for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("reduction", self.reduction.to_string()),
            ("labels", self.labels.len().to_string()),
        ]
    }
    /// A log-sum-exp per row: three passes over the logits (maximum, exponentials, sum).
    fn madds(&self, input_shapes: &[&[usize]], _: &[usize]) -> u64 {
        3 * crate::elements(input_shapes[0])
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let x = x[0].view();
        let &[n, c] = x.shape() else {
            return Err("logits must be 2-D, [batch, classes]".to_string());
        };
        if self.labels.len() != n {
            return Err(format!(
                "{} labels for a batch of {n} rows (labels: {:?})",
                self.labels.len(),
                Preview(&self.labels)
            ));
        }
        if n == 0 {
            return Err("the batch is empty".to_string());
        }
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|&(_, &l)| l >= c) {
            return Err(format!(
                "label {l} (at position {i}) is out of range for {c} classes"
            ));
        }
        self.classes = c;
        let total = retrograd_tape::summation::sum_iter(
            x.axis_iter(Axis(0))
                .zip(&self.labels)
                .map(|(row, &l)| lane_logsumexp(&row) - row[l]),
        );
        Ok(Tensor::scalar(total * self.scale::<T>()))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let dx = cx
            .needs(0)
            .then(|| &self.residual(cx.input(0)) * &(g * self.scale::<T>()));
        Cotangents::from([dx])
    }
    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        let t = t[0].as_ref()?;
        let dot = sum_to(&(&self.residual(cx.input(0)) * t), &[]);
        Some(dot * self.scale::<T>())
    }
    fn saved_bytes(&self) -> usize {
        self.labels.len() * std::mem::size_of::<usize>()
    }
}

/// The first few labels of a long list, for error messages.
struct Preview<'a>(&'a [usize]);

impl std::fmt::Debug for Preview<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        if self.0.len() <= SHOWN {
            write!(f, "{:?}", self.0)
        } else {
            write!(
                f,
                "{:?} and {} more",
                &self.0[..SHOWN],
                self.0.len() - SHOWN
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_many, panic_message};
    use ndarray::{ArrayD, array};
    use proptest::prelude::*;
    use retrograd_tape::Tape;
    use retrograd_tape::strategies::{array, config};

    use crate::nn::{NnOps, Reduction};

    fn logits_and_labels() -> impl Strategy<Value = (ArrayD<f64>, Vec<usize>)> {
        (1..=4usize, 1..=5usize)
            .prop_flat_map(|(n, c)| (array(vec![n, c], -3.0, 3.0), prop::collection::vec(0..c, n)))
    }

    proptest! {
        #![proptest_config(config(32))]
        #[test]
        fn cross_entropy_matches_log_softmax_and_checks(
            (x, labels) in logits_and_labels(),
            sum in any::<bool>(),
        ) {
            let reduction = if sum { Reduction::Sum } else { Reduction::Mean };
            let tape = Tape::<f64>::new();
            let xv = tape.var(x.clone());
            let ls = xv.log_softmax(1).array();
            let mut expected: f64 = labels.iter().enumerate().map(|(i, &l)| -ls[[i, l]]).sum();
            if !sum {
                expected /= labels.len() as f64;
            }
            let got = xv.cross_entropy_with(&labels, reduction).item();
            prop_assert!((got - expected).abs() < 1e-12, "{} vs {}", got, expected);
            check_many(&[x], |v| v[0].cross_entropy_with(&labels, reduction))?;
        }
    }

    #[test]
    fn cross_entropy_is_finite_for_huge_logits() {
        let tape = Tape::<f32>::new();
        let x = tape.var(array![[1000.0f32, -1000.0], [-1000.0, 1000.0]]);
        let loss = x.cross_entropy(&[1, 1]);
        assert_eq!(loss.item(), 1000.0); // (2000 + 0) / 2
        let g = tape.grad(loss, &[x]).unwrap();
        assert_eq!(g[0], array![[0.5f32, -0.5], [0.0, 0.0]].into_dyn());
    }

    #[test]
    fn bad_labels_are_named() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ArrayD::zeros(ndarray::IxDyn(&[3, 4])));
        let e = x
            .try_cross_entropy(&[0, 4, 1], Reduction::Mean)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cross_entropy") && e.contains("label 4 (at position 1)"),
            "{e}"
        );
        assert!(e.contains("4 classes") && e.contains(file!()), "{e}");
        let e = x
            .try_cross_entropy(&[0, 1], Reduction::Mean)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 labels for a batch of 3 rows"), "{e}");
        let msg = panic_message(|| {
            x.cross_entropy(&[9, 0, 0]);
        });
        assert!(msg.contains("label 9") && msg.contains("[3, 4]"), "{msg}");
        let v = tape.var(array![1.0, 2.0]);
        assert!(v.try_cross_entropy(&[0], Reduction::Mean).is_err());
    }
}
