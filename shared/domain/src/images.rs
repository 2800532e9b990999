//! Image series: PNG or JPEG images logged at steps (samples, confusion matrices,
//! attention maps). Each image is a blob; an index item per image keeps them in step
//! order per series. An image counts as one logged point, and its bytes as storage.
//!
//! Storage: `{tenant}#run#{run}` / `i#{series}#{step}#{id}` indexes the image stored
//! at `{tenant}/runs/{run}/images/{id}.{png|jpg}`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::artifacts::DOWNLOAD_URL_TTL;
use crate::cursor::InvalidCursor;
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::RunId;
use crate::metering;
use crate::runs;
use crate::runs::RunError;
use crate::series::SeriesError;
use crate::series::batch::Intake;
use crate::series::{check_name, step_key};
use crate::sweep::{self, Claimant, Note};
use crate::tenancy::Tenant;
use crate::usage;
use crate::usage::UsageError;
use sextant_storage::Store;
use sextant_storage::blob::BlobError;
use sextant_storage::blob::{BlobKey, Presign};
use sextant_storage::kv::{Condition, Key, Query, StoreError, TxOp};
use sextant_storage::records::doc_item;

/// Images travel in the request body, under the API's body limit.
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Images one page of a listing answers at most (each with its own URL).
pub const MAX_LISTED: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Format {
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/jpeg")]
    Jpeg,
}

impl Format {
    /// Recognises an image by its first bytes, whatever the request claims.
    fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else {
            None
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Image {
    pub id: String,
    pub series: String,
    pub step: i64,
    pub content_type: Format,
    pub size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

fn index_key(tenant: &Tenant, run: RunId, image: &Image) -> Key {
    Key::new(
        runs::data_partition(tenant, run),
        format!("i#{}#{}#{}", image.series, step_key(image.step), image.id),
    )
}

/// Why an image is refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("an image is at most {} bytes", MAX_IMAGE_BYTES)]
    TooLarge,
    #[error("send a PNG or JPEG image as the body")]
    NotAnImage,
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Cursor(#[from] InvalidCursor),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl Coded for ImageError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge => ErrorCode::ImageTooLarge,
            Self::NotAnImage => ErrorCode::InvalidImage,
            Self::Series(err) => err.code(),
            Self::Run(err) => err.code(),
            Self::Usage(err) => err.code(),
            Self::Cursor(err) => err.code(),
            Self::Store(err) => err.code(),
            Self::Blob(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Series(err) => err.into(),
            Self::Run(err) => err.into(),
            Self::Usage(err) => err.into(),
            Self::Store(err) => err.into(),
            Self::Blob(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = ImageError> = std::result::Result<T, E>;

fn blob_key(tenant: &Tenant, run: RunId, image: &Image) -> Result<BlobKey> {
    Ok(BlobKey::parse(format!(
        "{}runs/{run}/images/{}.{}",
        tenant.blob_prefix(),
        image.id,
        image.content_type.extension()
    ))?)
}

/// An image's id: a digest of where it goes and of its bytes, so an upload retried
/// after a lost answer lands on the image the first attempt stored. 26 hex digits, the
/// length of the ULIDs images were named by before.
fn image_id(series: &str, step: i64, bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(series.as_bytes());
    digest.update([0]);
    digest.update(step.to_be_bytes());
    digest.update(bytes);
    hex::encode(digest.finalize())[..26].to_owned()
}

async fn existing(store: &Store, index: &Key) -> Result<Option<Image>> {
    Ok(sextant_storage::records::get_doc(&*store.kv, index).await?)
}

/// Stores one image of a series at a step, once: the same bytes sent again to the same
/// series and step answer the image already stored, and are neither stored nor counted
/// again. Refused on an ended run, like points.
pub async fn log(
    store: &Store,
    intake: Intake<'_>,
    tenant: &Tenant,
    run: RunId,
    series: &str,
    step: i64,
    bytes: bytes::Bytes,
) -> Result<Image> {
    check_name(series)?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge);
    }
    let format = Format::sniff(&bytes).ok_or(ImageError::NotAnImage)?;
    let mut record = runs::load(store, tenant, run).await?.record;
    let now = store.now();
    let image = Image {
        id: image_id(series, step, &bytes),
        series: series.to_owned(),
        step,
        content_type: format,
        size: bytes.len() as u64,
        created_at: now,
    };
    let index = index_key(tenant, run, &image);
    // A retry is answered as the first attempt was, even once the run has ended.
    if let Some(stored) = existing(store, &index).await? {
        return Ok(stored);
    }
    runs::accept_activity(&mut record, now, intake.heartbeat_timeout)?;
    let blob = blob_key(tenant, run, &image)?;
    let limit = usage::check_quota(
        store,
        intake.meter.points_cap,
        &intake.meter.marks.unstopped,
        tenant,
        now,
        1,
    )
    .await?;
    metering::mark_active(store, intake.meter.marks, tenant, now).await?;
    metering::mark_storer(store, intake.meter.marks, tenant).await?;
    // Should this process die between storing the object and indexing it, the sweep
    // finds the object unclaimed and deletes it.
    let note = Note {
        tenant: tenant.id(),
        blob: blob.to_string(),
        upload_id: None,
        claimant: Claimant::Image {
            run,
            index: index.sk.clone(),
        },
    };
    sweep::expect(&*store.kv, &note, now).await?;
    if let Err(err) = store.blobs.put(&blob, bytes).await {
        // The put may have stored the object before failing; unindexed, nothing
        // would ever find it to delete it.
        if let Err(cleanup) = store.blobs.delete(&blob).await {
            tracing::warn!(error = %cleanup, "could not remove an image whose upload failed");
        }
        return Err(err.into());
    }
    let mut ops = vec![TxOp::Put(
        doc_item(index.clone(), &image)?,
        Condition::NotExists,
    )];
    let counters = ops.len();
    ops.extend(usage::logged(
        limit.map(usage::Limit::points),
        tenant,
        now,
        1,
        image.size,
    ));
    let size = i64::try_from(image.size).unwrap_or(i64::MAX);
    ops.push(usage::run_counted(
        runs::usage_owner(tenant, &record),
        1,
        size,
        usage::moment_of(now, size),
    ));
    let committed = store.kv.transact(ops).await;
    if let Err(StoreError::TransactionFailed(failed)) = &committed
        && failed.contains(&0)
        && let Some(stored) = existing(store, &index).await?
    {
        // A twin of this upload indexed the same bytes first; the object is theirs.
        return Ok(stored);
    }
    if let Err(err) = committed {
        // Unindexed, the object would be storage nobody can see or delete; but an
        // error of unknown outcome may have indexed it after all.
        let indexed = match &err {
            StoreError::TransactionFailed(_) | StoreError::TransactionConflict => false,
            _ => store
                .kv
                .get(&index)
                .await
                .map_or(true, |item| item.is_some()),
        };
        if !indexed {
            store.blobs.delete(&blob).await?;
        }
        return Err(match err {
            StoreError::TransactionFailed(failed)
                if failed.contains(&(counters + usage::CAPPED_OP)) =>
            {
                // Only a limit puts a condition there.
                match limit {
                    Some(limit) => limit.refusal(now).into(),
                    None => StoreError::TransactionFailed(failed).into(),
                }
            }
            err => err.into(),
        });
    }
    Ok(image)
}

/// Settles a sweep note on an image's object: kept while its index claims it, else
/// deleted (its process died before indexing it). Answers the bytes deleted.
pub async fn settle(store: &Store, note: &Note, run: RunId, index: &str) -> Result<u64> {
    let tenant = Tenant::verified(note.tenant);
    let key = Key::new(runs::data_partition(&tenant, run), index);
    if store.kv.get(&key).await?.is_some() {
        return Ok(0);
    }
    let blob = BlobKey::parse(note.blob.as_str())?;
    let size = store.blobs.head(&blob).await?.map_or(0, |meta| meta.size);
    store.blobs.delete(&blob).await?;
    if size > 0 {
        tracing::info!(tenant = %tenant.id(), run = %run, size, "unindexed image removed");
    }
    Ok(size)
}

/// An image and a short-lived URL to fetch it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Listed {
    #[serde(flatten)]
    pub image: Image,
    /// Fetches the image for the next five minutes.
    pub url: String,
}

/// Where a page of a listing ended: its last image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedUpTo {
    step: i64,
    id: String,
}

impl ListedUpTo {
    pub fn cursor(&self) -> String {
        crate::cursor::encode(self)
    }

    pub fn from_cursor(cursor: &str) -> Result<Self, InvalidCursor> {
        crate::cursor::decode(cursor)
    }
}

/// A page of a listing, and where the next one starts if there is more.
#[derive(Debug)]
pub struct ListedPage {
    pub images: Vec<Listed>,
    pub next: Option<ListedUpTo>,
}

/// Images of one series in step order, within `[from, to]` and after `after` (where
/// an earlier page ended), with download URLs: at most `limit` (up to `MAX_LISTED`).
pub async fn list(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    series: &str,
    (from, to): (Option<i64>, Option<i64>),
    after: Option<&ListedUpTo>,
    limit: usize,
) -> Result<ListedPage> {
    let limit = limit.clamp(1, MAX_LISTED);
    check_name(series)?;
    runs::load(store, tenant, run).await?;
    let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
    let mut start_after = None;
    if let Some(after) = after {
        if after.step > to {
            return Ok(ListedPage {
                images: Vec::new(),
                next: None,
            });
        }
        // A cursor before the range (from a wider listing) starts at the range.
        if after.step >= from {
            start_after = Some(format!("i#{series}#{}#{}", step_key(after.step), after.id));
        }
    }
    let mut query = Query::partition(runs::data_partition(tenant, run)).between(
        format!("i#{series}#{}", step_key(from)),
        format!("i#{series}#{}#~", step_key(to)),
    );
    let mut images: Vec<Image> = Vec::new();
    let more = loop {
        query = query.limit(limit - images.len()).after(start_after);
        let page = store.kv.query(query.clone()).await?;
        for item in &page.items {
            images.push(sextant_storage::records::read_doc(item)?);
        }
        start_after = page.next;
        if start_after.is_none() || images.len() == limit {
            break start_after.is_some();
        }
    };
    let mut listed = Vec::with_capacity(images.len());
    for image in images {
        listed.push(with_url(store, tenant, run, image).await?);
    }
    let next = listed.last().filter(|_| more).map(|last| ListedUpTo {
        step: last.image.step,
        id: last.image.id.clone(),
    });
    Ok(ListedPage {
        images: listed,
        next,
    })
}

/// A run's image series: how many images each holds and over which steps.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesImages {
    pub count: u64,
    pub first_step: i64,
    pub last_step: i64,
}

pub async fn series(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
) -> Result<std::collections::BTreeMap<String, SeriesImages>> {
    runs::load(store, tenant, run).await?;
    let mut series = std::collections::BTreeMap::<String, SeriesImages>::new();
    // Page by page: memory holds a page and a line per series, however many images.
    let mut query = Query::partition(runs::data_partition(tenant, run)).prefix("i#");
    loop {
        let page = store.kv.query(query.clone()).await?;
        for item in &page.items {
            let image: Image = sextant_storage::records::read_doc(item)?;
            let entry = series.entry(image.series).or_insert(SeriesImages {
                count: 0,
                first_step: image.step,
                last_step: image.step,
            });
            entry.count += 1;
            entry.first_step = entry.first_step.min(image.step);
            entry.last_step = entry.last_step.max(image.step);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(series),
        }
    }
}

/// The newest `count` images of one series (the last in step order), oldest first.
pub async fn latest(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    series: &str,
    count: usize,
) -> Result<Vec<Listed>> {
    check_name(series)?;
    let query = Query::partition(runs::data_partition(tenant, run))
        .prefix(format!("i#{series}#"))
        .reverse()
        .limit(count);
    let page = store.kv.query(query).await?;
    let mut listed = Vec::with_capacity(page.items.len());
    for item in page.items.iter().rev() {
        listed.push(
            with_url(
                store,
                tenant,
                run,
                sextant_storage::records::read_doc(item)?,
            )
            .await?,
        );
    }
    Ok(listed)
}

async fn with_url(store: &Store, tenant: &Tenant, run: RunId, image: Image) -> Result<Listed> {
    let url = store
        .blobs
        .presign(
            &blob_key(tenant, run, &image)?,
            Presign::Get,
            DOWNLOAD_URL_TTL,
        )
        .await?;
    Ok(Listed { image, url })
}

/// Deletes every image of a run, for deleting the run.
pub async fn delete_all(store: &Store, owner: usage::Owner<'_>) -> Result<()> {
    let (tenant, run) = (owner.tenant, owner.run);
    let mut query = Query::partition(runs::data_partition(tenant, run)).prefix("i#");
    loop {
        let page = store.kv.query(query.clone()).await?;
        for item in &page.items {
            let image: Image = sextant_storage::records::read_doc(item)?;
            store.blobs.delete(&blob_key(tenant, run, &image)?).await?;
            let mut ops = vec![TxOp::Delete(
                index_key(tenant, run, &image),
                Condition::Exists,
            )];
            ops.extend(usage::object_stored(
                owner.clone(),
                store.now(),
                -(image.size as i64),
            ));
            match store.kv.transact(ops).await {
                Ok(()) | Err(StoreError::TransactionFailed(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_magic_bytes() {
        assert_eq!(Format::sniff(b"\x89PNG\r\n\x1a\nrest"), Some(Format::Png));
        assert_eq!(Format::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(Format::sniff(b"GIF89a"), None);
        assert_eq!(Format::sniff(b""), None);
    }
}
