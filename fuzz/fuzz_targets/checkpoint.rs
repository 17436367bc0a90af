//! Checkpoint bytes: `load_bytes` and `new_from_bytes` never panic, and a refused load
//! leaves the store untouched (`retrograd_tests::fuzz::checkpoint_target`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use retrograd_tests::fuzz::{checkpoint_seed, checkpoint_target};

static STORE: OnceLock<retrograd::nn::ParamStore<f32>> = OnceLock::new();

fuzz_target!(
    init: retrograd_fuzz::quiet_panics(),
    |data: &[u8]| {
        let store = STORE.get_or_init(|| checkpoint_seed().0);
        retrograd_fuzz::judge(checkpoint_target(store, data));
    }
);
