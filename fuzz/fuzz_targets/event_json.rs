#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| botwatch_event::fuzzing::event_json(data));
