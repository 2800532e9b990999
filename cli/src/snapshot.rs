//! Code snapshots: the exact source a run executed. A snapshot is a gzipped tar of the
//! git-tracked files as they are in the working tree (so uncommitted edits are in
//! it), plus `uncommitted.diff` against `HEAD` and `sextant-snapshot.json` with the
//! commit, branch, remote and dirty flag.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::Serialize;

use crate::client::Client;
use crate::transfer::{self, UploadOptions};

/// The artifact path snapshots are stored under.
pub const SNAPSHOT_PATH: &str = "code/source.tar.gz";

#[derive(Debug, Clone, Serialize)]
pub struct GitInfo {
    pub commit: String,
    pub branch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    pub dirty: bool,
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("running git (is it installed?)")?;
    if !output.status.success() {
        bail!(
            "git {} failed in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

fn git_text(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&git(dir, args)?).trim().to_owned())
}

/// Writes a snapshot of the repository at `dir` into `out` (a gzipped tar).
pub fn create(dir: &Path, out: &std::fs::File) -> anyhow::Result<GitInfo> {
    let root = PathBuf::from(git_text(dir, &["rev-parse", "--show-toplevel"])?);
    let info = GitInfo {
        commit: git_text(&root, &["rev-parse", "HEAD"])?,
        branch: git_text(&root, &["rev-parse", "--abbrev-ref", "HEAD"])?,
        remote: git_text(&root, &["config", "--get", "remote.origin.url"])
            .ok()
            .map(|remote| sextant_domain::runs::without_credentials(&remote)),
        dirty: !git(&root, &["status", "--porcelain"])?.is_empty(),
    };
    let mut archive = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    archive.follow_symlinks(false);
    for name in git(&root, &["ls-files", "-z"])?.split(|&b| b == 0) {
        if name.is_empty() {
            continue;
        }
        let name = std::str::from_utf8(name).context("a tracked path is not UTF-8")?;
        let path = root.join(name);
        // A tracked file deleted in the working tree is simply not in the snapshot.
        if path.symlink_metadata().is_ok() {
            archive
                .append_path_with_name(&path, name)
                .with_context(|| format!("adding {name}"))?;
        }
    }
    let extras = [
        ("uncommitted.diff", git(&root, &["diff", "HEAD"])?),
        ("sextant-snapshot.json", serde_json::to_vec_pretty(&info)?),
    ];
    for (name, bytes) in extras {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, name, bytes.as_slice())?;
    }
    archive.into_inner()?.finish()?;
    Ok(info)
}

/// Unpacks a snapshot into `destination`; entries that would land outside it are
/// refused by the tar reader.
pub fn restore(snapshot: &Path, destination: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(destination)?;
    let file = std::fs::File::open(snapshot)?;
    tar::Archive::new(GzDecoder::new(file))
        .unpack(destination)
        .with_context(|| format!("unpacking into {}", destination.display()))
}

/// Snapshots the repository at `dir` as the run's code artifact and records its git
/// state on the run.
pub async fn upload(client: &Client, run: &str, dir: PathBuf) -> anyhow::Result<GitInfo> {
    let archive = tempfile::NamedTempFile::new()?;
    let file = archive.as_file().try_clone()?;
    let git = tokio::task::spawn_blocking(move || create(&dir, &file)).await??;
    let options = UploadOptions {
        path: SNAPSHOT_PATH.to_owned(),
        kind: Some("code".to_owned()),
        step: None,
        content_type: Some("application/gzip".to_owned()),
    };
    transfer::upload(client, run, archive.path(), &options).await?;
    let _: serde_json::Value = client
        .patch(
            &format!("v1/runs/{run}"),
            &serde_json::json!({ "git": git }),
        )
        .await?;
    Ok(git)
}

/// Restores the snapshot stored as the run's artifact `path` into `destination`.
pub async fn download(
    client: &Client,
    run: &str,
    path: &str,
    destination: &Path,
) -> anyhow::Result<()> {
    let archive = tempfile::NamedTempFile::new()?;
    transfer::download(client, run, path, archive.path()).await?;
    let target = destination.to_owned();
    tokio::task::spawn_blocking(move || restore(archive.path(), &target)).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, args: &[&str]) {
        git(dir, args).expect("git");
    }

    #[test]
    fn a_snapshot_restores_tracked_files_with_their_uncommitted_edits() {
        let repo = tempfile::tempdir().expect("dir");
        let dir = repo.path();
        run(dir, &["init", "-q", "-b", "main"]);
        run(dir, &["config", "user.email", "t@example.com"]);
        run(dir, &["config", "user.name", "T"]);
        std::fs::create_dir_all(dir.join("src")).expect("mkdir");
        std::fs::write(dir.join("src/train.py"), "lr = 0.1\n").expect("write");
        std::fs::write(dir.join("notes.txt"), "untracked\n").expect("write");
        run(dir, &["add", "src/train.py"]);
        run(dir, &["commit", "-q", "-m", "first"]);
        std::fs::write(dir.join("src/train.py"), "lr = 0.2\n").expect("edit");

        let archive = tempfile::NamedTempFile::new().expect("file");
        let info = create(dir, archive.as_file()).expect("snapshot");
        assert!(info.dirty);
        assert_eq!(info.branch, "main");
        assert_eq!(info.commit.len(), 40);

        let restored = tempfile::tempdir().expect("dir");
        restore(archive.path(), restored.path()).expect("restore");
        let read = |name: &str| std::fs::read_to_string(restored.path().join(name)).ok();
        assert_eq!(read("src/train.py").as_deref(), Some("lr = 0.2\n"));
        assert_eq!(read("notes.txt"), None, "untracked files stay out");
        assert!(
            read("uncommitted.diff")
                .expect("diff")
                .contains("+lr = 0.2")
        );
        assert!(
            read("sextant-snapshot.json")
                .expect("info")
                .contains(&info.commit)
        );
    }
}
