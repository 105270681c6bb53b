//! The write-ahead log as the engine uses it: which changes are logged, and
//! how they are replayed at start.
//!
//! Logged: every change users write to a table or a stream (`INSERT`,
//! `UPDATE`, `DELETE`, `TRUNCATE`, `CREATE TABLE AS`) and the watermarks those
//! writes advance, appended under the lock that orders the relation's changes
//! and synced before the statement completes (`synchronous_commit`). Not
//! logged: what connectors produce (checkpoints keep their positions).
//!
//! At start the engine rebuilds each database's objects in creation order
//! (from the last checkpoint, see [`crate::checkpoint`]) and replays the log
//! from the checkpoint's position through them: a materialized view starts at the log
//! position at which it was created, so that it sees the same changes it saw
//! the first time (a stream stores nothing: a view created later sees only
//! later rows), and table rows are back before anything reads them.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use weir_runtime::{Chunk, Feed, Message};
use weir_state::{Change, Commit, Record, Wal, WalError};

use crate::database::Database;
use crate::error::{Result, WeirError, sqlstate};
use crate::event_time::EventTime;
use crate::relation::Relation;

/// Appends changes of one relation to the log; `None` when there are none.
pub(crate) fn append(wal: &Wal, relation: u32, changes: &[Change]) -> Result<Option<Commit>> {
    if changes.is_empty() {
        return Ok(None);
    }
    wal.append(relation, changes).map(Some).map_err(wal_error)
}

/// The change a chunk of rows makes, as the log stores it.
pub(crate) fn rows(chunk: &Chunk) -> Change {
    Change::rows(chunk.batch.clone(), chunk.ops.clone())
}

/// The error of a write that could not be made durable.
pub(crate) fn wal_error(e: WalError) -> WeirError {
    WeirError::new(
        sqlstate::IO_ERROR,
        format!("the write could not be made durable: {e}"),
    )
    .with_hint("Check the data directory's disk, then restart the server.")
}

/// Waits until a write is durable, if it logged anything.
pub(crate) async fn durable(commit: Option<Commit>) -> Result<()> {
    match commit {
        Some(commit) => commit.durable().await.map_err(wal_error),
        None => Ok(()),
    }
}

/// The records of one database still to replay, in log order.
pub(crate) struct Replay {
    records: VecDeque<Record>,
}

impl Replay {
    /// The records of `records` from log position `from` on that change
    /// one of `relations` (OIDs).
    pub(crate) fn new(records: &[Record], relations: &HashSet<u32>, from: u64) -> Self {
        Replay {
            records: records
                .iter()
                .filter(|r| r.lsn >= from && relations.contains(&r.relation))
                .cloned()
                .collect(),
        }
    }

    /// Replays into `db` the records before log position `until`.
    pub(crate) async fn until(&mut self, db: &Arc<Database>, until: u64) -> Result<()> {
        while self.records.front().is_some_and(|r| r.lsn < until) {
            if let Some(record) = self.records.pop_front() {
                apply(db, record).await?;
            }
        }
        Ok(())
    }
}

/// Applies one logged change again: to the table's rows and to the
/// changelog the views read.
async fn apply(db: &Arc<Database>, record: Record) -> Result<()> {
    let relation = db
        .relations()
        .into_iter()
        .find(|r| r.oid() == record.relation);
    let corrupted = |what: String| {
        WeirError::new(
            sqlstate::DATA_CORRUPTED,
            format!(
                "replaying the write-ahead log (record {}): {what}",
                record.lsn
            ),
        )
    };
    match (relation, record.change) {
        (Some(Relation::Table(table)), Change::Rows { batch, ops }) => {
            let mut writer = table.data.writer().await;
            let chunk = match ops {
                None => {
                    writer
                        .insert(std::slice::from_ref(&batch))
                        .map_err(|e| corrupted(format!("table \"{}\": {e}", table.def.name)))?;
                    Chunk::inserts(batch)
                }
                Some(ops) => {
                    writer
                        .apply(&batch, &ops)
                        .map_err(|e| corrupted(format!("table \"{}\": {e}", table.def.name)))?;
                    Chunk::new(batch, ops)
                }
            };
            table.feed.publish(Message::Chunk(chunk)).await;
        }
        (Some(Relation::Table(table)), Change::Watermark { micros }) => {
            let _writer = table.data.writer().await;
            advance(table.event_time.as_ref(), &table.feed, micros).await?;
        }
        (Some(Relation::Stream(stream)), Change::Rows { batch, ops }) => {
            let _ingest = stream.ingest.lock().await;
            let chunk = match ops {
                None => Chunk::inserts(batch),
                Some(ops) => Chunk::new(batch, ops),
            };
            stream.feed.publish(Message::Chunk(chunk)).await;
        }
        (Some(Relation::Stream(stream)), Change::Watermark { micros }) => {
            let _ingest = stream.ingest.lock().await;
            advance(stream.event_time.as_ref(), &stream.feed, micros).await?;
        }
        (Some(other), _) => {
            return Err(corrupted(format!(
                "a change logged for {} \"{}\"",
                other.kind_name(),
                other.name()
            )));
        }
        // The relation was dropped after the write.
        (None, _) => {}
    }
    Ok(())
}

/// Moves a relation's event time to a logged watermark and publishes it.
async fn advance(event_time: Option<&EventTime>, feed: &Feed, micros: i64) -> Result<()> {
    if let Some(event_time) = event_time
        && let Some(watermark) = event_time.advance_to(micros)?
    {
        feed.publish(Message::Watermark(watermark)).await;
    }
    Ok(())
}
