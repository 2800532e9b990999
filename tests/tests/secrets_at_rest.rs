//! No API key, password or invite token is stored in plain text in DynamoDB.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use sextant_cli::Backend;
use sextant_tests::{TestApp, fresh_aws_storage, text};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn the_table_holds_no_secret_in_plain_text() {
    let (config, _, _) = fresh_aws_storage().await;
    let app = TestApp::spawn_with(Backend::Aws(config.clone())).await;
    let team = app.signup().await;
    let (_, key) = app
        .post("/v1/api-keys", &team.api_key, json!({"name": "second"}))
        .await;
    let (_, invite) = app
        .post(
            "/v1/invites",
            &team.api_key,
            json!({"email": "someone-new@example.com"}),
        )
        .await;
    let secrets = [
        team.api_key.clone(),
        team.api_key[team.api_key.len() - 43..].to_owned(),
        text(&key, "secret"),
        team.password.clone(),
        text(&invite, "token"),
    ];

    let items = sextant_tests::scan_table(&config).await;
    assert!(
        items.len() >= 8,
        "expected the team's items, found {}",
        items.len()
    );
    for item in &items {
        for (name, value) in item {
            let bytes: Vec<u8> = match value {
                AttributeValue::S(s) | AttributeValue::N(s) => s.clone().into_bytes(),
                AttributeValue::B(b) => b.as_ref().to_vec(),
                _ => continue,
            };
            for secret in &secrets {
                assert!(!contains(&bytes, secret), "attribute {name} holds a secret");
            }
        }
    }
}
