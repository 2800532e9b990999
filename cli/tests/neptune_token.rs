//! `sextant neptune-token` wraps an API key as the `NEPTUNE_API_TOKEN` Neptune's
//! client reads, without a server.

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

#[test]
fn the_neptune_token_names_the_server_and_carries_the_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .arg("neptune-token")
        .env("SEXTANT_URL", "https://sextant.example/")
        .env("SEXTANT_API_KEY", "sxt_key_example")
        .output()
        .expect("running sextant");
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("text");
    let decoded: Value =
        serde_json::from_slice(&STANDARD.decode(token.trim()).expect("base64")).expect("JSON");
    assert_eq!(
        decoded,
        json!({
            "api_address": "https://sextant.example",
            "api_url": "https://sextant.example",
            "api_key": "sxt_key_example",
        })
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .arg("neptune-token")
        .env_remove("SEXTANT_API_KEY")
        .output()
        .expect("running sextant");
    assert!(!missing.status.success(), "no key, no token");
}
