//! Rate limits over HTTP: past its burst a key gets 429 `rate_limited` with
//! `Retry-After`, in the error shape of the surface it called, while other teams go on.

use std::num::NonZeroU32;

use reqwest::{Method, StatusCode, header};
use sextant_cli::Backend;
use sextant_shared::rate_limit::{Limit, RateLimits};
use sextant_tests::{TestApp, error_code};

const BURST: u32 = 3;

async fn spawn_limited() -> TestApp {
    // One token a minute after the burst: the test cannot outrun the refill by chance.
    let limit = Limit {
        per_minute: NonZeroU32::MIN,
        burst: NonZeroU32::new(BURST).expect("non-zero"),
    };
    TestApp::spawn_adjusted(Backend::Embedded, |config| {
        config.rate_limits = RateLimits {
            team: limit,
            credential: limit,
        }
    })
    .await
}

#[tokio::test]
async fn a_key_past_its_burst_gets_429_with_retry_after_and_other_teams_are_unaffected() {
    let app = spawn_limited().await;
    let (busy, quiet) = (app.signup().await, app.signup().await);
    for _ in 0..BURST {
        let (status, body) = app.get("/v1/projects", &busy.api_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let response = app
        .request(Method::GET, "/v1/projects", Some(&busy.api_key))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body = response.json().await.expect("JSON");
    assert_eq!(error_code(&body), "rate_limited");

    let (status, body) = app.get("/v1/projects", &quiet.api_key).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // MLflow's clients see their own shape, and back off on 429 as they do.
    let (status, body) = app
        .call(
            Method::GET,
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=x",
            Some(&busy.api_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error_code"], "REQUEST_LIMIT_EXCEEDED");
}
