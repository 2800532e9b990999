//! The real `sextant serve` binary: answers health checks, keeps data across
//! restarts, stops cleanly on SIGTERM, and neither stores nor logs a secret in plain
//! text.

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

    // The key's secret half, the password and the invite token appear nowhere on disk,
    // but for the invite in the mail sent to the invitee (the outbox is mail sent, as
    // a letter's recipient has it).
    let secret_half = secret_part(&api_key);
    let outbox = dir.path().join("outbox");
    let mut files = 0;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        let mut secrets = vec![secret_half, api_key.as_str(), password];
        if !entry.starts_with(&outbox) {
            secrets.push(invite_token.as_str());
        }
        for needle in secrets {
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

/// The secret of an API key (`sxt_{id}_{secret}`) or share token
/// (`sxt_share_{secret}`). The secret is URL-safe base64 and may hold `_` itself, so it
/// is everything after the second `_`, never just the tail after the last one (which
/// can be a character or two that turn up anywhere).
fn secret_part(credential: &str) -> &str {
    credential
        .splitn(3, '_')
        .nth(2)
        .expect("a prefixed credential")
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

/// Every kind of secret a session handles, sent every way a client sends them, with
/// the server logging at debug: none of them may reach the log.
#[tokio::test]
async fn a_full_session_leaves_no_secret_in_the_log_even_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::start_with_env(dir.path(), &[("RUST_LOG", "debug")]);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let password = "a password nobody should read";
    let (status, team) = post(
        &client,
        format!("{base}/v1/signup"),
        None,
        json!({"team": "Secretive", "email": "s@example.com", "password": password}),
    )
    .await;
    assert_eq!(status, 201, "{team}");
    let api_key = team["api_key"].as_str().unwrap().to_owned();
    let session = team["token"].as_str().unwrap().to_owned();
    let (_, login) = post(
        &client,
        format!("{base}/v1/login"),
        None,
        json!({"email": "s@example.com", "password": password}),
    )
    .await;
    let login_token = login["token"].as_str().unwrap().to_owned();
    let (_, second_key) = post(
        &client,
        format!("{base}/v1/api-keys"),
        Some(&session),
        json!({"name": "ci"}),
    )
    .await;
    let second_key = second_key["secret"].as_str().unwrap().to_owned();
    let (_, exchanged) = post(
        &client,
        format!("{base}/v1/auth/token"),
        Some(&api_key),
        json!({}),
    )
    .await;
    let access_token = exchanged["token"].as_str().unwrap().to_owned();
    let (_, invite) = post(
        &client,
        format!("{base}/v1/invites"),
        Some(&access_token),
        json!({"email": "new@example.com"}),
    )
    .await;
    let invite_token = invite["token"].as_str().unwrap().to_owned();
    let invitee_password = "the invitee's own password";
    let (status, _) = post(
        &client,
        format!("{base}/v1/invites/{invite_token}/accept"),
        None,
        json!({"password": invitee_password}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, run) = post(
        &client,
        format!("{base}/api/2.0/mlflow/runs/create"),
        Some(&second_key),
        json!({}),
    )
    .await;
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let (_, share) = post(
        &client,
        format!("{base}/v1/runs/{run_id}/shares"),
        Some(&api_key),
        json!({}),
    )
    .await;
    let share_token = share["token"].as_str().unwrap().to_owned();
    client
        .get(format!("{base}/v1/shared/{share_token}"))
        .send()
        .await
        .unwrap();
    // MLflow's basic auth, a wrong key, a wrong password, a cookie.
    let basic = client
        .get(format!(
            "{base}/api/2.0/mlflow/experiments/get?experiment_id=0"
        ))
        .basic_auth("someone", Some(&api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let wrong_key = format!("{}x", api_key);
    client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&wrong_key)
        .send()
        .await
        .unwrap();
    post(
        &client,
        format!("{base}/v1/login"),
        None,
        json!({"email": "s@example.com", "password": "not the password at all"}),
    )
    .await;
    client
        .get(format!("{base}/projects"))
        .header("cookie", format!("sextant_session={login_token}"))
        .send()
        .await
        .unwrap();
    assert!(terminate(&mut server).success());

    let log = server.log.lock().unwrap().join("\n");
    assert!(log.contains("DEBUG"), "the server logged at debug");
    let secret_half = |credential: &str| secret_part(credential).to_owned();
    for (what, secret) in [
        ("password", password.to_owned()),
        ("invitee's password", invitee_password.to_owned()),
        ("wrong password", "not the password at all".to_owned()),
        ("API key", secret_half(&api_key)),
        ("second API key", secret_half(&second_key)),
        ("wrong API key", secret_half(&wrong_key)),
        ("session token", session.clone()),
        ("log-in token", login_token.clone()),
        ("access token", access_token.clone()),
        ("invite token", invite_token.clone()),
        ("share token", secret_half(&share_token)),
    ] {
        assert!(!log.contains(&secret), "the log holds the {what}");
    }
}

#[test]
fn the_health_command_passes_on_a_serving_server_and_fails_on_a_gone_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let health = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_sextant"))
            .args(["health", "--url", url])
            .output()
            .expect("running sextant health")
            .status
    };
    assert!(health(&server.base).success());
    let base = server.base.clone();
    assert!(terminate(&mut server).success());
    assert!(!health(&base).success(), "nothing serves there any more");
}
