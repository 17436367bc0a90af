//! Normalisation over channels: [`BatchNorm1d`], [`BatchNorm2d`] (batch statistics in
//! training, running statistics in evaluation) and [`GroupNorm`] (per-sample statistics of
//! channel groups), with PyTorch's semantics, parameter names and initialisation.
//!
//! A batch norm's running statistics are stored beside its parameters, as
//! `running_mean`, `running_var` and `num_batches_tracked` (PyTorch's `state_dict` names),
//! so checkpoints save and restore them. They are not trained: a training pass does not read them (no
//! gradient, so optimisers leave them alone) but reports their new values, which
//! [`Session::update_buffers`](crate::Session::update_buffers) writes into the store:
//!
//! ```
//! use retrograd_nn::{Module, Sequential, Session, norm::BatchNorm1d, optim::{Optimizer, Sgd}};
//! use retrograd_ops::prelude::*;
//! let model = Sequential::<f64>::new().append(BatchNorm1d::new(2));
//! let mut store = model.init_store(0);
//! let mut session = Session::new(0);
//! let x = ndarray::array![[1.0, 10.0], [3.0, 30.0]];
//! let (_, grads) = session.train_step(&store, |p| model.forward(p.input(x.clone()), p).sum_all())?;
//! Sgd::new(0.1).step(&mut store, &grads)?;
//! session.update_buffers(&mut store);
//! // momentum 0.1: 0.9 · 0 + 0.1 · batch mean
//! assert_eq!(store.get("0.running_mean").unwrap(), &ndarray::array![0.2, 2.0].into_dyn());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use ndarray::ArrayD;
use retrograd_ops::prelude::*;
use retrograd_tape::Var;

use crate::init::Init;
use crate::module::{Module, ParamSpec};
use crate::params::Params;
use crate::scalar::{Scalar, cast};

/// Batch normalisation over the channel axis 1 (Ioffe & Szegedy, 2015; PyTorch's
/// `BatchNorm1d`/`BatchNorm2d`): `y = (x − μ) / √(σ² + eps) · weight + bias` per channel,
/// with `μ`, `σ²` the batch's mean and (population) variance over every axis but 1 in
/// training, and the running statistics in evaluation. Training counts the batch in
/// `num_batches_tracked` and updates `running = (1 − m) · running + m · batch` (the
/// variance unbiased, as PyTorch), with `m` the momentum, or `1 / num_batches_tracked`
/// when the momentum is `None` (a cumulative moving average: the running statistics are
/// the mean of every batch's). `weight` starts at ones, `bias` at zeros, `running_mean`
/// at zeros, `running_var` at ones and `num_batches_tracked` (a scalar, stored in the
/// model's float type like every entry of the store, so exact up to 2²⁴ batches in f32)
/// at zero. Use it as [`BatchNorm1d`] (`[N, C]` or `[N, C, L]`) or [`BatchNorm2d`]
/// (`[N, C, H, W]`).
///
/// ```
/// use retrograd_nn::norm::BatchNorm2d;
/// // PyTorch's BatchNorm2d(8, momentum=None): running statistics average every batch alike.
/// let bn = BatchNorm2d::new(8).momentum(None);
/// assert_eq!(bn.momentum, None);
/// assert_eq!(BatchNorm2d::new(8).momentum(0.01).momentum, Some(0.01));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm<const D: usize> {
    /// Channels (the extent of axis 1).
    pub features: usize,
    /// Added to the variance (PyTorch's default is 1e-5).
    pub eps: f64,
    /// The weight of the newest batch in the running statistics (default `Some(0.1)`);
    /// `None` weighs every batch alike (a cumulative moving average).
    pub momentum: Option<f64>,
    /// Whether the layer has the learnable `weight` and `bias`.
    pub affine: bool,
}

/// Batch normalisation of `[N, C]` or `[N, C, L]` inputs.
pub type BatchNorm1d = BatchNorm<1>;
/// Batch normalisation of `[N, C, H, W]` inputs.
pub type BatchNorm2d = BatchNorm<2>;

impl<const D: usize> BatchNorm<D> {
    /// Over `features` channels, with `eps = 1e-5`, `momentum = 0.1` and an affine
    /// transform.
    pub fn new(features: usize) -> Self {
        BatchNorm {
            features,
            eps: 1e-5,
            momentum: Some(0.1),
            affine: true,
        }
    }

    /// Sets `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the running statistics' momentum: a number, or `None` for a cumulative
    /// moving average (PyTorch's `momentum=None`).
    pub fn momentum(mut self, momentum: impl Into<Option<f64>>) -> Self {
        self.momentum = momentum.into();
        self
    }

    /// Without the learnable weight and bias.
    pub fn no_affine(mut self) -> Self {
        self.affine = false;
        self
    }

    /// The ranks this layer accepts.
    fn accepts(&self, ndim: usize) -> bool {
        if D == 1 {
            ndim == 2 || ndim == 3
        } else {
            ndim == 4
        }
    }

    /// The running statistics updated with a batch's mean and population variance over
    /// `n` entries per channel, and the batch counted. A store without the count (a
    /// checkpoint from before it existed) starts counting at zero and keeps no count.
    fn updated<T: Scalar>(&self, p: &Params<'_, T>, mean: ArrayD<T>, var: ArrayD<T>, n: usize) {
        let counted = p.try_get("num_batches_tracked").map(|c| c.array());
        let batches = counted.as_ref().map_or(T::zero(), |c| c.sum()) + T::one();
        if let Some(count) = counted {
            p.update_buffer("num_batches_tracked", count.mapv(|c| c + T::one()));
        }
        let m: T = match self.momentum {
            Some(m) => cast(m),
            None => T::one() / batches,
        };
        let keep = T::one() - m;
        let unbias: T = cast(n as f64 / (n.max(2) - 1) as f64);
        for (name, batch) in [
            ("running_mean", mean),
            ("running_var", var.mapv(|v| v * unbias)),
        ] {
            let old = p.get(name).array();
            let new = old.mapv(|o| o * keep)
                + batch
                    .into_shape_with_order(old.raw_dim())
                    .expect("one value per channel")
                    .mapv(|b| b * m);
            p.update_buffer(name, new);
        }
    }
}

/// `[1, C, 1, ...]` for an input of `ndim` axes: how a per-channel vector broadcasts.
fn channel_shape(features: usize, ndim: usize) -> Vec<isize> {
    let mut shape = vec![1isize; ndim];
    shape[1] = features as isize;
    shape
}

/// `x · weight + bias` per channel, when the layer is affine.
fn affine<'t, T: Scalar>(
    y: Var<'t, T>,
    p: &Params<'t, T>,
    features: usize,
    on: bool,
) -> Var<'t, T> {
    if !on {
        return y;
    }
    let shape = channel_shape(features, y.ndim());
    y * p.get("weight").reshape(&shape) + p.get("bias").reshape(&shape)
}

impl<T: Scalar, const D: usize> Module<T> for BatchNorm<D> {
    fn parameters(&self) -> Vec<ParamSpec> {
        let c = [self.features];
        let mut specs = Vec::new();
        if self.affine {
            specs.push(ParamSpec::new("weight", &c, Init::Constant(1.0)));
            specs.push(ParamSpec::new("bias", &c, Init::Zeros));
        }
        specs.push(ParamSpec::buffer("running_mean", &c, Init::Zeros));
        specs.push(ParamSpec::buffer("running_var", &c, Init::Constant(1.0)));
        specs.push(ParamSpec::buffer("num_batches_tracked", &[], Init::Zeros));
        specs
    }

    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        let shape = x.shape();
        assert!(
            self.accepts(shape.len()) && shape[1] == self.features,
            "BatchNorm{D}d({}) {:?}: expected an input [N, {}{}], got shape {:?} (input created at {})",
            self.features,
            p.prefix(),
            self.features,
            if D == 1 { "] or [N, C, L" } else { ", H, W" },
            &shape[..],
            x.location()
        );
        let axes: Vec<isize> = (0..shape.len() as isize).filter(|&a| a != 1).collect();
        let eps: T = cast(self.eps);
        let cshape = channel_shape(self.features, shape.len());
        let y = if p.is_training() {
            let mean = x.mean(axes.clone(), true);
            let var = x.var(axes, true);
            let n = shape.iter().product::<usize>() / self.features.max(1);
            self.updated(p, mean.array(), var.array(), n);
            (x - mean) / (var + eps).sqrt()
        } else {
            let mean = p.get("running_mean").detach().reshape(&cshape);
            let var = p.get("running_var").detach().reshape(&cshape);
            (x - mean) / (var + eps).sqrt()
        };
        affine(y, p, self.features, self.affine)
    }
}

/// Group normalisation (Wu & He, 2018; PyTorch's `GroupNorm`): the channels of each sample
/// split into `groups` groups, each normalised by its own mean and variance over its
/// channels and spatial positions, then a per-channel `weight` (ones) and `bias` (zeros).
/// Independent of the batch, so the same in training and evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNorm {
    /// Channel groups (must divide `channels`).
    pub groups: usize,
    /// Channels (the extent of axis 1).
    pub channels: usize,
    /// Added to the variance (default 1e-5).
    pub eps: f64,
    /// Whether the layer has the learnable `weight` and `bias`.
    pub affine: bool,
}

impl GroupNorm {
    /// `channels` in `groups` groups, `eps = 1e-5`, affine.
    ///
    /// # Panics
    /// When `groups` is 0 or does not divide `channels`.
    pub fn new(groups: usize, channels: usize) -> Self {
        assert!(
            groups > 0 && channels.is_multiple_of(groups),
            "GroupNorm: {channels} channels do not split into {groups} groups"
        );
        GroupNorm {
            groups,
            channels,
            eps: 1e-5,
            affine: true,
        }
    }
}

impl<T: Scalar> Module<T> for GroupNorm {
    fn parameters(&self) -> Vec<ParamSpec> {
        if !self.affine {
            return Vec::new();
        }
        let c = [self.channels];
        vec![
            ParamSpec::new("weight", &c, Init::Constant(1.0)),
            ParamSpec::new("bias", &c, Init::Zeros),
        ]
    }

    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        let shape = x.shape();
        assert!(
            shape.len() >= 2 && shape[1] == self.channels,
            "GroupNorm({}, {}) {:?}: expected an input [N, {}, ...], got shape {:?} (input created at {})",
            self.groups,
            self.channels,
            p.prefix(),
            self.channels,
            &shape[..],
            x.location()
        );
        let grouped = x.reshape(&[shape[0] as isize, self.groups as isize, -1]);
        let centred = grouped - grouped.mean(2, true);
        let std = (grouped.var(2, true) + cast::<T>(self.eps)).sqrt();
        let dims: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
        let y = (centred / std).reshape(&dims);
        affine(y, p, self.channels, self.affine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint;
    use crate::{Sequential, Session};
    use ndarray::{Array4, ArrayD, IxDyn, array};

    fn batch(n: usize, c: usize) -> Array4<f64> {
        Array4::from_shape_fn((n, c, 3, 2), |(i, j, k, l)| {
            ((i * 7 + j * 3 + k * 5 + l) as f64 * 0.7).sin() * (j + 1) as f64 + j as f64
        })
    }

    #[test]
    fn the_running_statistics_are_buffers_not_parameters() {
        let model = Sequential::<f64>::new()
            .append(BatchNorm2d::new(3))
            .append(BatchNorm1d::new(4).no_affine());
        // PyTorch: sum(p.numel() for p in model.parameters()) counts weight and bias only.
        assert_eq!(model.num_parameters(), 3 + 3);
        let specs = model.parameters();
        let buffers: Vec<&str> = specs
            .iter()
            .filter(|s| !s.trained)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            buffers,
            [
                "0.running_mean",
                "0.running_var",
                "0.num_batches_tracked",
                "1.running_mean",
                "1.running_var",
                "1.num_batches_tracked"
            ]
        );
        // Stored (and so saved) all the same.
        assert_eq!(model.init_store(0).len(), specs.len());
    }

    #[test]
    fn training_normalises_each_channel_and_updates_the_running_statistics() {
        let model = Sequential::<f64>::new().append(BatchNorm2d::new(3));
        let mut store = model.init_store(0);
        let names: Vec<_> = store.names().map(str::to_owned).collect();
        assert_eq!(
            names,
            [
                "0.weight",
                "0.bias",
                "0.running_mean",
                "0.running_var",
                "0.num_batches_tracked"
            ]
        );
        let x = batch(4, 3);
        let mut session = Session::new(0);
        let (_, grads) = session
            .train_step(&store, |p| {
                let y = model.forward(p.input(x.clone()), p);
                let m = y.mean(vec![0isize, 2, 3], false).array();
                let v = y.var(vec![0isize, 2, 3], false).array();
                assert!(m.iter().all(|m| m.abs() < 1e-12), "{m}");
                assert!(v.iter().all(|v| (v - 1.0).abs() < 1e-3), "{v}");
                (y * y).sum_all()
            })
            .unwrap();
        assert!(!grads.contains("0.running_mean") && grads.contains("0.weight"));
        session.update_buffers(&mut store);
        let xd = x.clone().into_dyn();
        let mean = xd
            .mean_axis(ndarray::Axis(0))
            .unwrap()
            .mean_axis(ndarray::Axis(1))
            .unwrap()
            .mean_axis(ndarray::Axis(1))
            .unwrap();
        let rm = store.get("0.running_mean").unwrap();
        for (r, m) in rm.iter().zip(&mean) {
            assert!((r - 0.1 * m).abs() < 1e-12, "{r} vs {m}");
        }
        // Evaluation uses the running statistics, and a checkpoint carries them.
        let y_eval = session.eval(&store, |p| model.forward(p.input(x.clone()), p));
        let bytes = checkpoint::to_bytes(&store).unwrap();
        let restored: crate::ParamStore<f64> = checkpoint::new_from_bytes(&bytes).unwrap();
        assert_eq!(restored, store);
        let y_again = Session::new(1).eval(&restored, |p| model.forward(p.input(x.clone()), p));
        assert_eq!(y_eval, y_again);
        let rv = store.get("0.running_var").unwrap();
        let want = (&xd
            - &rm
                .clone()
                .into_shape_with_order(IxDyn(&[1, 3, 1, 1]))
                .unwrap())
            / rv.mapv(|v| (v + 1e-5).sqrt())
                .into_shape_with_order(IxDyn(&[1, 3, 1, 1]))
                .unwrap();
        assert!(y_eval.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn batches_are_counted_and_momentum_none_averages_them_alike() {
        let x = |k: f64| array![[k, 10.0 * k], [3.0 * k, 30.0 * k]];
        let run = |bn: BatchNorm1d, steps: usize| {
            let model = Sequential::<f64>::new().append(bn);
            let mut store = model.init_store(0);
            let mut session = Session::new(0);
            for k in 1..=steps {
                session
                    .train_step(&store, |p| model.forward(p.input(x(k as f64)), p).sum_all())
                    .unwrap();
                session.update_buffers(&mut store);
            }
            store
        };
        let store = run(BatchNorm1d::new(2).momentum(None), 3);
        assert_eq!(store.get("0.num_batches_tracked").unwrap()[[]], 3.0);
        // Batch means (2k, 20k) for k = 1, 2, 3: their plain mean is (4, 40). Batch
        // variances (k², 100k²), unbiased over 2 entries ×2: (2k², 200k²), mean (28/3, 2800/3).
        let mean = store.get("0.running_mean").unwrap();
        let var = store.get("0.running_var").unwrap();
        assert!(
            (mean[0] - 4.0).abs() < 1e-12 && (mean[1] - 40.0).abs() < 1e-12,
            "{mean}"
        );
        let want = [28.0 / 3.0, 2800.0 / 3.0];
        assert!(
            var.iter().zip(want).all(|(v, w)| (v - w).abs() < 1e-9),
            "{var}"
        );
        // With a momentum the count still grows; evaluation leaves it alone.
        let store = run(BatchNorm1d::new(2).momentum(0.5), 2);
        assert_eq!(store.get("0.num_batches_tracked").unwrap()[[]], 2.0);
        // 0.5 · (0.5 · 0 + 0.5 · 2) + 0.5 · 4
        assert_eq!(store.get("0.running_mean").unwrap()[0], 2.5);
        let model = Sequential::<f64>::new().append(BatchNorm1d::new(2));
        Session::new(0).eval(&store, |p| model.forward(p.input(x(1.0)), p));
        assert_eq!(store.get("0.num_batches_tracked").unwrap()[[]], 2.0);
        // A checkpoint carries the count.
        let bytes = checkpoint::to_bytes(&store).unwrap();
        let restored: crate::ParamStore<f64> = checkpoint::new_from_bytes(&bytes).unwrap();
        assert_eq!(
            restored.get("0.num_batches_tracked"),
            store.get("0.num_batches_tracked")
        );
    }

    #[test]
    fn batchnorm1d_takes_features_and_sequences_and_refuses_images() {
        let bn = BatchNorm1d::new(2);
        let store = Module::<f64>::init_store(&bn, 0);
        let mut session = Session::new(0);
        let y = session.eval(&store, |p| bn.forward(p.input(array![[1.0, 2.0]]), p));
        assert!((y[[0, 1]] - 2.0 / (1.0f64 + 1e-5).sqrt()).abs() < 1e-12);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session.eval(&store, |p| {
                bn.forward(p.input(ArrayD::<f64>::zeros(IxDyn(&[1, 2, 2, 2]))), p)
            })
        }));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.contains("BatchNorm1d") && msg.contains("[1, 2, 2, 2]"),
            "{msg}"
        );
    }

    #[test]
    fn group_norm_normalises_each_group_of_each_sample() {
        let gn = GroupNorm::new(2, 4);
        let store = Module::<f64>::init_store(&gn, 0);
        let x = batch(2, 4);
        let y = Session::new(0).eval(&store, |p| gn.forward(p.input(x.clone()), p));
        for n in 0..2 {
            for g in 0..2 {
                let part = y.slice(ndarray::s![n, 2 * g..2 * g + 2, .., ..]);
                let m = part.mean().unwrap();
                let v = part.mapv(|v| (v - m) * (v - m)).mean().unwrap();
                assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-3, "{m} {v}");
            }
        }
    }
}
