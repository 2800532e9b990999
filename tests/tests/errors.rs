//! Bad requests get our error envelope with a stable code and the right status;
//! nothing a client sends produces a 500.

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sextant_tests::{TestApp, error_code};

async fn envelope(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON error envelope");
    (status, error_code(&body))
}

#[tokio::test]
async fn malformed_and_mistyped_json_are_400_with_distinct_codes() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    for (body, code) in [
        ("{\"name\": ", "invalid_json"),
        ("not json", "invalid_json"),
        ("{\"name\": 3}", "invalid_request"),
        ("[]", "invalid_request"),
        ("{}", "invalid_request"),
    ] {
        let response = app
            .request(Method::POST, "/v1/projects", Some(&team.api_key))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            envelope(response).await,
            (StatusCode::BAD_REQUEST, code.to_owned()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_415() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let response = app
        .request(Method::POST, "/v1/projects", Some(&team.api_key))
        .body("{\"name\": \"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        envelope(response).await,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".into()
        )
    );
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::GET, "/v1/nowhere", None)
        .send()
        .await
        .unwrap();
    assert_eq!(
        envelope(response).await,
        (StatusCode::NOT_FOUND, "route_not_found".into())
    );
    let response = app
        .request(Method::PUT, "/v1/signup", None)
        .send()
        .await
        .unwrap();
    assert_eq!(
        envelope(response).await,
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
}

#[tokio::test]
async fn a_declared_20_mb_body_is_refused_with_413() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let response = app
        .request(Method::POST, "/v1/projects", Some(&team.api_key))
        .header("content-type", "application/json")
        .body(vec![b' '; 20 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(
        envelope(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
}

#[tokio::test]
async fn a_streamed_20_mb_body_is_cut_off_with_413_before_it_is_read_whole() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&sent);
    // 320 chunks of 64 KiB without a Content-Length: the server sees a chunked body.
    let chunks = futures::stream::iter(0..320).map(move |_| {
        counter.fetch_add(64 * 1024, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))
    });
    let response = app
        .request(Method::POST, "/v1/projects", Some(&team.api_key))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(
            envelope(response).await,
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
        ),
        // The server may close the connection before the client finishes sending.
        Err(err) => assert!(err.is_request() || err.is_body(), "{err}"),
    }
    assert!(
        sent.load(std::sync::atomic::Ordering::Relaxed) < 20 * 1024 * 1024,
        "the server read the whole body"
    );
}

#[tokio::test]
async fn malformed_ids_in_paths_read_as_not_found() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    for path in [
        "/v1/api-keys/not-an-id",
        "/v1/api-keys/usr_01jd8w3n5rj7mq3a2n9f4e2v6k",
        "/v1/members/%00",
        "/v1/invites/..%2F..",
    ] {
        let response = app
            .request(Method::DELETE, path, Some(&team.api_key))
            .send()
            .await
            .unwrap();
        assert_eq!(
            envelope(response).await,
            (StatusCode::NOT_FOUND, "not_found".into()),
            "{path}"
        );
    }
}
