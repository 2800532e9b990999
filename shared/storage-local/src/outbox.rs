//! The local mail adapter: each message becomes one RFC 5322 file in a directory, so
//! whoever runs `sextant serve` (or a test) can open the link it carries.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use mail_parser::MessageParser;
use tokio::io::AsyncWriteExt;
use ulid::{Generator, Ulid};

use sextant_storage::mail::{MailError, Mailer, Message};

const EXTENSION: &str = "eml";

#[derive(Debug)]
pub struct OutboxMailer {
    dir: PathBuf,
    from: String,
    /// Monotonic, so that messages written within one millisecond still sort in the
    /// order they were sent.
    ids: Mutex<Generator>,
}

impl OutboxMailer {
    /// Writes into `dir` (created on the first message), as sent by `from`.
    pub fn new(dir: PathBuf, from: impl Into<String>) -> Self {
        Self {
            dir,
            from: from.into(),
            ids: Mutex::new(Generator::new()),
        }
    }

    fn next_id(&self) -> Ulid {
        // The generator holds only the last id, which a panic elsewhere cannot leave
        // half-written.
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.generate()
            .unwrap_or_else(|overflow| overflow.commit_overflow_increment())
    }

    fn format(&self, id: Ulid, message: &Message) -> Result<Vec<u8>, MailError> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|err| MailError::Refused(format!("the sender is not an address: {err}")))?;
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|err| MailError::Refused(format!("the recipient is not an address: {err}")))?;
        let message_id = format!("<{id}@{}>", from.email.domain());
        let email = lettre::Message::builder()
            .from(from)
            .to(to)
            .subject(&message.subject)
            .message_id(Some(message_id))
            .multipart(
                MultiPart::alternative()
                    .singlepart(part(ContentType::TEXT_PLAIN, &message.text))
                    .singlepart(part(ContentType::TEXT_HTML, &message.html)),
            )
            .map_err(|err| MailError::Refused(err.to_string()))?;
        Ok(email.formatted())
    }

    /// Writes under a name readers skip and renames it into place, so a reader never
    /// sees half a message.
    async fn write(&self, name: &str, contents: &[u8]) -> std::io::Result<PathBuf> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let staged = self.dir.join(format!(".{name}.partial"));
        let target = self.dir.join(name);
        let result = async {
            let mut file = tokio::fs::File::create(&staged).await?;
            file.write_all(contents).await?;
            file.sync_all().await?;
            tokio::fs::rename(&staged, &target).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&staged).await;
        }
        result.map(|()| target)
    }
}

/// 8bit wherever RFC 2045 allows it, so that the file reads as the message does (a
/// link whole, on one line); lettre would quote-print any line over 76 characters.
/// Whatever 8bit cannot carry (lines over 998 bytes, CR, NUL) lettre encodes.
fn part(content_type: ContentType, body: &str) -> SinglePart {
    const MAX_LINE: usize = 998;
    let eight_bit =
        !body.contains(['\r', '\0']) && body.split('\n').all(|line| line.len() <= MAX_LINE);
    let body = if eight_bit {
        Body::dangerous_pre_encoded(
            body.replace('\n', "\r\n").into_bytes(),
            ContentTransferEncoding::EightBit,
        )
    } else {
        Body::new(body.to_owned())
    };
    SinglePart::builder().header(content_type).body(body)
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, message: &Message) -> Result<String, MailError> {
        let id = self.next_id();
        let contents = self.format(id, message)?;
        let name = format!("{id}.{EXTENSION}");
        let path = self
            .write(&name, &contents)
            .await
            .map_err(|err| MailError::Unavailable(format!("writing the outbox: {err}")))?;
        tracing::info!(path = %path.display(), "mail written to the outbox");
        Ok(name)
    }
}

/// One message of an outbox, as `read_outbox` decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The file's name: what `OutboxMailer::send` answered.
    pub id: String,
    pub path: PathBuf,
    pub to: String,
    pub subject: String,
    /// Line breaks as `\n`; mail carries them as CRLF.
    pub text: String,
    pub html: String,
}

impl OutboxMessage {
    /// The first link in the text to the page `page` that carries a token (as
    /// `/{page}?token=...` or `/{page}/{token}`), as a reader of the mail would open it.
    pub fn link_to(&self, page: &str) -> Option<&str> {
        let (in_query, in_path) = (format!("/{page}?token="), format!("/{page}/"));
        self.text.split_whitespace().find(|word| {
            word.starts_with("http") && (word.contains(&in_query) || word.contains(&in_path))
        })
    }
}

/// The newest link to `page` in the mail `OutboxMailer` wrote into `dir` for `to`.
pub fn newest_link(dir: &Path, to: &str, page: &str) -> std::io::Result<Option<String>> {
    Ok(read_outbox(dir)?
        .iter()
        .rev()
        .filter(|message| message.to == to)
        .find_map(|message| message.link_to(page).map(str::to_owned)))
}

/// The messages `OutboxMailer` wrote into `dir`, oldest first; none if it has written
/// nothing yet.
pub fn read_outbox(dir: &Path) -> std::io::Result<Vec<OutboxMessage>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        // Dot-names are messages still being written.
        if !name.starts_with('.') && name.ends_with(&format!(".{EXTENSION}")) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let raw = std::fs::read(&path)?;
            decode(&raw)
                .map(|(to, subject, text, html)| OutboxMessage {
                    id: name,
                    path: path.clone(),
                    to,
                    subject,
                    text,
                    html,
                })
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a message with text and HTML", path.display()),
                    )
                })
        })
        .collect()
}

fn decode(raw: &[u8]) -> Option<(String, String, String, String)> {
    let message = MessageParser::default().parse(raw)?;
    let to = message.to()?.first()?.address()?.to_owned();
    let subject = message.subject()?.to_owned();
    let text = message.body_text(0)?.replace("\r\n", "\n");
    let html = message.body_html(0)?.replace("\r\n", "\n");
    Some((to, subject, text, html))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = "https://example.com/verify?token=a-token-long-enough-that-quoted-printable-would-break-it-in-two";

    fn message(to: &str) -> Message {
        Message {
            to: to.into(),
            subject: "Welcome".into(),
            text: format!("Open {LINK}"),
            html: format!("<p><a href=\"{LINK}\">Open</a></p>"),
        }
    }

    #[tokio::test]
    async fn a_message_is_a_complete_mime_file_with_the_usual_headers() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let outbox = OutboxMailer::new(dir.path().join("outbox"), "Sextant <noreply@sextant.test>");
        let id = outbox.send(&message("me@example.com")).await.expect("sent");
        let raw = std::fs::read_to_string(dir.path().join("outbox").join(&id)).expect("file");
        let (headers, _) = raw.split_once("\r\n\r\n").expect("a header block");
        for header in [
            "From: Sextant <noreply@sextant.test>",
            "To: me@example.com",
            "Subject: Welcome",
            "Date: ",
            "MIME-Version: 1.0",
            "Content-Type: multipart/alternative",
        ] {
            assert!(headers.contains(header), "no {header:?} in\n{headers}");
        }
        assert!(raw.contains(&format!("\r\nOpen {LINK}\r\n")), "{raw}");
        let ulid = id.trim_end_matches(".eml");
        assert!(
            headers.contains(&format!("Message-ID: <{ulid}@sextant.test>")),
            "{headers}"
        );
    }

    #[tokio::test]
    async fn a_line_too_long_for_8bit_still_reads_back_exactly() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let outbox = OutboxMailer::new(dir.path().to_owned(), "noreply@sextant.test");
        let sent = Message {
            text: format!("Zoë: {}\nend\n", "x".repeat(2000)),
            ..message("me@example.com")
        };
        let id = outbox.send(&sent).await.expect("sent");
        let back = read_outbox(dir.path()).expect("read");
        assert_eq!(back.len(), 1);
        assert_eq!((&back[0].id, &back[0].text), (&id, &sent.text));
    }

    #[tokio::test]
    async fn nothing_but_finished_messages_is_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        assert_eq!(read_outbox(&dir.path().join("none")).expect("read"), []);
        std::fs::write(
            dir.path().join(".01J0000000000000000000000.eml.partial"),
            "From",
        )
        .expect("staged file");
        std::fs::write(dir.path().join("notes.txt"), "not mail").expect("other file");
        assert_eq!(read_outbox(dir.path()).expect("read"), []);
    }

    #[tokio::test]
    async fn a_recipient_or_sender_that_is_not_an_address_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let outbox = OutboxMailer::new(dir.path().to_owned(), "noreply@sextant.test");
        let err = outbox.send(&message("not an address")).await.unwrap_err();
        assert!(matches!(err, MailError::Refused(_)), "{err:?}");
        let outbox = OutboxMailer::new(dir.path().to_owned(), "nobody");
        let err = outbox.send(&message("me@example.com")).await.unwrap_err();
        assert!(matches!(err, MailError::Refused(_)), "{err:?}");
        assert_eq!(read_outbox(dir.path()).expect("read"), []);
    }

    #[tokio::test]
    async fn an_outbox_that_cannot_be_written_is_unavailable() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("a file");
        std::fs::write(&file, "").expect("file");
        let outbox = OutboxMailer::new(file, "noreply@sextant.test");
        let err = outbox.send(&message("me@example.com")).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }
}
