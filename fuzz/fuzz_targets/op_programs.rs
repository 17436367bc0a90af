//! Op programs with fuzzer-chosen shapes, axes and indices: `try_` never panics, the
//! plain forms panic only with the documented message, gradients of what was built work
//! (`retrograd_tests::fuzz::op_program_target`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: retrograd_fuzz::quiet_panics(),
    |data: &[u8]| retrograd_fuzz::judge(retrograd_tests::fuzz::op_program_target(data))
);
