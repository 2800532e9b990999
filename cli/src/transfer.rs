//! Uploading and downloading artifacts: straight between this machine and the blob
//! store through presigned URLs, streamed from and to disk with a progress bar, and
//! multipart uploads that resume where an interrupted one stopped.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::client::{Client, describe_error};

/// What to register a file as.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    pub path: String,
    pub kind: Option<String>,
    pub step: Option<i64>,
    pub content_type: Option<String>,
}

fn bar(total: u64, message: String) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

async fn sha256_of(file: &Path, size: u64) -> anyhow::Result<String> {
    let progress = bar(size, format!("hashing {}", file.display()));
    let mut reader = tokio::fs::File::open(file).await?;
    let mut digest = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        digest.update(&buffer[..read]);
        progress.inc(read as u64);
    }
    progress.finish_and_clear();
    Ok(hex::encode(digest.finalize()))
}

/// The parts of a multipart upload already sent, kept on disk so that running the same
/// upload again after an interruption sends only the rest.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ResumeState {
    upload_id: String,
    /// Part number to the ETag its upload answered.
    etags: BTreeMap<u32, String>,
}

fn state_file(client_key: &str) -> PathBuf {
    let cache = std::env::var_os("SEXTANT_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|dir| PathBuf::from(dir).join("sextant"))
        })
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/sextant")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("uploads").join(format!("{client_key}.json"))
}

async fn load_state(path: &Path) -> ResumeState {
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => ResumeState::default(),
    }
}

async fn save_state(path: &Path, state: &ResumeState) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    tokio::fs::write(path, serde_json::to_vec(state)?).await?;
    Ok(())
}

/// Upload URLs live 15 minutes: a multipart upload asks for fresh ones after 10.
const URL_REFRESH: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Sends `length` bytes of `file` from `offset` to a presigned URL, with the headers
/// its plan names (`If-None-Match: *` for a whole file); answers the response's ETag.
async fn put_range(
    client: &Client,
    url: &str,
    headers: &serde_json::Map<String, Value>,
    file: &Path,
    offset: u64,
    length: u64,
    progress: &ProgressBar,
) -> anyhow::Result<Option<String>> {
    let mut reader = tokio::fs::File::open(file).await?;
    reader.seek(SeekFrom::Start(offset)).await?;
    let progress = progress.clone();
    let stream = ReaderStream::with_capacity(reader.take(length), 1 << 20)
        .inspect_ok(move |chunk| progress.inc(chunk.len() as u64));
    let mut request = client
        .http()
        .put(url)
        .header(reqwest::header::CONTENT_LENGTH, length);
    for (name, value) in headers {
        request = request.header(name, value.as_str().context("a header that is no string")?);
    }
    let response = request
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .context("uploading to the blob store")?;
    let status = response.status();
    let etag = response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|etag| etag.to_str().ok())
        .map(str::to_owned);
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        bail!("upload refused: {}", describe_error(status, &body));
    }
    Ok(etag)
}

/// Uploads one file as an artifact of `run` and answers the sealed artifact.
pub async fn upload(
    client: &Client,
    run: &str,
    file: &Path,
    options: &UploadOptions,
) -> anyhow::Result<Value> {
    let size = tokio::fs::metadata(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let sha256 = sha256_of(file, size).await?;
    let registration = json!({
        "path": options.path,
        "size": size,
        "sha256": sha256,
        "kind": options.kind,
        "step": options.step,
        "content_type": options.content_type,
    });
    let registration = without_nulls(registration);
    let artifacts = format!("v1/runs/{run}/artifacts");
    let register = || client.post::<Value>(&artifacts, &registration);
    let mut plan = register().await?;
    let mut planned_at = std::time::Instant::now();
    let progress = bar(size, options.path.clone());
    let mut completion = json!({ "path": options.path });

    if let Some(url) = plan["upload"]["url"].as_str() {
        let headers = plan["upload"]["headers"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        put_range(client, url, &headers, file, 0, size, &progress).await?;
    } else {
        let upload_id = plan["upload_id"]
            .as_str()
            .context("the server gave neither an upload URL nor parts")?;
        let part_size = plan["part_size"].as_u64().context("no part size")?;
        let state_path = state_file(&hex::encode(Sha256::digest(
            format!("{run}\n{}\n{sha256}", options.path).as_bytes(),
        )));
        let mut state = load_state(&state_path).await;
        if state.upload_id != upload_id {
            state = ResumeState {
                upload_id: upload_id.to_owned(),
                etags: BTreeMap::new(),
            };
        }
        let parts = plan["parts"].as_array().context("no parts")?.clone();
        for (index, part) in parts.iter().enumerate() {
            let number = part["number"].as_u64().context("part without a number")? as u32;
            let length = part["size"].as_u64().context("part without a size")?;
            let offset = u64::from(number - 1) * part_size;
            if state.etags.contains_key(&number) {
                progress.inc(length);
                continue;
            }
            if planned_at.elapsed() > URL_REFRESH {
                // The same registration answers fresh URLs for the same upload.
                plan = register().await?;
                planned_at = std::time::Instant::now();
            }
            let url = plan["parts"][index]["url"]
                .as_str()
                .context("part without a URL")?;
            let etag = put_range(
                client,
                url,
                &Default::default(),
                file,
                offset,
                length,
                &progress,
            )
            .await?
            .context("the blob store answered a part without an ETag")?;
            state.etags.insert(number, etag);
            save_state(&state_path, &state).await?;
        }
        completion["parts"] = state
            .etags
            .iter()
            .map(|(number, etag)| json!({"number": number, "etag": etag}))
            .collect();
        let sealed = complete(client, run, &completion).await;
        if sealed.is_ok() {
            let _ = tokio::fs::remove_file(&state_path).await;
        }
        progress.finish_and_clear();
        return sealed;
    }
    progress.finish_and_clear();
    complete(client, run, &completion).await
}

/// Completes an upload: the server checks a large one a slice per call, answering
/// `verifying` until it has sealed it.
async fn complete(client: &Client, run: &str, completion: &Value) -> anyhow::Result<Value> {
    loop {
        let answer: Value = client
            .post(&format!("v1/runs/{run}/artifacts/complete"), completion)
            .await?;
        if answer["status"] != "verifying" {
            return Ok(answer);
        }
    }
}

fn without_nulls(mut value: Value) -> Value {
    if let Some(fields) = value.as_object_mut() {
        fields.retain(|_, field| !field.is_null());
    }
    value
}

/// Downloads a sealed artifact to `destination`, checking its SHA-256; the file
/// appears only once complete and verified. An interrupted download resumes from the
/// bytes already on disk (kept beside the destination, named after the checksum).
pub async fn download(
    client: &Client,
    run: &str,
    path: &str,
    destination: &Path,
) -> anyhow::Result<()> {
    let listing: Value = client.get(&format!("v1/runs/{run}/artifacts")).await?;
    let artifact = listing["artifacts"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["path"] == path))
        .with_context(|| format!("run {run} has no artifact {path}"))?;
    let expected = artifact["sha256"].as_str().unwrap_or_default().to_owned();
    let size = artifact["size"].as_u64().unwrap_or(0);

    let mut partial_name = destination.as_os_str().to_owned();
    partial_name.push(format!(
        ".{}.sextant-partial",
        &expected[..expected.len().min(12)]
    ));
    let partial = PathBuf::from(partial_name);
    if let Some(dir) = destination
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
    {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut have = tokio::fs::metadata(&partial).await.map_or(0, |m| m.len());
    if have > size {
        have = 0;
    }

    // The API answers with a redirect to the blob store; the redirect is followed
    // without the API key, and the range goes along.
    let response = client
        .get_raw(
            &format!("v1/runs/{run}/artifacts/{path}"),
            (have > 0).then_some(have),
        )
        .await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        bail!("download refused: {}", describe_error(status, &body));
    }
    let mut digest = Sha256::new();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
    let mut file = if resumed {
        let mut existing = tokio::fs::File::open(&partial).await?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = existing.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            digest.update(&buffer[..read]);
        }
        tokio::fs::OpenOptions::new()
            .append(true)
            .open(&partial)
            .await?
    } else {
        tokio::fs::File::create(&partial).await?
    };
    let progress = bar(size, path.to_owned());
    if resumed {
        progress.inc(have);
    }
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.try_next().await? {
        digest.update(&chunk);
        file.write_all(&chunk).await?;
        progress.inc(chunk.len() as u64);
    }
    file.sync_all().await?;
    progress.finish_and_clear();
    if hex::encode(digest.finalize()) != expected {
        let _ = tokio::fs::remove_file(&partial).await;
        bail!("the downloaded bytes do not match the artifact's SHA-256; nothing was written");
    }
    tokio::fs::rename(&partial, destination).await?;
    Ok(())
}
