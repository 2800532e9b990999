//! One conformance suite for the mail port, run against both adapters: the local
//! outbox, and SES as moto emulates it, each read back the way a person would find the
//! message (the outbox's files; moto's record of what it was asked to send).

use std::sync::Arc;

use cases::*;
use sextant_storage::mail::{MailError, Mailer, Message};
use sextant_storage_aws::AwsStorageConfig;
use sextant_storage_local::{OutboxMailer, read_outbox};
use sextant_tests::{aws_cases, aws_endpoint, cases, moto_mail, unique};
use tempfile::TempDir;

/// A message as the service that took it reports it.
#[derive(Debug)]
struct Sent {
    id: String,
    to: String,
    subject: String,
    /// None where the service keeps no text body (moto keeps only the HTML of a
    /// simple message).
    text: Option<String>,
    html: String,
}

enum Record {
    Outbox(TempDir),
    Moto { endpoint: String, from: String },
}

/// A mailer under test, and where to read what it sent.
struct Fixture {
    mailer: Arc<dyn Mailer>,
    record: Record,
}

async fn outbox() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mailer = OutboxMailer::new(dir.path().join("outbox"), "Sextant <noreply@sextant.test>");
    Fixture {
        mailer: Arc::new(mailer),
        record: Record::Outbox(dir),
    }
}

/// An adapter on the emulator sending from `from`, which the test verifies or not.
async fn ses_mailer(from: &str) -> Arc<dyn Mailer> {
    // Credentials and region come from the environment scripts/test.sh sets; the
    // endpoint keeps every request on loopback. Mail needs no table or bucket.
    let config = AwsStorageConfig {
        table: unique("unused"),
        bucket: unique("unused"),
        endpoint_url: Some(aws_endpoint()),
    };
    Arc::new(config.mailer(from.to_owned()).await)
}

/// A sender of its own for each test, verified, so that reading back finds only the
/// test's own messages among everything the emulator was sent.
async fn ses() -> Fixture {
    let from = format!("{}@sextant.test", unique("sender"));
    moto_mail::verify_sender(&from).await;
    Fixture {
        mailer: ses_mailer(&from).await,
        record: Record::Moto {
            endpoint: aws_endpoint(),
            from,
        },
    }
}

impl Fixture {
    /// What the service took, oldest first.
    async fn sent(&self) -> Vec<Sent> {
        match &self.record {
            Record::Outbox(dir) => read_outbox(&dir.path().join("outbox"))
                .expect("reading the outbox")
                .into_iter()
                .map(|message| Sent {
                    id: message.id,
                    to: message.to,
                    subject: message.subject,
                    text: Some(message.text),
                    html: message.html,
                })
                .collect(),
            Record::Moto { endpoint, from } => moto_sent(endpoint, from).await,
        }
    }
}

async fn moto_sent(endpoint: &str, from: &str) -> Vec<Sent> {
    moto_mail::sent_from(endpoint, from)
        .await
        .into_iter()
        .map(|mail| Sent {
            id: mail.id,
            to: mail.to,
            subject: mail.subject,
            text: None,
            html: mail.html,
        })
        .collect()
}

fn welcome(to: &str) -> Message {
    let link = "http://127.0.0.1:8080/verify?token=Zm9vYmFyLWJhei1xdXV4LXZlcnktbG9uZy10b2tlbi10aGF0LWNyb3NzZXMtdGhlLTc2LWNoYXJhY3Rlci1saW5lLWxpbWl0";
    Message {
        to: to.to_owned(),
        subject: "Vérifiez votre adresse — équipe Ünïcode 🐋".to_owned(),
        text: format!(
            "Bonjour Zoë,\n\nOuvrez ce lien pour vérifier votre adresse :\n{link}\n\n— l'équipe Ünïcode\n"
        ),
        html: format!(
            "<p>Bonjour Zoë,</p>\n<p><a href=\"{link}\">Vérifiez votre adresse</a> — l'équipe Ünïcode</p>\n"
        ),
    }
}

mod cases {
    use super::*;

    pub async fn a_message_with_accents_comes_back_exactly_as_sent(f: Fixture) {
        let message = welcome("zoe@example.com");
        let id = f.mailer.send(&message).await.expect("sent");
        let sent = f.sent().await;
        assert_eq!(sent.len(), 1, "{sent:?}");
        let sent = &sent[0];
        assert_eq!(sent.id, id);
        assert_eq!(sent.to, message.to);
        assert_eq!(sent.subject, message.subject);
        if let Some(text) = &sent.text {
            assert_eq!(text, &message.text);
        }
        assert_eq!(sent.html, message.html);
    }

    pub async fn messages_come_back_in_the_order_they_were_sent_under_distinct_ids(f: Fixture) {
        let messages: Vec<Message> = (0..5)
            .map(|n| Message {
                subject: format!("Message n° {n}"),
                ..welcome(&format!("person{n}@example.com"))
            })
            .collect();
        let mut ids = Vec::new();
        for message in &messages {
            ids.push(f.mailer.send(message).await.expect("sent"));
        }
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        let sent = f.sent().await;
        assert_eq!(
            sent.iter().map(|s| &s.id).collect::<Vec<_>>(),
            ids.iter().collect::<Vec<_>>()
        );
        for (sent, message) in sent.iter().zip(&messages) {
            assert_eq!((&sent.to, &sent.subject), (&message.to, &message.subject));
        }
    }

    pub async fn a_recipient_that_is_not_an_address_is_refused(f: Fixture) {
        let err = f
            .mailer
            .send(&welcome("not an address"))
            .await
            .expect_err("refused");
        assert!(matches!(err, MailError::Refused(_)), "{err:?}");
        assert!(!err.is_retryable());
        assert!(f.sent().await.is_empty());
    }

    pub async fn a_sender_ses_has_not_verified_is_refused(f: Fixture) {
        let Record::Moto { endpoint, .. } = &f.record else {
            unreachable!("SES only")
        };
        let stranger = format!("{}@sextant.test", unique("stranger"));
        let err = ses_mailer(&stranger)
            .await
            .send(&welcome("zoe@example.com"))
            .await
            .expect_err("refused");
        assert!(matches!(err, MailError::Refused(_)), "{err:?}");
        assert!(moto_sent(endpoint, &stranger).await.is_empty());
    }
}

/// Runs every case against both adapters, each as its own test.
macro_rules! both {
    ($($case:ident),+ $(,)?) => {
        cases!(outbox, super::outbox; $($case),+);
        aws_cases!(ses, super::ses; $($case),+);
    };
}

both!(
    a_message_with_accents_comes_back_exactly_as_sent,
    messages_come_back_in_the_order_they_were_sent_under_distinct_ids,
    a_recipient_that_is_not_an_address_is_refused,
);

aws_cases!(ses_only, super::ses; a_sender_ses_has_not_verified_is_refused);
