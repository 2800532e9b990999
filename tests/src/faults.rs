//! Storage that fails on cue, for tests of what a crash or a timeout in the middle of a
//! request leaves behind.
//!
//! `Faults` is a plan shared by a wrapped key-value store and a wrapped blob store. A
//! test arms a fault on the `nth` upcoming call of one operation ("the next transact",
//! "the 2nd batch_write from now", "the next blob put"), failing it either
//! - `Before` it reaches the inner store: nothing is applied, or
//! - `After` the inner store applied it: the caller sees an error although the write
//!   happened, as when a Lambda times out or crashes after DynamoDB committed.
//!
//! The error is the stores' own "unavailable" (`StoreError::Unavailable`,
//! `BlobError::Unavailable`), so the code under test takes its real error paths.
//! Everything is deterministic: faults fire by counting calls, never by chance.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sextant_storage::blob::{
    BlobBody, BlobError, BlobKey, BlobMeta, BlobPage, BlobResult, BlobStore, CompletedPart, Presign,
};
use sextant_storage::kv::{
    Condition, Item, Key, KvStore, Page, Query, StoreError, StoreResult, TxOp, WriteOp,
};

/// An operation of either port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Get,
    Put,
    Delete,
    Add,
    Query,
    BatchWrite,
    Transact,
    BlobPut,
    BlobGet,
    BlobHead,
    BlobList,
    BlobDelete,
    BlobPresign,
    BlobStartMultipart,
    BlobPresignPart,
    BlobCompleteMultipart,
    BlobAbortMultipart,
}

/// When an armed fault strikes its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timing {
    /// The call never reaches the inner store.
    Before,
    /// The call is applied by the inner store, then answers an error.
    After,
}

/// A fault that struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    pub op: Op,
    pub timing: Timing,
    /// Whether the inner store applied the call: never `Before`; `After`, whether the
    /// inner call itself succeeded.
    pub applied: bool,
}

#[derive(Debug)]
struct Armed {
    op: Op,
    /// Calls of `op` still to let through before this one strikes.
    skip: u32,
    timing: Timing,
}

#[derive(Debug, Default)]
struct Plan {
    armed: Vec<Armed>,
    fired: Vec<Fired>,
    calls: HashMap<Op, u64>,
}

/// The fault plan: shared by the wrapped stores, driven by the test.
#[derive(Debug, Default)]
pub struct Faults {
    plan: Mutex<Plan>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails the `nth` call of `op` from now (1 is the next one). Faults armed for the
    /// same call strike once, `Before` winning over `After`.
    pub fn fail(&self, op: Op, nth: u32, timing: Timing) {
        assert!(nth >= 1, "the 1st call from now is the next one");
        self.plan().armed.push(Armed {
            op,
            skip: nth - 1,
            timing,
        });
    }

    /// Fails the next call of `op`.
    pub fn fail_next(&self, op: Op, timing: Timing) {
        self.fail(op, 1, timing);
    }

    /// Drops every armed fault that has not struck, answering how many there were.
    pub fn disarm(&self) -> usize {
        std::mem::take(&mut self.plan().armed).len()
    }

    /// The faults that struck since the last call, oldest first.
    pub fn take_fired(&self) -> Vec<Fired> {
        std::mem::take(&mut self.plan().fired)
    }

    /// Calls of `op` seen so far, struck or not.
    pub fn calls(&self, op: Op) -> u64 {
        self.plan().calls.get(&op).copied().unwrap_or(0)
    }

    /// Counts a call of `op` and answers whether (and when) it fails.
    fn strike(&self, op: Op) -> Option<Timing> {
        let mut plan = self.plan();
        *plan.calls.entry(op).or_default() += 1;
        let mut timing = None;
        plan.armed.retain_mut(|armed| {
            if armed.op != op {
                return true;
            }
            if armed.skip > 0 {
                armed.skip -= 1;
                return true;
            }
            timing = Some(match timing {
                Some(Timing::Before) => Timing::Before,
                _ => armed.timing,
            });
            false
        });
        timing
    }

    fn record(&self, op: Op, timing: Timing, applied: bool) {
        self.plan().fired.push(Fired {
            op,
            timing,
            applied,
        });
    }

    /// Runs `call` unless a fault strikes it first; answers an injected error instead of
    /// its outcome if one strikes after it.
    async fn guard<T, E>(
        &self,
        op: Op,
        call: impl Future<Output = Result<T, E>>,
        injected: impl FnOnce(anyhow::Error) -> E,
    ) -> Result<T, E> {
        match self.strike(op) {
            None => call.await,
            Some(Timing::Before) => {
                self.record(op, Timing::Before, false);
                Err(injected(anyhow::anyhow!(
                    "injected fault: {op:?} failed before reaching the store"
                )))
            }
            Some(Timing::After) => {
                let outcome = call.await;
                self.record(op, Timing::After, outcome.is_ok());
                match outcome {
                    Ok(_) => Err(injected(anyhow::anyhow!(
                        "injected fault: {op:?} failed after the store applied it"
                    ))),
                    Err(err) => Err(err),
                }
            }
        }
    }

    /// A key-value store failing on this plan's cue.
    pub fn kv(self: &Arc<Self>, inner: Arc<dyn KvStore>) -> Arc<FaultyKv> {
        Arc::new(FaultyKv {
            inner,
            faults: Arc::clone(self),
        })
    }

    /// A blob store failing on this plan's cue.
    pub fn blobs(self: &Arc<Self>, inner: Arc<dyn BlobStore>) -> Arc<FaultyBlobs> {
        Arc::new(FaultyBlobs {
            inner,
            faults: Arc::clone(self),
        })
    }
}

/// A key-value store whose calls fail when its `Faults` say so.
#[derive(Debug)]
pub struct FaultyKv {
    inner: Arc<dyn KvStore>,
    faults: Arc<Faults>,
}

#[async_trait]
impl KvStore for FaultyKv {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.faults
            .guard(Op::Get, self.inner.get(key), StoreError::Unavailable)
            .await
    }

    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
        self.faults
            .guard(
                Op::Put,
                self.inner.put(item, condition),
                StoreError::Unavailable,
            )
            .await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<()> {
        self.faults
            .guard(
                Op::Delete,
                self.inner.delete(key, condition),
                StoreError::Unavailable,
            )
            .await
    }

    async fn add(&self, key: &Key, attr: &str, delta: i64) -> StoreResult<i64> {
        self.faults
            .guard(
                Op::Add,
                self.inner.add(key, attr, delta),
                StoreError::Unavailable,
            )
            .await
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.faults
            .guard(Op::Query, self.inner.query(query), StoreError::Unavailable)
            .await
    }

    async fn batch_write(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        self.faults
            .guard(
                Op::BatchWrite,
                self.inner.batch_write(ops),
                StoreError::Unavailable,
            )
            .await
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.faults
            .guard(
                Op::Transact,
                self.inner.transact(ops),
                StoreError::Unavailable,
            )
            .await
    }
}

/// A blob store whose calls fail when its `Faults` say so.
#[derive(Debug)]
pub struct FaultyBlobs {
    inner: Arc<dyn BlobStore>,
    faults: Arc<Faults>,
}

#[async_trait]
impl BlobStore for FaultyBlobs {
    async fn put(&self, key: &BlobKey, body: Bytes) -> BlobResult<BlobMeta> {
        self.faults
            .guard(
                Op::BlobPut,
                self.inner.put(key, body),
                BlobError::Unavailable,
            )
            .await
    }

    async fn get(&self, key: &BlobKey) -> BlobResult<BlobBody> {
        self.faults
            .guard(Op::BlobGet, self.inner.get(key), BlobError::Unavailable)
            .await
    }

    async fn get_range(&self, key: &BlobKey, range: std::ops::Range<u64>) -> BlobResult<BlobBody> {
        self.faults
            .guard(
                Op::BlobGet,
                self.inner.get_range(key, range),
                BlobError::Unavailable,
            )
            .await
    }

    async fn head(&self, key: &BlobKey) -> BlobResult<Option<BlobMeta>> {
        self.faults
            .guard(Op::BlobHead, self.inner.head(key), BlobError::Unavailable)
            .await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> BlobResult<BlobPage> {
        self.faults
            .guard(
                Op::BlobList,
                self.inner.list(prefix, after, limit),
                BlobError::Unavailable,
            )
            .await
    }

    async fn delete(&self, key: &BlobKey) -> BlobResult<()> {
        self.faults
            .guard(
                Op::BlobDelete,
                self.inner.delete(key),
                BlobError::Unavailable,
            )
            .await
    }

    async fn presign(
        &self,
        key: &BlobKey,
        op: Presign,
        expires_in: Duration,
    ) -> BlobResult<String> {
        self.faults
            .guard(
                Op::BlobPresign,
                self.inner.presign(key, op, expires_in),
                BlobError::Unavailable,
            )
            .await
    }

    async fn start_multipart(&self, key: &BlobKey) -> BlobResult<String> {
        self.faults
            .guard(
                Op::BlobStartMultipart,
                self.inner.start_multipart(key),
                BlobError::Unavailable,
            )
            .await
    }

    async fn presign_part(
        &self,
        key: &BlobKey,
        upload_id: &str,
        number: u32,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> BlobResult<String> {
        self.faults
            .guard(
                Op::BlobPresignPart,
                self.inner
                    .presign_part(key, upload_id, number, content_length, expires_in),
                BlobError::Unavailable,
            )
            .await
    }

    async fn complete_multipart(
        &self,
        key: &BlobKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> BlobResult<()> {
        self.faults
            .guard(
                Op::BlobCompleteMultipart,
                self.inner.complete_multipart(key, upload_id, parts),
                BlobError::Unavailable,
            )
            .await
    }

    async fn abort_multipart(&self, key: &BlobKey, upload_id: &str) -> BlobResult<()> {
        self.faults
            .guard(
                Op::BlobAbortMultipart,
                self.inner.abort_multipart(key, upload_id),
                BlobError::Unavailable,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use sextant_storage::kv::Value;
    use sextant_storage_local::EmbeddedKv;
    use sextant_storage_local::blob::{LocalBlobs, UrlSigner};

    use super::*;

    fn item(sk: &str) -> Item {
        Item::new(Key::new("p", sk)).with("v", Value::N(1))
    }

    fn stores(dir: &tempfile::TempDir) -> (Arc<Faults>, Arc<dyn KvStore>, Arc<dyn BlobStore>) {
        let kv: Arc<dyn KvStore> =
            Arc::new(EmbeddedKv::open(&dir.path().join("store.redb")).expect("store"));
        let blobs: Arc<dyn BlobStore> = Arc::new(
            LocalBlobs::open(
                &dir.path().join("blobs"),
                UrlSigner::new(&[1; 32]),
                "http://127.0.0.1:9".parse().expect("URL"),
            )
            .expect("blobs"),
        );
        let faults = Faults::new();
        (
            Arc::clone(&faults),
            faults.kv(Arc::clone(&kv)),
            faults.blobs(Arc::clone(&blobs)),
        )
    }

    #[tokio::test]
    async fn a_fault_before_applies_nothing_and_one_after_applies_the_write_but_errs() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (faults, kv, _) = stores(&dir);
        faults.fail_next(Op::Transact, Timing::Before);
        let before = kv
            .transact(vec![TxOp::Put(item("a"), Condition::NotExists)])
            .await;
        assert!(
            matches!(before, Err(StoreError::Unavailable(_))),
            "{before:?}"
        );
        assert_eq!(kv.get(&Key::new("p", "a")).await.unwrap(), None);

        faults.fail_next(Op::Transact, Timing::After);
        let after = kv
            .transact(vec![TxOp::Put(item("a"), Condition::NotExists)])
            .await;
        assert!(
            matches!(after, Err(StoreError::Unavailable(_))),
            "{after:?}"
        );
        assert_eq!(kv.get(&Key::new("p", "a")).await.unwrap(), Some(item("a")));
        assert_eq!(
            faults.take_fired(),
            vec![
                Fired {
                    op: Op::Transact,
                    timing: Timing::Before,
                    applied: false
                },
                Fired {
                    op: Op::Transact,
                    timing: Timing::After,
                    applied: true
                },
            ]
        );

        // A fault after a call the store refuses answers the store's own error.
        faults.fail_next(Op::Transact, Timing::After);
        let refused = kv
            .transact(vec![TxOp::Put(item("a"), Condition::NotExists)])
            .await;
        assert!(
            matches!(refused, Err(StoreError::TransactionFailed(_))),
            "{refused:?}"
        );
        assert!(!faults.take_fired()[0].applied);
    }

    #[tokio::test]
    async fn faults_count_calls_of_their_own_operation_only() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (faults, kv, _) = stores(&dir);
        faults.fail(Op::BatchWrite, 2, Timing::Before);
        kv.put(item("x"), Condition::None).await.unwrap();
        kv.batch_write(vec![WriteOp::Put(item("b1"))])
            .await
            .unwrap();
        kv.get(&Key::new("p", "x")).await.unwrap();
        let second = kv.batch_write(vec![WriteOp::Put(item("b2"))]).await;
        assert!(matches!(second, Err(StoreError::Unavailable(_))));
        kv.batch_write(vec![WriteOp::Put(item("b3"))])
            .await
            .unwrap();
        assert!(kv.get(&Key::new("p", "b2")).await.unwrap().is_none());
        assert!(kv.get(&Key::new("p", "b3")).await.unwrap().is_some());
        assert_eq!(faults.calls(Op::BatchWrite), 3);
        assert_eq!(faults.calls(Op::Transact), 0);

        faults.fail(Op::Delete, 1, Timing::Before);
        faults.fail(Op::Delete, 5, Timing::After);
        assert_eq!(faults.disarm(), 2, "neither struck");
        kv.delete(&Key::new("p", "x"), Condition::None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn blob_faults_fail_puts_before_or_after_storing_the_object() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (faults, _, blobs) = stores(&dir);
        let key = BlobKey::parse("t/x.bin").unwrap();
        faults.fail_next(Op::BlobPut, Timing::Before);
        let before = blobs.put(&key, Bytes::from_static(b"abc")).await;
        assert!(
            matches!(before, Err(BlobError::Unavailable(_))),
            "{before:?}"
        );
        assert!(blobs.head(&key).await.unwrap().is_none());
        faults.fail_next(Op::BlobPut, Timing::After);
        let after = blobs.put(&key, Bytes::from_static(b"abc")).await;
        assert!(matches!(after, Err(BlobError::Unavailable(_))), "{after:?}");
        assert_eq!(blobs.head(&key).await.unwrap().map(|m| m.size), Some(3));
        assert_eq!(faults.take_fired().len(), 2);
    }
}
