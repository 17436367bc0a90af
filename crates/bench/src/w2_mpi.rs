//! W2-sized data-parallel training across processes through MPI (the `mpi` feature; run
//! under `mpirun -np 2`): the W2 model at batch 256, each rank on one core.
//!
//! Interleaved on every rank: a full-batch step on the rank alone (no communication, one
//! core: the single-process baseline) and a distributed step (the rank's half of the batch
//! on one core, then one all-reduce of the gradients and loss). Rank 0 prints the medians,
//! the speed-up, the bytes each rank puts into a step's all-reduce, whether the first losses
//! agree, and whether every rank holds identical parameters after the steps.
//!
//! ```text
//! cargo build --release -p retrograd-bench --features mpi
//! MATMUL_NUM_THREADS=1 mpirun -np 2 -x MATMUL_NUM_THREADS target/release/retrograd-bench mpi
//! ```

use retrograd::nn::distributed::{Distributed, payload_bytes};
use retrograd::nn::optim::{Optimizer, Sgd};
use retrograd::nn::{DataParallel, Module, loss};
use retrograd::ops::threads::with_num_threads;

use crate::inputs::{W2_DIMS, W2_LR, w2_input, w2_labels};
use crate::report::Report;
use crate::timing::{median, time_ns};
use crate::w2_nn::{parallel_step, w2_model};

/// Runs the workload on this rank; only rank 0 reports.
pub fn run(report: &mut Report, quick: bool) {
    let dist = match Distributed::init() {
        Ok(d) => d,
        Err(e) => return report.fail(format!("mpi: {e}")),
    };
    let batch = if quick { 16 } else { 256 };
    let (warmup, reps) = if quick { (1, 3) } else { (3, 15) };
    let (model, store) = w2_model();
    let (x, y) = (w2_input(batch, W2_DIMS[0]), w2_labels(batch, W2_DIMS[3]));
    let (mut local_store, mut dist_store) = (store.clone(), store);
    dist.broadcast_store(&mut dist_store);
    let (mut local_opt, mut dist_opt) = (Sgd::new(f64::from(W2_LR)), Sgd::new(f64::from(W2_LR)));
    let (mut local_trainer, mut rank_trainer) = (DataParallel::new(1, 0), DataParallel::new(1, 0));
    let (mut local_ms, mut dist_ms) = (Vec::new(), Vec::new());
    let mut firsts = (0.0f32, 0.0f32);
    for rep in 0..warmup + reps {
        let mut loss_local = 0.0;
        let local = time_ns(|| {
            loss_local = with_num_threads(1, || {
                parallel_step(
                    &mut local_trainer,
                    &model,
                    &mut local_store,
                    &mut local_opt,
                    &x,
                    &y,
                )
            });
        });
        let mut loss_dist = 0.0;
        let mut failure = None;
        let distributed = time_ns(|| {
            let step = with_num_threads(1, || {
                dist.train_step(&mut rank_trainer, &dist_store, batch, |p, shard| {
                    loss::cross_entropy(&model.forward(p.input(shard.rows(&x)), p), shard.slice(&y))
                })
            });
            match step {
                Ok((l, grads)) => {
                    loss_dist = l;
                    if let Err(e) = dist_opt.step(&mut dist_store, &grads) {
                        failure = Some(e.to_string());
                    }
                }
                Err(e) => failure = Some(e.to_string()),
            }
        });
        if let Some(e) = failure {
            return report.fail(format!("mpi: the distributed step failed: {e}"));
        }
        if rep == 0 {
            firsts = (loss_local, loss_dist);
        }
        if rep >= warmup {
            local_ms.push(local / 1e6);
            dist_ms.push(distributed / 1e6);
        }
    }
    let agree = dist.parameters_agree(&dist_store);
    if !dist.is_root() {
        return;
    }
    let (local, distributed) = (median(&mut local_ms), median(&mut dist_ms));
    report.push_exact("mpi.ranks", dist.size() as f64, "ranks");
    report.push("mpi.single_process_ms", local, "ms");
    report.push("mpi.distributed_ms", distributed, "ms");
    report.push("mpi.speedup", local / distributed, "x");
    report.push_exact(
        "mpi.bytes_per_rank_per_step",
        payload_bytes(&dist_store) as f64,
        "bytes",
    );
    report.push_exact("mpi.parameters_agree", f64::from(u8::from(agree)), "bool");
    if !agree {
        report.fail("mpi: the ranks' parameters differ after the steps");
    }
    report.check_close(
        "mpi.loss_first vs the single-process step",
        f64::from(firsts.1),
        f64::from(firsts.0),
        1e-5,
    );
}
