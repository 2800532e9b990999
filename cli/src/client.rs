//! The client commands' connection to a Sextant server, local or hosted.

use anyhow::{Context, bail};
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

    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        json(self.request(Method::PATCH, path)?.json(body).send().await?).await
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
    bail!("{}", describe_error(status, &body))
}

pub fn describe_error(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(error) if error["error"]["code"].is_string() => format!(
            "{} ({status}): {}",
            error["error"]["code"].as_str().unwrap_or_default(),
            error["error"]["message"].as_str().unwrap_or_default()
        ),
        _ => format!("the server answered {status}"),
    }
}
