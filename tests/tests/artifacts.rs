//! Artifacts over the real HTTP surface: registering, uploading straight to the blob
//! store (one `PUT`, or parts above 64 MiB), completing with the size and SHA-256
//! checked, resuming an interrupted multipart upload, listing by kind and step,
//! downloading through a short-lived redirect, deleting, tenancy and roles, on the
//! local blob directory and on S3 (moto).
//!
//! Large contents are generated as streams and hashed as they go, so the tests never
//! hold an artifact in memory; the server runs in this process, so the test's resident
//! memory is the server's too.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sextant_cli::Backend;
use sextant_storage::blob::BlobStore;
use sextant_storage_aws::S3Blobs;
use sextant_tests::{TestApp, aws_cases, cases, error_code, fresh_aws_storage, sha256_hex, text};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
/// Artifacts above this upload in parts.
const SINGLE_UPLOAD_MAX: u64 = 64 * MIB;
const PART_SIZE: u64 = 16 * MIB;

// ---------------------------------------------------------------------------------
// The application and a view of what its blob store holds.

/// The application and, beside it, direct access to its blob store, to see what
/// objects and unfinished uploads are left behind.
struct Fixture {
    app: TestApp,
    store: Store,
    /// Shows redirects instead of following them.
    no_redirect: reqwest::Client,
}

enum Store {
    /// `blobs/` in the application's data directory.
    Local(PathBuf),
    S3 {
        blobs: S3Blobs,
        client: aws_sdk_s3::Client,
        bucket: String,
    },
}

async fn local() -> Fixture {
    let app = TestApp::spawn().await;
    let root = app.data_dir.path().join("blobs");
    Fixture::new(app, Store::Local(root))
}

async fn on_aws() -> Fixture {
    let (config, _, blobs) = fresh_aws_storage().await;
    let bucket = config.bucket.clone();
    let endpoint = config
        .endpoint_url
        .clone()
        .expect("the emulator's endpoint");
    let app = TestApp::spawn_with(Backend::Aws(config)).await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    Fixture::new(
        app,
        Store::S3 {
            blobs,
            client,
            bucket,
        },
    )
}

impl Fixture {
    fn new(app: TestApp, store: Store) -> Self {
        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Self {
            app,
            store,
            no_redirect,
        }
    }

    fn is_local(&self) -> bool {
        matches!(self.store, Store::Local(_))
    }

    /// Objects and unfinished multipart uploads whose keys start with `prefix`, and
    /// (locally) anything left in the staging directory.
    async fn stored_under(&self, prefix: &str) -> Vec<String> {
        match &self.store {
            Store::Local(root) => {
                let mut found = Vec::new();
                for file in files_under(&root.join("objects")) {
                    let key = file
                        .strip_prefix(root.join("objects"))
                        .expect("under objects")
                        .to_string_lossy()
                        .into_owned();
                    if key.starts_with(prefix) {
                        found.push(key);
                    }
                }
                for file in files_under(&root.join("uploads")) {
                    if file.file_name().is_some_and(|name| name == "key") {
                        let key = std::fs::read_to_string(&file).expect("an upload's key");
                        if key.starts_with(prefix) {
                            found.push(format!("unfinished upload of {key}"));
                        }
                    }
                }
                for file in files_under(&root.join("staging")) {
                    found.push(format!("staged {}", file.display()));
                }
                found
            }
            Store::S3 {
                blobs,
                client,
                bucket,
            } => {
                let page = blobs
                    .list(prefix, None, 1000)
                    .await
                    .expect("listing the bucket");
                let mut found: Vec<String> = page
                    .blobs
                    .into_iter()
                    .map(|blob| blob.key.as_str().to_owned())
                    .collect();
                let uploads = client
                    .list_multipart_uploads()
                    .bucket(bucket)
                    .prefix(prefix)
                    .send()
                    .await
                    .expect("listing multipart uploads");
                for upload in uploads.uploads() {
                    let key = upload.key().unwrap_or_default();
                    if key.starts_with(prefix) {
                        found.push(format!("unfinished upload of {key}"));
                    }
                }
                found
            }
        }
    }
}

/// Every file below `dir`, however deep.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

// ---------------------------------------------------------------------------------
// Requests.

/// The API path of one artifact, its segments percent-encoded.
fn artifact_path(run: &str, path: &str) -> String {
    let mut url = url::Url::parse("http://localhost/v1/runs").expect("a URL");
    url.path_segments_mut()
        .expect("an http URL")
        .push(run)
        .push("artifacts")
        .extend(path.split('/'));
    url.path().to_owned()
}

/// Where a run's objects live in the blob store.
fn run_prefix(tenant: &str, run: &str) -> String {
    format!("{tenant}/runs/{run}/")
}

async fn register(app: &TestApp, key: &str, run: &str, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/v1/runs/{run}/artifacts"), key, body)
        .await
}

/// Registers and asserts a 201 with a pending artifact.
async fn register_ok(app: &TestApp, key: &str, run: &str, body: Value) -> Value {
    let (status, plan) = register(app, key, run, body).await;
    assert_eq!(status, StatusCode::CREATED, "{plan}");
    assert_eq!(plan["artifact"]["status"], "pending", "{plan}");
    plan
}

async fn complete(app: &TestApp, key: &str, run: &str, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/v1/runs/{run}/artifacts/complete"), key, body)
        .await
}

async fn list(app: &TestApp, key: &str, run: &str, query: &str) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/v1/runs/{run}/artifacts{query}"), key)
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no artifacts in {body}"))
        .clone()
}

fn paths(artifacts: &[Value]) -> Vec<String> {
    artifacts.iter().map(|a| text(a, "path")).collect()
}

/// Sends bytes to a presigned upload URL with an exact `Content-Length`.
async fn put(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
    length: u64,
) -> reqwest::Response {
    client
        .put(url)
        .header(header::CONTENT_LENGTH, length)
        .body(body)
        .send()
        .await
        .expect("the upload reaches the blob store")
}

/// Uploads small bytes with one `PUT` to a single-upload plan's URL.
async fn put_single(fx: &Fixture, plan: &Value, bytes: &[u8]) {
    assert_eq!(plan["upload"]["method"], "PUT", "{plan}");
    assert!(plan.get("parts").is_none(), "{plan}");
    let response = put(
        &fx.app.client,
        &text(&plan["upload"], "url"),
        bytes.to_vec(),
        bytes.len() as u64,
    )
    .await;
    let status = response.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        response.text().await.unwrap_or_default()
    );
}

/// Registers, uploads and completes a small artifact; answers the completed artifact.
async fn store_small(fx: &Fixture, key: &str, run: &str, mut body: Value, bytes: &[u8]) -> Value {
    body["size"] = json!(bytes.len());
    body["sha256"] = json!(sha256_hex(bytes));
    let path = body["path"].clone();
    let plan = register_ok(&fx.app, key, run, body).await;
    put_single(fx, &plan, bytes).await;
    let (status, artifact) = complete(&fx.app, key, run, json!({ "path": path })).await;
    assert_eq!(status, StatusCode::OK, "{artifact}");
    assert_eq!(artifact["status"], "ready", "{artifact}");
    artifact
}

/// The redirect a download answers: asserts a 307 and answers its `Location`.
async fn download_url(fx: &Fixture, key: &str, run: &str, path: &str) -> String {
    let response = fx
        .no_redirect
        .get(fx.app.url(&artifact_path(run, path)))
        .bearer_auth(key)
        .send()
        .await
        .expect("the request reaches the server");
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT, "{path}");
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "no-store",
        "a download URL is not to be cached"
    );
    response.headers()[header::LOCATION]
        .to_str()
        .expect("an ASCII location")
        .to_owned()
}

async fn fetch(client: &reqwest::Client, url: &str) -> (StatusCode, Bytes) {
    let response = client.get(url).send().await.expect("the URL answers");
    let status = response.status();
    (status, response.bytes().await.expect("a body"))
}

/// The status and error code of an answer that should be an error.
async fn refusal(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON error");
    (status, error_code(&body))
}

/// The multipart upload a part URL belongs to.
fn upload_id_of(url: &str) -> String {
    url::Url::parse(url)
        .expect("a URL")
        .query_pairs()
        .find(|(name, _)| name == "upload_id" || name == "uploadId")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("no upload id in {url}"))
}

fn parts_of(plan: &Value) -> Vec<Value> {
    plan["parts"]
        .as_array()
        .unwrap_or_else(|| panic!("no parts in {plan}"))
        .clone()
}

/// Uploads part `part` of a plan from generated content; answers its ETag.
async fn put_part(fx: &Fixture, content: Content, part: &Value) -> String {
    let number = part["number"].as_u64().expect("a part number");
    let size = part["size"].as_u64().expect("a part size");
    let start = (number - 1) * PART_SIZE;
    let response = put(
        &fx.app.client,
        &text(part, "url"),
        content.body(start..start + size),
        size,
    )
    .await;
    let status = response.status();
    let etag = response
        .headers()
        .get(header::ETAG)
        .map(|etag| etag.to_str().expect("an ASCII ETag").to_owned());
    assert_eq!(
        status,
        StatusCode::OK,
        "part {number}: {}",
        response.text().await.unwrap_or_default()
    );
    etag.unwrap_or_else(|| panic!("part {number} answered no ETag"))
}

/// Downloads a URL as a stream, hashing as it goes; answers the byte count and hash.
async fn download_hash(client: &reqwest::Client, url: &str) -> (u64, String) {
    let response = client.get(url).send().await.expect("the URL answers");
    assert_eq!(response.status(), StatusCode::OK);
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("the download continues");
        received += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (received, hex::encode(hasher.finalize()))
}

// ---------------------------------------------------------------------------------
// Generated content, SHA-256 and memory.

/// Deterministic pseudo-random bytes of any size, generated in 1 MiB chunks as they
/// are sent: byte `i` is byte `i % 8` of splitmix64's output number `i / 8`, so any
/// part can be generated on its own.
#[derive(Debug, Clone, Copy)]
struct Content {
    seed: u64,
    size: u64,
}

impl Content {
    const CHUNK: u64 = MIB;

    fn word(self, index: u64) -> u64 {
        let mut z = self
            .seed
            .wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The bytes in `range`, which starts at a multiple of 8.
    fn bytes(self, range: Range<u64>) -> Bytes {
        assert_eq!(range.start % 8, 0, "ranges start on a word");
        let len = usize::try_from(range.end - range.start).expect("a chunk fits in memory");
        let mut out = vec![0u8; len.next_multiple_of(8)];
        for (index, word) in (range.start / 8..).zip(out.chunks_exact_mut(8)) {
            word.copy_from_slice(&self.word(index).to_le_bytes());
        }
        out.truncate(len);
        out.into()
    }

    fn chunks(self, range: Range<u64>) -> impl Iterator<Item = Range<u64>> + Send + 'static {
        let end = range.end;
        (range.start..end)
            .step_by(Self::CHUNK as usize)
            .map(move |start| start..(start + Self::CHUNK).min(end))
    }

    /// The bytes in `range` as a request body that is generated while it is sent.
    fn body(self, range: Range<u64>) -> reqwest::Body {
        reqwest::Body::wrap_stream(
            futures::stream::iter(self.chunks(range))
                .map(move |chunk| Ok::<_, std::io::Error>(self.bytes(chunk))),
        )
    }

    /// The SHA-256 of the whole content, generated and hashed chunk by chunk.
    async fn sha256(self) -> String {
        tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            for chunk in self.chunks(0..self.size) {
                hasher.update(self.bytes(chunk));
            }
            hex::encode(hasher.finalize())
        })
        .await
        .expect("hashing finishes")
    }
}

/// This process's resident memory (`VmRSS`), in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .expect("VmRSS in /proc/self/status")
}

/// Samples resident memory every few milliseconds on a thread of its own, keeping the
/// highest value seen.
struct PeakResident {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakResident {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(resident_bytes()));
        let thread = std::thread::spawn({
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(resident_bytes(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Self { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler ends");
        self.peak.load(Ordering::Relaxed).max(resident_bytes())
    }
}

#[test]
fn generated_content_is_the_same_however_it_is_cut() {
    let content = Content {
        seed: 9,
        size: 3 * MIB + 5,
    };
    let whole = content.bytes(0..content.size);
    let mut pieces = Vec::new();
    for chunk in content.chunks(0..content.size) {
        pieces.extend_from_slice(&content.bytes(chunk));
    }
    assert_eq!(whole.len() as u64, content.size);
    assert_eq!(&pieces[..], &whole[..]);
    assert_eq!(
        &content.bytes(MIB..MIB + 16)[..],
        &whole[MIB as usize..][..16]
    );
}

// ---------------------------------------------------------------------------------
// Cases, each run on both backends.

async fn a_200_mib_artifact_uploads_in_parts_and_downloads_unchanged_while_memory_stays_flat(
    fx: Fixture,
) {
    let round_trip = async {
        let team = fx.app.signup().await;
        let key = &team.api_key;
        let run = fx.app.new_run(key).await;
        let content = Content {
            seed: 200,
            size: 200 * MIB,
        };
        let sha256 = content.sha256().await;
        let path = "checkpoints/final/model.bin";

        let baseline = resident_bytes();
        let sampler = PeakResident::start();
        let plan = register_ok(
            &fx.app,
            key,
            &run,
            json!({"path": path, "size": content.size, "sha256": sha256, "kind": "model"}),
        )
        .await;
        assert!(plan.get("upload").is_none(), "{plan}");
        assert_eq!(plan["part_size"], PART_SIZE, "{plan}");
        let parts = parts_of(&plan);
        assert_eq!(parts.len(), 13, "{plan}");
        let mut planned = 0;
        for (index, part) in parts.iter().enumerate() {
            assert_eq!(part["number"], index + 1, "{part}");
            planned += part["size"].as_u64().expect("a size");
        }
        assert_eq!(planned, content.size);

        let mut completed = Vec::new();
        for part in &parts {
            let etag = put_part(&fx, content, part).await;
            completed.push(json!({"number": part["number"], "etag": etag}));
        }
        let (status, artifact) = complete(
            &fx.app,
            key,
            &run,
            json!({"path": path, "parts": completed}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{artifact}");
        assert_eq!(artifact["status"], "ready");
        assert_eq!(artifact["size"], content.size);
        assert_eq!(artifact["sha256"], sha256);
        assert_eq!(artifact["kind"], "model");

        let url = download_url(&fx, key, &run, path).await;
        let (received, downloaded) = download_hash(&fx.app.client, &url).await;
        let peak = sampler.finish();
        assert_eq!(received, content.size);
        assert_eq!(downloaded, sha256, "the download differs from the upload");

        let growth = peak.saturating_sub(baseline);
        assert!(
            growth < 64 * MIB,
            "resident memory grew by {} MiB moving a {} MiB artifact (from {} MiB)",
            growth / MIB,
            content.size / MIB,
            baseline / MIB,
        );
    };
    tokio::time::timeout(Duration::from_secs(300), round_trip)
        .await
        .expect("the 200 MiB round trip finishes within five minutes");
}

async fn a_small_artifact_uploads_with_one_put_and_downloads_through_a_redirect(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    // Spaces, non-ASCII, '#' and '%' survive URLs in both directions.
    let path = "reports/step 100/résumé #1 (50%).txt";
    let bytes = b"loss went down, then up, then down again\n";
    let sha256 = sha256_hex(bytes);

    let plan = register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": path, "size": bytes.len(), "sha256": sha256.to_uppercase(),
               "content_type": "text/plain"}),
    )
    .await;
    assert_eq!(plan["artifact"]["path"], path);
    assert_eq!(plan["artifact"]["sha256"], sha256, "hex is kept lowercase");
    // Pending: neither listed nor downloadable.
    assert!(list(&fx.app, key, &run, "").await.is_empty());
    let (status, _) = fx.app.get(&artifact_path(&run, path), key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    put_single(&fx, &plan, bytes).await;
    let (status, artifact) = complete(&fx.app, key, &run, json!({ "path": path })).await;
    assert_eq!(status, StatusCode::OK, "{artifact}");
    assert_eq!(artifact["status"], "ready");
    assert_eq!(artifact["path"], path);
    assert_eq!(artifact["size"], bytes.len());
    assert_eq!(artifact["sha256"], sha256);
    assert_eq!(artifact["kind"], "file");
    assert_eq!(artifact["content_type"], "text/plain");
    assert!(
        artifact.get("step").is_none_or(Value::is_null),
        "{artifact}"
    );
    assert!(artifact["created_at"].is_string(), "{artifact}");
    assert!(artifact.get("pending").is_none(), "{artifact}");

    let (status, again) = complete(&fx.app, key, &run, json!({ "path": path })).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "completing twice is harmless: {again}"
    );
    assert_eq!(again, artifact);
    assert_eq!(list(&fx.app, key, &run, "").await, vec![artifact.clone()]);

    let url = download_url(&fx, key, &run, path).await;
    let (status, downloaded) = fetch(&fx.app.client, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&downloaded[..], bytes);

    let (status, body) = register(
        &fx.app,
        key,
        &run,
        json!({"path": path, "size": bytes.len(), "sha256": sha256}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "artifact_exists");

    let (status, body) = fx.app.delete(&artifact_path(&run, path), key).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = fx.app.get(&artifact_path(&run, path), key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(list(&fx.app, key, &run, "").await.is_empty());
    let (status, _) = fetch(&fx.app.client, &url).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the object went with it");
    assert_eq!(
        fx.stored_under(&run_prefix(&team.tenant_id, &run)).await,
        Vec::<String>::new()
    );
    let (status, body) = fx.app.delete(&artifact_path(&run, path), key).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Deleted, the path takes a new upload.
    let stored = store_small(&fx, key, &run, json!({ "path": path }), b"second take").await;
    assert_eq!(stored["size"], 11);
}

async fn an_empty_file_is_an_artifact_too(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    let artifact = store_small(&fx, key, &run, json!({"path": "empty/.keep"}), b"").await;
    assert_eq!(artifact["size"], 0);
    let url = download_url(&fx, key, &run, "empty/.keep").await;
    let (status, bytes) = fetch(&fx.app.client, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes.is_empty());
}

async fn a_wrong_checksum_is_refused_and_leaves_nothing_behind(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    let path = "weights.bin";
    let bytes = b"the bytes that were really written";
    let plan = register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": path, "size": bytes.len(), "sha256": sha256_hex(b"what was meant")}),
    )
    .await;
    put_single(&fx, &plan, bytes).await;
    let (status, body) = complete(&fx.app, key, &run, json!({ "path": path })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "checksum_mismatch");

    let (status, _) = fx.app.get(&artifact_path(&run, path), key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(list(&fx.app, key, &run, "").await.is_empty());
    assert_eq!(
        fx.stored_under(&run_prefix(&team.tenant_id, &run)).await,
        Vec::<String>::new()
    );
    // The registration went too: completing again finds nothing.
    let (status, body) = complete(&fx.app, key, &run, json!({ "path": path })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Registering again with the right checksum starts afresh and works.
    let artifact = store_small(&fx, key, &run, json!({ "path": path }), bytes).await;
    assert_eq!(artifact["sha256"], sha256_hex(bytes));
    assert_eq!(paths(&list(&fx.app, key, &run, "").await), vec![path]);
}

async fn a_size_mismatch_is_refused_and_leaves_nothing_behind(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    let prefix = run_prefix(&team.tenant_id, &run);

    // Ten bytes uploaded, then the path registered again as twelve: the earlier
    // upload's bytes go with its registration, so the new upload URL (which only
    // creates) can write, and nothing is there to complete until it has.
    let ten = b"0123456789";
    let plan = register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": "data.csv", "size": 10, "sha256": sha256_hex(ten)}),
    )
    .await;
    put_single(&fx, &plan, ten).await;
    let twelve = b"0123456789ab";
    register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": "data.csv", "size": 12, "sha256": sha256_hex(twelve)}),
    )
    .await;
    assert_eq!(fx.stored_under(&prefix).await, Vec::<String>::new());
    let (status, body) = complete(&fx.app, key, &run, json!({"path": "data.csv"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "upload_missing");
    let (status, _) = fx.app.delete(&artifact_path(&run, "data.csv"), key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = fx.app.get(&artifact_path(&run, "data.csv"), key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(list(&fx.app, key, &run, "").await.is_empty());
    assert_eq!(fx.stored_under(&prefix).await, Vec::<String>::new());
    let artifact = store_small(&fx, key, &run, json!({"path": "data.csv"}), twelve).await;
    assert_eq!(artifact["size"], 12);

    // More bytes than registered through the upload URL itself.
    let five = b"12345";
    let plan = register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": "short.txt", "size": 5, "sha256": sha256_hex(five)}),
    )
    .await;
    let response = fx
        .app
        .client
        .put(text(&plan["upload"], "url"))
        .body(b"123456".to_vec())
        .send()
        .await
        .expect("the upload reaches the blob store");
    if fx.is_local() {
        // The signed length is enforced as the bytes arrive.
        assert_eq!(
            refusal(response).await,
            (StatusCode::BAD_REQUEST, "length_mismatch".to_owned())
        );
    } else {
        // S3 would refuse the unsigned length; moto checks no signatures and keeps
        // the bytes, which completing then refuses.
        assert!(response.status().is_success(), "{}", response.status());
    }
    let (status, body) = complete(&fx.app, key, &run, json!({"path": "short.txt"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let code = error_code(&body);
    let expected = if fx.is_local() {
        "upload_missing"
    } else {
        "size_mismatch"
    };
    assert_eq!(code, expected);
    let left: Vec<String> = fx
        .stored_under(&prefix)
        .await
        .into_iter()
        .filter(|key| key.contains("short.txt"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

async fn completing_before_uploading_says_nothing_was_uploaded(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    let bytes = b"late";
    let plan = register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": "late.txt", "size": 4, "sha256": sha256_hex(bytes)}),
    )
    .await;
    let (status, body) = complete(&fx.app, key, &run, json!({"path": "late.txt"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "upload_missing");
    // The registration stays: uploading afterwards completes.
    put_single(&fx, &plan, bytes).await;
    let (status, body) = complete(&fx.app, key, &run, json!({"path": "late.txt"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A multipart upload with no parts sent.
    let (status, body) = complete(&fx.app, key, &run, json!({"path": "never.bin"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "never registered: {body}");
    let plan = register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": "big.bin", "size": SINGLE_UPLOAD_MAX + 1, "sha256": "ab".repeat(32)}),
    )
    .await;
    assert_eq!(parts_of(&plan).len(), 5);
    let (status, body) = complete(&fx.app, key, &run, json!({"path": "big.bin"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "missing_parts");
    let (status, body) = complete(
        &fx.app,
        key,
        &run,
        json!({"path": "big.bin", "parts": [{"number": 1, "etag": "\"0123\""}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_upload");
}

async fn an_interrupted_multipart_upload_resumes_with_the_parts_already_sent(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    let content = Content {
        seed: 65,
        size: SINGLE_UPLOAD_MAX + 1000,
    };
    let sha256 = content.sha256().await;
    let path = "checkpoints/step-12000.pt";
    let registration = json!({"path": path, "size": content.size, "sha256": sha256,
                              "kind": "checkpoint", "step": 12000});

    let first = register_ok(&fx.app, key, &run, registration.clone()).await;
    let first_parts = parts_of(&first);
    assert_eq!(first_parts.len(), 5, "{first}");
    assert_eq!(first_parts[4]["size"], 1000);
    let etag_1 = put_part(&fx, content, &first_parts[0]).await;

    // The client stops here and starts again: the same upload, fresh URLs.
    let second = register_ok(&fx.app, key, &run, registration.clone()).await;
    let second_parts = parts_of(&second);
    assert_eq!(second["part_size"], first["part_size"]);
    assert_eq!(second["upload_id"], first["upload_id"]);
    assert_eq!(second_parts.len(), first_parts.len());
    for (old, new) in first_parts.iter().zip(&second_parts) {
        assert_eq!(old["number"], new["number"]);
        assert_eq!(old["size"], new["size"]);
        assert_eq!(
            upload_id_of(&text(old, "url")),
            upload_id_of(&text(new, "url")),
            "registering again resumes the same upload"
        );
    }
    let mut completed = vec![json!({"number": 1, "etag": etag_1})];
    for part in &second_parts[1..] {
        let etag = put_part(&fx, content, part).await;
        completed.push(json!({"number": part["number"], "etag": etag}));
    }

    let mut wrong = completed.clone();
    wrong[2]["etag"] = json!("\"00000000000000000000000000000000\"");
    let (status, body) = complete(&fx.app, key, &run, json!({"path": path, "parts": wrong})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_upload");

    let (status, artifact) = complete(
        &fx.app,
        key,
        &run,
        json!({"path": path, "parts": completed}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{artifact}");
    assert_eq!(artifact["status"], "ready");
    assert_eq!(artifact["step"], 12000);
    let (status, again) = complete(
        &fx.app,
        key,
        &run,
        json!({"path": path, "parts": completed}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, artifact);

    let url = download_url(&fx, key, &run, path).await;
    assert_eq!(
        download_hash(&fx.app.client, &url).await,
        (content.size, sha256)
    );
    let left = fx.stored_under(&run_prefix(&team.tenant_id, &run)).await;
    assert_eq!(left.len(), 1, "only the assembled object: {left:?}");
}

async fn a_checkpoint_is_found_by_kind_and_step(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    for (path, kind, step) in [
        ("ckpt/step-100.pt", "checkpoint", Some(100)),
        ("ckpt/step-200.pt", "checkpoint", Some(200)),
        ("model/step-200.onnx", "model", Some(200)),
        ("code/snapshot.tar", "code", Some(0)),
        ("data/negative.bin", "dataset", Some(-5)),
        ("notes.txt", "file", None),
    ] {
        let mut body = json!({"path": path, "kind": kind});
        if let Some(step) = step {
            body["step"] = json!(step);
        }
        let artifact = store_small(&fx, key, &run, body, path.as_bytes()).await;
        assert_eq!(artifact["kind"], kind);
        assert_eq!(artifact["step"], json!(step));
    }
    // Registered, never completed: not found by any lookup.
    register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": "ckpt/step-300.pt", "size": 3, "sha256": sha256_hex(b"300"),
               "kind": "checkpoint", "step": 300}),
    )
    .await;

    let found = list(&fx.app, key, &run, "?kind=checkpoint&step=200").await;
    assert_eq!(paths(&found), vec!["ckpt/step-200.pt"]);
    assert_eq!(found[0]["status"], "ready");
    assert_eq!(found[0]["sha256"], sha256_hex(b"ckpt/step-200.pt"));
    assert_eq!(
        paths(&list(&fx.app, key, &run, "?kind=checkpoint").await),
        vec!["ckpt/step-100.pt", "ckpt/step-200.pt"]
    );
    assert_eq!(
        paths(&list(&fx.app, key, &run, "?step=200").await),
        vec!["ckpt/step-200.pt", "model/step-200.onnx"]
    );
    assert_eq!(
        paths(&list(&fx.app, key, &run, "?kind=dataset&step=-5").await),
        vec!["data/negative.bin"]
    );
    assert_eq!(
        paths(&list(&fx.app, key, &run, "?kind=code&step=0").await),
        vec!["code/snapshot.tar"]
    );
    assert!(
        list(&fx.app, key, &run, "?kind=checkpoint&step=300")
            .await
            .is_empty()
    );
    assert!(
        list(&fx.app, key, &run, "?kind=model&step=100")
            .await
            .is_empty()
    );
    assert_eq!(list(&fx.app, key, &run, "").await.len(), 6);
    let (status, _) = fx
        .app
        .get(&format!("/v1/runs/{run}/artifacts?kind=weights"), key)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deleting a checkpoint takes it out of the step lookup as well.
    let (status, _) = fx
        .app
        .delete(&artifact_path(&run, "ckpt/step-200.pt"), key)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        list(&fx.app, key, &run, "?kind=checkpoint&step=200")
            .await
            .is_empty()
    );
    assert_eq!(
        paths(&list(&fx.app, key, &run, "?step=200").await),
        vec!["model/step-200.onnx"]
    );
}

async fn deleting_the_run_removes_its_artifacts_objects(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    let other_run = fx.app.new_run(key).await;
    let prefix = run_prefix(&team.tenant_id, &run);

    store_small(&fx, key, &run, json!({"path": "a.txt"}), b"sealed").await;
    store_small(&fx, key, &other_run, json!({"path": "a.txt"}), b"kept").await;
    // Uploaded but never completed.
    let plan = register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": "pending.txt", "size": 7, "sha256": sha256_hex(b"pending")}),
    )
    .await;
    put_single(&fx, &plan, b"pending").await;
    // A multipart upload with one part sent.
    let content = Content {
        seed: 7,
        size: SINGLE_UPLOAD_MAX + 1,
    };
    let plan = register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": "big/half.bin", "size": content.size, "sha256": "cd".repeat(32)}),
    )
    .await;
    put_part(&fx, content, &parts_of(&plan)[0]).await;

    let url = download_url(&fx, key, &run, "a.txt").await;
    assert_eq!(fetch(&fx.app.client, &url).await.0, StatusCode::OK);
    let before = fx.stored_under(&prefix).await;
    assert_eq!(before.len(), 3, "{before:?}");

    let (status, body) = fx.app.delete(&format!("/v1/runs/{run}"), key).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    assert_eq!(fx.stored_under(&prefix).await, Vec::<String>::new());
    assert_eq!(fetch(&fx.app.client, &url).await.0, StatusCode::NOT_FOUND);
    if let Store::Local(root) = &fx.store {
        let left: Vec<PathBuf> = files_under(root)
            .into_iter()
            .filter(|file| {
                file.to_string_lossy().contains(run.as_str())
                    || std::fs::read_to_string(file).is_ok_and(|text| text.contains(run.as_str()))
            })
            .collect();
        assert_eq!(left, Vec::<PathBuf>::new(), "files of the deleted run");
    }
    let (status, _) = fx.app.get(&format!("/v1/runs/{run}/artifacts"), key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The team's other run keeps its artifact.
    let url = download_url(&fx, key, &other_run, "a.txt").await;
    let (status, bytes) = fetch(&fx.app.client, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&bytes[..], b"kept");
}

async fn another_teams_artifacts_are_not_found_and_their_urls_open_nothing_else(fx: Fixture) {
    let alice = fx.app.signup().await;
    let bob = fx.app.signup().await;
    let alice_run = fx.app.new_run(&alice.api_key).await;
    let bob_run = fx.app.new_run(&bob.api_key).await;
    store_small(
        &fx,
        &alice.api_key,
        &alice_run,
        json!({"path": "secret.bin"}),
        b"alice's weights",
    )
    .await;
    store_small(
        &fx,
        &bob.api_key,
        &bob_run,
        json!({"path": "mine.bin"}),
        b"bob's own weights",
    )
    .await;
    let ghost_run = format!("run_{}", ulid::Ulid::generate().to_string().to_lowercase());

    // Bob sees Alice's run exactly as a run that does not exist.
    let bob_key = &bob.api_key;
    let registration = json!({"path": "x.bin", "size": 1, "sha256": sha256_hex(b"x")});
    for run in [&alice_run, &ghost_run] {
        let answers = [
            fx.app
                .get(&format!("/v1/runs/{run}/artifacts"), bob_key)
                .await,
            fx.app.get(&artifact_path(run, "secret.bin"), bob_key).await,
            register(&fx.app, bob_key, run, registration.clone()).await,
            complete(&fx.app, bob_key, run, json!({"path": "secret.bin"})).await,
            fx.app
                .delete(&artifact_path(run, "secret.bin"), bob_key)
                .await,
        ];
        for (status, body) in answers {
            assert_eq!(status, StatusCode::NOT_FOUND, "{run}: {body}");
            assert_eq!(error_code(&body), "not_found");
        }
    }
    // Nor does naming the path in his own run reach it.
    let (status, _) = fx
        .app
        .get(&artifact_path(&bob_run, "secret.bin"), bob_key)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Alice's artifact is untouched.
    let url = download_url(&fx, &alice.api_key, &alice_run, "secret.bin").await;
    let (status, bytes) = fetch(&fx.app.client, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&bytes[..], b"alice's weights");
    assert_eq!(list(&fx.app, &alice.api_key, &alice_run, "").await.len(), 1);

    // moto checks no signatures, so only the local store can show a URL refusing to
    // open another object.
    if fx.is_local() {
        let alice_object = format!("/{}/runs/{alice_run}/artifacts/secret.bin", alice.tenant_id);
        let bob_object = format!("/{}/runs/{bob_run}/artifacts/mine.bin", bob.tenant_id);
        assert!(url.contains(&alice_object), "{url}");
        let moved = url.replace(&alice_object, &bob_object);
        let response = fx.app.client.get(&moved).send().await.expect("an answer");
        assert_eq!(
            refusal(response).await,
            (StatusCode::FORBIDDEN, "invalid_signature".to_owned())
        );
        let neighbour = url.replace("secret.bin", "other.bin");
        let response = fx
            .app
            .client
            .get(&neighbour)
            .send()
            .await
            .expect("an answer");
        assert_eq!(
            refusal(response).await,
            (StatusCode::FORBIDDEN, "invalid_signature".to_owned())
        );
        let last = url.chars().last().expect("a signature");
        let altered = format!(
            "{}{}",
            &url[..url.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        let response = fx.app.client.get(&altered).send().await.expect("an answer");
        assert_eq!(
            refusal(response).await,
            (StatusCode::FORBIDDEN, "invalid_signature".to_owned())
        );
        // A download URL uploads nothing.
        let response = fx
            .app
            .client
            .put(&url)
            .body(b"overwritten".to_vec())
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(&fetch(&fx.app.client, &url).await.1[..], b"alice's weights");
    }
}

async fn bad_paths_and_checksums_are_refused_before_anything_is_stored(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    let sha256 = sha256_hex(b"x");
    let long = "x".repeat(513);
    for path in [
        "",
        "/etc/passwd",
        "..",
        "a/../b",
        "../../other-tenant/x",
        "a//b",
        "a/",
        "./a",
        "complete",
        "back\\slash",
        "line\nbreak",
        long.as_str(),
    ] {
        let (status, body) = register(
            &fx.app,
            key,
            &run,
            json!({"path": path, "size": 1, "sha256": sha256}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path:?}: {body}");
        assert_eq!(error_code(&body), "invalid_path", "{path:?}");
    }
    for bad in [
        "",
        "abc",
        "g".repeat(64).as_str(),
        "a".repeat(63).as_str(),
        "a".repeat(65).as_str(),
    ] {
        let (status, body) = register(
            &fx.app,
            key,
            &run,
            json!({"path": "ok.bin", "size": 1, "sha256": bad}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert_eq!(error_code(&body), "invalid_sha256", "{bad:?}");
    }
    let (status, body) = register(
        &fx.app,
        key,
        &run,
        json!({"path": "ok.bin", "size": 1, "sha256": sha256, "kind": "weights"}),
    )
    .await;
    assert!(status.is_client_error(), "unknown kind: {status} {body}");
    let (status, body) = complete(&fx.app, key, &run, json!({"path": "../x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_path");
    assert!(list(&fx.app, key, &run, "").await.is_empty());
    assert_eq!(
        fx.stored_under(&run_prefix(&team.tenant_id, &run)).await,
        Vec::<String>::new()
    );

    // The longest path there is, and `complete` as a directory, are fine.
    let longest = format!("{}/{}", "d".repeat(255), "f".repeat(256));
    assert_eq!(longest.len(), 512);
    for path in [longest.as_str(), "complete/x"] {
        let artifact = store_small(&fx, key, &run, json!({ "path": path }), b"ok").await;
        assert_eq!(artifact["path"], path);
        let url = download_url(&fx, key, &run, path).await;
        assert_eq!(&fetch(&fx.app.client, &url).await.1[..], b"ok");
    }
}

async fn a_viewer_reads_artifacts_but_cannot_write_them(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    store_small(&fx, key, &run, json!({"path": "seen.txt"}), b"seen").await;
    let viewer = fx.app.key_with_role(&team, "viewer").await;

    assert_eq!(list(&fx.app, &viewer, &run, "").await.len(), 1);
    let url = download_url(&fx, &viewer, &run, "seen.txt").await;
    assert_eq!(&fetch(&fx.app.client, &url).await.1[..], b"seen");
    let answers = [
        register(
            &fx.app,
            &viewer,
            &run,
            json!({"path": "new.txt", "size": 1, "sha256": sha256_hex(b"n")}),
        )
        .await,
        complete(&fx.app, &viewer, &run, json!({"path": "seen.txt"})).await,
        fx.app
            .delete(&artifact_path(&run, "seen.txt"), &viewer)
            .await,
    ];
    for (status, body) in answers {
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    assert_eq!(list(&fx.app, key, &run, "").await.len(), 1);
}

async fn a_path_cannot_be_both_an_artifact_and_a_directory_of_others(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    store_small(&fx, key, &run, json!({ "path": "model" }), b"model").await;
    store_small(&fx, key, &run, json!({ "path": "logs/train.txt" }), b"logs").await;
    for path in ["model/weights.bin", "logs", "model/deeper/still.bin"] {
        let (status, body) = fx
            .app
            .post(
                &format!("/v1/runs/{run}/artifacts"),
                key,
                json!({"path": path, "size": 1, "sha256": "0".repeat(64)}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {body}");
        assert_eq!(error_code(&body), "path_conflict", "{path}");
    }
    for path in ["model", "logs/train.txt"] {
        let url = download_url(&fx, key, &run, path).await;
        assert!(!fetch(&fx.app.client, &url).await.1.is_empty());
    }
}

async fn a_512_byte_path_is_stored_whatever_its_segments(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    let one_segment = "x".repeat(512);
    let accented = format!("dir/{}", "é".repeat(254));
    for path in [one_segment.as_str(), accented.as_str()] {
        assert!(path.len() <= 512);
        store_small(&fx, key, &run, json!({ "path": path }), b"long").await;
        let url = download_url(&fx, key, &run, path).await;
        assert_eq!(&fetch(&fx.app.client, &url).await.1[..], b"long");
    }
    assert_eq!(list(&fx.app, key, &run, "").await.len(), 2);
}

async fn two_completions_at_once_leave_the_artifact_ready(fx: Fixture) {
    let team = fx.app.signup().await;
    let key = &team.api_key;
    let run = fx.app.new_run(key).await;
    let content = Content {
        seed: 2,
        size: SINGLE_UPLOAD_MAX + 8,
    };
    let sha256 = content.sha256().await;
    let plan = register_ok(
        &fx.app,
        key,
        &run,
        json!({"path": "twice.bin", "size": content.size, "sha256": sha256}),
    )
    .await;
    let mut completed = Vec::new();
    for part in &parts_of(&plan) {
        let etag = put_part(&fx, content, part).await;
        completed.push(json!({"number": part["number"], "etag": etag}));
    }
    let body = json!({"path": "twice.bin", "parts": completed});
    let (first, second) = tokio::join!(
        complete(&fx.app, key, &run, body.clone()),
        complete(&fx.app, key, &run, body.clone()),
    );
    // One assembles and seals; the other answers the same artifact or, while the
    // parts are still being joined, that the upload is taken. Neither fails or
    // undoes the other.
    let mut sealed = Vec::new();
    for (status, body) in [first, second] {
        if status == StatusCode::OK {
            sealed.push(body);
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error_code(&body), "invalid_upload");
        }
    }
    assert!(!sealed.is_empty(), "neither completion sealed it");
    let (status, again) = complete(&fx.app, key, &run, body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    for artifact in sealed {
        assert_eq!(artifact, again);
    }
    let url = download_url(&fx, key, &run, "twice.bin").await;
    assert_eq!(
        download_hash(&fx.app.client, &url).await,
        (content.size, sha256)
    );
}

macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        cases!(local_blobs, super::local; $($case),+);
        aws_cases!(s3, super::on_aws; $($case),+);
    };
}

on_both_backends!(
    a_200_mib_artifact_uploads_in_parts_and_downloads_unchanged_while_memory_stays_flat,
    a_small_artifact_uploads_with_one_put_and_downloads_through_a_redirect,
    an_empty_file_is_an_artifact_too,
    a_wrong_checksum_is_refused_and_leaves_nothing_behind,
    a_size_mismatch_is_refused_and_leaves_nothing_behind,
    completing_before_uploading_says_nothing_was_uploaded,
    an_interrupted_multipart_upload_resumes_with_the_parts_already_sent,
    a_checkpoint_is_found_by_kind_and_step,
    deleting_the_run_removes_its_artifacts_objects,
    another_teams_artifacts_are_not_found_and_their_urls_open_nothing_else,
    bad_paths_and_checksums_are_refused_before_anything_is_stored,
    a_viewer_reads_artifacts_but_cannot_write_them,
    a_512_byte_path_is_stored_whatever_its_segments,
    a_path_cannot_be_both_an_artifact_and_a_directory_of_others,
);

// Concurrency on the local store only: moto's transactions restore a snapshot of the
// whole table when a condition fails, undoing writes other requests made meanwhile.
cases!(local_only, super::local; two_completions_at_once_leave_the_artifact_ready);
