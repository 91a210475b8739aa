#![no_main]
// The body is fuzz_targets::signaling_cluster_message (crates/fuzz-targets), which the stable corpus replay runs too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::signaling_cluster_message(data));
