//! `sextant serve --store aws`: replicas of one deployment over one DynamoDB table and
//! S3 bucket (moto's server on loopback), and `sextant admin create-table`, which
//! makes that table for a fresh installation. Replicas keep nothing another needs:
//! a team made on one is served by the other, a token one signed is good on the
//! other, and a replica killed at any moment comes back to the same data.

mod common;

use std::process::Command;

use base64::Engine;
use common::{Server, post, start_with_env};
use serde_json::{Value, json};
use sextant_storage_aws::AwsStorageConfig;
use sextant_tests::{fresh_aws_storage, moto_mail, unique, without_elapsed_storage};

/// What every replica of the deployment is started with.
fn replica_env(config: &AwsStorageConfig) -> Vec<(&'static str, String)> {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    vec![
        ("SEXTANT_STORE", "aws".to_owned()),
        ("SEXTANT_TABLE", config.table.clone()),
        ("SEXTANT_BUCKET", config.bucket.clone()),
        (
            "SEXTANT_AWS_ENDPOINT_URL",
            config.endpoint_url.clone().expect("the emulator"),
        ),
        ("SEXTANT_JWT_KEYS", format!("replicas:{key}")),
    ]
}

fn replica(config: &AwsStorageConfig) -> (Server, tempfile::TempDir) {
    replica_with(config, &[])
}

fn replica_with(
    config: &AwsStorageConfig,
    more: &[(&'static str, String)],
) -> (Server, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("a data directory");
    let mut env = replica_env(config);
    env.extend_from_slice(more);
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    (start_with_env(data.path(), &env), data)
}

async fn get(client: &reqwest::Client, url: String, credential: &str) -> (u16, Value) {
    let response = client
        .get(url)
        .bearer_auth(credential)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn log(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    run: &str,
    batch: &str,
    steps: std::ops::Range<i64>,
) {
    let steps: Vec<i64> = steps.collect();
    let values: Vec<f64> = steps
        .iter()
        .map(|&step| 1.0 / (1.0 + step as f64))
        .collect();
    let (status, body) = post(
        client,
        format!("{}/v1/runs/{run}/log", server.base),
        Some(key),
        json!({"batch_id": batch, "series": {"loss": {"steps": steps, "values": values}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
async fn two_replicas_on_one_table_serve_one_deployment_and_a_killed_one_comes_back_to_it() {
    let (config, _, _) = fresh_aws_storage().await;
    let client = reqwest::Client::new();
    let (mut a, _a_data) = replica(&config);
    let (b, _b_data) = replica(&config);

    // A team signs up on A; its key and its session work on B.
    let (status, team) = post(
        &client,
        format!("{}/v1/signup", a.base),
        None,
        json!({"team": "Replicated", "email": format!("{}@example.com", unique("replica")), "password": "a long enough password"}),
    )
    .await;
    assert_eq!(status, 201, "{team}");
    let key = team["api_key"].as_str().unwrap().to_owned();
    let session = team["token"].as_str().unwrap().to_owned();
    let (status, me) = get(&client, format!("{}/v1/me", b.base), &session).await;
    assert_eq!(status, 200, "a session A signed is good on B: {me}");
    let (status, _) = post(
        &client,
        format!("{}/v1/projects", b.base),
        Some(&key),
        json!({"name": "shared"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, run) = post(
        &client,
        format!("{}/v1/projects/shared/runs", a.base),
        Some(&key),
        json!({"name": "both"}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let run = run["id"].as_str().unwrap().to_owned();

    // Each replica takes batches of the same run; one sent to both is stored once.
    log(&client, &a, &key, &run, "first", 0..100).await;
    log(&client, &b, &key, &run, "second", 100..200).await;
    log(&client, &b, &key, &run, "first", 0..100).await;

    // A is killed without warning; B serves on, and takes more.
    a.child.kill().expect("killing replica A");
    a.child.wait().expect("replica A is gone");
    log(&client, &b, &key, &run, "third", 200..300).await;
    let (a_again, _a_again_data) = replica(&config);

    let read = |server: &Server, path: String| {
        let url = format!("{}{path}", server.base);
        get(&client, url, &key)
    };
    let (status, from_a) = read(&a_again, format!("/v1/runs/{run}")).await;
    assert_eq!(status, 200, "{from_a}");
    let (_, from_b) = read(&b, format!("/v1/runs/{run}")).await;
    assert_eq!(
        without_elapsed_storage(from_a),
        without_elapsed_storage(from_b)
    );
    let (_, table_a) = read(&a_again, "/v1/projects/shared/runs".to_owned()).await;
    let (_, table_b) = read(&b, "/v1/projects/shared/runs".to_owned()).await;
    let rows = |table: Value| -> Vec<Value> {
        let runs = table["runs"].as_array().expect("runs").clone();
        runs.into_iter().map(without_elapsed_storage).collect()
    };
    assert_eq!(
        rows(table_a),
        rows(table_b),
        "the run table reads the same from either"
    );
    let (_, points) = read(&a_again, format!("/v1/runs/{run}/series/loss")).await;
    let steps: Vec<i64> = points["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| step.as_i64().unwrap())
        .collect();
    assert_eq!(
        steps,
        (0..300).collect::<Vec<_>>(),
        "every point stored once"
    );
    let (_, usage) = read(&b, "/v1/usage".to_owned()).await;
    assert_eq!(usage["points"], 300, "each point counted once: {usage}");

    // An artifact registered on one replica, uploaded through the presigned URL it
    // gave (path-style, on the S3 endpoint that is not AWS's), completed on the other
    // and downloaded from the first.
    let bytes = b"weights of a model that ran on two replicas".to_vec();
    let (status, plan) = post(
        &client,
        format!("{}/v1/runs/{run}/artifacts", a_again.base),
        Some(&key),
        json!({"path": "model.bin", "size": bytes.len(), "sha256": sextant_tests::sha256_hex(&bytes)}),
    )
    .await;
    assert_eq!(status, 201, "{plan}");
    let upload = plan["upload"]["url"].as_str().expect("a single upload");
    let endpoint = config.endpoint_url.as_deref().unwrap();
    assert!(
        upload.starts_with(&format!("{endpoint}/{}/", config.bucket)),
        "a path-style URL on the S3 endpoint: {upload}"
    );
    let put = client
        .put(upload)
        .header(reqwest::header::CONTENT_LENGTH, bytes.len())
        .body(bytes.clone())
        .send()
        .await
        .expect("the upload reaches S3");
    assert!(put.status().is_success(), "{}", put.status());
    let (status, done) = post(
        &client,
        format!("{}/v1/runs/{run}/artifacts/complete", b.base),
        Some(&key),
        json!({"path": "model.bin"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let downloaded = client
        .get(format!(
            "{}/v1/runs/{run}/artifacts/model.bin",
            a_again.base
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("the download");
    assert_eq!(downloaded.status(), 200);
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), bytes);
}

fn create_table(table: &str, endpoint: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args([
            "admin",
            "create-table",
            "--table",
            table,
            "--endpoint-url",
            endpoint,
        ])
        .output()
        .expect("running sextant admin create-table")
}

#[tokio::test]
#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
async fn create_table_makes_the_table_once_and_leaves_one_that_differs_alone() {
    let endpoint = sextant_tests::aws_endpoint();
    let table = unique("fresh");
    let made = create_table(&table, &endpoint);
    assert!(made.status.success(), "{made:?}");
    assert_eq!(
        String::from_utf8_lossy(&made.stdout).trim(),
        format!("created the table {table}")
    );
    // Run again, it finds the table as it made it, expiry included, and changes nothing.
    let again = create_table(&table, &endpoint);
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("is there already"));

    // A table made without expiry (as the tests' tables are) is refused, untouched.
    let (config, _, _) = fresh_aws_storage().await;
    let refused = create_table(&config.table, &endpoint);
    assert!(!refused.status.success(), "{refused:?}");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("differs") && why.contains("`ttl`"), "{why}");
    let still = create_table(&config.table, &endpoint);
    assert!(!still.status.success(), "refusing changed nothing");
}

#[tokio::test]
#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
async fn a_replica_with_a_sender_mails_through_ses_not_an_outbox_of_its_own() {
    let (config, _, _) = fresh_aws_storage().await;
    let from = format!("{}@sextant.test", unique("replica-sender"));
    moto_mail::verify_sender(&from).await;
    let (server, data) = replica_with(&config, &[("SEXTANT_MAIL_FROM", from.clone())]);
    let email = format!("{}@example.com", unique("mailed"));
    let (status, body) = post(
        &reqwest::Client::new(),
        format!("{}/v1/signup", server.base),
        None,
        json!({"team": "Mailed", "email": email, "password": "a long enough password"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let sent = moto_mail::sent_from(config.endpoint_url.as_deref().unwrap(), &from).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to, email);
    assert!(sent[0].html.contains("/verify?token="), "{}", sent[0].html);
    assert!(
        !data.path().join("outbox").exists(),
        "no outbox of the replica's own"
    );
}
