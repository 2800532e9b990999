//! The SES mail adapter (SESv2 `SendEmail`, simple content). AWS SDK types stay in
//! this file.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent};

use sextant_storage::mail::{MailError, Mailer, Message};

#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
    from: String,
}

impl SesMailer {
    /// `from` is the sender: an address of an identity SES has verified (the address
    /// itself or its domain).
    pub fn new(sdk: &aws_config::SdkConfig, from: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            from: from.into(),
        }
    }
}

fn utf8(data: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|err| MailError::Refused(err.to_string()))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, message: &Message) -> Result<String, MailError> {
        let simple = aws_sdk_sesv2::types::Message::builder()
            .subject(utf8(&message.subject)?)
            .body(
                Body::builder()
                    .text(utf8(&message.text)?)
                    .html(utf8(&message.html)?)
                    .build(),
            )
            .build();
        let output = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&message.to).build())
            .content(EmailContent::builder().simple(simple).build())
            .send()
            .await
            .map_err(map_error)?;
        // SES always names what it accepted; failing here would only make the caller
        // send the same message twice.
        let id = output.message_id().unwrap_or_default().to_owned();
        tracing::info!(message_id = %id, "mail handed to SES");
        Ok(id)
    }
}

/// Only the error's code and status go into the error: SES's messages can name the
/// recipient (a sandbox account refusing an unverified address), and callers log it.
fn map_error(err: SdkError<SendEmailError, HttpResponse>) -> MailError {
    let SdkError::ServiceError(service) = &err else {
        return match err {
            // The request could not be built: sending it again builds it the same way.
            SdkError::ConstructionFailure(_) => {
                MailError::Refused(DisplayErrorContext(&err).to_string())
            }
            // Timeouts, connection failures, responses that could not be read.
            _ => MailError::Unavailable(DisplayErrorContext(&err).to_string()),
        };
    };
    let status = service.raw().status().as_u16();
    let code = service.err().code().unwrap_or("no error code");
    let detail = format!("{code} (HTTP {status})");
    match code {
        // A paused account may be resumed; the message itself was fine.
        "TooManyRequestsException"
        | "LimitExceededException"
        | "SendingPausedException"
        | "Throttling"
        | "ThrottlingException" => MailError::Unavailable(detail),
        "MessageRejected"
        | "MailFromDomainNotVerifiedException"
        | "BadRequestException"
        | "NotFoundException"
        | "AccountSuspendedException" => MailError::Refused(detail),
        _ if status == 429 || status >= 500 => MailError::Unavailable(detail),
        _ if (400..500).contains(&status) => MailError::Refused(detail),
        _ => MailError::Unavailable(detail),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sesv2::error::ErrorMetadata;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn service_error(status: u16, code: &str) -> SdkError<SendEmailError, HttpResponse> {
        let raw = HttpResponse::new(
            status.try_into().unwrap_or_else(|_| unreachable!()),
            SdkBody::empty(),
        );
        SdkError::service_error(
            SendEmailError::generic(
                ErrorMetadata::builder()
                    .code(code)
                    .message("Email address is not verified: someone@example.com")
                    .build(),
            ),
            raw,
        )
    }

    #[test]
    fn throttling_and_server_failures_are_worth_retrying() {
        for (status, code) in [
            (429, "TooManyRequestsException"),
            (400, "Throttling"),
            (400, "LimitExceededException"),
            (400, "SendingPausedException"),
            (500, "InternalFailure"),
            (503, "ServiceUnavailable"),
        ] {
            let err = map_error(service_error(status, code));
            assert!(err.is_retryable(), "{code}: {err:?}");
        }
    }

    #[test]
    fn rejected_messages_and_unknown_senders_are_refused() {
        for (status, code) in [
            (400, "MessageRejected"),
            (400, "MailFromDomainNotVerifiedException"),
            (400, "BadRequestException"),
            (404, "NotFoundException"),
            (400, "AccountSuspendedException"),
            (400, "InvalidParameterValue"),
        ] {
            let err = map_error(service_error(status, code));
            assert!(matches!(err, MailError::Refused(_)), "{code}: {err:?}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_service_is_worth_retrying() {
        use aws_sdk_sesv2::config::{
            BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
        };
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            // Nothing listens on port 1 of loopback.
            .endpoint_url("http://127.0.0.1:1")
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::for_tests()))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let message = Message {
            to: "someone@example.com".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        };
        let err = SesMailer::new(&sdk, "noreply@example.com")
            .send(&message)
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }

    #[test]
    fn errors_name_the_code_but_never_the_address_ses_mentions() {
        let err = map_error(service_error(400, "MessageRejected")).to_string();
        assert!(err.contains("MessageRejected"), "{err}");
        assert!(!err.contains('@'), "{err}");
    }
}
