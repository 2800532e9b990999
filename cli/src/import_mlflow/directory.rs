//! An `mlruns` directory as the source: MLflow's file store layout, as the client writes
//! it with a `file:` tracking URI and as other trackers' export tools do.
//!
//! ```text
//! <experiment id>/meta.yaml                       name, experiment_id, lifecycle_stage
//! <experiment id>/<run id>/meta.yaml              run_id, run_name, start_time, end_time,
//!                                                 status (1-5), lifecycle_stage, artifact_uri
//! <experiment id>/<run id>/params/<key>           the value (keys with `/` are directories)
//! <experiment id>/<run id>/tags/<key>             the value
//! <experiment id>/<run id>/metrics/<key>          lines `timestamp value [step [dataset digest]]`
//! <experiment id>/<run id>/inputs/<id>/meta.yaml  a dataset input: source_id and tags
//! <experiment id>/datasets/<id>/meta.yaml         the dataset
//! <experiment id>/<run id>/artifacts/...
//! .trash/<experiment id>/...                      deleted experiments
//! ```

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sextant_domain::floats::JsonF64;

use super::source::{
    Artifacts, Experiment, Int64, KeyValue, LoggedModel, POINTS_PER_PAGE, Page, Point, SourceRun,
};

const META: &str = "meta.yaml";
/// Run directories read per page: each run's params and tags are held until imported.
const RUNS_PER_PAGE: usize = 100;
/// Deeper than any artifact path Sextant accepts; stops a loop of symbolic links.
const MAX_DEPTH: usize = 32;

#[derive(Debug)]
pub struct Directory {
    root: PathBuf,
}

impl Directory {
    pub fn open(from: &str) -> anyhow::Result<Self> {
        let root = local_path(from).unwrap_or_else(|| PathBuf::from(from));
        if !root.is_dir() {
            bail!("{from} is neither an http(s):// MLflow tracking server nor an mlruns directory");
        }
        Ok(Self { root })
    }

    pub fn experiments(&self) -> anyhow::Result<Vec<Experiment>> {
        let mut experiments = Vec::new();
        for (parent, trashed) in [(self.root.clone(), false), (self.root.join(".trash"), true)] {
            if !parent.is_dir() {
                continue;
            }
            for dir in subdirectories(&parent)? {
                if !dir.join(META).is_file() {
                    continue;
                }
                let meta = read_yaml(&dir.join(META))?;
                // The model registry's folder and the like hold other meta files.
                let Some(name) = text(&meta["name"]) else {
                    continue;
                };
                let id = text(&meta["experiment_id"]).unwrap_or_else(|| file_name(&dir));
                experiments.push(Experiment {
                    id,
                    name,
                    deleted: trashed || meta["lifecycle_stage"] == "deleted",
                    dir: Some(dir),
                });
            }
        }
        experiments
            .sort_by(|a, b| (a.id.len(), &a.id, a.deleted).cmp(&(b.id.len(), &b.id, b.deleted)));
        if experiments.is_empty() {
            bail!(
                "{} holds no MLflow experiments (an mlruns directory has <experiment id>/meta.yaml)",
                self.root.display()
            );
        }
        Ok(experiments)
    }

    /// A page of run directories, by name after the last one of the previous page.
    pub fn runs(
        &self,
        experiment: &Experiment,
        page: Option<String>,
    ) -> anyhow::Result<Page<anyhow::Result<SourceRun>>> {
        let dir = experiment
            .dir
            .as_deref()
            .context("an experiment of a directory has a directory")?;
        // Names alone, without a look at each entry: an experiment may hold many
        // thousands of runs, listed again for every page.
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let name = file_name(
                &entry
                    .with_context(|| format!("listing {}", dir.display()))?
                    .path(),
            );
            if page.as_ref().is_none_or(|after| &name > after) {
                names.push(name);
            }
        }
        names.sort();
        let mut runs = Vec::new();
        for (at, name) in names.iter().enumerate() {
            if runs.len() == RUNS_PER_PAGE {
                return Ok((runs, Some(names[at - 1].clone())));
            }
            // The experiment's own folders (tags, datasets, models) hold no meta.yaml.
            let run_dir = dir.join(name);
            if run_dir.join(META).is_file() {
                runs.push(
                    read_run(&run_dir, dir)
                        .with_context(|| format!("reading the run in {}", run_dir.display())),
                );
            }
        }
        Ok((runs, None))
    }
}

fn read_run(dir: &Path, experiment_dir: &Path) -> anyhow::Result<SourceRun> {
    let meta = read_yaml(&dir.join(META))?;
    let id = text(&meta["run_id"])
        .or_else(|| text(&meta["run_uuid"]))
        .unwrap_or_else(|| file_name(dir));
    let status = match &meta["status"] {
        Value::Null => "RUNNING".to_owned(),
        Value::Number(code) => status_name(code.as_i64().unwrap_or_default())
            .with_context(|| format!("status {code} is not one of MLflow's (1 to 5)"))?
            .to_owned(),
        other => text(other).context("status is neither a number nor a name")?,
    };
    let tags = entries(&dir.join("tags"))?;
    // Runs written before MLflow kept run_name in meta.yaml have only the tag.
    let name = text(&meta["run_name"])
        .filter(|name| !name.is_empty())
        .or_else(|| {
            tags.iter()
                .find(|tag| tag.key == "mlflow.runName")
                .map(|tag| tag.value.clone())
        })
        .unwrap_or_default();
    let artifact_uri = text(&meta["artifact_uri"]).unwrap_or_default();
    let artifacts = artifacts_of(dir, &artifact_uri);
    Ok(SourceRun {
        id,
        name,
        status,
        start_time: meta["start_time"].as_i64(),
        end_time: meta["end_time"].as_i64(),
        deleted: meta["lifecycle_stage"] == "deleted",
        params: entries(&dir.join("params"))?,
        tags,
        metric_keys: files_below(&dir.join("metrics"))?
            .into_iter()
            .map(|(key, _)| key)
            .collect(),
        dataset_inputs: dataset_inputs(dir, experiment_dir)?,
        artifacts,
        artifact_uri,
        model_ids: model_outputs(dir)?,
        dir: Some(dir.to_owned()),
    })
}

/// Where the artifacts of a run or model kept in `dir` are: its own folder first (an
/// mlruns directory copied elsewhere keeps URIs that point where it was), else its URI.
fn artifacts_of(dir: &Path, uri: &str) -> Artifacts {
    if dir.join("artifacts").is_dir() || uri.is_empty() {
        return Artifacts::Local(dir.join("artifacts"));
    }
    local_path(uri).map_or(Artifacts::Unreachable, Artifacts::Local)
}

/// The models a run logged: `outputs/<id>/meta.yaml`, each naming its model.
fn model_outputs(run_dir: &Path) -> anyhow::Result<Vec<String>> {
    let outputs = run_dir.join("outputs");
    if !outputs.is_dir() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    for output in subdirectories(&outputs)? {
        let meta = read_yaml(&output.join(META))?;
        ids.push(text(&meta["source_id"]).unwrap_or_else(|| file_name(&output)));
    }
    ids.sort();
    Ok(ids)
}

/// A logged model of the run's experiment: `models/<id>/meta.yaml` and its artifacts.
pub fn logged_model(run: &SourceRun, id: &str) -> anyhow::Result<LoggedModel> {
    let dir = run
        .dir
        .as_deref()
        .and_then(Path::parent)
        .context("a run of a directory is in its experiment's")?
        .join("models")
        .join(id);
    let meta = read_yaml(&dir.join(META))
        .with_context(|| format!("reading logged model {id} of run {}", run.id))?;
    let artifact_uri = text(&meta["artifact_location"]).unwrap_or_default();
    Ok(LoggedModel {
        id: id.to_owned(),
        name: text(&meta["name"]).unwrap_or_else(|| id.to_owned()),
        artifacts: artifacts_of(&dir, &artifact_uri),
        artifact_uri,
    })
}

/// A run's status from the file store's integer enum.
fn status_name(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "RUNNING",
        2 => "SCHEDULED",
        3 => "FINISHED",
        4 => "FAILED",
        5 => "KILLED",
        _ => return None,
    })
}

/// Params or tags: each file below `dir` is one, its path the key, its content the value.
fn entries(dir: &Path) -> anyhow::Result<Vec<KeyValue>> {
    files_below(dir)?
        .into_iter()
        .map(|(key, _)| {
            let path = key
                .split('/')
                .fold(dir.to_owned(), |at, part| at.join(part));
            let value = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {} as UTF-8 text", path.display()))?;
            Ok(KeyValue { key, value })
        })
        .collect()
}

/// The dataset inputs of a run, as the tracking API writes them. An input whose dataset
/// is missing is skipped with a warning, as MLflow itself does.
fn dataset_inputs(run_dir: &Path, experiment_dir: &Path) -> anyhow::Result<Vec<Value>> {
    let inputs = run_dir.join("inputs");
    if !inputs.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for input in subdirectories(&inputs)? {
        let meta = read_yaml(&input.join(META))?;
        if meta["source_type"] != "DATASET" {
            continue;
        }
        let dataset_id = text(&meta["source_id"]).context("a dataset input without source_id")?;
        let dataset_meta = experiment_dir.join("datasets").join(&dataset_id).join(META);
        if !dataset_meta.is_file() {
            eprintln!(
                "warning: {} names dataset {dataset_id}, which {} lacks; skipping that input",
                input.display(),
                experiment_dir.display()
            );
            continue;
        }
        let mut dataset = read_yaml(&dataset_meta)?;
        if let Some(fields) = dataset.as_object_mut() {
            fields.retain(|_, value| !value.is_null());
        }
        let tags: Vec<Value> = meta["tags"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| json!({ "key": key, "value": text(value).unwrap_or_default() }))
            .collect();
        found.push(json!({ "tags": tags, "dataset": dataset }));
    }
    Ok(found)
}

/// A page of a metric's file, from a byte offset: bounded memory whatever its length.
pub fn metric_page(
    run: &SourceRun,
    key: &str,
    page: Option<String>,
) -> anyhow::Result<Page<Point>> {
    let dir = run
        .dir
        .as_deref()
        .context("a run of a directory has a directory")?;
    let path = key
        .split('/')
        .fold(dir.join("metrics"), |at, part| at.join(part));
    let offset: u64 = match &page {
        Some(token) => token
            .parse()
            .context("a metric page token is a byte offset")?,
        None => 0,
    };
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut points = Vec::new();
    let mut at = offset;
    let mut line = String::new();
    while points.len() < POINTS_PER_PAGE {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        if !line.trim().is_empty() {
            let point = parse_point(key, &line).with_context(|| {
                format!("{} at byte {at}: {:?}", path.display(), line.trim_end())
            })?;
            points.push(point);
        }
        at += read as u64;
    }
    Ok((points, (at < length).then(|| at.to_string())))
}

/// A metric line: `timestamp value`, then `step`, then a dataset name and digest (which
/// Sextant's series do not keep).
fn parse_point(key: &str, line: &str) -> anyhow::Result<Point> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if !matches!(fields.len(), 2 | 3 | 5) {
        bail!("a metric line has 2, 3 or 5 fields, not {}", fields.len());
    }
    let timestamp = fields[0]
        .parse()
        .context("the timestamp is not an integer")?;
    // Python writes NaN and the infinities as nan, inf and -inf, which Rust reads.
    let value = fields[1].parse().context("the value is not a number")?;
    let step = match fields.get(2) {
        Some(step) => step.parse().context("the step is not an integer")?,
        None => 0,
    };
    Ok(Point {
        key: key.to_owned(),
        value: JsonF64(value),
        timestamp: Int64(timestamp),
        step: Int64(step),
    })
}

/// Every file below `root` (none if it does not exist), by `/`-separated path relative
/// to it, with its size.
pub fn files_below(root: &Path) -> anyhow::Result<Vec<(String, Option<u64>)>> {
    let mut files = Vec::new();
    if !root.is_dir() {
        return Ok(files);
    }
    let mut pending = vec![(root.to_owned(), String::new(), 0)];
    while let Some((dir, prefix, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            bail!(
                "{} is nested deeper than {MAX_DEPTH} directories",
                dir.display()
            );
        }
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .map_err(|name| anyhow::anyhow!("{name:?} in {} is not UTF-8", dir.display()))?;
            let below = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let metadata =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            if metadata.is_dir() {
                pending.push((path, below, depth + 1));
            } else {
                files.push((below, Some(metadata.len())));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The local path a URI or path names: `file:` URIs and plain paths; `None` for other
/// schemes.
pub fn local_path(uri: &str) -> Option<PathBuf> {
    if let Some(rest) = uri.strip_prefix("file:") {
        if rest.starts_with("//") {
            return url::Url::parse(uri).ok()?.to_file_path().ok();
        }
        return Some(PathBuf::from(rest));
    }
    // A scheme is letters before `:` (and no single letter: a Windows drive).
    let scheme = uri.split_once(':').map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme)
            if scheme.len() > 1
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            None
        }
        _ => Some(PathBuf::from(uri)),
    }
}

fn subdirectories(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.is_dir() {
            found.push(path);
        }
    }
    Ok(found)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_yaml(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("{} is not valid YAML", path.display()))
}

/// A YAML scalar as text: strings as they are, numbers (ids written unquoted by older
/// versions) as digits.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(if *flag { "True" } else { "False" }.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_of_every_shape_mlflow_writes_parse() {
        let point = |line| parse_point("loss", line).expect("parses");
        assert_eq!(point("1700000000000 0.5 3\n").step, Int64(3));
        assert_eq!(point("1700000000000 1e-05").step, Int64(0));
        assert_eq!(point("1700000000000 1e-05").value, JsonF64(1e-05));
        assert!(point("1 nan 0").value.0.is_nan());
        assert_eq!(point("1 -inf 0").value, JsonF64(f64::NEG_INFINITY));
        assert_eq!(point("1 2.5 7 train abc123").step, Int64(7));
        assert!(parse_point("loss", "1 2 3 4").is_err());
        assert!(parse_point("loss", "soon 2 3").is_err());
    }

    #[test]
    fn local_paths_come_from_file_uris_and_plain_paths_only() {
        assert_eq!(
            local_path("file:///srv/mlruns"),
            Some(PathBuf::from("/srv/mlruns"))
        );
        assert_eq!(local_path("file:./mlruns"), Some(PathBuf::from("./mlruns")));
        assert_eq!(
            local_path("/srv/mlruns"),
            Some(PathBuf::from("/srv/mlruns"))
        );
        assert_eq!(local_path("mlruns"), Some(PathBuf::from("mlruns")));
        assert_eq!(local_path("s3://bucket/mlruns"), None);
        assert_eq!(local_path("mlflow-artifacts:/1/abc"), None);
    }

    #[test]
    fn an_experiments_runs_are_read_in_pages_each_once_whatever_else_it_holds() {
        let root = tempfile::tempdir().expect("temp dir");
        let experiment_dir = root.path().join("7");
        std::fs::create_dir_all(experiment_dir.join("tags")).expect("dirs");
        std::fs::write(
            experiment_dir.join(META),
            "experiment_id: '7'\nname: sweep\n",
        )
        .expect("write");
        for i in 0..250 {
            let run = experiment_dir.join(format!("run{i:03}"));
            std::fs::create_dir_all(run.join("params")).expect("dirs");
            std::fs::write(run.join(META), format!("run_id: run{i:03}\nstatus: 3\n"))
                .expect("write");
            std::fs::write(run.join("params").join("i"), i.to_string()).expect("write");
        }
        let source = Directory::open(&root.path().display().to_string()).expect("opens");
        let experiments = source.experiments().expect("experiments");
        assert_eq!(experiments.len(), 1);
        let mut seen = Vec::new();
        let mut page = None;
        loop {
            let (runs, next) = source.runs(&experiments[0], page).expect("page");
            assert!(runs.len() <= RUNS_PER_PAGE);
            for run in runs {
                let run = run.expect("run");
                assert_eq!(run.status, "FINISHED");
                let number: u32 = run.id["run".len()..].parse().expect("numbered");
                assert_eq!(run.params[0].value, number.to_string());
                seen.push(run.id);
            }
            match next {
                Some(next) => page = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = (0..250).map(|i| format!("run{i:03}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_metric_file_is_read_in_pages_that_resume_where_the_last_one_ended() {
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics = dir.path().join("metrics/train");
        std::fs::create_dir_all(&metrics).expect("dirs");
        let lines: String = (0..2_500)
            .map(|i| format!("{} {} {}\n", 1_000 + i, f64::from(i) / 3.0, i / 2))
            .collect();
        std::fs::write(metrics.join("loss"), lines).expect("write");
        let run = SourceRun {
            id: "r".into(),
            name: String::new(),
            status: "FINISHED".into(),
            start_time: None,
            end_time: None,
            deleted: false,
            params: Vec::new(),
            tags: Vec::new(),
            metric_keys: vec!["train/loss".into()],
            dataset_inputs: Vec::new(),
            artifacts: Artifacts::Unreachable,
            artifact_uri: String::new(),
            model_ids: Vec::new(),
            dir: Some(dir.path().to_owned()),
        };
        let mut all = Vec::new();
        let mut page = None;
        loop {
            let (points, next) = metric_page(&run, "train/loss", page).expect("page");
            assert!(points.len() <= POINTS_PER_PAGE);
            all.extend(points);
            match next {
                Some(next) => page = Some(next),
                None => break,
            }
        }
        assert_eq!(all.len(), 2_500);
        assert_eq!(all[2_499].timestamp, Int64(3_499));
        assert_eq!(all[2_499].value, JsonF64(2_499.0 / 3.0));
        assert_eq!(all[1_001].step, Int64(500));
    }
}
