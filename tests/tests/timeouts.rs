//! A slow client holds no handler for long: an API request not done within the
//! deadline, body included, answers 408 `request_timeout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sextant_edge::state::{AppState, Settings};
use sextant_tests::{embedded_state, serve_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_trickles_in_is_cut_off_at_the_deadline() {
    let (state, _dir) = embedded_state().await;
    let deadline = Duration::from_secs(1);
    let state = AppState {
        settings: Arc::new(Settings {
            request_deadline: deadline,
            ..(*state.settings).clone()
        }),
        ..state
    };
    let base = serve_state(state).await;
    // Half a sign-up, then silence.
    let half = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(
        r#"{"team": "Slow", "email": "slow@example.com", "#,
    ))]);
    let body =
        reqwest::Body::wrap_stream(futures::StreamExt::chain(half, futures::stream::pending()));
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/signup"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("an answer");
    let took = started.elapsed();
    assert_eq!(response.status(), 408);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(
        took >= deadline && took < deadline * 5,
        "answered after {took:?}"
    );
}
