//! Every stored byte is billed or gone: after uploads completed, abandoned (whole and in
//! parts, through the API and through MLflow's proxy), sealed artifacts deleted and
//! written again through their old URL, an attempt to overwrite a sealed artifact, and
//! an image whose indexing failed, the bytes in the bucket equal the bytes billed once
//! the hourly run has swept, and no unfinished multipart upload is left.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use sextant_domain::artifacts::{self, ArtifactPath, Completed, Completion, NewArtifact};
use sextant_domain::credentials::Caller;
use sextant_domain::ids::RunId;
use sextant_domain::images;
use sextant_domain::projects::{self, ProjectName};
use sextant_domain::runs::{self, NewRun};
use sextant_domain::usage;
use sextant_edge::state::{AppState, Settings};
use sextant_storage::Storage;
use sextant_storage::blob::{CompletedPart, MIN_PART_BYTES};
use sextant_storage::clock::ManualClock;
use sextant_storage_aws::AwsStorageConfig;
use sextant_storage_local::EmbeddedKv;
use sextant_tests::faults::{Faults, Op, Timing};
use sextant_tests::{
    PNG, fresh_aws_storage, local_blobs_with_routes, sha256_hex, signed_up_caller, state_on,
};
use time::{Duration, OffsetDateTime};

/// Where the unfinished multipart uploads of a backend can be counted.
enum Uploads {
    Directory(PathBuf),
    Bucket(AwsStorageConfig),
}

impl Uploads {
    async fn unfinished(&self) -> usize {
        match self {
            Uploads::Directory(dir) => std::fs::read_dir(dir).map_or(0, |dir| dir.count()),
            Uploads::Bucket(config) => {
                let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .endpoint_url(config.endpoint_url.clone().expect("an emulator"))
                    .load()
                    .await;
                let s3 = aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&sdk)
                        .force_path_style(true)
                        .build(),
                );
                s3.list_multipart_uploads()
                    .bucket(&config.bucket)
                    .send()
                    .await
                    .expect("listing multipart uploads")
                    .uploads
                    .unwrap_or_default()
                    .len()
            }
        }
    }
}

struct World {
    state: AppState,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    uploads: Uploads,
    _keep: Box<dyn std::any::Any + Send>,
}

/// Checks slices of 64 KiB, so that completing the test's artifacts takes several calls.
fn settings() -> Settings {
    Settings {
        verify_slice_bytes: 64 * 1024,
        ..Settings::new(None)
    }
}

fn world_on(storage: Storage, uploads: Uploads, keep: Box<dyn std::any::Any + Send>) -> World {
    let faults = Faults::new();
    let clock = Arc::new(ManualClock::starting_at(OffsetDateTime::now_utc()));
    let faulty = Storage {
        kv: faults.kv(storage.kv),
        blobs: faults.blobs(storage.blobs),
    };
    let state = state_on(faulty);
    let state = AppState {
        settings: Arc::new(settings()),
        ..state
    }
    .with_clock(clock.clone());
    World {
        state,
        faults,
        clock,
        uploads,
        _keep: keep,
    }
}

async fn local() -> World {
    let (blobs, dir) = local_blobs_with_routes().await;
    let kv = EmbeddedKv::open(&dir.path().join("store.redb")).expect("store");
    let uploads = Uploads::Directory(dir.path().join("blobs").join("uploads"));
    let storage = Storage {
        kv: Arc::new(kv),
        blobs,
    };
    world_on(storage, uploads, Box::new(dir))
}

async fn on_aws() -> World {
    let (config, kv, blobs) = fresh_aws_storage().await;
    let storage = Storage {
        kv: Arc::new(kv),
        blobs: Arc::new(blobs),
    };
    world_on(storage, Uploads::Bucket(config), Box::new(()))
}

/// Sends bytes to an upload URL with the headers its plan names; answers the status
/// and the ETag.
async fn put(url: &str, headers: &Value, body: Vec<u8>) -> (u16, Option<String>) {
    let mut request = reqwest::Client::new().put(url);
    for (name, value) in headers.as_object().into_iter().flatten() {
        request = request.header(name, value.as_str().unwrap());
    }
    let response = request
        .body(body)
        .send()
        .await
        .expect("the blob store answers");
    let etag = response
        .headers()
        .get("etag")
        .map(|etag| etag.to_str().unwrap().to_owned());
    (response.status().as_u16(), etag)
}

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn register(w: &World, caller: &Caller, run: RunId, path: &str, body: &[u8]) -> Value {
    let new = NewArtifact {
        path: path.to_owned(),
        size: body.len() as u64,
        sha256: sha256_hex(body),
        content_type: None,
        kind: Default::default(),
        step: None,
    };
    let (_, plan) = artifacts::register(&w.state.store, &caller.tenant, run, new)
        .await
        .expect("a registration");
    serde_json::to_value(plan).unwrap()
}

/// Completes until sealed, counting the calls it took.
async fn complete(w: &World, caller: &Caller, run: RunId, path: &str) -> usize {
    let mut calls = 0;
    loop {
        calls += 1;
        let completion = Completion {
            path: path.to_owned(),
            parts: Vec::new(),
        };
        match artifacts::complete(
            &w.state.store,
            &w.state.marks,
            w.state.settings.verify_slice_bytes,
            &caller.tenant,
            run,
            completion,
        )
        .await
        .expect("a completion")
        {
            Completed::Sealed(_) => return calls,
            Completed::Verifying(_) => continue,
        }
    }
}

/// Bytes in the bucket under the tenant, and bytes the tenant is billed for.
async fn bucket_and_billed(w: &World, caller: &Caller) -> (u64, u64) {
    let listed = w
        .state
        .store
        .blobs
        .list(&caller.tenant.blob_prefix(), None, 1_000)
        .await
        .expect("a listing");
    let in_bucket = listed.blobs.iter().map(|blob| blob.size).sum();
    let billed = w
        .state
        .store
        .kv
        .get(&usage::totals_key(&caller.tenant))
        .await
        .unwrap()
        .and_then(|item| item.n(usage::BYTES))
        .unwrap_or(0);
    (in_bucket, billed as u64)
}

async fn bytes_in_the_bucket_equal_bytes_billed_once_swept(w: World) {
    let caller = signed_up_caller(&w.state).await;
    let tenant = &caller.tenant;
    let project = projects::create(
        &w.state.store,
        &caller,
        ProjectName::parse("swept").unwrap(),
    )
    .await
    .unwrap();
    let run = runs::create(&w.state.store, &caller, &project, NewRun::default())
        .await
        .unwrap()
        .id;

    // Sealed, a slice of 64 KiB per completion call.
    let kept = bytes(1, 200_000);
    let plan = register(&w, &caller, run, "kept.bin", &kept).await;
    let (url, headers) = (
        plan["upload"]["url"].as_str().unwrap().to_owned(),
        plan["upload"]["headers"].clone(),
    );
    assert_eq!(headers, json!({"if-none-match": "*"}));
    assert_eq!(put(&url, &headers, kept.clone()).await.0, 200);
    assert_eq!(complete(&w, &caller, run, "kept.bin").await, 4);
    // Its old URL can no longer change it.
    assert_eq!(put(&url, &headers, bytes(9, 200_000)).await.0, 412);

    // Uploaded whole, never completed.
    let abandoned = bytes(2, 50_000);
    let plan = register(&w, &caller, run, "abandoned.bin", &abandoned).await;
    put(
        plan["upload"]["url"].as_str().unwrap(),
        &plan["upload"]["headers"],
        abandoned,
    )
    .await;

    // A part of a multipart upload, never completed.
    let big = vec![3u8; 65 * 1024 * 1024];
    let plan = register(&w, &caller, run, "big.bin", &big).await;
    let part = &plan["parts"][0];
    let size = part["size"].as_u64().unwrap() as usize;
    assert_eq!(
        put(
            part["url"].as_str().unwrap(),
            &Value::Null,
            big[..size].to_vec()
        )
        .await
        .0,
        200
    );
    drop(big);

    // Sealed, deleted, then written again through its old URL.
    let gone = bytes(4, 30_000);
    let plan = register(&w, &caller, run, "gone.bin", &gone).await;
    let (url, headers) = (
        plan["upload"]["url"].as_str().unwrap().to_owned(),
        plan["upload"]["headers"].clone(),
    );
    put(&url, &headers, gone.clone()).await;
    complete(&w, &caller, run, "gone.bin").await;
    artifacts::delete(&w.state.store, tenant, run, "gone.bin")
        .await
        .unwrap();
    assert_eq!(
        put(&url, &headers, gone).await.0,
        200,
        "an old URL writes no artifact"
    );

    // Through MLflow's proxy: one upload completed (its checksum left to the sweep),
    // one abandoned after a part.
    for (path, complete_it) in [("proxied.bin", true), ("dropped.bin", false)] {
        let (_, urls) = artifacts::register_measured(&w.state.store, tenant, run, path, 2)
            .await
            .unwrap();
        let first = bytes(5, MIN_PART_BYTES as usize);
        let (_, etag1) = put(&urls[0], &Value::Null, first).await;
        if !complete_it {
            continue;
        }
        let (_, etag2) = put(&urls[1], &Value::Null, bytes(6, 1_000)).await;
        let completion = Completion {
            path: path.to_owned(),
            parts: vec![
                CompletedPart {
                    number: 1,
                    etag: etag1.unwrap(),
                },
                CompletedPart {
                    number: 2,
                    etag: etag2.unwrap(),
                },
            ],
        };
        let sealed = artifacts::complete(
            &w.state.store,
            &w.state.marks,
            w.state.settings.verify_slice_bytes,
            tenant,
            run,
            completion,
        )
        .await
        .unwrap();
        let Completed::Sealed(sealed) = sealed else {
            panic!("{sealed:?}")
        };
        assert_eq!(sealed.size, MIN_PART_BYTES + 1_000);
        assert!(
            sealed.sha256.is_empty(),
            "computed a slice at a time, later"
        );
    }

    // An image stored, its indexing failed, and its cleanup too: as if the process died.
    w.faults.fail_next(Op::Transact, Timing::Before);
    w.faults.fail_next(Op::BlobDelete, Timing::Before);
    let mut image = PNG.to_vec();
    image.extend(bytes(7, 5_000));
    assert!(
        images::log(
            &w.state.store,
            w.state.intake(),
            tenant,
            run,
            "samples",
            1,
            Bytes::from(image)
        )
        .await
        .is_err()
    );
    assert_eq!(w.faults.take_fired().len(), 2);

    let (in_bucket, billed) = bucket_and_billed(&w, &caller).await;
    assert!(
        in_bucket > billed,
        "the test leaves unbilled bytes to sweep: {in_bucket} {billed}"
    );
    assert!(w.uploads.unfinished().await >= 2);

    // Once the URLs have expired and the hourly run has come.
    w.clock.advance(Duration::hours(3));
    let report = sextant_cli::metering(&w.state)
        .sweep_due(w.state.now())
        .await
        .unwrap();
    eprintln!("swept: {report:?}; before: {in_bucket} bytes in the bucket, {billed} billed");
    let (in_bucket, billed) = bucket_and_billed(&w, &caller).await;
    assert_eq!(in_bucket, billed);
    assert_eq!(w.uploads.unfinished().await, 0);
    // What was sealed is intact; the proxied upload has its checksum now.
    let listed = artifacts::list(&w.state.store, tenant, run, None, None)
        .await
        .unwrap();
    let paths: Vec<&str> = listed.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["kept.bin", "proxied.bin"]);
    assert_eq!(listed[0].sha256, sha256_hex(&kept));
    let mut proxied = bytes(5, MIN_PART_BYTES as usize);
    proxied.extend(bytes(6, 1_000));
    assert_eq!(listed[1].sha256, sha256_hex(&proxied));
    let stored = w
        .state
        .store
        .blobs
        .get(&artifacts::blob_key(tenant, run, &ArtifactPath::parse("kept.bin").unwrap()).unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored, kept);
    // Sweeping again changes nothing.
    let again = sextant_cli::metering(&w.state)
        .sweep_due(w.state.now())
        .await
        .unwrap();
    assert_eq!((again.notes, again.bytes_deleted), (0, 0));
}

sextant_tests::cases!(local_blobs, super::local; bytes_in_the_bucket_equal_bytes_billed_once_swept);
sextant_tests::aws_cases!(s3, super::on_aws; bytes_in_the_bucket_equal_bytes_billed_once_swept);
