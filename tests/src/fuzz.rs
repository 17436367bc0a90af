//! Deterministic mutation fuzzing of everything a user's untrusted input reaches:
//! checkpoint bytes, tape JSON, and programs of ops with random (often invalid) shapes,
//! axes and indices.
//!
//! Each target is a function from bytes to a verdict ([`Verdict`]): `Ok` when the library
//! behaved as documented, `Err` describing the violation otherwise. The properties:
//! - checkpoints: `load_bytes`, `new_from_bytes` never panic, and a refused load leaves
//!   the store exactly as it was;
//! - tape JSON: `TapeJson::from_str` and `TapeJson::from_reader` never panic;
//! - op programs: every `try_` path (and `Var::try_apply` for every op) never panics; the
//!   panicking forms panic only with the documented message naming the op, its location
//!   and the input shapes; the gradient of whatever the program built is computed without
//!   a panic.
//!
//! [`run`] drives a target from seed inputs with a fixed-seed mutator, so a run is
//! reproducible from its seed and count. The test `tests/fuzz.rs` runs a bounded slice in
//! `cargo test`, under an allocator that refuses any single allocation above a bound (an
//! op that would allocate more must report an error instead); `docs/fuzzing.md` gives the
//! long run's command and figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{ArrayD, IxDyn};
use retrograd::nn::ParamStore;
use retrograd::nn::checkpoint;
use retrograd::ops::elementwise::ElementwiseOps;
use retrograd::ops::nn::NnOps;
use retrograd::ops::nn::Softmax;
use retrograd::ops::reduce::{Axes, Extremum, ExtremumKind, LogSumExp, Mean, Sum, Variance};
use retrograd::ops::shape::{self, Flip, Permute, ShapeOps, SliceSpec, Squeeze, Unsqueeze};
use retrograd::prelude::*;
use retrograd::tape::export::TapeJson;

/// The largest single allocation the library may make while fuzzed (256 MiB).
pub const ALLOCATION_LIMIT: usize = 1 << 28;

/// The system allocator, refusing (returning null for) any allocation above
/// [`ALLOCATION_LIMIT`]: the global allocator of the fuzz test binary and of the libFuzzer
/// targets (`fuzz/`). An op whose output would be larger must report an error (its
/// `try_` path probes the allocator); any other attempt aborts the run.
pub struct Bounded;

// SAFETY: defers to `System` for every request it does not refuse; refusing is returning
// null, which `GlobalAlloc` permits.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// What a target says about one input: `Err` names the violated property.
pub type Verdict = Result<(), String>;

/// A fast, seedable generator (SplitMix64): the harness's only source of randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Numbers that break arithmetic, as text: what a mutator splices into a header or a
/// document.
const NASTY_NUMBERS: [&str; 9] = [
    "0",
    "-1",
    "1",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e309",
];

/// One random edit of `input`: a flipped bit, a random byte, a deleted, repeated or
/// truncated stretch, or a nasty number spliced in (over a digit run when there is one).
pub fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        let at = if len == 0 { 0 } else { rng.below(len) };
        match rng.below(7) {
            0 if len > 0 => out[at] ^= 1 << rng.below(8),
            1 if len > 0 => out[at] = rng.next_u64() as u8,
            2 if len > 0 => {
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at..end);
            }
            3 if len > 0 => {
                let end = (at + 1 + rng.below(16)).min(len);
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
            4 => out.truncate(at),
            _ => {
                let number = NASTY_NUMBERS[rng.below(NASTY_NUMBERS.len())].as_bytes();
                let digits = out[at..]
                    .iter()
                    .position(u8::is_ascii_digit)
                    .map(|p| at + p);
                let start = digits.unwrap_or(at);
                let end = start
                    + out[start..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                out.splice(start..end, number.iter().copied());
            }
        }
    }
    out
}

/// Calls `f`, turning a panic into `Err` with its message.
fn no_panic<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|payload| format!("{what} panicked: {}", message(&*payload)))
}

/// A panic payload's text.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "<non-string panic>".into()
    }
}

/// Checkpoint bytes: loading into a store never panics and leaves the store untouched
/// on a refusal; building a new store never panics.
pub fn checkpoint_target(store: &ParamStore<f32>, bytes: &[u8]) -> Verdict {
    let mut target = store.clone();
    let loaded = no_panic("load_bytes", || checkpoint::load_bytes(&mut target, bytes))?;
    if loaded.is_err() && &target != store {
        return Err("a refused load_bytes changed the store".into());
    }
    // Either answer is fine; only a panic is not.
    let _ = no_panic("new_from_bytes::<f32>", || {
        checkpoint::new_from_bytes::<f32>(bytes)
    })?;
    let _ = no_panic("new_from_bytes::<f64>", || {
        checkpoint::new_from_bytes::<f64>(bytes)
    })?;
    Ok(())
}

/// Tape JSON: reading never panics, from text or from a stream.
pub fn tape_json_target(bytes: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(bytes);
    let _ = no_panic("TapeJson::from_str", || text.parse::<TapeJson>())?;
    let _ = no_panic("TapeJson::from_reader", || TapeJson::from_reader(bytes))?;
    Ok(())
}

/// Reads numbers from the fuzzer's bytes (zeros once they run out), biased towards the
/// values that break shape arithmetic.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    /// Mostly small, sometimes enormous.
    fn extent(&mut self) -> usize {
        match self.byte() {
            b @ 0..=223 => (b % 6) as usize,
            224..=229 => 1 << 20,
            230..=235 => 1 << 40,
            236..=241 => 1 << 62,
            242..=247 => isize::MAX as usize + 1,
            _ => usize::MAX,
        }
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn axis(&mut self) -> isize {
        match self.byte() {
            b @ 0..=247 => (b % 11) as isize - 5,
            248..=251 => isize::MAX,
            _ => isize::MIN,
        }
    }

    fn extents(&mut self, max_len: usize) -> Vec<usize> {
        let n = self.byte() as usize % (max_len + 1);
        (0..n).map(|_| self.extent()).collect()
    }
}

/// A small value of a random (possibly empty) shape.
fn value(r: &mut Reader<'_>) -> ArrayD<f64> {
    let rank = r.byte() as usize % 4;
    let shape: Vec<usize> = (0..rank).map(|_| r.byte() as usize % 4).collect();
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(&shape),
        (0..n).map(|i| i as f64 * 0.25 - 1.0).collect(),
    )
    .unwrap_or_else(|_| ArrayD::zeros(IxDyn(&[])))
}

/// One op call with fuzzer-chosen arguments, run through either of its forms.
#[derive(Debug, Clone)]
enum Call {
    Reshape(Vec<isize>),
    BroadcastTo(Vec<usize>),
    Pad(Vec<(usize, usize)>),
    Slice(SliceSpec),
    IndexSelect(isize, Vec<usize>),
    Gather(isize, ArrayD<usize>),
    Flip(isize),
    Sum(Axes, bool),
    Mean(Axes, bool),
    Extremum(ExtremumKind, Axes),
    Variance(Axes, usize),
    LogSumExp(Axes),
    Softmax(isize),
    MatMul,
    Concat(isize),
    Stack(isize),
    Squeeze(isize),
    Unsqueeze(isize),
    Permute(Vec<usize>),
    CrossEntropy(Vec<usize>),
}

impl Call {
    /// Decodes a call for an input of shape `shape`.
    fn read(r: &mut Reader<'_>, shape: &[usize]) -> Call {
        match r.byte() % 20 {
            0 => Call::Reshape(r.extents(4).into_iter().map(|d| d as isize).collect()),
            1 => Call::BroadcastTo(r.extents(4)),
            2 => Call::Pad(shape.iter().map(|_| (r.extent(), r.extent())).collect()),
            3 => Call::Slice(SliceSpec::new(r.axis(), r.extent()..r.extent()).step(r.extent())),
            4 => Call::IndexSelect(r.axis(), r.extents(5)),
            5 => Call::Gather(
                r.axis(),
                ArrayD::from_shape_fn(IxDyn(shape), |_| r.extent()),
            ),
            6 => Call::Flip(r.axis()),
            7 => Call::Sum(axes(r), r.flag()),
            8 => Call::Mean(axes(r), r.flag()),
            9 => {
                let kind = [ExtremumKind::Max, ExtremumKind::Min][r.byte() as usize % 2];
                Call::Extremum(kind, axes(r))
            }
            10 => Call::Variance(axes(r), r.extent()),
            11 => Call::LogSumExp(axes(r)),
            12 => Call::Softmax(r.axis()),
            13 => Call::MatMul,
            14 => Call::Concat(r.axis()),
            15 => Call::Stack(r.axis()),
            16 => Call::Squeeze(r.axis()),
            17 => Call::Unsqueeze(r.axis()),
            18 => Call::Permute(r.extents(4)),
            _ => Call::CrossEntropy(r.extents(4)),
        }
    }

    /// The op's node name, as its panic message names it.
    fn name(&self) -> &'static str {
        match self {
            Call::Reshape(_) => "reshape",
            Call::BroadcastTo(_) => "broadcast_to",
            Call::Pad(_) => "pad",
            Call::Slice(_) => "slice",
            Call::IndexSelect(..) => "index_select",
            Call::Gather(..) => "gather",
            Call::Flip(_) => "flip",
            Call::Sum(..) => "sum",
            Call::Mean(..) => "mean",
            Call::Extremum(ExtremumKind::Max, _) => "max",
            Call::Extremum(..) => "min",
            Call::Variance(..) => "var",
            Call::LogSumExp(_) => "logsumexp",
            Call::Softmax(_) => "softmax",
            Call::MatMul => "matmul",
            Call::Concat(_) => "concat",
            Call::Stack(_) => "stack",
            Call::Squeeze(_) => "squeeze",
            Call::Unsqueeze(_) => "unsqueeze",
            Call::Permute(_) => "permute",
            Call::CrossEntropy(_) => "cross_entropy",
        }
    }

    /// The non-panicking form: the op's `try_` method, or `Var::try_apply` of its rule.
    fn try_run<'t>(
        &self,
        x: &Var<'t, f64>,
        other: &Var<'t, f64>,
    ) -> retrograd::tape::Result<Var<'t, f64>> {
        match self.clone() {
            Call::Reshape(s) => x.try_reshape(&s),
            Call::BroadcastTo(s) => x.try_broadcast_to(&s),
            Call::Pad(w) => x.try_pad(&w),
            Call::Slice(spec) => x.try_slice_axes(&[spec]),
            Call::IndexSelect(a, i) => x.try_index_select(a, &i),
            Call::Gather(a, i) => x.try_gather(a, &i),
            Call::Flip(a) => Var::try_apply(Flip::new(a), &[x]),
            Call::Sum(a, k) => Var::try_apply(Sum::new(a, k), &[x]),
            Call::Mean(a, k) => Var::try_apply(Mean::new(a, k), &[x]),
            Call::Extremum(kind, a) => Var::try_apply(Extremum::new(kind, a, false), &[x]),
            Call::Variance(a, c) => Var::try_apply(Variance::new(a, false, c), &[x]),
            Call::LogSumExp(a) => Var::try_apply(LogSumExp::new(a, true), &[x]),
            Call::Softmax(a) => Var::try_apply(Softmax::new(a), &[x]),
            Call::MatMul => x.try_matmul(other),
            Call::Concat(a) => shape::try_concat(&[x, other], a),
            Call::Stack(a) => shape::try_stack(&[x, other], a),
            Call::Squeeze(a) => Var::try_apply(Squeeze::new(a), &[x]),
            Call::Unsqueeze(a) => Var::try_apply(Unsqueeze::new(a), &[x]),
            Call::Permute(p) => Var::try_apply(Permute::new(&p), &[x]),
            Call::CrossEntropy(l) => x.try_cross_entropy(&l, Default::default()),
        }
    }

    /// The panicking form: the method a user calls.
    fn run<'t>(&self, x: &Var<'t, f64>, other: &Var<'t, f64>) -> Var<'t, f64> {
        match self.clone() {
            Call::Reshape(s) => x.reshape(&s),
            Call::BroadcastTo(s) => x.broadcast_to(&s),
            Call::Pad(w) => x.pad(&w),
            Call::Slice(spec) => x.slice_axes(&[spec]),
            Call::IndexSelect(a, i) => x.index_select(a, &i),
            Call::Gather(a, i) => x.gather(a, &i),
            Call::Flip(a) => x.flip(a),
            Call::Sum(a, k) => x.sum(a, k),
            Call::Mean(a, k) => x.mean(a, k),
            Call::Extremum(ExtremumKind::Max, a) => x.max(a, false),
            Call::Extremum(_, a) => x.min(a, false),
            Call::Variance(a, c) => x.var_with(a, false, c),
            Call::LogSumExp(a) => x.logsumexp(a, true),
            Call::Softmax(a) => x.softmax(a),
            Call::MatMul => x.matmul(other),
            Call::Concat(a) => shape::concat(&[x, other], a),
            Call::Stack(a) => shape::stack(&[x, other], a),
            Call::Squeeze(a) => x.squeeze(a),
            Call::Unsqueeze(a) => x.unsqueeze(a),
            Call::Permute(p) => x.permute(&p),
            Call::CrossEntropy(l) => x.cross_entropy_with(&l, Default::default()),
        }
    }
}

/// Axes to reduce over: all, one, or two (possibly the same, possibly out of range).
fn axes(r: &mut Reader<'_>) -> Axes {
    match r.byte() % 3 {
        0 => Axes::All,
        1 => Axes::from(r.axis()),
        _ => Axes::from(vec![r.axis(), r.axis()]),
    }
}

/// Whether a panic message is the documented programmer-error panic of `op`:
/// `` `op` at file:line:col: what is wrong (input shapes ..) ``.
fn documented_panic(op: &str, text: &str) -> bool {
    text.starts_with(&format!("`{op}` at ")) && text.contains("(input shapes")
}

/// An op program: a few ops with fuzzer-chosen arguments, each through its `try_` path
/// (which must not panic) and, when that refuses, through its panicking path (which must
/// panic with the documented message); then the gradient of what was built.
pub fn op_program_target(bytes: &[u8]) -> Verdict {
    let mut r = Reader(bytes);
    let tape = Tape::<f64>::new();
    let start = tape.var(value(&mut r));
    let other = tape.var(value(&mut r));
    let mut x = start;
    for _ in 0..1 + r.byte() % 6 {
        let call = Call::read(&mut r, &x.shape());
        let op = call.name();
        match no_panic(op, || call.try_run(&x, &other))? {
            Ok(y) if y.shape().iter().product::<usize>() <= 1 << 12 => x = y,
            Ok(_) => {}
            // The same call through the panicking form: it shares the checks with
            // `try_`, so it must panic, with the documented message.
            Err(_) => match catch_unwind(AssertUnwindSafe(|| call.run(&x, &other))) {
                Err(payload) if documented_panic(op, &message(&*payload)) => {}
                Err(payload) => {
                    return Err(format!(
                        "{op} panicked undocumented: {}",
                        message(&*payload)
                    ));
                }
                Ok(_) => return Err(format!("{op}: try_ refused what the plain form accepted")),
            },
        }
    }
    let loss = no_panic("sum_all", || x.sum_all())?;
    match no_panic("grad", || tape.grad(loss, &[start, other]))? {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("the gradient of a valid program failed: {e}")),
    }
}

/// The longest input a run tries, in bytes.
pub const MAX_LEN: usize = 4096;

/// A long run prints its progress to stderr after every this many inputs.
pub const PROGRESS_EVERY: u64 = 100_000;

/// Figures of one run of a target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Inputs tried.
    pub inputs: u64,
    /// Inputs that violated the target's property, with the first few descriptions.
    pub violations: u64,
    /// Up to ten violations: the input (hex, first 256 bytes) and what went wrong.
    pub examples: Vec<String>,
    /// The inputs' total length in bytes (see [`mean_len`](Report::mean_len)).
    pub bytes: u64,
}

impl Report {
    /// The inputs' mean length in bytes: a pool that drifts to short inputs (truncations
    /// accumulating) shows here, long before it shows as missed bugs.
    pub fn mean_len(&self) -> f64 {
        self.bytes as f64 / self.inputs.max(1) as f64
    }
}

/// Runs `target` on `count` inputs: each a mutation of one of `seeds` or of an earlier
/// mutant (so edits accumulate), chosen by a generator seeded with `seed`. Panic messages
/// are silenced while it runs (the verdicts carry them); every [`PROGRESS_EVERY`] inputs
/// a line of progress goes to stderr.
pub fn run(seeds: &[Vec<u8>], count: u64, seed: u64, target: impl Fn(&[u8]) -> Verdict) -> Report {
    let mut rng = Rng::new(seed);
    let mut pool: Vec<Vec<u8>> = seeds.to_vec();
    let mut report = Report::default();
    let _quiet = QuietPanics::new();
    let started = std::time::Instant::now();
    for done in 0..count {
        if done > 0 && done % PROGRESS_EVERY == 0 {
            eprintln!(
                "fuzz progress: {done} inputs, {} violations, {:.0} s",
                report.violations,
                started.elapsed().as_secs_f64()
            );
        }
        // Half the parents are seeds, so half the inputs stay a few edits from a whole
        // document; the rest let edits accumulate. (Parents drawn from the pool alone
        // drifted to short prefixes as truncations piled up: tape JSON's inputs averaged
        // 76 bytes against its seed's 1,897.)
        let parent = if rng.below(2) == 0 {
            &seeds[rng.below(seeds.len())]
        } else {
            &pool[rng.below(pool.len())]
        };
        let mut input = mutate(&mut rng, parent);
        // Edits accumulate; a cap keeps mutants near the seeds' size (libFuzzer's max_len).
        input.truncate(MAX_LEN);
        report.inputs += 1;
        report.bytes += input.len() as u64;
        if let Err(why) = target(&input) {
            report.violations += 1;
            if report.examples.len() < 10 {
                let hex: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
                report.examples.push(format!("{why}\n  input: {hex}"));
            }
        }
        if pool.len() < 256 {
            pool.push(input);
        } else {
            let slot = seeds.len() + rng.below(pool.len() - seeds.len());
            pool[slot] = input;
        }
    }
    report
}

/// Silences panic messages while any run is under way (runs may overlap on test threads;
/// the first installs the silent hook, the last puts the previous one back).
struct QuietPanics;

type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send>;

static QUIET: std::sync::Mutex<(usize, Option<Hook>)> = std::sync::Mutex::new((0, None));

impl QuietPanics {
    fn new() -> Self {
        let mut state = QUIET.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == 0 {
            state.1 = Some(std::panic::take_hook());
            std::panic::set_hook(Box::new(|_| {}));
        }
        state.0 += 1;
        QuietPanics
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        let mut state = QUIET.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        if state.0 == 0
            && let Some(hook) = state.1.take()
        {
            std::panic::set_hook(hook);
        }
    }
}

/// A small store and its checkpoint: the checkpoint target's seed.
pub fn checkpoint_seed() -> (ParamStore<f32>, Vec<u8>) {
    let mut store = ParamStore::<f32>::new();
    store.insert(
        "layer.weight",
        ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| i[0] as f32 - i[1] as f32),
    );
    store.insert("layer.bias", ArrayD::zeros(IxDyn(&[3])));
    store.insert("scale", ArrayD::from_elem(IxDyn(&[]), 0.5));
    let bytes = checkpoint::to_bytes(&store).unwrap_or_default();
    (store, bytes)
}

/// A small tape's JSON: the tape JSON target's seed.
pub fn tape_json_seed() -> Vec<u8> {
    let tape = Tape::<f64>::new();
    let x = tape.var(ndarray::array![1.0, 2.0]).named("x");
    let y = (x.exp() * x).sum_all();
    let _ = tape.grad(y, &[x]);
    tape.to_json().into_bytes()
}

/// The op target's seeds: random byte strings (every byte string decodes to a program,
/// so no seed needs crafting), from a fixed generator.
pub fn op_program_seeds() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(0x5EED);
    (0..64)
        .map(|_| (0..48).map(|_| rng.next_u64() as u8).collect())
        .collect()
}
