//! The storage ports: a key-value store shaped like the DynamoDB operations the domain
//! needs (`kv`) and an object store shaped like S3 (`blob`), the record helpers every
//! domain module stores through, and the clock. Adapters live in their own crates
//! (`sextant-storage-aws`, `sextant-storage-local`), so nothing above this crate sees
//! an AWS type or a file path.

pub mod blob;
pub mod clock;
pub mod kv;
pub mod records;

use std::sync::Arc;

pub use blob::{BlobKey, BlobStore};
pub use kv::KvStore;

/// The two ports a deployment runs on.
#[derive(Debug, Clone)]
pub struct Storage {
    pub kv: Arc<dyn KvStore>,
    pub blobs: Arc<dyn BlobStore>,
}
