//! The digits demo trained data-parallel across MPI processes: each rank trains on its
//! part of every batch (split further across its threads), the gradients are averaged with
//! one all-reduce per step, and every rank applies the same Adam step, so all ranks hold
//! identical parameters (checked after every epoch by comparing a hash of the store).
//! Rank 0 prints the progress and saves the checkpoint. The batches are the single-process
//! demo's (same seed, split, batch size and shuffling), so the run reaches the same test
//! accuracy as `cargo run --release --example digits`, up to f32 rounding.
//!
//! ```text
//! mpirun -np 2 cargo run --release --features mpi --example digits_mpi
//! ```
//! (As root, Open MPI also wants `OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1`,
//! and `--oversubscribe` when there are more ranks than cores.) Options: `--epochs N`
//! (default 30), `--seed N` (default 0), `--out DIR` (default `target/digits_mpi`),
//! `--threads N` per rank (default: the rank's share of the cores).

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use ndarray::{Array1, Array2};
use retrograd::nn::data::{Batches, digits, train_test_split};
use retrograd::nn::distributed::{Distributed, payload_bytes};
use retrograd::nn::layers::{Activation, mlp};
use retrograd::nn::optim::{Adam, Optimizer};
use retrograd::nn::{DataParallel, Module, ParamStore, Sequential, Session, checkpoint, loss};

const HIDDEN: usize = 128;
const BATCH: usize = 32;
const LEARNING_RATE: f64 = 2e-3;
const TEST_FRACTION: f64 = 0.2;

struct Args {
    out: PathBuf,
    epochs: usize,
    seed: u64,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out: PathBuf::from("target/digits_mpi"),
        epochs: 30,
        seed: 0,
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => args.out = PathBuf::from(value()?),
            "--epochs" => args.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "-h" | "--help" => {
                println!("usage: digits_mpi [--out DIR] [--epochs N] [--seed N] [--threads N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

/// The accuracy of `model` on `(x, y)`, in evaluation mode.
fn accuracy(
    session: &mut Session<f32>,
    model: &Sequential<f32>,
    store: &ParamStore<f32>,
    x: &Array2<f32>,
    y: &[usize],
) -> f64 {
    let logits = session.eval(store, |p| model.forward(p.input(x.clone()), p));
    let logits = logits
        .into_dimensionality::<ndarray::Ix2>()
        .expect("the MLP maps [N, 64] to [N, 10]");
    loss::accuracy(&logits, y)
}

fn main() {
    let dist = match Distributed::init() {
        Ok(dist) => dist,
        Err(e) => {
            eprintln!("digits_mpi: {e}");
            std::process::exit(1);
        }
    };
    // An error on one rank must end every rank: the others would wait for it in the next
    // all-reduce.
    if let Err(e) = train(&dist) {
        eprintln!("digits_mpi, rank {}: {e}", dist.rank());
        dist.abort(1);
    }
}

fn train(dist: &Distributed) -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let started = Instant::now();
    let (images, labels) = digits::load::<f32>()?;
    let split = train_test_split(&images, &labels, TEST_FRACTION, args.seed);
    let y_test: Vec<usize> = split.y_test.to_vec();

    let model = mlp::<f32>(&[digits::PIXELS, HIDDEN, digits::CLASSES], Activation::Relu);
    let mut store = model.init_store(args.seed);
    dist.broadcast_store(&mut store);
    let threads = if args.threads > 0 {
        args.threads
    } else {
        (retrograd::ops::threads::available_cores() / dist.size()).max(1)
    };
    if dist.is_root() {
        println!(
            "digits_mpi: {} ranks x {threads} thread(s); MLP {}-{HIDDEN}-{}, {} parameters; \
             Adam lr {LEARNING_RATE}, batch {BATCH}, {} epochs; {} bytes per rank per all-reduce",
            dist.size(),
            digits::PIXELS,
            digits::CLASSES,
            model.num_parameters(),
            args.epochs,
            payload_bytes(&store)
        );
    }
    let mut opt = Adam::new(LEARNING_RATE);
    let mut trainer = DataParallel::new(threads, args.seed);
    let mut session = Session::new(args.seed);
    let (mut step_time, mut steps) = (std::time::Duration::ZERO, 0u32);
    for epoch in 1..=args.epochs {
        let batches = Batches::new(&split.x_train, &split.y_train, BATCH)
            .shuffled(args.seed.wrapping_add(epoch as u64));
        let mut last_loss = 0.0f32;
        for (xb, yb) in batches {
            let yb: Array1<usize> = yb;
            let labels = yb.as_slice().expect("a fresh batch is contiguous");
            let step_started = Instant::now();
            let (batch_loss, grads) =
                dist.train_step(&mut trainer, &store, xb.nrows(), |p, shard| {
                    loss::cross_entropy(
                        &model.forward(p.input(shard.rows(&xb)), p),
                        shard.slice(labels),
                    )
                })?;
            opt.step(&mut store, &grads)?;
            step_time += step_started.elapsed();
            steps += 1;
            last_loss = batch_loss;
        }
        if !dist.parameters_agree(&store) {
            return Err(format!("epoch {epoch}: the ranks' parameters differ").into());
        }
        if dist.is_root() {
            let test_acc = accuracy(&mut session, &model, &store, &split.x_test, &y_test);
            println!(
                "epoch {epoch:>2}/{}: last batch loss {last_loss:.4}, test accuracy {test_acc:.4} (parameters identical on all ranks)",
                args.epochs
            );
        }
    }
    if dist.is_root() {
        std::fs::create_dir_all(&args.out)?;
        let path = args.out.join("digits_mlp.safetensors");
        checkpoint::save(&store, &path)?;
        let test_acc = accuracy(&mut session, &model, &store, &split.x_test, &y_test);
        println!("saved the model to {} (rank 0)", path.display());
        println!(
            "done in {:.1} s; {:.3} ms per training step (all-reduce included)",
            started.elapsed().as_secs_f64(),
            step_time.as_secs_f64() * 1e3 / f64::from(steps.max(1))
        );
        println!("test accuracy: {test_acc:.4}");
    }
    Ok(())
}
