//! Lineage: which data a run consumed and which runs consumed its outputs, so the path
//! from a dataset to the best model can be traced both ways.
//!
//! A run declares inputs: another run's artifact, or a dataset version named by its
//! content hash and URI (as DVC names them). Its outputs are its own artifacts.
//! Storage: the input in the consumer's data partition (`in#...`), and in the team's
//! `{tenant}#lineage` partition the reverse edges (`used#{producer}#{consumer}#{path}`,
//! `dataset#{hash}#{consumer}`) and each dataset version (`ds#{hash}`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::artifacts::ArtifactError;
use crate::artifacts::{self, ArtifactPath};
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::RunId;
use crate::runs::RunError;
use crate::runs::{self, RunRecord};
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Key, Query, StoreError, TxOp};
use sextant_storage::records::{doc_item, get_doc, query_docs};

/// A graph answer holds at most this many nodes; a larger one says it was cut.
pub const MAX_NODES: usize = 500;
pub const MAX_URI_BYTES: usize = 2_048;

/// An input a run declares: a sealed artifact of a run of the team, or a dataset
/// version.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum NewInput {
    Artifact {
        /// The id of the run that produced it.
        run: String,
        #[schema(value_type = ArtifactPath)]
        path: String,
    },
    Dataset {
        /// Where the data lives (`s3://...`), 1 to 2,048 bytes.
        uri: String,
        /// The content's hash (MD5 or SHA-256), 16 to 128 hex digits.
        hash: String,
        name: Option<String>,
    },
}

/// An input of a run: another run's artifact or a dataset version, by its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    Artifact { run: RunId, path: ArtifactPath },
    Dataset { hash: String },
}

/// A dataset version, as first declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dataset {
    /// Lowercase hex.
    pub hash: String,
    pub uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_used_at: OffsetDateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct Consumer {
    run: RunId,
}

fn lineage_partition(tenant: &Tenant) -> String {
    tenant.partition("lineage")
}

fn input_key(tenant: &Tenant, consumer: RunId, input: &Input) -> Key {
    let sort_key = match input {
        Input::Artifact { run, path } => format!("in#a#{run}#{}", path.as_str()),
        Input::Dataset { hash } => format!("in#d#{hash}"),
    };
    Key::new(runs::data_partition(tenant, consumer), sort_key)
}

fn reverse_key(tenant: &Tenant, consumer: RunId, input: &Input) -> Key {
    let sort_key = match input {
        Input::Artifact { run, path } => format!("used#{run}#{consumer}#{}", path.as_str()),
        Input::Dataset { hash } => format!("dataset#{hash}#{consumer}"),
    };
    Key::new(lineage_partition(tenant), sort_key)
}

fn dataset_key(tenant: &Tenant, hash: &str) -> Key {
    Key::new(lineage_partition(tenant), format!("ds#{hash}"))
}

/// Why a lineage operation is refused.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("dataset not found")]
    DatasetNotFound,
    #[error("a dataset version's hash is 16 to 128 hex digits (an MD5 or SHA-256 of its content)")]
    InvalidHash,
    #[error("a dataset URI is 1 to {} bytes", MAX_URI_BYTES)]
    InvalidUri,
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for LineageError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::DatasetNotFound => ErrorCode::NotFound,
            Self::InvalidHash => ErrorCode::InvalidHash,
            Self::InvalidUri => ErrorCode::InvalidUri,
            Self::Run(err) => err.code(),
            Self::Artifact(err) => err.code(),
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Run(err) => err.into(),
            Self::Artifact(err) => err.into(),
            Self::Store(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = LineageError> = std::result::Result<T, E>;

fn check_hash(hash: &str) -> Result<String> {
    let hash = hash.to_ascii_lowercase();
    if (16..=128).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hash)
    } else {
        Err(LineageError::InvalidHash)
    }
}

/// Records that `consumer` used an input. Declaring the same input twice is harmless.
pub async fn add_input(
    store: &Store,
    tenant: &Tenant,
    consumer: RunId,
    new: NewInput,
) -> Result<Input> {
    runs::load(store, tenant, consumer).await?;
    let (input, dataset) = match new {
        NewInput::Artifact { run, path } => {
            let producer = runs::parse_id(&run)?;
            // The artifact must exist and be sealed, in this team.
            let artifact = artifacts::get(store, tenant, producer, &path).await?;
            (
                Input::Artifact {
                    run: producer,
                    path: artifact.path,
                },
                None,
            )
        }
        NewInput::Dataset { uri, hash, name } => {
            let hash = check_hash(&hash)?;
            if uri.is_empty() || uri.len() > MAX_URI_BYTES || uri.chars().any(char::is_control) {
                return Err(LineageError::InvalidUri);
            }
            let dataset = Dataset {
                hash: hash.clone(),
                uri,
                name,
                first_used_at: store.now(),
            };
            (Input::Dataset { hash }, Some(dataset))
        }
    };
    let mut ops = vec![
        TxOp::Put(
            doc_item(input_key(tenant, consumer, &input), &input)?,
            Condition::NotExists,
        ),
        TxOp::Put(
            doc_item(
                reverse_key(tenant, consumer, &input),
                &Consumer { run: consumer },
            )?,
            Condition::None,
        ),
    ];
    if let Some(dataset) = &dataset {
        let key = dataset_key(tenant, &dataset.hash);
        // The first declaration names the dataset version; later ones only use it.
        if store.kv.get(&key).await?.is_none() {
            ops.push(TxOp::Put(doc_item(key, dataset)?, Condition::None));
        }
    }
    match store.kv.transact(ops).await {
        Ok(()) | Err(StoreError::TransactionFailed(_)) => Ok(input),
        Err(err) => Err(err.into()),
    }
}

pub async fn inputs(store: &Store, tenant: &Tenant, run: RunId) -> Result<Vec<Input>> {
    Ok(query_docs(
        &*store.kv,
        Query::partition(runs::data_partition(tenant, run)).prefix("in#"),
    )
    .await?)
}

/// A node of a lineage graph; `id` is what edges name.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    Run {
        /// The run's id.
        id: String,
        name: String,
        status: runs::Status,
    },
    Artifact {
        /// `{run}/{path}`.
        id: String,
        run: RunId,
        path: ArtifactPath,
    },
    Dataset {
        /// `dataset:{hash}`.
        id: String,
        hash: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        uri: Option<String>,
    },
}

/// `from` was used by, or produced, `to`: node ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct Edge {
    pub from: String,
    pub to: String,
}

/// A run's lineage: upstream, the inputs it used and the runs that made them (and
/// theirs); downstream, the runs that used its artifacts (and theirs).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// The graph had more than `MAX_NODES` nodes and was cut.
    pub truncated: bool,
}

fn artifact_id(run: RunId, path: &ArtifactPath) -> String {
    format!("{run}/{}", path.as_str())
}

fn dataset_id(hash: &str) -> String {
    format!("dataset:{hash}")
}

struct Builder {
    /// When the graph is read, and how long a silent run stays running: a run's node
    /// shows its status as `GET /v1/runs/{run}` would.
    now: OffsetDateTime,
    heartbeat_timeout: time::Duration,
    nodes: BTreeMap<String, Node>,
    edges: BTreeSet<Edge>,
    truncated: bool,
}

impl Builder {
    fn node(&mut self, id: String, node: impl FnOnce() -> Node) -> bool {
        if self.nodes.contains_key(&id) {
            return true;
        }
        if self.nodes.len() >= MAX_NODES {
            self.truncated = true;
            return false;
        }
        self.nodes.insert(id, node());
        true
    }

    fn edge(&mut self, from: &str, to: &str) {
        self.edges.insert(Edge {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }

    fn run(&mut self, record: &RunRecord) -> bool {
        let status = record.status_at(self.now, self.heartbeat_timeout);
        self.node(record.id.to_string(), || Node::Run {
            id: record.id.to_string(),
            name: record.name.clone(),
            status,
        })
    }

    /// Adds `producer -> artifact -> consumer`, with the node of `newcomer` (one of
    /// the two runs, the one not in the graph yet), unless that run is gone or the
    /// graph is full. Answers whether the link is in the graph.
    async fn link(
        &mut self,
        store: &Store,
        tenant: &Tenant,
        producer: RunId,
        path: &ArtifactPath,
        consumer: RunId,
        newcomer: RunId,
    ) -> bool {
        let Ok(record) = runs::load(store, tenant, newcomer).await else {
            return false;
        };
        if !(self.artifact(producer, path) && self.run(&record.record)) {
            return false;
        }
        let artifact = artifact_id(producer, path);
        self.edge(&producer.to_string(), &artifact);
        self.edge(&artifact, &consumer.to_string());
        true
    }

    fn artifact(&mut self, run: RunId, path: &ArtifactPath) -> bool {
        self.node(artifact_id(run, path), || Node::Artifact {
            id: artifact_id(run, path),
            run,
            path: path.clone(),
        })
    }
}

/// A run's lineage: everything upstream of it (inputs, the runs that made them, their
/// inputs, ...) and downstream (runs that used its artifacts, and theirs). Runs since
/// deleted are left out.
pub async fn graph(
    store: &Store,
    heartbeat_timeout: time::Duration,
    tenant: &Tenant,
    run: RunId,
) -> Result<Graph> {
    let focus = runs::load(store, tenant, run).await?.record;
    let mut graph = Builder {
        now: store.now(),
        heartbeat_timeout,
        nodes: BTreeMap::new(),
        edges: BTreeSet::new(),
        truncated: false,
    };
    graph.run(&focus);
    for artifact in artifacts::list(store, tenant, run, None, None).await? {
        if graph.artifact(run, &artifact.path) {
            graph.edge(&run.to_string(), &artifact_id(run, &artifact.path));
        }
    }

    let mut upstream = VecDeque::from([run]);
    let mut seen = BTreeSet::from([run]);
    while let Some(consumer) = upstream.pop_front() {
        for input in inputs(store, tenant, consumer).await? {
            match input {
                Input::Artifact {
                    run: producer,
                    path,
                } => {
                    if graph
                        .link(store, tenant, producer, &path, consumer, producer)
                        .await
                        && seen.insert(producer)
                    {
                        upstream.push_back(producer);
                    }
                }
                Input::Dataset { hash } => {
                    let dataset: Option<Dataset> =
                        get_doc(&*store.kv, &dataset_key(tenant, &hash)).await?;
                    let id = dataset_id(&hash);
                    if graph.node(id.clone(), || Node::Dataset {
                        id: id.clone(),
                        hash: hash.clone(),
                        uri: dataset.map(|d| d.uri),
                    }) {
                        graph.edge(&id, &consumer.to_string());
                    }
                }
            }
        }
    }

    let mut downstream = VecDeque::from([run]);
    let mut seen = BTreeSet::from([run]);
    while let Some(producer) = downstream.pop_front() {
        let uses = store
            .kv
            .query(
                Query::partition(lineage_partition(tenant))
                    .prefix(format!("used#{producer}#"))
                    .limit(MAX_NODES),
            )
            .await?;
        for item in &uses.items {
            // used#{producer}#{consumer}#{path}
            let mut parts = item.key.sk.splitn(4, '#').skip(2);
            let (Some(consumer), Some(path)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(consumer), Ok(path)) = (consumer.parse::<RunId>(), ArtifactPath::parse(path))
            else {
                continue;
            };
            if graph
                .link(store, tenant, producer, &path, consumer, consumer)
                .await
                && seen.insert(consumer)
            {
                downstream.push_back(consumer);
            }
        }
    }

    Ok(Graph {
        nodes: graph.nodes.into_values().collect(),
        edges: graph.edges.into_iter().collect(),
        truncated: graph.truncated,
    })
}

/// A dataset version and every run (still present) that used it.
pub async fn dataset(
    store: &Store,
    tenant: &Tenant,
    hash: &str,
) -> Result<(Dataset, Vec<RunRecord>)> {
    let hash = check_hash(hash).map_err(|_| LineageError::DatasetNotFound)?;
    let dataset: Dataset = get_doc(&*store.kv, &dataset_key(tenant, &hash))
        .await?
        .ok_or_else(|| LineageError::DatasetNotFound)?;
    let consumers: Vec<Consumer> = query_docs(
        &*store.kv,
        Query::partition(lineage_partition(tenant)).prefix(format!("dataset#{hash}#")),
    )
    .await?;
    let mut used_by = Vec::with_capacity(consumers.len());
    for consumer in consumers {
        if let Ok(run) = runs::load(store, tenant, consumer.run).await {
            used_by.push(run.record);
        }
    }
    Ok((dataset, used_by))
}
