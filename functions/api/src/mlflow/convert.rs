//! Sextant's records in MLflow's terms and back: run and experiment JSON, statuses,
//! millisecond times, and key-value tags.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::floats::JsonF64;
use sextant_domain::projects::Project;
use sextant_domain::runs::summary::SeriesKind;
use sextant_domain::runs::{self, GitInfo, RunRecord, Status};
use sextant_edge::state::AppState;
use time::OffsetDateTime;

pub const RUN_NAME_TAG: &str = "mlflow.runName";
pub const NOTE_TAG: &str = "mlflow.note.content";
const GIT_COMMIT_TAG: &str = "mlflow.source.git.commit";
const GIT_BRANCH_TAG: &str = "mlflow.source.git.branch";
const GIT_REPO_TAG: &str = "mlflow.source.git.repoURL";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

pub fn millis(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_millis(ms: i64) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| Error::new(ErrorCode::InvalidTime, format!("{ms} is not a time in ms")))
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Queued => "SCHEDULED",
        // A run gone silent may still come back; MLflow has no word for it.
        Status::Running | Status::Lost => "RUNNING",
        Status::Succeeded => "FINISHED",
        Status::Failed => "FAILED",
        Status::Aborted => "KILLED",
    }
}

pub fn parse_status(name: &str) -> Result<Status, Error> {
    Ok(match name {
        "SCHEDULED" => Status::Queued,
        "RUNNING" => Status::Running,
        "FINISHED" => Status::Succeeded,
        "FAILED" => Status::Failed,
        "KILLED" => Status::Aborted,
        _ => {
            return Err(Error::new(
                ErrorCode::InvalidStatus,
                format!("status is RUNNING, SCHEDULED, FINISHED, FAILED or KILLED, not {name:?}"),
            ));
        }
    })
}

/// An int64 field as protobuf's JSON mapping allows it: a number or a decimal string.
pub fn int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Number(i64),
        Text(String),
    }
    match Option::<Int64>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Int64::Number(n)) => Ok(Some(n)),
        Some(Int64::Text(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an integer"))),
    }
}

/// Checks a tag key: MLflow's rule, which keeps `=` free to separate key and value.
pub fn check_tag_key(key: &str) -> Result<(), Error> {
    if sextant_domain::series::is_key_name(key) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::InvalidTag,
            format!(
                "tag keys are 1 to {} bytes of letters, digits, '_', '-', '.', '/', ':' and spaces: {:?}",
                sextant_domain::series::MAX_NAME_BYTES,
                key.chars().take(60).collect::<String>()
            ),
        ))
    }
}

pub fn tag_key(tag: &str) -> &str {
    tag.split_once('=').map_or(tag, |(key, _)| key)
}

/// Sets an MLflow tag on a run: into the field Sextant has for it, or as `key=value`.
/// The run is left unchanged when the tag is refused.
pub fn set_tag(record: &mut RunRecord, key: &str, value: &str) -> Result<(), Error> {
    check_tag_key(key)?;
    let value = value.to_owned();
    match key {
        RUN_NAME_TAG => {
            runs::check_name(&value)?;
            record.name = value;
        }
        NOTE_TAG => {
            runs::check_description(&value)?;
            record.description = value;
        }
        GIT_COMMIT_TAG | GIT_BRANCH_TAG | GIT_REPO_TAG => {
            let mut git = record.git.clone().unwrap_or_default();
            if let Some(field) = git_field(&mut git, key) {
                *field = Some(if key == GIT_REPO_TAG {
                    runs::without_credentials(&value)
                } else {
                    value
                });
            }
            git.validate()?;
            record.git = Some(git);
        }
        _ => {
            let tag = format!("{key}={value}");
            runs::check_tags([&tag])?;
            record.tags.retain(|existing| tag_key(existing) != key);
            record.tags.insert(tag);
        }
    }
    Ok(())
}

/// The git field an MLflow `mlflow.source.git.*` tag stands for.
pub fn git_field<'a>(git: &'a mut GitInfo, key: &str) -> Option<&'a mut Option<String>> {
    match key {
        GIT_COMMIT_TAG => Some(&mut git.commit),
        GIT_BRANCH_TAG => Some(&mut git.branch),
        GIT_REPO_TAG => Some(&mut git.remote),
        _ => None,
    }
}

/// Removes an MLflow tag; MLflow answers 404 for a tag the run does not have.
pub fn delete_tag(record: &mut RunRecord, key: &str) -> Result<(), Error> {
    let had = run_tags(record).iter().any(|tag| tag.key == key);
    if !had {
        return Err(Error::not_found("tag"));
    }
    match key {
        RUN_NAME_TAG => {}
        NOTE_TAG => record.description.clear(),
        _ => match record.git.as_mut().and_then(|git| git_field(git, key)) {
            Some(field) => *field = None,
            None => record.tags.retain(|existing| tag_key(existing) != key),
        },
    }
    Ok(())
}

/// A run's tags as MLflow shows them: `key=value` tags split, labels with an empty
/// value, and the fields that stand for MLflow's own tags.
pub fn run_tags(record: &RunRecord) -> Vec<KeyValue> {
    let mut tags: Vec<KeyValue> = record
        .tags
        .iter()
        .map(|tag| {
            let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
            KeyValue {
                key: key.to_owned(),
                value: value.to_owned(),
            }
        })
        .collect();
    let mut field = |key: &str, value: &str| {
        tags.push(KeyValue {
            key: key.to_owned(),
            value: value.to_owned(),
        });
    };
    field(RUN_NAME_TAG, &record.name);
    if !record.description.is_empty() {
        field(NOTE_TAG, &record.description);
    }
    if let Some(git) = &record.git {
        for (key, value) in [
            (GIT_COMMIT_TAG, &git.commit),
            (GIT_BRANCH_TAG, &git.branch),
            (GIT_REPO_TAG, &git.remote),
        ] {
            if let Some(value) = value {
                field(key, value);
            }
        }
    }
    tags
}

pub fn artifact_uri(record: &RunRecord) -> String {
    format!(
        "mlflow-artifacts:/{}/{}/artifacts",
        record.project_id, record.id
    )
}

pub fn lifecycle_stage(trashed: bool) -> &'static str {
    if trashed { "deleted" } else { "active" }
}

pub fn run_info(state: &AppState, record: &RunRecord) -> Value {
    let now = state.now();
    let view_status = record.status_at(now, state.settings.heartbeat_timeout);
    let mut info = json!({
        "run_id": record.id.to_string(),
        "run_uuid": record.id.to_string(),
        "run_name": record.name,
        "experiment_id": record.project_id.to_string(),
        "user_id": record.owner.to_string(),
        "status": status_name(view_status),
        "start_time": millis(record.created_at),
        "artifact_uri": artifact_uri(record),
        "lifecycle_stage": lifecycle_stage(record.trashed_at.is_some()),
    });
    let ended_at = match (view_status, record.ended_at) {
        (_, Some(ended)) => Some(ended),
        (Status::Aborted, None) => Some(record.heartbeat_at),
        _ => None,
    };
    if let Some(ended_at) = ended_at {
        info["end_time"] = millis(ended_at).into();
    }
    info
}

/// A run as MLflow's `Run` message: info, and data with each metric's latest value.
pub fn run_json(state: &AppState, record: &RunRecord, dataset_inputs: Vec<Value>) -> Value {
    let metrics: Vec<Value> = record
        .series
        .iter()
        .filter(|(_, summary)| summary.kind == SeriesKind::Numeric)
        .map(|(name, summary)| {
            json!({
                "key": name,
                "value": JsonF64(summary.last.unwrap_or(f64::NAN)),
                "timestamp": (summary.last_timestamp * 1000.0).round() as i64,
                "step": summary.last_step,
            })
        })
        .collect();
    let params: Vec<KeyValue> = record
        .params
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: value.to_text(),
        })
        .collect();
    json!({
        "info": run_info(state, record),
        "data": {
            "metrics": metrics,
            "params": params,
            "tags": run_tags(record),
        },
        "inputs": { "dataset_inputs": dataset_inputs },
    })
}

pub fn experiment_json(project: &Project) -> Value {
    let tags: Vec<KeyValue> = project
        .tags
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: value.clone(),
        })
        .collect();
    json!({
        "experiment_id": project.id.to_string(),
        "name": project.name.as_str(),
        "artifact_location": format!("mlflow-artifacts:/{}", project.id),
        "lifecycle_stage": lifecycle_stage(project.trashed_at.is_some()),
        "creation_time": millis(project.created_at),
        "last_update_time": millis(project.updated_at.unwrap_or(project.created_at)),
        "tags": tags,
    })
}
