//! Data-parallel training across processes and machines through MPI (the `mpi` feature).
//!
//! Start one process per rank with `mpirun` (Open MPI from the system's packages; the
//! Rust side is the [`mpi`](https://docs.rs/mpi) crate, rsmpi). Every rank builds the same
//! model and store, [`Distributed::broadcast_store`] makes rank 0's parameters everyone's,
//! and each [`Distributed::train_step`] trains the rank's contiguous part of the global
//! batch (split further across the rank's threads by a [`DataParallel`]), then sums the
//! parts' weighted gradients and losses with one all-reduce. Every rank therefore applies
//! the same optimiser step to the same parameters and stays identical to the others,
//! which [`Distributed::parameters_agree`] checks by comparing a hash of the store. The
//! same all-reduce averages the buffer values the ranks report (a batch norm's running
//! statistics, weighted by each rank's rows, as [`DataParallel`] averages its threads'),
//! so after `threads.update_buffers(&mut store)` the buffers agree across ranks too.
//!
//! ```no_run
//! use ndarray::Array2;
//! use retrograd_nn::distributed::Distributed;
//! use retrograd_nn::{DataParallel, Module, layers::{mlp, Activation}, loss};
//! use retrograd_nn::optim::{Optimizer, Sgd};
//!
//! let dist = Distributed::init()?;
//! let model = mlp::<f32>(&[4, 8, 2], Activation::Relu);
//! let mut store = model.init_store(0);
//! dist.broadcast_store(&mut store);
//! let (x, y) = (Array2::<f32>::ones((16, 4)), vec![1usize; 16]);
//! let mut threads = DataParallel::new(0, 0);
//! let mut opt = Sgd::new(0.1);
//! let (_loss, grads) = dist.train_step(&mut threads, &store, 16, |p, shard| {
//!     loss::cross_entropy(&model.forward(p.input(shard.rows(&x)), p), shard.slice(&y))
//! })?;
//! opt.step(&mut store, &grads)?;
//! assert!(dist.parameters_agree(&store));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Failure behaviour. A rank that panics aborts the whole job (`MPI_Abort`, through a
//! panic hook installed by [`Distributed::init`]) after printing its panic message, and a
//! rank killed by a signal makes `mpirun` terminate the others: no rank waits forever in
//! an all-reduce for a peer that is gone. A backward sweep that fails on one rank does not
//! leave the others waiting either: the failure travels in the all-reduce, the failing
//! rank gets its own error and the others [`DistributedError::Remote`]. A program that
//! stops on an error must stop on every rank, or call [`Distributed::abort`].

use std::fmt;
use std::hash::Hasher;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Equivalence, Root};
use retrograd_tape::{Tensor, Var};

use crate::gradients::ParamGradients;
use crate::parallel::{DataParallel, Shard};
use crate::params::{Buffers, Params};
use crate::scalar::{Scalar, cast};
use crate::store::ParamStore;

/// The `mpi` crate this module is built on, so callers name the same version.
pub use mpi;

/// Why a distributed step failed.
#[derive(Debug)]
pub enum DistributedError {
    /// `MPI_Init` failed or MPI was already initialised in this process.
    Init,
    /// This rank's backward sweep failed.
    Local(retrograd_tape::Error),
    /// The backward sweep failed on this many other ranks (each reports its own error).
    Remote {
        /// How many ranks failed.
        ranks: usize,
    },
}

impl fmt::Display for DistributedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DistributedError::Init => write!(
                f,
                "MPI could not be initialised (it already was in this process, or MPI_Init failed)"
            ),
            DistributedError::Local(e) => write!(f, "this rank's training step failed: {e}"),
            DistributedError::Remote { ranks } => write!(
                f,
                "the training step failed on {ranks} other rank(s); see their messages"
            ),
        }
    }
}

impl std::error::Error for DistributedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DistributedError::Local(e) => Some(e),
            _ => None,
        }
    }
}

/// This process's place in an MPI job, and the collective operations data-parallel
/// training needs. Owns MPI's initialisation: dropping it finalises MPI.
pub struct Distributed {
    world: SimpleCommunicator,
    /// Kept for its `Drop`, which calls `MPI_Finalize`.
    _universe: Universe,
}

impl fmt::Debug for Distributed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Distributed")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .finish()
    }
}

impl Distributed {
    /// Initialises MPI (once per process) and installs a panic hook that aborts the whole
    /// job after the panic message is printed, so that peers never wait for a dead rank.
    /// Run without `mpirun`, the process is a job of one rank.
    ///
    /// # Errors
    /// [`DistributedError::Init`] when MPI was already initialised or cannot start.
    pub fn init() -> Result<Self, DistributedError> {
        let universe = mpi::initialize().ok_or(DistributedError::Init)?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if !mpi::environment::is_initialized() || mpi::environment::is_finalized() {
                return;
            }
            let world = SimpleCommunicator::world();
            if world.size() > 1 {
                eprintln!("rank {}: aborting the MPI job after a panic", world.rank());
                world.abort(101);
            }
        }));
        Ok(Distributed {
            world: universe.world(),
            _universe: universe,
        })
    }

    /// The world communicator, for collectives of your own.
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// This process's rank, `0..size()`.
    pub fn rank(&self) -> usize {
        usize::try_from(self.world.rank()).unwrap_or(0)
    }

    /// The number of ranks in the job.
    pub fn size(&self) -> usize {
        usize::try_from(self.world.size()).unwrap_or(1)
    }

    /// True on rank 0, the rank that saves checkpoints and prints reports.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Ends the whole job with `code` (every rank exits): what a rank does when it cannot
    /// go on and the others would otherwise wait for it.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    /// The rows of a global batch of `batch` rows this rank trains on: the `rank`-th of
    /// `size` contiguous parts (empty on ranks beyond a batch smaller than the job).
    pub fn rows(&self, batch: usize) -> std::ops::Range<usize> {
        Shard::split(batch, self.size())
            .get(self.rank())
            .map_or(batch..batch, Shard::range)
    }

    /// Overwrites every parameter with rank 0's value (call it once after initialising the
    /// store, so that ranks start equal whatever their seeds). Every rank must hold the
    /// same names and shapes.
    pub fn broadcast_store<T: Scalar + Equivalence>(&self, store: &mut ParamStore<T>) {
        let root = self.world.process_at_rank(0);
        for (_, value) in store.iter_mut() {
            match value.as_slice_mut() {
                Some(slice) => root.broadcast_into(slice),
                None => {
                    let mut flat: Vec<T> = value.iter().copied().collect();
                    root.broadcast_into(&mut flat[..]);
                    value.iter_mut().zip(flat).for_each(|(v, f)| *v = f);
                }
            }
        }
    }

    /// One data-parallel training step over the job: this rank trains its
    /// [`rows`](Distributed::rows) of the batch on `threads`' threads (the closure's
    /// [`Shard`]s index the global batch, so `shard.rows(&x)` works on the full batch that
    /// every rank holds, or on the rank's own part re-based as the caller prefers), and
    /// one all-reduce sums every part's weighted loss and gradients. Returns the batch's
    /// mean loss and gradients, identical on every rank.
    ///
    /// Every rank must call it with the same `batch` and store layout.
    ///
    /// # Errors
    /// [`DistributedError::Local`] on a rank whose backward sweep failed,
    /// [`DistributedError::Remote`] on the others.
    pub fn train_step<T, F>(
        &self,
        threads: &mut DataParallel<T>,
        store: &ParamStore<T>,
        batch: usize,
        loss_fn: F,
    ) -> Result<(T, ParamGradients<T>), DistributedError>
    where
        T: Scalar + Equivalence,
        F: for<'t> Fn(&Params<'t, T>, &Shard) -> Var<'t, T> + Sync,
    {
        let rows = self.rows(batch);
        let share = rows.len() as f64 / batch as f64;
        let local = if rows.is_empty() {
            Ok((T::zero(), ParamGradients::new()))
        } else {
            threads.train_rows(store, rows, batch, loss_fn)
        };
        let buffers = threads.take_buffers();
        let (part, local_error) = match local {
            Ok((loss, grads)) => {
                let part = Part {
                    loss,
                    grads,
                    buffers,
                    share,
                    failed: false,
                };
                (part, None)
            }
            Err(e) => (Part::failed(), Some(e)),
        };
        let payload = pack(store, &part);
        let mut total = vec![T::zero(); payload.len()];
        self.world
            .all_reduce_into(&payload[..], &mut total[..], SystemOperation::sum());
        let reduced = unpack(store, &total, part.grads);
        threads.set_buffers(reduced.buffers);
        match local_error {
            Some(e) => Err(DistributedError::Local(e)),
            None if reduced.failed > 0 => Err(DistributedError::Remote {
                ranks: reduced.failed,
            }),
            None => Ok((reduced.loss, reduced.grads)),
        }
    }

    /// True when every rank's store hashes the same as this one's (names, shapes and the
    /// exact bits of every value): the invariant data-parallel training keeps.
    pub fn parameters_agree<T: Scalar>(&self, store: &ParamStore<T>) -> bool {
        let mine = store_hash(store);
        let mut all = vec![0u64; self.size()];
        self.world.all_gather_into(&mine, &mut all[..]);
        all.iter().all(|&h| h == mine)
    }
}

/// The number of bytes each rank contributes to a step's all-reduce for `store`: every
/// parameter value, a presence flag and a buffer weight per parameter, the loss and the
/// failure count.
pub fn payload_bytes<T: Scalar>(store: &ParamStore<T>) -> usize {
    payload_len(store) * std::mem::size_of::<T>()
}

fn payload_len<T: Scalar>(store: &ParamStore<T>) -> usize {
    store.num_elements() + 2 * store.len() + 2
}

/// What one rank adds into a step's all-reduce.
struct Part<T: Scalar> {
    /// The rank's weighted share of the batch's mean loss.
    loss: T,
    /// The rank's weighted share of the batch's gradients.
    grads: ParamGradients<T>,
    /// The buffer values the rank's shards reported, averaged over its shards.
    buffers: Buffers<T>,
    /// The rank's rows as a share of the batch: the weight of its buffer values.
    share: f64,
    /// Whether the rank's step failed.
    failed: bool,
}

impl<T: Scalar> Part<T> {
    /// A failed rank's part: nothing but the failure.
    fn failed() -> Self {
        Part {
            loss: T::zero(),
            grads: ParamGradients::new(),
            buffers: Vec::new(),
            share: 0.0,
            failed: true,
        }
    }
}

/// What the all-reduce of every rank's [`Part`] gives back.
struct Reduced<T: Scalar> {
    loss: T,
    grads: ParamGradients<T>,
    /// Buffer values averaged over the ranks that reported them, weighted by their rows.
    buffers: Buffers<T>,
    /// The number of ranks whose step failed.
    failed: usize,
}

/// The all-reduce buffer, in store order: every entry's gradient, or for a buffer the
/// rank's weighted value (a buffer has no gradient, so the two never share an entry), or
/// zeros; then a presence flag per entry, the weight of each buffer value, the weighted
/// loss and a failure count.
fn pack<T: Scalar>(store: &ParamStore<T>, part: &Part<T>) -> Vec<T> {
    let mut buffer = Vec::with_capacity(payload_len(store));
    let mut flags = Vec::with_capacity(store.len());
    let mut weights = Vec::with_capacity(store.len());
    let share: T = cast(part.share);
    for (name, value) in store.iter() {
        let reported = || {
            part.buffers
                .iter()
                .find(|(n, b)| n == name && b.shape() == value.shape())
        };
        let (flag, weight) = if let Some(g) = part.grads.get(name) {
            // A contiguous gradient (every one the sweeps make) is copied as a slice:
            // an n-dimensional iterator costs several times as much per element.
            let g = g.view();
            match g.as_slice() {
                Some(slice) => buffer.extend_from_slice(slice),
                None => buffer.extend(g.iter().copied()),
            }
            (T::one(), T::zero())
        } else if let Some((_, b)) = reported() {
            buffer.extend(b.iter().map(|&v| share * v));
            (T::zero(), share)
        } else {
            buffer.extend(std::iter::repeat_n(T::zero(), value.len()));
            (T::zero(), T::zero())
        };
        flags.push(flag);
        weights.push(weight);
    }
    buffer.extend(flags);
    buffer.extend(weights);
    buffer.push(part.loss);
    buffer.push(if part.failed { T::one() } else { T::zero() });
    buffer
}

/// Reads a summed buffer back: the loss, the gradients of parameters flagged by at least
/// one rank, the buffer values some rank reported, and the number of failed ranks. Each
/// gradient sum is written into this rank's own gradient buffer where it has one
/// (`local`), so a step allocates no new gradients.
fn unpack<T: Scalar>(
    store: &ParamStore<T>,
    total: &[T],
    mut local: ParamGradients<T>,
) -> Reduced<T> {
    let values = store.num_elements();
    let flags = &total[values..values + store.len()];
    let weights = &total[values + store.len()..values + 2 * store.len()];
    let mut grads = ParamGradients::with_capacity(store.len());
    let mut buffers = Vec::new();
    let mut offset = 0;
    for (((name, value), &flag), &weight) in store.iter().zip(flags).zip(weights) {
        let end = offset + value.len();
        let sum = &total[offset..end];
        offset = end;
        if flag <= T::zero() {
            if weight > T::zero() {
                let mean = sum.iter().map(|&v| v / weight).collect();
                let mean = ndarray::ArrayD::from_shape_vec(value.raw_dim(), mean)
                    .expect("the buffer was packed with this store's shapes");
                buffers.push((name.to_string(), mean));
            }
            continue;
        }
        let reused = local.get_mut(name).and_then(|g| {
            if g.shape() != value.shape() {
                return None;
            }
            g.view_mut().as_slice_mut()?.copy_from_slice(sum);
            Some(std::mem::replace(g, Tensor::scalar(T::zero())))
        });
        let g = match reused {
            Some(g) => g,
            None => Tensor::from_array(
                ndarray::ArrayD::from_shape_vec(value.raw_dim(), sum.to_vec())
                    .expect("the buffer was packed with this store's shapes"),
            ),
        };
        grads.insert(name, g);
    }
    let tail = values + 2 * store.len();
    Reduced {
        loss: total[tail],
        grads,
        buffers,
        failed: total[tail + 1].as_f64().round() as usize,
    }
}

/// FNV-1a over every name, shape and value bit pattern, in store order.
fn store_hash<T: Scalar>(store: &ParamStore<T>) -> u64 {
    let mut hasher = Fnv1a::default();
    for (name, value) in store.iter() {
        hasher.write(name.as_bytes());
        for &d in value.shape() {
            hasher.write_u64(d as u64);
        }
        for &v in value.iter() {
            hasher.write_u64(v.as_f64().to_bits());
        }
    }
    hasher.finish()
}

/// The 64-bit FNV-1a hash: stable across processes and machines (unlike `std`'s
/// randomly keyed `DefaultHasher`).
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn store() -> ParamStore<f32> {
        [
            ("w", ArrayD::from_elem(IxDyn(&[2, 3]), 1.0f32)),
            ("b", ArrayD::from_elem(IxDyn(&[3]), 2.0f32)),
        ]
        .into_iter()
        .collect()
    }

    /// A rank's successful part with these gradients, no buffers, and half the batch.
    fn part(loss: f32, grads: ParamGradients<f32>) -> Part<f32> {
        Part {
            loss,
            grads,
            buffers: Vec::new(),
            share: 0.5,
            failed: false,
        }
    }

    #[test]
    fn pack_and_unpack_round_trip_with_missing_gradients() {
        let s = store();
        let mut grads = ParamGradients::new();
        grads.insert("b", ArrayD::from_elem(IxDyn(&[3]), 0.5f32));
        let buffer = pack(&s, &part(1.25, grads.clone()));
        assert_eq!(buffer.len() * 4, payload_bytes(&s));
        let back = unpack(&s, &buffer, ParamGradients::new());
        assert_eq!((back.loss, back.failed), (1.25, 0));
        assert_eq!(back.grads, grads);
        assert!(back.buffers.is_empty());
        let none = unpack(&s, &pack(&s, &Part::failed()), ParamGradients::new());
        assert!(none.grads.is_empty());
        assert_eq!(none.failed, 1);
    }

    #[test]
    fn unpacking_writes_the_sums_into_this_ranks_own_gradient_buffers() {
        let s = store();
        let mut local = ParamGradients::new();
        local.insert("b", ArrayD::from_elem(IxDyn(&[3]), 0.5f32));
        let before = local["b"].view().as_ptr();
        let mine = part(1.0, local);
        let mut summed = pack(&s, &mine);
        // Another rank's gradient of `w` and of `b`, added as the all-reduce would.
        let theirs: ParamGradients<f32> = [
            ("w", ArrayD::from_elem(IxDyn(&[2, 3]), 1.0f32)),
            ("b", ArrayD::from_elem(IxDyn(&[3]), 0.25f32)),
        ]
        .into_iter()
        .collect();
        let other = pack(&s, &part(2.0, theirs));
        summed.iter_mut().zip(&other).for_each(|(a, b)| *a += b);
        let reduced = unpack(&s, &summed, mine.grads);
        let grads = reduced.grads;
        assert_eq!((reduced.loss, reduced.failed), (3.0, 0));
        assert_eq!(grads["b"], ArrayD::from_elem(IxDyn(&[3]), 0.75f32));
        assert_eq!(grads["w"], ArrayD::from_elem(IxDyn(&[2, 3]), 1.0f32));
        assert_eq!(
            grads["b"].view().as_ptr(),
            before,
            "the local buffer was reused"
        );
        assert_eq!(grads.names().collect::<Vec<_>>(), ["w", "b"]);
    }

    #[test]
    fn buffer_values_are_averaged_by_the_ranks_rows() {
        let s = store();
        // Rank 0 holds a quarter of the batch and reports `b` = 4; rank 1 three quarters
        // and reports `b` = 8; neither has a gradient for `b`.
        let report = |share: f64, value: f32| Part {
            loss: 0.0,
            grads: ParamGradients::new(),
            buffers: vec![("b".to_string(), ArrayD::from_elem(IxDyn(&[3]), value))],
            share,
            failed: false,
        };
        let mut summed = pack(&s, &report(0.25, 4.0));
        let other = pack(&s, &report(0.75, 8.0));
        summed.iter_mut().zip(&other).for_each(|(a, b)| *a += b);
        let reduced = unpack(&s, &summed, ParamGradients::new());
        assert!(reduced.grads.is_empty());
        assert_eq!(
            reduced.buffers,
            [("b".to_string(), ArrayD::from_elem(IxDyn(&[3]), 7.0f32))]
        );
    }

    #[test]
    fn the_hash_sees_every_bit() {
        let a = store();
        let mut b = store();
        assert_eq!(store_hash(&a), store_hash(&b));
        if let Some(v) = b.get_mut("b") {
            v[[1]] = f32::from_bits(2.0f32.to_bits() + 1);
        }
        assert_ne!(store_hash(&a), store_hash(&b));
    }

    /// The mean cross-entropy of `model` on the shard's rows of `(x, y)`.
    fn shard_loss<'t>(
        model: &crate::Sequential<f32>,
        x: &ndarray::Array2<f32>,
        y: &[usize],
        p: &Params<'t, f32>,
        shard: &Shard,
    ) -> Var<'t, f32> {
        let out = crate::module::Module::forward(model, p.input(shard.rows(x)), p);
        crate::loss::cross_entropy(&out, shard.slice(y))
    }

    #[test]
    fn one_rank_without_mpirun_is_the_data_parallel_step() {
        // Runs as a job of one rank (singleton MPI_Init): the all-reduce is the identity.
        let dist = Distributed::init().expect("MPI initialises once");
        assert_eq!((dist.rank(), dist.size(), dist.is_root()), (0, 1, true));
        assert_eq!(dist.rows(10), 0..10);
        let model = crate::layers::mlp::<f32>(&[3, 4, 2], crate::layers::Activation::Tanh);
        let mut s = crate::module::Module::init_store(&model, 3);
        dist.broadcast_store(&mut s);
        let x = ndarray::Array2::from_shape_fn((6, 3), |(i, j)| ((i + 2 * j) as f32).sin());
        let y = [0, 1, 1, 0, 1, 0];
        let (loss_d, grads_d) = dist
            .train_step(&mut DataParallel::new(2, 0), &s, 6, |p, shard| {
                shard_loss(&model, &x, &y, p, shard)
            })
            .expect("a step");
        let (loss_p, grads_p) = DataParallel::new(2, 0)
            .train_step(&s, 6, |p, shard| shard_loss(&model, &x, &y, p, shard))
            .expect("a step");
        assert_eq!(loss_d, loss_p);
        assert_eq!(grads_d, grads_p);
        assert!(dist.parameters_agree(&s));
    }
}
