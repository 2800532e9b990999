//! An MLflow tracking server as the source: its REST API and its artifact proxy, with
//! the credentials MLflow's own client takes from the environment.

use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use reqwest::{RequestBuilder, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::Refusal;
use super::source::{
    Artifacts, Experiment, KeyValue, LoggedModel, POINTS_PER_PAGE, Page, Point, SourceRun,
};
use crate::client::ApiFailure;

/// Runs asked for per search page; MLflow allows up to 50,000, but a page of runs with
/// all their params and tags is held in memory.
const RUNS_PER_PAGE: usize = 200;
const EXPERIMENTS_PER_PAGE: usize = 1_000;
/// Tries of a request that failed in passing (no connection, 429, 502-504); reads
/// are safe to repeat.
const ATTEMPTS: u32 = 6;

#[derive(Debug)]
enum Auth {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

#[derive(Debug)]
pub struct Server {
    http: reqwest::Client,
    /// The tracking server's URL, ending in `/` so API paths join below it.
    base: url::Url,
    auth: Auth,
}

impl Server {
    pub fn open(from: &str, destination: &url::Url) -> anyhow::Result<Self> {
        let mut base =
            url::Url::parse(from).with_context(|| format!("{from} is not a valid URL"))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("sextant-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // A stalled server must not hang the import; a slow large download still
            // sends bytes within this.
            .read_timeout(Duration::from_secs(300))
            .build()
            .context("building the HTTP client")?;
        let auth = credentials(&base, destination, |name| std::env::var(name).ok());
        Ok(Self { http, base, auth })
    }

    fn endpoint(&self, path: &str) -> anyhow::Result<url::Url> {
        self.base
            .join(path)
            .with_context(|| format!("{path} is not a valid API path"))
    }

    /// Sends a read, again after a pause while the failure looks passing; answers the
    /// successful response, or the server's error.
    async fn send(&self, request: impl Fn() -> RequestBuilder) -> anyhow::Result<Response> {
        let mut pause = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            let request = match &self.auth {
                Auth::None => request(),
                Auth::Bearer(token) => request().bearer_auth(token),
                Auth::Basic { user, password } => request().basic_auth(user, Some(password)),
            };
            let outcome = request.send().await;
            let passing = match &outcome {
                Ok(response) => matches!(response.status().as_u16(), 429 | 502 | 503 | 504),
                Err(err) => err.is_connect() || err.is_timeout(),
            };
            if passing && attempt < ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
                continue;
            }
            let response =
                outcome.with_context(|| format!("reaching the MLflow server at {}", self.base))?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let body = response.bytes().await.unwrap_or_default();
            return Err(ApiFailure::from_answer(status, &body).into());
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<T> {
        let mut url = self.endpoint(path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self.send(|| self.http.get(url.clone())).await?;
        response.json().await.with_context(|| {
            format!("the MLflow server's answer to {path} is not the JSON expected")
        })
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> anyhow::Result<T> {
        let url = self.endpoint(path)?;
        let response = self.send(|| self.http.post(url.clone()).json(body)).await?;
        response.json().await.with_context(|| {
            format!("the MLflow server's answer to {path} is not the JSON expected")
        })
    }

    pub async fn experiments(&self) -> anyhow::Result<Vec<Experiment>> {
        #[derive(Deserialize)]
        struct Found {
            #[serde(default)]
            experiments: Vec<ExperimentJson>,
            next_page_token: Option<String>,
        }
        #[derive(Deserialize)]
        struct ExperimentJson {
            experiment_id: String,
            name: String,
            #[serde(default)]
            lifecycle_stage: String,
        }
        let mut experiments = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut body = json!({ "max_results": EXPERIMENTS_PER_PAGE, "view_type": "ALL" });
            if let Some(token) = &page {
                body["page_token"] = token.clone().into();
            }
            let found: Found = self
                .post("api/2.0/mlflow/experiments/search", &body)
                .await
                .context("listing the MLflow server's experiments")?;
            experiments.extend(found.experiments.into_iter().map(|e| Experiment {
                deleted: e.lifecycle_stage == "deleted",
                id: e.experiment_id,
                name: e.name,
                dir: None,
            }));
            match found.next_page_token.filter(|token| !token.is_empty()) {
                Some(token) => page = Some(token),
                None => return Ok(experiments),
            }
        }
    }

    pub async fn runs(
        &self,
        experiment: &Experiment,
        page: Option<String>,
    ) -> anyhow::Result<Page<anyhow::Result<SourceRun>>> {
        #[derive(Deserialize)]
        struct Found {
            #[serde(default)]
            runs: Vec<RunJson>,
            next_page_token: Option<String>,
        }
        let mut body = json!({
            "experiment_ids": [experiment.id],
            "run_view_type": "ALL",
            "max_results": RUNS_PER_PAGE,
            // Oldest first, so runs started during the import land on later pages
            // instead of shifting the ones not yet read.
            "order_by": ["attributes.start_time ASC"],
        });
        if let Some(token) = page {
            body["page_token"] = token.into();
        }
        let found: Found = self
            .post("api/2.0/mlflow/runs/search", &body)
            .await
            .with_context(|| format!("listing the runs of experiment {}", experiment.name))?;
        let runs = found.runs.into_iter().map(|run| Ok(run.into())).collect();
        Ok((
            runs,
            found.next_page_token.filter(|token| !token.is_empty()),
        ))
    }

    pub async fn metric_page(
        &self,
        run: &SourceRun,
        key: &str,
        page: Option<String>,
    ) -> anyhow::Result<Page<Point>> {
        #[derive(Deserialize)]
        struct History {
            #[serde(default)]
            metrics: Vec<Point>,
            next_page_token: Option<String>,
        }
        let max_results = POINTS_PER_PAGE.to_string();
        let mut query = vec![
            ("run_id", run.id.as_str()),
            ("metric_key", key),
            ("max_results", max_results.as_str()),
        ];
        if let Some(token) = &page {
            query.push(("page_token", token));
        }
        let history: History = self
            .get("api/2.0/mlflow/metrics/get-history", &query)
            .await
            .with_context(|| format!("reading the history of metric {key} of run {}", run.id))?;
        Ok((
            history.metrics,
            history.next_page_token.filter(|token| !token.is_empty()),
        ))
    }

    /// Every file below a root in the artifact proxy, by path below it and size.
    pub async fn proxied_files(&self, root: &str) -> anyhow::Result<Vec<(String, Option<u64>)>> {
        let mut files = Vec::new();
        let mut directories = vec![String::new()];
        while let Some(directory) = directories.pop() {
            let path = if directory.is_empty() {
                root.to_owned()
            } else {
                format!("{root}/{directory}")
            };
            let listing: Listing = self
                .get("api/2.0/mlflow-artifacts/artifacts", &[("path", &path)])
                .await
                .with_context(|| format!("listing the artifacts at {path}"))?;
            for entry in listing.files {
                // The proxy names entries by their base name; other servers may give
                // the whole path.
                let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
                let below = if directory.is_empty() {
                    name.to_owned()
                } else {
                    format!("{directory}/{name}")
                };
                if entry.is_dir {
                    directories.push(below);
                } else {
                    files.push((below, entry.file_size));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    pub async fn logged_model(&self, id: &str) -> anyhow::Result<LoggedModel> {
        #[derive(Deserialize)]
        struct Found {
            model: Model,
        }
        #[derive(Deserialize)]
        struct Model {
            info: Info,
        }
        #[derive(Deserialize)]
        struct Info {
            name: String,
            #[serde(default)]
            artifact_uri: String,
        }
        let path = format!(
            "api/2.0/mlflow/logged-models/{}",
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        );
        let found: Found = self
            .get(&path, &[])
            .await
            .with_context(|| format!("reading logged model {id}"))?;
        let info = found.model.info;
        Ok(LoggedModel {
            id: id.to_owned(),
            name: info.name,
            artifacts: artifacts_at(&info.artifact_uri),
            artifact_uri: info.artifact_uri,
        })
    }

    /// Refuses a run whose artifacts are somewhere this import cannot read, unless the
    /// tracking server lists none there.
    pub async fn check_no_artifacts(&self, run: &SourceRun) -> anyhow::Result<()> {
        let listing: anyhow::Result<Listing> = self
            .get("api/2.0/mlflow/artifacts/list", &[("run_id", &run.id)])
            .await;
        match listing {
            Ok(listing) if listing.files.is_empty() => Ok(()),
            _ => Err(Refusal::unreadable(&run.id, &run.artifact_uri).into()),
        }
    }

    /// Downloads the file at `below` a root of the proxy to a temporary file, checking
    /// its size when the listing gave it.
    pub async fn download(
        &self,
        root: &str,
        below: &str,
        size: Option<u64>,
    ) -> anyhow::Result<tempfile::TempPath> {
        let mut url = self.endpoint("api/2.0/mlflow-artifacts/artifacts/")?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("{} cannot hold a path", self.base))?
            .pop_if_empty()
            .extend(root.split('/').chain(below.split('/')));
        let temp = tempfile::Builder::new()
            .prefix("sextant-import-")
            .tempfile()
            .context("making a temporary file for a download")?
            .into_temp_path();
        let response = self
            .send(|| self.http.get(url.clone()))
            .await
            .with_context(|| format!("downloading artifact {below}"))?;
        let mut out = tokio::fs::File::create(&temp)
            .await
            .context("opening a temporary file for a download")?;
        let mut stream = response.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream
            .try_next()
            .await
            .with_context(|| format!("downloading artifact {below}"))?
        {
            out.write_all(&chunk).await.context("writing a download")?;
            written += chunk.len() as u64;
        }
        out.flush().await.context("writing a download")?;
        if let Some(size) = size.filter(|&size| size != written) {
            anyhow::bail!("artifact {below} arrived with {written} bytes, not the {size} listed");
        }
        Ok(temp)
    }
}

#[derive(Debug, Default, Deserialize)]
struct Listing {
    #[serde(default)]
    files: Vec<ListedFile>,
}

#[derive(Debug, Deserialize)]
struct ListedFile {
    path: String,
    #[serde(default)]
    is_dir: bool,
    file_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct RunJson {
    info: RunInfo,
    #[serde(default)]
    data: RunData,
    #[serde(default)]
    inputs: RunInputs,
    #[serde(default)]
    outputs: RunOutputs,
}

#[derive(Debug, Deserialize)]
struct RunInfo {
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: String,
    #[serde(default)]
    run_name: String,
    status: Option<String>,
    start_time: Option<super::source::Int64>,
    end_time: Option<super::source::Int64>,
    #[serde(default)]
    lifecycle_stage: String,
    #[serde(default)]
    artifact_uri: String,
}

#[derive(Debug, Default, Deserialize)]
struct RunData {
    #[serde(default)]
    metrics: Vec<MetricKey>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
struct MetricKey {
    key: String,
}

#[derive(Debug, Default, Deserialize)]
struct RunInputs {
    #[serde(default)]
    dataset_inputs: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct RunOutputs {
    #[serde(default)]
    model_outputs: Vec<ModelOutput>,
}

#[derive(Debug, Deserialize)]
struct ModelOutput {
    model_id: String,
}

impl From<RunJson> for SourceRun {
    fn from(run: RunJson) -> Self {
        let info = run.info;
        SourceRun {
            id: info.run_id.unwrap_or(info.run_uuid),
            name: info.run_name,
            status: info.status.unwrap_or_else(|| "RUNNING".into()),
            start_time: info.start_time.map(|t| t.0),
            end_time: info.end_time.map(|t| t.0),
            deleted: info.lifecycle_stage == "deleted",
            params: run.data.params,
            tags: run.data.tags,
            metric_keys: run.data.metrics.into_iter().map(|m| m.key).collect(),
            dataset_inputs: run.inputs.dataset_inputs,
            artifacts: artifacts_at(&info.artifact_uri),
            artifact_uri: info.artifact_uri,
            model_ids: run
                .outputs
                .model_outputs
                .into_iter()
                .map(|output| output.model_id)
                .collect(),
            dir: None,
        }
    }
}

/// Where a run's artifact URI can be read from here: the proxy for `mlflow-artifacts:`
/// (with or without the server's address in it), a local directory for a path.
fn artifacts_at(uri: &str) -> Artifacts {
    if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        let path = match rest.strip_prefix("//") {
            Some(with_authority) => with_authority.split_once('/').map_or("", |(_, path)| path),
            None => rest,
        };
        return Artifacts::Proxy(path.trim_matches('/').to_owned());
    }
    match super::directory::local_path(uri) {
        Some(path) => Artifacts::Local(path),
        None => Artifacts::Unreachable,
    }
}

/// The source's credentials as MLflow's client takes them (basic auth first, then a
/// token). One that is a Sextant API key (left in the environment to log to Sextant
/// with MLflow) goes nowhere but to the Sextant server itself.
fn credentials(
    source: &url::Url,
    destination: &url::Url,
    var: impl Fn(&str) -> Option<String>,
) -> Auth {
    let env = |name: &str| var(name).filter(|value| !value.is_empty());
    let sendable = |name: &str, secret: &str| {
        let foreign_key = secret.starts_with("sxt_key_") && source.origin() != destination.origin();
        if foreign_key {
            eprintln!("warning: {name} holds a Sextant API key; it is not sent to {source}");
        }
        !foreign_key
    };
    if let (Some(user), Some(password)) = (
        env("MLFLOW_TRACKING_USERNAME"),
        env("MLFLOW_TRACKING_PASSWORD"),
    ) && sendable("MLFLOW_TRACKING_PASSWORD", &password)
    {
        return Auth::Basic { user, password };
    }
    match env("MLFLOW_TRACKING_TOKEN") {
        Some(token) if sendable("MLFLOW_TRACKING_TOKEN", &token) => Auth::Bearer(token),
        _ => Auth::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sextant_key_among_mlflows_credentials_is_sent_to_no_other_server() {
        let sextant = url::Url::parse("https://sextant.example.com/").expect("url");
        let mlflow = url::Url::parse("https://mlflow.example.com/").expect("url");
        fn env<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |name| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        }
        let basic = [
            ("MLFLOW_TRACKING_USERNAME", "me"),
            ("MLFLOW_TRACKING_PASSWORD", "secret"),
            ("MLFLOW_TRACKING_TOKEN", "token"),
        ];
        assert!(matches!(
            credentials(&mlflow, &sextant, env(&basic)),
            Auth::Basic { user, password } if user == "me" && password == "secret"
        ));
        let token = [("MLFLOW_TRACKING_TOKEN", "token")];
        assert!(matches!(
            credentials(&mlflow, &sextant, env(&token)),
            Auth::Bearer(token) if token == "token"
        ));
        let key = [
            ("MLFLOW_TRACKING_USERNAME", "me"),
            ("MLFLOW_TRACKING_PASSWORD", "sxt_key_abc_def"),
            ("MLFLOW_TRACKING_TOKEN", "sxt_key_abc_def"),
        ];
        assert!(matches!(
            credentials(&mlflow, &sextant, env(&key)),
            Auth::None
        ));
        assert!(matches!(
            credentials(&sextant, &sextant, env(&key)),
            Auth::Basic { .. }
        ));
    }

    #[test]
    fn artifact_uris_resolve_to_the_proxy_or_a_local_directory() {
        let proxy = |uri| match artifacts_at(uri) {
            Artifacts::Proxy(path) => Some(path),
            _ => None,
        };
        assert_eq!(
            proxy("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxy("mlflow-artifacts://host:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert!(matches!(
            artifacts_at("/srv/mlruns/1/abc/artifacts"),
            Artifacts::Local(_)
        ));
        assert!(matches!(
            artifacts_at("file:///srv/mlruns/1/abc/artifacts"),
            Artifacts::Local(_)
        ));
        assert!(matches!(
            artifacts_at("s3://bucket/1/abc/artifacts"),
            Artifacts::Unreachable
        ));
    }
}
