//! The OpenAPI document: generated from the handlers' annotations, served at
//! `/openapi.json`, and checked in at `docs/openapi.json` so a change to the contract
//! shows in review. Regenerate the checked-in copy with
//! `SEXTANT_UPDATE_OPENAPI=1 cargo nextest run -p sextant-tests --test openapi`.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;
use sextant_edge::openapi;
use sextant_tests::TestApp;

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

#[test]
fn the_checked_in_document_is_the_one_the_handlers_generate() {
    let generated = openapi::to_json(&sextant_api::openapi());
    let path = checked_in();
    if std::env::var_os("SEXTANT_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("writing docs/openapi.json");
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == generated,
        "docs/openapi.json differs from what the handlers declare; review the change and \
         regenerate it with SEXTANT_UPDATE_OPENAPI=1 cargo nextest run -p sextant-tests --test openapi"
    );
}

#[tokio::test]
async fn the_server_publishes_the_document_without_a_credential() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request reaches the server");
    assert_eq!(response.status(), StatusCode::OK);
    let served: Value = response.json().await.expect("a JSON document");
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(checked_in()).expect("docs/openapi.json"))
            .expect("docs/openapi.json is JSON");
    assert_eq!(served, stored);
}

#[test]
fn every_operation_names_its_credential_and_documents_its_errors() {
    let document = serde_json::to_value(sextant_api::openapi()).expect("serializes");
    let mut operations = 0;
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        assert!(path.starts_with("/v1/"), "{path} is outside /v1");
        assert!(!path.contains("{*"), "{path} keeps axum's wildcard syntax");
        for (method, operation) in item.as_object().expect("path item") {
            operations += 1;
            let what = format!("{method} {path}");
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_owned()),
                "{what}: operationId {id:?} is taken"
            );
            assert!(
                operation["security"].is_array(),
                "{what} says nothing of its credential"
            );
            assert!(operation["tags"].is_array(), "{what} has no tag");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses
                    .keys()
                    .any(|status| status.starts_with('2') || status.starts_with('3')),
                "{what} documents no success"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{what} answers {status} in another shape"
                    );
                }
            }
        }
    }
    assert!(operations > 50, "only {operations} operations documented");
}
