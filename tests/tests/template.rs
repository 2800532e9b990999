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

fn template_blocks() -> BTreeMap<String, String> {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml"),
    )
    .expect("the SAM template");
    blocks(&template)
}

#[test]
fn only_the_functions_that_sign_or_check_credentials_hold_the_signing_keys() {
    let blocks = template_blocks();
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

#[test]
fn only_the_api_and_metering_functions_send_mail_and_only_as_the_mail_identity() {
    let blocks = template_blocks();
    let senders: Vec<&str> = blocks
        .iter()
        .filter(|(name, text)| name.ends_with("Function") && text.contains("ses:Send"))
        .map(|(name, _)| name.as_str())
        .collect();
    // The metering function mails budget letters.
    assert_eq!(senders, ["ApiFunction", "MeteringFunction"]);
    for sender in senders {
        let block = &blocks[sender];
        assert!(
            block.contains("SEXTANT_MAIL_FROM: !Ref MailFrom"),
            "{block}"
        );
        let grant: Vec<&str> = block
            .lines()
            .skip_while(|line| !line.contains("Action: ses:SendEmail"))
            .take(5)
            .collect();
        assert_eq!(grant.len(), 5, "no ses:SendEmail grant in\n{block}");
        assert!(!block.contains("ses:*") && !block.contains("ses:SendRawEmail"));
        for identity in ["${MailIdentity}\"", "${MailFrom}\""] {
            let arn = format!(
                "arn:${{AWS::Partition}}:ses:${{AWS::Region}}:${{AWS::AccountId}}:identity/{identity}"
            );
            assert!(grant.iter().any(|line| line.ends_with(&arn)), "{grant:#?}");
        }
    }
}

#[test]
fn only_the_metering_function_holds_the_report_webhooks_secret() {
    let blocks = template_blocks();
    let holders: Vec<&str> = blocks
        .iter()
        .filter(|(_, text)| text.contains("SEXTANT_REPORT_WEBHOOK_SECRET"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(holders, ["MeteringFunction"]);
    let parameters = &blocks["Parameters"];
    let secret: Vec<&str> = parameters
        .lines()
        .skip_while(|line| line.trim() != "ReportWebhookSecret:")
        .take_while(|line| !line.trim().ends_with(">"))
        .collect();
    assert!(secret.contains(&"    NoEcho: true"), "{secret:?}");
}
