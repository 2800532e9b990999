//! One conformance suite for the storage ports, run against both adapter pairs:
//! the embedded store and local directory, and DynamoDB and S3 as moto emulates them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cases::*;
use sextant_storage::blob::{
    BlobError, BlobKey, BlobStore, CREATE_ONLY, CompletedPart, MIN_PART_BYTES, Presign,
};
use sextant_storage::kv::{
    Condition, Item, Key, KvStore, MAX_ITEM_BYTES, Query, StoreError, TxOp, Value, WriteOp,
};
use sextant_storage_local::EmbeddedKv;
use sextant_tests::{aws_cases, cases, fresh_aws_storage, local_blobs_with_routes};

/// A storage pair under test, and what keeps it alive.
struct Fixture {
    kv: Arc<dyn KvStore>,
    blobs: Arc<dyn BlobStore>,
    /// The embedded pair's directory.
    _keep: Option<Box<dyn std::any::Any + Send>>,
}

async fn embedded() -> Fixture {
    let (blobs, dir) = local_blobs_with_routes().await;
    let kv = EmbeddedKv::open(&dir.path().join("store.redb")).expect("opening the store");
    Fixture {
        kv: Arc::new(kv),
        blobs,
        _keep: Some(Box::new(dir)),
    }
}

async fn aws() -> Fixture {
    let (_, kv, blobs) = fresh_aws_storage().await;
    Fixture {
        kv: Arc::new(kv),
        blobs: Arc::new(blobs),
        _keep: None,
    }
}

fn item(pk: &str, sk: &str) -> Item {
    Item::new(Key::new(pk, sk)).with("v", Value::S(format!("{pk}/{sk}")))
}

async fn all_sort_keys(kv: &dyn KvStore, mut query: Query) -> Vec<String> {
    let mut keys = Vec::new();
    loop {
        let page = kv.query(query.clone()).await.expect("query");
        keys.extend(page.items.into_iter().map(|item| item.key.sk));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return keys,
        }
    }
}

mod cases {
    use super::*;

    pub async fn a_missing_item_reads_as_none(f: Fixture) {
        assert_eq!(f.kv.get(&Key::new("p", "missing")).await.unwrap(), None);
    }

    pub async fn every_value_type_round_trips(f: Fixture) {
        let stored = Item::new(Key::new("t1", "item"))
            .with("s", Value::S("héllo 🐋".into()))
            .with("empty", Value::S(String::new()))
            .with("n", Value::N(-42))
            .with("max", Value::N(i64::MAX))
            .with("min", Value::N(i64::MIN))
            .with("b", Value::B(Bytes::from_static(&[0, 1, 2, 255])))
            .with("t", Value::Bool(true))
            .with("f", Value::Bool(false));
        f.kv.put(stored.clone(), Condition::None).await.unwrap();
        assert_eq!(f.kv.get(&stored.key).await.unwrap(), Some(stored));
    }

    pub async fn a_put_that_must_create_fails_on_an_existing_item(f: Fixture) {
        f.kv.put(item("p", "a"), Condition::NotExists)
            .await
            .unwrap();
        let err =
            f.kv.put(item("p", "a"), Condition::NotExists)
                .await
                .unwrap_err();
        assert!(matches!(err, StoreError::ConditionFailed), "{err:?}");
    }

    pub async fn a_put_that_must_replace_fails_on_a_missing_item(f: Fixture) {
        let err =
            f.kv.put(item("p", "a"), Condition::Exists)
                .await
                .unwrap_err();
        assert!(matches!(err, StoreError::ConditionFailed), "{err:?}");
        assert_eq!(f.kv.get(&Key::new("p", "a")).await.unwrap(), None);
    }

    pub async fn an_optimistic_put_succeeds_only_on_the_expected_version(f: Fixture) {
        let v1 = item("p", "doc").with("version", Value::N(1));
        f.kv.put(v1.clone(), Condition::NotExists).await.unwrap();
        let v2 = item("p", "doc").with("version", Value::N(2));
        let stale = Condition::Equals("version".into(), Value::N(0));
        assert!(matches!(
            f.kv.put(v2.clone(), stale).await,
            Err(StoreError::ConditionFailed)
        ));
        let current = Condition::Equals("version".into(), Value::N(1));
        f.kv.put(v2.clone(), current).await.unwrap();
        assert_eq!(f.kv.get(&v2.key).await.unwrap(), Some(v2));
    }

    pub async fn deleting_a_missing_item_succeeds_unless_it_must_exist(f: Fixture) {
        let key = Key::new("p", "gone");
        f.kv.delete(&key, Condition::None).await.unwrap();
        assert!(matches!(
            f.kv.delete(&key, Condition::Exists).await,
            Err(StoreError::ConditionFailed)
        ));
        f.kv.put(item("p", "gone"), Condition::None).await.unwrap();
        f.kv.delete(&key, Condition::Exists).await.unwrap();
        assert_eq!(f.kv.get(&key).await.unwrap(), None);
    }

    pub async fn concurrent_counter_adds_are_all_counted(f: Fixture) {
        let key = Key::new("p", "counter");
        let adds = (1..=20).map(|delta| {
            let kv = Arc::clone(&f.kv);
            let key = key.clone();
            tokio::spawn(async move { kv.add(&key, "count", delta).await })
        });
        for add in futures::future::join_all(adds).await {
            add.unwrap().unwrap();
        }
        assert_eq!(f.kv.add(&key, "count", 0).await.unwrap(), 210);
        let stored = f.kv.get(&key).await.unwrap().unwrap();
        assert_eq!(stored.n("count"), Some(210));
    }

    pub async fn a_prefix_query_reads_one_partition_in_sort_order(f: Fixture) {
        for (pk, sk) in [
            ("t#1", "run#b"),
            ("t#1", "run#a"),
            ("t#1", "run#c"),
            ("t#1", "ruo#x"),
            ("t#1", "run"),
            ("t#10", "run#a"),
            ("t", "run#a"),
        ] {
            f.kv.put(item(pk, sk), Condition::None).await.unwrap();
        }
        let keys = all_sort_keys(&*f.kv, Query::partition("t#1").prefix("run#")).await;
        assert_eq!(keys, ["run#a", "run#b", "run#c"]);
        let everything = all_sort_keys(&*f.kv, Query::partition("t#1")).await;
        assert_eq!(everything, ["run", "run#a", "run#b", "run#c", "ruo#x"]);
    }

    pub async fn sort_keys_order_by_their_utf8_bytes(f: Fixture) {
        for sk in ["z", "é", "a", "Z", "~", "日本"] {
            f.kv.put(item("u", sk), Condition::None).await.unwrap();
        }
        let keys = all_sort_keys(&*f.kv, Query::partition("u")).await;
        assert_eq!(keys, ["Z", "a", "z", "~", "é", "日本"]);
    }

    pub async fn a_range_query_includes_both_ends_and_reads_backwards(f: Fixture) {
        for step in 0..10 {
            f.kv.put(item("s", &format!("c#{step:04}")), Condition::None)
                .await
                .unwrap();
        }
        let forward =
            all_sort_keys(&*f.kv, Query::partition("s").between("c#0003", "c#0006")).await;
        assert_eq!(forward, ["c#0003", "c#0004", "c#0005", "c#0006"]);
        let backward = all_sort_keys(
            &*f.kv,
            Query::partition("s").between("c#0003", "c#0006").reverse(),
        )
        .await;
        assert_eq!(backward, ["c#0006", "c#0005", "c#0004", "c#0003"]);
        let newest =
            f.kv.query(Query::partition("s").prefix("c#").reverse().limit(1))
                .await
                .unwrap();
        assert_eq!(newest.items[0].key.sk, "c#0009");
    }

    pub async fn paging_through_a_query_visits_every_item_once(f: Fixture) {
        let ops = (0..57)
            .map(|i| WriteOp::Put(item("page", &format!("k{i:03}"))))
            .collect();
        f.kv.batch_write(ops).await.unwrap();
        let mut pages = 0;
        let mut query = Query::partition("page").limit(10);
        let mut seen = Vec::new();
        loop {
            let page = f.kv.query(query.clone()).await.unwrap();
            assert!(page.items.len() <= 10);
            pages += 1;
            seen.extend(page.items.into_iter().map(|item| item.key.sk));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = (0..57).map(|i| format!("k{i:03}")).collect();
        assert_eq!(seen, expected);
        assert!(pages >= 6);
        let backwards = all_sort_keys(&*f.kv, Query::partition("page").limit(7).reverse()).await;
        assert_eq!(backwards, expected.into_iter().rev().collect::<Vec<_>>());
    }

    pub async fn a_batch_larger_than_one_request_writes_and_deletes_everything(f: Fixture) {
        let puts = (0..60)
            .map(|i| WriteOp::Put(item("batch", &format!("{i:02}"))))
            .collect();
        f.kv.batch_write(puts).await.unwrap();
        assert_eq!(
            all_sort_keys(&*f.kv, Query::partition("batch")).await.len(),
            60
        );
        let deletes = (0..60)
            .filter(|i| i % 3 != 0)
            .map(|i| WriteOp::Delete(Key::new("batch", format!("{i:02}"))))
            .collect();
        f.kv.batch_write(deletes).await.unwrap();
        assert_eq!(
            all_sort_keys(&*f.kv, Query::partition("batch")).await.len(),
            20
        );
    }

    pub async fn a_batch_naming_an_item_twice_is_refused(f: Fixture) {
        let ops = vec![
            WriteOp::Put(item("p", "dup")),
            WriteOp::Delete(Key::new("p", "dup")),
        ];
        assert!(matches!(
            f.kv.batch_write(ops).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn a_transaction_with_a_failed_condition_writes_nothing(f: Fixture) {
        f.kv.put(item("tx", "taken"), Condition::None)
            .await
            .unwrap();
        let ops = vec![
            TxOp::Put(item("tx", "new"), Condition::NotExists),
            TxOp::Add {
                key: Key::new("tx", "counter"),
                deltas: vec![("n".into(), 5)],
                condition: Condition::None,
            },
            TxOp::Put(item("tx", "taken"), Condition::NotExists),
        ];
        match f.kv.transact(ops).await {
            Err(StoreError::TransactionFailed(failed)) => assert_eq!(failed, [2]),
            other => panic!("expected a failed transaction, got {other:?}"),
        }
        assert_eq!(f.kv.get(&Key::new("tx", "new")).await.unwrap(), None);
        assert_eq!(f.kv.get(&Key::new("tx", "counter")).await.unwrap(), None);
    }

    pub async fn a_transaction_applies_puts_deletes_checks_and_adds_together(f: Fixture) {
        f.kv.put(item("tx", "old"), Condition::None).await.unwrap();
        f.kv.put(item("tx", "guard"), Condition::None)
            .await
            .unwrap();
        let ops = vec![
            TxOp::Put(item("tx", "new"), Condition::NotExists),
            TxOp::Delete(Key::new("tx", "old"), Condition::Exists),
            TxOp::Check(Key::new("tx", "guard"), Condition::Exists),
            TxOp::Add {
                key: Key::new("tx", "counter"),
                deltas: vec![("n".into(), 3), ("m".into(), -2)],
                condition: Condition::None,
            },
        ];
        f.kv.transact(ops).await.unwrap();
        assert!(f.kv.get(&Key::new("tx", "new")).await.unwrap().is_some());
        assert_eq!(f.kv.get(&Key::new("tx", "old")).await.unwrap(), None);
        let counter = f.kv.get(&Key::new("tx", "counter")).await.unwrap().unwrap();
        assert_eq!((counter.n("n"), counter.n("m")), (Some(3), Some(-2)));
    }

    pub async fn a_capped_add_applies_until_the_counter_would_pass_its_cap(f: Fixture) {
        // Adding 4 to a counter capped at 10 must find it at 6 or less.
        let capped_add = |delta| {
            vec![TxOp::Add {
                key: Key::new("cap", "counter"),
                deltas: vec![("n".into(), delta), ("other".into(), 1)],
                condition: Condition::AtMost("n".into(), 10 - delta),
            }]
        };
        f.kv.transact(capped_add(4)).await.unwrap();
        f.kv.transact(capped_add(2)).await.unwrap();
        match f.kv.transact(capped_add(5)).await {
            Err(StoreError::TransactionFailed(failed)) => assert_eq!(failed, [0]),
            other => panic!("expected the cap to refuse the add, got {other:?}"),
        }
        f.kv.transact(capped_add(4)).await.unwrap();
        let counter =
            f.kv.get(&Key::new("cap", "counter"))
                .await
                .unwrap()
                .unwrap();
        assert_eq!((counter.n("n"), counter.n("other")), (Some(10), Some(3)));
    }

    pub async fn oversized_items_and_transactions_are_refused_before_writing(f: Fixture) {
        let huge = Item::new(Key::new("big", "one"))
            .with("b", Value::B(Bytes::from(vec![0u8; MAX_ITEM_BYTES])));
        assert!(matches!(
            f.kv.put(huge, Condition::None).await,
            Err(StoreError::ItemTooLarge { .. })
        ));
        // A string, not binary: moto sizes binary by its base64 text, DynamoDB by bytes.
        let just_fits =
            Item::new(Key::new("big", "two")).with("s", Value::S("x".repeat(MAX_ITEM_BYTES - 100)));
        f.kv.put(just_fits.clone(), Condition::None).await.unwrap();
        assert_eq!(f.kv.get(&just_fits.key).await.unwrap(), Some(just_fits));
        let too_many = (0..101)
            .map(|i| TxOp::Put(item("big", &format!("{i}")), Condition::None))
            .collect();
        assert!(matches!(
            f.kv.transact(too_many).await,
            Err(StoreError::Invalid(_))
        ));
    }

    fn key(text: &str) -> BlobKey {
        BlobKey::parse(text).unwrap()
    }

    pub async fn a_blob_round_trips_and_reports_its_size(f: Fixture) {
        let body = Bytes::from((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let stored = f
            .blobs
            .put(&key("ten_x/a/b.bin"), body.clone())
            .await
            .unwrap();
        assert_eq!(stored.size, body.len() as u64);
        let read = f.blobs.get(&key("ten_x/a/b.bin")).await.unwrap();
        assert_eq!(read.size, body.len() as u64);
        assert_eq!(read.bytes().await.unwrap(), body);
        let head = f.blobs.head(&key("ten_x/a/b.bin")).await.unwrap().unwrap();
        assert_eq!(head.size, body.len() as u64);
    }

    pub async fn a_missing_blob_is_none_on_head_and_not_found_on_get(f: Fixture) {
        assert_eq!(f.blobs.head(&key("ten_x/none")).await.unwrap(), None);
        assert!(matches!(
            f.blobs.get(&key("ten_x/none")).await,
            Err(BlobError::NotFound)
        ));
    }

    pub async fn listing_by_prefix_pages_through_keys_in_order(f: Fixture) {
        for name in ["t1/r/b", "t1/r/a", "t1/r/c/d", "t1/rr", "t2/r/a"] {
            f.blobs
                .put(&key(name), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let page = f.blobs.list("t1/r/", after.as_ref(), 2).await.unwrap();
            listed.extend(page.blobs.iter().map(|blob| blob.key.to_string()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, ["t1/r/a", "t1/r/b", "t1/r/c/d"]);
        let loose = f.blobs.list("t1/r", None, 100).await.unwrap();
        assert_eq!(loose.blobs.len(), 4);
    }

    pub async fn deleting_a_blob_is_idempotent(f: Fixture) {
        f.blobs
            .put(&key("t/d"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        f.blobs.delete(&key("t/d")).await.unwrap();
        f.blobs.delete(&key("t/d")).await.unwrap();
        assert_eq!(f.blobs.head(&key("t/d")).await.unwrap(), None);
    }

    pub async fn presigned_urls_upload_and_download_one_object(f: Fixture) {
        let body = Bytes::from(vec![42u8; 300_000]);
        let target = key("ten_x/run/model.bin");
        let upload = f
            .blobs
            .presign(
                &target,
                Presign::Put {
                    content_length: body.len() as u64,
                },
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert!(upload.starts_with("http://127.0.0.1:"), "{upload}");
        let client = reqwest::Client::new();
        let response = client.put(&upload).body(body.clone()).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let download = f
            .blobs
            .presign(&target, Presign::Get, Duration::from_secs(60))
            .await
            .unwrap();
        let fetched = client.get(&download).send().await.unwrap();
        assert!(fetched.status().is_success());
        assert_eq!(fetched.bytes().await.unwrap(), body);
    }

    pub async fn a_range_of_a_blob_reads_just_those_bytes_cut_at_its_end(f: Fixture) {
        let target = key("t/ranged");
        let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        f.blobs
            .put(&target, Bytes::from(body.clone()))
            .await
            .unwrap();
        for range in [0..10, 100..5_000, 9_990..10_000, 9_000..20_000] {
            let read = f.blobs.get_range(&target, range.clone()).await.unwrap();
            let end = range.end.min(10_000) as usize;
            assert_eq!(read.size, (end - range.start as usize) as u64);
            assert_eq!(
                read.bytes().await.unwrap(),
                body[range.start as usize..end],
                "{range:?}"
            );
        }
    }

    /// An upload URL creates its object and never replaces one, however long it lives:
    /// a sealed artifact's bytes cannot be changed through the URL that uploaded them.
    pub async fn an_upload_url_creates_its_object_and_never_replaces_it(f: Fixture) {
        let target = key("ten_x/run/sealed.bin");
        let url = f
            .blobs
            .presign(
                &target,
                Presign::Put { content_length: 5 },
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let put = |body: &'static [u8]| {
            client
                .put(&url)
                .header(CREATE_ONLY.0, CREATE_ONLY.1)
                .body(body)
                .send()
        };
        assert!(put(b"first").await.unwrap().status().is_success());
        let again = put(b"other").await.unwrap();
        assert_eq!(again.status().as_u16(), 412, "{:?}", again.text().await);
        assert_eq!(
            f.blobs.get(&target).await.unwrap().bytes().await.unwrap(),
            Bytes::from_static(b"first")
        );
        // Nor does an assembled multipart upload replace it.
        let upload_id = f.blobs.start_multipart(&target).await.unwrap();
        let completed = upload_parts(&*f.blobs, &target, &upload_id, &parts(), true).await;
        assert!(matches!(
            f.blobs
                .complete_multipart(&target, &upload_id, &completed)
                .await,
            Err(BlobError::InvalidUpload(_))
        ));
        assert_eq!(
            f.blobs.get(&target).await.unwrap().bytes().await.unwrap(),
            Bytes::from_static(b"first")
        );
        f.blobs.abort_multipart(&target, &upload_id).await.unwrap();
    }

    async fn upload_parts(
        blobs: &dyn BlobStore,
        target: &BlobKey,
        upload_id: &str,
        parts: &[Bytes],
        sized: bool,
    ) -> Vec<CompletedPart> {
        let client = reqwest::Client::new();
        let mut completed = Vec::new();
        for (index, body) in parts.iter().enumerate() {
            let number = index as u32 + 1;
            let url = blobs
                .presign_part(
                    target,
                    upload_id,
                    number,
                    sized.then_some(body.len() as u64),
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
            let response = client.put(&url).body(body.clone()).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let etag = response.headers()["etag"].to_str().unwrap().to_owned();
            completed.push(CompletedPart { number, etag });
        }
        completed
    }

    fn parts() -> Vec<Bytes> {
        let part = MIN_PART_BYTES as usize;
        vec![
            Bytes::from(vec![1u8; part]),
            Bytes::from(vec![2u8; part]),
            Bytes::from(vec![3u8; 1000]),
        ]
    }

    pub async fn a_multipart_upload_through_presigned_part_urls_assembles_the_object(f: Fixture) {
        let target = key("ten_x/run/big.bin");
        let upload_id = f.blobs.start_multipart(&target).await.unwrap();
        let parts = parts();
        let completed = upload_parts(&*f.blobs, &target, &upload_id, &parts, true).await;
        assert_eq!(
            f.blobs.head(&target).await.unwrap(),
            None,
            "not before completing"
        );
        f.blobs
            .complete_multipart(&target, &upload_id, &completed)
            .await
            .unwrap();
        let stored = f.blobs.get(&target).await.unwrap();
        assert_eq!(
            stored.size,
            parts.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        assert_eq!(stored.bytes().await.unwrap(), parts.concat());
    }

    /// MLflow's proxied uploads know only how many parts there are, not their sizes.
    pub async fn parts_presigned_without_a_length_take_the_size_the_client_sends(f: Fixture) {
        let target = key("ten_x/run/unsized.bin");
        let upload_id = f.blobs.start_multipart(&target).await.unwrap();
        let parts = parts();
        let completed = upload_parts(&*f.blobs, &target, &upload_id, &parts, false).await;
        f.blobs
            .complete_multipart(&target, &upload_id, &completed)
            .await
            .unwrap();
        assert_eq!(
            f.blobs.get(&target).await.unwrap().bytes().await.unwrap(),
            parts.concat()
        );
    }

    pub async fn a_multipart_upload_with_a_wrong_etag_or_after_abort_does_not_complete(f: Fixture) {
        let target = key("ten_x/run/bad.bin");
        let upload_id = f.blobs.start_multipart(&target).await.unwrap();
        let mut completed = upload_parts(&*f.blobs, &target, &upload_id, &parts(), true).await;
        completed[1].etag = "\"0123456789abcdef0123456789abcdef\"".into();
        assert!(matches!(
            f.blobs
                .complete_multipart(&target, &upload_id, &completed)
                .await,
            Err(BlobError::InvalidUpload(_))
        ));
        f.blobs.abort_multipart(&target, &upload_id).await.unwrap();
        f.blobs.abort_multipart(&target, &upload_id).await.unwrap();
        let after_abort = f
            .blobs
            .complete_multipart(&target, &upload_id, &completed)
            .await;
        // S3 says NoSuchUpload; moto answers a bare 400, so only the failure is shared.
        assert!(after_abort.is_err());
        assert_eq!(f.blobs.head(&target).await.unwrap(), None);
    }
}

/// Runs every case against both adapter pairs, each as its own test.
macro_rules! both {
    ($($case:ident),+ $(,)?) => {
        cases!(embedded, super::embedded; $($case),+);
        aws_cases!(aws, super::aws; $($case),+);
    };
}

both!(
    a_missing_item_reads_as_none,
    every_value_type_round_trips,
    a_put_that_must_create_fails_on_an_existing_item,
    a_put_that_must_replace_fails_on_a_missing_item,
    an_optimistic_put_succeeds_only_on_the_expected_version,
    deleting_a_missing_item_succeeds_unless_it_must_exist,
    concurrent_counter_adds_are_all_counted,
    a_prefix_query_reads_one_partition_in_sort_order,
    sort_keys_order_by_their_utf8_bytes,
    a_range_query_includes_both_ends_and_reads_backwards,
    paging_through_a_query_visits_every_item_once,
    a_batch_larger_than_one_request_writes_and_deletes_everything,
    a_batch_naming_an_item_twice_is_refused,
    a_transaction_with_a_failed_condition_writes_nothing,
    a_transaction_applies_puts_deletes_checks_and_adds_together,
    a_capped_add_applies_until_the_counter_would_pass_its_cap,
    oversized_items_and_transactions_are_refused_before_writing,
    a_blob_round_trips_and_reports_its_size,
    a_missing_blob_is_none_on_head_and_not_found_on_get,
    listing_by_prefix_pages_through_keys_in_order,
    deleting_a_blob_is_idempotent,
    presigned_urls_upload_and_download_one_object,
    a_multipart_upload_through_presigned_part_urls_assembles_the_object,
    parts_presigned_without_a_length_take_the_size_the_client_sends,
    a_multipart_upload_with_a_wrong_etag_or_after_abort_does_not_complete,
    a_range_of_a_blob_reads_just_those_bytes_cut_at_its_end,
    an_upload_url_creates_its_object_and_never_replaces_it,
);
