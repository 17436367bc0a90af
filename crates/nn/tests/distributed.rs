//! Data-parallel training across MPI ranks equals single-process training.
//!
//! Run under MPI (CI does): `mpirun -np 2 cargo test -p retrograd-nn --features mpi --test
//! distributed`. Without `mpirun` it runs as a job of one rank. Every rank trains its part
//! of each batch and all-reduces; every rank also trains the whole batch alone, as the
//! reference. After every step the ranks' parameters must hash the same, and after the
//! last they must equal the reference to `1e-5·(1 + |θ|)` (f32).
//!
//! No test harness: MPI is initialised once per process and every rank must run the same
//! collective calls in the same order, which the harness's threads would not guarantee.

use ndarray::Array2;
use retrograd_nn::distributed::{Distributed, DistributedError, payload_bytes};
use retrograd_nn::layers::{Activation, Linear, mlp};
use retrograd_nn::norm::BatchNorm1d;
use retrograd_nn::optim::{Optimizer, Sgd};
use retrograd_nn::{DataParallel, Module, ParamStore, Sequential, Session, loss};

const STEPS: usize = 20;
const BATCH: usize = 30;

fn main() {
    let dist = Distributed::init().expect("MPI initialises");
    equals_single_process_training(&dist);
    batch_norm_statistics_agree_across_ranks(&dist);
    a_failure_on_one_rank_reaches_every_rank(&dist);
    if dist.is_root() {
        println!("distributed: {} rank(s), all checks passed", dist.size());
    }
}

fn equals_single_process_training(dist: &Distributed) {
    let model = mlp::<f32>(&[6, 16, 16, 3], Activation::Tanh);
    // Different seeds per rank: broadcast_store must make them equal.
    let mut store = model.init_store(7 + dist.rank() as u64);
    dist.broadcast_store(&mut store);
    let mut reference: ParamStore<f32> = model.init_store(7);
    assert_eq!(store, reference, "rank {}: broadcast_store", dist.rank());

    let x = Array2::from_shape_fn((BATCH, 6), |(i, j)| ((i * 6 + j) as f32 * 0.37).sin());
    let y: Vec<usize> = (0..BATCH).map(|i| (i * 7 + 3) % 3).collect();
    let mut opt = Sgd::new(0.1).momentum(0.9);
    let mut opt_ref = Sgd::new(0.1).momentum(0.9);
    let mut threads = DataParallel::new(2, 0);
    let mut session = Session::new(0);
    for step in 0..STEPS {
        let (loss, grads) = dist
            .train_step(&mut threads, &store, BATCH, |p, shard| {
                loss::cross_entropy(&model.forward(p.input(shard.rows(&x)), p), shard.slice(&y))
            })
            .expect("a distributed step");
        opt.step(&mut store, &grads).expect("SGD");
        assert!(
            dist.parameters_agree(&store),
            "rank {}: parameters differ across ranks after step {step}",
            dist.rank()
        );
        let (loss_ref, grads_ref) = session
            .train_step(&reference, |p| {
                loss::cross_entropy(&model.forward(p.input(x.clone()), p), &y)
            })
            .expect("a single-process step");
        opt_ref.step(&mut reference, &grads_ref).expect("SGD");
        assert!(
            (loss - loss_ref).abs() <= 1e-5 * (1.0 + loss_ref.abs()),
            "step {step}: loss {loss} vs {loss_ref}"
        );
    }
    let mut gap = 0.0f32;
    for (name, value) in store.iter() {
        for (a, b) in value
            .iter()
            .zip(reference.get(name).expect("same names").iter())
        {
            gap = gap.max((a - b).abs() / (1.0 + b.abs()));
        }
    }
    assert!(
        gap <= 1e-5,
        "rank {}: {gap:e} from single-process training",
        dist.rank()
    );
    assert!(
        store != model.init_store(7),
        "training moved the parameters"
    );
    if dist.is_root() {
        println!(
            "distributed: {STEPS} steps on {} rank(s) equal single-process training to {gap:e} \
             (relative); {} bytes per rank per all-reduce",
            dist.size(),
            payload_bytes(&store)
        );
    }
}

/// A model with a batch norm: its running statistics (buffers, no gradient) are averaged
/// by the all-reduce, so every rank's whole store, buffers included, hashes the same after
/// `update_buffers`, and equals one process training the same shards on threads.
fn batch_norm_statistics_agree_across_ranks(dist: &Distributed) {
    const ROWS: usize = 32;
    let model = Sequential::<f32>::new()
        .append(Linear::new(6, 8))
        .append(BatchNorm1d::new(8))
        .append(Linear::new(8, 3));
    let mut store = model.init_store(5);
    let mut reference = store.clone();
    let x = Array2::from_shape_fn((ROWS, 6), |(i, j)| ((i * 6 + j) as f32 * 0.61).cos());
    let y: Vec<usize> = (0..ROWS).map(|i| (i * 5 + 1) % 3).collect();
    // The same shards in one process: 2 threads per rank, every rank's rows split evenly.
    assert_eq!(
        ROWS % (2 * dist.size()),
        0,
        "run with 1, 2, 4, 8 or 16 ranks"
    );
    let mut threads = DataParallel::new(2, 0);
    let mut one_process = DataParallel::new(2 * dist.size(), 0);
    let (mut opt, mut opt_ref) = (Sgd::new(0.05), Sgd::new(0.05));
    for step in 0..5 {
        let (_, grads) = dist
            .train_step(&mut threads, &store, ROWS, |p, shard| {
                loss::cross_entropy(&model.forward(p.input(shard.rows(&x)), p), shard.slice(&y))
            })
            .expect("a distributed step");
        opt.step(&mut store, &grads).expect("SGD");
        threads.update_buffers(&mut store);
        assert!(
            dist.parameters_agree(&store),
            "rank {}: parameters or buffers differ across ranks after step {step}",
            dist.rank()
        );
        let (_, grads) = one_process
            .train_step(&reference, ROWS, |p, shard| {
                loss::cross_entropy(&model.forward(p.input(shard.rows(&x)), p), shard.slice(&y))
            })
            .expect("a threaded step");
        opt_ref.step(&mut reference, &grads).expect("SGD");
        one_process.update_buffers(&mut reference);
    }
    for (name, value) in store.iter() {
        let expected = reference.get(name).expect("same names");
        for (a, b) in value.iter().zip(expected.iter()) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "rank {}: {name} {a} against {b} in one process",
                dist.rank()
            );
        }
    }
    let count = store.get("1.num_batches_tracked").expect("a buffer");
    assert_eq!(count.iter().next(), Some(&5.0));
    let mean = store.get("1.running_mean").expect("a buffer");
    assert!(mean.iter().any(|v| *v != 0.0), "the running mean moved");
}

fn a_failure_on_one_rank_reaches_every_rank(dist: &Distributed) {
    let model = mlp::<f32>(&[2, 2], Activation::Relu);
    let store = model.init_store(0);
    let x = Array2::<f32>::ones((4, 2));
    let last = dist.size() - 1;
    let fails_here = dist.rank() == last;
    // The last rank returns a non-scalar "loss", which backward refuses.
    let result = dist.train_step(&mut DataParallel::new(1, 0), &store, 4, |p, shard| {
        let out = model.forward(p.input(shard.rows(&x)), p);
        if fails_here {
            out
        } else {
            loss::cross_entropy(&out, &vec![0; shard.len()])
        }
    });
    match result {
        Err(DistributedError::Local(_)) => assert_eq!(dist.rank(), last),
        Err(DistributedError::Remote { ranks }) => {
            assert_eq!((dist.rank() < last, ranks), (true, 1))
        }
        other => panic!("rank {}: expected a failure, got {other:?}", dist.rank()),
    }
}
