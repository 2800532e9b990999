//! Metric and text series over the real HTTP surface: exact round trips of awkward
//! floats on both storage backends, idempotent and concurrent log batches, step order,
//! exact paging and downsampled reads, text series, and bad batches.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sextant_tests::{TestApp, aws_cases, cases, error_code, text, unique, without_elapsed_storage};

/// A float from a JSON value: a number or one of the strings for non-finite values.
fn float(value: &Value) -> f64 {
    match value {
        Value::Number(number) => number.as_f64().expect("a float"),
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        other => panic!("not a float: {other}"),
    }
}

fn to_json(x: f64) -> Value {
    if x.is_nan() {
        json!("NaN")
    } else if x == f64::INFINITY {
        json!("Infinity")
    } else if x == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(x)
    }
}

fn column(values: &[f64]) -> Value {
    Value::Array(values.iter().map(|&x| to_json(x)).collect())
}

fn floats(values: &Value) -> Vec<f64> {
    values
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {values}"))
        .iter()
        .map(float)
        .collect()
}

fn ints(values: &Value) -> Vec<i64> {
    values
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {values}"))
        .iter()
        .map(|v| v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}")))
        .collect()
}

/// Bit patterns, with every NaN as the one NaN JSON can carry.
fn bits(values: &[f64]) -> Vec<u64> {
    values
        .iter()
        .map(|x| {
            if x.is_nan() {
                f64::NAN.to_bits()
            } else {
                x.to_bits()
            }
        })
        .collect()
}

/// Floats from random bit patterns (no NaNs: JSON carries only one), reproducibly.
fn random_floats(n: usize, mut seed: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let x = f64::from_bits(seed);
        if !x.is_nan() {
            out.push(x);
        }
    }
    out
}

/// `GET /v1/runs/{run}/series/{name_and_query}`, asserting 200.
async fn read(app: &TestApp, key: &str, run: &str, name_and_query: &str) -> Value {
    let (status, body) = app
        .get(&format!("/v1/runs/{run}/series/{name_and_query}"), key)
        .await;
    assert_eq!(status, StatusCode::OK, "{name_and_query}: {body}");
    body
}

async fn summaries(app: &TestApp, key: &str, run: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/runs/{run}/series"), key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["series"].clone()
}

macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        cases!(embedded, sextant_tests::TestApp::spawn; $($case),+);
        aws_cases!(dynamodb, sextant_tests::TestApp::spawn_on_aws; $($case),+);
    };
}

on_both_backends!(
    values_and_timestamps_round_trip_bit_for_bit_including_nan_infinities_and_negative_zero,
    a_retried_batch_is_stored_and_counted_once,
    a_sessions_numbered_batches_are_stored_once_and_late_ones_refused,
    points_come_back_in_step_order_and_a_repeated_step_keeps_its_logged_order,
    text_series_round_trip_in_step_order_and_page,
    downsampling_keeps_every_spike_and_each_buckets_extremes,
    bad_batches_get_clear_codes_and_store_nothing,
    a_name_used_for_numbers_cannot_take_text_and_the_other_way_round,
    a_series_keeps_the_step_unit_its_first_batch_declared,
    a_run_too_full_for_more_series_or_params_says_so_and_stores_nothing,
);

// On the embedded store only: the large cases for speed, and concurrent writers
// because moto's transactions restore a snapshot of the whole table when a condition
// fails, undoing writes other requests made meanwhile (DynamoDB itself keeps them).
cases!(embedded_only, sextant_tests::TestApp::spawn;
    concurrent_writers_to_one_run_lose_no_points_and_count_each_once,
    exact_reads_page_at_50000_points_and_next_after_resumes_without_gaps,
    step_ranges_include_points_of_chunks_logged_out_of_order,
    oversized_batches_and_bodies_are_refused_with_413,
    heartbeat_only_batches_accept_nothing_and_keep_the_run_alive,
    series_names_with_slashes_spaces_and_unicode_are_read_by_path,
    a_token_exchanged_for_the_api_key_logs_and_reads,
    a_step_holding_more_than_a_page_reads_back_a_page_at_a_time,
);

/// Steps, values and (optional) timestamps of one series.
type Columns = (Vec<i64>, Vec<f64>, Option<Vec<f64>>);

fn awkward_values() -> Vec<f64> {
    let two_53 = 2f64.powi(53);
    vec![
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        0.1,
        0.2,
        0.1 + 0.2,
        1.0 / 3.0,
        -2.0 / 3.0,
        std::f64::consts::PI,
        1e-300,
        -1e-300,
        5e-324,
        -5e-324,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        1e300,
        123_456_789.125,
        1.0 / 7.0 * 1e10,
        two_53,
        two_53 + 2.0,
        -(2f64.powi(63)),
        1e22,
        1e23,
        f64::from(1.1_f32),
        f64::from(0.1_f32),
        f64::from(f32::MAX),
        f64::from(f32::MIN_POSITIVE),
        f64::from(f32::from_bits(1)),
        16_777_217.0,
        42.0,
        -1.0,
        0.5,
    ]
}

async fn values_and_timestamps_round_trip_bit_for_bit_including_nan_infinities_and_negative_zero(
    app: TestApp,
) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;

    let awkward = awkward_values();
    let f32_exact: Vec<f64> = [
        0.1_f32,
        1.1,
        -2.5,
        -0.0,
        f32::INFINITY,
        f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        0.0,
        f32::NEG_INFINITY,
        3.402_823_5e38,
        0.333_333_34,
    ]
    .into_iter()
    .map(f64::from)
    .collect();
    let integers = vec![
        0.0,
        -0.0,
        1.0,
        -7.0,
        2f64.powi(53),
        -(2f64.powi(53)),
        1e15,
        3.0,
        42.0,
        -0.0,
    ];
    let big_integers = vec![
        1e300,
        -1e300,
        2f64.powi(63),
        -(2f64.powi(63)),
        2f64.powi(64),
        1e20,
    ];
    let constant = vec![0.1; 1_000];
    let mut random = random_floats(25_000, 0x9E37_79B9_7F4A_7C15);
    random[7] = f64::NAN;
    random[11_000] = f64::INFINITY;
    random[21_000] = -0.0;

    let mut series: BTreeMap<&str, Columns> = BTreeMap::new();
    let steps = |n: usize| (0..n as i64).collect::<Vec<_>>();
    series.insert(
        "awkward",
        (
            steps(awkward.len()),
            awkward.clone(),
            // Microseconds and beyond: not millisecond timestamps.
            Some(
                (0..awkward.len())
                    .map(|i| 1_700_000_000.123_456 + i as f64 * 1.000_001)
                    .collect(),
            ),
        ),
    );
    series.insert(
        "f32/exact",
        (
            steps(f32_exact.len()),
            f32_exact.clone(),
            // Millisecond timestamps.
            Some(
                (0..f32_exact.len() as i64)
                    .map(|i| (1_700_000_000_000 + i * 7) as f64 / 1000.0)
                    .collect(),
            ),
        ),
    );
    series.insert(
        "integers",
        (
            steps(integers.len()),
            integers.clone(),
            Some(vec![1.0; integers.len()]),
        ),
    );
    series.insert(
        "big/integers",
        (
            steps(big_integers.len()),
            big_integers.clone(),
            Some(vec![-1.5; big_integers.len()]),
        ),
    );
    series.insert(
        "constant",
        (
            steps(constant.len()),
            constant.clone(),
            Some(vec![1_700_000_000.0; constant.len()]),
        ),
    );
    series.insert(
        "random",
        (
            (0..random.len() as i64).map(|i| i * 3 - 30_000).collect(),
            random.clone(),
            Some((0..random.len()).map(|i| 1e9 + (i as f64).sqrt()).collect()),
        ),
    );
    series.insert(
        "wild/timestamps",
        (
            steps(7),
            vec![1.0; 7],
            Some(vec![
                1e300,
                -1e300,
                0.0,
                -0.0,
                5e-324,
                -1.5,
                1_700_000_000.001,
            ]),
        ),
    );
    series.insert(
        "steps/extreme",
        (
            vec![i64::MIN, -1, 0, 1, i64::MAX],
            vec![1.0, 2.0, 3.0, 4.0, 5.0],
            None,
        ),
    );

    let mut body = serde_json::Map::new();
    let mut total = 0;
    for (name, (steps, values, timestamps)) in &series {
        let mut columns = json!({"steps": steps, "values": column(values)});
        if let Some(timestamps) = timestamps {
            columns["timestamps"] = column(timestamps);
        }
        body.insert((*name).to_owned(), columns);
        total += steps.len();
    }
    // Integers as plain JSON integers are numbers too.
    body.insert(
        "json/integers".into(),
        json!({"steps": [0, 1, 2, 3], "values": [1, -2, 0, 9_007_199_254_740_993_u64]}),
    );
    total += 4;
    let before = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let accepted = app
        .log_ok(key, &run, json!({"batch_id": "round-trip", "series": body}))
        .await;
    let after = time::OffsetDateTime::now_utc().unix_timestamp() as f64 + 1.0;
    assert_eq!(
        accepted,
        json!({"accepted": total, "abort_requested": false})
    );

    let listed = summaries(&app, key, &run).await;
    assert_eq!(
        listed.as_object().expect("series").len(),
        series.len() + 1,
        "{listed}"
    );
    for (name, (steps, values, timestamps)) in &series {
        let page = read(&app, key, &run, name).await;
        assert_eq!(page["name"], *name);
        assert_eq!(page["kind"], "numeric");
        assert_eq!(page["downsampled"], false);
        assert!(page["next_after"].is_null(), "{name}");
        assert_eq!(&ints(&page["steps"]), steps, "{name}: steps");
        let got = floats(&page["values"]);
        assert_eq!(bits(&got), bits(values), "{name}: values {:?}", got);
        let got_times = floats(&page["timestamps"]);
        match timestamps {
            Some(sent) => assert_eq!(bits(&got_times), bits(sent), "{name}: timestamps"),
            None => assert!(
                got_times.iter().all(|t| (before..=after).contains(t)),
                "{name}: server timestamps {got_times:?} not in [{before}, {after}]"
            ),
        }
        // Asking for more points than there are is the exact read.
        let whole = read(&app, key, &run, &format!("{name}?max_points=100000")).await;
        assert_eq!(whole["downsampled"], false);
        assert_eq!(bits(&floats(&whole["values"])), bits(values), "{name}");

        let summary = &listed[*name];
        assert_eq!(summary["kind"], "numeric");
        assert_eq!(summary["count"], steps.len(), "{name}");
        assert_eq!(summary["first_step"], steps[0], "{name}");
        assert_eq!(
            summary["last_step"],
            *steps.last().expect("points"),
            "{name}"
        );
        assert_eq!(
            bits(&[float(&summary["last"])]),
            bits(&[*values.last().expect("points")]),
            "{name}: last"
        );
        let finite: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(float(&summary["min"]) == min, "{name}: min {summary}");
        assert!(float(&summary["max"]) == max, "{name}: max {summary}");
        if let Some(timestamps) = timestamps {
            assert_eq!(
                float(&summary["last_timestamp"]).to_bits(),
                timestamps.last().expect("points").to_bits()
            );
        }
    }
    let page = read(&app, key, &run, "json/integers").await;
    assert_eq!(
        bits(&floats(&page["values"])),
        bits(&[1.0, -2.0, 0.0, 9_007_199_254_740_993_u64 as f64])
    );

    // The run shows the same summaries.
    let (_, run_view) = app.get(&format!("/v1/runs/{run}"), key).await;
    assert_eq!(run_view["series"], listed);
    // A series of only NaNs has no min or max, and NaN as its last value.
    app.log_ok(key,
        &run,
        json!({"batch_id": "nans", "series": {"diverged": {"steps": [0, 1], "values": ["NaN", "NaN"]}}}),
    )
    .await;
    let diverged = &summaries(&app, key, &run).await["diverged"];
    assert!(
        diverged["min"].is_null() && diverged["max"].is_null(),
        "{diverged}"
    );
    assert_eq!(diverged["last"], "NaN");
}

async fn a_retried_batch_is_stored_and_counted_once(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let batch = json!({
        "batch_id": "0b5e1c1e-5d2a-4c1b-9a53-3f1f0e1d2c3b",
        "series": {
            "loss": {"steps": [0, 1, 2], "values": [0.5, "NaN", 0.25], "timestamps": [10.0, 11.0, 12.0]},
            // Without timestamps: the server's clock fills them in, and a retry still matches.
            "acc": {"steps": [0, 1, 2], "values": [0.1, 0.2, 0.3]},
        },
        "text": {"log": [{"step": 0, "text": "epoch 0"}]},
    });
    let first = app.log_ok(key, &run, batch.clone()).await;
    assert_eq!(first, json!({"accepted": 7, "abort_requested": false}));
    let counted = summaries(&app, key, &run).await;
    let acc_before = read(&app, key, &run, "acc").await;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(app.log_ok(key, &run, batch.clone()).await, first);
    }
    assert_eq!(summaries(&app, key, &run).await, counted);
    assert_eq!(counted["loss"]["count"], 3);
    assert_eq!(counted["acc"]["count"], 3);
    assert_eq!(counted["log"]["count"], 1);
    assert_eq!(read(&app, key, &run, "acc").await, acc_before);
    assert_eq!(
        ints(&read(&app, key, &run, "loss").await["steps"]),
        [0, 1, 2]
    );
    assert_eq!(
        read(&app, key, &run, "log").await["texts"],
        json!(["epoch 0"])
    );

    // The same id with other content is refused, whatever differs.
    let mut other_values = batch.clone();
    other_values["series"]["loss"]["values"][2] = json!(0.125);
    let mut other_text = batch.clone();
    other_text["text"]["log"][0]["text"] = json!("epoch 1");
    let mut fewer = batch.clone();
    fewer["series"]
        .as_object_mut()
        .expect("series")
        .remove("acc");
    let mut with_times = batch.clone();
    with_times["series"]["acc"]["timestamps"] = json!([1.0, 2.0, 3.0]);
    let mut other_step = batch.clone();
    other_step["series"]["loss"]["steps"][0] = json!(-1);
    for changed in [other_values, other_text, fewer, with_times, other_step] {
        let (status, body) = app.log(key, &run, changed).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(error_code(&body), "batch_id_reused");
    }
    assert_eq!(summaries(&app, key, &run).await, counted);
    // Even -0.0 and 0.0 are different content.
    let zeros = |zero: f64| json!({"batch_id": "zeros", "series": {"zero": {"steps": [0], "values": [zero]}}});
    app.log_ok(key, &run, zeros(-0.0)).await;
    let (status, body) = app.log(key, &run, zeros(0.0)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "batch_id_reused".into())
    );
    assert_eq!(app.log_ok(key, &run, zeros(-0.0)).await["accepted"], 1);
    let zero = read(&app, key, &run, "zero").await;
    assert_eq!(bits(&floats(&zero["values"])), bits(&[-0.0]));

    // Another id with the same content is another batch.
    let mut again = batch.clone();
    again["batch_id"] = json!("second-time");
    assert_eq!(app.log_ok(key, &run, again).await, first);
    let twice = summaries(&app, key, &run).await;
    assert_eq!(twice["loss"]["count"], 6);
    assert_eq!(twice["acc"]["count"], 6);
    assert_eq!(twice["log"]["count"], 2);
}

async fn a_sessions_numbered_batches_are_stored_once_and_late_ones_refused(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let numbered = |session: &str, sequence: i64, step: i64| {
        json!({
            "batch_id": format!("{session}-{sequence}"),
            "session": session,
            "sequence": sequence,
            "series": {"loss": {"steps": [step], "values": [step as f64]}},
        })
    };
    for n in 1..=3 {
        let answer = app.log_ok(key, &run, numbered("s", n, n)).await;
        assert_eq!(answer["accepted"], 1);
    }
    // The last one's retry answers as it did; an earlier one's is refused.
    assert_eq!(
        app.log_ok(key, &run, numbered("s", 3, 3)).await["accepted"],
        1
    );
    let (status, body) = app.log(key, &run, numbered("s", 2, 2)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "sequence_behind".into()),
        "{body}"
    );
    // The last number with other points is a reused one.
    let (status, body) = app.log(key, &run, numbered("s", 3, 30)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "batch_id_reused".into()),
        "{body}"
    );
    // A gap is no reason to wait, and another session counts on its own.
    app.log_ok(key, &run, numbered("s", 9, 9)).await;
    app.log_ok(key, &run, numbered("t", 1, 10)).await;
    assert_eq!(summaries(&app, key, &run).await["loss"]["count"], 5);
    assert_eq!(
        ints(&read(&app, key, &run, "loss").await["steps"]),
        [1, 2, 3, 9, 10]
    );
}

async fn concurrent_writers_to_one_run_lose_no_points_and_count_each_once(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    const WRITERS: i64 = 4;
    const BATCHES: i64 = 10;
    const POINTS: i64 = 100;
    let batch = |writer: i64, b: i64| {
        let shared: Vec<i64> = (0..POINTS)
            .map(|i| writer * BATCHES * POINTS + b * POINTS + i)
            .collect();
        let own: Vec<i64> = (0..POINTS).map(|i| b * POINTS + i).collect();
        json!({
            "batch_id": format!("w{writer}-b{b}"),
            "series": {
                "shared/loss": {"steps": shared, "values": shared.iter().map(|&s| s as f64 * 0.001).collect::<Vec<_>>()},
                format!("writer/{writer}"): {"steps": own, "values": own.iter().map(|&s| -(s as f64)).collect::<Vec<_>>()},
            },
            "text": {"log": [{"step": writer * BATCHES + b, "text": format!("writer {writer} batch {b}")}]},
        })
    };
    let writers = (0..WRITERS).map(|writer| {
        let app = &app;
        let run = &run;
        async move {
            let mut accepted = 0;
            for b in 0..BATCHES {
                if b == 3 {
                    // A retry sent while the first attempt is still in flight.
                    let (one, two) = futures::join!(
                        app.log(key, run, batch(writer, b)),
                        app.log(key, run, batch(writer, b))
                    );
                    assert_eq!(one.0, StatusCode::OK, "{}", one.1);
                    assert_eq!(one, two);
                    accepted += one.1["accepted"].as_i64().expect("accepted");
                } else {
                    let body = app.log_ok(key, run, batch(writer, b)).await;
                    accepted += body["accepted"].as_i64().expect("accepted");
                }
            }
            accepted
        }
    });
    let accepted: i64 = futures::future::join_all(writers).await.into_iter().sum();
    assert_eq!(accepted, WRITERS * BATCHES * (2 * POINTS + 1));

    let listed = summaries(&app, key, &run).await;
    let shared_count = WRITERS * BATCHES * POINTS;
    assert_eq!(listed["shared/loss"]["count"], shared_count, "{listed}");
    assert_eq!(listed["shared/loss"]["first_step"], 0);
    assert_eq!(listed["shared/loss"]["last_step"], shared_count - 1);
    assert_eq!(listed["log"]["count"], WRITERS * BATCHES);
    let shared = read(&app, key, &run, "shared/loss").await;
    assert_eq!(
        ints(&shared["steps"]),
        (0..shared_count).collect::<Vec<_>>()
    );
    let expected: Vec<f64> = (0..shared_count).map(|s| s as f64 * 0.001).collect();
    assert_eq!(bits(&floats(&shared["values"])), bits(&expected));
    for writer in 0..WRITERS {
        let name = format!("writer/{writer}");
        assert_eq!(listed[&name]["count"], BATCHES * POINTS, "{name}");
        let own = read(&app, key, &run, &name).await;
        assert_eq!(
            ints(&own["steps"]),
            (0..BATCHES * POINTS).collect::<Vec<_>>()
        );
    }
    let log_lines = read(&app, key, &run, "log").await;
    assert_eq!(
        ints(&log_lines["steps"]),
        (0..WRITERS * BATCHES).collect::<Vec<_>>()
    );
    assert_eq!(log_lines["texts"][13], "writer 1 batch 3");

    // Retries racing each other store the batch once.
    let burst = json!({"batch_id": "burst", "series": {"burst": {"steps": (0..500).collect::<Vec<_>>(),
                                                                 "values": vec![1.5; 500]}}});
    let answers =
        futures::future::join_all((0..6).map(|_| app.log(key, &run, burst.clone()))).await;
    for (status, body) in answers {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"accepted": 500, "abort_requested": false}));
    }
    assert_eq!(summaries(&app, key, &run).await["burst"]["count"], 500);
    assert_eq!(
        ints(&read(&app, key, &run, "burst").await["steps"]).len(),
        500
    );
}

async fn points_come_back_in_step_order_and_a_repeated_step_keeps_its_logged_order(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let points = |id: &str, steps: Value, values: Value, timestamps: Value| json!({"batch_id": id, "series": {"loss": {"steps": steps, "values": values, "timestamps": timestamps}}});
    // Out of order within a batch; step 4 twice, at the same time.
    app.log_ok(
        key,
        &run,
        points(
            "z-first",
            json!([4, 5, 4]),
            json!([40, 50, 41]),
            json!([100, 100, 100]),
        ),
    )
    .await;
    // Logged later, starting at an earlier step, again at step 4 and the same time.
    app.log_ok(
        key,
        &run,
        points(
            "a-second",
            json!([3, 4]),
            json!([30, 42]),
            json!([100, 100]),
        ),
    )
    .await;
    // At step 4 with an earlier timestamp: timestamp order comes before logged order.
    app.log_ok(
        key,
        &run,
        points("m-third", json!([4]), json!([39]), json!([99])),
    )
    .await;
    // Step order comes before timestamp order.
    app.log_ok(
        key,
        &run,
        points("b-fourth", json!([6, 2]), json!([60, 20]), json!([50, 200])),
    )
    .await;
    // The same step and time again, logged last.
    app.log_ok(
        key,
        &run,
        points("0-fifth", json!([4]), json!([43]), json!([100])),
    )
    .await;

    let page = read(&app, key, &run, "loss").await;
    assert_eq!(ints(&page["steps"]), [2, 3, 4, 4, 4, 4, 4, 5, 6]);
    assert_eq!(
        floats(&page["values"]),
        [20.0, 30.0, 39.0, 40.0, 41.0, 42.0, 43.0, 50.0, 60.0],
        "values at a repeated step keep the order they were logged in"
    );
    assert_eq!(
        floats(&page["timestamps"]),
        [200.0, 100.0, 99.0, 100.0, 100.0, 100.0, 100.0, 100.0, 50.0]
    );
    let summary = &summaries(&app, key, &run).await["loss"];
    assert_eq!(summary["count"], 9);
    assert_eq!(
        (summary["first_step"].clone(), summary["last_step"].clone()),
        (json!(2), json!(6))
    );
    assert_eq!(summary["last"], 60.0);
    assert_eq!(
        (summary["min"].clone(), summary["max"].clone()),
        (json!(20.0), json!(60.0))
    );
    // A range read sees the same order.
    let middle = read(&app, key, &run, "loss?from=4&to=4").await;
    assert_eq!(floats(&middle["values"]), [39.0, 40.0, 41.0, 42.0, 43.0]);

    // The latest point is `last`, even when its step was logged earlier.
    app.log_ok(
        key,
        &run,
        points("late", json!([6]), json!([61]), json!([50])),
    )
    .await;
    assert_eq!(summaries(&app, key, &run).await["loss"]["last"], 61.0);
    let page = read(&app, key, &run, "loss?from=6").await;
    assert_eq!(floats(&page["values"]), [60.0, 61.0]);

    // With the server's clock, batches logged one after another keep their order.
    for (i, id) in ["s-1", "r-2", "q-3"].iter().enumerate() {
        app.log_ok(
            key,
            &run,
            json!({"batch_id": id, "series": {"served": {"steps": [7], "values": [i]}}}),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    assert_eq!(
        floats(&read(&app, key, &run, "served").await["values"]),
        [0.0, 1.0, 2.0]
    );
    assert_eq!(summaries(&app, key, &run).await["served"]["last"], 2.0);
}

async fn text_series_round_trip_in_step_order_and_page(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let notes = json!([
        {"step": 2, "text": "second", "timestamp": 2.5},
        {"step": 1, "text": "first, with ünïcode ✓ and emoji 🐋", "timestamp": 1.5},
        {"step": 2, "text": "", "timestamp": 2.5},
        {"step": 3, "text": "line\nbreaks, \"quotes\", tabs\t and \\ backslashes", "timestamp": 1_700_000_000.123_456},
    ]);
    let stdout: Vec<Value> = (0..5_000)
        .map(|i| json!({"step": i, "text": format!("line {i}: {}", "ü".repeat(i % 50))}))
        .collect();
    let batch = json!({"batch_id": "text-1", "text": {"notes/log": notes, "stdout": stdout}});
    let accepted = app.log_ok(key, &run, batch.clone()).await;
    assert_eq!(
        accepted,
        json!({"accepted": 5_004, "abort_requested": false})
    );
    assert_eq!(app.log_ok(key, &run, batch).await, accepted, "a retry");

    let page = read(&app, key, &run, "notes/log").await;
    assert_eq!(page["name"], "notes/log");
    assert_eq!(page["kind"], "text");
    assert_eq!(ints(&page["steps"]), [1, 2, 2, 3]);
    assert_eq!(
        page["texts"],
        json!([
            "first, with ünïcode ✓ and emoji 🐋",
            "second",
            "",
            "line\nbreaks, \"quotes\", tabs\t and \\ backslashes"
        ])
    );
    assert_eq!(
        bits(&floats(&page["timestamps"])),
        bits(&[1.5, 2.5, 2.5, 1_700_000_000.123_456])
    );
    assert!(page["next_after"].is_null());

    let listed = summaries(&app, key, &run).await;
    let summary = &listed["notes/log"];
    assert_eq!(summary["kind"], "text");
    assert_eq!(summary["count"], 4);
    assert_eq!(
        (summary["first_step"].clone(), summary["last_step"].clone()),
        (json!(1), json!(3))
    );
    assert!(summary["min"].is_null() && summary["max"].is_null() && summary["last"].is_null());
    assert_eq!(listed["stdout"]["count"], 5_000);

    let stdout = read(&app, key, &run, "stdout").await;
    assert_eq!(ints(&stdout["steps"]), (0..5_000).collect::<Vec<_>>());
    assert_eq!(
        stdout["texts"][4_999],
        format!("line 4999: {}", "ü".repeat(4_999 % 50))
    );

    // max_points pages a text series; a page ending inside a step gives only a cursor.
    let first = read(&app, key, &run, "notes/log?max_points=2").await;
    assert_eq!(ints(&first["steps"]), [1, 2]);
    assert!(first["next_after"].is_null());
    let cursor = text(&first, "next_cursor");
    let rest = read(
        &app,
        key,
        &run,
        &format!("notes/log?max_points=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ints(&rest["steps"]), [2, 3]);
    assert_eq!(
        rest["texts"],
        json!(["", "line\nbreaks, \"quotes\", tabs\t and \\ backslashes"])
    );
    assert!(rest["next_after"].is_null() && rest["next_cursor"].is_null());
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    for _ in 0..10 {
        let query = match after {
            Some(after) => format!("stdout?max_points=1000&after={after}"),
            None => "stdout?max_points=1000".to_owned(),
        };
        let page = read(&app, key, &run, &query).await;
        assert_eq!(ints(&page["steps"]).len(), 1_000, "{query}");
        seen.extend(ints(&page["steps"]));
        match page["next_after"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..5_000).collect::<Vec<_>>());

    // The longest line fits; one byte more does not.
    let longest = "x".repeat(64 * 1024);
    app.log_ok(
        key,
        &run,
        json!({"batch_id": "long", "text": {"long": [{"step": 0, "text": longest}]}}),
    )
    .await;
    assert_eq!(read(&app, key, &run, "long").await["texts"][0], longest);
    let (status, body) = app.log(key,
        &run,
        json!({"batch_id": "longer", "text": {"long": [{"step": 1, "text": "x".repeat(64 * 1024 + 1)}]}}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "text_too_long".into())
    );
    assert_eq!(summaries(&app, key, &run).await["long"]["count"], 1);
}

async fn a_series_keeps_the_step_unit_its_first_batch_declared(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    // Steps 0.5 and 1.25 in millionths, beside a series of whole steps.
    app.log_ok(
        key,
        &run,
        json!({"batch_id": "m", "step_units": {"val": "micro"},
               "series": {"val": {"steps": [500000, 1250000], "values": [1.0, 2.0]},
                          "loss": {"steps": [0, 1], "values": [3.0, 4.0]}},
               "text": {"log": [{"step": 0, "text": "hi"}]}}),
    )
    .await;
    for batch in [
        // The unit a series began with is kept: a batch counting otherwise is refused
        // whole, hot path or not.
        json!({"batch_id": "w", "series": {"val": {"steps": [2], "values": [5.0]}}}),
        json!({"batch_id": "x", "step_units": {"loss": "micro"},
               "series": {"loss": {"steps": [2000000], "values": [5.0]}}}),
        json!({"batch_id": "y", "step_units": {"log": "micro"},
               "text": {"log": [{"step": 1000000, "text": "later"}]},
               "series": {"fresh": {"steps": [1], "values": [1.0]}}}),
    ] {
        let (status, body) = app.log(key, &run, batch.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{batch}: {body}");
        assert_eq!(error_code(&body), "step_unit_mismatch");
    }
    app.log_ok(
        key,
        &run,
        json!({"batch_id": "z", "step_units": {"val": "micro"},
               "series": {"val": {"steps": [3000000], "values": [6.0]}}}),
    )
    .await;
    let listed = summaries(&app, key, &run).await;
    assert_eq!(listed.as_object().expect("series").len(), 3, "{listed}");
    assert_eq!(listed["val"]["step_unit"], "micro");
    assert_eq!(
        (
            listed["val"]["first_step"].clone(),
            listed["val"]["last_step"].clone()
        ),
        (json!(500000), json!(3000000))
    );
    assert_eq!(listed["loss"]["step_unit"], "whole");
    assert_eq!(listed["log"]["step_unit"], "whole");
    assert_eq!(
        ints(&read(&app, key, &run, "val").await["steps"]),
        [500000, 1250000, 3000000]
    );
}

async fn a_name_used_for_numbers_cannot_take_text_and_the_other_way_round(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    app.log_ok(
        key,
        &run,
        json!({"batch_id": "n", "series": {"loss": {"steps": [0], "values": [1.0]}},
               "text": {"notes": [{"step": 0, "text": "hi"}]}}),
    )
    .await;
    for batch in [
        json!({"batch_id": "t", "text": {"loss": [{"step": 1, "text": "oops"}]}}),
        json!({"batch_id": "u", "series": {"notes": {"steps": [1], "values": [2.0]}}}),
        // Refused as a whole: the valid part is not stored either.
        json!({"batch_id": "v", "series": {"notes": {"steps": [1], "values": [2.0]},
                                           "fresh": {"steps": [1], "values": [2.0]}}}),
    ] {
        let (status, body) = app.log(key, &run, batch.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{batch}: {body}");
        assert_eq!(error_code(&body), "series_kind_mismatch");
    }
    let (status, body) = app
        .log(
            key,
            &run,
            json!({"batch_id": "w", "series": {"both": {"steps": [1], "values": [2.0]}},
               "text": {"both": [{"step": 1, "text": "two"}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "series_kind_mismatch");

    let listed = summaries(&app, key, &run).await;
    assert_eq!(listed.as_object().expect("series").len(), 2, "{listed}");
    assert_eq!(listed["loss"]["count"], 1);
    assert_eq!(listed["notes"]["count"], 1);
    assert_eq!(read(&app, key, &run, "notes").await["texts"], json!(["hi"]));
    assert_eq!(ints(&read(&app, key, &run, "loss").await["steps"]), [0]);
    // A refused batch id is not used up.
    app.log_ok(
        key,
        &run,
        json!({"batch_id": "v", "series": {"loss": {"steps": [1], "values": [2.0]}}}),
    )
    .await;
    assert_eq!(summaries(&app, key, &run).await["loss"]["count"], 2);
}

async fn downsampling_keeps_every_spike_and_each_buckets_extremes(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let n = 50_000_i64;
    let mut values: Vec<f64> = (0..n).map(|i| (i as f64 * 0.01).sin()).collect();
    values[31_337] = 1e9;
    values[12_345] = -1e9;
    values[40_000] = f64::NAN;
    let steps: Vec<i64> = (0..n).collect();
    app.log_ok(key,
        &run,
        json!({"batch_id": "wave", "series": {
            "wave": {"steps": steps, "values": column(&values)},
            "signs": {"steps": [0, 1, 2, 3, 4, 5], "values": [1.0, "Infinity", 2.0, "-Infinity", 3.0, 0.5]},
        }}),
    )
    .await;
    let value_at = |step: i64| values[step as usize];

    let page = read(&app, key, &run, "wave?max_points=200").await;
    assert_eq!(page["downsampled"], true);
    assert!(page["next_after"].is_null());
    let got_steps = ints(&page["steps"]);
    let got_values = floats(&page["values"]);
    assert!(
        got_steps.len() <= 200 && got_steps.len() >= 50,
        "{} points",
        got_steps.len()
    );
    assert_eq!(got_steps.len(), got_values.len());
    assert_eq!(floats(&page["timestamps"]).len(), got_steps.len());
    assert!(got_steps.windows(2).all(|w| w[0] < w[1]), "in step order");
    for (step, value) in got_steps.iter().zip(&got_values) {
        assert_eq!(
            bits(&[*value]),
            bits(&[value_at(*step)]),
            "a real point at {step}"
        );
    }
    assert!(
        got_steps.contains(&31_337) && got_values.contains(&1e9),
        "the spike survives"
    );
    assert!(
        got_steps.contains(&12_345) && got_values.contains(&-1e9),
        "the dip survives"
    );
    assert!(got_values.iter().any(|v| v.is_nan()), "a NaN stays visible");
    // Every tenth of the range, far wider than a bucket, keeps its extremes.
    for part in values.chunks(5_000) {
        let finite = part.iter().copied().filter(|v| !v.is_nan());
        let lo = finite.clone().fold(f64::INFINITY, f64::min);
        let hi = finite.fold(f64::NEG_INFINITY, f64::max);
        assert!(
            got_values.contains(&lo) && got_values.contains(&hi),
            "{lo} and {hi}"
        );
    }

    // Two points: the extremes of the whole series.
    let two = read(&app, key, &run, "wave?max_points=2").await;
    assert_eq!(ints(&two["steps"]), [12_345, 31_337]);
    assert_eq!(floats(&two["values"]), [-1e9, 1e9]);
    let three = read(&app, key, &run, "wave?max_points=3").await;
    assert!(ints(&three["steps"]).len() <= 3);
    assert!(floats(&three["values"]).contains(&1e9));

    // Within a range.
    let ranged = read(&app, key, &run, "wave?from=30000&to=32000&max_points=50").await;
    let ranged_steps = ints(&ranged["steps"]);
    assert!(ranged_steps.len() <= 50);
    assert!(
        ranged_steps.iter().all(|s| (30_000..=32_000).contains(s)),
        "{ranged_steps:?}"
    );
    assert!(ranged_steps.contains(&31_337));
    assert_eq!(ranged["downsampled"], true);

    // Infinities are extremes too.
    let signs = read(&app, key, &run, "signs?max_points=2").await;
    assert_eq!(floats(&signs["values"]), [f64::INFINITY, f64::NEG_INFINITY]);

    // Enough room for every point: the exact series.
    let all = read(&app, key, &run, "wave?max_points=50000").await;
    assert_eq!(all["downsampled"], false);
    assert_eq!(bits(&floats(&all["values"])), bits(&values));

    for (query, code) in [
        ("max_points=1", "invalid_max_points"),
        ("max_points=0", "invalid_max_points"),
        ("max_points=100001", "invalid_max_points"),
        ("max_points=many", "invalid_query"),
        ("max_points=-5", "invalid_query"),
        ("from=first", "invalid_query"),
        ("colour=blue", "invalid_query"),
    ] {
        let (status, body) = app
            .get(&format!("/v1/runs/{run}/series/wave?{query}"), key)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(error_code(&body), code, "{query}");
    }
}

async fn exact_reads_page_at_50000_points_and_next_after_resumes_without_gaps(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let n = 120_000_i64;
    let steps: Vec<i64> = (0..n).collect();
    let values: Vec<f64> = steps.iter().map(|&s| s as f64 * 0.5).collect();
    app.log_ok(
        key,
        &run,
        json!({"batch_id": "long", "series": {"long": {"steps": steps, "values": values}}}),
    )
    .await;

    let first = read(&app, key, &run, "long").await;
    assert_eq!(first["downsampled"], false);
    assert_eq!(ints(&first["steps"]), (0..50_000).collect::<Vec<_>>());
    assert_eq!(first["next_after"], 49_999);
    let second = read(&app, key, &run, "long?after=49999").await;
    assert_eq!(
        ints(&second["steps"]),
        (50_000..100_000).collect::<Vec<_>>()
    );
    assert_eq!(second["next_after"], 99_999);
    let third = read(&app, key, &run, "long?after=99999").await;
    assert_eq!(ints(&third["steps"]), (100_000..n).collect::<Vec<_>>());
    assert!(third["next_after"].is_null());
    let mut got = floats(&first["values"]);
    got.extend(floats(&second["values"]));
    got.extend(floats(&third["values"]));
    assert_eq!(bits(&got), bits(&values));

    // Paging within a range.
    let ranged = read(&app, key, &run, "long?from=10000&to=115000").await;
    assert_eq!(ints(&ranged["steps"]), (10_000..60_000).collect::<Vec<_>>());
    assert_eq!(ranged["next_after"], 59_999);
    let ranged_next = read(&app, key, &run, "long?from=10000&to=115000&after=59999").await;
    assert_eq!(ranged_next["next_after"], 109_999);
    let ranged_rest = read(&app, key, &run, "long?from=10000&to=115000&after=109999").await;
    assert_eq!(
        ints(&ranged_rest["steps"]),
        (110_000..=115_000).collect::<Vec<_>>()
    );
    assert!(ranged_rest["next_after"].is_null());
    let short = read(&app, key, &run, "long?from=80000").await;
    assert_eq!(ints(&short["steps"]).len(), 40_000);
    assert!(short["next_after"].is_null());

    // A late batch adds points at early, boundary and final steps; pages still end on
    // whole steps, and paging visits every point once.
    app.log_ok(key,
        &run,
        json!({"batch_id": "late", "series": {"long": {"steps": [5, 99_999, 119_999], "values": [-1, -2, -3]}}}),
    )
    .await;
    let mut expected: Vec<(i64, f64)> = steps.iter().map(|&s| (s, s as f64 * 0.5)).collect();
    for (step, value) in [(5, -1.0), (99_999, -2.0), (119_999, -3.0)] {
        let at = expected
            .iter()
            .rposition(|&(s, _)| s == step)
            .expect("step")
            + 1;
        expected.insert(at, (step, value));
    }
    let mut seen: Vec<(i64, f64)> = Vec::new();
    let mut after: Option<i64> = None;
    for _ in 0..10 {
        let query = after.map_or("long".to_owned(), |after| format!("long?after={after}"));
        let page = read(&app, key, &run, &query).await;
        let page_steps = ints(&page["steps"]);
        assert!(page_steps.len() <= 50_010, "{query}: {}", page_steps.len());
        seen.extend(page_steps.iter().copied().zip(floats(&page["values"])));
        match page["next_after"].as_i64() {
            Some(next) => {
                assert!(
                    page_steps.len() >= 50_000,
                    "{query}: a short page with more to come"
                );
                assert_eq!(
                    Some(&next),
                    page_steps.last(),
                    "{query}: resumes after its last step"
                );
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), expected.len());
    assert!(
        seen == expected,
        "paging skipped, repeated or reordered points"
    );
    assert_eq!(summaries(&app, key, &run).await["long"]["count"], n + 3);
}

async fn step_ranges_include_points_of_chunks_logged_out_of_order(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let steps: Vec<i64> = (500..600).collect();
    app.log_ok(
        key,
        &run,
        json!({"batch_id": "middle", "series": {"s": {"steps": steps, "values": vec![1.0; 100]}}}),
    )
    .await;
    // One chunk spanning everything, logged later.
    app.log_ok(key,
        &run,
        json!({"batch_id": "wide", "series": {"s": {"steps": [0, 550, 750, 1_000], "values": [2.0, 2.0, 2.0, 2.0]}}}),
    )
    .await;
    let steps_of = |page: &Value| ints(&page["steps"]);
    assert_eq!(
        steps_of(&read(&app, key, &run, "s?from=700&to=800").await),
        [750]
    );
    assert_eq!(
        steps_of(&read(&app, key, &run, "s?after=599").await),
        [750, 1_000]
    );
    assert_eq!(
        steps_of(&read(&app, key, &run, "s?from=549&to=551").await),
        [549, 550, 550, 551]
    );
    assert_eq!(steps_of(&read(&app, key, &run, "s?to=0").await), [0]);
    assert_eq!(
        steps_of(&read(&app, key, &run, "s?from=1000").await),
        [1_000]
    );
    assert_eq!(
        steps_of(&read(&app, key, &run, "s?from=1001").await),
        Vec::<i64>::new()
    );
    assert_eq!(
        steps_of(&read(&app, key, &run, "s?from=800&to=700").await),
        Vec::<i64>::new()
    );
    assert_eq!(
        steps_of(&read(&app, key, &run, "s?from=-100&to=1").await),
        [0]
    );
    assert_eq!(
        steps_of(&read(&app, key, &run, "s?after=9223372036854775807").await),
        Vec::<i64>::new()
    );
    assert_eq!(
        steps_of(&read(&app, key, &run, "s?from=590&after=595").await),
        [596, 597, 598, 599, 750, 1_000]
    );
    let everything = read(&app, key, &run, "s?after=-9223372036854775808").await;
    assert_eq!(steps_of(&everything).len(), 104);
    // Downsampled reads honour the range as well.
    let ranged = read(&app, key, &run, "s?from=700&to=1000&max_points=2").await;
    assert_eq!(steps_of(&ranged), [750, 1_000]);
}

async fn bad_batches_get_clear_codes_and_store_nothing(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let one = json!({"steps": [1], "values": [1.0]});
    let cases = [
        (json!({"series": {"loss": one}}), 400, "missing_batch_id"),
        (
            json!({"text": {"log": [{"step": 1, "text": "x"}]}}),
            400,
            "missing_batch_id",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1, 2], "values": [1.0]}}}),
            400,
            "length_mismatch",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": [1.0, 2.0]}}}),
            400,
            "length_mismatch",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": [1.0], "timestamps": [1.0, 2.0]}}}),
            400,
            "length_mismatch",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [], "values": [1.0]}}}),
            400,
            "length_mismatch",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1.5], "values": [1.0]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": ["1"], "values": [1.0]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": 1, "values": 1.0}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": ["one"]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": ["nan"]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": [true]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": [null]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": [[1.0]]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": [1.0], "timestamps": ["NaN"]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": [1.0], "unit": "s"}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": {"steps": [18_446_744_073_709_551_615_u64], "values": [1.0]}}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": [one]}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": [1, 2]}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": 5, "series": {"loss": one}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "series": {"loss": one}, "heartbeat": "yes"}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "points": []}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "text": {"log": [{"text": "no step"}]}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "text": {"log": [{"step": 1, "text": 5}]}}),
            400,
            "invalid_request",
        ),
        (
            json!({"batch_id": "b", "text": {"log": "a line"}}),
            400,
            "invalid_request",
        ),
        (json!([1, 2, 3]), 400, "invalid_request"),
        (
            json!({"batch_id": "b", "series": {"a#b": one}}),
            400,
            "invalid_series_name",
        ),
        (
            json!({"batch_id": "b", "series": {"": one}}),
            400,
            "invalid_series_name",
        ),
        (
            json!({"batch_id": "b", "series": {"x".repeat(251): one}}),
            400,
            "invalid_series_name",
        ),
        (
            json!({"batch_id": "b", "series": {"tab\there": one}}),
            400,
            "invalid_series_name",
        ),
        (
            json!({"batch_id": "b", "text": {"a~b": [{"step": 1, "text": "x"}]}}),
            400,
            "invalid_series_name",
        ),
        (
            json!({"batch_id": "has space", "series": {"loss": one}}),
            400,
            "invalid_batch_id",
        ),
        (
            json!({"batch_id": "", "series": {"loss": one}}),
            400,
            "invalid_batch_id",
        ),
        (
            json!({"batch_id": "x".repeat(65), "series": {"loss": one}}),
            400,
            "invalid_batch_id",
        ),
        (
            json!({"batch_id": "b#1", "series": {"loss": one}}),
            400,
            "invalid_batch_id",
        ),
        (
            json!({"batch_id": "b", "session": "s", "series": {"loss": one}}),
            400,
            "invalid_sequence",
        ),
        (
            json!({"batch_id": "b", "sequence": 1, "series": {"loss": one}}),
            400,
            "invalid_sequence",
        ),
        (
            json!({"batch_id": "b", "session": "s", "sequence": 0, "series": {"loss": one}}),
            400,
            "invalid_sequence",
        ),
        (
            json!({"batch_id": "b", "session": "s#1", "sequence": 1, "series": {"loss": one}}),
            400,
            "invalid_sequence",
        ),
    ];
    for (batch, status, code) in cases {
        let (got, body) = app.log(key, &run, batch.clone()).await;
        assert_eq!(got.as_u16(), status, "{batch}: {body}");
        assert_eq!(error_code(&body), code, "{batch}");
    }
    // Bodies that are not JSON, or not said to be.
    for (content_type, body, status, code) in [
        ("application/json", "{\"batch_id\": ", 400, "invalid_json"),
        (
            "application/json",
            "{\"batch_id\": \"b\", \"series\": {\"loss\": {\"steps\": [1], \"values\": [NaN]}}}",
            400,
            "invalid_json",
        ),
        (
            "text/plain",
            "{\"heartbeat\": true}",
            415,
            "unsupported_media_type",
        ),
    ] {
        let response = app
            .request(Method::POST, &format!("/v1/runs/{run}/log"), Some(key))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), status, "{body}");
        let answer: Value = response.json().await.expect("an error envelope");
        assert_eq!(error_code(&answer), code, "{body}");
    }
    // Unknown and malformed runs.
    let ghost = format!("run_{}", ulid::Ulid::generate().to_string().to_lowercase());
    for run in [
        ghost.as_str(),
        "run_nope",
        "prj_01h00000000000000000000000",
        "nothing",
    ] {
        for batch in [
            json!({"batch_id": "b", "series": {"loss": one}}),
            json!({"heartbeat": true}),
        ] {
            let (status, body) = app.log(key, run, batch).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{run}: {body}");
            assert_eq!(error_code(&body), "not_found");
        }
        let (status, body) = app.get(&format!("/v1/runs/{run}/series/loss"), key).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not_found".into())
        );
    }
    let (status, body) = app.get(&format!("/v1/runs/{run}/series/loss"), key).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found".into()),
        "unknown series"
    );
    let (status, _) = app
        .post(
            &format!("/v1/runs/{run}/log"),
            "sxt_key_forged",
            json!({"heartbeat": true}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Nothing refused left anything behind, and the run is still running.
    assert_eq!(summaries(&app, key, &run).await, json!({}));
    let (_, view) = app.get(&format!("/v1/runs/{run}"), key).await;
    assert_eq!(view["status"], "running");
    // Every refused batch id is still free.
    app.log_ok(key, &run, json!({"batch_id": "b", "series": {"loss": one}}))
        .await;
    assert_eq!(summaries(&app, key, &run).await["loss"]["count"], 1);
}

async fn oversized_batches_and_bodies_are_refused_with_413(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let zeros =
        |n: usize| json!({"steps": (0..n as i64).collect::<Vec<_>>(), "values": vec![0; n]});

    // Points of all series and text lines count together.
    for batch in [
        json!({"batch_id": "big", "series": {"a": zeros(250_001)}}),
        json!({"batch_id": "big", "series": {"a": zeros(200_000), "b": zeros(50_001)}}),
        json!({"batch_id": "big", "series": {"a": zeros(249_999)},
               "text": {"t": [{"step": 0, "text": "x"}, {"step": 1, "text": "y"}]}}),
    ] {
        let (status, body) = app.log(key, &run, batch).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(error_code(&body), "batch_too_large");
    }
    assert_eq!(summaries(&app, key, &run).await, json!({}));

    // The largest batch is fine.
    let body = app
        .log_ok(
            key,
            &run,
            json!({"batch_id": "big", "series": {"a": zeros(200_000), "b": zeros(50_000)}}),
        )
        .await;
    assert_eq!(body["accepted"], 250_000);
    let listed = summaries(&app, key, &run).await;
    assert_eq!(
        (listed["a"]["count"].clone(), listed["b"]["count"].clone()),
        (json!(200_000), json!(50_000))
    );

    // A body over 6 MB is refused before it is read: the head alone gets the answer.
    let path = format!("/v1/runs/{run}/log");
    let (status, body) = raw_post(&app, &path, key, "content-length: 7340032", &[]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), "payload_too_large");
    // Also when its length is not declared up front: it is cut off at the limit.
    let mut chunked = Vec::new();
    let opening = b"{\"batch_id\": \"huge\", \"text\": {\"t\": [{\"step\": 0, \"text\": \"";
    chunked.extend_from_slice(format!("{:x}\r\n", opening.len()).as_bytes());
    chunked.extend_from_slice(opening);
    chunked.extend_from_slice(b"\r\n");
    for _ in 0..97 {
        // 97 chunks of 64 KiB: past 6 MiB, without the closing chunk.
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend_from_slice(&[b'x'; 0x10000]);
        chunked.extend_from_slice(b"\r\n");
    }
    let (status, body) = raw_post(&app, &path, key, "transfer-encoding: chunked", &chunked).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), "payload_too_large");
    let listed = summaries(&app, key, &run).await;
    assert!(listed.get("t").is_none(), "{listed}");
}

/// POSTs over a connection of its own: a request head with `framing`, then `body`
/// (which the server may stop reading), and the response's status and JSON body.
async fn raw_post(
    app: &TestApp,
    path: &str,
    key: &str,
    framing: &str,
    body: &[u8],
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let address = app.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connecting");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\n{framing}\r\n\r\n"
    );
    writer
        .write_all(head.as_bytes())
        .await
        .expect("sending the head");
    let body = body.to_vec();
    let sending = tokio::spawn(async move {
        // The server may answer and stop reading before all of it is sent.
        let _ = writer.write_all(&body).await;
        writer
    });
    let mut response = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    let (head_end, length) = loop {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(20), reader.read(&mut buffer))
                .await
                .expect("an answer in time")
                .expect("reading the answer");
        assert!(
            read > 0,
            "closed without a full answer: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buffer[..read]);
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map(|value| value.trim().parse().expect("a length"))
            .expect("a content-length");
        if response.len() >= end + 4 + length {
            break (end, length);
        }
    };
    sending.abort();
    let status_line = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line}"));
    let body = serde_json::from_slice(&response[head_end + 4..head_end + 4 + length])
        .expect("a JSON body");
    (status, body)
}

async fn heartbeat_only_batches_accept_nothing_and_keep_the_run_alive(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let (_, before) = app.get(&format!("/v1/runs/{run}"), key).await;
    for batch in [
        json!({"heartbeat": true}),
        json!({}),
        json!({"heartbeat": true, "batch_id": "beat"}),
        json!({"batch_id": "empty", "series": {}, "text": {}}),
        json!({"batch_id": "empty", "series": {"loss": {"steps": [], "values": []}}}),
    ] {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let body = app.log_ok(key, &run, batch).await;
        assert_eq!(body, json!({"accepted": 0, "abort_requested": false}));
    }
    let (_, after) = app.get(&format!("/v1/runs/{run}"), key).await;
    assert!(
        after["heartbeat_at"].as_str() > before["heartbeat_at"].as_str(),
        "{before} {after}"
    );
    assert_eq!(after["series"], json!({}));
    assert_eq!(after["status"], "running");
}

async fn series_names_with_slashes_spaces_and_unicode_are_read_by_path(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let names = [
        "train/loss",
        "train",
        "val acc:top-1.5",
        "métrique/損失",
        "a/b/c/d",
        "x_y-z.w",
    ];
    let mut series = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        series.insert((*name).to_owned(), json!({"steps": [i], "values": [i]}));
    }
    app.log_ok(key, &run, json!({"batch_id": "names", "series": series}))
        .await;
    let listed = summaries(&app, key, &run).await;
    assert_eq!(listed.as_object().expect("series").len(), names.len());
    for (i, name) in names.iter().enumerate() {
        let page = read(&app, key, &run, name).await;
        assert_eq!(page["name"], *name);
        assert_eq!(ints(&page["steps"]), [i as i64], "{name}");
    }
    let encoded = read(&app, key, &run, "val%20acc%3Atop-1.5").await;
    assert_eq!(encoded["name"], "val acc:top-1.5");
    for missing in ["train/", "train/loss/", "trai", "a/b", "TRAIN/LOSS"] {
        let (status, body) = app
            .get(&format!("/v1/runs/{run}/series/{missing}"), key)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
}

async fn a_token_exchanged_for_the_api_key_logs_and_reads(app: TestApp) {
    let team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    let (status, token) = app.post("/v1/auth/token", &team.api_key, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let token = text(&token, "token");
    let body = app.log_ok(&token,
        &run,
        json!({"batch_id": "jwt", "series": {"loss": {"steps": [0, 1], "values": [0.5, 0.25]}}}),
    )
    .await;
    assert_eq!(body["accepted"], 2);
    assert_eq!(
        floats(&read(&app, &token, &run, "loss").await["values"]),
        [0.5, 0.25]
    );
    // A viewer's token may read but not log.
    let viewer = app.key_with_role(&team, "viewer").await;
    let (_, viewer_token) = app.post("/v1/auth/token", &viewer, json!({})).await;
    let viewer_token = text(&viewer_token, "token");
    read(&app, &viewer_token, &run, "loss").await;
    let (status, body) = app
        .log(&viewer_token, &run, json!({"heartbeat": true}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "forbidden");
}

async fn a_run_too_full_for_more_series_or_params_says_so_and_stores_nothing(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let project = unique("p");
    app.post("/v1/projects", key, json!({"name": project}))
        .await;
    let params: serde_json::Map<String, Value> = (0..10)
        .map(|i| (format!("p{i}"), json!("v".repeat(6_000))))
        .collect();
    let tags: Vec<String> = (0..100)
        .map(|i| format!("{i:03}{}", "t".repeat(247)))
        .collect();
    let (status, run) = app
        .post(
            &format!("/v1/projects/{project}/runs"),
            key,
            json!({"params": params, "tags": tags, "description": "d".repeat(10_000)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let full = text(&run, "id");
    // Series names of the longest kind, each with a point.
    let wide = |range: std::ops::Range<usize>, step: i64| {
        let mut series = serde_json::Map::new();
        for i in range {
            series.insert(
                format!("{i:04}/{}", "s".repeat(245)),
                json!({"steps": [step], "values": [1.5]}),
            );
        }
        Value::Object(series)
    };
    let too_large = |status: StatusCode, body: &Value| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(body), "run_too_large");
    };

    // Every limit holds on its own, but not all at once: a clear 400, nothing stored.
    let (status, body) = app
        .log(
            key,
            &full,
            json!({"batch_id": "a", "series": wide(0..1_000, 0)}),
        )
        .await;
    too_large(status, &body);
    assert_eq!(summaries(&app, key, &full).await, json!({}));
    let body = app
        .log_ok(
            key,
            &full,
            json!({"batch_id": "a", "series": wide(0..600, 0)}),
        )
        .await;
    assert_eq!(body["accepted"], 600);
    let (status, body) = app
        .log(
            key,
            &full,
            json!({"batch_id": "b", "series": wide(600..900, 0)}),
        )
        .await;
    too_large(status, &body);
    // Points for the series it has are still welcome.
    app.log_ok(
        key,
        &full,
        json!({"batch_id": "c", "series": wide(0..600, 1)}),
    )
    .await;
    let listed = summaries(&app, key, &full).await;
    assert_eq!(listed.as_object().expect("series").len(), 600);
    assert!(
        listed
            .as_object()
            .expect("series")
            .values()
            .all(|s| s["count"] == 2)
    );
    let page = read(&app, key, &full, &format!("0599/{}", "s".repeat(245))).await;
    assert_eq!(ints(&page["steps"]), [0, 1]);

    // Parameters and tags that would not fit are refused the same way.
    let (status, run) = app
        .post(&format!("/v1/projects/{project}/runs"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let busy = text(&run, "id");
    app.log_ok(
        key,
        &busy,
        json!({"batch_id": "a", "series": wide(0..900, 0)}),
    )
    .await;
    let before = app.get(&format!("/v1/runs/{busy}"), key).await.1;
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/runs/{busy}"),
            Some(key),
            Some(
                json!({"params": params, "tags": {"add": tags}, "description": "d".repeat(10_000)}),
            ),
        )
        .await;
    too_large(status, &body);
    assert_eq!(
        without_elapsed_storage(app.get(&format!("/v1/runs/{busy}"), key).await.1),
        without_elapsed_storage(before)
    );
    // And such a run can still be ended and deleted.
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/runs/{full}"),
            Some(key),
            Some(json!({"status": "succeeded"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.delete(&format!("/v1/runs/{full}"), key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// MLflow logs at step 0 unless told otherwise, so a step can hold any number of
/// points. A read still holds one page: the page ends inside the step, with a cursor
/// (and no `next_after`, which could not say where), and the cursors walk every point
/// once, in order; a downsampled read of the step keeps its extremes.
async fn a_step_holding_more_than_a_page_reads_back_a_page_at_a_time(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    const PER_BATCH: usize = 40_000;
    for batch in 0..3 {
        let timestamps: Vec<f64> = (0..PER_BATCH)
            .map(|i| 1_700_000_000.0 + (batch * PER_BATCH + i) as f64 / 1_000.0)
            .collect();
        let values: Vec<f64> = (0..PER_BATCH)
            .map(|i| (batch * PER_BATCH + i) as f64)
            .collect();
        app.log_ok(
            key,
            &run,
            json!({"batch_id": format!("flat-{batch}"), "series": {"flat": {
                "steps": vec![0; PER_BATCH], "values": values, "timestamps": timestamps,
            }}}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut query = "flat".to_owned();
    for _ in 0..10 {
        let page = read(&app, key, &run, &query).await;
        let values = floats(&page["values"]);
        assert!(values.len() <= 50_000, "a page is {} points", values.len());
        seen.extend(values);
        assert!(page["next_after"].is_null(), "the page ends inside step 0");
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("flat?cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<f64> = (0..3 * PER_BATCH).map(|i| i as f64).collect();
    assert_eq!(seen, expected, "every point once, in timestamp order");

    let chart = read(&app, key, &run, "flat?max_points=10").await;
    assert_eq!(chart["downsampled"], true);
    let values = floats(&chart["values"]);
    assert!(values.len() <= 10);
    assert!(values.contains(&0.0) && values.contains(&((3 * PER_BATCH - 1) as f64)));

    let (status, body) = app
        .get(&format!("/v1/runs/{run}/series/flat?cursor=forged"), key)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_cursor");
}
