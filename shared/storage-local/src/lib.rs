//! The local adapters of the storage ports, for `sextant serve` on one machine: an
//! embedded redb file for the key-value port and a directory for blobs, whose
//! presigned URLs the server itself answers (its routes call `LocalBlobs`).

pub mod blob;
pub mod embedded;

pub use blob::{LocalBlobs, UrlSigner};
pub use embedded::EmbeddedKv;
