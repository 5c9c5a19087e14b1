#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| botwatch_log::fuzzing::redis_reply(data));
