//! The fuzz targets of `retrograd_tests::fuzz`, a bounded slice each (fixed seeds, a few
//! seconds), under [`Bounded`], the allocator that refuses any single allocation above
//! 256 MiB: an op that would need more must report an error (its `try_` path probes the
//! allocator), and any other attempt fails the run by aborting.
//!
//! `FUZZ_INPUTS=1000000 cargo test -p retrograd-tests --test fuzz -- --nocapture
//! --test-threads 1` is the long run of `docs/fuzzing.md`; each target prints `fuzz
//! <target> inputs <n> violations <v>` (and its progress every 100,000 inputs).

use retrograd_tests::fuzz::{
    Bounded, Report, checkpoint_seed, checkpoint_target, op_program_seeds, op_program_target, run,
    tape_json_seed, tape_json_target,
};

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

/// Inputs per target: `FUZZ_INPUTS`, or the bounded slice CI runs.
fn inputs(default: u64) -> u64 {
    std::env::var("FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn assert_clean(target: &str, report: &Report) {
    println!(
        "fuzz {target} inputs {} violations {} mean_len {:.0}",
        report.inputs,
        report.violations,
        report.mean_len()
    );
    assert_eq!(
        report.violations,
        0,
        "{target}: {} of {} inputs violated the property; the first:\n{}",
        report.violations,
        report.inputs,
        report.examples.join("\n")
    );
}

#[test]
fn checkpoint_loading() {
    let (store, bytes) = checkpoint_seed();
    let report = run(&[bytes], inputs(20_000), 0xC4EC, |b| {
        checkpoint_target(&store, b)
    });
    assert_clean("checkpoint", &report);
}

#[test]
fn tape_json_loading() {
    let report = run(&[tape_json_seed()], inputs(5_000), 0x7A9E, tape_json_target);
    assert_clean("tape_json", &report);
}

#[test]
fn op_programs() {
    let report = run(&op_program_seeds(), inputs(5_000), 0x0B5, op_program_target);
    assert_clean("op_programs", &report);
}

/// The seeds of each libFuzzer target, by target name.
fn libfuzzer_seeds() -> [(&'static str, Vec<Vec<u8>>); 3] {
    [
        ("checkpoint", vec![checkpoint_seed().1]),
        ("tape_json", vec![tape_json_seed()]),
        ("op_programs", op_program_seeds()[..8].to_vec()),
    ]
}

/// The libFuzzer targets (`fuzz/`) start from a committed corpus, `fuzz/corpus/<target>/`:
/// this harness's seeds, written by `FUZZ_WRITE_SEEDS=1 cargo test -p retrograd-tests
/// --test fuzz libfuzzer_corpus`. Every file there must satisfy its target's property.
#[test]
fn libfuzzer_corpus_is_seeded_and_clean() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let (store, _) = checkpoint_seed();
    for (target, seeds) in libfuzzer_seeds() {
        let dir = corpus.join(target);
        if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).expect("create the corpus folder");
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).expect("write a seed");
            }
        }
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .collect();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        for file in files {
            let bytes = std::fs::read(&file).expect("read a corpus file");
            let verdict = match target {
                "checkpoint" => checkpoint_target(&store, &bytes),
                "tape_json" => tape_json_target(&bytes),
                _ => op_program_target(&bytes),
            };
            assert!(verdict.is_ok(), "{}: {verdict:?}", file.display());
        }
    }
}
