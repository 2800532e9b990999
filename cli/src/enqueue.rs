//! `sextant enqueue`: puts a command on a project's queue for an agent to run, with a
//! snapshot of the code it runs in.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};

use crate::client::Client;
use crate::snapshot;

#[derive(Debug, Clone)]
pub struct Enqueue {
    pub project: String,
    pub queue: String,
    pub params: serde_json::Map<String, Value>,
    pub labels: Vec<String>,
    pub name: Option<String>,
    pub max_attempts: Option<u32>,
    /// The git repository whose snapshot the command runs in; `None` runs it in an
    /// empty directory.
    pub code: Option<PathBuf>,
    pub command: Vec<String>,
}

/// Parses `NAME=VALUE`: numbers and booleans are kept as such, anything else is text.
pub fn parse_param(text: &str) -> Result<(String, Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, not {text:?}"))?;
    let value = match serde_json::from_str::<Value>(value) {
        Ok(parsed @ (Value::Number(_) | Value::Bool(_))) => parsed,
        _ => Value::String(value.to_owned()),
    };
    Ok((name.to_owned(), value))
}

/// Creates the run queued, uploads the code snapshot to it, then enqueues it, so no
/// agent can take the job before its code is there. Answers the job.
pub async fn enqueue(client: &Client, job: Enqueue) -> anyhow::Result<Value> {
    let mut new_run = json!({"status": "queued", "params": job.params});
    if let Some(name) = &job.name {
        new_run["name"] = name.as_str().into();
    }
    let run: Value = client
        .post(&format!("v1/projects/{}/runs", job.project), &new_run)
        .await
        .context("creating the job's run")?;
    let run_id = run["id"]
        .as_str()
        .context("the server answered a run without an id")?
        .to_owned();
    let enqueued = async {
        let code = match job.code {
            Some(dir) => {
                snapshot::upload(client, &run_id, dir)
                    .await
                    .context("uploading the code snapshot (pass --no-code to run without one)")?;
                Some(snapshot::SNAPSHOT_PATH)
            }
            None => None,
        };
        client
            .post(
                &format!("v1/projects/{}/queues/{}/jobs", job.project, job.queue),
                &json!({
                    "run": run_id,
                    "command": job.command,
                    "labels": job.labels,
                    "code": code,
                    "max_attempts": job.max_attempts,
                }),
            )
            .await
    }
    .await;
    if enqueued.is_err() {
        // No agent will run it: it must not wait on the run table as queued forever.
        let aborted: anyhow::Result<Value> = client
            .post(&format!("v1/runs/{run_id}/abort"), &json!({}))
            .await;
        if let Err(err) = aborted {
            tracing::warn!(run = %run_id, error = %format!("{err:#}"), "the run of the failed enqueue stays queued");
        }
    }
    enqueued
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_keep_numbers_and_booleans_and_take_anything_else_as_text() {
        let parse = |text| parse_param(text).expect("a param");
        assert_eq!(parse("lr=0.001"), ("lr".to_owned(), json!(0.001)));
        assert_eq!(parse("epochs=10"), ("epochs".to_owned(), json!(10)));
        assert_eq!(parse("amp=true"), ("amp".to_owned(), json!(true)));
        assert_eq!(
            parse("model=resnet50"),
            ("model".to_owned(), json!("resnet50"))
        );
        assert_eq!(parse("note=a=b"), ("note".to_owned(), json!("a=b")));
        assert_eq!(parse("list=[1,2]"), ("list".to_owned(), json!("[1,2]")));
        assert!(parse_param("no-value").is_err());
    }
}
