//! The blob port: objects addressed by key, read as streams, and presigned URLs so
//! large bytes travel between clients and storage without passing through a function.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use time::OffsetDateTime;

/// S3's longest object key.
pub const MAX_BLOB_KEY_BYTES: usize = 1024;

/// A validated object key: relative, `/`-separated, no empty, `.` or `..` segments,
/// no control characters. Both adapters can store it verbatim (S3 as the key, the
/// local adapter as a relative path).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    pub fn parse(key: impl Into<String>) -> Result<Self, BlobError> {
        let key = key.into();
        let invalid = |why: &str| Err(BlobError::InvalidKey(format!("{why}: {key:?}")));
        if key.is_empty() || key.len() > MAX_BLOB_KEY_BYTES {
            return invalid("key length out of range");
        }
        if key.chars().any(|c| c.is_control() || c == '\\') {
            return invalid("control character or backslash in key");
        }
        if key
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return invalid("empty, '.' or '..' segment in key");
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlobMeta {
    pub key: BlobKey,
    pub size: u64,
    pub modified: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlobPage {
    pub blobs: Vec<BlobMeta>,
    /// The key to resume after; `None` once the prefix is exhausted.
    pub next: Option<BlobKey>,
}

pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// An object's bytes, streamed, with its size known up front.
pub struct BlobBody {
    pub size: u64,
    pub stream: ByteStream,
}

impl std::fmt::Debug for BlobBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobBody")
            .field("size", &self.size)
            .finish()
    }
}

impl BlobBody {
    /// Collects the whole object; for small objects only (documents, reports).
    pub async fn bytes(self) -> Result<Bytes, BlobError> {
        use futures::TryStreamExt;
        let chunks: Vec<Bytes> = self
            .stream
            .try_collect()
            .await
            .map_err(BlobError::unavailable)?;
        Ok(chunks.concat().into())
    }
}

/// What a presigned URL lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presign {
    Get,
    /// Create the object with exactly this many bytes; never replace one. (On S3 the
    /// URL signs `If-None-Match: *`, which its holder must send, `CREATE_ONLY`.)
    Put {
        content_length: u64,
    },
}

/// The header an upload through a `Presign::Put` URL must carry: the URL creates its
/// object and can never overwrite one, however long it lives.
pub const CREATE_ONLY: (&str, &str) = ("if-none-match", "*");

/// A part of a multipart upload, as the client reports it after uploading it.
// The API takes it as it is, so the `openapi` feature gives it a schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompletedPart {
    /// 1-based, ascending.
    pub number: u32,
    /// The `ETag` header the part's upload answered with.
    pub etag: String,
}

/// S3's limits on multipart uploads, which every adapter keeps.
pub const MAX_PARTS: u32 = 10_000;
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no such object")]
    NotFound,
    /// Completing a multipart upload failed on the client's account: an unknown
    /// upload, a missing part, a wrong ETag, parts out of order or too small.
    #[error("invalid multipart upload: {0}")]
    InvalidUpload(String),
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    #[error("throttled by the blob store")]
    Throttled,
    #[error("blob store unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl BlobError {
    pub fn unavailable(err: impl Into<anyhow::Error>) -> Self {
        BlobError::Unavailable(err.into())
    }
}

pub type BlobResult<T> = Result<T, BlobError>;

#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores small objects written by the service itself; clients upload through
    /// presigned URLs instead.
    async fn put(&self, key: &BlobKey, body: Bytes) -> BlobResult<BlobMeta>;

    async fn get(&self, key: &BlobKey) -> BlobResult<BlobBody>;

    /// The bytes of `range` of an object (cut at its end), for reading a large object
    /// a slice at a time.
    async fn get_range(&self, key: &BlobKey, range: std::ops::Range<u64>) -> BlobResult<BlobBody>;

    async fn head(&self, key: &BlobKey) -> BlobResult<Option<BlobMeta>>;

    /// Objects whose keys start with `prefix`, in key order, at most `limit` of them.
    async fn list(
        &self,
        prefix: &str,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> BlobResult<BlobPage>;

    /// Deleting a missing object succeeds.
    async fn delete(&self, key: &BlobKey) -> BlobResult<()>;

    /// A URL that lets anyone holding it perform one operation on one object until it
    /// expires.
    async fn presign(&self, key: &BlobKey, op: Presign, expires_in: Duration)
    -> BlobResult<String>;

    /// Starts a multipart upload to `key` and returns its id.
    async fn start_multipart(&self, key: &BlobKey) -> BlobResult<String>;

    /// A URL that uploads part `number` of an upload: exactly `content_length` bytes
    /// when given (Sextant's clients plan their parts), any size up to `MAX_PART_BYTES`
    /// otherwise (MLflow's proxy protocol tells only how many parts there are). Its
    /// answer carries the part's `ETag`, which completing needs.
    async fn presign_part(
        &self,
        key: &BlobKey,
        upload_id: &str,
        number: u32,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> BlobResult<String>;

    /// Assembles the parts into the object; until then the object does not exist.
    async fn complete_multipart(
        &self,
        key: &BlobKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> BlobResult<()>;

    /// Drops an unfinished upload and its parts. Aborting an unknown upload succeeds.
    async fn abort_multipart(&self, key: &BlobKey, upload_id: &str) -> BlobResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_traversal_or_empty_segments_are_refused() {
        for bad in [
            "", "/abs", "a//b", "a/../b", "..", "./a", "a/", "a\\b", "a\nb",
        ] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(BlobKey::parse("x".repeat(MAX_BLOB_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn ordinary_nested_keys_are_accepted() {
        for good in ["t/run/a.txt", "tenant/ck pt/ü.bin", "a..b/c"] {
            assert_eq!(BlobKey::parse(good).unwrap().as_str(), good);
        }
    }
}
