//! The smoke test of a running deployment: one pass over the paths a team uses, against
//! the stage at `SEXTANT_URL` (a deployed stack's `ApiUrl` output, or a local `sextant
//! serve`). It is ignored unless asked for, because it needs a server someone else
//! started (test runs report it skipped); run it with
//!
//! ```text
//! SEXTANT_URL=https://abc123.execute-api.us-east-1.amazonaws.com \
//!     cargo test -p sextant-tests --test smoke -- --ignored
//! ```
//!
//! It signs up a fresh team (a unique `@example.com` address), or uses
//! `SEXTANT_API_KEY` (an admin or member key) when that is set; creates a project and a
//! run; logs a batch and retries it; reads the series back exactly and downsampled;
//! uploads and downloads a small artifact through the presigned URLs; opens a share
//! logged out; reads `/v1/usage`; and deletes the run (and its project). The team it
//! signed up stays.

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use sextant_tests::{sha256_hex, text, unique};

struct Stage {
    base: String,
    /// Sends the credential; never follows redirects, so a download's redirect shows.
    client: reqwest::Client,
    /// For presigned URLs and logged-out reads: no credential, ever.
    anonymous: reqwest::Client,
    credential: String,
}

impl Stage {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method.clone(), self.url(path))
            .bearer_auth(&self.credential);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {path} reaches the stage: {err}"));
        read_json(response, &format!("{method} {path}")).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn anonymous_get(&self, url: &str) -> (StatusCode, Value) {
        let response = self
            .anonymous
            .get(url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {url} reaches the stage: {err}"));
        read_json(response, url).await
    }
}

/// Status and JSON body (`Null` when empty), or a panic showing a non-JSON body.
async fn read_json(response: reqwest::Response, what: &str) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("a response body");
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{what}: a non-JSON body with {status}: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

fn client(redirects: bool) -> reqwest::Client {
    let policy = if redirects {
        reqwest::redirect::Policy::limited(5)
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(policy)
        .build()
        .expect("an HTTP client")
}

#[tokio::test]
#[ignore = "needs a running stage at SEXTANT_URL: cargo test -p sextant-tests --test smoke -- --ignored"]
async fn smoke_a_running_stage_serves_a_team_from_sign_up_to_deleting_a_run() {
    let base = std::env::var("SEXTANT_URL")
        .expect("SEXTANT_URL names the stage to test (see the README, Deployment)");
    let base = base.trim_end_matches('/').to_owned();
    let anonymous = client(false);

    // Up.
    let health = anonymous
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_or_else(|err| panic!("{base}/healthz answers: {err}"));
    assert_eq!(health.status(), StatusCode::OK, "GET /healthz");

    // A team: the key given, or a fresh sign-up.
    let credential = match std::env::var("SEXTANT_API_KEY") {
        Ok(key) => key,
        Err(_) => {
            let email = format!("{}@example.com", unique("smoke"));
            let response = anonymous
                .post(format!("{base}/v1/signup"))
                .json(&json!({"team": "Sextant smoke test", "email": email,
                              "password": "a smoke test's long password"}))
                .send()
                .await
                .expect("sign-up reaches the stage");
            let (status, team) = read_json(response, "POST /v1/signup").await;
            assert_eq!(status, StatusCode::CREATED, "{team}");
            text(&team, "api_key")
        }
    };
    let stage = Stage {
        base,
        client: client(false),
        anonymous,
        credential,
    };

    // A project and a run.
    let project_name = unique("smoke");
    let (status, project) = stage
        .post("/v1/projects", json!({"name": project_name}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let project = text(&project, "id");
    let (status, run) = stage
        .post(
            &format!("/v1/projects/{project}/runs"),
            json!({"name": "smoke", "tags": ["smoke"], "params": {"lr": 0.001}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run = text(&run, "id");

    // A batch, retried: stored and counted once.
    let steps: Vec<i64> = (0..1_000).collect();
    let values: Vec<f64> = steps.iter().map(|&s| 1.0 / (s as f64 + 7.0)).collect();
    let batch = json!({
        "batch_id": unique("batch"),
        "series": {"train/loss": {"steps": steps, "values": values}},
        "text": {"stdout": [{"step": 0, "text": "smoke test"}]},
    });
    let log = format!("/v1/runs/{run}/log");
    let (status, first) = stage.post(&log, batch.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first, json!({"accepted": 1_001, "abort_requested": false}));
    let (status, retried) = stage.post(&log, batch).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried, first, "a retried batch answers as the first did");
    let (status, series) = stage.get(&format!("/v1/runs/{run}/series")).await;
    assert_eq!(status, StatusCode::OK, "{series}");
    assert_eq!(series["series"]["train/loss"]["count"], 1_000, "{series}");
    assert_eq!(series["series"]["stdout"]["count"], 1, "{series}");

    // Read back exactly, then downsampled.
    let loss = format!("/v1/runs/{run}/series/train/loss");
    let (status, exact) = stage.get(&loss).await;
    assert_eq!(status, StatusCode::OK, "{exact}");
    assert_eq!(exact["downsampled"], false);
    assert_eq!(exact["steps"], json!(steps));
    let read: Vec<f64> = exact["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect();
    assert!(
        read.iter()
            .zip(&values)
            .all(|(a, b)| a.to_bits() == b.to_bits())
            && read.len() == values.len(),
        "values come back bit for bit"
    );
    let (status, chart) = stage.get(&format!("{loss}?max_points=50")).await;
    assert_eq!(status, StatusCode::OK, "{chart}");
    assert_eq!(chart["downsampled"], true);
    let points = chart["steps"].as_array().expect("steps").len();
    assert!((2..=50).contains(&points), "{points} points");
    assert_eq!(chart["values"][0], values[0], "the first point stays");

    // An artifact, up and down through presigned URLs.
    let bytes = b"weights, or something like them\n";
    let artifacts = format!("/v1/runs/{run}/artifacts");
    let (status, plan) = stage
        .post(
            &artifacts,
            json!({"path": "smoke/weights.txt", "size": bytes.len(),
                   "sha256": sha256_hex(bytes)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plan}");
    let upload = stage
        .anonymous
        .put(text(&plan["upload"], "url"))
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(bytes.to_vec())
        .send()
        .await
        .expect("the upload URL answers");
    assert!(upload.status().is_success(), "upload: {}", upload.status());
    let (status, artifact) = stage
        .post(
            &format!("{artifacts}/complete"),
            json!({"path": "smoke/weights.txt"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{artifact}");
    assert_eq!(artifact["status"], "ready", "{artifact}");
    let redirect = stage
        .client
        .get(stage.url(&format!("{artifacts}/smoke/weights.txt")))
        .bearer_auth(&stage.credential)
        .send()
        .await
        .expect("the download answers");
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = redirect.headers()[header::LOCATION]
        .to_str()
        .expect("an ASCII location")
        .to_owned();
    let download = stage
        .anonymous
        .get(&location)
        .send()
        .await
        .expect("the download URL answers");
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(&download.bytes().await.expect("the bytes")[..], bytes);

    // A share, opened logged out.
    let (status, share) = stage
        .post(&format!("/v1/runs/{run}/shares"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{share}");
    let token = text(&share, "token");
    let shared_path = stage.url(&format!("/v1/shared/{token}"));
    let (status, shared) = stage.anonymous_get(&shared_path).await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    assert_eq!(shared["run"]["id"], run.as_str(), "{shared}");
    assert_eq!(shared["run"]["series"]["train/loss"]["count"], 1_000);
    let page = stage
        .anonymous
        .get(text(&share, "url"))
        .send()
        .await
        .expect("the share page answers");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("a page");
    assert!(
        html.contains("train/loss"),
        "the page shows the run's series"
    );

    // Usage answers (points appear once the hourly metering run has rolled them up).
    let (status, usage) = stage.get("/v1/usage").await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert!(usage["points"].is_u64(), "{usage}");
    assert!(usage["total"].is_string(), "{usage}");

    // Delete the run: gone, and its share with it.
    let (status, body) = stage
        .call(Method::DELETE, &format!("/v1/runs/{run}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = stage.get(&format!("/v1/runs/{run}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = stage.anonymous_get(&shared_path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = stage
        .call(Method::DELETE, &format!("/v1/projects/{project}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}
