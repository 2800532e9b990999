//! Artifacts: files a run produces (checkpoints, models, code snapshots, any file).
//!
//! Bytes never pass through a function. Registering an artifact answers presigned
//! URLs, one `PUT` up to `SINGLE_UPLOAD_MAX_BYTES` and a multipart plan above it; the
//! client uploads straight to the blob store and then completes, and only then does the
//! server check the stored size and SHA-256 and seal the artifact. A mismatch removes
//! the object and the registration, so nothing half-registered stays behind.
//!
//! Upload URLs live `UPLOAD_URL_TTL` and only ever create their object (`CREATE_ONLY`;
//! an assembled multipart upload likewise), so a sealed artifact's bytes never change.
//! Each URL handed out is first noted in the sweep ledger (`crate::sweep`): once it has
//! expired, an upload never completed, or an object written after its artifact was
//! deleted, is removed (`settle`).
//!
//! The checksum is read from the object in slices of `VERIFY_SLICE_BYTES` (or what the caller gives),
//! one per completion call, the SHA-256 state kept in the record between them: the
//! completion answers `verifying` until the last slice, so no single request (a
//! function with a 10 s timeout) reads a multi-gigabyte object whole. Objects uploaded
//! through MLflow's proxy state no checksum; they are sealed with their size, and the
//! hourly run computes theirs the same way, a slice at a time.
//!
//! Storage: `{tenant}#run#{run}` / `a#{path}` holds the record (with a `ready` flag
//! that makes sealing happen once); `k#{kind}#{step}#{path}` indexes artifacts taken at
//! a step, so "the checkpoint for step 12,000" is one query. Objects live at
//! `{tenant}/runs/{run}/artifacts/{path}`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::{Coded, Error, ErrorCode};
use crate::ids::RunId;
use crate::metering::Marks;
use crate::runs;
use crate::runs::RunError;
use crate::series::step_key;
use crate::sweep::{self, Claimant, Note};
use crate::tenancy::Tenant;
use crate::usage;
use sextant_storage::Store;
use sextant_storage::blob::{BlobError, BlobKey, CREATE_ONLY, CompletedPart, MAX_PARTS, Presign};
use sextant_storage::kv::{Condition, Key, Query, StoreError, TxOp, Value};
use sextant_storage::records::{doc_item, read_doc};

/// Larger artifacts upload in parts.
pub const SINGLE_UPLOAD_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const MIN_PART_BYTES: u64 = 16 * 1024 * 1024;
/// Plans have at most this many parts, so a plan's URLs fit in one response.
pub const MAX_PLANNED_PARTS: u64 = 1_000;
pub const MAX_ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024 * 1024;
pub const MAX_PATH_BYTES: usize = 512;
pub const MAX_PATH_SEGMENTS: usize = 32;
/// Long enough to send a part of any planned size; an upload that takes longer
/// registers again for fresh URLs, as interrupted ones do.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// How long the hourly run spends on one artifact's checksum before leaving the rest
/// to the next run (the metering function has five minutes for everything).
const BACKGROUND_HASHING: Duration = Duration::from_secs(20);
/// What upload URLs lived before records kept their expiry.
const LEGACY_UPLOAD_URL_TTL: time::Duration = time::Duration::HOUR;
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(5 * 60);
const READY: &str = "ready";

/// What an artifact is, for finding it again (`file` unless said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    File,
    Checkpoint,
    Model,
    Dataset,
    /// A snapshot of the source a run executed.
    Code,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Checkpoint => "checkpoint",
            Kind::Model => "model",
            Kind::Dataset => "dataset",
            Kind::Code => "code",
        }
    }
}

/// Why an artifact operation is refused.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact not found")]
    NotFound,
    #[error(
        "artifact paths are relative, at most {max} bytes, without empty, '.' or '..' \
         segments: {why}",
        max = MAX_PATH_BYTES
    )]
    InvalidPath { why: String },
    #[error("sha256 is the file's SHA-256 as 64 hex digits")]
    InvalidSha256,
    #[error("content_type is a MIME type of at most 255 printable characters")]
    InvalidContentType,
    #[error("an artifact is at most {} bytes", MAX_ARTIFACT_BYTES)]
    TooLarge,
    #[error("files above {} bytes upload in parts", SINGLE_UPLOAD_MAX_BYTES)]
    TooLargeForOneRequest,
    #[error("an upload has 1 to {} parts", MAX_PARTS)]
    InvalidParts,
    #[error("{0} is already stored; delete it first")]
    Exists(String),
    #[error("{path} and {other} cannot both be artifacts: one is a directory of the other")]
    PathConflict { path: String, other: String },
    #[error("a multipart upload completes with its parts' numbers and ETags")]
    MissingParts,
    #[error("nothing has been uploaded for this artifact yet")]
    NotUploaded,
    #[error("the uploaded object changed while it was checked; register and upload again")]
    ChangedWhileChecked,
    #[error("{uploaded} bytes were uploaded, {registered} registered; register and upload again")]
    SizeMismatch { uploaded: u64, registered: u64 },
    #[error(
        "the uploaded bytes' SHA-256 differs from the registered one; register and upload again"
    )]
    ChecksumMismatch,
    /// A record or object that does not read as it should: a failure of ours.
    #[error("{0:#}")]
    Corrupt(anyhow::Error),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl Coded for ArtifactError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::NotFound,
            Self::InvalidPath { .. } => ErrorCode::InvalidPath,
            Self::InvalidSha256 => ErrorCode::InvalidSha256,
            Self::InvalidContentType => ErrorCode::InvalidContentType,
            Self::TooLarge | Self::TooLargeForOneRequest => ErrorCode::ArtifactTooLarge,
            Self::InvalidParts => ErrorCode::InvalidParts,
            Self::Exists(_) => ErrorCode::ArtifactExists,
            Self::PathConflict { .. } => ErrorCode::PathConflict,
            Self::MissingParts => ErrorCode::MissingParts,
            Self::NotUploaded | Self::ChangedWhileChecked => ErrorCode::UploadMissing,
            Self::SizeMismatch { .. } => ErrorCode::SizeMismatch,
            Self::ChecksumMismatch => ErrorCode::ChecksumMismatch,
            Self::Corrupt(_) => ErrorCode::Internal,
            Self::Run(err) => err.code(),
            Self::Store(err) => err.code(),
            Self::Blob(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Corrupt(cause) => Error::internal(cause),
            Self::Run(err) => err.into(),
            Self::Store(err) => err.into(),
            Self::Blob(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// A path inside a run: relative, `/`-separated, no empty, `.` or `..` segments, at
/// most 512 bytes and 32 segments. `complete` alone is reserved for the completion endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    pub fn parse(text: &str) -> Result<Self> {
        let refuse = |why: &str| {
            Err(ArtifactError::InvalidPath {
                why: why.to_owned(),
            })
        };
        if text.is_empty() || text.len() > MAX_PATH_BYTES {
            return refuse("length");
        }
        if text.split('/').count() > MAX_PATH_SEGMENTS {
            return refuse("more than 32 segments");
        }
        if text == "complete" {
            return refuse("'complete' is reserved");
        }
        // The blob key rules are the path rules.
        if BlobKey::parse(text).is_err() {
            return refuse(text);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An upload under way: where its parts go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    /// The multipart upload, for artifacts above the single-upload size.
    upload_id: Option<String>,
    part_size: u64,
    /// Size and checksum are unknown until the upload completes, and are then taken
    /// from the object (MLflow's proxied multipart uploads state neither).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    measured: bool,
    /// When the latest URLs handed out for the upload expire; until then the sweep
    /// leaves it alone. Absent in records from before: `LEGACY_UPLOAD_URL_TTL` after
    /// `created_at`.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    urls_until: Option<OffsetDateTime>,
    /// How far the completion has checked the uploaded object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified: Option<Progress>,
}

/// A SHA-256 computed a slice of an object at a time: the bytes hashed so far and the
/// hash's state after them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Progress {
    bytes: u64,
    /// The serialized SHA-256 state, base64; empty before the first byte.
    #[serde(default)]
    state: String,
}

impl Progress {
    fn hasher(&self) -> Result<Sha256> {
        if self.state.is_empty() {
            return Ok(Sha256::new());
        }
        let corrupt =
            || ArtifactError::Corrupt(anyhow::anyhow!("a stored SHA-256 state is corrupt"));
        let bytes = STANDARD.decode(&self.state).map_err(|_| corrupt())?;
        let state = bytes.as_slice().try_into().map_err(|_| corrupt())?;
        Sha256::deserialize(state).map_err(|_| corrupt())
    }

    fn after(bytes: u64, hasher: &Sha256) -> Self {
        Self {
            bytes,
            state: STANDARD.encode(hasher.serialize()),
        }
    }
}

/// Hashes the next slice of `blob` (at most `slice` bytes of its `size`) on from
/// `progress`; answers the progress after it, and the digest once the object is done.
async fn hash_slice(
    store: &Store,
    blob: &BlobKey,
    progress: &Progress,
    size: u64,
    slice: u64,
) -> Result<(Progress, Option<String>)> {
    let mut hasher = progress.hasher()?;
    let end = progress.bytes.saturating_add(slice.max(1)).min(size);
    let body = store.blobs.get_range(blob, progress.bytes..end).await?;
    let mut hashed = progress.bytes;
    let mut stream = body.stream;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|err| ArtifactError::Corrupt(err.into()))?
    {
        hashed += chunk.len() as u64;
        hasher.update(&chunk);
    }
    if hashed != end {
        // The object changed size under the check; only a vanished one can.
        return Err(ArtifactError::ChangedWhileChecked);
    }
    if hashed == size {
        Ok((Progress::default(), Some(hex::encode(hasher.finalize()))))
    } else {
        Ok((Progress::after(hashed, &hasher), None))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub path: ArtifactPath,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub content_type: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<Pending>,
    /// A sealed artifact whose checksum is still being computed (one uploaded through
    /// MLflow's proxy): how far; `sha256` is empty meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hashing: Option<Progress>,
}

impl Artifact {
    pub fn is_ready(&self) -> bool {
        self.pending.is_none()
    }

    /// The artifact as clients see it: `status` instead of the upload's internals.
    pub fn into_view(self) -> ArtifactView {
        let verified = self.pending.as_ref().and_then(|p| p.verified.as_ref());
        let (status, verified_bytes) = match (&self.pending, verified) {
            (None, _) => (ArtifactStatus::Ready, None),
            (Some(_), Some(progress)) => (ArtifactStatus::Verifying, Some(progress.bytes)),
            (Some(_), None) => (ArtifactStatus::Pending, None),
        };
        ArtifactView {
            path: self.path,
            size: self.size,
            sha256: self.sha256,
            content_type: self.content_type,
            kind: self.kind,
            step: self.step,
            created_at: self.created_at,
            status,
            verified_bytes,
        }
    }

    /// When the sweep may take the upload for abandoned: its latest URLs have expired.
    fn urls_until(&self) -> Option<OffsetDateTime> {
        self.pending.as_ref().map(|pending| {
            pending
                .urls_until
                .unwrap_or(self.created_at + LEGACY_UPLOAD_URL_TTL)
        })
    }
}

/// An artifact as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ArtifactView {
    pub path: ArtifactPath,
    /// Bytes.
    pub size: u64,
    /// The content's SHA-256, lowercase hex; empty for a file uploaded in parts through
    /// MLflow's proxy until the server has computed it (within the hour).
    pub sha256: String,
    pub content_type: String,
    pub kind: Kind,
    /// The step the artifact was taken at (a checkpoint's), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub status: ArtifactStatus,
    /// While `verifying`: the bytes checked so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_bytes: Option<u64>,
}

/// `pending` from registration until the upload is completed, `verifying` while the
/// completion checks a large upload a slice per call, `ready` once sealed; only `ready`
/// artifacts are listed and downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactStatus {
    Pending,
    Verifying,
    Ready,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewArtifact {
    #[schema(value_type = ArtifactPath)]
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// The content's SHA-256 as 64 hex digits, checked when the upload completes.
    pub sha256: String,
    /// `application/octet-stream` when absent.
    pub content_type: Option<String>,
    #[serde(default)]
    pub kind: Kind,
    /// The step the artifact was taken at (a checkpoint's), to find it by kind and step.
    pub step: Option<i64>,
}

/// Where the client sends the bytes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum UploadPlan {
    Single {
        upload: SingleUpload,
    },
    Multipart {
        /// Stays the same when the same artifact is registered again, so a client
        /// knows its uploaded parts still count.
        upload_id: String,
        /// Bytes of every part but the last.
        part_size: u64,
        parts: Vec<PartUpload>,
    },
}

/// One request uploads the whole file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SingleUpload {
    /// `PUT`.
    method: &'static str,
    url: String,
    /// Headers the request must carry: `If-None-Match: *`, which the URL signs, so it
    /// can create the object and never replace it.
    headers: BTreeMap<&'static str, &'static str>,
}

/// One part of a multipart upload; its answer's `ETag` goes into the completion.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartUpload {
    /// 1-based.
    number: u32,
    size: u64,
    url: String,
}

fn record_key(tenant: &Tenant, run: RunId, path: &ArtifactPath) -> Key {
    Key::new(
        runs::data_partition(tenant, run),
        format!("a#{}", path.as_str()),
    )
}

fn index_key(tenant: &Tenant, run: RunId, kind: Kind, step: i64, path: &ArtifactPath) -> Key {
    Key::new(
        runs::data_partition(tenant, run),
        format!("k#{}#{}#{}", kind.as_str(), step_key(step), path.as_str()),
    )
}

pub fn blob_key(tenant: &Tenant, run: RunId, path: &ArtifactPath) -> Result<BlobKey> {
    Ok(BlobKey::parse(format!(
        "{}runs/{run}/artifacts/{}",
        tenant.blob_prefix(),
        path.as_str()
    ))?)
}

fn part_size_for(size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    size.div_ceil(MAX_PLANNED_PARTS)
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .max(MIN_PART_BYTES)
}

fn check_sha256(text: &str) -> Result<String> {
    let hex = text.to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(ArtifactError::InvalidSha256)
    }
}

async fn read(store: &Store, key: &Key) -> Result<Option<Artifact>> {
    Ok(store
        .kv
        .get(key)
        .await?
        .as_ref()
        .map(read_doc)
        .transpose()?)
}

/// Registers an artifact and answers where to upload it. Registering the same path,
/// size and checksum again while the upload is unfinished answers fresh URLs for the
/// same upload, so an interrupted client resumes; a sealed path is 409.
pub async fn register(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    new: NewArtifact,
) -> Result<(Artifact, UploadPlan)> {
    let path = ArtifactPath::parse(&new.path)?;
    let sha256 = check_sha256(&new.sha256)?;
    if new.size > MAX_ARTIFACT_BYTES {
        return Err(ArtifactError::TooLarge);
    }
    let content_type = new
        .content_type
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    if content_type.is_empty()
        || content_type.len() > 255
        || !content_type
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(ArtifactError::InvalidContentType);
    }
    runs::load(store, tenant, run).await?;
    let key = record_key(tenant, run, &path);
    let blob = blob_key(tenant, run, &path)?;

    let existing = read(store, &key).await?;
    if existing.is_none() {
        check_namespace(store, tenant, run, &path).await?;
    }
    let sealed = || ArtifactError::Exists(path.as_str().to_owned());
    let (mut artifact, condition) = match existing {
        Some(existing) if existing.is_ready() => return Err(sealed()),
        Some(mut existing) if existing.size == new.size && existing.sha256 == sha256 => {
            // The same upload goes on; what the file is may be restated.
            existing.kind = new.kind;
            existing.step = new.step;
            existing.content_type = content_type;
            (
                existing,
                Condition::Equals(READY.into(), Value::Bool(false)),
            )
        }
        stale => {
            if let Some(stale) = stale {
                drop_upload(store, &blob, &stale).await?;
            }
            let upload_id = if new.size > SINGLE_UPLOAD_MAX_BYTES {
                Some(store.blobs.start_multipart(&blob).await?)
            } else {
                None
            };
            let artifact = Artifact {
                path: path.clone(),
                size: new.size,
                sha256,
                content_type,
                kind: new.kind,
                step: new.step,
                created_at: store.now(),
                pending: Some(Pending {
                    upload_id,
                    part_size: part_size_for(new.size),
                    measured: false,
                    urls_until: None,
                    verified: None,
                }),
                hashing: None,
            };
            (artifact, Condition::None)
        }
    };
    let urls_until = store.now() + UPLOAD_URL_TTL;
    if let Some(pending) = &mut artifact.pending {
        pending.urls_until = Some(urls_until);
    }
    note_upload(store, tenant, run, &blob, &artifact, urls_until).await?;
    match store
        .kv
        .put(
            doc_item(key, &artifact)?.with(READY, Value::Bool(false)),
            condition,
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => return Err(sealed()),
        Err(err) => return Err(err.into()),
    }
    let plan = plan(store, &blob, &artifact).await?;
    Ok((artifact, plan))
}

/// Notes, before any URL for it goes out, the upload the URLs will write, so the sweep
/// settles it once they have expired. A multipart upload started for it is aborted if
/// the note cannot be written.
async fn note_upload(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    blob: &BlobKey,
    artifact: &Artifact,
    urls_until: OffsetDateTime,
) -> Result<()> {
    let upload_id = artifact
        .pending
        .as_ref()
        .and_then(|pending| pending.upload_id.clone());
    let note = Note {
        tenant: tenant.id(),
        blob: blob.to_string(),
        upload_id: upload_id.clone(),
        claimant: Claimant::Artifact {
            run,
            path: artifact.path.as_str().to_owned(),
        },
    };
    if let Err(err) = sweep::expect(&*store.kv, &note, urls_until).await {
        if let Some(upload_id) = upload_id
            && let Err(abort) = store.blobs.abort_multipart(blob, &upload_id).await
        {
            tracing::warn!(error = %abort, "could not abort an upload nobody will finish");
        }
        return Err(err.into());
    }
    Ok(())
}

/// Drops the bytes of an unfinished upload: its parts, or the object a single upload
/// left without completing.
async fn drop_upload(store: &Store, blob: &BlobKey, artifact: &Artifact) -> Result<()> {
    match artifact
        .pending
        .as_ref()
        .and_then(|pending| pending.upload_id.as_ref())
    {
        Some(upload_id) => store.blobs.abort_multipart(blob, upload_id).await?,
        None => store.blobs.delete(blob).await?,
    }
    Ok(())
}

/// Keeps a run's artifacts a tree, as in a file system (and in the local blob
/// directory): a path cannot be both an artifact and a directory of others.
async fn check_namespace(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    path: &ArtifactPath,
) -> Result<()> {
    let conflict = |other: &str| {
        Err(ArtifactError::PathConflict {
            path: path.as_str().to_owned(),
            other: other.to_owned(),
        })
    };
    let text = path.as_str();
    let ancestors = text.match_indices('/').map(|(at, _)| &text[..at]);
    let found = futures::future::try_join_all(ancestors.map(|ancestor| async move {
        let key = Key::new(runs::data_partition(tenant, run), format!("a#{ancestor}"));
        store.kv.get(&key).await.map(|item| item.map(|_| ancestor))
    }))
    .await?;
    if let Some(ancestor) = found.into_iter().flatten().next() {
        return conflict(ancestor);
    }
    let below = store
        .kv
        .query(
            Query::partition(runs::data_partition(tenant, run))
                .prefix(format!("a#{text}/"))
                .limit(1),
        )
        .await?;
    if let Some(item) = below.items.first() {
        return conflict(item.key.sk.trim_start_matches("a#"));
    }
    Ok(())
}

async fn plan(store: &Store, blob: &BlobKey, artifact: &Artifact) -> Result<UploadPlan> {
    let pending = artifact
        .pending
        .as_ref()
        .ok_or_else(|| ArtifactError::Corrupt(anyhow::anyhow!("planning a sealed artifact")))?;
    let Some(upload_id) = &pending.upload_id else {
        let url = store
            .blobs
            .presign(
                blob,
                Presign::Put {
                    content_length: artifact.size,
                },
                UPLOAD_URL_TTL,
            )
            .await?;
        return Ok(UploadPlan::Single {
            upload: SingleUpload {
                method: "PUT",
                url,
                headers: BTreeMap::from([CREATE_ONLY]),
            },
        });
    };
    let part_size = pending.part_size;
    let count = artifact
        .size
        .div_ceil(part_size)
        .clamp(1, u64::from(MAX_PARTS));
    let mut parts = Vec::with_capacity(count as usize);
    for index in 0..count {
        let number = index as u32 + 1;
        let size = part_size.min(artifact.size - index * part_size);
        let url = store
            .blobs
            .presign_part(blob, upload_id, number, Some(size), UPLOAD_URL_TTL)
            .await?;
        parts.push(PartUpload { number, size, url });
    }
    Ok(UploadPlan::Multipart {
        upload_id: upload_id.clone(),
        part_size,
        parts,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    #[schema(value_type = ArtifactPath)]
    pub path: String,
    /// Every uploaded part of a multipart upload; none for a single upload.
    #[serde(default)]
    pub parts: Vec<CompletedPart>,
}

/// Where a completion got to.
#[derive(Debug)]
pub enum Completed {
    /// Checked and sealed (or sealed before).
    Sealed(Artifact),
    /// Checked up to `verified_bytes` of its view; complete again to go on.
    Verifying(Artifact),
}

/// Bytes of an uploaded artifact one completion call checks by default: a few seconds
/// of reading on Lambda. A larger artifact takes a call per slice.
pub const VERIFY_SLICE_BYTES: u64 = 256 * 1024 * 1024;

/// Checks an uploaded artifact's size and SHA-256, one slice of the object per call
/// (`verify_slice_bytes`), and seals it after the last; a mismatch removes
/// the object and the registration. Completing a sealed artifact again answers it
/// unchanged. An upload through MLflow's proxy, which states no size or checksum, is
/// sealed at once with its object's size, its checksum computed afterwards.
pub async fn complete(
    store: &Store,
    marks: &Marks,
    verify_slice_bytes: u64,
    tenant: &Tenant,
    run: RunId,
    completion: Completion,
) -> Result<Completed> {
    let path = ArtifactPath::parse(&completion.path)?;
    let record = runs::load(store, tenant, run).await?.record;
    let owner = runs::usage_owner(tenant, &record);
    let key = record_key(tenant, run, &path);
    let mut artifact = read(store, &key)
        .await?
        .ok_or_else(|| ArtifactError::NotFound)?;
    let Some(pending) = artifact.pending.clone() else {
        return Ok(Completed::Sealed(artifact));
    };
    let blob = blob_key(tenant, run, &path)?;
    // A check under way means the upload was assembled by an earlier call.
    if let (Some(upload_id), None) = (&pending.upload_id, &pending.verified) {
        if completion.parts.is_empty() {
            return Err(ArtifactError::MissingParts);
        }
        if let Err(err) = store
            .blobs
            .complete_multipart(&blob, upload_id, &completion.parts)
            .await
        {
            // Another completion of this upload (a retry, or one at the same time)
            // assembled it already: the object it made is checked like any other.
            let assembled = matches!(err, BlobError::InvalidUpload(_))
                && store.blobs.head(&blob).await?.is_some();
            if !assembled {
                return Err(err.into());
            }
        }
    }
    let stored = store
        .blobs
        .head(&blob)
        .await?
        .ok_or_else(|| ArtifactError::NotUploaded)?;
    if pending.measured {
        if stored.size > MAX_ARTIFACT_BYTES {
            refuse(store, &key, &blob, &pending).await?;
            return Err(ArtifactError::TooLarge);
        }
        artifact.size = stored.size;
        artifact.hashing = Some(Progress::default());
        let sealed = seal(store, marks, owner, artifact).await?;
        // Its checksum, a slice at a time: the first now, the rest in the hourly run.
        let note = Note {
            tenant: tenant.id(),
            blob: blob.to_string(),
            upload_id: None,
            claimant: Claimant::Artifact {
                run,
                path: path.as_str().to_owned(),
            },
        };
        sweep::expect(&*store.kv, &note, store.now()).await?;
        return Ok(Completed::Sealed(
            continue_hashing(store, verify_slice_bytes, tenant, run, &path)
                .await?
                .unwrap_or(sealed),
        ));
    }
    if stored.size != artifact.size {
        refuse(store, &key, &blob, &pending).await?;
        return Err(ArtifactError::SizeMismatch {
            uploaded: stored.size,
            registered: artifact.size,
        });
    }
    let progress = pending.verified.clone().unwrap_or_default();
    match hash_slice(store, &blob, &progress, stored.size, verify_slice_bytes).await? {
        (progress, None) => {
            if let Some(pending) = &mut artifact.pending {
                pending.verified = Some(progress);
            }
            match store
                .kv
                .put(
                    doc_item(key, &artifact)?.with(READY, Value::Bool(false)),
                    Condition::Equals(READY.into(), Value::Bool(false)),
                )
                .await
            {
                Ok(()) => Ok(Completed::Verifying(artifact)),
                // A concurrent completion sealed it meanwhile.
                Err(StoreError::ConditionFailed) => read(store, &record_key(tenant, run, &path))
                    .await?
                    .filter(Artifact::is_ready)
                    .map(Completed::Sealed)
                    .ok_or_else(|| ArtifactError::NotFound),
                Err(err) => Err(err.into()),
            }
        }
        (_, Some(sha256)) if sha256 == artifact.sha256 => Ok(Completed::Sealed(
            seal(store, marks, owner, artifact).await?,
        )),
        (_, Some(_)) => {
            refuse(store, &key, &blob, &pending).await?;
            Err(ArtifactError::ChecksumMismatch)
        }
    }
}

/// Removes an upload that failed its check, and its registration.
async fn refuse(store: &Store, key: &Key, blob: &BlobKey, pending: &Pending) -> Result<()> {
    store.blobs.delete(blob).await?;
    if let Some(upload_id) = &pending.upload_id {
        // Gone already, unless the object checked was a stale one left at this
        // path by an earlier registration: its parts go too.
        store.blobs.abort_multipart(blob, upload_id).await?;
    }
    store
        .kv
        .delete(key, Condition::Equals(READY.into(), Value::Bool(false)))
        .await
        .or_else(|err| match err {
            StoreError::ConditionFailed => Ok(()),
            err => Err(err),
        })?;
    Ok(())
}

/// Seals a checked artifact and bills its bytes, once: a concurrent completion that
/// sealed it first answers what it sealed.
async fn seal(
    store: &Store,
    marks: &Marks,
    owner: usage::Owner<'_>,
    mut artifact: Artifact,
) -> Result<Artifact> {
    let (tenant, run) = (owner.tenant, owner.run);
    artifact.pending = None;
    let key = record_key(tenant, run, &artifact.path);
    crate::metering::mark_storer(store, marks, tenant).await?;
    let mut ops = vec![TxOp::Put(
        doc_item(key.clone(), &artifact)?.with(READY, Value::Bool(true)),
        Condition::Equals(READY.into(), Value::Bool(false)),
    )];
    ops.extend(usage::object_stored(
        owner,
        store.now(),
        artifact.size as i64,
    ));
    if let Some(step) = artifact.step {
        ops.push(TxOp::Put(
            doc_item(
                index_key(tenant, run, artifact.kind, step, &artifact.path),
                &artifact,
            )?,
            Condition::None,
        ));
    }
    match store.kv.transact(ops).await {
        Ok(()) => Ok(artifact),
        Err(StoreError::TransactionFailed(_)) => read(store, &key)
            .await?
            .filter(Artifact::is_ready)
            .ok_or_else(|| ArtifactError::NotFound),
        Err(err) => Err(err.into()),
    }
}

/// Hashes the next slice of a sealed artifact whose checksum is still being computed
/// (`Artifact::hashing`); answers it as it is after, `None` if there is no such
/// artifact (deleted, or its checksum known).
pub async fn continue_hashing(
    store: &Store,
    verify_slice_bytes: u64,
    tenant: &Tenant,
    run: RunId,
    path: &ArtifactPath,
) -> Result<Option<Artifact>> {
    let key = record_key(tenant, run, path);
    let Some(mut artifact) = read(store, &key).await?.filter(Artifact::is_ready) else {
        return Ok(None);
    };
    let Some(progress) = artifact.hashing.clone() else {
        return Ok(None);
    };
    let blob = blob_key(tenant, run, path)?;
    let (progress, digest) =
        hash_slice(store, &blob, &progress, artifact.size, verify_slice_bytes).await?;
    match digest {
        Some(sha256) => {
            artifact.sha256 = sha256;
            artifact.hashing = None;
        }
        None => artifact.hashing = Some(progress),
    }
    let mut ops = vec![TxOp::Put(
        doc_item(key, &artifact)?.with(READY, Value::Bool(true)),
        Condition::Equals(READY.into(), Value::Bool(true)),
    )];
    if let Some(step) = artifact.step {
        ops.push(TxOp::Put(
            doc_item(index_key(tenant, run, artifact.kind, step, path), &artifact)?,
            Condition::None,
        ));
    }
    match store.kv.transact(ops).await {
        Ok(()) => Ok(Some(artifact)),
        // Deleted meanwhile.
        Err(StoreError::TransactionFailed(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Starts a multipart upload of a file whose size and checksum are not known (MLflow's
/// proxied multipart uploads give only the number of parts); `complete` takes both
/// from the assembled object. An artifact already at the path is replaced, as MLflow
/// overwrites. Answers the upload id and a URL for each part.
pub async fn register_measured(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    path: &str,
    parts: u32,
) -> Result<(String, Vec<String>)> {
    let path = ArtifactPath::parse(path)?;
    if !(1..=MAX_PARTS).contains(&parts) {
        return Err(ArtifactError::InvalidParts);
    }
    let record = runs::load(store, tenant, run).await?.record;
    let key = record_key(tenant, run, &path);
    match read(store, &key).await? {
        Some(existing) => remove(store, runs::usage_owner(tenant, &record), &existing).await?,
        None => check_namespace(store, tenant, run, &path).await?,
    }
    let blob = blob_key(tenant, run, &path)?;
    let upload_id = store.blobs.start_multipart(&blob).await?;
    let urls_until = store.now() + UPLOAD_URL_TTL;
    let artifact = Artifact {
        path,
        size: 0,
        sha256: String::new(),
        content_type: "application/octet-stream".to_owned(),
        kind: Kind::File,
        step: None,
        created_at: store.now(),
        pending: Some(Pending {
            upload_id: Some(upload_id.clone()),
            part_size: 0,
            measured: true,
            urls_until: Some(urls_until),
            verified: None,
        }),
        hashing: None,
    };
    note_upload(store, tenant, run, &blob, &artifact, urls_until).await?;
    store
        .kv
        .put(
            doc_item(key, &artifact)?.with(READY, Value::Bool(false)),
            Condition::None,
        )
        .await?;
    let mut urls = Vec::with_capacity(parts as usize);
    for number in 1..=parts {
        urls.push(
            store
                .blobs
                .presign_part(&blob, &upload_id, number, None, UPLOAD_URL_TTL)
                .await?,
        );
    }
    Ok((upload_id, urls))
}

/// Stores bytes the server received itself (MLflow's artifact proxy uploads) as a
/// sealed artifact, through the same steps a client takes: register, upload, complete.
/// An artifact already at the path is replaced, as MLflow overwrites; the same bytes
/// again change nothing.
pub async fn store(
    store: &Store,
    marks: &Marks,
    tenant: &Tenant,
    run: RunId,
    path: &str,
    body: bytes::Bytes,
    content_type: Option<String>,
) -> Result<Artifact> {
    let size = body.len() as u64;
    if size > SINGLE_UPLOAD_MAX_BYTES {
        return Err(ArtifactError::TooLargeForOneRequest);
    }
    let sha256 = hex::encode(Sha256::digest(&body));
    match get(store, tenant, run, path).await {
        Ok(existing) if existing.size == size && existing.sha256 == sha256 => return Ok(existing),
        Ok(_) => delete(store, tenant, run, path).await?,
        Err(ArtifactError::NotFound) => {}
        Err(err) => return Err(err),
    }
    let new = NewArtifact {
        path: path.to_owned(),
        size,
        sha256,
        content_type,
        kind: Kind::File,
        step: None,
    };
    let (artifact, _) = register(store, tenant, run, new).await?;
    store
        .blobs
        .put(&blob_key(tenant, run, &artifact.path)?, body)
        .await?;
    // The bytes came in one request, under the body limit: checking them all in one
    // slice takes no longer than receiving them did.
    loop {
        let completion = Completion {
            path: artifact.path.as_str().to_owned(),
            parts: Vec::new(),
        };
        let completed = complete(
            store,
            marks,
            SINGLE_UPLOAD_MAX_BYTES,
            tenant,
            run,
            completion,
        )
        .await?;
        if let Completed::Sealed(artifact) = completed {
            return Ok(artifact);
        }
    }
}

/// Settles a sweep note on an artifact's object, once the URLs that could write it
/// have expired: a sealed artifact keeps its object (and has the next slice of its
/// checksum computed, if that is still under way); an upload still unfinished is
/// abandoned, so its bytes and its registration go; an object no artifact claims (one
/// written through an old URL after its artifact was deleted) is deleted. Answers
/// the bytes deleted, and whether the note is to be settled again later.
pub async fn settle(
    store: &Store,
    verify_slice_bytes: u64,
    note: &Note,
    run: RunId,
    path: &str,
) -> Result<(u64, bool)> {
    let tenant = Tenant::verified(note.tenant);
    let blob = BlobKey::parse(note.blob.as_str())?;
    let record = match ArtifactPath::parse(path) {
        Ok(path) => read(store, &record_key(&tenant, run, &path)).await?,
        Err(_) => None,
    };
    let current_upload = record
        .as_ref()
        .and_then(|artifact| artifact.pending.as_ref())
        .and_then(|pending| pending.upload_id.as_ref());
    if let Some(upload_id) = &note.upload_id
        && Some(upload_id) != current_upload
    {
        // Completed (and gone) or replaced by a later registration: nothing to keep.
        store.blobs.abort_multipart(&blob, upload_id).await?;
    }
    match record {
        Some(artifact) if artifact.is_ready() => {
            let started = std::time::Instant::now();
            let mut hashing = artifact.hashing.is_some();
            while hashing && started.elapsed() < BACKGROUND_HASHING {
                hashing = continue_hashing(store, verify_slice_bytes, &tenant, run, &artifact.path)
                    .await?
                    .is_some_and(|artifact| artifact.hashing.is_some());
            }
            Ok((0, hashing))
        }
        Some(artifact) if artifact.urls_until() > Some(store.now()) => Ok((0, false)),
        Some(artifact) => {
            // The registration goes first: a completion that seals it meanwhile keeps
            // its object, and one that comes after finds nothing to complete.
            match store
                .kv
                .delete(
                    &record_key(&tenant, run, &artifact.path),
                    Condition::Equals(READY.into(), Value::Bool(false)),
                )
                .await
            {
                Ok(()) => {}
                Err(StoreError::ConditionFailed) => return Ok((0, false)),
                Err(err) => return Err(err.into()),
            }
            let size = store.blobs.head(&blob).await?.map_or(0, |meta| meta.size);
            drop_upload(store, &blob, &artifact).await?;
            tracing::info!(tenant = %tenant.id(), run = %run, path, size, "abandoned upload removed");
            Ok((size, false))
        }
        None => {
            let size = store.blobs.head(&blob).await?.map_or(0, |meta| meta.size);
            if size > 0 {
                store.blobs.delete(&blob).await?;
                tracing::info!(tenant = %tenant.id(), run = %run, path, size, "unclaimed object removed");
            }
            Ok((size, false))
        }
    }
}

/// Sealed artifacts of a run, by path; with `kind` and `step`, only the ones taken at
/// that step (one query on the step index).
pub async fn list(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    kind: Option<Kind>,
    step: Option<i64>,
) -> Result<Vec<Artifact>> {
    runs::load(store, tenant, run).await?;
    let partition = runs::data_partition(tenant, run);
    let query = match (kind, step) {
        (Some(kind), Some(step)) => {
            Query::partition(partition).prefix(format!("k#{}#{}#", kind.as_str(), step_key(step)))
        }
        _ => Query::partition(partition).prefix("a#"),
    };
    let artifacts: Vec<Artifact> = sextant_storage::records::query_docs(&*store.kv, query).await?;
    Ok(artifacts
        .into_iter()
        .filter(|artifact| artifact.is_ready())
        .filter(|artifact| kind.is_none_or(|kind| artifact.kind == kind))
        .filter(|artifact| step.is_none_or(|step| artifact.step == Some(step)))
        .collect())
}

/// A sealed artifact of a run of the team; anything else is 404.
pub async fn get(store: &Store, tenant: &Tenant, run: RunId, path: &str) -> Result<Artifact> {
    let not_found = || ArtifactError::NotFound;
    let path = ArtifactPath::parse(path).map_err(|_| not_found())?;
    runs::load(store, tenant, run).await?;
    read(store, &record_key(tenant, run, &path))
        .await?
        .filter(Artifact::is_ready)
        .ok_or_else(not_found)
}

/// A sealed artifact and a short-lived URL to download it.
pub async fn download_url(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    path: &str,
) -> Result<(Artifact, String)> {
    let artifact = get(store, tenant, run, path).await?;
    let path = &artifact.path;
    let url = store
        .blobs
        .presign(
            &blob_key(tenant, run, path)?,
            Presign::Get,
            DOWNLOAD_URL_TTL,
        )
        .await?;
    Ok((artifact, url))
}

/// Deletes an artifact (sealed or not) and its object, releasing its storage.
pub async fn delete(store: &Store, tenant: &Tenant, run: RunId, path: &str) -> Result<()> {
    let path = ArtifactPath::parse(path).map_err(|_| ArtifactError::NotFound)?;
    let record = runs::load(store, tenant, run).await?.record;
    let artifact = read(store, &record_key(tenant, run, &path))
        .await?
        .ok_or_else(|| ArtifactError::NotFound)?;
    remove(store, runs::usage_owner(tenant, &record), &artifact).await
}

/// Drops an unfinished upload and its registration; a sealed artifact at the path is
/// left alone, and nothing there is no error (the abort may be a retry).
pub async fn abort_upload(store: &Store, tenant: &Tenant, run: RunId, path: &str) -> Result<()> {
    let path = ArtifactPath::parse(path)?;
    let record = runs::load(store, tenant, run).await?.record;
    match read(store, &record_key(tenant, run, &path)).await? {
        Some(artifact) if !artifact.is_ready() => {
            remove(store, runs::usage_owner(tenant, &record), &artifact).await
        }
        _ => Ok(()),
    }
}

async fn remove(store: &Store, owner: usage::Owner<'_>, artifact: &Artifact) -> Result<()> {
    let (tenant, run) = (owner.tenant, owner.run);
    let blob = blob_key(tenant, run, &artifact.path)?;
    match &artifact.pending {
        Some(Pending {
            upload_id: Some(upload_id),
            ..
        }) => store.blobs.abort_multipart(&blob, upload_id).await?,
        _ => store.blobs.delete(&blob).await?,
    }
    let ready = artifact.is_ready();
    let mut ops = vec![TxOp::Delete(
        record_key(tenant, run, &artifact.path),
        Condition::Equals(READY.into(), Value::Bool(ready)),
    )];
    if ready {
        ops.extend(usage::object_stored(
            owner,
            store.now(),
            -(artifact.size as i64),
        ));
        if let Some(step) = artifact.step {
            ops.push(TxOp::Delete(
                index_key(tenant, run, artifact.kind, step, &artifact.path),
                Condition::None,
            ));
        }
    }
    match store.kv.transact(ops).await {
        // Gone or changed meanwhile: another delete or a completion got there first.
        Ok(()) | Err(StoreError::TransactionFailed(_)) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Deletes every artifact of a run, for deleting the run.
pub async fn delete_all(store: &Store, owner: usage::Owner<'_>) -> Result<()> {
    let all: Vec<Artifact> = sextant_storage::records::query_docs(
        &*store.kv,
        Query::partition(runs::data_partition(owner.tenant, owner.run)).prefix("a#"),
    )
    .await?;
    for artifact in &all {
        remove(store, owner.clone(), artifact).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_and_free_of_traversal() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "complete",
            "a\\b",
        ] {
            assert!(ArtifactPath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ArtifactPath::parse(&"x".repeat(MAX_PATH_BYTES + 1)).is_err());
        for good in ["model.pt", "checkpoints/step-12000/model.pt", "complete/x"] {
            assert!(ArtifactPath::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn parts_are_at_least_16_mib_and_at_most_a_thousand() {
        assert_eq!(part_size_for(200 * 1024 * 1024), MIN_PART_BYTES);
        let huge: u64 = 100 * 1024 * 1024 * 1024;
        assert!(huge.div_ceil(part_size_for(huge)) <= MAX_PLANNED_PARTS);
        assert_eq!(part_size_for(huge) % (1024 * 1024), 0);
    }
}
