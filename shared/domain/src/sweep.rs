//! The ledger of uploads to look at again: every stored byte is billed or gone.
//!
//! Bytes reach the blob store in ways no transaction covers: a client uploads through
//! a presigned URL and never completes, uses an old URL after the artifact was deleted,
//! or a server dies between storing an image and indexing it. So whatever hands out an
//! upload URL, or stores an object before indexing it, first notes here the object, its
//! multipart upload if any, and the record that will claim it; and once the URL has
//! expired, the hourly metering run settles each note (`due`): an object its record
//! claims stays, anything else is deleted and its upload aborted.
//!
//! Notes live in global partitions by the hour they fall due, each spread over a few
//! shards: `~sweep#{YYYY-MM-DDTHH}#{shard}` / a digest of the object and upload. A
//! cursor (`~sweep` / `cursor`) remembers the last hour settled, so a run that stops
//! halfway resumes, and settling a note twice changes nothing.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::calendar::{hour_label, hour_of};
use crate::ids::{RunId, TenantId};
use sextant_storage::kv::{Condition, Key, KvStore, Query, StoreResult};
use sextant_storage::records::{doc_item, get_doc};

/// Partitions each hour's notes are spread over, so a busy hour is no hot partition.
const SHARDS: u8 = 8;
/// How far back a run looks for notes when it has no cursor (a new deployment).
const FIRST_LOOK_BACK: Duration = Duration::days(14);

/// What is expected to claim an object, to be asked once its upload URLs have expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Claimant {
    /// The artifact at `path` of a run: it claims its object once sealed, and while
    /// its upload is unfinished, until its latest URLs have expired.
    Artifact { run: RunId, path: String },
    /// An image's index item (its sort key in the run's data partition).
    Image { run: RunId, index: String },
    /// The blocks under the note's prefix belong to the run's series: settling folds
    /// the run (`series::fold`) and deletes the blocks its record does not name.
    Series { run: RunId },
}

/// A note: an object (and its multipart upload) that `claimant` should hold by the
/// time the note falls due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub tenant: TenantId,
    pub blob: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    pub claimant: Claimant,
}

impl Note {
    fn digest(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(self.blob.as_bytes());
        digest.update([0]);
        digest.update(self.upload_id.as_deref().unwrap_or("").as_bytes());
        hex::encode(&digest.finalize()[..16])
    }

    fn shard(&self) -> u8 {
        u8::from_str_radix(&self.digest()[..2], 16).unwrap_or(0) % SHARDS
    }
}

fn partition(hour: OffsetDateTime, shard: u8) -> String {
    format!("~sweep#{}#{shard}", hour_label(hour))
}

fn cursor_key() -> Key {
    Key::new("~sweep", "cursor")
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    #[serde(with = "time::serde::rfc3339")]
    last_hour: OffsetDateTime,
}

/// Notes `note`, to be settled in the first run after `until`, when whatever URL let
/// the object be written has expired.
pub async fn expect(kv: &dyn KvStore, note: &Note, until: OffsetDateTime) -> StoreResult<()> {
    let due = hour_of(until) + Duration::HOUR;
    let key = Key::new(partition(due, note.shard()), note.digest());
    kv.put(doc_item(key, note)?, Condition::None).await?;
    Ok(())
}

/// The hours whose notes are due at `now` and not yet settled, oldest first: every
/// hour that ended before the current one began, since the last one settled.
pub async fn due_hours(kv: &dyn KvStore, now: OffsetDateTime) -> StoreResult<Vec<OffsetDateTime>> {
    let last_complete = hour_of(now) - Duration::HOUR;
    let first = match get_doc::<Cursor>(kv, &cursor_key()).await? {
        Some(cursor) => cursor.last_hour + Duration::HOUR,
        None => hour_of(now - FIRST_LOOK_BACK),
    };
    let mut hours = Vec::new();
    let mut hour = first;
    while hour <= last_complete {
        hours.push(hour);
        hour += Duration::HOUR;
    }
    Ok(hours)
}

/// The notes that fall due in `hour`, with the keys that forget them.
pub async fn notes(kv: &dyn KvStore, hour: OffsetDateTime) -> StoreResult<Vec<(Key, Note)>> {
    let mut notes = Vec::new();
    for shard in 0..SHARDS {
        let mut query = Query::partition(partition(hour, shard));
        loop {
            let page = kv.query(query.clone()).await?;
            for item in &page.items {
                notes.push((item.key.clone(), sextant_storage::records::read_doc(item)?));
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
    }
    Ok(notes)
}

/// Forgets a settled note.
pub async fn forget(kv: &dyn KvStore, key: &Key) -> StoreResult<()> {
    kv.delete(key, Condition::None).await?;
    Ok(())
}

/// Records that every note of `hour` (and of the hours before it) is settled.
pub async fn settled_through(kv: &dyn KvStore, hour: OffsetDateTime) -> StoreResult<()> {
    kv.put(
        doc_item(cursor_key(), &Cursor { last_hour: hour })?,
        Condition::None,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_its_object_and_upload_in_a_key_of_fixed_length() {
        let note = Note {
            tenant: TenantId::generate(),
            blob: format!("t/runs/r/artifacts/{}", "x".repeat(900)),
            upload_id: Some("u".repeat(200)),
            claimant: Claimant::Artifact {
                run: RunId::generate(),
                path: "x".into(),
            },
        };
        assert_eq!(note.digest().len(), 32);
        let other = Note {
            upload_id: None,
            ..note.clone()
        };
        assert_ne!(note.digest(), other.digest());
        assert!(note.shard() < SHARDS);
    }
}
