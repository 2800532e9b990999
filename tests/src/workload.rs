//! The standard workload (`tests/workloads/curves.py`, which every benchmark draws
//! its points from) and log batches cut from it as the SDK sends them.

use std::path::Path;

use serde::Deserialize;
use serde_json::json;

/// One series of one run, as `curves.py` prints it.
#[derive(Debug, Clone, Deserialize)]
pub struct Series {
    pub run: usize,
    pub name: String,
    pub steps: Vec<i64>,
    pub values: Vec<f64>,
    pub timestamps: Vec<f64>,
}

/// `runs` runs of `steps` steps each, seed 7.
pub fn workload(runs: usize, steps: usize) -> Vec<Series> {
    // The team's `workloads/curves.py`, kept in the repository byte for byte so that a
    // checkout anywhere (CI's included) runs the same workload.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/curves.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .args([
            "--runs",
            &runs.to_string(),
            "--steps",
            &steps.to_string(),
            "--seed",
            "7",
        ])
        .output()
        .expect("running curves.py");
    assert!(output.status.success(), "curves.py failed");
    output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("a workload line"))
        .collect()
}

/// The series of run `run`, and the last step any of them logged.
pub fn of_run(workload: &[Series], run: usize) -> (Vec<&Series>, i64) {
    let series: Vec<&Series> = workload.iter().filter(|s| s.run == run).collect();
    let last = series
        .iter()
        .flat_map(|s| s.steps.last())
        .max()
        .copied()
        .unwrap_or(0);
    (series, last)
}

/// Log batches as the SDK sends them: every series of a run, `window` steps at a time,
/// numbered in one sender session, as JSON bodies of `POST /v1/runs/{run}/log`.
pub fn batches(workload: &[Series], run: usize, window: i64) -> Vec<Vec<u8>> {
    let (series, last) = of_run(workload, run);
    let mut bodies = Vec::new();
    let mut start = 0;
    while start <= last {
        let end = start + window;
        let mut batch = serde_json::Map::new();
        for s in &series {
            let from = s.steps.partition_point(|&step| step < start);
            let to = s.steps.partition_point(|&step| step < end);
            if from < to {
                batch.insert(
                    s.name.clone(),
                    json!({
                        "steps": &s.steps[from..to],
                        "values": &s.values[from..to],
                        "timestamps": &s.timestamps[from..to],
                    }),
                );
            }
        }
        let sequence = bodies.len() + 1;
        let body = json!({
            "batch_id": format!("r{run}-{sequence}"),
            "session": format!("r{run}"),
            "sequence": sequence,
            "series": batch,
        });
        bodies.push(serde_json::to_vec(&body).expect("a batch serializes"));
        start = end;
    }
    bodies
}

pub fn points_in(workload: &[Series]) -> u64 {
    workload.iter().map(|s| s.steps.len() as u64).sum()
}
