//! Properties of the chunk codec over generated inputs: any floats (NaN payloads,
//! infinities, negative zero, subnormals) and any step order round-trip bit for bit,
//! the header's summary matches the points, and no byte string makes decoding panic.

use proptest::prelude::*;

use super::tests::bits;
use crate::series::Points;
use crate::series::codec::{self, ChunkSummary, MAX_CHUNK_POINTS};

/// Any f64 by its bits, so every NaN payload and sign is covered, mixed with the
/// special values training produces more often than chance would.
fn any_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<u64>().prop_map(f64::from_bits),
        2 => -1e3f64..1e3,
        1 => prop::sample::select(vec![
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
        ]),
    ]
}

/// Steps as training logs them (mostly increasing, with repeats and gaps) or anywhere
/// in i64.
fn any_steps(len: usize) -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        prop::collection::vec(any::<i64>(), len),
        prop::collection::vec(0i64..20, len).prop_map(|gaps| {
            gaps.iter()
                .scan(0i64, |step, gap| {
                    *step += gap;
                    Some(*step)
                })
                .collect()
        }),
    ]
}

fn any_points(max: usize) -> impl Strategy<Value = Points> {
    (1..=max).prop_flat_map(|len| {
        (
            any_steps(len),
            prop::collection::vec(any_float(), len),
            prop::collection::vec(
                prop_oneof![
                    1.7e9f64..1.8e9,
                    any_float().prop_filter("finite", |t| t.is_finite())
                ],
                len,
            ),
        )
            .prop_map(|(steps, values, timestamps)| Points {
                steps,
                values,
                timestamps,
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn points_in_any_order_round_trip_bit_for_bit_once_sorted(mut points in any_points(600)) {
        points.sort();
        let chunk = codec::encode(&points);
        let decoded = codec::decode(&chunk).expect("a chunk we encoded decodes");
        prop_assert_eq!(bits(&decoded), bits(&points));
    }

    #[test]
    fn the_header_summary_is_the_summary_of_the_points(mut points in any_points(200)) {
        points.sort();
        let chunk = codec::encode(&points);
        let summary = codec::summary(&chunk).expect("a header we wrote parses");
        let expected = ChunkSummary::of(&points).expect("non-empty");
        prop_assert_eq!(summary.count, expected.count);
        prop_assert_eq!((summary.first_step, summary.last_step), (expected.first_step, expected.last_step));
        for (got, want) in [(summary.min, expected.min), (summary.max, expected.max), (summary.last, expected.last)] {
            prop_assert_eq!(got.to_bits(), want.to_bits());
        }
    }

    #[test]
    fn any_bytes_decode_to_points_or_an_error_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = codec::decode(&bytes);
        let _ = codec::summary(&bytes);
    }

    #[test]
    fn a_damaged_chunk_decodes_to_an_error_or_to_points_never_a_panic(
        mut points in any_points(100),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        points.sort();
        let mut chunk = codec::encode(&points);
        for (at, byte) in flips {
            let at = at.index(chunk.len());
            chunk[at] ^= byte | 1;
        }
        if let Ok(decoded) = codec::decode(&chunk) {
            prop_assert!((1..=MAX_CHUNK_POINTS).contains(&decoded.len()));
        }
    }
}
