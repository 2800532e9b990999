//! The local blob adapter's presigned URLs behave like S3's: one operation on one
//! object until they expire, and an altered URL is refused with 403.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;
use sextant_storage::blob::{BlobKey, BlobStore, Presign};
use sextant_tests::{error_code, local_blobs_with_routes};
use time::OffsetDateTime;

fn key(text: &str) -> BlobKey {
    BlobKey::parse(text).unwrap()
}

async fn code_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, error_code(&body))
}

#[tokio::test]
async fn an_altered_signature_is_refused() {
    let (blobs, _dir) = local_blobs_with_routes().await;
    blobs
        .put(&key("t/a"), Bytes::from_static(b"secret"))
        .await
        .unwrap();
    let url = blobs
        .presign(&key("t/a"), Presign::Get, Duration::from_secs(60))
        .await
        .unwrap();
    let last = url.chars().last().unwrap();
    let tampered = format!(
        "{}{}",
        &url[..url.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let response = reqwest::get(&tampered).await.unwrap();
    assert_eq!(
        code_of(response).await,
        (StatusCode::FORBIDDEN, "invalid_signature".into())
    );
    assert_eq!(
        reqwest::get(&url).await.unwrap().bytes().await.unwrap(),
        "secret"
    );
}

#[tokio::test]
async fn a_url_for_one_object_does_not_open_another() {
    let (blobs, _dir) = local_blobs_with_routes().await;
    blobs
        .put(&key("ten_a/x"), Bytes::from_static(b"a"))
        .await
        .unwrap();
    blobs
        .put(&key("ten_b/x"), Bytes::from_static(b"b"))
        .await
        .unwrap();
    let url = blobs
        .presign(&key("ten_a/x"), Presign::Get, Duration::from_secs(60))
        .await
        .unwrap();
    let moved = url.replace("/ten_a/", "/ten_b/");
    assert_ne!(moved, url);
    let response = reqwest::get(&moved).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_expired_url_is_refused() {
    let (blobs, _dir) = local_blobs_with_routes().await;
    blobs
        .put(&key("t/old"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let past = OffsetDateTime::now_utc().unix_timestamp() - 1;
    let url = blobs.signed_url(&key("t/old"), Presign::Get, past);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(
        code_of(response).await,
        (StatusCode::FORBIDDEN, "invalid_signature".into())
    );
}

#[tokio::test]
async fn a_download_url_cannot_upload_and_an_upload_url_takes_only_its_length() {
    let (blobs, _dir) = local_blobs_with_routes().await;
    let client = reqwest::Client::new();
    let download = blobs
        .presign(&key("t/up"), Presign::Get, Duration::from_secs(60))
        .await
        .unwrap();
    let response = client.put(&download).body("sneaky").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let upload = blobs
        .presign(
            &key("t/up"),
            Presign::Put { content_length: 5 },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let response = client.put(&upload).body("too long").send().await.unwrap();
    assert_eq!(
        code_of(response).await,
        (StatusCode::BAD_REQUEST, "length_mismatch".into())
    );
    assert_eq!(
        blobs.head(&key("t/up")).await.unwrap(),
        None,
        "nothing half-written"
    );
    let response = client.put(&upload).body("exact").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(blobs.head(&key("t/up")).await.unwrap().unwrap().size, 5);
}
