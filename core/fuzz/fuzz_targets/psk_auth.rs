#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pinfold_core::fuzzing::psk_auth(data));
