//! The mail port: hands a message to whatever delivers mail. Amazon SES on AWS
//! (`sextant-storage-aws`), a local outbox directory on `sextant serve`
//! (`sextant-storage-local`), so a newcomer can open the link a message carries.

use async_trait::async_trait;

/// One message to one recipient: plain text, and the same as simple HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The service could not take it now (throttled, unreachable, failed): worth trying
    /// again.
    #[error("mail service unavailable: {0}")]
    Unavailable(String),
    /// The service will not take it as sent (an address it refuses, a sender it does not
    /// know): trying again changes nothing.
    #[error("mail refused: {0}")]
    Refused(String),
}

impl MailError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, MailError::Unavailable(_))
    }
}

#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Hands `message` over for delivery; answers the id the service gave it (the
    /// outbox: the file's name).
    async fn send(&self, message: &Message) -> Result<String, MailError>;
}
