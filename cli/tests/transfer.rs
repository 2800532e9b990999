//! `sextant upload` and `sextant download` against the real `sextant serve`: multipart
//! uploads that resume after an interruption, checked downloads, code snapshots.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Server, post, start, team_with_run};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A team with a project and a run on a fresh server.
struct World {
    server: Server,
    api_key: String,
    run: String,
    cache: tempfile::TempDir,
    _data: tempfile::TempDir,
}

async fn world() -> World {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let (api_key, run) = team_with_run(&server, "cli").await;
    World {
        server,
        api_key,
        run,
        cache: tempfile::tempdir().unwrap(),
        _data: data,
    }
}

impl World {
    fn sextant(&self, args: &[&str], dir: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sextant"))
            .args(args)
            .current_dir(dir)
            .env("SEXTANT_URL", &self.server.base)
            .env("SEXTANT_API_KEY", &self.api_key)
            .env("SEXTANT_CACHE_DIR", self.cache.path())
            .output()
            .expect("running sextant")
    }

    /// Successful part uploads the server has logged.
    fn part_uploads(&self) -> usize {
        self.server
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| {
                line.contains("method=PUT")
                    && line.contains("/blobs/")
                    && line.contains("status=200")
            })
            .count()
    }
}

fn check(output: &Output) {
    assert!(
        output.status.success(),
        "sextant failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes `size` bytes that differ from part to part.
fn write_file(path: &Path, size: usize) -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(path, &bytes).unwrap();
    hex::encode(Sha256::digest(&bytes))
}

#[tokio::test]
async fn an_interrupted_multipart_upload_resumes_without_resending_parts() {
    let w = world().await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("model.bin");
    // Five 16 MiB parts, the last one short.
    let size = 70 * 1024 * 1024;
    let sha256 = write_file(&file, size);

    // Register the same artifact first to learn its upload, and trap part 3: a
    // directory where the part's file goes makes its upload fail.
    let client = reqwest::Client::new();
    let (status, plan) = post(
        &client,
        format!("{}/v1/runs/{}/artifacts", w.server.base, w.run),
        Some(&w.api_key),
        json!({"path": "ckpt/model.bin", "size": size, "sha256": sha256}),
    )
    .await;
    assert_eq!(status, 201, "{plan}");
    assert_eq!(plan["parts"].as_array().unwrap().len(), 5);
    let upload_id = plan["upload_id"].as_str().unwrap();
    let trap = w
        ._data
        .path()
        .join("blobs/uploads")
        .join(upload_id)
        .join("3");
    std::fs::create_dir_all(trap.join("in-the-way")).unwrap();

    let args = [
        "upload",
        &w.run,
        "model.bin",
        "--prefix",
        "ckpt",
        "--kind",
        "checkpoint",
        "--step",
        "700",
    ];
    let interrupted = w.sextant(&args, work.path());
    assert!(!interrupted.status.success(), "the trapped part must fail");
    let sent_before = w.part_uploads();
    assert_eq!(sent_before, 2, "parts 1 and 2 went through");

    std::fs::remove_dir_all(&trap).unwrap();
    let resumed = w.sextant(&args, work.path());
    check(&resumed);
    assert_eq!(w.part_uploads(), 5, "only parts 3 to 5 were sent again");
    let artifact: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(artifact["status"], "ready");
    assert_eq!(artifact["sha256"], sha256.as_str());
    assert_eq!(artifact["step"], 700);

    let downloaded = work.path().join("back.bin");
    check(&w.sextant(
        &["download", &w.run, "ckpt/model.bin", "--to", "back.bin"],
        work.path(),
    ));
    let bytes = std::fs::read(&downloaded).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256);
}

#[tokio::test]
async fn a_small_file_uploads_in_one_put_and_a_missing_artifact_fails_clearly() {
    let w = world().await;
    let work = tempfile::tempdir().unwrap();
    let sha256 = write_file(&work.path().join("notes.txt"), 1000);
    let uploaded = w.sextant(&["upload", &w.run, "notes.txt"], work.path());
    check(&uploaded);
    let artifact: Value = serde_json::from_slice(&uploaded.stdout).unwrap();
    assert_eq!(artifact["path"], "notes.txt");
    assert_eq!(artifact["sha256"], sha256.as_str());

    let missing = w.sextant(&["download", &w.run, "nope.txt"], work.path());
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.txt"));
    assert!(!work.path().join("nope.txt").exists());
}

#[tokio::test]
async fn a_code_snapshot_restores_the_exact_source_and_records_git_on_the_run() {
    let w = world().await;
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "trunk"]);
    git(&["config", "user.email", "cli@example.com"]);
    git(&["config", "user.name", "Cli"]);
    std::fs::write(repo.path().join("train.py"), "epochs = 3\n").unwrap();
    git(&["add", "train.py"]);
    git(&["commit", "-q", "-m", "train"]);
    // How CI checkouts configure their remote: a token in the URL.
    git(&[
        "remote",
        "add",
        "origin",
        "https://x-access-token:ghp_sekrit@github.com/whales/w.git",
    ]);
    std::fs::write(repo.path().join("train.py"), "epochs = 30\n").unwrap();

    let uploaded = w.sextant(&["upload", &w.run, "--code"], repo.path());
    check(&uploaded);
    let run: Value = reqwest::Client::new()
        .get(format!("{}/v1/runs/{}", w.server.base, w.run))
        .bearer_auth(&w.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["git"]["branch"], "trunk");
    assert_eq!(run["git"]["dirty"], true);
    assert_eq!(run["git"]["commit"].as_str().unwrap().len(), 40);
    assert_eq!(run["git"]["remote"], "https://github.com/whales/w.git");

    let elsewhere = tempfile::tempdir().unwrap();
    check(&w.sextant(
        &["download", &w.run, "--code", "--to", "restored"],
        elsewhere.path(),
    ));
    let restored = elsewhere.path().join("restored");
    assert_eq!(
        std::fs::read_to_string(restored.join("train.py")).unwrap(),
        "epochs = 30\n"
    );
    assert!(
        std::fs::read_to_string(restored.join("uncommitted.diff"))
            .unwrap()
            .contains("+epochs = 30")
    );
    let recorded = std::fs::read_to_string(restored.join("sextant-snapshot.json")).unwrap();
    assert!(!recorded.contains("ghp_sekrit"), "{recorded}");
}

#[tokio::test]
async fn an_interrupted_download_resumes_from_the_bytes_on_disk() {
    let w = world().await;
    let work = tempfile::tempdir().unwrap();
    let size = 3 * 1024 * 1024;
    let sha256 = write_file(&work.path().join("weights.bin"), size);
    check(&w.sextant(&["upload", &w.run, "weights.bin"], work.path()));

    // What an interrupted download leaves: the first megabyte, beside the destination.
    let whole = std::fs::read(work.path().join("weights.bin")).unwrap();
    let partial = work
        .path()
        .join(format!("back.bin.{}.sextant-partial", &sha256[..12]));
    std::fs::write(&partial, &whole[..1024 * 1024]).unwrap();

    check(&w.sextant(
        &["download", &w.run, "weights.bin", "--to", "back.bin"],
        work.path(),
    ));
    assert_eq!(std::fs::read(work.path().join("back.bin")).unwrap(), whole);
    assert!(!partial.exists());
    let ranged = w
        .server
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains("method=GET") && line.contains("status=206"));
    assert!(ranged, "the rest was fetched as a range");
}
