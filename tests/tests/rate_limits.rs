//! Rate limits over HTTP: past its burst a key gets 429 `rate_limited` with
//! `Retry-After`, in the error shape of the surface it called, while other teams go on.

use std::num::NonZeroU32;

use reqwest::{Method, StatusCode, header};
use sextant_cli::Backend;
use sextant_edge::rate_limit::{Limit, RateLimits};
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
            address: limit,
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

fn limit(burst: u32) -> Limit {
    Limit {
        per_minute: NonZeroU32::MIN,
        burst: NonZeroU32::new(burst).expect("non-zero"),
    }
}

/// A shared link is read logged out, in a loop if someone likes: its reads take from
/// the link's own bucket and from the team's that shared it (so they count against
/// the team, and cannot exceed what its own keys may do), and every request without
/// a credential from the address it comes from, before anything is read.
#[tokio::test]
async fn shared_links_are_limited_per_link_per_address_and_count_against_the_team() {
    let app = TestApp::spawn_adjusted(Backend::Embedded, |config| {
        config.rate_limits = RateLimits {
            team: limit(9),
            credential: limit(4),
            address: limit(1_000),
        }
    })
    .await;
    let team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    let mut links = Vec::new();
    for _ in 0..2 {
        let (status, share) = app
            .post(
                &format!("/v1/runs/{run}/shares"),
                &team.api_key,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{share}");
        links.push(sextant_tests::text(&share, "token"));
    }
    // The key has spent its 4 (a project, a run, two shares); the team 4 of its 9.
    let read = |token: &str| {
        let request = app.request(Method::GET, &format!("/v1/shared/{token}"), None);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }
    };
    for _ in 0..4 {
        assert_eq!(read(&links[0]).await.0, StatusCode::OK);
    }
    let (status, body) = read(&links[0]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.to_string().contains("shared link"), "{body}");
    // The other link has a bucket of its own, but its reads are the team's too.
    assert_eq!(read(&links[1]).await.0, StatusCode::OK);
    let (status, body) = read(&links[1]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.to_string().contains("team"), "{body}");
}

#[tokio::test]
async fn an_address_guessing_shared_links_is_refused_before_anything_is_read() {
    let app = TestApp::spawn_adjusted(Backend::Embedded, |config| {
        config.rate_limits = RateLimits {
            address: limit(5),
            ..RateLimits::default()
        }
    })
    .await;
    let mut statuses = Vec::new();
    for n in 0..6 {
        let response = app
            .request(Method::GET, &format!("/v1/shared/sxt_share_guess{n}"), None)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [404, 404, 404, 404, 404, 429]);
    let page = app
        .request(Method::GET, "/r/sxt_share_guess9", None)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
}
