//! Products with at most eight rows or columns, read in place with AVX-512.
//!
//! A batched sweep through a wide layer multiplies a few tangents (`[k, 500]`) by a large
//! weight (`[500, 500]`). A general GEMM kernel packs the weight into panels first, which
//! pays off when each element is reused many times; here each is used `k ≤ 8` times, so
//! packing cost as much as the product and the register tiles ran mostly empty (a fifth of
//! `jacobian(Auto)`'s time on the bottleneck chain). These loops read the long operand
//! once, where it lies, along its contiguous axis, in one of two forms:
//! - **dot form**: each output is a dot product of a row of the long operand with one of
//!   the few short rows (`R` long rows × `N` short rows of accumulators);
//! - **axpy form**: each row of the long operand is added, scaled, into the few output
//!   rows (in L1 for parts up to a few hundred columns); the rows go `P` at a time, each
//!   streamed once from start to end (a column tile walking down all the rows instead
//!   crossed a page per row, which the hardware prefetcher does not follow: that took 15%
//!   longer on the bottleneck probe).
//!
//! A product whose only short side is the inner one (`k ≤ 8`: a few columns times a few
//! rows, the last product of a Jacobian through a bottleneck) is a third loop, writing
//! each row of `C` once, in place.
//!
//! Each of the four layouts is one of the two forms, possibly for `Cᵀ = Bᵀ·Aᵀ`. The short
//! operand is first copied into a small contiguous buffer. Large products are split over
//! [`crate::threads`]'s cores along the long side.

use crate::Float;

use super::Block;
use crate::threads::{parts_for, run_parts};

/// The most rows or columns a product may have to take this path.
pub const MAX_SKINNY: usize = 8;

/// The fewest elements the large operand (or, for a short inner dimension, the output) must
/// have for these loops: below it packing costs little and `gemm` is faster (W7's
/// 6×25·25×784 convolution products ran at 27 GFLOP/s here against 35 in `gemm`).
const MIN_LARGE: usize = 1 << 16;

#[cfg(test)]
thread_local! {
    /// How many products these loops have computed on this thread (tests check that their
    /// shapes take this path, not the general kernel).
    static TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Which loops compute a product, and over which operands.
#[derive(Clone, Copy)]
enum Plan {
    /// `out[r, s] = Σ_p long[r, p]·short[s, p]`: `long` row-contiguous (stride `long_rs`
    /// between rows), `short` copied as `N` rows of `k`.
    Dot,
    /// `out[r, s] = Σ_p short[r, p]·long[p, s]`: `long` row-contiguous, `short` copied as
    /// `k` groups of `M` multipliers.
    Axpy,
}

/// `C ← α·A·B + β·C` through these loops when the CPU has AVX-512F, `T` is f32 or f64,
/// and either the product has at most [`MAX_SKINNY`] rows or columns, a large operand of
/// at least [`MIN_LARGE`] elements and a contiguous axis along which the loops can read
/// it, or its inner dimension is at most [`MAX_SKINNY`], its output has at least
/// [`MIN_LARGE`] elements and contiguous rows or columns. Returns `false`, having done
/// nothing, otherwise. The caller guarantees `block` (as for the general kernel).
#[allow(unsafe_code)]
pub(super) unsafe fn try_gemm<T: Float>(block: Block<T>, alpha: T, beta: T) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let Block {
            rows: m,
            cols: n,
            depth: k,
            ..
        } = block;
        let few = m.min(n).min(k);
        let large = if m.min(n) > MAX_SKINNY {
            m.saturating_mul(n)
        } else {
            m.max(n).saturating_mul(k)
        };
        if few > MAX_SKINNY || large < MIN_LARGE {
            return false;
        }
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return false;
        }
        let (f64s, f32s) = (super::is::<T, f64>(), super::is::<T, f32>());
        if !f64s && !f32s {
            return false;
        }
        // SAFETY: forwarded from the caller; `orient` and `orient_thin` only describe the
        // same product (possibly transposed); `T` is the type each branch names.
        unsafe {
            if m.min(n) > MAX_SKINNY {
                let Some(oriented) = orient_thin(block) else {
                    return false;
                };
                if f64s {
                    run_thin::<T, f64>(oriented, alpha, beta);
                } else {
                    run_thin::<T, f32>(oriented, alpha, beta);
                }
            } else {
                let Some((plan, oriented)) = orient(block) else {
                    return false;
                };
                if f64s {
                    run::<T, f64>(plan, oriented, alpha, beta);
                } else {
                    run::<T, f32>(plan, oriented, alpha, beta);
                }
            }
        }
        #[cfg(test)]
        TAKEN.with(|t| t.set(t.get() + 1));
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (block, alpha, beta);
        false
    }
}

/// The plan for `block`, and the block described so that the plan's `long` is its `a`
/// (dot form) or `b` (axpy form) and its output rows are the few: the product itself or
/// its transpose `Cᵀ = Bᵀ·Aᵀ`.
fn orient<T>(block: Block<T>) -> Option<(Plan, Block<T>)> {
    let (a_rs, a_cs) = block.a_strides;
    let (b_rs, b_cs) = block.b_strides;
    let few_rows = block.rows <= MAX_SKINNY;
    let few_cols = block.cols <= MAX_SKINNY;

    // Dot form wants the long rows first: `n ≤ 8` with A's rows contiguous, or the
    // transpose when `m ≤ 8` and B's columns are. Axpy form wants the few rows first:
    // `m ≤ 8` with B's rows contiguous, or the transpose when `n ≤ 8` and A's columns are.
    if few_cols && a_cs == 1 {
        Some((Plan::Dot, block))
    } else if few_rows && b_rs == 1 {
        Some((Plan::Dot, block.transposed()))
    } else if few_rows && b_cs == 1 {
        Some((Plan::Axpy, block))
    } else if few_cols && a_rs == 1 {
        Some((Plan::Axpy, block.transposed()))
    } else {
        None
    }
}

/// Runs `plan` on `block` with `T` = `S`, split over cores along the long side.
///
/// # Safety
/// `T` is `S`; `block` as for [`try_gemm`], oriented by [`orient`]; AVX-512F present.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
unsafe fn run<T: Float, S: simd::Lanes>(plan: Plan, block: Block<T>, alpha: T, beta: T) {
    let Block {
        rows: m,
        cols: n,
        depth: k,
        ..
    } = block;
    let (long, few) = match plan {
        Plan::Dot => (m, n),
        Plan::Axpy => (n, m),
    };
    // The short operand, contiguous: `few` rows of `k` (dot) or `k` groups of `few` (axpy).
    let mut short: Vec<S> = Vec::with_capacity(few * k);
    match plan {
        // B's `few` columns, one after another.
        Plan::Dot => {
            for s in 0..few {
                // SAFETY: (p, s) is inside B (k×n) through its own strides; `T` is `S`.
                short.extend(
                    (0..k).map(|p| unsafe { read::<T, S>(block.b, block.b_strides, (p, s)) }),
                );
            }
        }
        // A's `few` multipliers of each inner index side by side.
        Plan::Axpy => {
            for p in 0..k {
                // SAFETY: (s, p) is inside A (m×k) through its own strides.
                short.extend(
                    (0..few).map(|s| unsafe { read::<T, S>(block.a, block.a_strides, (s, p)) }),
                );
            }
        }
    }
    let mut out = vec![S::zero(); m * n];
    let parts = parts_for(memory_bound_work(long * k)).min(long / 64).max(1);
    let (out_ptr, short_ptr) = (
        SendPtr(out.as_mut_ptr()),
        SendPtr(short.as_ptr().cast_mut()),
    );
    let (long_ptr, long_rs) = match plan {
        Plan::Dot => (SendPtr(block.a.cast_mut().cast::<S>()), block.a_strides.0),
        Plan::Axpy => (SendPtr(block.b.cast_mut().cast::<S>()), block.b_strides.0),
    };
    let part = |p: usize| {
        // Even parts, cut at the nearest multiple of 16 (whole vectors of f32).
        let cut = |q: usize| {
            if q == parts {
                long
            } else {
                super::nearest_multiple(long * q / parts, 16).min(long)
            }
        };
        let range = (cut(p), cut(p + 1));
        let (out, short, long) = (out_ptr, short_ptr, long_ptr);
        // SAFETY: the parts cover disjoint ranges of the long side, so they write disjoint
        // elements of `out`; the rest is the caller's contract and the buffers' sizes.
        unsafe {
            match plan {
                Plan::Dot => simd::dot(range, (k, few), long.0, long_rs, short.0, out.0),
                Plan::Axpy => simd::axpy(range, (k, few), long.0, long_rs, short.0, out.0, n),
            }
        }
    };
    run_parts(parts, &part);
    // C ← α·out + β·C, `out` row-major m×n.
    let (rs, cs) = block.dst_strides;
    for (r, row) in out.chunks_exact(n.max(1)).enumerate() {
        for (c, v) in row.iter().enumerate() {
            // SAFETY: (r, c) is inside the m×n output the caller vouches for; `S` is `T`.
            unsafe {
                let dst = block.dst.offset(r as isize * rs + c as isize * cs);
                let v: T = std::mem::transmute_copy(v);
                *dst = if beta == T::zero() {
                    alpha * v
                } else {
                    alpha * v + beta * *dst
                };
            }
        }
    }
}

/// A product whose only short side is the inner one, `k ≤ 8` (a few columns times a few
/// rows, as the last product of a Jacobian through a bottleneck): described so that `C`'s
/// rows are contiguous, the product itself or its transpose (`B`, `k ≤ 8` rows, is copied
/// into contiguous rows when its rows are not).
fn orient_thin<T>(block: Block<T>) -> Option<Block<T>> {
    let (c_rs, c_cs) = block.dst_strides;
    if c_cs == 1 {
        Some(block)
    } else if c_rs == 1 {
        Some(block.transposed())
    } else {
        None
    }
}

/// `C ← α·A·B + β·C` for a block from [`orient_thin`], `C`'s rows split over cores and
/// each written once, in place: `C[r, :] = Σ_p A[r, p]·B[p, :]`.
///
/// # Safety
/// As [`run`], with `C` row-contiguous and `k ≤ MAX_SKINNY`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
unsafe fn run_thin<T: Float, S: simd::Lanes>(block: Block<T>, alpha: T, beta: T) {
    let Block {
        rows: m,
        cols: n,
        depth: k,
        ..
    } = block;
    // SAFETY: `S` is `T`.
    let (alpha, beta): (S, S) = unsafe {
        (
            std::mem::transmute_copy(&alpha),
            std::mem::transmute_copy(&beta),
        )
    };
    let parts = parts_for(memory_bound_work(m * n)).min(m / 64).max(1);
    let (b_rs, b_cs) = block.b_strides;
    let b_rows: Vec<S> = if b_cs == 1 {
        Vec::new()
    } else {
        let mut rows = Vec::with_capacity(k * n);
        for p in 0..k {
            // SAFETY: (p, c) is inside B (k×n) through its own strides; `T` is `S`.
            rows.extend((0..n).map(|c| unsafe { read::<T, S>(block.b, block.b_strides, (p, c)) }));
        }
        rows
    };
    let (b, b_rs) = if b_cs == 1 {
        (SendPtr(block.b.cast_mut().cast::<S>()), b_rs)
    } else {
        (SendPtr(b_rows.as_ptr().cast_mut()), n as isize)
    };
    let (a, dst) = (
        SendPtr(block.a.cast_mut().cast::<S>()),
        SendPtr(block.dst.cast::<S>()),
    );
    let part = |p: usize| {
        let (a, b, dst) = (a, b, dst);
        let rows = (m * p / parts, m * (p + 1) / parts);
        // SAFETY: the parts write disjoint rows of C; the rest is the caller's contract.
        unsafe {
            simd::thin(
                rows,
                (k, n),
                (a.0, block.a_strides),
                (b.0, b_rs),
                (dst.0, block.dst_strides.0),
                (alpha, beta),
            )
        }
    };
    run_parts(parts, &part);
}

/// What a pass over `elements` of the large operand (or output) weighs against the
/// thread pool's threshold in multiply-adds: these loops run at memory speed, so a pass
/// costs about what a general product with [`MAX_SKINNY`] rows would (a 500×500
/// matrix-vector product is split over cores; a 6×25·25×784 one is not).
fn memory_bound_work(elements: usize) -> usize {
    elements.saturating_mul(MAX_SKINNY)
}

/// Element `(row, col)` of the matrix at `ptr` with `strides`, as `S` (which is `T`).
#[allow(unsafe_code)]
unsafe fn read<T: Copy, S: Copy>(
    ptr: *const T,
    strides: (isize, isize),
    (row, col): (usize, usize),
) -> S {
    // SAFETY: the caller keeps (row, col) inside the matrix; `S` is `T`.
    unsafe {
        std::mem::transmute_copy(&*ptr.offset(row as isize * strides.0 + col as isize * strides.1))
    }
}

/// A raw pointer the parts of one product share (each touching its own elements).
#[derive(Clone, Copy)]
struct SendPtr<S>(*mut S);
// SAFETY: see `run`: the parts write disjoint elements and only read the rest.
#[allow(unsafe_code)]
unsafe impl<S: Send + Sync> Send for SendPtr<S> {}
#[allow(unsafe_code)]
unsafe impl<S: Send + Sync> Sync for SendPtr<S> {}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    //! The two forms' loops for f32 and f64 over AVX-512 registers.

    use std::arch::x86_64::*;

    /// One AVX-512 register of `Self`, with the few operations the loops use.
    pub(super) trait Lanes:
        Copy + PartialEq + std::ops::Mul<Output = Self> + Send + Sync + 'static
    {
        type V: Copy;
        const LANES: usize;
        fn zero() -> Self;
        unsafe fn splat(x: Self) -> Self::V;
        unsafe fn vzero() -> Self::V;
        /// The first `lanes` elements at `p`, zeros beyond them.
        unsafe fn load(p: *const Self, lanes: usize) -> Self::V;
        unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        unsafe fn sum(v: Self::V) -> Self;
        /// Stores the first `lanes` elements at `p`.
        unsafe fn store(p: *mut Self, v: Self::V, lanes: usize);
    }

    macro_rules! lanes {
        ($t:ty, $v:ty, $n:expr, $mask:ty, $set1:ident, $setzero:ident, $loadu:ident,
         $maskz_loadu:ident, $fmadd:ident, $reduce:ident, $storeu:ident, $mask_storeu:ident) => {
            impl Lanes for $t {
                type V = $v;
                const LANES: usize = $n;
                fn zero() -> Self {
                    0.0
                }
                #[inline(always)]
                unsafe fn splat(x: Self) -> $v {
                    unsafe { $set1(x) }
                }
                #[inline(always)]
                unsafe fn vzero() -> $v {
                    unsafe { $setzero() }
                }
                #[inline(always)]
                unsafe fn load(p: *const Self, lanes: usize) -> $v {
                    unsafe {
                        if lanes == $n {
                            $loadu(p)
                        } else {
                            $maskz_loadu(((1u32 << lanes) - 1) as $mask, p)
                        }
                    }
                }
                #[inline(always)]
                unsafe fn fmadd(a: $v, b: $v, c: $v) -> $v {
                    unsafe { $fmadd(a, b, c) }
                }
                #[inline(always)]
                unsafe fn sum(v: $v) -> Self {
                    unsafe { $reduce(v) }
                }
                #[inline(always)]
                unsafe fn store(p: *mut Self, v: $v, lanes: usize) {
                    unsafe {
                        if lanes == $n {
                            $storeu(p, v)
                        } else {
                            $mask_storeu(p, ((1u32 << lanes) - 1) as $mask, v)
                        }
                    }
                }
            }
        };
    }

    lanes!(
        f64,
        __m512d,
        8,
        __mmask8,
        _mm512_set1_pd,
        _mm512_setzero_pd,
        _mm512_loadu_pd,
        _mm512_maskz_loadu_pd,
        _mm512_fmadd_pd,
        _mm512_reduce_add_pd,
        _mm512_storeu_pd,
        _mm512_mask_storeu_pd
    );
    lanes!(
        f32,
        __m512,
        16,
        __mmask16,
        _mm512_set1_ps,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_maskz_loadu_ps,
        _mm512_fmadd_ps,
        _mm512_reduce_add_ps,
        _mm512_storeu_ps,
        _mm512_mask_storeu_ps
    );

    /// Dot form over long rows `rows.0..rows.1`: `out[r·few + s] = long[r, :] · short[s, :]`.
    ///
    /// # Safety
    /// AVX-512F; `long` has those rows of `k` contiguous elements, `long_rs` apart;
    /// `short` holds `few` rows of `k`; `out` has room for every row's `few` outputs.
    pub(super) unsafe fn dot<S: Lanes>(
        rows: (usize, usize),
        (k, few): (usize, usize),
        long: *const S,
        long_rs: isize,
        short: *const S,
        out: *mut S,
    ) {
        macro_rules! shapes {
            ($($n:literal => $r:literal),*) => {
                match few {
                    $($n => unsafe { dot_rows::<S, $n, $r>(rows, k, long, long_rs, short, out) },)*
                    _ => unreachable!("at most {} short rows", super::MAX_SKINNY),
                }
            };
        }
        shapes!(1 => 8, 2 => 4, 3 => 4, 4 => 4, 5 => 4, 6 => 4, 7 => 3, 8 => 2);
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot_rows<S: Lanes, const N: usize, const R: usize>(
        (start, end): (usize, usize),
        k: usize,
        long: *const S,
        long_rs: isize,
        short: *const S,
        out: *mut S,
    ) {
        let mut r = start;
        while r < end {
            // SAFETY: the caller's contract, row by row.
            unsafe {
                if end - r >= R {
                    dot_tile::<S, N, R>(r, k, long, long_rs, short, out);
                    r += R;
                } else {
                    dot_tile::<S, N, 1>(r, k, long, long_rs, short, out);
                    r += 1;
                }
            }
        }
    }

    /// `R` long rows from `r` against the `N` short rows, `R·N` registers of partial sums.
    #[inline(always)]
    unsafe fn dot_tile<S: Lanes, const N: usize, const R: usize>(
        r: usize,
        k: usize,
        long: *const S,
        long_rs: isize,
        short: *const S,
        out: *mut S,
    ) {
        unsafe {
            let mut acc = [[S::vzero(); N]; R];
            let rows: [*const S; R] =
                std::array::from_fn(|i| long.offset((r + i) as isize * long_rs));
            let full = k - k % S::LANES;
            let mut p = 0;
            while p < full {
                dot_step::<S, N, R>(&mut acc, &rows, short, k, p, S::LANES);
                p += S::LANES;
            }
            if p < k {
                dot_step::<S, N, R>(&mut acc, &rows, short, k, p, k - p);
            }
            for (i, row) in acc.iter().enumerate() {
                for (s, a) in row.iter().enumerate() {
                    *out.add((r + i) * N + s) = S::sum(*a);
                }
            }
        }
    }

    /// One vector of `lanes` elements from `p` of every row, into the partial sums.
    #[inline(always)]
    unsafe fn dot_step<S: Lanes, const N: usize, const R: usize>(
        acc: &mut [[S::V; N]; R],
        rows: &[*const S; R],
        short: *const S,
        k: usize,
        p: usize,
        lanes: usize,
    ) {
        unsafe {
            let mut b = [S::vzero(); N];
            for (s, v) in b.iter_mut().enumerate() {
                *v = S::load(short.add(s * k + p), lanes);
            }
            for (row, sums) in rows.iter().zip(acc.iter_mut()) {
                let x = S::load(row.add(p), lanes);
                for (a, bv) in sums.iter_mut().zip(&b) {
                    *a = S::fmadd(x, *bv, *a);
                }
            }
        }
    }

    /// The thin product (`k ≤ 8`, see `run_thin`) over rows `rows.0..rows.1` of `C`:
    /// `C[r, :] ← α Σ_p A[r, p]·B[p, :] + β C[r, :]` (β = 0: `C` is not read).
    ///
    /// # Safety
    /// AVX-512F; `a` is an m×k matrix with those strides, `b` k×n with rows `b_rs` apart and
    /// contiguous, `c` m×n likewise, `k ≤ MAX_SKINNY`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn thin<S: Lanes>(
        (start, end): (usize, usize),
        (k, n): (usize, usize),
        (a, (a_rs, a_cs)): (*const S, (isize, isize)),
        (b, b_rs): (*const S, isize),
        (c, c_rs): (*mut S, isize),
        (alpha, beta): (S, S),
    ) {
        unsafe {
            let reads_c = beta != S::zero();
            let vbeta = S::splat(beta);
            for r in start..end {
                let mut coef = [S::vzero(); super::MAX_SKINNY];
                for (p, v) in coef.iter_mut().enumerate().take(k) {
                    *v = S::splat(alpha * *a.offset(r as isize * a_rs + p as isize * a_cs));
                }
                let row = c.offset(r as isize * c_rs);
                let mut col = 0;
                while col < n {
                    let lanes = S::LANES.min(n - col);
                    let mut acc = S::vzero();
                    for (p, v) in coef.iter().enumerate().take(k) {
                        acc = S::fmadd(
                            *v,
                            S::load(b.offset(p as isize * b_rs).add(col), lanes),
                            acc,
                        );
                    }
                    if reads_c {
                        acc = S::fmadd(vbeta, S::load(row.add(col), lanes), acc);
                    }
                    S::store(row.add(col), acc, lanes);
                    col += S::LANES;
                }
            }
        }
    }

    /// Axpy form over long columns `cols.0..cols.1`:
    /// `out[s·n + c] += Σ_p short[p·few + s]·long[p, c]` (`out` starts at zero).
    ///
    /// # Safety
    /// AVX-512F; `long` has `k` rows, `long_rs` apart, contiguous over those columns;
    /// `short` holds `k·few` multipliers; `out` is `few` rows of `n`.
    pub(super) unsafe fn axpy<S: Lanes>(
        cols: (usize, usize),
        (k, few): (usize, usize),
        long: *const S,
        long_rs: isize,
        short: *const S,
        out: *mut S,
        n: usize,
    ) {
        macro_rules! shapes {
            ($($m:literal => $p:literal),*) => {
                match few {
                    $($m => unsafe { axpy_cols::<S, $m, $p>(cols, k, long, long_rs, short, out, n) },)*
                    _ => unreachable!("at most {} short rows", super::MAX_SKINNY),
                }
            };
        }
        shapes!(1 => 8, 2 => 8, 3 => 6, 4 => 5, 5 => 4, 6 => 3, 7 => 3, 8 => 2);
    }

    /// The long operand's rows `P` at a time, each group streamed once over the columns
    /// (`P` sequential reads the prefetcher follows), adding into the `M` output rows
    /// (in L1 while a part is a few hundred columns wide).
    #[target_feature(enable = "avx512f")]
    unsafe fn axpy_cols<S: Lanes, const M: usize, const P: usize>(
        cols: (usize, usize),
        k: usize,
        long: *const S,
        long_rs: isize,
        short: *const S,
        out: *mut S,
        n: usize,
    ) {
        let mut p = 0;
        // SAFETY: the caller's contract, group by group.
        unsafe {
            while p + P <= k {
                axpy_group::<S, M, P>(p, cols, long, long_rs, short, (out, n));
                p += P;
            }
            while p < k {
                axpy_group::<S, M, 1>(p, cols, long, long_rs, short, (out, n));
                p += 1;
            }
        }
    }

    /// Rows `p0..p0 + P` of the long operand into the output rows over `cols`.
    #[inline(always)]
    unsafe fn axpy_group<S: Lanes, const M: usize, const P: usize>(
        p0: usize,
        (start, end): (usize, usize),
        long: *const S,
        long_rs: isize,
        short: *const S,
        (out, n): (*mut S, usize),
    ) {
        unsafe {
            let mut coef = [[S::vzero(); M]; P];
            for (q, row) in coef.iter_mut().enumerate() {
                for (s, v) in row.iter_mut().enumerate() {
                    *v = S::splat(*short.add((p0 + q) * M + s));
                }
            }
            let rows: [*const S; P] =
                std::array::from_fn(|q| long.offset((p0 + q) as isize * long_rs));
            let mut c = start;
            while c + S::LANES <= end {
                axpy_step::<S, M, P>(&coef, &rows, (out, n), c, S::LANES);
                c += S::LANES;
            }
            if c < end {
                axpy_step::<S, M, P>(&coef, &rows, (out, n), c, end - c);
            }
        }
    }

    /// One vector of `lanes` columns from `c`: `out[s, c..] += Σ_q coef[q][s]·rows[q][c..]`.
    #[inline(always)]
    unsafe fn axpy_step<S: Lanes, const M: usize, const P: usize>(
        coef: &[[S::V; M]; P],
        rows: &[*const S; P],
        (out, n): (*mut S, usize),
        c: usize,
        lanes: usize,
    ) {
        unsafe {
            let mut acc = [S::vzero(); M];
            for (s, a) in acc.iter_mut().enumerate() {
                *a = S::load(out.add(s * n + c), lanes);
            }
            for (row, coefs) in rows.iter().zip(coef) {
                let x = S::load(row.add(c), lanes);
                for (a, m) in acc.iter_mut().zip(coefs) {
                    *a = S::fmadd(*m, x, *a);
                }
            }
            for (s, a) in acc.iter().enumerate() {
                S::store(out.add(s * n + c), *a, lanes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use crate::Float;
    use crate::kernel::gemm;
    use crate::kernel::tests::{closed_form, naive};
    use crate::threads::with_num_threads;

    fn taken() -> usize {
        super::TAKEN.with(std::cell::Cell::get)
    }

    /// Whether this machine runs the loops (elsewhere every product goes to `gemm`).
    fn avx512() -> bool {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Each `m×k·k×n` product with `A` and `B` in both layouts, the output plain and
    /// transposed, fresh (NaN in C) and accumulated, on one thread and two, against a
    /// product computed entry by entry; each must take these loops.
    fn check<T: Float>(shapes: &[(usize, usize, usize)], tol: f64) {
        for &(m, n, k) in shapes {
            let (a, at) = (closed_form::<T>(m, k, 0.3), closed_form::<T>(k, m, 0.3));
            let (b, bt) = (closed_form::<T>(k, n, 0.7), closed_form::<T>(n, k, 0.7));
            let c0 = closed_form::<T>(m, n, 0.9);
            let layouts = [
                (a.view(), b.view()),
                (a.view(), bt.t()),
                (at.t(), b.view()),
                (at.t(), bt.t()),
            ];
            for (av, bv) in layouts {
                for (threads, transposed_out) in [(1, false), (2, false), (2, true)] {
                    for (alpha, beta) in [(1.0, 0.0), (-0.5, 0.25)] {
                        let want = naive(alpha, av, bv, beta, &c0);
                        let mut storage = if transposed_out {
                            c0.t().as_standard_layout().into_owned()
                        } else {
                            c0.clone()
                        };
                        if beta == 0.0 {
                            storage.fill(T::nan());
                        }
                        let c = if transposed_out {
                            storage.view_mut().reversed_axes()
                        } else {
                            storage.view_mut()
                        };
                        let before = taken();
                        with_num_threads(threads, || gemm(T::of(alpha), av, bv, T::of(beta), c));
                        let context = format!(
                            "{m}x{k}x{n}, strides {:?}·{:?}, {threads} threads, transposed output {transposed_out}",
                            av.strides(),
                            bv.strides()
                        );
                        assert_eq!(
                            taken(),
                            before + usize::from(avx512()),
                            "{context}: not these loops"
                        );
                        let got = if transposed_out {
                            storage.t().to_owned()
                        } else {
                            storage
                        };
                        assert_close(&got, &want, tol, &context);
                    }
                }
            }
        }
    }

    fn assert_close<T: Float>(got: &Array2<T>, want: &Array2<f64>, tol: f64, context: &str) {
        for (g, w) in got.iter().zip(want) {
            let g = g.as_f64();
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{context}: {g} vs {w}"
            );
        }
    }

    /// At most eight rows or columns, on either side, and larger ones of odd sizes.
    fn few_rows_or_columns() -> Vec<(usize, usize, usize)> {
        let mut shapes: Vec<_> = (1..=8)
            .flat_map(|f| [(f, 300, 240), (300, f, 240)])
            .collect();
        shapes.extend([(5, 700, 131), (1000, 8, 70), (3, 129, 1000)]);
        shapes
    }

    /// An inner dimension of at most eight.
    fn short_inner_dimension() -> Vec<(usize, usize, usize)> {
        (1..=8)
            .map(|k| (300, 260, k))
            .chain([(700, 600, 5)])
            .collect()
    }

    #[test]
    fn f64_products_with_few_rows_or_columns_match_a_naive_product() {
        check::<f64>(&few_rows_or_columns(), 1e-12);
    }

    #[test]
    fn f32_products_with_few_rows_or_columns_match_a_naive_product() {
        check::<f32>(&few_rows_or_columns(), 1e-4);
    }

    #[test]
    fn products_with_a_short_inner_dimension_match_a_naive_product() {
        check::<f64>(&short_inner_dimension(), 1e-12);
        check::<f32>(&short_inner_dimension(), 1e-5);
    }
}
