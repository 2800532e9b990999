//! The AWS adapters of the storage ports: DynamoDB for the key-value port, S3 for the
//! blob port, SES for the mail port. What the Lambda functions run on; AWS SDK types
//! never leave this crate.

pub mod dynamo;
pub mod s3;
pub mod ses;

use std::sync::Arc;

use anyhow::Context;
use sextant_storage::Storage;

pub use dynamo::{DynamoKv, TableSetup};
pub use s3::S3Blobs;
pub use ses::SesMailer;

/// The SDK's configuration from the usual AWS environment (credentials, region), on
/// `endpoint_url` when given.
async fn sdk_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// The key-value adapter alone, on `table` at `endpoint_url` (AWS's when `None`): for
/// setting the table up before anything runs on it.
pub async fn dynamo(table: &str, endpoint_url: Option<&str>) -> DynamoKv {
    DynamoKv::new(
        aws_sdk_dynamodb::Client::new(&sdk_config(endpoint_url).await),
        table,
    )
}

/// Where the AWS adapters point: read once at cold start.
#[derive(Debug, Clone)]
pub struct AwsStorageConfig {
    pub table: String,
    pub bucket: String,
    /// Set for emulators (moto) and other S3/DynamoDB-compatible endpoints; S3 then
    /// uses path-style addressing.
    pub endpoint_url: Option<String>,
}

/// Whether S3 is not AWS's: an endpoint of its own (`AWS_ENDPOINT_URL_S3`, the SDK's
/// own variable, when DynamoDB and S3 are different engines) or for every service.
/// Such engines (MinIO, Ceph) answer only path-style addresses.
fn custom_s3_endpoint(endpoint_url: Option<&str>) -> bool {
    endpoint_url.is_some()
        || ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|name| std::env::var_os(name).is_some())
}

impl AwsStorageConfig {
    /// `SEXTANT_TABLE`, `SEXTANT_BUCKET`, and optionally `SEXTANT_AWS_ENDPOINT_URL` (one
    /// endpoint for both; the SDK's `AWS_ENDPOINT_URL_DYNAMODB` and
    /// `AWS_ENDPOINT_URL_S3` set one for each).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        Ok(Self {
            table: var("SEXTANT_TABLE")?,
            bucket: var("SEXTANT_BUCKET")?,
            endpoint_url: std::env::var("SEXTANT_AWS_ENDPOINT_URL").ok(),
        })
    }

    /// Builds the SDK clients once; credentials and region come from the usual AWS
    /// environment (the Lambda role in production).
    pub async fn connect(&self) -> (DynamoKv, S3Blobs) {
        let sdk = self.sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let s3_config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(custom_s3_endpoint(self.endpoint_url.as_deref()))
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(s3_config);
        (
            DynamoKv::new(dynamo, &self.table),
            S3Blobs::new(s3, &self.bucket),
        )
    }

    /// The mail adapter, sending as `from` (an identity SES has verified), on the same
    /// endpoint as the storage adapters.
    pub async fn mailer(&self, from: String) -> SesMailer {
        SesMailer::new(&self.sdk_config().await, from)
    }

    async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config(self.endpoint_url.as_deref()).await
    }

    pub async fn storage(&self) -> Storage {
        let (kv, blobs) = self.connect().await;
        Storage {
            kv: Arc::new(kv),
            blobs: Arc::new(blobs),
        }
    }
}
