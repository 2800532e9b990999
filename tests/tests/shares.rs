//! Shared run URLs over the real HTTP surface: a token opens one run logged out (its
//! metadata, params, series, text, images and artifact list, and downloads only when
//! allowed), revoking or expiring it closes it at once, it never reaches another run or
//! another team, and it is stored only as a hash.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sextant_domain::credentials::jwt::Keyring;
use sextant_edge::state::{AppState, Settings};
use sextant_storage::Storage;
use sextant_storage::clock::ManualClock;
use sextant_storage_local::EmbeddedKv;
use sextant_tests::{
    PNG, Team, TestApp, aws_cases, cases, error_code, fresh_aws_storage, local_blobs_with_routes,
    text, unique,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

cases!(embedded, sextant_tests::TestApp::spawn;
    a_shared_run_reads_logged_out_exactly_as_its_team_reads_it,
    downloads_are_refused_unless_the_share_allows_them_and_allowed_ones_redirect,
    the_share_list_shows_live_shares_without_their_tokens,
    a_revoked_share_answers_404_at_once_and_others_keep_working,
    deleting_the_run_closes_its_shares,
    another_team_cannot_create_list_or_revoke_shares_of_a_run_it_does_not_own,
    a_viewer_lists_shares_but_cannot_create_or_revoke_them,
    a_token_opens_its_own_run_and_nothing_else_whatever_the_path,
    bad_expiries_and_unknown_fields_are_refused,
);

aws_cases!(dynamodb, sextant_tests::TestApp::spawn_on_aws;
    a_shared_run_reads_logged_out_exactly_as_its_team_reads_it,
    downloads_are_refused_unless_the_share_allows_them_and_allowed_ones_redirect,
    the_share_list_shows_live_shares_without_their_tokens,
    a_revoked_share_answers_404_at_once_and_others_keep_working,
    deleting_the_run_closes_its_shares,
    another_team_cannot_create_list_or_revoke_shares_of_a_run_it_does_not_own,
    a_token_opens_its_own_run_and_nothing_else_whatever_the_path,
);

cases!(embedded_on_a_manual_clock, super::clocked_embedded;
    a_share_answers_404_from_the_moment_it_expires,
);

aws_cases!(dynamodb_on_a_manual_clock, super::clocked_dynamodb;
    a_share_answers_404_from_the_moment_it_expires,
);

/// Logged out: no credential at all.
async fn public(app: &TestApp, path: &str) -> (StatusCode, Value) {
    app.call(Method::GET, path, None, None).await
}

/// A logged-out GET, answering status, headers and body.
async fn public_response(app: &TestApp, path: &str) -> (StatusCode, HeaderMap, Value) {
    let response = app
        .request(Method::GET, path, None)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn assert_private(headers: &HeaderMap, path: &str) {
    assert_eq!(
        headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{path}"
    );
    assert_eq!(
        headers.get(header::REFERRER_POLICY).map(|v| v.as_bytes()),
        Some(&b"no-referrer"[..]),
        "{path}"
    );
}

async fn share(app: &TestApp, key: &str, run: &str, body: Value) -> Value {
    let (status, created) = app.post(&format!("/v1/runs/{run}/shares"), key, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

async fn list_shares(app: &TestApp, key: &str, run: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/runs/{run}/shares"), key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["shares"]
        .as_array()
        .unwrap_or_else(|| panic!("no shares in {body}"))
        .clone()
}

/// What a team reads of its own run, which a share must answer the same.
async fn member_read(app: &TestApp, key: &str, path: &str) -> Value {
    let (status, body) = app.get(path, key).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// A run with a bit of everything: params, tags, a numeric series, a text series, an
/// image and an artifact, all under names starting with `label`.
async fn full_run(app: &TestApp, key: &str, label: &str) -> String {
    let project = unique("project");
    app.create_project(key, &project).await;
    let run = text(
        &app.create_run(
            key,
            &project,
            json!({
                "name": format!("{label}-run"),
                "description": "shared with the world",
                "tags": [format!("{label}-tag")],
                "params": {"lr": 0.0003, "model": {"layers": 4, "kind": label}},
            }),
        )
        .await,
        "id",
    );
    let steps: Vec<i64> = (0..200).collect();
    let values: Vec<f64> = steps.iter().map(|&s| 1.0 / (s as f64 + 1.0)).collect();
    app.log_ok(
        key,
        &run,
        json!({
            "batch_id": unique("batch"),
            "series": {format!("{label}/loss"): {"steps": steps, "values": values}},
            "text": {format!("{label}-stdout"): [
                {"step": 1, "text": "epoch 1 done"},
                {"step": 2, "text": "epoch 2 done"},
            ]},
        }),
    )
    .await;
    let (status, image) = app
        .post_image(key, &run, &format!("series={label}-samples&step=3"), PNG)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    app.store_artifact(key, &run, &format!("{label}/weights.bin"), b"weights", None)
        .await;
    run
}

async fn a_shared_run_reads_logged_out_exactly_as_its_team_reads_it(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = full_run(&app, key, "whale").await;

    let response = app
        .request(Method::POST, &format!("/v1/runs/{run}/shares"), Some(key))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let created: Value = response.json().await.unwrap();
    let token = text(&created, "token");
    assert!(token.starts_with("sxt_share_"), "{created}");
    assert_eq!(token.len(), "sxt_share_".len() + 43, "256 random bits");
    assert!(text(&created, "id").starts_with("shr_"), "{created}");
    assert_eq!(text(&created, "url"), app.url(&format!("/r/{token}")));
    assert_eq!(created["run_id"], run.as_str());
    assert_eq!(created["allow_downloads"], false);
    assert_eq!(created["created_by"], team.user_id.as_str());
    let expires_at = time::OffsetDateTime::parse(
        &text(&created, "expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let in_thirty_days = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    assert!(
        (expires_at - in_thirty_days).abs() < time::Duration::minutes(1),
        "{created}"
    );
    assert!(created.get("token_hash").is_none(), "{created}");

    let base = format!("/v1/shared/{token}");
    let (status, headers, shared) = public_response(&app, &base).await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    assert_private(&headers, &base);
    assert_eq!(
        shared["share"],
        json!({"expires_at": created["expires_at"], "allow_downloads": false})
    );
    let mut member_run = member_read(&app, key, &format!("/v1/runs/{run}")).await;
    // What the run cost is the team's business, not the share holder's.
    assert!(member_run["usage"]["cost"].is_string(), "{member_run}");
    assert_eq!(shared["run"]["usage"], Value::Null);
    member_run["usage"].take();
    assert_eq!(shared["run"], member_run);
    assert_eq!(shared["run"]["params"]["model/layers"], 4);
    assert_eq!(shared["run"]["params"]["lr"], 0.0003);
    assert_eq!(shared["run"]["name"], "whale-run");
    assert_eq!(shared["run"]["series"]["whale/loss"]["count"], 200);
    let member_artifacts = member_read(&app, key, &format!("/v1/runs/{run}/artifacts")).await;
    assert_eq!(shared["artifacts"], member_artifacts["artifacts"]);
    assert_eq!(shared["artifacts"][0]["path"], "whale/weights.bin");
    let member_images = member_read(&app, key, &format!("/v1/runs/{run}/images")).await;
    assert_eq!(shared["images"], member_images["series"]);
    assert_eq!(shared["images"]["whale-samples"]["count"], 1);

    for query in ["", "?max_points=10", "?from=10&to=20", "?after=150"] {
        for series in ["whale/loss", "whale-stdout"] {
            let path = format!("{base}/series/{series}{query}");
            let (status, headers, points) = public_response(&app, &path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {points}");
            assert_private(&headers, &path);
            let member =
                member_read(&app, key, &format!("/v1/runs/{run}/series/{series}{query}")).await;
            assert_eq!(points, member, "{path}");
        }
    }
    let (_, downsampled) = public(&app, &format!("{base}/series/whale/loss?max_points=10")).await;
    assert_eq!(downsampled["downsampled"], true);
    assert!(downsampled["steps"].as_array().unwrap().len() <= 10);
    let (_, exact) = public(&app, &format!("{base}/series/whale/loss")).await;
    assert_eq!(exact["steps"].as_array().unwrap().len(), 200);
    assert_eq!(exact["downsampled"], false);
    let (_, lines) = public(&app, &format!("{base}/series/whale-stdout")).await;
    assert_eq!(lines["texts"], json!(["epoch 1 done", "epoch 2 done"]));
    let (status, body) = public(&app, &format!("{base}/series/whale/loss?max_points=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_max_points");

    let path = format!("{base}/images/whale-samples");
    let (status, headers, images) = public_response(&app, &path).await;
    assert_eq!(status, StatusCode::OK, "{images}");
    assert_private(&headers, &path);
    let member = member_read(&app, key, &format!("/v1/runs/{run}/images/whale-samples")).await;
    let without_urls = |body: &Value| -> Vec<Value> {
        body["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|image| {
                let mut image = image.clone();
                image.as_object_mut().unwrap().remove("url");
                image
            })
            .collect()
    };
    assert_eq!(without_urls(&images), without_urls(&member));
    assert_eq!(images["images"][0]["step"], 3);
    let fetched = app
        .client
        .get(text(&images["images"][0], "url"))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(&fetched.bytes().await.unwrap()[..], PNG);
    let (_, one_step) = public(&app, &format!("{path}?step=4")).await;
    assert_eq!(one_step["images"], json!([]));
}

/// Follows no redirects, so a download's `Location` can be checked.
fn no_redirect() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn downloads_are_refused_unless_the_share_allows_them_and_allowed_ones_redirect(
    app: TestApp,
) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = full_run(&app, key, "orca").await;
    let closed = text(&share(&app, key, &run, json!({})).await, "token");
    let open = text(
        &share(&app, key, &run, json!({"allow_downloads": true})).await,
        "token",
    );

    let path = format!("/v1/shared/{closed}/artifacts/orca/weights.bin");
    let (status, headers, body) = public_response(&app, &path).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "downloads_not_shared");
    assert_private(&headers, &path);

    let (_, shared) = public(&app, &format!("/v1/shared/{open}")).await;
    assert_eq!(shared["share"]["allow_downloads"], true);
    let response = no_redirect()
        .get(app.url(&format!("/v1/shared/{open}/artifacts/orca/weights.bin")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_private(response.headers(), "allowed download");
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    let downloaded = app.client.get(location).send().await.unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(&downloaded.bytes().await.unwrap()[..], b"weights");

    for missing in [
        "orca/nothing.bin",
        "orca",
        "orca/../orca/weights.bin",
        "orca%2F..%2Forca%2Fweights.bin",
    ] {
        let (status, response) =
            raw_get(&app, &format!("/v1/shared/{open}/artifacts/{missing}")).await;
        assert_eq!(status, 404, "{missing}: {response}");
    }
}

async fn the_share_list_shows_live_shares_without_their_tokens(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let other_run = app.new_run(key).await;
    assert!(list_shares(&app, key, &run).await.is_empty());
    let first = share(&app, key, &run, json!({"expires_in": 3600})).await;
    let second = share(&app, key, &run, json!({"allow_downloads": true})).await;
    share(&app, key, &other_run, json!({})).await;

    let listed = list_shares(&app, key, &run).await;
    let ids: Vec<String> = listed.iter().map(|s| text(s, "id")).collect();
    assert_eq!(ids, [text(&first, "id"), text(&second, "id")]);
    for (listed, created) in listed.iter().zip([&first, &second]) {
        for field in [
            "run_id",
            "allow_downloads",
            "created_by",
            "created_at",
            "expires_at",
        ] {
            assert_eq!(listed[field], created[field], "{field}");
        }
        let fields: Vec<&String> = listed.as_object().unwrap().keys().collect();
        assert_eq!(fields.len(), 6, "only the share's own fields: {listed}");
    }
    let shown = json!(listed).to_string();
    for created in [&first, &second] {
        let token = text(created, "token");
        assert!(!shown.contains(&token["sxt_share_".len()..]), "{shown}");
    }
    let viewer = app.key_with_role(&team, "viewer").await;
    assert_eq!(list_shares(&app, &viewer, &run).await, listed);
}

async fn a_revoked_share_answers_404_at_once_and_others_keep_working(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = full_run(&app, key, "seal").await;
    let revoked = share(&app, key, &run, json!({"allow_downloads": true})).await;
    let kept = share(&app, key, &run, json!({})).await;
    let token = text(&revoked, "token");
    let (status, _) = public(&app, &format!("/v1/shared/{token}")).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app
        .delete(&format!("/v1/shares/{}", text(&revoked, "id")), key)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for path in [
        format!("/v1/shared/{token}"),
        format!("/v1/shared/{token}/series/seal/loss"),
        format!("/v1/shared/{token}/series/seal-stdout?max_points=5"),
        format!("/v1/shared/{token}/images/seal-samples"),
        format!("/v1/shared/{token}/artifacts/seal/weights.bin"),
    ] {
        let (status, headers, body) = public_response(&app, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
        assert_private(&headers, &path);
    }
    let ids: Vec<String> = list_shares(&app, key, &run)
        .await
        .iter()
        .map(|s| text(s, "id"))
        .collect();
    assert_eq!(ids, [text(&kept, "id")]);
    let (status, body) = app
        .delete(&format!("/v1/shares/{}", text(&revoked, "id")), key)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = public(&app, &format!("/v1/shared/{}", text(&kept, "token"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn deleting_the_run_closes_its_shares(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = full_run(&app, key, "narwhal").await;
    let created = share(&app, key, &run, json!({"allow_downloads": true})).await;
    let token = text(&created, "token");
    let (status, body) = app.delete(&format!("/v1/runs/{run}"), key).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for path in [
        format!("/v1/shared/{token}"),
        format!("/v1/shared/{token}/series/narwhal/loss"),
        format!("/v1/shared/{token}/images/narwhal-samples"),
        format!("/v1/shared/{token}/artifacts/narwhal/weights.bin"),
    ] {
        let (status, body) = public(&app, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
    let (status, body) = app
        .delete(&format!("/v1/shares/{}", text(&created, "id")), key)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "gone with its run: {body}");
    let (status, _) = app.get(&format!("/v1/runs/{run}/shares"), key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn another_team_cannot_create_list_or_revoke_shares_of_a_run_it_does_not_own(app: TestApp) {
    let a = app.signup().await;
    let b = app.signup().await;
    let run = app.new_run(&a.api_key).await;
    let created = share(&app, &a.api_key, &run, json!({})).await;
    let id = text(&created, "id");
    let ghost_run = format!("run_{}", ulid::Ulid::generate().to_string().to_lowercase());
    let ghost_share = format!("shr_{}", ulid::Ulid::generate().to_string().to_lowercase());
    let attempts = [
        (
            Method::POST,
            format!("/v1/runs/{run}/shares"),
            Some(json!({})),
        ),
        (Method::GET, format!("/v1/runs/{run}/shares"), None),
        (Method::DELETE, format!("/v1/shares/{id}"), None),
    ];
    for (method, path, body) in &attempts {
        let (status, response) = app
            .call(method.clone(), path, Some(&b.api_key), body.clone())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {response}");
        assert_eq!(error_code(&response), "not_found");
    }
    // Exactly as missing or malformed ones answer the team itself.
    for (method, path, body) in [
        (
            Method::POST,
            format!("/v1/runs/{ghost_run}/shares"),
            Some(json!({})),
        ),
        (Method::GET, format!("/v1/runs/{ghost_run}/shares"), None),
        (Method::DELETE, format!("/v1/shares/{ghost_share}"), None),
        (Method::DELETE, "/v1/shares/not-an-id".to_owned(), None),
        (Method::DELETE, format!("/v1/shares/{run}"), None),
    ] {
        let (status, response) = app
            .call(method.clone(), &path, Some(&a.api_key), body)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {response}");
        assert_eq!(error_code(&response), "not_found");
    }
    // Logged out, the team's routes want a credential.
    for (method, path, body) in attempts {
        let (status, _) = app.call(method.clone(), &path, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(list_shares(&app, &a.api_key, &run).await.len(), 1);
    let (status, _) = public(&app, &format!("/v1/shared/{}", text(&created, "token"))).await;
    assert_eq!(status, StatusCode::OK, "untouched by the other team");
}

async fn a_viewer_lists_shares_but_cannot_create_or_revoke_them(app: TestApp) {
    let team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    let created = share(&app, &team.api_key, &run, json!({})).await;
    let viewer = app.key_with_role(&team, "viewer").await;
    let (status, body) = app
        .post(&format!("/v1/runs/{run}/shares"), &viewer, json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "forbidden");
    let (status, body) = app
        .delete(&format!("/v1/shares/{}", text(&created, "id")), &viewer)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "forbidden");
    assert_eq!(list_shares(&app, &viewer, &run).await.len(), 1);
    let member = app.key_with_role(&team, "member").await;
    share(&app, &member, &run, json!({})).await;
    let (status, _) = app
        .delete(&format!("/v1/shares/{}", text(&created, "id")), &member)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// A GET sent byte for byte, so dot segments and encodings reach the server as
/// written (an HTTP client would normalise them away).
async fn raw_get(app: &TestApp, path: &str) -> (u16, String) {
    let host = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    (status, response)
}

async fn a_token_opens_its_own_run_and_nothing_else_whatever_the_path(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let shared_run = full_run(&app, key, "beluga").await;
    let other_run = full_run(&app, key, "secret").await;
    let project = member_read(&app, key, &format!("/v1/runs/{other_run}")).await["project_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = text(
        &share(&app, key, &shared_run, json!({"allow_downloads": true})).await,
        "token",
    );
    let other_token = text(&share(&app, key, &other_run, json!({})).await, "token");
    let base = format!("/v1/shared/{token}");

    // What the other run holds, by its own names: not there.
    for path in [
        format!("{base}/series/secret/loss"),
        format!("{base}/series/secret-stdout"),
        format!("{base}/artifacts/secret/weights.bin"),
    ] {
        let (status, body) = public(&app, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, body) = public(&app, &format!("{base}/images/secret-samples")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["images"], json!([]));

    // Paths that climb out of the share, as written and percent-encoded.
    let escapes = [
        format!("{base}/series/../../../runs/{other_run}/series/secret/loss"),
        format!("{base}/series/..%2F..%2F..%2Fruns%2F{other_run}%2Fseries%2Fsecret%2Floss"),
        format!("{base}/series/%2e%2e/%2e%2e/{other_token}/series/secret/loss"),
        format!("{base}/images/../../{other_token}/images/secret-samples"),
        format!("{base}/images/..%2F..%2F{other_token}%2Fimages%2Fsecret-samples"),
        format!("{base}/artifacts/../../{other_token}/artifacts/secret/weights.bin"),
        format!("{base}/artifacts/..%2F..%2F{other_token}%2Fartifacts%2Fsecret%2Fweights.bin"),
        format!("{base}/../{other_token}"),
        format!("{base}/../../runs/{other_run}"),
        format!("{base}/../../projects/{project}/runs"),
        format!("/v1/shared/{token}%2F..%2F{other_token}"),
        format!("{base}/series/secret/loss?run={other_run}"),
    ];
    for path in &escapes {
        let (status, response) = raw_get(&app, path).await;
        // An image series may be named anything with dots and slashes; this run
        // has none by such a name.
        let no_images = response.contains("\"images\":[]");
        assert!(
            status == 404 || status == 400 || (status == 200 && no_images),
            "{path}: {response}"
        );
        for secret in [
            other_run.as_str(),
            "secret-run",
            "secret-tag",
            "secret/loss",
        ] {
            assert!(
                !response.contains(secret),
                "{path} shows {secret}: {response}"
            );
        }
    }

    // A token altered by one character, or never issued, opens nothing.
    let mut altered = token.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let never_issued = format!("sxt_share_{}", "A".repeat(43));
    for bad in [
        altered,
        never_issued,
        "sxt_share_".to_owned(),
        "x".to_owned(),
    ] {
        let (status, body) = public(&app, &format!("/v1/shared/{bad}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }

    // The token is no credential for the team's own routes.
    for path in [
        format!("/v1/runs/{shared_run}"),
        format!("/v1/runs/{other_run}"),
        "/v1/projects".to_owned(),
    ] {
        let (status, _) = app.get(&path, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, shared) = public(&app, &base).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shared["run"]["id"], shared_run.as_str());
    assert!(!shared.to_string().contains("secret"), "{shared}");
}

async fn bad_expiries_and_unknown_fields_are_refused(app: TestApp) {
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    let path = format!("/v1/runs/{run}/shares");
    for (body, code) in [
        (json!({"expires_in": 59}), "invalid_expiry"),
        (json!({"expires_in": 0}), "invalid_expiry"),
        (json!({"expires_in": -3600}), "invalid_expiry"),
        (json!({"expires_in": 365 * 86_400 + 1}), "invalid_expiry"),
        (json!({"expires_in": i64::MAX}), "invalid_expiry"),
        (json!({"expires_in": "1h"}), "invalid_request"),
        (json!({"expires_in": 90.5}), "invalid_request"),
        (json!({"allow_downloads": "yes"}), "invalid_request"),
        (json!({"token": "chosen-by-me"}), "invalid_request"),
        (json!({"run": "run_x"}), "invalid_request"),
    ] {
        let (status, response) = app.post(&path, key, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {response}");
        assert_eq!(error_code(&response), code, "{body}");
    }
    assert!(list_shares(&app, key, &run).await.is_empty());
    for (expires_in, days) in [(60, 0), (365 * 86_400, 365)] {
        let created = share(&app, key, &run, json!({ "expires_in": expires_in })).await;
        let expires_at = time::OffsetDateTime::parse(
            &text(&created, "expires_at"),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let expected = time::OffsetDateTime::now_utc()
            + time::Duration::days(days)
            + time::Duration::seconds(if days == 0 { 60 } else { 0 });
        assert!((expires_at - expected).abs() < time::Duration::minutes(1));
    }
}

/// The API on `storage`, reading time from a manual clock, served on a port of its
/// own for the rest of the test.
struct ClockedApp {
    base: String,
    clock: Arc<ManualClock>,
    client: reqwest::Client,
    _keep: Option<tempfile::TempDir>,
}

const CLOCK_START: time::OffsetDateTime = time::macros::datetime!(2026-03-01 12:00:00 UTC);

async fn clocked(storage: Storage, keep: Option<tempfile::TempDir>) -> ClockedApp {
    sextant_domain::telemetry::init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let keyring = Keyring::new(&[("test".to_owned(), vec![5; 32])]).expect("keyring");
    let clock = Arc::new(ManualClock::starting_at(CLOCK_START));
    let state = AppState::new(storage, keyring, Settings::new(Some(base.parse().unwrap())))
        .with_clock(clock.clone());
    let router = sextant_api::router(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    ClockedApp {
        base,
        clock,
        client: reqwest::Client::new(),
        _keep: keep,
    }
}

async fn clocked_embedded() -> ClockedApp {
    let (blobs, dir) = local_blobs_with_routes().await;
    let kv = EmbeddedKv::open(&dir.path().join("store.redb")).expect("store");
    clocked(
        Storage {
            kv: Arc::new(kv),
            blobs,
        },
        Some(dir),
    )
    .await
}

async fn clocked_dynamodb() -> ClockedApp {
    let (config, _, _) = fresh_aws_storage().await;
    clocked(config.storage().await, None).await
}

impl ClockedApp {
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

async fn a_share_answers_404_from_the_moment_it_expires(app: ClockedApp) {
    let (status, team) = app
        .call(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({
                "team": "Clocked",
                "email": format!("{}@example.com", unique("clocked")),
                "password": "correct horse battery staple",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{team}");
    let key = text(&team, "api_key");
    let key = Some(key.as_str());
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/projects",
            key,
            Some(json!({"name": "clocked"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, run) = app
        .call(
            Method::POST,
            "/v1/projects/clocked/runs",
            key,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run = text(&run, "id");
    let shares = format!("/v1/runs/{run}/shares");
    let (status, minute) = app
        .call(Method::POST, &shares, key, Some(json!({"expires_in": 60})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{minute}");
    assert_eq!(minute["expires_at"], "2026-03-01T12:01:00Z");
    let (_, hour) = app
        .call(
            Method::POST,
            &shares,
            key,
            Some(json!({"expires_in": 3600})),
        )
        .await;
    let minute_path = format!("/v1/shared/{}", text(&minute, "token"));
    let hour_path = format!("/v1/shared/{}", text(&hour, "token"));

    app.clock.advance(time::Duration::seconds(59));
    let (status, body) = app.call(Method::GET, &minute_path, None, None).await;
    assert_eq!(status, StatusCode::OK, "a second before it expires: {body}");

    app.clock.advance(time::Duration::seconds(1));
    for path in [
        minute_path.clone(),
        format!("{minute_path}/series/anything"),
        format!("{minute_path}/images/anything"),
        format!("{minute_path}/artifacts/anything"),
    ] {
        let (status, body) = app.call(Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
    let (_, listed) = app.call(Method::GET, &shares, key, None).await;
    let ids: Vec<&Value> = listed["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert_eq!(ids, [&hour["id"]], "the expired one is not listed");
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/shares/{}", text(&minute, "id")),
            key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an expired share is gone");
    let (status, _) = app.call(Method::GET, &hour_path, None, None).await;
    assert_eq!(status, StatusCode::OK);

    app.clock.advance(time::Duration::hours(1));
    let (status, _) = app.call(Method::GET, &hour_path, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Every item of the table, as attribute maps.
async fn scan(config: &sextant_storage_aws::AwsStorageConfig) -> Vec<Value> {
    let items = sextant_tests::scan_table(config).await;
    items
        .into_iter()
        .map(|item| {
            let fields = item
                .into_iter()
                .filter_map(|(name, value)| match value {
                    AttributeValue::S(s) => Some((name, json!(s))),
                    AttributeValue::N(n) => Some((name, json!(n))),
                    _ => None,
                })
                .collect();
            Value::Object(fields)
        })
        .collect()
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn a_share_is_stored_as_a_hash_with_a_ttl_at_its_expiry_and_goes_with_its_run() {
    let (config, _, _) = fresh_aws_storage().await;
    let app = TestApp::spawn_with(sextant_cli::Backend::Aws(config.clone())).await;
    let team: Team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    let created = share(&app, &team.api_key, &run, json!({"expires_in": 7200})).await;
    let token = text(&created, "token");
    let expires_at = time::OffsetDateTime::parse(
        &text(&created, "expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();

    let items = scan(&config).await;
    for item in &items {
        let bytes = item.to_string().into_bytes();
        assert!(!contains(&bytes, &token), "{item}");
        assert!(!contains(&bytes, &token["sxt_share_".len()..]), "{item}");
    }
    let id = text(&created, "id");
    let share_items: Vec<&Value> = items
        .iter()
        .filter(|item| {
            item["pk"]
                .as_str()
                .is_some_and(|pk| pk.starts_with("~share#"))
                || item["sk"].as_str().is_some_and(|sk| sk.contains(&id))
        })
        .collect();
    assert_eq!(share_items.len(), 3, "{share_items:?}");
    for item in &share_items {
        assert_eq!(
            item["ttl"],
            json!(expires_at.unix_timestamp().to_string()),
            "{item}"
        );
    }
    let lookup = share_items
        .iter()
        .find(|item| item["pk"].as_str().unwrap().starts_with("~share#"))
        .expect("the global lookup");
    assert!(
        lookup["doc"].as_str().unwrap().contains(&team.tenant_id),
        "the lookup names its tenant: {lookup}"
    );

    let (status, _) = app.delete(&format!("/v1/runs/{run}"), &team.api_key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left: Vec<Value> = scan(&config)
        .await
        .into_iter()
        .filter(|item| item.to_string().contains(&id) || item.to_string().contains("~share#"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
