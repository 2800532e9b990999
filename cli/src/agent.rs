//! `sextant agent`: runs queued jobs on this machine, one at a time. For each it claims
//! the oldest job of the queue whose labels it has, restores the job's code snapshot
//! into a fresh directory, runs the command there in a process group of its own (the
//! run's params appended as `--name value`), streams its output line by line into the
//! run's `stdout` and `stderr` text series, renews its claim while the command runs,
//! stops the whole group when the run is aborted, and reports the exit status.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rustix::process::{Pid, Signal};
use serde_json::{Value, json};
use sextant_domain::error::ErrorCode;
use sextant_domain::queue::AGENT_SERIES;
use sextant_domain::series::text::MAX_LINE_BYTES;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{ApiFailure, Client};
use crate::snapshot;

/// How long output lines gather before they are sent.
const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Lines and bytes of output in one log batch, well within the server's limits.
const MAX_BATCH_LINES: usize = 5_000;
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Tries of a request the server may fail transiently, with doubling pauses between.
const SEND_TRIES: u32 = 6;
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// How long the output of a finished command may take to drain: a process that left
/// its group (with `setsid`) can hold the pipes open forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between heartbeats, however long the lease: they carry the
/// news of an abort.
const MAX_BEAT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub project: String,
    pub queue: String,
    pub labels: BTreeSet<String>,
    /// How jobs name the agent that ran them.
    pub name: String,
    /// Return once no job this agent could run is waiting or running on the queue.
    pub exit_when_idle: bool,
    /// The pause before asking again when nothing is claimable.
    pub poll: Duration,
    /// How long a stopped command has between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// `host:pid`, which tells apart agents on one machine.
pub fn default_name() -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    format!("{host}:{}", std::process::id())
}

/// Runs jobs until `shutdown` is cancelled (stopping the job under way and reporting
/// it failed), or with `exit_when_idle`, until the queue holds nothing it could run.
pub async fn run(
    client: &Client,
    options: &AgentOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let claim_path = format!(
        "v1/projects/{}/queues/{}/claim",
        options.project, options.queue
    );
    let request = json!({"agent": options.name, "labels": options.labels});
    loop {
        let claimed = tokio::select! {
            claimed = client.post_optional::<Value>(&claim_path, &request) => claimed,
            () = shutdown.cancelled() => return Ok(()),
        };
        match claimed {
            Ok(Some(job)) => {
                run_job(client, options, &job, &shutdown).await?;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                continue;
            }
            Ok(None) => {
                if options.exit_when_idle && !has_runnable_jobs(client, options).await? {
                    return Ok(());
                }
            }
            Err(err) if is_refusal(&err) => return Err(err.context("claiming a job")),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "cannot claim a job; asking again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(options.poll) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// An answer of the server saying the request itself is wrong, which asking again
/// does not change.
fn is_refusal(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ApiFailure>()
        .is_some_and(|failure| failure.status.is_client_error())
}

/// Whether a job the agent has the labels for is waiting or held by an agent that may
/// still give it back.
async fn has_runnable_jobs(client: &Client, options: &AgentOptions) -> anyhow::Result<bool> {
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "v1/projects/{}/queues/{}/jobs?state=waiting,claimed&limit=500",
            options.project, options.queue
        );
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = client.get(&path).await?;
        let runnable = page["jobs"].as_array().into_iter().flatten().any(|job| {
            job["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|label| label.as_str().is_some_and(|l| options.labels.contains(l)))
        });
        if runnable {
            return Ok(true);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(false),
        }
    }
}

/// How a claimed job's command ended, as `POST /v1/jobs/{run}/finish` takes it.
#[derive(Debug, Default)]
struct Report {
    exit_code: Option<i32>,
    signal: Option<i32>,
    reason: Option<String>,
}

impl Report {
    fn not_run(reason: String) -> Self {
        Self {
            reason: Some(reason),
            ..Self::default()
        }
    }

    fn summary(&self) -> String {
        let status = match (self.exit_code, self.signal) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "did not run".to_owned(),
        };
        match &self.reason {
            Some(reason) => format!("{status}: {reason}"),
            None => status,
        }
    }
}

/// A job as claimed: what the agent needs of the server's answer.
#[derive(Debug)]
struct Claimed {
    run: String,
    attempt: u64,
    /// What the command authenticates with: its run's credential, never the agent's key.
    token: String,
    lease: Duration,
    argv: Vec<String>,
    params: serde_json::Map<String, Value>,
    code: Option<String>,
}

impl Claimed {
    fn parse(job: &Value) -> anyhow::Result<Self> {
        let command: Vec<String> =
            serde_json::from_value(job["command"].clone()).context("a job without a command")?;
        let params = job["run"]["params"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut argv = command;
        for (name, value) in &params {
            argv.push(format!("--{name}"));
            argv.push(match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            });
        }
        Ok(Self {
            run: job["run_id"]
                .as_str()
                .context("a job without run_id")?
                .to_owned(),
            attempt: job["attempts"].as_u64().context("a job without attempts")?,
            token: job["job_token"]
                .as_str()
                .context("a claimed job without its job_token")?
                .to_owned(),
            lease: Duration::from_secs_f64(job["lease_secs"].as_f64().unwrap_or(60.0).max(1.0)),
            argv,
            params,
            code: job["code"].as_str().map(str::to_owned),
        })
    }

    /// A third of the lease, so a late heartbeat or two do not lose the claim.
    fn beat_interval(&self) -> Duration {
        (self.lease / 3).min(MAX_BEAT_INTERVAL)
    }
}

async fn run_job(
    client: &Client,
    options: &AgentOptions,
    job: &Value,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let claimed = Claimed::parse(job)?;
    tracing::info!(run = %claimed.run, attempt = claimed.attempt, "running a job");
    let log = OutputLog::start(client.clone(), &claimed, &job["run"]["series"]);
    log.line(
        AGENT_SERIES,
        format!(
            "attempt {} on agent {}: {}",
            claimed.attempt,
            options.name,
            claimed.argv.join(" ")
        ),
    );
    let workdir = tempfile::Builder::new()
        .prefix("sextant-job-")
        .tempdir()
        .context("creating the job's directory")?;
    let report = execute(client, options, &claimed, workdir.path(), &log, shutdown).await;
    log.line(AGENT_SERIES, report.summary());
    log.close().await;
    tracing::info!(run = %claimed.run, outcome = %report.summary(), "job ended");
    finish(client, &claimed, &report).await;
    Ok(())
}

async fn execute(
    client: &Client,
    options: &AgentOptions,
    job: &Claimed,
    workdir: &std::path::Path,
    log: &OutputLog,
    shutdown: &CancellationToken,
) -> Report {
    if let Some(code) = &job.code
        && let Err(err) = snapshot::download(client, &job.run, code, workdir).await
    {
        return Report::not_run(format!("could not restore the code snapshot: {err:#}"));
    }
    let mut command = Command::new(&job.argv[0]);
    command
        .args(&job.argv[1..])
        .current_dir(workdir)
        .env("SEXTANT_URL", client.base().as_str())
        .env("SEXTANT_API_KEY", &job.token)
        .env("SEXTANT_RUN_ID", &job.run)
        .env(
            "SEXTANT_PARAMS",
            Value::Object(job.params.clone()).to_string(),
        )
        .env("SEXTANT_JOB_ATTEMPT", job.attempt.to_string())
        .env("SEXTANT_AGENT", &options.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: stopping the job stops everything it started, and a
        // Ctrl-C meant for the agent does not reach it.
        .process_group(0)
        .kill_on_drop(true);
    // Python buffers a pipe's output until it exits; lines should arrive as printed.
    if std::env::var_os("PYTHONUNBUFFERED").is_none() {
        command.env("PYTHONUNBUFFERED", "1");
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => return Report::not_run(format!("could not start {}: {err}", job.argv[0])),
    };
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    let readers: Vec<JoinHandle<()>> = [
        child
            .stdout
            .take()
            .map(|out| tokio::spawn(read_lines(out, "stdout", log.sender()))),
        child
            .stderr
            .take()
            .map(|err| tokio::spawn(read_lines(err, "stderr", log.sender()))),
    ]
    .into_iter()
    .flatten()
    .collect();

    let mut beats = tokio::time::interval(job.beat_interval());
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Why the command is being stopped, and when SIGKILL follows the SIGTERM.
    let mut stopping: Option<(&'static str, Instant)> = None;
    let mut killed = false;
    let status = loop {
        let kill_at = stopping.map(|(_, at)| at);
        tokio::select! {
            status = child.wait() => break status,
            _ = beats.tick() => {
                if let Some(why) = heartbeat(client, job).await
                    && stopping.is_none()
                {
                    signal_group(group, Signal::TERM);
                    stopping = Some((why, Instant::now() + options.grace));
                }
            }
            () = shutdown.cancelled(), if stopping.is_none() => {
                signal_group(group, Signal::TERM);
                stopping = Some(("the agent was stopped", Instant::now() + options.grace));
            }
            () = sleep_until(kill_at), if !killed => {
                signal_group(group, Signal::KILL);
                killed = true;
            }
        }
    };
    // What the command left running in its group goes with it.
    signal_group(group, Signal::KILL);
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(DRAIN_TIMEOUT, reader).await.is_err() {
            abort.abort();
        }
    }
    let reason = stopping.map(|(why, _)| why.to_owned());
    match status {
        Ok(status) => Report {
            exit_code: status.code(),
            signal: status.signal(),
            reason,
        },
        Err(err) => Report::not_run(format!("lost track of the command: {err}")),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group
        && let Err(err) = rustix::process::kill_process_group(group, signal)
        && err != rustix::io::Errno::SRCH
    {
        tracing::warn!(%err, "cannot signal the job's processes");
    }
}

/// Renews the claim; answers why the command must stop, if it must.
async fn heartbeat(client: &Client, job: &Claimed) -> Option<&'static str> {
    let path = format!("v1/jobs/{}/heartbeat", job.run);
    let body = json!({"attempt": job.attempt});
    let request = client.post::<Value>(&path, &body);
    match tokio::time::timeout(job.beat_interval(), request).await {
        Ok(Ok(answer)) => {
            let run = &answer["run"];
            (run["abort_requested"] == true || run["status"] == "aborted")
                .then_some("the run was aborted")
        }
        Ok(Err(err)) if is_refusal(&err) => {
            tracing::warn!(error = %format!("{err:#}"), "the job is no longer this agent's");
            Some("the agent lost its claim on the job")
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %format!("{err:#}"), "heartbeat failed; trying again");
            None
        }
        Err(_) => {
            tracing::warn!("heartbeat timed out; trying again");
            None
        }
    }
}

/// Reports the end, trying again for a while: the claim lapses if it never arrives.
async fn finish(client: &Client, job: &Claimed, report: &Report) {
    let body = json!({
        "attempt": job.attempt,
        "exit_code": report.exit_code,
        "signal": report.signal,
        "reason": report.reason,
    });
    let path = format!("v1/jobs/{}/finish", job.run);
    let mut pause = FIRST_PAUSE;
    for _ in 0..SEND_TRIES {
        match client.post::<Value>(&path, &body).await {
            Ok(_) => return,
            Err(err) if is_refusal(&err) => {
                tracing::warn!(run = %job.run, error = %format!("{err:#}"), "the server refused the job's end");
                return;
            }
            Err(err) => {
                tracing::warn!(run = %job.run, error = %format!("{err:#}"), "cannot report the job's end yet");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    tracing::error!(run = %job.run, "gave up reporting the job's end; its claim will lapse");
}

#[derive(Debug)]
struct Line {
    series: &'static str,
    text: String,
    timestamp: f64,
}

/// Sends output lines to the run in batches, numbering each series' lines on from
/// where earlier attempts of the job left it.
#[derive(Debug)]
struct OutputLog {
    lines: UnboundedSender<Line>,
    shipper: JoinHandle<()>,
}

impl OutputLog {
    fn start(client: Client, job: &Claimed, series: &Value) -> Self {
        let steps = ["stdout", "stderr", AGENT_SERIES]
            .into_iter()
            .map(|name| {
                let next = series[name]["last_step"]
                    .as_i64()
                    .map_or(0, |last| last + 1);
                (name, next)
            })
            .collect();
        let (lines, received) = unbounded_channel();
        let shipper = tokio::spawn(ship(client, job.run.clone(), job.attempt, steps, received));
        Self { lines, shipper }
    }

    fn sender(&self) -> UnboundedSender<Line> {
        self.lines.clone()
    }

    fn line(&self, series: &'static str, text: String) {
        let _ = self.lines.send(Line {
            series,
            text,
            timestamp: unix_now(),
        });
    }

    /// Sends what is left; the readers' senders must be gone.
    async fn close(self) {
        drop(self.lines);
        let _ = self.shipper.await;
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

async fn ship(
    client: Client,
    run: String,
    attempt: u64,
    mut steps: BTreeMap<&'static str, i64>,
    mut lines: UnboundedReceiver<Line>,
) {
    let path = format!("v1/runs/{run}/log");
    let mut batches = 0;
    let mut run_ended = false;
    while let Some(first) = lines.recv().await {
        let mut bytes = first.text.len();
        let mut batch = vec![first];
        let deadline = Instant::now() + FLUSH_INTERVAL;
        while batch.len() < MAX_BATCH_LINES && bytes < MAX_BATCH_BYTES {
            match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => {
                    bytes += line.text.len();
                    batch.push(line);
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The command's SDK may end the run while the command still prints.
        if run_ended {
            continue;
        }
        let mut text: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for line in batch {
            let step = steps.entry(line.series).or_insert(0);
            text.entry(line.series).or_default().push(json!({
                "step": *step,
                "text": line.text,
                "timestamp": line.timestamp,
            }));
            *step += 1;
        }
        batches += 1;
        let body = json!({"batch_id": format!("agent-{attempt}-{batches}"), "text": text});
        run_ended = !send_batch(&client, &path, &body).await;
    }
}

/// Sends a batch, trying again while the server fails; `false` once the run has ended.
async fn send_batch(client: &Client, path: &str, body: &Value) -> bool {
    let mut pause = FIRST_PAUSE;
    for _ in 0..SEND_TRIES {
        match client.post::<Value>(path, body).await {
            Ok(_) => return true,
            Err(err) if ApiFailure::code_of(&err) == Some(ErrorCode::RunEnded.as_str()) => {
                return false;
            }
            Err(err) if is_refusal(&err) => {
                tracing::warn!(error = %format!("{err:#}"), "the server refused the job's output");
                return true;
            }
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "cannot send the job's output yet");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    tracing::error!("gave up sending part of the job's output");
    true
}

async fn read_lines(
    stream: impl AsyncRead + Unpin,
    series: &'static str,
    sink: UnboundedSender<Line>,
) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = Line {
            series,
            text: console_line(&buffer),
            timestamp: unix_now(),
        };
        if sink.send(line).is_err() {
            return;
        }
    }
}

/// A line as the Python SDK's console capture logs it: without its line ending, only
/// the last redraw of a line that carriage returns redrew (a progress bar's final
/// state), cut to the longest line the server takes.
fn console_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let last = bytes.rsplit(|&byte| byte == b'\r').next().unwrap_or(bytes);
    let mut text = String::from_utf8_lossy(last).into_owned();
    if text.len() > MAX_LINE_BYTES {
        let mut end = MAX_LINE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_line_keeps_only_the_last_redraw_without_its_ending() {
        assert_eq!(console_line(b"epoch 1\n"), "epoch 1");
        assert_eq!(console_line(b"epoch 1\r\n"), "epoch 1");
        assert_eq!(console_line(b"10%\r50%\r100%\n"), "100%");
        assert_eq!(
            console_line(b"no newline at the end"),
            "no newline at the end"
        );
        assert_eq!(console_line(b"\n"), "");
        assert_eq!(console_line(b"caf\xc3\n"), "caf\u{fffd}");
    }

    #[test]
    fn a_console_line_is_cut_to_what_the_server_takes_on_a_character_boundary() {
        let mut long = "é".repeat(MAX_LINE_BYTES).into_bytes();
        long.push(b'\n');
        let line = console_line(&long);
        assert!(line.len() <= MAX_LINE_BYTES && line.len() > MAX_LINE_BYTES - 2);
        assert!(line.chars().all(|c| c == 'é'));
    }

    #[test]
    fn params_follow_the_command_as_options() {
        let job = json!({
            "run_id": "run_x",
            "attempts": 2,
            "job_token": "token-of-the-run",
            "lease_secs": 30,
            "command": ["python", "train.py"],
            "code": null,
            "run": {"params": {"lr": 0.5, "model": "resnet", "amp": true}},
        });
        let claimed = Claimed::parse(&job).expect("a job");
        assert_eq!(
            claimed.argv,
            [
                "python", "train.py", "--amp", "true", "--lr", "0.5", "--model", "resnet"
            ]
        );
        assert_eq!(claimed.attempt, 2);
        assert_eq!(claimed.token, "token-of-the-run");
        assert_eq!(claimed.lease, Duration::from_secs(30));
        assert_eq!(claimed.code, None);
    }
}
