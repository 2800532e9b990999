//! Log batches as clients send them, from any bytes: parsing, limits and chunking must
//! refuse or accept cleanly, never panic, and store exactly what they accept.
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    sextant_domain::series::batch::fuzz_log_batch(body);
});
