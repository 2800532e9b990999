//! `sextant import mlflow`: copies experiments' runs (params, tags, every metric point,
//! dataset inputs, artifacts, status and times) from an MLflow tracking server or an
//! `mlruns` directory into one Sextant project.
//!
//! Runs are written through Sextant's own MLflow-compatible endpoints, so how MLflow's
//! model maps onto Sextant's is decided in one place, the server; artifacts go the
//! native way, which takes files of any size. The import is resumable and idempotent:
//! each run it makes carries `imported.mlflow_run_id` and `imported.mlflow_experiment`,
//! and `imported.incomplete` until its last write. Running it again skips the runs
//! found complete, and deletes and imports anew those an interruption left incomplete
//! (metric batches carry no idempotency key on MLflow's surface, so a run is never
//! continued, only redone). Memory stays bounded: metric histories and run listings
//! are read page by page, and artifacts go through a temporary file one at a time.

mod destination;
mod directory;
mod server;
mod source;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use self::destination::{Destination, Imported, METRICS_PER_BATCH, PARAMS_PER_BATCH};
use self::source::{Experiment, Point, Source, SourceRun};
use crate::client::{ApiFailure, Client};

#[derive(Debug, Clone)]
pub struct Options {
    /// An `http(s)://` tracking server, or an `mlruns` directory (path or `file:` URI).
    pub from: String,
    pub project: String,
    /// Names or ids; every experiment when empty.
    pub experiments: Vec<String>,
    /// Also import experiments and runs in the source's trash (into Sextant's).
    pub include_deleted: bool,
}

/// Why a run cannot be imported that lies with the run itself, not with a failing
/// server: the import reports it and goes on with the other runs.
#[derive(Debug)]
struct Refusal(String);

impl Refusal {
    fn unreadable(run_id: &str, uri: &str) -> Self {
        Refusal(format!(
            "run {run_id} has artifacts at {uri}, which this import cannot read: it reads \
             them through the tracking server's artifact proxy (which `mlflow server` \
             serves unless started with --no-serve-artifacts) or from a directory on this \
             machine"
        ))
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Whether an error stops the whole import (a server unreachable or failing, the
/// credentials refused) rather than one run (its data refused by Sextant, unreadable
/// files).
fn is_fatal(err: &anyhow::Error) -> bool {
    if err.downcast_ref::<Refusal>().is_some() {
        return false;
    }
    match err.downcast_ref::<ApiFailure>() {
        Some(failure) => {
            !failure.status.is_client_error() || matches!(failure.status.as_u16(), 401 | 403 | 429)
        }
        None => err.chain().any(|cause| cause.is::<reqwest::Error>()),
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub from: String,
    pub project: String,
    pub experiments: usize,
    /// Experiments in the source's trash, left out.
    pub experiments_in_trash: usize,
    pub runs_imported: usize,
    pub runs_already_imported: usize,
    /// Runs in the source's trash, left out.
    pub runs_in_trash: usize,
    pub runs_failed: usize,
    pub params: usize,
    pub metric_points: u64,
    pub artifacts: usize,
    pub artifact_bytes: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "imported from {} into project {} in {:.1} s",
            self.from,
            self.project,
            self.elapsed.as_secs_f64()
        )?;
        write!(f, "  experiments    {}", self.experiments)?;
        if self.experiments_in_trash > 0 {
            write!(
                f,
                " ({} in the source's trash left out)",
                self.experiments_in_trash
            )?;
        }
        writeln!(f)?;
        write!(
            f,
            "  runs           {} imported, {} already imported",
            self.runs_imported, self.runs_already_imported
        )?;
        if self.runs_in_trash > 0 {
            write!(f, ", {} in the source's trash left out", self.runs_in_trash)?;
        }
        if self.runs_failed > 0 {
            write!(f, ", {} failed", self.runs_failed)?;
        }
        writeln!(f)?;
        writeln!(f, "  params         {}", self.params)?;
        writeln!(f, "  metric points  {}", self.metric_points)?;
        writeln!(
            f,
            "  artifacts      {} ({} bytes)",
            self.artifacts, self.artifact_bytes
        )
    }
}

/// What one run brought.
#[derive(Debug, Default)]
struct Counts {
    params: usize,
    metric_points: u64,
    artifacts: usize,
    artifact_bytes: u64,
}

enum Outcome {
    AlreadyImported,
    Imported { run_id: String, counts: Counts },
}

/// Imports what `options` selects; a run that fails alone is reported on stderr and
/// counted in the summary, the others go on.
pub async fn import(client: &Client, options: &Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let source = Source::open(&options.from, client.base())?;
    let mut summary = Summary {
        from: options.from.clone(),
        project: options.project.clone(),
        ..Summary::default()
    };
    let experiments = select(source.experiments().await?, options, &mut summary)?;
    let destination = Destination::open(client, &options.project).await?;
    let mut earlier = destination.imported_runs().await?;
    for experiment in &experiments {
        summary.experiments += 1;
        let mut page = None;
        loop {
            let (runs, next) = source.runs(experiment, page).await?;
            for run in runs {
                let run = match run {
                    Ok(run) => run,
                    Err(err) => {
                        eprintln!("error: {err:#}");
                        summary.runs_failed += 1;
                        continue;
                    }
                };
                if run.deleted && !options.include_deleted {
                    summary.runs_in_trash += 1;
                    continue;
                }
                let before = earlier.remove(&run.id).unwrap_or_default();
                match import_run(&source, &destination, experiment, &run, &before).await {
                    Ok(Outcome::AlreadyImported) => {
                        summary.runs_already_imported += 1;
                        let complete = before.into_iter().filter(|i| i.complete).collect();
                        earlier.insert(run.id, complete);
                    }
                    Ok(Outcome::Imported { run_id, counts }) => {
                        eprintln!(
                            "imported run {:?} ({}) of {} as {run_id}: params {}, metric \
                             points {}, artifacts {}",
                            run.name,
                            run.id,
                            experiment.name,
                            counts.params,
                            counts.metric_points,
                            counts.artifacts
                        );
                        summary.runs_imported += 1;
                        summary.params += counts.params;
                        summary.metric_points += counts.metric_points;
                        summary.artifacts += counts.artifacts;
                        summary.artifact_bytes += counts.artifact_bytes;
                        // A run listed again (the source changed under the import) is
                        // then found imported.
                        let done = Imported {
                            run_id,
                            complete: true,
                            trashed: run.deleted,
                        };
                        earlier.insert(run.id, vec![done]);
                    }
                    Err(err) => {
                        let what = format!(
                            "importing run {:?} ({}) of experiment {}",
                            run.name, run.id, experiment.name
                        );
                        if is_fatal(&err) {
                            return Err(err.context(what));
                        }
                        eprintln!("error: {what}: {err:#}");
                        summary.runs_failed += 1;
                    }
                }
            }
            match next {
                Some(next) => page = Some(next),
                None => break,
            }
        }
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The experiments to import: those named (by name, else by id), or all of them; the
/// ones in the source's trash only with `--include-deleted`.
fn select(
    all: Vec<Experiment>,
    options: &Options,
    summary: &mut Summary,
) -> anyhow::Result<Vec<Experiment>> {
    if options.experiments.is_empty() {
        let (trashed, active): (Vec<_>, Vec<_>) = all.into_iter().partition(|e| e.deleted);
        if options.include_deleted {
            return Ok(active.into_iter().chain(trashed).collect());
        }
        summary.experiments_in_trash = trashed.len();
        return Ok(active);
    }
    let mut chosen: Vec<Experiment> = Vec::new();
    for wanted in &options.experiments {
        let found = all
            .iter()
            .find(|e| &e.name == wanted)
            .or_else(|| all.iter().find(|e| &e.id == wanted))
            .with_context(|| {
                format!(
                    "{} has no experiment named or numbered {wanted:?}",
                    options.from
                )
            })?;
        if found.deleted && !options.include_deleted {
            bail!(
                "experiment {wanted:?} is in the source's trash; pass --include-deleted to import it"
            );
        }
        if chosen.iter().all(|e| e.id != found.id) {
            chosen.push(found.clone());
        }
    }
    Ok(chosen)
}

async fn import_run(
    source: &Source,
    destination: &Destination<'_>,
    experiment: &Experiment,
    run: &SourceRun,
    before: &[Imported],
) -> anyhow::Result<Outcome> {
    for stale in before.iter().filter(|imported| !imported.complete) {
        destination.delete(&stale.run_id).await.with_context(|| {
            format!(
                "deleting run {}, left incomplete by an earlier import",
                stale.run_id
            )
        })?;
    }
    if let Some(done) = before.iter().find(|imported| imported.complete) {
        // An earlier import may have stopped between completing the run and trashing it.
        if run.deleted && !done.trashed {
            destination.trash(&done.run_id).await?;
        }
        return Ok(Outcome::AlreadyImported);
    }
    let run_id = destination
        .create_run(run, &experiment.name)
        .await
        .context("creating the run in Sextant")?;
    match copy(source, destination, run, &run_id).await {
        Ok(counts) => Ok(Outcome::Imported { run_id, counts }),
        Err(err) => {
            // The next import would delete it anyway; now the project shows no half run
            // meanwhile. If Sextant is what failed, this fails too, harmlessly.
            let _ = destination.delete(&run_id).await;
            Err(err)
        }
    }
}

/// Every point of every metric, in batches as large as Sextant takes; the next batch
/// is read from the source while the last one is written.
async fn copy_metrics(
    source: &Source,
    destination: &Destination<'_>,
    run: &SourceRun,
    run_id: &str,
) -> anyhow::Result<u64> {
    let (batches, mut ready) = tokio::sync::mpsc::channel::<Vec<Point>>(2);
    let read = async move {
        let mut batch = Vec::with_capacity(METRICS_PER_BATCH);
        for key in &run.metric_keys {
            let mut page = None;
            loop {
                let (points, next) = source.metric_page(run, key, page).await?;
                for point in points {
                    batch.push(point);
                    if batch.len() == METRICS_PER_BATCH {
                        let full =
                            std::mem::replace(&mut batch, Vec::with_capacity(METRICS_PER_BATCH));
                        // Closed only when the writer failed, whose error is the one told.
                        if batches.send(full).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                match next {
                    Some(next) => page = Some(next),
                    None => break,
                }
            }
        }
        if !batch.is_empty() {
            let _ = batches.send(batch).await;
        }
        anyhow::Ok(())
    };
    let write = async {
        let mut logged = 0;
        while let Some(batch) = ready.recv().await {
            destination
                .log_batch(run_id, &[], &batch)
                .await
                .context("logging metrics")?;
            logged += batch.len() as u64;
        }
        anyhow::Ok(logged)
    };
    let ((), logged) = futures::try_join!(read, write)?;
    Ok(logged)
}

/// Everything of the run after its creation, its end and completion last.
async fn copy(
    source: &Source,
    destination: &Destination<'_>,
    run: &SourceRun,
    run_id: &str,
) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    for params in run.params.chunks(PARAMS_PER_BATCH) {
        destination
            .log_batch(run_id, params, &[])
            .await
            .context("logging the params")?;
        counts.params += params.len();
    }
    counts.metric_points = copy_metrics(source, destination, run, run_id).await?;
    if !run.dataset_inputs.is_empty() {
        destination
            .log_inputs(run_id, &run.dataset_inputs)
            .await
            .context("logging the dataset inputs")?;
    }
    for file in source.artifact_files(run).await? {
        let fetched = source.fetch(&file).await?;
        let size = tokio::fs::metadata(fetched.path())
            .await
            .with_context(|| format!("reading {}", fetched.path().display()))?
            .len();
        destination
            .upload(run_id, fetched.path(), &file.path, file.of_model)
            .await
            .with_context(|| format!("uploading artifact {}", file.path))?;
        counts.artifacts += 1;
        counts.artifact_bytes += size;
    }
    destination
        .finish(run_id, run)
        .await
        .context("ending the run in Sextant")?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(id: &str, name: &str, deleted: bool) -> Experiment {
        Experiment {
            id: id.into(),
            name: name.into(),
            deleted,
            dir: None,
        }
    }

    fn options(experiments: &[&str], include_deleted: bool) -> Options {
        Options {
            from: "mlruns".into(),
            project: "p".into(),
            experiments: experiments.iter().map(|e| (*e).to_owned()).collect(),
            include_deleted,
        }
    }

    #[test]
    fn experiments_are_chosen_by_name_then_id_and_the_trash_only_when_asked() {
        let all = || {
            vec![
                experiment("0", "Default", false),
                experiment("1", "mnist", false),
                experiment("2", "old", true),
            ]
        };
        let names =
            |chosen: Vec<Experiment>| chosen.into_iter().map(|e| e.name).collect::<Vec<_>>();
        let mut summary = Summary::default();
        assert_eq!(
            names(select(all(), &options(&[], false), &mut summary).expect("all")),
            ["Default", "mnist"]
        );
        assert_eq!(summary.experiments_in_trash, 1);
        assert_eq!(
            names(select(all(), &options(&[], true), &mut summary).expect("all")),
            ["Default", "mnist", "old"]
        );
        assert_eq!(
            names(select(all(), &options(&["1", "mnist"], false), &mut summary).expect("one")),
            ["mnist"]
        );
        assert!(select(all(), &options(&["old"], false), &mut summary).is_err());
        assert!(select(all(), &options(&["nope"], false), &mut summary).is_err());
    }

    #[test]
    fn refusals_and_bad_requests_fail_one_run_while_outages_stop_the_import() {
        let answer = |status: u16| -> anyhow::Error {
            ApiFailure::from_answer(
                reqwest::StatusCode::from_u16(status).expect("status"),
                br#"{"error_code": "X", "message": "m"}"#,
            )
            .into()
        };
        assert!(!is_fatal(&answer(400).context("logging metrics")));
        assert!(!is_fatal(&answer(409)));
        assert!(is_fatal(&answer(401)));
        assert!(is_fatal(&answer(429)));
        assert!(is_fatal(&answer(503).context("creating the run")));
        assert!(!is_fatal(
            &anyhow::Error::new(Refusal("no".into())).context("artifacts")
        ));
        assert!(!is_fatal(&anyhow::anyhow!("a metric line has 4 fields")));
    }
}
