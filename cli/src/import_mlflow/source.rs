//! What an import reads, whichever store it comes from: experiments, runs with their
//! params, tags and dataset inputs, metric histories page by page, and artifact files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use sextant_domain::floats::JsonF64;

use super::Refusal;
use super::directory::Directory;
use super::server::Server;

/// Metric points read from the source at a time: one of Sextant's log batches.
pub const POINTS_PER_PAGE: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Experiment {
    pub id: String,
    pub name: String,
    pub deleted: bool,
    /// The experiment's directory, for an `mlruns` source.
    pub dir: Option<PathBuf>,
}

/// One metric value as MLflow logs it; values may be NaN or infinite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub key: String,
    pub value: JsonF64,
    pub timestamp: Int64,
    #[serde(default)]
    pub step: Int64,
}

/// An int64 as protobuf's JSON mapping allows it: a number or a decimal string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Int64(pub i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(i64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(Int64(n)),
            Either::Text(text) => text
                .parse()
                .map(Int64)
                .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an integer"))),
        }
    }
}

/// Where a run's or a logged model's artifacts can be read.
#[derive(Debug, Clone)]
pub enum Artifacts {
    /// Through the tracking server's artifact proxy, below this path.
    Proxy(String),
    /// In a directory (which may not exist when none were logged).
    Local(PathBuf),
    /// Somewhere this import cannot read: an object store the source server does not
    /// proxy.
    Unreachable,
}

#[derive(Debug, Clone)]
pub struct SourceRun {
    pub id: String,
    pub name: String,
    /// MLflow's status name: RUNNING, SCHEDULED, FINISHED, FAILED or KILLED.
    pub status: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// In the source's trash.
    pub deleted: bool,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
    pub metric_keys: Vec<String>,
    /// MLflow `DatasetInput` messages, as the tracking API writes them.
    pub dataset_inputs: Vec<Value>,
    pub artifacts: Artifacts,
    pub artifact_uri: String,
    /// The models the run logged: MLflow 3 keeps their files apart from the run's
    /// artifacts.
    pub model_ids: Vec<String>,
    /// The run's directory, for an `mlruns` source.
    pub dir: Option<PathBuf>,
}

/// A model a run logged (MLflow 3's `LoggedModel`).
#[derive(Debug, Clone)]
pub struct LoggedModel {
    pub id: String,
    pub name: String,
    pub artifacts: Artifacts,
    pub artifact_uri: String,
}

/// A file to copy into the Sextant run.
#[derive(Debug, Clone)]
pub struct ArtifactFile {
    /// Its path among the Sextant run's artifacts.
    pub path: String,
    pub size: Option<u64>,
    /// A file of a logged model rather than of the run itself.
    pub of_model: bool,
    root: Artifacts,
    /// Its path below `root`.
    below: String,
}

/// An artifact's bytes on this machine: the source's own file, or a download that is
/// removed when dropped.
#[derive(Debug)]
pub enum Fetched {
    InPlace(PathBuf),
    Downloaded(tempfile::TempPath),
}

impl Fetched {
    pub fn path(&self) -> &Path {
        match self {
            Fetched::InPlace(path) => path,
            Fetched::Downloaded(temp) => temp,
        }
    }
}

/// A page of something and where the next one starts.
pub type Page<T> = (Vec<T>, Option<String>);

#[derive(Debug)]
pub enum Source {
    Server(Server),
    Directory(Directory),
}

impl Source {
    /// The source `--from` names: an `http(s)://` tracking server, or an `mlruns`
    /// directory (a path or a `file:` URI). `destination` is Sextant's URL, to which
    /// alone a Sextant API key found among MLflow's credentials may be sent.
    pub fn open(from: &str, destination: &url::Url) -> anyhow::Result<Self> {
        if from.starts_with("http://") || from.starts_with("https://") {
            return Ok(Source::Server(Server::open(from, destination)?));
        }
        Ok(Source::Directory(Directory::open(from)?))
    }

    /// Every experiment, those in the trash included.
    pub async fn experiments(&self) -> anyhow::Result<Vec<Experiment>> {
        match self {
            Source::Server(server) => server.experiments().await,
            Source::Directory(directory) => directory.experiments(),
        }
    }

    /// A page of an experiment's runs, those in the trash included; a run that cannot
    /// be read is an error of its own.
    pub async fn runs(
        &self,
        experiment: &Experiment,
        page: Option<String>,
    ) -> anyhow::Result<Page<anyhow::Result<SourceRun>>> {
        match self {
            Source::Server(server) => server.runs(experiment, page).await,
            Source::Directory(directory) => directory.runs(experiment, page),
        }
    }

    /// A page of a metric's history, in the order it was stored.
    pub async fn metric_page(
        &self,
        run: &SourceRun,
        key: &str,
        page: Option<String>,
    ) -> anyhow::Result<Page<Point>> {
        match self {
            Source::Server(server) => server.metric_page(run, key, page).await,
            Source::Directory(_) => super::directory::metric_page(run, key, page),
        }
    }

    /// Every file to copy into the Sextant run: the run's artifacts, then each logged
    /// model's below `models/<name>/`.
    pub async fn artifact_files(&self, run: &SourceRun) -> anyhow::Result<Vec<ArtifactFile>> {
        let mut files = Vec::new();
        match self.files_at(&run.artifacts).await? {
            Some(found) => files.extend(found.into_iter().map(|(below, size)| ArtifactFile {
                path: below.clone(),
                size,
                of_model: false,
                root: run.artifacts.clone(),
                below,
            })),
            None => match self {
                Source::Server(server) => server.check_no_artifacts(run).await?,
                Source::Directory(_) => {
                    return Err(Refusal::unreadable(&run.id, &run.artifact_uri).into());
                }
            },
        }
        let mut names = HashSet::new();
        for model in self.logged_models(run).await? {
            let found = self
                .files_at(&model.artifacts)
                .await?
                .ok_or_else(|| Refusal::unreadable(&run.id, &model.artifact_uri))?;
            // A run may log several models of one name (a checkpoint an epoch): the id
            // tells them apart.
            let dir = if names.insert(model.name.clone()) {
                format!("models/{}", model.name)
            } else {
                format!("models/{}-{}", model.name, model.id)
            };
            files.extend(found.into_iter().map(|(below, size)| ArtifactFile {
                path: format!("{dir}/{below}"),
                size,
                of_model: true,
                root: model.artifacts.clone(),
                below,
            }));
        }
        Ok(files)
    }

    async fn logged_models(&self, run: &SourceRun) -> anyhow::Result<Vec<LoggedModel>> {
        let mut models = Vec::with_capacity(run.model_ids.len());
        for id in &run.model_ids {
            models.push(match self {
                Source::Server(server) => server.logged_model(id).await?,
                Source::Directory(_) => super::directory::logged_model(run, id)?,
            });
        }
        Ok(models)
    }

    /// The files below an artifact root, by path and size; `None` where this import
    /// cannot read them.
    async fn files_at(
        &self,
        root: &Artifacts,
    ) -> anyhow::Result<Option<Vec<(String, Option<u64>)>>> {
        match (self, root) {
            // An `mlruns` directory has no folder where nothing was logged.
            (Source::Directory(_), Artifacts::Local(dir)) => {
                super::directory::files_below(dir).map(Some)
            }
            // A server's local path is only here if the server runs on this machine.
            (Source::Server(_), Artifacts::Local(dir)) if dir.is_dir() => {
                super::directory::files_below(dir).map(Some)
            }
            (Source::Server(server), Artifacts::Proxy(path)) => {
                server.proxied_files(path).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// An artifact's bytes on this machine.
    pub async fn fetch(&self, file: &ArtifactFile) -> anyhow::Result<Fetched> {
        match (self, &file.root) {
            (_, Artifacts::Local(root)) => Ok(Fetched::InPlace(
                file.below
                    .split('/')
                    .fold(root.clone(), |path, part| path.join(part)),
            )),
            (Source::Server(server), Artifacts::Proxy(root)) => server
                .download(root, &file.below, file.size)
                .await
                .map(Fetched::Downloaded),
            _ => anyhow::bail!("{} cannot be read from here", file.path),
        }
    }
}
