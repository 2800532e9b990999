//! The client commands' connection to a Sextant server, local or hosted.

use anyhow::Context;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A server and the API key to act with.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    api_key: String,
}

impl Client {
    pub fn new(base: url::Url, api_key: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("sextant-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            api_key,
        })
    }

    /// The server, as the commands of a job need it (`SEXTANT_URL`).
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// The key, as the commands of a job need it (`SEXTANT_API_KEY`).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The client for presigned URLs, which must not carry the API key.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn request(&self, method: Method, path: &str) -> anyhow::Result<RequestBuilder> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("{path} is not a valid API path"))?;
        Ok(self.http.request(method, url).bearer_auth(&self.api_key))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        json(self.request(Method::GET, path)?.send().await?).await
    }

    /// A GET whose answer the caller reads itself (a download, following redirects;
    /// the API key is not sent on to another host), from byte `from` on if given.
    pub async fn get_raw(&self, path: &str, from: Option<u64>) -> anyhow::Result<Response> {
        let mut request = self.request(Method::GET, path)?;
        if let Some(from) = from {
            request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        Ok(request.send().await?)
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        json(self.request(Method::POST, path)?.json(body).send().await?).await
    }

    /// A POST whose answer may be empty (204 No Content): `None` then.
    pub async fn post_optional<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<Option<T>> {
        let response = self.request(Method::POST, path)?.json(body).send().await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        json(response).await.map(Some)
    }

    /// A DELETE answered with no body (204).
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let response = self.request(Method::DELETE, path)?.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.bytes().await.context("reading the answer")?;
        Err(ApiFailure::from_answer(status, &body).into())
    }

    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        json(self.request(Method::PATCH, path)?.json(body).send().await?).await
    }
}

/// An error the server answered, for callers that act on its code (find it with
/// `anyhow::Error::downcast_ref`).
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    /// The error's code; empty when the answer was no error envelope.
    pub code: String,
    description: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// The failure an error answer (its status and body) describes.
    pub fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        Self {
            status,
            code: error_parts(body).map(|(code, _)| code).unwrap_or_default(),
            description: describe_error(status, body),
        }
    }

    /// The code of the server's error behind `err`, if the server answered one.
    pub fn code_of(err: &anyhow::Error) -> Option<&str> {
        err.downcast_ref::<Self>()
            .map(|failure| failure.code.as_str())
    }
}

/// The body of a successful answer, or the server's error code and message.
async fn json<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    let status = response.status();
    let body = response.bytes().await.context("reading the answer")?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .context("the server's answer is not the JSON expected");
    }
    Err(ApiFailure::from_answer(status, &body).into())
}

/// The code and message of an error answer: Sextant's envelope, or MLflow's shape on
/// the MLflow-compatible endpoints (and on MLflow's own servers).
fn error_parts(body: &[u8]) -> Option<(String, String)> {
    let error = serde_json::from_slice::<Value>(body).ok()?;
    let (code, message) = match error["error"]["code"].as_str() {
        Some(code) => (code, &error["error"]["message"]),
        None => (error["error_code"].as_str()?, &error["message"]),
    };
    Some((
        code.to_owned(),
        message.as_str().unwrap_or_default().to_owned(),
    ))
}

pub fn describe_error(status: StatusCode, body: &[u8]) -> String {
    match error_parts(body) {
        Some((code, message)) => format!("{code} ({status}): {message}"),
        None => format!("the server answered {status}"),
    }
}
