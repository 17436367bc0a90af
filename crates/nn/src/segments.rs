//! Checkpointed segments of a [`Sequential`]: every `k` layers recorded as one tape node
//! that keeps only the segment's input and parameters, recomputed by the reverse sweep
//! ([`retrograd_tape::checkpoint`]).
//!
//! A plain tape of an `n`-layer chain keeps every layer's intermediates until the sweep.
//! With segments of `k` layers it keeps the `n / k` segment outputs, plus one segment's
//! intermediates while that segment is recomputed: about `n / k + k` activations instead of
//! `n`, least near `k = √n`, for one extra forward pass of the checkpointed layers.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use ndarray::ArrayD;
use rand::RngExt;
use retrograd_tape::checkpoint::{block, checkpoint};
use retrograd_tape::{Tape, Var};

use crate::module::{Module, Sequential};
use crate::params::Params;
use crate::scalar::Scalar;
use crate::store::ParamStore;

/// A segment's layers, owned by its checkpoint block.
type Layers<T> = Vec<(String, Arc<dyn Module<T>>)>;

/// Running statistics a segment's layers reported, by full name.
type Buffers<T> = Rc<RefCell<Vec<(String, ArrayD<T>)>>>;

impl<T: Scalar> Sequential<T> {
    /// Checkpoints every `k` consecutive layers (`k = 0` turns checkpointing off): each
    /// segment is recorded as one node and recomputed in the reverse sweep, trading one
    /// extra forward pass for the memory of the segment's intermediates (the guide's
    /// section on memory says when it pays).
    /// Gradients are the same as without it. A dropout layer inside a segment draws the
    /// same mask when recomputed; running statistics reported by a segment's layers are
    /// those of the first evaluation.
    ///
    /// ```
    /// use retrograd_nn::{Module, Params, layers::{mlp, Activation}};
    /// use retrograd_tape::Tape;
    /// let model = mlp::<f64>(&[4, 8, 8, 8, 2], Activation::Tanh).checkpoint_every(2);
    /// let store = model.init_store(0);
    /// let tape = Tape::<f64>::new();
    /// let p = Params::from_store(&tape, &store, true, 0);
    /// let y = model.forward(p.input(ndarray::Array2::<f64>::ones((3, 4))), &p);
    /// // Seven layers in four segments: one checkpoint node each.
    /// assert_eq!(tape.dump().op("checkpoint").len(), 4);
    /// # let _ = y;
    /// ```
    pub fn checkpoint_every(mut self, k: usize) -> Self {
        self.checkpoint_every = (k > 0).then_some(k);
        self
    }

    /// The segment length in use, if checkpointing is on.
    pub fn checkpointed_every(&self) -> Option<usize> {
        self.checkpoint_every
    }

    /// Chooses the segment length from a memory budget: measures, on one recorded forward
    /// pass of `sample` (a batch of the size training will use), the bytes each layer
    /// keeps on the tape and the size of its output, then takes no checkpointing when the
    /// plain tape fits `budget_bytes`, else the longest segments whose estimated peak
    /// (segment outputs kept, plus the largest segment recomputed) fits, else the segment
    /// length with the least estimate. Returns the model with that policy and the
    /// estimated peak.
    ///
    /// ```
    /// use retrograd_nn::{Module, layers::{mlp, Activation}};
    /// let model = mlp::<f64>(&[16, 64, 64, 64, 64, 16], Activation::Relu);
    /// let store = model.init_store(0);
    /// let x = ndarray::Array2::<f64>::ones((32, 16)).into_dyn();
    /// let (plain, all) = model.checkpoint_for_budget(usize::MAX, x.clone(), &store);
    /// assert_eq!(plain.checkpointed_every(), None);
    /// let (tight, estimate) = plain.checkpoint_for_budget(all / 2, x, &store);
    /// assert!(tight.checkpointed_every().is_some() && estimate < all);
    /// ```
    pub fn checkpoint_for_budget(
        self,
        budget_bytes: usize,
        sample: ArrayD<T>,
        store: &ParamStore<T>,
    ) -> (Self, usize) {
        let costs = self.layer_costs(sample, store);
        let plain: usize = costs.iter().map(|c| c.0).sum();
        if plain <= budget_bytes || costs.is_empty() {
            return (self.checkpoint_every(0), plain);
        }
        let estimates: Vec<(usize, usize)> = (1..=costs.len())
            .map(|k| (k, segmented_peak(&costs, k)))
            .collect();
        let fits = estimates.iter().rev().find(|(_, e)| *e <= budget_bytes);
        let least = estimates.iter().min_by_key(|(_, e)| *e);
        let (k, estimate) = *fits.or(least).expect("at least one layer");
        (self.checkpoint_every(k), estimate)
    }

    /// `(bytes kept on the tape, bytes of the output)` per layer, measured on one pass.
    fn layer_costs(&self, sample: ArrayD<T>, store: &ParamStore<T>) -> Vec<(usize, usize)> {
        let tape = Tape::<T>::new();
        let p = Params::from_store(&tape, store, true, 0);
        let mut x = p.input(sample);
        let mut before = tape.summary().value_bytes;
        let mut costs = Vec::with_capacity(self.layers.len());
        for (name, layer) in &self.layers {
            x = layer.forward_tracked(x, &p.child(name));
            let after = tape.summary().value_bytes;
            costs.push((after - before, x.value().bytes()));
            before = after;
        }
        costs
    }

    /// The forward pass in checkpointed segments of `k` layers.
    #[track_caller]
    pub(crate) fn forward_checkpointed<'t>(
        &self,
        x: Var<'t, T>,
        p: &Params<'t, T>,
        k: usize,
    ) -> Var<'t, T> {
        let mut x = x;
        for segment in self.layers.chunks(k) {
            x = checkpoint_segment(segment.to_vec(), x, p);
        }
        x
    }
}

/// The estimated peak of segments of `k` layers: every segment's output is kept, and
/// while the largest segment is recomputed its intermediates are too.
fn segmented_peak(costs: &[(usize, usize)], k: usize) -> usize {
    let outputs: usize = costs.chunks(k).map(|s| s[s.len() - 1].1).sum();
    let inside = costs
        .chunks(k)
        .map(|s| s.iter().map(|c| c.0).sum::<usize>())
        .max()
        .unwrap_or(0);
    outputs + inside
}

/// One segment as a checkpoint: its input and its parameters go in; the block rebuilds a
/// [`Params`] view on whichever tape it runs on, with the same names, mode and random
/// stream each time.
#[track_caller]
fn checkpoint_segment<'t, T: Scalar>(
    layers: Layers<T>,
    x: Var<'t, T>,
    p: &Params<'t, T>,
) -> Var<'t, T> {
    // Each parameter by its name in this view (to look it up) and its full name (to
    // rebuild the view on another tape).
    let (names, full_names): (Vec<String>, Vec<String>) = layers
        .iter()
        .flat_map(|(name, layer)| {
            layer.parameters().into_iter().map(move |spec| {
                let relative = format!("{name}.{}", spec.name);
                (relative.clone(), relative)
            })
        })
        .map(|(relative, _)| {
            let full = p.full_name(&relative);
            (relative, full)
        })
        .unzip();
    let mut inputs = vec![x];
    inputs.extend(names.iter().map(|n| p.get(n)));
    let prefix = p.prefix().to_owned();
    let (training, seed) = (p.is_training(), p.with_rng(|r| r.random::<u64>()));
    let reported: Buffers<T> = Rc::default();
    let sink = reported.clone();
    let own_prefix = prefix.clone();
    let segment = block(move |v: &[Var<'_, T>]| {
        let mut root = Params::new(v[0].tape(), seed).training(training);
        for (full, var) in full_names.iter().zip(&v[1..]) {
            root = root.insert(full, *var);
        }
        let view = root.child(&own_prefix);
        let mut x = v[0];
        for (name, layer) in &layers {
            x = layer.forward_tracked(x, &view.child(name));
        }
        *sink.borrow_mut() = root.take_buffers();
        x
    });
    let y = checkpoint(segment, &inputs);
    for (full, value) in reported.take() {
        let own = full
            .strip_prefix(&prefix)
            .map(|n| n.trim_start_matches('.'));
        p.update_buffer(own.unwrap_or(&full), value);
    }
    y
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Array4};
    use proptest::prelude::*;
    use retrograd_tape::Tensor;

    use crate::layers::{Activation, Dropout, Linear, mlp};
    use crate::norm::BatchNorm2d;
    use crate::{Module, Sequential, Session, loss};

    fn grads_of(model: &Sequential<f64>, x: &Array2<f64>) -> (f64, crate::ParamGradients<f64>) {
        let store = model.init_store(3);
        let mut session = Session::new(7);
        let target = Array2::<f64>::zeros((x.nrows(), 2));
        session
            .train_step(&store, |p| {
                let y = model.forward(p.input(x.clone()), p);
                loss::mse(&y, &p.input(target.clone()))
            })
            .unwrap()
    }

    proptest! {
        #![proptest_config(crate::test_util::proptest_config())]

        /// Whatever the segment length, the loss and every gradient are the plain tape's.
        #[test]
        fn segments_give_the_plain_gradients(
            values in proptest::collection::vec(-2.0f64..2.0, 12),
            k in 1usize..9,
        ) {
            let model = || {
                Sequential::new()
                    .append_named("body", mlp(&[3, 5, 4, 5], Activation::Tanh))
                    .append(Linear::new(5, 2))
            };
            let x = Array2::from_shape_vec((4, 3), values).unwrap();
            let (plain_loss, plain) = grads_of(&model(), &x);
            let inner = mlp::<f64>(&[3, 5, 4, 5], Activation::Tanh).checkpoint_every(k);
            let segmented = Sequential::new()
                .append_named("body", inner)
                .append(Linear::new(5, 2))
                .checkpoint_every(k);
            let (loss, grads) = grads_of(&segmented, &x);
            prop_assert!((loss - plain_loss).abs() <= 1e-12);
            prop_assert_eq!(grads.len(), plain.len());
            for (name, g) in &plain {
                let other: &Tensor<f64> = &grads[name];
                for (a, b) in g.iter().zip(other.iter()) {
                    prop_assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "{}: {} vs {}", name, a, b);
                }
            }
        }
    }

    /// The recomputation draws the mask the forward pass drew: the loss is linear in the
    /// weight, so it equals ⟨∂loss/∂W, W⟩ only if both used the same mask.
    #[test]
    fn dropout_inside_a_segment_recomputes_the_same_mask() {
        let model = Sequential::<f64>::new()
            .append(Dropout::new(0.5))
            .append(Linear::new(16, 1).no_bias())
            .checkpoint_every(2);
        let store = model.init_store(1);
        let mut session = Session::new(11);
        let x = Array2::from_shape_fn((8, 16), |(i, j)| 1.0 + (i * 16 + j) as f64 / 7.0);
        let (loss, grads) = session
            .train_step(&store, |p| {
                retrograd_tape::arith::sum_to(&model.forward(p.input(x.clone()), p), &[])
            })
            .unwrap();
        let w = store.get("1.weight").unwrap();
        let inner: f64 = grads["1.weight"].iter().zip(w).map(|(g, w)| g * w).sum();
        assert!(
            (loss - inner).abs() <= 1e-9 * loss.abs().max(1.0),
            "{loss} vs {inner}"
        );
    }

    /// Running statistics reported inside a segment reach the store as without it.
    #[test]
    fn running_statistics_of_a_segment_reach_the_store() {
        let run = |k: usize| {
            let model = Sequential::<f64>::new()
                .append(BatchNorm2d::new(3))
                .append(Activation::Tanh)
                .checkpoint_every(k);
            let mut store = model.init_store(0);
            let mut session = Session::new(0);
            let x = Array4::from_shape_fn((2, 3, 2, 2), |(a, b, c, d)| (a + 2 * b + c * d) as f64);
            session
                .train_step(&store, |p| {
                    let y = model.forward(p.input(x.clone()), p);
                    retrograd_tape::arith::sum_to(&(y * y), &[])
                })
                .unwrap();
            session.update_buffers(&mut store);
            store
        };
        assert_eq!(run(0), run(2));
        assert_ne!(
            run(0),
            Sequential::<f64>::new()
                .append(BatchNorm2d::new(3))
                .init_store(0)
        );
    }
}
