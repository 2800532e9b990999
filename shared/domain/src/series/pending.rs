//! Chunks of batch attempts that have not committed.
//!
//! An attempt writes a marker naming its chunks before it writes them, and its commit
//! transaction deletes the marker. Reads skip every chunk a marker names, so points
//! become readable exactly when they are counted: an attempt that fails between its
//! chunk writes and its commit (a crash, a timeout, a refusal) leaves nothing a reader
//! or a bill can see. Each attempt writes chunks of its own (the attempt id is in
//! their keys), so cleaning up after one attempt never touches another's.
//!
//! Markers live in the run's data partition under `p#{attempt}`. A marker older than
//! `ABANDONED_AFTER` belongs to an attempt that can no longer commit (a Lambda runs at
//! most 15 minutes); the read that finds it deletes its chunks, then the marker.

use std::collections::HashSet;
use std::io::Read;

use time::{Duration, OffsetDateTime};

use super::{Result, SeriesError};
use crate::ids::RunId;
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, Query, Value, WriteOp};

const PREFIX: &str = "p#";
const CHUNKS: &str = "chunks";
const WRITTEN_AT: &str = "at";
const ABANDONED_AFTER: Duration = Duration::HOUR;

fn marker_key(tenant: &Tenant, run: RunId, attempt: &str) -> Key {
    Key::new(
        crate::runs::data_partition(tenant, run),
        format!("{PREFIX}{attempt}"),
    )
}

/// The marker for an attempt's chunks. Sort keys repeat the series name and attempt
/// id, so they compress well: a batch touching a thousand series still fits an item.
fn marker(key: Key, chunks: &[Key], at: OffsetDateTime) -> Result<Item> {
    let names = chunks
        .iter()
        .map(|chunk| chunk.sk.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let compressed = zstd::bulk::compress(names.as_bytes(), 3)
        .map_err(|err| SeriesError::Corrupt(err.into()))?;
    Ok(Item::new(key)
        .with(CHUNKS, Value::B(compressed.into()))
        .with(WRITTEN_AT, Value::N(at.unix_timestamp())))
}

fn chunk_names(marker: &Item) -> Result<Vec<String>> {
    let compressed = marker
        .b(CHUNKS)
        .ok_or_else(|| SeriesError::Corrupt(anyhow::anyhow!("a pending marker without chunks")))?;
    let mut names = String::new();
    zstd::stream::read::Decoder::new(compressed.as_ref())
        .and_then(|mut decoder| decoder.read_to_string(&mut names))
        .map_err(|err| SeriesError::Corrupt(err.into()))?;
    Ok(names.lines().map(str::to_owned).collect())
}

/// The sort keys of the run's chunks that no committed batch owns. Sweeps the chunks
/// of abandoned attempts on the way.
pub(super) async fn uncommitted(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
) -> Result<HashSet<String>> {
    let partition = crate::runs::data_partition(tenant, run);
    let mut query = Query::partition(partition.clone()).prefix(PREFIX);
    let mut hidden = HashSet::new();
    let abandoned_before = store.now() - ABANDONED_AFTER;
    loop {
        let page = store.kv.query(query.clone()).await?;
        for marker in &page.items {
            let names = chunk_names(marker)?;
            let written = marker
                .n(WRITTEN_AT)
                .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok());
            if written.is_some_and(|at| at < abandoned_before) {
                let chunks = names
                    .iter()
                    .map(|name| Key::new(partition.clone(), name.clone()))
                    .collect();
                forget(store, marker.key.clone(), chunks).await;
            }
            hidden.extend(names);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(hidden),
        }
    }
}

/// Writes an attempt's marker naming `items`, then the items: from here until its
/// commit deletes the marker, readers skip them. Answers the marker's key and the
/// items' keys, which `forget` takes should the attempt not commit.
pub(super) async fn write_hidden(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    attempt: &str,
    items: Vec<Item>,
    now: OffsetDateTime,
) -> Result<(Key, Vec<Key>)> {
    let chunk_keys: Vec<Key> = items.iter().map(|item| item.key.clone()).collect();
    let marker_key = marker_key(tenant, run, attempt);
    store
        .kv
        .put(
            marker(marker_key.clone(), &chunk_keys, now)?,
            Condition::None,
        )
        .await?;
    store
        .kv
        .batch_write(items.into_iter().map(WriteOp::Put).collect())
        .await?;
    Ok((marker_key, chunk_keys))
}

/// Deletes an attempt's chunks, then its marker, so the chunks stay hidden until they
/// are gone. Best effort: what is left stays hidden and is swept later.
pub(super) async fn forget(store: &Store, marker: Key, chunks: Vec<Key>) {
    let deleted = async {
        store
            .kv
            .batch_write(chunks.into_iter().map(WriteOp::Delete).collect())
            .await?;
        store.kv.delete(&marker, Condition::None).await
    };
    if let Err(err) = deleted.await {
        tracing::warn!(error = %err, "could not remove the chunks of an uncommitted batch");
    }
}
