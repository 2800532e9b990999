//! `sextant meter` runs the hourly roll-up on a data directory no server holds open.

mod common;

use std::process::Command;

use common::{post, start, start_with_env, team_with_run, terminate};
use serde_json::json;
use sha2::Digest;

fn sextant(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(args)
        .env_remove("SEXTANT_OPERATOR_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("running sextant")
}

fn an_hour_from_now() -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::HOUR)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn meter(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sextant"))
        .arg("meter")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("running sextant meter")
}

#[tokio::test]
async fn meter_rolls_up_a_stopped_servers_hours_and_refuses_a_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let (key, run) = team_with_run(&server, "m").await;
    let client = reqwest::Client::new();
    let (status, logged) = post(
        &client,
        format!("{}/v1/runs/{run}/log", server.base),
        Some(&key),
        json!({"batch_id": "b", "series": {"loss": {"steps": [1, 2], "values": [0.5, 0.25]}}}),
    )
    .await;
    assert_eq!(status, 200, "{logged}");

    let held = meter(dir.path(), &["--at", "2026-11-05T13:00:00Z"]);
    assert!(!held.status.success(), "the running server holds the store");
    assert!(String::from_utf8_lossy(&held.stderr).contains("another `sextant serve`"));

    assert!(terminate(&mut server).success());
    let at = an_hour_from_now();
    let first = meter(dir.path(), &["--through", &at]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&first.stdout).lines().count(), 1);
    // Nothing is left to roll up through the same time.
    let again = meter(dir.path(), &["--through", &at]);
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout).lines().count(), 0);
    let bad = meter(dir.path(), &["--at", "yesterday"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
}

#[tokio::test]
async fn the_operator_lists_every_tenants_month_from_the_store_or_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let token = "operator-token-for-tests";
    let token_hash = hex::encode(sha2::Sha256::digest(token));
    let server_env = [("SEXTANT_OPERATOR_TOKEN_SHA256", token_hash.as_str())];
    let mut server = start_with_env(dir.path(), &server_env);
    let client = reqwest::Client::new();
    for (team, points) in [("ants", 2), ("bees", 3)] {
        let (key, run) = team_with_run(&server, team).await;
        let steps: Vec<i64> = (0..points).collect();
        let (status, logged) = post(
            &client,
            format!("{}/v1/runs/{run}/log", server.base),
            Some(&key),
            json!({"batch_id": "b", "series": {"loss": {"steps": steps, "values": vec![0.5; steps.len()]}}}),
        )
        .await;
        assert_eq!(status, 200, "{logged}");
    }
    assert!(terminate(&mut server).success());
    assert!(
        meter(dir.path(), &["--through", &an_hour_from_now()])
            .status
            .success()
    );

    let month = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]-[month]"))
        .unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let offline = sextant(
        &[
            "admin",
            "usage",
            "--month",
            &month,
            "--data-dir",
            data_dir,
            "--json",
        ],
        &[],
    );
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let listing: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    let mut points: Vec<(String, u64)> = listing["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["team"].as_str().unwrap().to_owned(),
                t["points"].as_u64().unwrap(),
            )
        })
        .collect();
    points.sort();
    assert_eq!(points, [("ants".to_owned(), 2), ("bees".to_owned(), 3)]);
    let table = sextant(
        &["admin", "usage", "--month", &month, "--data-dir", data_dir],
        &[],
    );
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.starts_with("TENANT"), "{table}");
    assert!(
        table
            .lines()
            .any(|line| line.contains("bees") && line.contains("draft")),
        "{table}"
    );

    // The month's reports, with their deliveries: none due while the month is open.
    let reports = |format: &str| {
        sextant(
            &[
                "admin",
                "reports",
                "--month",
                &month,
                "--data-dir",
                data_dir,
                format,
            ],
            &[],
        )
    };
    let csv = reports("--csv");
    assert!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let csv = String::from_utf8_lossy(&csv.stdout).into_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("tenant_id,team,status,total,currency,delivery"));
    assert!(
        lines[1..]
            .iter()
            .all(|line| line.contains(",draft,0.00,USD,,0,,,")),
        "{csv}"
    );
    let offline_reports: serde_json::Value =
        serde_json::from_slice(&reports("--json").stdout).unwrap();
    assert_eq!(offline_reports["tenants"].as_array().unwrap().len(), 2);
    assert!(
        offline_reports["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["delivery"].is_null() && t["attempts"] == 0)
    );

    let server = start_with_env(dir.path(), &server_env);
    let ask_reports = sextant(
        &["admin", "reports", "--month", &month, "--json"],
        &[
            ("SEXTANT_URL", server.base.as_str()),
            ("SEXTANT_OPERATOR_TOKEN", token),
        ],
    );
    assert!(
        ask_reports.status.success(),
        "{}",
        String::from_utf8_lossy(&ask_reports.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&ask_reports.stdout).unwrap(),
        offline_reports
    );
    let ask = |token: &str| {
        sextant(
            &["admin", "usage", "--month", &month, "--json"],
            &[
                ("SEXTANT_URL", server.base.as_str()),
                ("SEXTANT_OPERATOR_TOKEN", token),
            ],
        )
    };
    let online = ask(token);
    assert!(
        online.status.success(),
        "{}",
        String::from_utf8_lossy(&online.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&online.stdout).unwrap(),
        listing
    );
    let refused = ask("not-the-token");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("operator_only"));
}

/// `sextant meter` given a webhook (by its environment variables) POSTs each report
/// the run closes, signed, once: a second run sends nothing, and the operator's listing
/// shows it delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meter_delivers_each_report_it_closes_to_the_webhook_once() {
    use sextant_domain::calendar::BillingMonth;
    use sextant_domain::report_delivery::{
        IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, WebhookSecret,
    };
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let (key, run) = team_with_run(&server, "acme").await;
    let (status, logged) = post(
        &reqwest::Client::new(),
        format!("{}/v1/runs/{run}/log", server.base),
        Some(&key),
        json!({"batch_id": "b", "series": {"loss": {"steps": [1], "values": [0.5]}}}),
    )
    .await;
    assert_eq!(status, 200, "{logged}");
    assert!(terminate(&mut server).success());

    // A receiver on loopback that keeps each POST's key, signature and body.
    type Posts = Arc<Mutex<Vec<(String, String, axum::body::Bytes)>>>;
    let posts: Posts = Posts::default();
    let receiver = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(posts): axum::extract::State<Posts>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    posts.lock().unwrap().push((
                        header(IDEMPOTENCY_KEY_HEADER),
                        header(SIGNATURE_HEADER),
                        body,
                    ));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    // Through the hour after this month ends: the month closes.
    let month = BillingMonth::of(time::OffsetDateTime::now_utc());
    let through = (month.end() + time::Duration::HOUR)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let secret = "whsec_meter_test_secret";
    let data_dir = dir.path().to_owned();
    let meter_with_webhook = move || {
        let (data_dir, through, url) = (data_dir.clone(), through.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_sextant"))
                .args(["meter", "--through", &through, "--data-dir"])
                .arg(&data_dir)
                .env("SEXTANT_REPORT_WEBHOOK_URL", &url)
                .env("SEXTANT_REPORT_WEBHOOK_SECRET", secret)
                .output()
                .expect("running sextant meter")
        })
    };
    let first = meter_with_webhook().await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = meter_with_webhook().await.unwrap();
    assert!(again.status.success());

    let posts = posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "one report, sent once");
    let (id, signature, body) = &posts[0];
    let envelope: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(envelope["id"], id.as_str());
    assert_eq!(envelope["type"], "report.closed");
    assert_eq!(envelope["report"]["status"], "closed");
    let tenant = envelope["report"]["tenant_id"].as_str().unwrap();
    assert_eq!(*id, format!("report-{tenant}-{month}"));
    let t: i64 = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|t| t.parse().ok())
        .expect("a timestamp");
    assert_eq!(
        *signature,
        WebhookSecret::new(secret).unwrap().signature(t, body)
    );

    let listing = sextant(
        &[
            "admin",
            "reports",
            "--month",
            &month.to_string(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    let table = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        table.lines().any(|line| line.contains("acme")
            && line.contains("closed")
            && line.contains("delivered")),
        "{table}"
    );
}
