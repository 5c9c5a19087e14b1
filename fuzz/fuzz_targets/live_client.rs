#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| botwatch_server::fuzzing::live_client(data));
