//! The storage ports: a key-value store shaped like the DynamoDB operations the domain
//! needs (`kv`) and an object store shaped like S3 (`blob`), the record helpers every
//! domain module stores through, and the clock. Adapters live in their own crates
//! (`sextant-storage-aws`, `sextant-storage-local`), so nothing above this crate sees
//! an AWS type or a file path.

pub mod blob;
pub mod clock;
pub mod kv;
pub mod mail;
pub mod records;

use std::sync::Arc;

pub use blob::{BlobKey, BlobStore};
use clock::{Clock, SystemClock};
pub use kv::KvStore;
pub use mail::Mailer;

/// The two ports a deployment runs on.
#[derive(Debug, Clone)]
pub struct Storage {
    pub kv: Arc<dyn KvStore>,
    pub blobs: Arc<dyn BlobStore>,
}

/// What domain code works with: the two ports, and the clock it reads the time from
/// (a manual one in tests that simulate days).
#[derive(Debug, Clone)]
pub struct Store {
    pub kv: Arc<dyn KvStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub clock: Arc<dyn Clock>,
}

impl Store {
    /// The ports on the system clock.
    pub fn new(storage: Storage) -> Self {
        Self {
            kv: storage.kv,
            blobs: storage.blobs,
            clock: Arc::new(SystemClock),
        }
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }
}
