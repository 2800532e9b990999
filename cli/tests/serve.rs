//! The real `sextant serve` binary: answers health checks, keeps data across
//! restarts, stops cleanly on SIGTERM, and stores no secret in plain text.

mod common;

use std::path::Path;
use std::process::Command;

use common::{post, start, terminate};
use serde_json::{Value, json};

#[tokio::test]
async fn serve_answers_health_checks_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let response = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    let status = terminate(&mut server);
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn data_survives_a_restart_and_no_secret_is_stored_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let email = format!("persist-{}@example.com", std::process::id());
    let password = "a password worth keeping";

    let mut server = start(dir.path());
    let (status, signed_up) = post(
        &client,
        format!("{}/v1/signup", server.base),
        None,
        json!({"team": "Persistent", "email": email, "password": password}),
    )
    .await;
    assert_eq!(status, 201, "{signed_up}");
    let api_key = signed_up["api_key"].as_str().unwrap().to_owned();
    let (status, invite) = post(
        &client,
        format!("{}/v1/invites", server.base),
        Some(&api_key),
        json!({"email": format!("invitee-{}@example.com", std::process::id())}),
    )
    .await;
    assert_eq!(status, 201);
    let invite_token = invite["token"].as_str().unwrap().to_owned();
    let (status, _) = post(
        &client,
        format!("{}/v1/projects", server.base),
        Some(&api_key),
        json!({"name": "kept"}),
    )
    .await;
    assert_eq!(status, 201);
    assert!(terminate(&mut server).success());

    // The key's secret half, the password and the invite token appear nowhere on disk.
    let secret_half = api_key
        .rsplit_once('_')
        .map_or(api_key.as_str(), |(_, s)| s);
    let mut files = 0;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for needle in [
            secret_half,
            api_key.as_str(),
            password,
            invite_token.as_str(),
        ] {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes()),
                "{} holds a secret in plain text",
                entry.display()
            );
        }
    }
    assert!(files >= 2, "expected the store and secrets files");

    let server = start(dir.path());
    let (status, login) = post(
        &client,
        format!("{}/v1/login", server.base),
        None,
        json!({"email": email, "password": password}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let projects: Value = client
        .get(format!("{}/v1/projects/kept", server.base))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(projects["name"], "kept");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let _first = start(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another `sextant serve`"), "{stderr}");
}

#[tokio::test]
async fn a_share_token_reaches_neither_the_log_nor_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let (api_key, run) = common::team_with_run(&server, "shared").await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (status, created) = post(
        &client,
        format!("{}/v1/runs/{run}/shares", server.base),
        Some(&api_key),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let secret = token.trim_start_matches("sxt_share_").to_owned();
    for (path, expected) in [
        (format!("/v1/shared/{token}"), 200),
        (
            format!("/v1/shared/{token}/series/train/loss?max_points=10"),
            404,
        ),
        (format!("/v1/shared/{token}/images/samples"), 200),
        (format!("/v1/shared/{token}/artifacts/model.pt"), 403),
        (format!("/v1/shared/{token}x"), 404),
    ] {
        let response = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{path}");
    }
    // The page, whatever it answers (a route of its own, or none yet).
    client
        .get(format!("{}/r/{token}", server.base))
        .send()
        .await
        .unwrap();
    assert!(terminate(&mut server).success());

    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains("/v1/shared/{token}/series/{*name}"),
        "requests are logged by their route template: {log}"
    );
    assert!(!log.contains(&secret), "the log holds a share token: {log}");
    for file in walk(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{} holds a share token",
            file.display()
        );
    }
}
