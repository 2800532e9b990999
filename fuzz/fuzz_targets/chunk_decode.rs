//! Stored chunks, from any bytes: decoding either fails cleanly or yields points that
//! encode and decode again to the same bits.
#![no_main]

use sextant_domain::series::codec;

libfuzzer_sys::fuzz_target!(|chunk: &[u8]| {
    let _ = codec::summary(chunk);
    let Ok(mut points) = codec::decode(chunk) else {
        return;
    };
    points.sort();
    let again = codec::decode(&codec::encode(&points)).expect("our own chunk decodes");
    let bits = |p: &sextant_domain::series::Points| {
        (0..p.len())
            .map(|i| (p.steps[i], p.values[i].to_bits(), p.timestamps[i].to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&again), bits(&points));
});
