//! Data-parallel training on the threads of one machine.
//!
//! [`DataParallel::train_step`] is [`Session::train_step`](crate::Session::train_step) for
//! a batch split across threads: the batch's rows are cut into one contiguous [`Shard`]
//! per thread, each thread records its own tape (tapes stay single-threaded) and runs the
//! user's loss closure on its shard, and the shards' gradients are all-reduced into one
//! set, each weighted by its share of the rows. The result is what one thread computes on
//! the whole batch, up to floating-point rounding, and the caller applies one optimiser
//! step with it, exactly as in single-threaded training:
//!
//! ```
//! use ndarray::{Array2, array};
//! use retrograd_nn::{DataParallel, Module, layers::{mlp, Activation}, loss};
//! use retrograd_nn::optim::{Optimizer, Sgd};
//!
//! let model = mlp::<f32>(&[2, 16, 2], Activation::Relu);
//! let mut store = model.init_store(0);
//! let mut opt = Sgd::new(0.1);
//! let x: Array2<f32> = array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
//! let y = [0, 1, 1, 0];
//! let mut trainer = DataParallel::new(2, 0); // 2 threads (0: one per core)
//! for _ in 0..10 {
//!     let (_loss, grads) = trainer.train_step(&store, x.nrows(), |p, shard| {
//!         let logits = model.forward(p.input(shard.rows(&x)), p);
//!         loss::cross_entropy(&logits, shard.slice(&y))
//!     })?;
//!     opt.step(&mut store, &grads)?;
//!     trainer.update_buffers(&mut store); // batch norms' running statistics, if any
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The loss closure must return the **mean** over its shard's rows (as every loss in
//! [`loss`](crate::loss) does): the all-reduce weights shard `i`'s gradient by
//! `rows_i / batch`, which turns shard means into the batch mean. A loss that sums over
//! rows would come out divided by the thread count.
//!
//! While a step runs, the kernels of each worker use `num_threads() / workers` threads
//! (at least one; see [`retrograd_ops::threads`]), so that workers and kernel threads do
//! not compete for the same cores.
//!
//! Equality with single-threaded training: the two compute the same sums in a different
//! order, so they agree to f32 rounding, not bit for bit. The tests of this module train
//! an MLP for 20 steps both ways and find every parameter within `1e-5·(1 + |θ|)` in f32
//! (`1e-12·(1 + |θ|)` in f64). Layers that draw random numbers (dropout) draw a different
//! stream on each shard, so with them the two runs are equal only in distribution.
//!
//! Batch norms couple the rows of a batch, so with them the two are not equal either: in
//! training each shard is normalised with its own statistics (as in PyTorch's
//! `DistributedDataParallel` without `SyncBatchNorm`). Their running statistics are kept:
//! [`DataParallel::update_buffers`] writes the shards' reported values averaged by rows,
//! which for the running mean is exactly the update from the whole batch's mean; the
//! running variance is the shards' variances averaged, without the spread between the
//! shards' means.

use std::ops::Range;

use ndarray::{Array, Axis, RemoveAxis, Slice};
use retrograd_ops::threads::{num_threads, with_num_threads};
use retrograd_tape::{Tape, Tensor, Var};

use crate::gradients::ParamGradients;
use crate::params::{Buffers, Params, StepResult, step_on, write_buffers};
use crate::scalar::{Scalar, cast};
use crate::store::ParamStore;

/// One thread's (or one process's) part of a batch: a contiguous range of its rows.
///
/// The loss closure of [`DataParallel::train_step`] receives its shard and cuts its inputs
/// and labels with [`rows`](Shard::rows) and [`slice`](Shard::slice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
    rows: Range<usize>,
    batch: usize,
}

impl Shard {
    /// Splits a batch of `batch` rows into at most `parts` contiguous shards whose sizes
    /// differ by at most one row; no shard is empty (a batch smaller than `parts` gives
    /// `batch` shards of one row). Shard `i` comes before shard `i + 1` in the batch.
    ///
    /// ```
    /// use retrograd_nn::parallel::Shard;
    /// let shards = Shard::split(10, 3);
    /// let ranges: Vec<_> = shards.iter().map(|s| s.range()).collect();
    /// assert_eq!(ranges, [0..4, 4..7, 7..10]);
    /// assert_eq!(Shard::split(2, 4).len(), 2);
    /// ```
    pub fn split(batch: usize, parts: usize) -> Vec<Shard> {
        Shard::split_rows(0..batch, parts, batch)
    }

    /// Splits the rows `rows` of a batch of `batch` rows into at most `parts` contiguous
    /// shards as [`split`](Shard::split) does; each shard's [`weight`](Shard::weight) is
    /// its share of the whole batch. This is how a process that owns part of a batch
    /// (see `distributed`) divides its part among its threads.
    ///
    /// # Panics
    /// When `rows` does not lie within `0..batch`.
    #[track_caller]
    pub fn split_rows(rows: Range<usize>, parts: usize, batch: usize) -> Vec<Shard> {
        assert!(
            rows.start <= rows.end && rows.end <= batch,
            "Shard::split_rows: rows {rows:?} are not within a batch of {batch}"
        );
        let len = rows.len();
        let count = parts.max(1).min(len.max(1));
        let (base, extra) = (len / count, len % count);
        let mut start = rows.start;
        (0..count)
            .map(|index| {
                let len = base + usize::from(index < extra);
                let shard = Shard {
                    index,
                    count,
                    rows: start..start + len,
                    batch,
                };
                start += len;
                shard
            })
            .collect()
    }

    /// This shard's position among [`count`](Shard::count) shards (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The number of shards the batch was split into.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The batch rows of this shard.
    pub fn range(&self) -> Range<usize> {
        self.rows.clone()
    }

    /// The number of rows in this shard.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True for a shard without rows (only when the whole batch is empty).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The number of rows in the whole batch.
    pub fn batch_len(&self) -> usize {
        self.batch
    }

    /// This shard's weight in the all-reduce: its share of the batch's rows.
    pub fn weight(&self) -> f64 {
        if self.batch == 0 {
            0.0
        } else {
            self.len() as f64 / self.batch as f64
        }
    }

    /// This shard's rows of `data` (its first axis is the batch), as an owned array ready
    /// for [`Params::input`].
    ///
    /// # Panics
    /// When `data` has fewer rows than the batch this shard was cut from.
    #[track_caller]
    pub fn rows<A: Clone, D: RemoveAxis>(&self, data: &Array<A, D>) -> Array<A, D> {
        assert!(
            data.ndim() > 0 && data.len_of(Axis(0)) >= self.rows.end,
            "Shard::rows: shard {} of {} needs rows {:?}, but the data has shape {:?}",
            self.index,
            self.count,
            self.rows,
            data.shape()
        );
        data.slice_axis(Axis(0), Slice::from(self.rows.clone()))
            .to_owned()
    }

    /// This shard's part of a per-row slice (labels, targets).
    ///
    /// # Panics
    /// When `items` is shorter than the batch this shard was cut from.
    #[track_caller]
    pub fn slice<'a, L>(&self, items: &'a [L]) -> &'a [L] {
        assert!(
            items.len() >= self.rows.end,
            "Shard::slice: shard {} of {} needs items {:?}, but the slice has {}",
            self.index,
            self.count,
            self.rows,
            items.len()
        );
        &items[self.rows.clone()]
    }
}

/// Trains on a batch split across threads, one tape per thread, and returns one averaged
/// set of gradients: see the [module documentation](self).
#[derive(Debug)]
pub struct DataParallel<T> {
    threads: usize,
    seed: u64,
    steps: u64,
    /// The buffer values the last step reported, averaged over the shards by rows.
    buffers: Buffers<T>,
}

impl<T: Scalar> DataParallel<T> {
    /// A trainer on `threads` threads (`0`: [`num_threads`], every core by default) whose
    /// stochastic layers draw from streams derived from `seed`, the step number and the
    /// shard.
    pub fn new(threads: usize, seed: u64) -> Self {
        DataParallel {
            threads: if threads == 0 { num_threads() } else { threads },
            seed,
            steps: 0,
            buffers: Vec::new(),
        }
    }

    /// The number of worker threads (shards per batch).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Writes the non-trained state the last [`train_step`](DataParallel::train_step)
    /// reported (a batch norm's running statistics) into `store`, as
    /// [`Session::update_buffers`](crate::Session::update_buffers) does: call it once per
    /// step, beside the optimiser's `step`. Each shard reports its own values; what is
    /// written is their average weighted by the shards' rows (see the module docs for what
    /// that means for batch norms).
    pub fn update_buffers(&mut self, store: &mut ParamStore<T>) {
        write_buffers(&mut self.buffers, store);
    }

    /// The buffer values the last step reported (averaged over shards), taken out.
    #[cfg(feature = "mpi")]
    pub(crate) fn take_buffers(&mut self) -> Buffers<T> {
        std::mem::take(&mut self.buffers)
    }

    /// Replaces the buffer values [`update_buffers`](DataParallel::update_buffers) writes.
    #[cfg(feature = "mpi")]
    pub(crate) fn set_buffers(&mut self, buffers: Buffers<T>) {
        self.buffers = buffers;
    }

    /// One training step on a batch of `batch` rows: `loss_fn(params, shard)` runs on every
    /// shard, each on its own thread and tape, and must return the mean loss over the
    /// shard's rows. Returns the batch's mean loss and the all-reduced gradients by name,
    /// ready for [`Optimizer::step`](crate::optim::Optimizer::step). A parameter gets an
    /// entry when the loss depends on it on at least one shard.
    ///
    /// # Errors
    /// The first shard's error (in shard order) when a backward sweep fails.
    ///
    /// # Panics
    /// When `batch` is 0; a panic in `loss_fn` on any thread is passed on to the caller.
    #[track_caller]
    pub fn train_step<F>(
        &mut self,
        store: &ParamStore<T>,
        batch: usize,
        loss_fn: F,
    ) -> Result<(T, ParamGradients<T>), retrograd_tape::Error>
    where
        F: for<'t> Fn(&Params<'t, T>, &Shard) -> Var<'t, T> + Sync,
    {
        assert!(batch > 0, "DataParallel::train_step: the batch is empty");
        self.train_rows(store, 0..batch, batch, loss_fn)
    }

    /// [`train_step`](DataParallel::train_step) on the rows `rows` of a batch of `batch`
    /// rows: the shards' weights are their shares of the whole batch, so the result is this
    /// part's contribution to the batch mean (what a process adds into an all-reduce).
    pub(crate) fn train_rows<F>(
        &mut self,
        store: &ParamStore<T>,
        rows: Range<usize>,
        batch: usize,
        loss_fn: F,
    ) -> Result<(T, ParamGradients<T>), retrograd_tape::Error>
    where
        F: for<'t> Fn(&Params<'t, T>, &Shard) -> Var<'t, T> + Sync,
    {
        self.steps += 1;
        let shards = Shard::split_rows(rows, self.threads, batch);
        let kernel_threads = (num_threads() / shards.len()).max(1);
        let seed = self
            .seed
            .wrapping_add(self.steps.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let run = |shard: &Shard| {
            // Keyed by the first row, which is unique across the processes of a distributed step too.
            let shard_seed = seed ^ (shard.rows.start as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            with_num_threads(kernel_threads, || {
                step_on(&Tape::new(), store, shard_seed, |p| loss_fn(p, shard))
            })
        };
        // Workers are rayon's pool threads, which live across steps: their allocator
        // arenas and the kernel's packing buffers are warm, unlike threads spawned anew.
        let mut results: Vec<Option<ShardResult<T>>> = shards.iter().map(|_| None).collect();
        let run = &run;
        rayon::scope(|scope| {
            let (first, rest) = results.split_at_mut(1);
            for (slot, shard) in rest.iter_mut().zip(&shards[1..]) {
                scope.spawn(move |_| *slot = Some(run(shard)));
            }
            // This thread works on the first shard instead of waiting.
            first[0] = Some(run(&shards[0]));
        });
        // rayon::scope passes a worker's panic on to this thread, so every slot is filled.
        let results: Vec<ShardResult<T>> = results.into_iter().flatten().collect();
        let mut parts = Vec::with_capacity(results.len());
        let mut buffers = Vec::with_capacity(results.len());
        for (shard, result) in shards.iter().zip(results) {
            let (loss, grads, reported) = result?;
            parts.push((shard.weight(), loss, grads));
            buffers.push((shard.weight(), reported));
        }
        self.buffers = weighted_buffers(buffers);
        Ok(weighted_sum(store, parts))
    }
}

/// What one shard's training step returns.
type ShardResult<T> = Result<StepResult<T>, retrograd_tape::Error>;

/// The shards' reported buffer values averaged by name, each shard weighted by its rows
/// (`Σ wᵢ·vᵢ / Σ wᵢ` over the shards that reported the name), in the order the first
/// shard reported them. Batch norms' running means come out as the update from the whole
/// batch's mean, which is the row-weighted mean of the shards' means.
fn weighted_buffers<T: Scalar>(parts: Vec<(f64, Buffers<T>)>) -> Buffers<T> {
    let mut sums: Vec<(String, ndarray::ArrayD<T>, f64)> = Vec::new();
    for (weight, reported) in parts {
        let w: T = cast(weight);
        for (name, value) in reported {
            match sums.iter_mut().find(|(n, _, _)| *n == name) {
                Some((_, acc, total)) if acc.shape() == value.shape() => {
                    acc.zip_mut_with(&value, |a, &v| *a += w * v);
                    *total += weight;
                }
                // A shard that reports another shape is not averaged with the others.
                Some(_) => {}
                None => sums.push((name, value.mapv(|v| w * v), weight)),
            }
        }
    }
    sums.into_iter()
        .filter(|(_, _, total)| *total > 0.0)
        .map(|(name, acc, total)| {
            let scale: T = cast(1.0 / total);
            (name, acc.mapv(|v| v * scale))
        })
        .collect()
}

/// `Σ wᵢ·lossᵢ` and `Σ wᵢ·gradsᵢ` by name, added in the order of `parts` (so the result
/// does not depend on thread timing), the names in `store` order. A name missing from a
/// part counts as a zero gradient there; a name missing from every part gets no entry.
/// Each name's first gradient becomes its sum, scaled and added to where it lies.
pub(crate) fn weighted_sum<T: Scalar>(
    store: &ParamStore<T>,
    mut parts: Vec<(f64, T, ParamGradients<T>)>,
) -> (T, ParamGradients<T>) {
    let mut loss = T::zero();
    for (weight, part_loss, _) in &parts {
        loss += cast::<T>(*weight) * *part_loss;
    }
    let mut sum = ParamGradients::with_capacity(store.len());
    for name in store.names() {
        let mut acc: Option<Tensor<T>> = None;
        for (weight, _, grads) in &mut parts {
            let Some(g) = grads.get_mut(name) else {
                continue;
            };
            let w: T = cast(*weight);
            match &mut acc {
                Some(acc) => scaled_add(acc, w, g),
                None => {
                    let mut g = std::mem::replace(g, Tensor::scalar(T::zero()));
                    g.view_mut().mapv_inplace(|v| v * w);
                    acc = Some(g);
                }
            }
        }
        if let Some(acc) = acc {
            sum.insert(name, acc);
        }
    }
    (loss, sum)
}

/// `acc += w·g`.
fn scaled_add<T: Scalar>(acc: &mut Tensor<T>, w: T, g: &Tensor<T>) {
    ndarray::Zip::from(acc.view_mut())
        .and(g.view())
        .for_each(|a, &v| *a += w * v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Activation, mlp};
    use crate::loss;
    use crate::module::Module;
    use crate::optim::{Optimizer, Sgd};
    use crate::params::Session;
    use crate::test_util::proptest_config;
    use ndarray::Array2;
    use proptest::prelude::*;

    /// A deterministic batch: inputs in about [-1, 1], labels cycling through `classes`.
    fn batch<T: Scalar>(rows: usize, cols: usize, classes: usize) -> (Array2<T>, Vec<usize>) {
        let x = Array2::from_shape_fn((rows, cols), |(i, j)| {
            cast(((i * cols + j) as f64 * 0.37).sin())
        });
        let y = (0..rows).map(|i| (i * 7 + 3) % classes).collect();
        (x, y)
    }

    /// Trains the same MLP for `steps` steps with SGD + momentum, single-threaded on the
    /// whole batch and data-parallel on `threads` threads; returns both stores.
    fn train_both<T: Scalar>(
        rows: usize,
        threads: usize,
        steps: usize,
    ) -> (ParamStore<T>, ParamStore<T>) {
        let model = mlp::<T>(&[6, 16, 16, 3], Activation::Tanh);
        let (x, y) = batch::<T>(rows, 6, 3);
        let mut single = model.init_store(7);
        let mut parallel = single.clone();
        let mut opt_single = Sgd::new(0.1).momentum(0.9);
        let mut opt_parallel = Sgd::new(0.1).momentum(0.9);
        let mut session = Session::new(0);
        let mut trainer = DataParallel::new(threads, 0);
        for _ in 0..steps {
            let (loss_1, grads) = session
                .train_step(&single, |p| {
                    loss::cross_entropy(&model.forward(p.input(x.clone()), p), &y)
                })
                .unwrap();
            opt_single.step(&mut single, &grads).unwrap();
            let (loss_n, grads) = trainer
                .train_step(&parallel, rows, |p, shard| {
                    loss::cross_entropy(&model.forward(p.input(shard.rows(&x)), p), shard.slice(&y))
                })
                .unwrap();
            opt_parallel.step(&mut parallel, &grads).unwrap();
            let (l1, ln) = (loss_1.as_f64(), loss_n.as_f64());
            assert!(
                (l1 - ln).abs() <= 1e-5 * (1.0 + l1.abs()),
                "loss {l1} vs {ln}"
            );
        }
        (single, parallel)
    }

    #[test]
    fn batch_norm_statistics_are_kept_and_averaged_over_the_shards_by_rows() {
        use crate::Sequential;
        use crate::layers::Linear;
        use crate::norm::BatchNorm1d;
        let model = Sequential::<f64>::new()
            .append(Linear::new(6, 4))
            .append(BatchNorm1d::new(4))
            .append(Linear::new(4, 3));
        let (x, y) = batch::<f64>(10, 6, 3);
        let mut single = model.init_store(3);
        let mut session = Session::new(0);
        session
            .train_step(&single, |p| {
                loss::cross_entropy(&model.forward(p.input(x.clone()), p), &y)
            })
            .unwrap();
        session.update_buffers(&mut single);
        for threads in [1, 3] {
            let mut parallel = model.init_store(3);
            let mut trainer = DataParallel::new(threads, 0);
            trainer
                .train_step(&parallel, 10, |p, shard| {
                    let logits = model.forward(p.input(shard.rows(&x)), p);
                    loss::cross_entropy(&logits, shard.slice(&y))
                })
                .unwrap();
            trainer.update_buffers(&mut parallel);
            // The running mean moves towards the batch mean, which is the shards' means
            // weighted by their rows (shards of 4, 3 and 3 rows).
            for name in ["1.running_mean", "1.num_batches_tracked"] {
                let (a, b) = (single.get(name).unwrap(), parallel.get(name).unwrap());
                assert!(
                    a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-12),
                    "{name} on {threads} threads: {a} vs {b}"
                );
            }
            // Each shard's variance misses the spread between the shards' means, so only
            // one shard gives the batch's running variance.
            let (a, b) = (
                single.get("1.running_var").unwrap(),
                parallel.get("1.running_var").unwrap(),
            );
            let same = a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-12);
            assert_eq!(same, threads == 1, "running_var: {a} vs {b}");
            assert!(b.iter().all(|v| v.is_finite() && *v > 0.0));
        }
    }

    #[test]
    fn the_weighted_sum_adds_into_the_first_gradient_in_store_order() {
        let store: ParamStore<f64> = [
            ("w", ndarray::ArrayD::zeros(ndarray::IxDyn(&[2]))),
            ("b", ndarray::ArrayD::zeros(ndarray::IxDyn(&[]))),
        ]
        .into_iter()
        .collect();
        let first: ParamGradients<f64> = [("w", Tensor::from([1.0, 2.0]))].into_iter().collect();
        let second: ParamGradients<f64> =
            [("b", Tensor::scalar(4.0)), ("w", Tensor::from([3.0, 5.0]))]
                .into_iter()
                .collect();
        let buffer = first["w"].view().as_ptr();
        let (loss, sum) = weighted_sum(&store, vec![(0.25, 2.0, first), (0.75, 6.0, second)]);
        assert_eq!(loss, 0.25 * 2.0 + 0.75 * 6.0);
        assert_eq!(
            sum.names().collect::<Vec<_>>(),
            ["w", "b"],
            "the store's order"
        );
        assert_eq!(
            sum["w"],
            ndarray::array![0.25 + 0.75 * 3.0, 0.5 + 0.75 * 5.0]
        );
        assert_eq!(sum["b"].item(), 3.0);
        assert_eq!(
            sum["w"].view().as_ptr(),
            buffer,
            "summed where it lay, not copied"
        );
    }

    /// The largest `|a - b| / (1 + |a|)` over every parameter entry.
    fn max_relative_gap<T: Scalar>(a: &ParamStore<T>, b: &ParamStore<T>) -> f64 {
        let mut gap = 0.0f64;
        for (name, va) in a.iter() {
            let vb = b.get(name).expect("same names");
            for (&p, &q) in va.iter().zip(vb.iter()) {
                let (p, q) = (p.as_f64(), q.as_f64());
                gap = gap.max((p - q).abs() / (1.0 + p.abs()));
            }
        }
        gap
    }

    #[test]
    fn twenty_steps_on_threads_equal_single_threaded_training_to_rounding() {
        for threads in [2, 3, 4] {
            let (single, parallel) = train_both::<f32>(30, threads, 20);
            let gap = max_relative_gap(&single, &parallel);
            assert!(gap <= 1e-5, "f32, {threads} threads: {gap:e}");
            let (single, parallel) = train_both::<f64>(30, threads, 20);
            let gap = max_relative_gap(&single, &parallel);
            assert!(gap <= 1e-12, "f64, {threads} threads: {gap:e}");
            // And the training moved the parameters: equality is not trivially true.
            let init = mlp::<f64>(&[6, 16, 16, 3], Activation::Tanh).init_store(7);
            assert!(max_relative_gap(&init, &single) > 1e-3);
        }
    }

    #[test]
    fn shards_cover_the_batch_in_order() {
        for batch in 1..20 {
            for parts in 1..6 {
                let shards = Shard::split(batch, parts);
                assert_eq!(shards.len(), parts.min(batch));
                assert_eq!(shards[0].range().start, 0);
                assert_eq!(shards.last().map(|s| s.range().end), Some(batch));
                for pair in shards.windows(2) {
                    assert_eq!(pair[0].range().end, pair[1].range().start);
                    assert!(pair[0].len() >= pair[1].len() && pair[0].len() <= pair[1].len() + 1);
                }
                let total: f64 = shards.iter().map(Shard::weight).sum();
                assert!((total - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn an_error_on_one_shard_is_returned_and_a_panic_passed_on() {
        let model = mlp::<f64>(&[2, 2], Activation::Relu);
        let store = model.init_store(0);
        let x = Array2::<f64>::ones((4, 2));
        let mut trainer = DataParallel::new(2, 0);
        // A non-scalar "loss" on the second shard only: backward refuses it.
        let result = trainer.train_step(&store, 4, |p, shard| {
            let out = model.forward(p.input(shard.rows(&x)), p);
            if shard.index() == 1 {
                out
            } else {
                loss::cross_entropy(&out, &[0, 1])
            }
        });
        assert!(result.is_err());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = trainer.train_step(&store, 4, |p, shard| {
                assert!(shard.index() != 1, "shard one fails");
                loss::cross_entropy(&model.forward(p.input(shard.rows(&x)), p), &[0, 1])
            });
        }));
        let message = caught.expect_err("the worker's panic reaches the caller");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"shard one fails"));
    }

    proptest! {
        #![proptest_config(proptest_config())]

        /// For any batch size and thread count, the all-reduced gradient is the whole
        /// batch's gradient to f64 rounding.
        #[test]
        fn the_all_reduced_gradient_is_the_whole_batch_gradient(rows in 1usize..24, threads in 1usize..6, seed in 0u64..1000) {
            let model = mlp::<f64>(&[3, 5, 4], Activation::Tanh);
            let store = model.init_store(seed);
            let (x, y) = batch::<f64>(rows, 3, 4);
            let (loss_1, whole) = crate::params::train_step(&store, 0, |p| {
                loss::cross_entropy(&model.forward(p.input(x.clone()), p), &y)
            }).unwrap();
            let (loss_n, reduced) = DataParallel::new(threads, 0).train_step(&store, rows, |p, shard| {
                loss::cross_entropy(&model.forward(p.input(shard.rows(&x)), p), shard.slice(&y))
            }).unwrap();
            prop_assert!((loss_1 - loss_n).abs() <= 1e-12 * (1.0 + loss_1.abs()));
            prop_assert_eq!(whole.len(), reduced.len());
            for (name, g) in &whole {
                for (a, b) in g.iter().zip(reduced[name].iter()) {
                    prop_assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "{}: {} vs {}", name, a, b);
                }
            }
        }
    }
}
