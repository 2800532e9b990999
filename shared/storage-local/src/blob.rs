//! The local-directory blob adapter for `sextant serve`. Presigned URLs are routes of
//! the local server carrying an HMAC over the operation, object, size and expiry, so
//! they behave like S3's: one object, one operation, until they expire.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use sextant_storage::blob::{
    BlobBody, BlobError, BlobKey, BlobMeta, BlobPage, BlobResult, BlobStore, CompletedPart,
    MAX_PART_BYTES, MIN_PART_BYTES, Presign,
};
/// Where the presigned routes are mounted on the local server.
pub const ROUTE_PREFIX: &str = "/blobs";

/// Signs and checks presigned URLs with a server secret.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Arc<[u8]>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    fn mac(&self, key: &BlobKey, op: &Signed<'_>, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        let operation = match op {
            Signed::Whole(Presign::Get) => "GET\n".to_owned(),
            Signed::Whole(Presign::Put { content_length }) => format!("PUT\n{content_length}"),
            Signed::Part {
                upload_id,
                number,
                content_length,
            } => {
                // `*`: a part of any size, which a signed length can never spell.
                let length = content_length.map_or("*".to_owned(), |length| length.to_string());
                format!("PART\n{length}\n{upload_id}\n{number}")
            }
        };
        mac.update(format!("{operation}\n{expires}\n{}", key.as_str()).as_bytes());
        mac
    }

    pub fn sign(&self, key: &BlobKey, op: Presign, expires: i64) -> String {
        self.sign_operation(key, &Signed::Whole(op), expires)
    }

    fn sign_operation(&self, key: &BlobKey, op: &Signed<'_>, expires: i64) -> String {
        hex::encode(self.mac(key, op, expires).finalize().into_bytes())
    }

    /// Constant-time check of a signature.
    fn verify(&self, key: &BlobKey, op: &Signed<'_>, expires: i64, signature: &str) -> bool {
        hex::decode(signature)
            .is_ok_and(|signature| self.mac(key, op, expires).verify_slice(&signature).is_ok())
    }
}

/// What a signature covers: a whole object's download or upload, or one part of a
/// multipart upload.
#[derive(Debug, Clone, Copy)]
enum Signed<'a> {
    Whole(Presign),
    Part {
        upload_id: &'a str,
        number: u32,
        content_length: Option<u64>,
    },
}

#[derive(Debug, Clone)]
pub struct LocalBlobs {
    objects: PathBuf,
    staging: PathBuf,
    /// `{upload id}/key` names the object; `{upload id}/{n}` and `{n}.etag` are parts.
    uploads: PathBuf,
    signer: UrlSigner,
    /// Base URL of the server that mounts `routes`, e.g. `http://127.0.0.1:8080`.
    base_url: url::Url,
    /// Uploads whose parts are being joined. In memory: one server serves a data
    /// directory, and a crash leaves nothing claimed.
    completing: Arc<Mutex<HashSet<String>>>,
}

/// An upload claimed for completion until dropped.
#[derive(Debug)]
struct Claim<'a> {
    claims: &'a Mutex<HashSet<String>>,
    upload_id: String,
}

impl<'a> Claim<'a> {
    fn take(claims: &'a Mutex<HashSet<String>>, upload_id: &str) -> Option<Self> {
        let mut held = claims.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert(upload_id.to_owned()).then(|| Self {
            claims,
            upload_id: upload_id.to_owned(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.upload_id);
    }
}

impl LocalBlobs {
    pub fn open(root: &Path, signer: UrlSigner, base_url: url::Url) -> std::io::Result<Self> {
        let objects = root.join("objects");
        let staging = root.join("staging");
        let uploads = root.join("uploads");
        for dir in [&objects, &staging, &uploads] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            objects,
            staging,
            uploads,
            signer,
            base_url,
            completing: Arc::default(),
        })
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        // BlobKey rules out absolute paths and `..`, so this stays under `objects`.
        on_disk(&self.objects, key.as_str())
    }

    /// The presigned URL for an operation expiring at a given time.
    pub fn signed_url(&self, key: &BlobKey, op: Presign, expires: i64) -> String {
        self.url_for(key, &Signed::Whole(op), expires)
    }

    fn url_for(&self, key: &BlobKey, op: &Signed<'_>, expires: i64) -> String {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map(|mut segments| {
                segments
                    .pop_if_empty()
                    .push(ROUTE_PREFIX.trim_start_matches('/'))
                    .extend(key.as_str().split('/'));
            })
            .unwrap_or_else(|()| unreachable!("http base URLs have path segments"));
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("expires", &expires.to_string());
            match op {
                Signed::Whole(Presign::Get) => {}
                Signed::Whole(Presign::Put { content_length }) => {
                    query.append_pair("length", &content_length.to_string());
                }
                Signed::Part {
                    upload_id,
                    number,
                    content_length,
                } => {
                    if let Some(length) = content_length {
                        query.append_pair("length", &length.to_string());
                    }
                    query.append_pair("upload_id", upload_id);
                    query.append_pair("part", &number.to_string());
                }
            }
            query.append_pair("signature", &self.signer.sign_operation(key, op, expires));
        }
        url.into()
    }

    /// Streams bytes into a staging file and moves it to `target` only once complete,
    /// so a reader never sees half an object; `Placing::Create` refuses (`Exists`) to
    /// replace a file already there. Answers the SHA-256 of what it wrote.
    async fn write_stream(
        &self,
        target: &Path,
        stream: impl futures::Stream<Item = std::io::Result<Bytes>>,
        expected_length: Option<u64>,
        placing: Placing,
    ) -> Result<[u8; 32], WriteError> {
        let staged = self.staging.join(ulid::Ulid::generate().to_string());
        let result = async {
            let mut file = tokio::fs::File::create(&staged).await?;
            let mut written = 0u64;
            let mut digest = Sha256::new();
            futures::pin_mut!(stream);
            while let Some(chunk) = stream.try_next().await? {
                written += chunk.len() as u64;
                // Without a signed length, no more than S3 takes in one part.
                if written > expected_length.unwrap_or(MAX_PART_BYTES) {
                    return Err(WriteError::LengthMismatch);
                }
                digest.update(&chunk);
                file.write_all(&chunk).await?;
            }
            if expected_length.is_some_and(|expected| written != expected) {
                return Err(WriteError::LengthMismatch);
            }
            file.sync_all().await?;
            place(&staged, target, placing).await?;
            Ok(digest.finalize().into())
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&staged).await;
        }
        result
    }

    fn upload_dir(&self, upload_id: &str) -> BlobResult<PathBuf> {
        // Upload ids are ULIDs we made; anything else names no upload.
        if upload_id.len() != 26 || !upload_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BlobError::InvalidUpload("NoSuchUpload".into()));
        }
        Ok(self.uploads.join(upload_id))
    }

    /// Checks that an upload exists and belongs to `key`.
    async fn open_upload(&self, key: &BlobKey, upload_id: &str) -> BlobResult<PathBuf> {
        let dir = self.upload_dir(upload_id)?;
        match tokio::fs::read_to_string(dir.join("key")).await {
            Ok(owner) if owner == key.as_str() => Ok(dir),
            Ok(_) => Err(BlobError::InvalidUpload("NoSuchUpload".into())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::InvalidUpload("NoSuchUpload".into()))
            }
            Err(err) => Err(BlobError::unavailable(err)),
        }
    }

    /// Writes part `number` of an upload; answers its ETag.
    async fn write_part(
        &self,
        key: &BlobKey,
        upload_id: &str,
        number: u32,
        stream: impl futures::Stream<Item = std::io::Result<Bytes>>,
        content_length: Option<u64>,
    ) -> Result<String, WriteError> {
        let dir = self.open_upload(key, upload_id).await?;
        let digest = self
            .write_stream(
                &dir.join(number.to_string()),
                stream,
                content_length,
                Placing::Replace,
            )
            .await?;
        let etag = hex::encode(&digest[..16]);
        tokio::fs::write(dir.join(format!("{number}.etag")), &etag).await?;
        Ok(etag)
    }
}

/// Whether a finished file may replace one at its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placing {
    /// An object through an upload URL, or an assembled multipart upload: S3's
    /// `If-None-Match: *`.
    Create,
    /// A part sent again replaces the earlier attempt, as on S3.
    Replace,
}

/// Moves a finished staging file to `target`. Creating links it there, which fails
/// atomically (`AlreadyExists`) when the target exists, then drops the staging name.
async fn place(staged: &Path, target: &Path, placing: Placing) -> std::io::Result<()> {
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    match placing {
        Placing::Replace => tokio::fs::rename(staged, target).await,
        Placing::Create => {
            tokio::fs::hard_link(staged, target).await?;
            tokio::fs::remove_file(staged).await
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("body length differs from the signed length")]
    LengthMismatch,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

fn io_error(err: std::io::Error) -> BlobError {
    if err.kind() == std::io::ErrorKind::NotFound {
        BlobError::NotFound
    } else {
        BlobError::unavailable(err)
    }
}

fn meta(key: &BlobKey, metadata: &std::fs::Metadata) -> BlobMeta {
    BlobMeta {
        key: key.clone(),
        size: metadata.len(),
        modified: metadata
            .modified()
            .map(OffsetDateTime::from)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    }
}

/// File names longer than this are refused by most filesystems, but not key segments.
const MAX_FILE_NAME_BYTES: usize = 255;

/// Where a key (or the directory part of a prefix) lives under `objects`: segment by
/// segment, a segment too long for one file name continuing in subdirectories whose
/// names start with a backslash, which keys never hold (nor can such a name be `.` or
/// `..`). Shorter segments, nearly all of them, are stored as they are.
fn on_disk(objects: &Path, key: &str) -> PathBuf {
    let mut path = objects.to_owned();
    for segment in key.split('/') {
        let mut name = String::new();
        for c in segment.chars() {
            if name.len() + c.len_utf8() > MAX_FILE_NAME_BYTES {
                path.push(&name);
                name = "\\".to_owned();
            }
            name.push(c);
        }
        path.push(name);
    }
    path
}

/// Every object key under `dir`, relative to `objects`, found by a blocking walk.
fn walk(objects: &Path, dir: &Path, keys: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(objects, &path, keys)?;
        } else if let Some(key) = path
            .strip_prefix(objects)
            .ok()
            .and_then(|relative| relative.to_str())
        {
            // Continuation names (see `on_disk`) join their segment again.
            keys.push(
                key.replace(std::path::MAIN_SEPARATOR, "/")
                    .replace("/\\", ""),
            );
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(&self, key: &BlobKey, body: Bytes) -> BlobResult<BlobMeta> {
        let size = body.len() as u64;
        let stream = futures::stream::once(async { Ok(body) });
        // The service's own writes replace, as S3's plain PUT does.
        self.write_stream(&self.path(key), stream, Some(size), Placing::Replace)
            .await
            .map_err(BlobError::unavailable)?;
        self.head(key).await?.ok_or(BlobError::NotFound)
    }

    async fn get(&self, key: &BlobKey) -> BlobResult<BlobBody> {
        let file = tokio::fs::File::open(self.path(key))
            .await
            .map_err(io_error)?;
        let size = file.metadata().await.map_err(io_error)?.len();
        Ok(BlobBody {
            size,
            stream: Box::pin(ReaderStream::new(file)),
        })
    }

    async fn get_range(&self, key: &BlobKey, range: std::ops::Range<u64>) -> BlobResult<BlobBody> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = tokio::fs::File::open(self.path(key))
            .await
            .map_err(io_error)?;
        let total = file.metadata().await.map_err(io_error)?.len();
        let start = range.start.min(total);
        let size = range.end.min(total).saturating_sub(start);
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(io_error)?;
        Ok(BlobBody {
            size,
            stream: Box::pin(ReaderStream::new(file.take(size))),
        })
    }

    async fn head(&self, key: &BlobKey) -> BlobResult<Option<BlobMeta>> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(metadata) if metadata.is_file() => Ok(Some(meta(key, &metadata))),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(BlobError::unavailable(err)),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> BlobResult<BlobPage> {
        let objects = self.objects.clone();
        let prefix = prefix.to_owned();
        // Only the directory the prefix names can hold matching keys.
        let start = match prefix.rfind('/') {
            Some(slash) => on_disk(&objects, &prefix[..slash]),
            None => objects.clone(),
        };
        let mut keys = tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            walk(&objects, &start, &mut keys).map(|()| keys)
        })
        .await
        .map_err(BlobError::unavailable)?
        .map_err(BlobError::unavailable)?;
        keys.retain(|key| {
            key.starts_with(prefix.as_str())
                && after.is_none_or(|after| key.as_str() > after.as_str())
        });
        keys.sort_unstable();
        let more = keys.len() > limit;
        keys.truncate(limit);
        let mut blobs = Vec::with_capacity(keys.len());
        for key in keys {
            let key = BlobKey::parse(key)?;
            // An object deleted since the walk is simply not listed.
            if let Some(meta) = self.head(&key).await? {
                blobs.push(meta);
            }
        }
        let next = if more {
            blobs.last().map(|blob| blob.key.clone())
        } else {
            None
        };
        Ok(BlobPage { blobs, next })
    }

    async fn delete(&self, key: &BlobKey) -> BlobResult<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(BlobError::unavailable(err)),
        }
    }

    async fn presign(
        &self,
        key: &BlobKey,
        op: Presign,
        expires_in: Duration,
    ) -> BlobResult<String> {
        let expires = OffsetDateTime::now_utc().unix_timestamp()
            + i64::try_from(expires_in.as_secs()).unwrap_or(i64::MAX / 2);
        Ok(self.signed_url(key, op, expires))
    }

    async fn start_multipart(&self, key: &BlobKey) -> BlobResult<String> {
        let upload_id = ulid::Ulid::generate().to_string().to_ascii_lowercase();
        let dir = self.upload_dir(&upload_id)?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(BlobError::unavailable)?;
        tokio::fs::write(dir.join("key"), key.as_str())
            .await
            .map_err(BlobError::unavailable)?;
        Ok(upload_id)
    }

    async fn presign_part(
        &self,
        key: &BlobKey,
        upload_id: &str,
        number: u32,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> BlobResult<String> {
        self.open_upload(key, upload_id).await?;
        let expires = OffsetDateTime::now_utc().unix_timestamp()
            + i64::try_from(expires_in.as_secs()).unwrap_or(i64::MAX / 2);
        let op = Signed::Part {
            upload_id,
            number,
            content_length,
        };
        Ok(self.url_for(key, &op, expires))
    }

    async fn complete_multipart(
        &self,
        key: &BlobKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> BlobResult<()> {
        // One completion at a time: another one meanwhile finds no upload, as on S3.
        let Some(_claim) = Claim::take(&self.completing, upload_id) else {
            return Err(BlobError::InvalidUpload("NoSuchUpload".into()));
        };
        let dir = self.open_upload(key, upload_id).await?;
        let invalid = |code: &str| Err(BlobError::InvalidUpload(code.into()));
        if parts.is_empty() || parts.windows(2).any(|w| w[0].number >= w[1].number) {
            return invalid("InvalidPartOrder");
        }
        let mut files = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let stored = tokio::fs::read_to_string(dir.join(format!("{}.etag", part.number)))
                .await
                .ok();
            if stored.as_deref() != Some(part.etag.trim_matches('"')) {
                return invalid("InvalidPart");
            }
            let path = dir.join(part.number.to_string());
            let size = tokio::fs::metadata(&path)
                .await
                .map_err(BlobError::unavailable)?
                .len();
            if index + 1 < parts.len() && size < MIN_PART_BYTES {
                return invalid("EntityTooSmall");
            }
            files.push(path);
        }
        // The parts are joined in the upload's own directory, then moved into place.
        let joined = dir.join("joined");
        let assemble = async {
            let mut out = tokio::fs::File::create(&joined).await?;
            for path in files {
                tokio::io::copy(&mut tokio::fs::File::open(path).await?, &mut out).await?;
            }
            out.sync_all().await?;
            place(&joined, &self.path(key), Placing::Create).await?;
            tokio::fs::remove_dir_all(&dir).await
        };
        assemble.await.map_err(|err| {
            if err.kind() == std::io::ErrorKind::AlreadyExists {
                // As S3 answers `If-None-Match: *` on an existing object.
                BlobError::InvalidUpload("PreconditionFailed".into())
            } else {
                BlobError::unavailable(err)
            }
        })
    }

    async fn abort_multipart(&self, key: &BlobKey, upload_id: &str) -> BlobResult<()> {
        match self.open_upload(key, upload_id).await {
            Ok(dir) => tokio::fs::remove_dir_all(&dir)
                .await
                .map_err(BlobError::unavailable),
            Err(BlobError::InvalidUpload(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// The query string of a presigned URL, as the server that mounts the routes at
/// `ROUTE_PREFIX` receives it.
#[derive(Debug, Deserialize)]
pub struct SignedQuery {
    expires: i64,
    length: Option<u64>,
    upload_id: Option<String>,
    part: Option<u32>,
    signature: String,
}

/// Why a request through a presigned URL was not served.
#[derive(Debug, thiserror::Error)]
pub enum PresignedError {
    #[error("the URL's signature is invalid or has expired")]
    InvalidSignature,
    #[error("upload URL without a signed length")]
    UnsignedLength,
    /// The body was longer or shorter than the URL signed (`Some`), or a part without a
    /// signed length was longer than a part may be (`None`).
    #[error("the body's length differs from the signed length")]
    LengthMismatch(Option<u64>),
    #[error("the object exists already, and an upload URL only creates one")]
    Exists,
    /// The body stopped arriving; the server's own body timeout says how long it waited.
    #[error("the body stopped arriving")]
    BodyStopped,
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Io(std::io::Error),
}

impl LocalBlobs {
    /// Checks a download URL; answers the object it names.
    pub fn authorize_download(
        &self,
        key: &str,
        query: &SignedQuery,
    ) -> Result<BlobKey, PresignedError> {
        self.authorize(key, &Signed::Whole(Presign::Get), query)
    }

    /// `length` bytes of an object from `start`, for ranged downloads.
    pub async fn get_range(
        &self,
        key: &BlobKey,
        start: u64,
        length: u64,
    ) -> BlobResult<ReaderStream<tokio::io::Take<tokio::fs::File>>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = tokio::fs::File::open(self.path(key))
            .await
            .map_err(io_error)?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(io_error)?;
        Ok(ReaderStream::new(file.take(length)))
    }

    /// Stores the body of an upload URL, a whole object or one part of a multipart
    /// upload; answers a part's ETag. A body whose stream fails with
    /// `ErrorKind::TimedOut` stopped arriving.
    pub async fn accept_upload(
        &self,
        key: &str,
        query: &SignedQuery,
        body: impl futures::Stream<Item = std::io::Result<Bytes>>,
    ) -> Result<Option<String>, PresignedError> {
        let written = match (&query.upload_id, query.part) {
            (Some(upload_id), Some(number)) => {
                let op = Signed::Part {
                    upload_id,
                    number,
                    content_length: query.length,
                };
                let key = self.authorize(key, &op, query)?;
                self.write_part(&key, upload_id, number, body, query.length)
                    .await
                    .map(Some)
            }
            _ => {
                // A whole object is always uploaded at the length it was registered with.
                let content_length = query.length.ok_or(PresignedError::UnsignedLength)?;
                let op = Signed::Whole(Presign::Put { content_length });
                let key = self.authorize(key, &op, query)?;
                self.write_stream(
                    &self.path(&key),
                    body,
                    Some(content_length),
                    Placing::Create,
                )
                .await
                .map(|_| None)
            }
        };
        written.map_err(|err| match err {
            WriteError::LengthMismatch => PresignedError::LengthMismatch(query.length),
            WriteError::Blob(err) => PresignedError::Blob(err),
            WriteError::Io(err) => match err.kind() {
                std::io::ErrorKind::AlreadyExists => PresignedError::Exists,
                std::io::ErrorKind::TimedOut => PresignedError::BodyStopped,
                _ => PresignedError::Io(err),
            },
        })
    }

    fn authorize(
        &self,
        key: &str,
        op: &Signed<'_>,
        query: &SignedQuery,
    ) -> Result<BlobKey, PresignedError> {
        let key = BlobKey::parse(key).map_err(|_| PresignedError::InvalidSignature)?;
        if OffsetDateTime::now_utc().unix_timestamp() > query.expires
            || !self
                .signer
                .verify(&key, op, query.expires, &query.signature)
        {
            return Err(PresignedError::InvalidSignature);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_with_segments_longer_than_a_file_name_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(
            dir.path(),
            UrlSigner::new(&[1; 32]),
            "http://127.0.0.1:1".parse().unwrap(),
        )
        .unwrap();
        let keys = [
            format!("t/{}", "x".repeat(600)),
            // Cut inside neither a character nor into a `..` name.
            format!("t/{}/f", "é".repeat(200)),
            format!("t/{}..", "a".repeat(255)),
            "t/short".to_owned(),
        ];
        for key in &keys {
            let key = BlobKey::parse(key.as_str()).unwrap();
            blobs.put(&key, Bytes::from(key.to_string())).await.unwrap();
            let body = blobs.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(body, key.as_str().as_bytes());
        }
        let listed: Vec<String> = blobs
            .list("t/", None, 100)
            .await
            .unwrap()
            .blobs
            .into_iter()
            .map(|blob| blob.key.to_string())
            .collect();
        let mut expected = keys.to_vec();
        expected.sort();
        assert_eq!(listed, expected);
    }
}
