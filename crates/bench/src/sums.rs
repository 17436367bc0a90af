//! Summation: the blocked, pairwise sum every reduction uses
//! (`retrograd_tape::summation::sum_slice`) against a plain serial loop and ndarray's own
//! `sum`, in f32, from 4 to 2^22 elements. Lines: `sum.<n>.{pairwise,serial,ndarray}_ns`
//! (median per call) and `sum.<n>.pairwise_vs_serial` (time ratio; below 1 is faster), and
//! the relative error of each against an f64 sum at the largest size.

use ndarray::Array1;
use retrograd::tape::summation::sum_slice;

use crate::report::Report;
use crate::timing::{black_box, median_ns};

/// The sizes measured (elements).
fn sizes(quick: bool) -> &'static [usize] {
    if quick {
        &[4, 128, 4096]
    } else {
        &[4, 16, 128, 1024, 1 << 16, 1 << 22]
    }
}

/// A serial loop with one accumulator: what a reduction costs without blocking.
fn serial(xs: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &x in xs {
        s += x;
    }
    s
}

/// Runs the summation workload and pushes its lines.
pub fn run(report: &mut Report, quick: bool) {
    for &n in sizes(quick) {
        let xs: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin().abs()).collect();
        let array = Array1::from(xs.clone());
        // Enough calls per sample that a sample lasts well above the clock's resolution.
        let calls = (1 << 22) / n.max(1);
        let (warmup, reps) = if quick { (1, 3) } else { (3, 15) };
        let per_call = |f: &dyn Fn() -> f32| {
            median_ns(warmup, reps, || {
                let mut acc = 0.0f32;
                for _ in 0..calls {
                    acc += f();
                }
                acc
            }) / calls as f64
        };
        let pairwise = per_call(&|| sum_slice(black_box(&xs)));
        let plain = per_call(&|| serial(black_box(&xs)));
        let nd = per_call(&|| black_box(&array).sum());
        report.push(format!("sum.{n}.pairwise_ns"), pairwise, "ns");
        report.push(format!("sum.{n}.serial_ns"), plain, "ns");
        report.push(format!("sum.{n}.ndarray_ns"), nd, "ns");
        report.push(format!("sum.{n}.pairwise_vs_serial"), pairwise / plain, "x");
        if n == *sizes(quick).last().unwrap_or(&n) {
            let exact: f64 = xs.iter().map(|&x| f64::from(x)).sum();
            let err = |s: f32| (f64::from(s) - exact).abs() / exact;
            report.push(
                format!("sum.{n}.pairwise_rel_err"),
                err(sum_slice(&xs)),
                "-",
            );
            report.push(format!("sum.{n}.serial_rel_err"), err(serial(&xs)), "-");
            report.push(format!("sum.{n}.ndarray_rel_err"), err(array.sum()), "-");
        }
    }
}
