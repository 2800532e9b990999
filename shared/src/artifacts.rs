//! Artifacts: files a run produces (checkpoints, models, code snapshots, any file).
//!
//! Bytes never pass through a function. Registering an artifact answers presigned
//! URLs, one `PUT` up to `SINGLE_UPLOAD_MAX_BYTES` and a multipart plan above it; the
//! client uploads straight to the blob store and then completes, and only then does the
//! server check the stored size and SHA-256 (streaming the object, so memory stays
//! flat whatever its size) and seal the artifact. A mismatch removes the object and
//! the registration, so nothing half-registered stays behind.
//!
//! Storage: `{tenant}#run#{run}` / `a#{path}` holds the record (with a `ready` flag
//! that makes sealing happen once); `k#{kind}#{step}#{path}` indexes artifacts taken at
//! a step, so "the checkpoint for step 12,000" is one query. Objects live at
//! `{tenant}/runs/{run}/artifacts/{path}`.

use std::time::Duration;

use axum::http::StatusCode;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::{ApiError, ApiResult};
use crate::ids::RunId;
use crate::records::{doc_item, read_doc};
use crate::runs;
use crate::series::step_key;
use crate::state::AppState;
use crate::storage::blob::{BlobError, BlobKey, CompletedPart, MAX_PARTS, Presign};
use crate::storage::kv::{Condition, Key, Query, StoreError, TxOp, Value};
use crate::tenancy::Tenant;
use crate::usage;

/// Larger artifacts upload in parts.
pub const SINGLE_UPLOAD_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const MIN_PART_BYTES: u64 = 16 * 1024 * 1024;
/// Plans have at most this many parts, so a plan's URLs fit in one response.
pub const MAX_PLANNED_PARTS: u64 = 1_000;
pub const MAX_ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024 * 1024;
pub const MAX_PATH_BYTES: usize = 512;
pub const MAX_PATH_SEGMENTS: usize = 32;
const UPLOAD_URL_TTL: Duration = Duration::from_secs(60 * 60);
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

/// A path inside a run: relative, `/`-separated, no empty, `.` or `..` segments, at
/// most 512 bytes and 32 segments. `complete` alone is reserved for the completion endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    pub fn parse(text: &str) -> ApiResult<Self> {
        let refuse = |why: &str| {
            Err(ApiError::invalid(
                "invalid_path",
                format!(
                    "artifact paths are relative, at most {MAX_PATH_BYTES} bytes, without empty, '.' or '..' segments: {why}"
                ),
            ))
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
}

impl Artifact {
    pub fn is_ready(&self) -> bool {
        self.pending.is_none()
    }

    /// The artifact as clients see it: `status` instead of the upload's internals.
    pub fn into_view(self) -> ArtifactView {
        let status = if self.is_ready() {
            ArtifactStatus::Ready
        } else {
            ArtifactStatus::Pending
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
        }
    }
}

/// An artifact as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ArtifactView {
    pub path: ArtifactPath,
    /// Bytes.
    pub size: u64,
    /// The content's SHA-256, lowercase hex.
    pub sha256: String,
    pub content_type: String,
    pub kind: Kind,
    /// The step the artifact was taken at (a checkpoint's), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub status: ArtifactStatus,
}

/// `pending` from registration until the upload is completed and checked; only `ready`
/// artifacts are listed and downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactStatus {
    Pending,
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

pub fn blob_key(tenant: &Tenant, run: RunId, path: &ArtifactPath) -> ApiResult<BlobKey> {
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

fn check_sha256(text: &str) -> ApiResult<String> {
    let hex = text.to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(ApiError::invalid(
            "invalid_sha256",
            "sha256 is the file's SHA-256 as 64 hex digits",
        ))
    }
}

async fn read(state: &AppState, key: &Key) -> ApiResult<Option<Artifact>> {
    Ok(state
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
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    new: NewArtifact,
) -> ApiResult<(Artifact, UploadPlan)> {
    let path = ArtifactPath::parse(&new.path)?;
    let sha256 = check_sha256(&new.sha256)?;
    if new.size > MAX_ARTIFACT_BYTES {
        return Err(ApiError::invalid(
            "artifact_too_large",
            format!("an artifact is at most {MAX_ARTIFACT_BYTES} bytes"),
        ));
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
        return Err(ApiError::invalid(
            "invalid_content_type",
            "content_type is a MIME type of at most 255 printable characters",
        ));
    }
    runs::load(state, tenant, run).await?;
    let key = record_key(tenant, run, &path);
    let blob = blob_key(tenant, run, &path)?;

    let existing = read(state, &key).await?;
    if existing.is_none() {
        check_namespace(state, tenant, run, &path).await?;
    }
    let artifact = match existing {
        Some(existing) if existing.is_ready() => {
            return Err(ApiError::conflict(
                "artifact_exists",
                format!("{} is already stored; delete it first", path.as_str()),
            ));
        }
        Some(mut existing) if existing.size == new.size && existing.sha256 == sha256 => {
            // The same upload goes on; what the file is may be restated.
            if (existing.kind, existing.step, &existing.content_type)
                != (new.kind, new.step, &content_type)
            {
                existing.kind = new.kind;
                existing.step = new.step;
                existing.content_type = content_type;
                state
                    .kv
                    .put(
                        doc_item(key, &existing)?.with(READY, Value::Bool(false)),
                        Condition::Equals(READY.into(), Value::Bool(false)),
                    )
                    .await?;
            }
            existing
        }
        stale => {
            if let Some(Pending {
                upload_id: Some(upload_id),
                ..
            }) = stale.and_then(|stale| stale.pending)
            {
                state.blobs.abort_multipart(&blob, &upload_id).await?;
            }
            let multipart = new.size > SINGLE_UPLOAD_MAX_BYTES;
            let upload_id = if multipart {
                Some(state.blobs.start_multipart(&blob).await?)
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
                created_at: state.now(),
                pending: Some(Pending {
                    upload_id,
                    part_size: part_size_for(new.size),
                    measured: false,
                }),
            };
            state
                .kv
                .put(
                    doc_item(key, &artifact)?.with(READY, Value::Bool(false)),
                    Condition::None,
                )
                .await?;
            artifact
        }
    };
    let plan = plan(state, &blob, &artifact).await?;
    Ok((artifact, plan))
}

/// Keeps a run's artifacts a tree, as in a file system (and in the local blob
/// directory): a path cannot be both an artifact and a directory of others.
async fn check_namespace(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    path: &ArtifactPath,
) -> ApiResult<()> {
    let conflict = |other: &str| {
        Err(ApiError::conflict(
            "path_conflict",
            format!(
                "{} and {other} cannot both be artifacts: one is a directory of the other",
                path.as_str()
            ),
        ))
    };
    let text = path.as_str();
    let ancestors = text.match_indices('/').map(|(at, _)| &text[..at]);
    let found = futures::future::try_join_all(ancestors.map(|ancestor| async move {
        let key = Key::new(runs::data_partition(tenant, run), format!("a#{ancestor}"));
        state.kv.get(&key).await.map(|item| item.map(|_| ancestor))
    }))
    .await?;
    if let Some(ancestor) = found.into_iter().flatten().next() {
        return conflict(ancestor);
    }
    let below = state
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

async fn plan(state: &AppState, blob: &BlobKey, artifact: &Artifact) -> ApiResult<UploadPlan> {
    let pending = artifact
        .pending
        .as_ref()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("planning a sealed artifact")))?;
    let Some(upload_id) = &pending.upload_id else {
        let url = state
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
            upload: SingleUpload { method: "PUT", url },
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
        let url = state
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

/// Seals an uploaded artifact after checking its size and SHA-256; a mismatch
/// removes the object and the registration. Completing a sealed artifact again
/// answers it unchanged.
pub async fn complete(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    completion: Completion,
) -> ApiResult<Artifact> {
    let path = ArtifactPath::parse(&completion.path)?;
    runs::load(state, tenant, run).await?;
    let key = record_key(tenant, run, &path);
    let mut artifact = read(state, &key)
        .await?
        .ok_or_else(|| ApiError::not_found("artifact"))?;
    let Some(pending) = artifact.pending.clone() else {
        return Ok(artifact);
    };
    let blob = blob_key(tenant, run, &path)?;
    if let Some(upload_id) = &pending.upload_id {
        if completion.parts.is_empty() {
            return Err(ApiError::invalid(
                "missing_parts",
                "a multipart upload completes with its parts' numbers and ETags",
            ));
        }
        if let Err(err) = state
            .blobs
            .complete_multipart(&blob, upload_id, &completion.parts)
            .await
        {
            // Another completion of this upload (a retry, or one at the same time)
            // assembled it already: the object it made is checked like any other.
            let assembled = matches!(err, BlobError::InvalidUpload(_))
                && state.blobs.head(&blob).await?.is_some();
            if !assembled {
                return Err(err.into());
            }
        }
    }
    let stored = state.blobs.head(&blob).await?.ok_or_else(|| {
        ApiError::conflict(
            "upload_missing",
            "nothing has been uploaded for this artifact yet",
        )
    })?;
    if pending.measured {
        artifact.size = stored.size;
        artifact.sha256 = sha256_of(state, &blob).await?;
    }
    let refusal = if pending.measured {
        None
    } else if stored.size != artifact.size {
        Some(ApiError::conflict(
            "size_mismatch",
            format!(
                "{} bytes were uploaded, {} registered; register and upload again",
                stored.size, artifact.size
            ),
        ))
    } else if sha256_of(state, &blob).await? != artifact.sha256 {
        Some(ApiError::conflict(
            "checksum_mismatch",
            "the uploaded bytes' SHA-256 differs from the registered one; register and upload again",
        ))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        state.blobs.delete(&blob).await?;
        if let Some(upload_id) = &pending.upload_id {
            // Gone already, unless the object checked was a stale one left at this
            // path by an earlier registration: its parts go too.
            state.blobs.abort_multipart(&blob, upload_id).await?;
        }
        state
            .kv
            .delete(&key, Condition::Equals(READY.into(), Value::Bool(false)))
            .await
            .or_else(|err| match err {
                StoreError::ConditionFailed => Ok(()),
                err => Err(err),
            })?;
        return Err(refusal);
    }

    artifact.pending = None;
    crate::metering::mark_storer(state, tenant).await?;
    let mut ops = vec![
        TxOp::Put(
            doc_item(key.clone(), &artifact)?.with(READY, Value::Bool(true)),
            Condition::Equals(READY.into(), Value::Bool(false)),
        ),
        usage::storage_change(tenant, artifact.size as i64),
    ];
    if let Some(step) = artifact.step {
        ops.push(TxOp::Put(
            doc_item(
                index_key(tenant, run, artifact.kind, step, &path),
                &artifact,
            )?,
            Condition::None,
        ));
    }
    match state.kv.transact(ops).await {
        Ok(()) => Ok(artifact),
        // A concurrent completion sealed it first.
        Err(StoreError::TransactionFailed(_)) => read(state, &key)
            .await?
            .filter(Artifact::is_ready)
            .ok_or_else(|| ApiError::not_found("artifact")),
        Err(err) => Err(err.into()),
    }
}

/// Starts a multipart upload of a file whose size and checksum are not known (MLflow's
/// proxied multipart uploads give only the number of parts); `complete` takes both
/// from the assembled object. An artifact already at the path is replaced, as MLflow
/// overwrites. Answers the upload id and a URL for each part.
pub async fn register_measured(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    path: &str,
    parts: u32,
) -> ApiResult<(String, Vec<String>)> {
    let path = ArtifactPath::parse(path)?;
    if !(1..=MAX_PARTS).contains(&parts) {
        return Err(ApiError::invalid(
            "invalid_parts",
            format!("an upload has 1 to {MAX_PARTS} parts"),
        ));
    }
    runs::load(state, tenant, run).await?;
    let key = record_key(tenant, run, &path);
    match read(state, &key).await? {
        Some(existing) => remove(state, tenant, run, &existing).await?,
        None => check_namespace(state, tenant, run, &path).await?,
    }
    let blob = blob_key(tenant, run, &path)?;
    let upload_id = state.blobs.start_multipart(&blob).await?;
    let artifact = Artifact {
        path,
        size: 0,
        sha256: String::new(),
        content_type: "application/octet-stream".to_owned(),
        kind: Kind::File,
        step: None,
        created_at: state.now(),
        pending: Some(Pending {
            upload_id: Some(upload_id.clone()),
            part_size: 0,
            measured: true,
        }),
    };
    state
        .kv
        .put(
            doc_item(key, &artifact)?.with(READY, Value::Bool(false)),
            Condition::None,
        )
        .await?;
    let mut urls = Vec::with_capacity(parts as usize);
    for number in 1..=parts {
        urls.push(
            state
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
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    path: &str,
    body: bytes::Bytes,
    content_type: Option<String>,
) -> ApiResult<Artifact> {
    let size = body.len() as u64;
    if size > SINGLE_UPLOAD_MAX_BYTES {
        return Err(ApiError::invalid(
            "artifact_too_large",
            format!("files above {SINGLE_UPLOAD_MAX_BYTES} bytes upload in parts"),
        ));
    }
    let sha256 = hex::encode(Sha256::digest(&body));
    match get(state, tenant, run, path).await {
        Ok(existing) if existing.size == size && existing.sha256 == sha256 => return Ok(existing),
        Ok(_) => delete(state, tenant, run, path).await?,
        Err(err) if err.status() == StatusCode::NOT_FOUND => {}
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
    let (artifact, _) = register(state, tenant, run, new).await?;
    state
        .blobs
        .put(&blob_key(tenant, run, &artifact.path)?, body)
        .await?;
    let completion = Completion {
        path: artifact.path.as_str().to_owned(),
        parts: Vec::new(),
    };
    complete(state, tenant, run, completion).await
}

/// The SHA-256 of a stored object, read as a stream.
async fn sha256_of(state: &AppState, blob: &BlobKey) -> ApiResult<String> {
    let body = state.blobs.get(blob).await?;
    let digest = body
        .stream
        .try_fold(Sha256::new(), |mut digest, chunk| async move {
            digest.update(&chunk);
            Ok(digest)
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(hex::encode(digest.finalize()))
}

/// Sealed artifacts of a run, by path; with `kind` and `step`, only the ones taken at
/// that step (one query on the step index).
pub async fn list(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    kind: Option<Kind>,
    step: Option<i64>,
) -> ApiResult<Vec<Artifact>> {
    runs::load(state, tenant, run).await?;
    let partition = runs::data_partition(tenant, run);
    let query = match (kind, step) {
        (Some(kind), Some(step)) => {
            Query::partition(partition).prefix(format!("k#{}#{}#", kind.as_str(), step_key(step)))
        }
        _ => Query::partition(partition).prefix("a#"),
    };
    let artifacts: Vec<Artifact> = crate::records::query_docs(&*state.kv, query).await?;
    Ok(artifacts
        .into_iter()
        .filter(|artifact| artifact.is_ready())
        .filter(|artifact| kind.is_none_or(|kind| artifact.kind == kind))
        .filter(|artifact| step.is_none_or(|step| artifact.step == Some(step)))
        .collect())
}

/// A sealed artifact of a run of the team; anything else is 404.
pub async fn get(state: &AppState, tenant: &Tenant, run: RunId, path: &str) -> ApiResult<Artifact> {
    let not_found = || ApiError::not_found("artifact");
    let path = ArtifactPath::parse(path).map_err(|_| not_found())?;
    runs::load(state, tenant, run).await?;
    read(state, &record_key(tenant, run, &path))
        .await?
        .filter(Artifact::is_ready)
        .ok_or_else(not_found)
}

/// A sealed artifact and a short-lived URL to download it.
pub async fn download_url(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    path: &str,
) -> ApiResult<(Artifact, String)> {
    let artifact = get(state, tenant, run, path).await?;
    let path = &artifact.path;
    let url = state
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
pub async fn delete(state: &AppState, tenant: &Tenant, run: RunId, path: &str) -> ApiResult<()> {
    let path = ArtifactPath::parse(path).map_err(|_| ApiError::not_found("artifact"))?;
    runs::load(state, tenant, run).await?;
    let artifact = read(state, &record_key(tenant, run, &path))
        .await?
        .ok_or_else(|| ApiError::not_found("artifact"))?;
    remove(state, tenant, run, &artifact).await
}

/// Drops an unfinished upload and its registration; a sealed artifact at the path is
/// left alone, and nothing there is no error (the abort may be a retry).
pub async fn abort_upload(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    path: &str,
) -> ApiResult<()> {
    let path = ArtifactPath::parse(path)?;
    runs::load(state, tenant, run).await?;
    match read(state, &record_key(tenant, run, &path)).await? {
        Some(artifact) if !artifact.is_ready() => remove(state, tenant, run, &artifact).await,
        _ => Ok(()),
    }
}

async fn remove(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    artifact: &Artifact,
) -> ApiResult<()> {
    let blob = blob_key(tenant, run, &artifact.path)?;
    match &artifact.pending {
        Some(Pending {
            upload_id: Some(upload_id),
            ..
        }) => state.blobs.abort_multipart(&blob, upload_id).await?,
        _ => state.blobs.delete(&blob).await?,
    }
    let ready = artifact.is_ready();
    let mut ops = vec![TxOp::Delete(
        record_key(tenant, run, &artifact.path),
        Condition::Equals(READY.into(), Value::Bool(ready)),
    )];
    if ready {
        ops.push(usage::storage_change(tenant, -(artifact.size as i64)));
        if let Some(step) = artifact.step {
            ops.push(TxOp::Delete(
                index_key(tenant, run, artifact.kind, step, &artifact.path),
                Condition::None,
            ));
        }
    }
    match state.kv.transact(ops).await {
        // Gone or changed meanwhile: another delete or a completion got there first.
        Ok(()) | Err(StoreError::TransactionFailed(_)) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Deletes every artifact of a run, for deleting the run.
pub async fn delete_all(state: &AppState, tenant: &Tenant, run: RunId) -> ApiResult<()> {
    let all: Vec<Artifact> = crate::records::query_docs(
        &*state.kv,
        Query::partition(runs::data_partition(tenant, run)).prefix("a#"),
    )
    .await?;
    for artifact in &all {
        remove(state, tenant, run, artifact).await?;
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
