//! `sextant meter` runs the hourly roll-up on a data directory no server holds open.

mod common;

use std::process::Command;

use common::{post, start, team_with_run, terminate};
use serde_json::json;

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
    let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::HOUR;
    let at = in_an_hour
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
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
