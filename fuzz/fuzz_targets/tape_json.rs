//! Tape JSON: `TapeJson::from_str` never panics (`retrograd_tests::fuzz::tape_json_target`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: retrograd_fuzz::quiet_panics(),
    |data: &[u8]| retrograd_fuzz::judge(retrograd_tests::fuzz::tape_json_target(data))
);
