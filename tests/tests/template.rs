//! Rules the SAM template must keep that `sam validate --lint` cannot know.

use std::collections::BTreeMap;

/// The template's top-level sections and resources (`Globals`, `ApiFunction`, ...),
/// each with its text. Resources are the two-space-indented keys under `Resources:`.
fn blocks(template: &str) -> BTreeMap<String, String> {
    let mut blocks: BTreeMap<String, String> = BTreeMap::new();
    let (mut section, mut current) = (String::new(), String::new());
    for line in template.lines() {
        let indent = line.len() - line.trim_start().len();
        let key = line
            .trim()
            .strip_suffix(':')
            .filter(|key| !key.contains(' '));
        match (indent, key) {
            (0, Some(key)) if !line.is_empty() => {
                section = key.to_owned();
                current = key.to_owned();
            }
            (2, Some(key)) if section == "Resources" => current = key.to_owned(),
            _ => {}
        }
        let text = blocks.entry(current.clone()).or_default();
        text.push_str(line);
        text.push('\n');
    }
    blocks
}

#[test]
fn only_the_functions_that_sign_or_check_credentials_hold_the_signing_keys() {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml"),
    )
    .expect("the SAM template");
    let blocks = blocks(&template);
    for expected in [
        "Globals",
        "ApiFunction",
        "IngestFunction",
        "MeteringFunction",
    ] {
        assert!(
            blocks.contains_key(expected),
            "no {expected} in {:?}",
            blocks.keys()
        );
    }
    let holders: Vec<&str> = blocks
        .iter()
        .filter(|(_, text)| text.contains("SEXTANT_JWT_KEYS"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(holders, ["ApiFunction", "IngestFunction"]);
}
