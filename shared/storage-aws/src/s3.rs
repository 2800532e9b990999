//! The S3 blob adapter. AWS SDK types stay in this file.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream as S3Body, DateTime};
use bytes::Bytes;
use time::OffsetDateTime;
use tokio_util::io::ReaderStream;

use sextant_storage::blob::{
    BlobBody, BlobError, BlobKey, BlobMeta, BlobPage, BlobResult, BlobStore, CREATE_ONLY,
    CompletedPart, Presign,
};

#[derive(Debug, Clone)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// Creates the bucket. Production buckets come from the SAM template; this serves
    /// tests and local setups.
    pub async fn create_bucket(&self) -> BlobResult<()> {
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }
}

fn map_error<E, R>(err: SdkError<E, R>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some("NoSuchKey" | "NotFound") => BlobError::NotFound,
        Some("SlowDown" | "ThrottlingException" | "RequestLimitExceeded") => BlobError::Throttled,
        // `PreconditionFailed`: a completion's `If-None-Match: *` met an object.
        Some(
            code @ ("NoSuchUpload" | "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall"
            | "MalformedXML" | "PreconditionFailed"),
        ) => BlobError::InvalidUpload(code.to_owned()),
        _ => BlobError::unavailable(err),
    }
}

fn to_offset(time: Option<&DateTime>) -> OffsetDateTime {
    time.and_then(|time| OffsetDateTime::from_unix_timestamp_nanos(time.as_nanos()).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn size(length: Option<i64>) -> u64 {
    length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, key: &BlobKey, body: Bytes) -> BlobResult<BlobMeta> {
        let size = body.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .body(S3Body::from(body))
            .send()
            .await
            .map_err(map_error)?;
        Ok(BlobMeta {
            key: key.clone(),
            size,
            modified: OffsetDateTime::now_utc(),
        })
    }

    async fn get(&self, key: &BlobKey) -> BlobResult<BlobBody> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(map_error)?;
        Ok(BlobBody {
            size: size(output.content_length),
            stream: Box::pin(ReaderStream::new(output.body.into_async_read())),
        })
    }

    async fn get_range(&self, key: &BlobKey, range: std::ops::Range<u64>) -> BlobResult<BlobBody> {
        if range.is_empty() {
            return Ok(BlobBody {
                size: 0,
                stream: Box::pin(futures::stream::empty()),
            });
        }
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(map_error)?;
        Ok(BlobBody {
            size: size(output.content_length),
            stream: Box::pin(ReaderStream::new(output.body.into_async_read())),
        })
    }

    async fn head(&self, key: &BlobKey) -> BlobResult<Option<BlobMeta>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(map_error)
        {
            Ok(output) => Ok(Some(BlobMeta {
                key: key.clone(),
                size: size(output.content_length),
                modified: to_offset(output.last_modified.as_ref()),
            })),
            Err(BlobError::NotFound) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> BlobResult<BlobPage> {
        let output = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(after.map(|key| key.as_str().to_owned()))
            .max_keys(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(map_error)?;
        let blobs = output
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|object| {
                let key = BlobKey::parse(object.key?).ok()?;
                Some(BlobMeta {
                    key,
                    size: size(object.size),
                    modified: to_offset(object.last_modified.as_ref()),
                })
            })
            .collect::<Vec<_>>();
        let next = if output.is_truncated.unwrap_or(false) {
            blobs.last().map(|blob| blob.key.clone())
        } else {
            None
        };
        Ok(BlobPage { blobs, next })
    }

    async fn delete(&self, key: &BlobKey) -> BlobResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn presign(
        &self,
        key: &BlobKey,
        op: Presign,
        expires_in: Duration,
    ) -> BlobResult<String> {
        let config = PresigningConfig::expires_in(expires_in).map_err(BlobError::unavailable)?;
        let request = match op {
            Presign::Get => self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .presigned(config)
                .await
                .map_err(map_error)?,
            Presign::Put { content_length } => self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .content_length(i64::try_from(content_length).map_err(BlobError::unavailable)?)
                .if_none_match(CREATE_ONLY.1)
                .presigned(config)
                .await
                .map_err(map_error)?,
        };
        Ok(request.uri().to_owned())
    }

    async fn start_multipart(&self, key: &BlobKey) -> BlobResult<String> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(map_error)?;
        output
            .upload_id
            .ok_or_else(|| BlobError::unavailable(anyhow::anyhow!("S3 gave no upload id")))
    }

    async fn presign_part(
        &self,
        key: &BlobKey,
        upload_id: &str,
        number: u32,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> BlobResult<String> {
        let config = PresigningConfig::expires_in(expires_in).map_err(BlobError::unavailable)?;
        let content_length = content_length
            .map(i64::try_from)
            .transpose()
            .map_err(BlobError::unavailable)?;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(i32::try_from(number).map_err(BlobError::unavailable)?)
            .set_content_length(content_length)
            .presigned(config)
            .await
            .map_err(map_error)?;
        Ok(request.uri().to_owned())
    }

    async fn complete_multipart(
        &self,
        key: &BlobKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> BlobResult<()> {
        let parts = parts
            .iter()
            .map(|part| {
                Ok(aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(i32::try_from(part.number).map_err(BlobError::unavailable)?)
                    .e_tag(&part.etag)
                    .build())
            })
            .collect::<BlobResult<Vec<_>>>()?;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            // An assembled upload never replaces an object, a sealed artifact above all.
            .if_none_match(CREATE_ONLY.1)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn abort_multipart(&self, key: &BlobKey, upload_id: &str) -> BlobResult<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .send()
            .await
            .map_err(map_error)
        {
            Ok(_) | Err(BlobError::InvalidUpload(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }
}
