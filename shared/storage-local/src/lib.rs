//! The local adapters of the storage ports, for `sextant serve` on one machine: an
//! embedded redb file for the key-value port, a directory for blobs, whose presigned
//! URLs the server itself answers (its routes call `LocalBlobs`), and an outbox
//! directory for mail.

pub mod blob;
pub mod embedded;
pub mod outbox;

pub use blob::{LocalBlobs, UrlSigner};
pub use embedded::EmbeddedKv;
pub use outbox::{OutboxMailer, OutboxMessage, newest_link, read_outbox};
