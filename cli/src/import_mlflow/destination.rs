//! The Sextant side of an import: runs written through Sextant's MLflow-compatible
//! endpoints (so how MLflow's model maps onto Sextant's is decided by the server alone),
//! and artifacts uploaded the native way, which takes files of any size.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use super::source::{KeyValue, Point, SourceRun};
use crate::client::{ApiFailure, Client};
use crate::transfer::{self, UploadOptions};

/// Tags every imported run carries: where it came from.
pub const SOURCE_RUN_TAG: &str = "imported.mlflow_run_id";
pub const SOURCE_EXPERIMENT_TAG: &str = "imported.mlflow_experiment";
/// Present from a run's creation until its import is complete: a run found with it was
/// left half-imported.
pub const INCOMPLETE_TAG: &str = "imported.incomplete";

/// MLflow's limits on one log-batch request, which Sextant enforces.
pub const PARAMS_PER_BATCH: usize = 100;
pub const METRICS_PER_BATCH: usize = 1_000;
const RUNS_PER_SEARCH: usize = 1_000;
/// Tries of a request refused by the rate limit before giving up.
const ATTEMPTS: u32 = 10;
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// A run an earlier import made.
#[derive(Debug, Clone)]
pub struct Imported {
    pub run_id: String,
    pub complete: bool,
    pub trashed: bool,
}

#[derive(Debug)]
pub struct Destination<'a> {
    client: &'a Client,
    experiment_id: String,
}

/// Repeats a request Sextant refused for its rate limit (nothing was done), pausing
/// longer each time.
async fn patiently<T, F, Fut>(mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut pause = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(err) if attempt < ATTEMPTS && is_rate_limited(&err) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

fn is_rate_limited(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ApiFailure>()
        .is_some_and(|failure| failure.status == reqwest::StatusCode::TOO_MANY_REQUESTS)
}

impl<'a> Destination<'a> {
    /// The project, made if missing.
    pub async fn open(client: &'a Client, project: &str) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct Found {
            experiment: FoundExperiment,
        }
        #[derive(Deserialize)]
        struct FoundExperiment {
            experiment_id: String,
            lifecycle_stage: String,
        }
        #[derive(Deserialize)]
        struct ExperimentId {
            experiment_id: String,
        }
        let path = format!(
            "api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            url::form_urlencoded::byte_serialize(project.as_bytes()).collect::<String>()
        );
        let found: anyhow::Result<Found> = patiently(|| client.get(&path)).await;
        let experiment_id = match found {
            Ok(found) if found.experiment.lifecycle_stage == "deleted" => {
                bail!("project {project} is in Sextant's trash; restore it or import into another")
            }
            Ok(found) => found.experiment.experiment_id,
            Err(err) if ApiFailure::code_of(&err) == Some("RESOURCE_DOES_NOT_EXIST") => {
                let body = json!({ "name": project });
                let made: ExperimentId =
                    patiently(|| client.post("api/2.0/mlflow/experiments/create", &body))
                        .await
                        .with_context(|| format!("creating project {project} in Sextant"))?;
                made.experiment_id
            }
            Err(err) => {
                return Err(err).with_context(|| format!("finding project {project} in Sextant"));
            }
        };
        Ok(Self {
            client,
            experiment_id,
        })
    }

    /// The runs earlier imports made in the project, in the trash or not, by the source
    /// run they came from.
    pub async fn imported_runs(&self) -> anyhow::Result<HashMap<String, Vec<Imported>>> {
        #[derive(Deserialize)]
        struct Found {
            #[serde(default)]
            runs: Vec<RunJson>,
            next_page_token: Option<String>,
        }
        #[derive(Deserialize)]
        struct RunJson {
            info: Info,
            data: Data,
        }
        #[derive(Deserialize)]
        struct Info {
            run_id: String,
            lifecycle_stage: String,
        }
        #[derive(Deserialize)]
        struct Data {
            #[serde(default)]
            tags: Vec<KeyValue>,
        }
        let mut imported: HashMap<String, Vec<Imported>> = HashMap::new();
        let mut page: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": [self.experiment_id],
                "filter": format!("tags.`{SOURCE_RUN_TAG}` IS NOT NULL"),
                "run_view_type": "ALL",
                "max_results": RUNS_PER_SEARCH,
            });
            if let Some(token) = &page {
                body["page_token"] = token.clone().into();
            }
            let found: Found = patiently(|| self.client.post("api/2.0/mlflow/runs/search", &body))
                .await
                .context("listing the runs earlier imports made")?;
            for run in found.runs {
                let tag = |key: &str| run.data.tags.iter().find(|tag| tag.key == key);
                let Some(source) = tag(SOURCE_RUN_TAG) else {
                    continue;
                };
                imported
                    .entry(source.value.clone())
                    .or_default()
                    .push(Imported {
                        complete: tag(INCOMPLETE_TAG).is_none(),
                        trashed: run.info.lifecycle_stage == "deleted",
                        run_id: run.info.run_id,
                    });
            }
            match found.next_page_token.filter(|token| !token.is_empty()) {
                Some(token) => page = Some(token),
                None => return Ok(imported),
            }
        }
    }

    /// Makes the run with its name, start and tags, marked incomplete; answers its id.
    pub async fn create_run(&self, run: &SourceRun, experiment: &str) -> anyhow::Result<String> {
        let ours = [
            (SOURCE_RUN_TAG, run.id.as_str()),
            (SOURCE_EXPERIMENT_TAG, experiment),
            (INCOMPLETE_TAG, "true"),
        ];
        let mut tags: Vec<KeyValue> = run
            .tags
            .iter()
            .filter(|tag| ours.iter().all(|(key, _)| tag.key != *key))
            .cloned()
            .collect();
        tags.extend(ours.iter().map(|(key, value)| KeyValue {
            key: (*key).to_owned(),
            value: (*value).to_owned(),
        }));
        let mut body = json!({ "experiment_id": self.experiment_id, "tags": tags });
        if !run.name.is_empty() {
            body["run_name"] = run.name.clone().into();
        }
        if let Some(start) = run.start_time {
            body["start_time"] = start.into();
        }
        let created: Value =
            patiently(|| self.client.post("api/2.0/mlflow/runs/create", &body)).await?;
        created["run"]["info"]["run_id"]
            .as_str()
            .map(str::to_owned)
            .context("Sextant's answer to runs/create names no run")
    }

    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[KeyValue],
        metrics: &[Point],
    ) -> anyhow::Result<()> {
        let body = json!({ "run_id": run_id, "params": params, "metrics": metrics });
        let _: Value =
            patiently(|| self.client.post("api/2.0/mlflow/runs/log-batch", &body)).await?;
        Ok(())
    }

    pub async fn log_inputs(&self, run_id: &str, datasets: &[Value]) -> anyhow::Result<()> {
        let body = json!({ "run_id": run_id, "datasets": datasets });
        let _: Value =
            patiently(|| self.client.post("api/2.0/mlflow/runs/log-inputs", &body)).await?;
        Ok(())
    }

    /// Uploads a file as the run's artifact at `path` (of kind `model` for a model's).
    pub async fn upload(
        &self,
        run_id: &str,
        file: &Path,
        path: &str,
        of_model: bool,
    ) -> anyhow::Result<()> {
        let options = UploadOptions {
            path: path.to_owned(),
            kind: of_model.then(|| "model".to_owned()),
            step: None,
            content_type: None,
        };
        patiently(|| transfer::upload(self.client, run_id, file, &options)).await?;
        Ok(())
    }

    /// The last writes of an import: the source's status and end (after which the run
    /// takes no more metrics), then the completion, then the trash if the source run is
    /// in its own.
    pub async fn finish(&self, run_id: &str, run: &SourceRun) -> anyhow::Result<()> {
        if matches!(run.status.as_str(), "FINISHED" | "FAILED" | "KILLED") {
            let mut body = json!({ "run_id": run_id, "status": run.status });
            if let Some(end) = run.end_time {
                body["end_time"] = end.into();
            }
            let _: Value =
                patiently(|| self.client.post("api/2.0/mlflow/runs/update", &body)).await?;
        }
        let body = json!({ "run_id": run_id, "key": INCOMPLETE_TAG });
        let _: Value =
            patiently(|| self.client.post("api/2.0/mlflow/runs/delete-tag", &body)).await?;
        if run.deleted {
            self.trash(run_id).await?;
        }
        Ok(())
    }

    /// Moves a run to the trash, as MLflow's delete does.
    pub async fn trash(&self, run_id: &str) -> anyhow::Result<()> {
        let body = json!({ "run_id": run_id });
        let _: Value = patiently(|| self.client.post("api/2.0/mlflow/runs/delete", &body)).await?;
        Ok(())
    }

    /// Deletes a run and everything it holds for good (Sextant's own delete).
    pub async fn delete(&self, run_id: &str) -> anyhow::Result<()> {
        let path = format!("v1/runs/{run_id}");
        patiently(|| self.client.delete(&path)).await
    }
}
