//! The write-ahead log: every change users write to tables and streams, made
//! durable before the write is acknowledged.
//!
//! Changes are appended in one order, each as a record with a log sequence
//! number (LSN). On disk a record is `[length u32][crc32 u32][payload]`
//! (little-endian), its payload `[lsn u64][relation u32][kind u8][body]`: rows
//! are an Arrow IPC stream (with the operation of each row as a last column
//! when some rows are deletions), a watermark is its value in microseconds.
//!
//! Appending is cheap for the caller: the record is encoded and queued in LSN
//! order; one writer thread writes whatever the queue holds and syncs the file
//! once for all of it (group commit). [`Commit::durable`] waits for that sync.
//!
//! The log is a series of segment files, `wal-<first LSN>.log`; the writer
//! starts a new one once the current one passes a size. A checkpoint holds
//! every change before its LSN, so once the oldest checkpoint kept has
//! committed, the segments wholly before its LSN are deleted
//! ([`Wal::truncate_before`]).
//!
//! On open, the records from a given LSN on are read back for replay. A torn
//! or damaged record at the end of the last segment (a crash in the middle of
//! a write, which was never acknowledged) is cut off, and the log goes on from
//! the last whole record; one in an earlier segment is corruption and refused.

use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use arrow::array::{Array, AsArray, Int8Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int8Type, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use tokio::sync::oneshot;

/// The single file of logs written before segments (read as the first one).
const LEGACY_FILE_NAME: &str = "wal.log";
/// Segments past this size are closed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The file locked by the server that owns the log (one at a time).
const LOCK_NAME: &str = "LOCK";
/// Bytes before a record's payload: its length and checksum.
const FRAME_HEADER: usize = 8;
/// Name of the operations column of a logged chunk.
const OPS_COLUMN: &str = "__weir_op";

const KIND_ROWS: u8 = 1;
const KIND_WATERMARK: u8 = 2;

/// A change to one relation.
#[derive(Debug, Clone)]
pub enum Change {
    /// Rows inserted or deleted: `ops` holds 1 (insert) or -1 (delete) per
    /// row, `None` when every row is an insertion.
    Rows {
        batch: RecordBatch,
        ops: Option<Int8Array>,
    },
    /// Event time advanced to this instant (microseconds since the epoch).
    Watermark { micros: i64 },
}

/// A change read back from the log.
#[derive(Debug, Clone)]
pub struct Record {
    pub lsn: u64,
    /// OID of the table or stream changed.
    pub relation: u32,
    pub change: Change,
}

/// Why the log could not take or keep a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("write-ahead log: {0}")]
pub struct WalError(String);

impl WalError {
    fn io(what: &str, e: impl std::fmt::Display) -> Self {
        WalError(format!("{what}: {e}"))
    }
}

/// The write-ahead log of one Weir instance.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// The LSN of the oldest record still in the log.
    oldest: Mutex<u64>,
    queue: Mutex<Queue>,
    /// Locked while the log is open: a second server on the same directory
    /// is refused.
    lock: File,
}

#[derive(Debug)]
struct Queue {
    next_lsn: u64,
    /// `None` once the log is closed.
    sender: Option<mpsc::Sender<Pending>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Encoded records waiting for the writer thread.
#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    /// The LSN after these records'.
    end_lsn: u64,
    done: oneshot::Sender<Result<(), WalError>>,
}

/// The path of the segment whose first record has LSN `first`.
fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("wal-{first:020}.log"))
}

/// The segments in `dir`, as (first LSN, path), oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let describe = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| WalError::io(&describe, e))? {
        let entry = entry.map_err(|e| WalError::io(&describe, e))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_prefix("wal-")?.strip_suffix(".log")?.parse().ok())
        else {
            continue;
        };
        found.push((first, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// Makes a new or removed file in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Waits until appended records are on disk.
#[derive(Debug)]
pub struct Commit(oneshot::Receiver<Result<(), WalError>>);

impl Commit {
    /// Returns once the records are synced to disk.
    pub async fn durable(self) -> Result<(), WalError> {
        self.0
            .await
            .map_err(|_| WalError("the log writer has stopped".into()))?
    }
}

impl Wal {
    /// Opens the log in `dir` (created if missing) and returns it with the
    /// records it holds from LSN `from` on, in LSN order. Fails when records
    /// from `from` on were already deleted (the log was cut after a
    /// checkpoint that is no longer there).
    pub fn open(dir: &Path, from: u64) -> Result<(Arc<Wal>, Vec<Record>), WalError> {
        Self::open_with(dir, from, DEFAULT_SEGMENT_BYTES)
    }

    /// [`Wal::open`], starting a new segment past `segment_bytes`.
    pub fn open_with(
        dir: &Path,
        from: u64,
        segment_bytes: u64,
    ) -> Result<(Arc<Wal>, Vec<Record>), WalError> {
        std::fs::create_dir_all(dir).map_err(|e| WalError::io(&dir.display().to_string(), e))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = File::create(&lock_path)
            .map_err(|e| WalError::io(&lock_path.display().to_string(), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(WalError(format!(
                    "{} is in use by another Weir server",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(WalError::io(&lock_path.display().to_string(), e));
            }
        }
        // A log from before segments is the first segment.
        let legacy = dir.join(LEGACY_FILE_NAME);
        if legacy.is_file() {
            std::fs::rename(&legacy, segment_path(dir, 0))
                .and_then(|_| sync_dir(dir))
                .map_err(|e| WalError::io(&legacy.display().to_string(), e))?;
        }
        let mut segments = segments(dir)?;
        if segments.is_empty() {
            let first = segment_path(dir, 0);
            File::create(&first)
                .and_then(|_| sync_dir(dir))
                .map_err(|e| WalError::io(&first.display().to_string(), e))?;
            segments.push((0, first));
        }
        let oldest = segments[0].0;
        if oldest > from {
            return Err(WalError(format!(
                "{} starts at LSN {oldest}, but records from LSN {from} on are needed: they \
                 were deleted after a checkpoint that cannot be used any more",
                dir.display()
            )));
        }
        let mut records = Vec::new();
        let mut next_lsn = oldest;
        let last = segments.len() - 1;
        for (i, (first, path)) in segments.iter().enumerate() {
            // Skip segments whose records all come before `from`.
            if segments.get(i + 1).is_some_and(|(next, _)| *next <= from) {
                next_lsn = segments[i + 1].0;
                continue;
            }
            let describe = path.display().to_string();
            let content = std::fs::read(path).map_err(|e| WalError::io(&describe, e))?;
            let (found, good) = read_records(&content).map_err(|e| WalError::io(&describe, e))?;
            if found.first().is_some_and(|r| r.lsn != *first) {
                return Err(WalError(format!(
                    "{describe} should start at LSN {first}, its first record has LSN {}",
                    found[0].lsn
                )));
            }
            if good < content.len() {
                if i != last {
                    return Err(WalError(format!(
                        "{describe} is damaged at byte {good}, and later segments follow it"
                    )));
                }
                tracing::warn!(
                    log = %describe,
                    kept = good,
                    cut = content.len() - good,
                    "the write-ahead log ends with an incomplete record (a write interrupted \
                     by a crash, never acknowledged); it is cut off"
                );
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|file| {
                        file.set_len(good as u64)?;
                        file.sync_all()
                    })
                    .map_err(|e| WalError::io(&describe, e))?;
            }
            next_lsn = found.last().map_or(*first, |r| r.lsn + 1);
            records.extend(found.into_iter().filter(|r| r.lsn >= from));
        }
        // A checkpoint records the position of records that were queued,
        // maybe not synced; if they were lost, the log goes on after that
        // position all the same: a record below it would be skipped by the
        // next replay from that checkpoint.
        let next_lsn = next_lsn.max(from);
        let (_, current) = &segments[last];
        let describe = current.display().to_string();
        let file = OpenOptions::new()
            .append(true)
            .open(current)
            .map_err(|e| WalError::io(&describe, e))?;
        let size = file
            .metadata()
            .map_err(|e| WalError::io(&describe, e))?
            .len();
        let (sender, receiver) = mpsc::channel();
        let writer_dir = dir.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("weir-wal".into())
            .spawn(move || {
                write_loop(
                    Segment {
                        dir: writer_dir,
                        file,
                        size,
                        limit: segment_bytes,
                    },
                    receiver,
                )
            })
            .map_err(|e| WalError::io("starting the log writer", e))?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            oldest: Mutex::new(oldest),
            queue: Mutex::new(Queue {
                next_lsn,
                sender: Some(sender),
                writer: Some(writer),
            }),
            lock,
        };
        Ok((Arc::new(wal), records))
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The LSN of the oldest record the log still holds.
    pub fn oldest(&self) -> u64 {
        *self.oldest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes the segments whose records all have an LSN below `lsn` (the
    /// current segment is never deleted). Returns how many were deleted.
    pub fn truncate_before(&self, lsn: u64) -> Result<usize, WalError> {
        let mut oldest = self.oldest.lock().unwrap_or_else(|p| p.into_inner());
        let segments = segments(&self.dir)?;
        let mut deleted = 0;
        for pair in segments.windows(2) {
            let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
            if *next_first > lsn {
                break;
            }
            std::fs::remove_file(path).map_err(|e| WalError::io(&path.display().to_string(), e))?;
            *oldest = *next_first;
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.dir).map_err(|e| WalError::io(&self.dir.display().to_string(), e))?;
        }
        Ok(deleted)
    }

    /// The LSN the next record will get: every record already appended has a
    /// smaller one.
    pub fn position(&self) -> u64 {
        self.lock().next_lsn
    }

    /// Appends changes to one relation, in order, and returns what waits for
    /// them to be durable. Callers append under the lock that orders the
    /// relation's changes, so that the log has them in the order applied.
    pub fn append(&self, relation: u32, changes: &[Change]) -> Result<Commit, WalError> {
        let mut queue = self.lock();
        let mut bytes = Vec::new();
        let mut lsn = queue.next_lsn;
        for change in changes {
            encode(&mut bytes, lsn, relation, change)?;
            lsn += 1;
        }
        let (done, commit) = oneshot::channel();
        queue
            .sender
            .as_ref()
            .ok_or_else(|| WalError("the log is closed (the server is shutting down)".into()))?
            .send(Pending {
                bytes,
                end_lsn: lsn,
                done,
            })
            .map_err(|_| WalError("the log writer has stopped".into()))?;
        queue.next_lsn = lsn;
        Ok(Commit(commit))
    }

    /// Writes what is queued, then closes the log: later appends fail, and
    /// another server may open the directory.
    pub fn close(&self) {
        let writer = {
            let mut queue = self.lock();
            queue.sender = None;
            queue.writer.take()
        };
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        let _ = self.lock.unlock();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The segment the writer appends to.
struct Segment {
    dir: PathBuf,
    file: File,
    size: u64,
    limit: u64,
}

impl Segment {
    /// Writes and syncs `bytes`; past the size limit, starts the segment of
    /// the records from `end_lsn` on (when that fails, the records stay
    /// durable and the current segment goes on).
    fn write(&mut self, bytes: &[u8], end_lsn: u64) -> Result<(), WalError> {
        self.file
            .write_all(bytes)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| WalError::io("writing the log", e))?;
        self.size += bytes.len() as u64;
        if self.size >= self.limit {
            let path = segment_path(&self.dir, end_lsn);
            let next = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .and_then(|file| {
                    sync_dir(&self.dir)?;
                    Ok(file)
                });
            match next {
                Ok(file) => {
                    self.file = file;
                    self.size = 0;
                }
                Err(e) => tracing::warn!(
                    segment = %path.display(),
                    error = %e,
                    "cannot start a new log segment; the current one goes on"
                ),
            }
        }
        Ok(())
    }
}

/// The writer thread: writes what is queued, syncs once, reports to all.
/// After a failed write the log refuses every later record (a record after
/// a torn one could not be read back).
fn write_loop(mut segment: Segment, receiver: mpsc::Receiver<Pending>) {
    let mut failed: Option<WalError> = None;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while let Ok(more) = receiver.try_recv() {
            batch.push(more);
        }
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => {
                let mut bytes = Vec::with_capacity(batch.iter().map(|p| p.bytes.len()).sum());
                for pending in &batch {
                    bytes.extend_from_slice(&pending.bytes);
                }
                let end_lsn = batch.last().map_or(0, |p| p.end_lsn);
                segment.write(&bytes, end_lsn)
            }
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "the write-ahead log failed; later writes are refused");
            failed = Some(e.clone());
        }
        for pending in batch {
            let _ = pending.done.send(result.clone());
        }
    }
}

fn encode(out: &mut Vec<u8>, lsn: u64, relation: u32, change: &Change) -> Result<(), WalError> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&lsn.to_le_bytes());
    payload.extend_from_slice(&relation.to_le_bytes());
    match change {
        Change::Rows { batch, ops } => {
            payload.push(KIND_ROWS);
            let batch = match ops {
                None => batch.clone(),
                Some(ops) => {
                    let mut fields = batch.schema().fields().to_vec();
                    fields.push(Arc::new(Field::new(OPS_COLUMN, DataType::Int8, false)));
                    let mut columns = batch.columns().to_vec();
                    columns.push(Arc::new(ops.clone()));
                    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                        .map_err(|e| WalError::io("encoding rows", e))?
                }
            };
            let mut writer = StreamWriter::try_new(&mut payload, &batch.schema())
                .map_err(|e| WalError::io("encoding rows", e))?;
            writer
                .write(&batch)
                .and_then(|_| writer.finish())
                .map_err(|e| WalError::io("encoding rows", e))?;
        }
        Change::Watermark { micros } => {
            payload.push(KIND_WATERMARK);
            payload.extend_from_slice(&micros.to_le_bytes());
        }
    }
    let length = u32::try_from(payload.len())
        .map_err(|_| WalError("a change larger than 4 GiB cannot be logged".into()))?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// The whole records at the start of `content`, and how many bytes they take.
/// Reading stops at the first record that is short or fails its checksum.
fn read_records(content: &[u8]) -> Result<(Vec<Record>, usize), String> {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = content.get(at..at + FRAME_HEADER) {
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = content.get(at + FRAME_HEADER..at + FRAME_HEADER + length) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        // A record with a good checksum that does not decode is not a torn
        // write: it is refused rather than cut off.
        records.push(decode(payload).map_err(|e| format!("record at byte {at}: {e}"))?);
        at += FRAME_HEADER + length;
    }
    Ok((records, at))
}

fn decode(payload: &[u8]) -> Result<Record, String> {
    let (head, body) = payload
        .split_at_checked(13)
        .ok_or_else(|| "too short".to_string())?;
    let lsn = u64::from_le_bytes(head[0..8].try_into().map_err(|_| "bad lsn")?);
    let relation = u32::from_le_bytes(head[8..12].try_into().map_err(|_| "bad relation")?);
    let change = match head[12] {
        KIND_ROWS => {
            let mut reader =
                StreamReader::try_new(Cursor::new(body), None).map_err(|e| e.to_string())?;
            let batch = reader
                .next()
                .ok_or_else(|| "no rows".to_string())?
                .map_err(|e| e.to_string())?;
            let schema = batch.schema();
            let last = schema.fields().len().checked_sub(1);
            match last {
                Some(i) if schema.field(i).name() == OPS_COLUMN => {
                    let ops = batch
                        .column(i)
                        .as_primitive_opt::<Int8Type>()
                        .ok_or_else(|| "operations are not int8".to_string())?
                        .clone();
                    let mut batch = batch;
                    batch.remove_column(i);
                    Change::Rows {
                        batch,
                        ops: Some(ops),
                    }
                }
                _ => Change::Rows { batch, ops: None },
            }
        }
        KIND_WATERMARK => {
            let micros = i64::from_le_bytes(body.try_into().map_err(|_| "bad watermark")?);
            Change::Watermark { micros }
        }
        other => return Err(format!("unknown record kind {other}")),
    };
    Ok(Record {
        lsn,
        relation,
        change,
    })
}

impl Change {
    /// Rows inserted or deleted, as the log stores them.
    pub fn rows(batch: RecordBatch, ops: Option<Int8Array>) -> Self {
        // A chunk of insertions only needs no operations column.
        let ops = ops.filter(|ops| ops.null_count() > 0 || ops.values().iter().any(|op| *op < 0));
        Change::Rows { batch, ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn batch(ids: &[i64], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .expect("batch")
    }

    async fn append(wal: &Wal, relation: u32, changes: &[Change]) {
        wal.append(relation, changes)
            .expect("append")
            .durable()
            .await
            .expect("durable");
    }

    #[tokio::test]
    async fn records_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, records) = Wal::open(dir.path(), 0).expect("open");
        assert!(records.is_empty());
        assert_eq!(wal.position(), 0);
        append(&wal, 7, &[Change::rows(batch(&[1, 2], &["a", "b"]), None)]).await;
        let ops = Int8Array::from(vec![-1, 1]);
        append(
            &wal,
            8,
            &[
                Change::rows(batch(&[1, 3], &["a", "c"]), Some(ops.clone())),
                Change::Watermark { micros: 42 },
            ],
        )
        .await;
        assert_eq!(wal.position(), 3);
        drop(wal);

        let (wal, records) = Wal::open(dir.path(), 0).expect("reopen");
        assert_eq!(wal.position(), 3);
        let lsns: Vec<u64> = records.iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, vec![0, 1, 2]);
        match &records[0].change {
            Change::Rows {
                batch: b,
                ops: None,
            } => assert_eq!(b, &batch(&[1, 2], &["a", "b"])),
            other => panic!("expected inserted rows, got {other:?}"),
        }
        assert_eq!(records[1].relation, 8);
        match &records[1].change {
            Change::Rows {
                batch: b,
                ops: Some(o),
            } => {
                assert_eq!(b, &batch(&[1, 3], &["a", "c"]));
                assert_eq!(o, &ops);
            }
            other => panic!("expected changed rows, got {other:?}"),
        }
        assert!(matches!(
            records[2].change,
            Change::Watermark { micros: 42 }
        ));
    }

    #[tokio::test]
    async fn one_server_at_a_time_and_none_after_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(dir.path(), 0).expect("open");
        let second = Wal::open(dir.path(), 0).expect_err("a second opener is refused");
        assert!(
            second.to_string().contains("in use by another Weir server"),
            "{second}"
        );
        append(&wal, 1, &[Change::Watermark { micros: 1 }]).await;
        wal.close();
        let closed = wal
            .append(1, &[Change::Watermark { micros: 2 }])
            .expect_err("closed");
        assert!(closed.to_string().contains("closed"), "{closed}");
        let (_, records) = Wal::open(dir.path(), 0).expect("open after close");
        assert_eq!(records.len(), 1);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_the_log_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(dir.path(), 0).expect("open");
        append(&wal, 1, &[Change::rows(batch(&[1], &["a"]), None)]).await;
        append(&wal, 1, &[Change::rows(batch(&[2], &["b"]), None)]).await;
        let path = segment_path(dir.path(), 0);
        drop(wal);
        // A crash in the middle of the second record's write.
        let full = std::fs::read(&path).expect("read");
        std::fs::write(&path, &full[..full.len() - 5]).expect("tear");

        let (wal, records) = Wal::open(dir.path(), 0).expect("reopen");
        assert_eq!(records.len(), 1, "only the whole record is kept");
        assert_eq!(wal.position(), 1);
        append(&wal, 1, &[Change::rows(batch(&[3], &["c"]), None)]).await;
        drop(wal);
        let (_, records) = Wal::open(dir.path(), 0).expect("reopen again");
        let ids: Vec<i64> = records
            .iter()
            .map(|r| match &r.change {
                Change::Rows { batch, .. } => batch
                    .column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .value(0),
                Change::Watermark { .. } => -1,
            })
            .collect();
        assert_eq!(ids, vec![1, 3]);
    }

    #[tokio::test]
    async fn a_damaged_record_ends_the_log_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(dir.path(), 0).expect("open");
        append(&wal, 1, &[Change::Watermark { micros: 1 }]).await;
        append(&wal, 1, &[Change::Watermark { micros: 2 }]).await;
        let path = segment_path(dir.path(), 0);
        drop(wal);
        let mut content = std::fs::read(&path).expect("read");
        let last = content.len() - 1;
        content[last] ^= 0xff; // a flipped bit in the second record
        std::fs::write(&path, &content).expect("damage");
        let (_, records) = Wal::open(dir.path(), 0).expect("reopen");
        assert_eq!(records.len(), 1);
        assert!(matches!(records[0].change, Change::Watermark { micros: 1 }));
    }

    fn ids(records: &[Record]) -> Vec<i64> {
        records
            .iter()
            .map(|r| match &r.change {
                Change::Rows { batch, .. } => batch
                    .column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .value(0),
                Change::Watermark { micros } => *micros,
            })
            .collect()
    }

    #[tokio::test]
    async fn segments_roll_and_are_cut_before_a_checkpoint_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Tiny segments: every append starts a new one.
        let (wal, _) = Wal::open_with(dir.path(), 0, 1).expect("open");
        for id in 0..10 {
            append(&wal, 1, &[Change::rows(batch(&[id], &["x"]), None)]).await;
        }
        let firsts: Vec<u64> = segments(dir.path())
            .expect("list")
            .iter()
            .map(|(f, _)| *f)
            .collect();
        assert_eq!(firsts, (0..=10).collect::<Vec<_>>());
        // A checkpoint at LSN 6 holds records 0..6: their segments go.
        assert_eq!(wal.truncate_before(6).expect("truncate"), 6);
        assert_eq!(wal.oldest(), 6);
        assert_eq!(segments(dir.path()).expect("list")[0].0, 6);
        append(&wal, 1, &[Change::rows(batch(&[10], &["x"]), None)]).await;
        drop(wal);

        let (wal, records) = Wal::open_with(dir.path(), 8, 1).expect("reopen from 8");
        assert_eq!(ids(&records), vec![8, 9, 10]);
        assert_eq!(wal.position(), 11);
        drop(wal);
        let (_, records) = Wal::open(dir.path(), 6).expect("reopen from 6");
        assert_eq!(ids(&records), vec![6, 7, 8, 9, 10]);
        // Records before 6 are gone: a start that needs them is refused.
        let error = Wal::open(dir.path(), 2).expect_err("records 2..6 are gone");
        assert!(
            error.to_string().contains("starts at LSN 6")
                && error.to_string().contains("from LSN 2"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn numbering_goes_on_after_a_position_a_checkpoint_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(dir.path(), 0).expect("open");
        append(&wal, 1, &[Change::Watermark { micros: 1 }]).await;
        drop(wal);
        // A checkpoint recorded position 5: records 1..5 were queued, not
        // synced, and lost.
        let (wal, records) = Wal::open(dir.path(), 5).expect("reopen");
        assert!(records.is_empty());
        assert_eq!(wal.position(), 5);
        append(&wal, 1, &[Change::Watermark { micros: 2 }]).await;
        drop(wal);
        let (_, records) = Wal::open(dir.path(), 5).expect("reopen");
        assert_eq!(records.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![5]);
    }

    #[tokio::test]
    async fn truncation_never_deletes_the_current_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(dir.path(), 0).expect("open");
        append(&wal, 1, &[Change::Watermark { micros: 1 }]).await;
        assert_eq!(wal.truncate_before(100).expect("truncate"), 0);
        assert_eq!(wal.oldest(), 0);
        drop(wal);
        let (_, records) = Wal::open(dir.path(), 0).expect("reopen");
        assert_eq!(records.len(), 1);
    }

    #[tokio::test]
    async fn a_log_from_before_segments_is_read_as_the_first_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(dir.path(), 0).expect("open");
        append(&wal, 1, &[Change::Watermark { micros: 7 }]).await;
        drop(wal);
        std::fs::rename(
            segment_path(dir.path(), 0),
            dir.path().join(LEGACY_FILE_NAME),
        )
        .expect("make a legacy log");
        let (wal, records) = Wal::open(dir.path(), 0).expect("open the legacy log");
        assert_eq!(ids(&records), vec![7]);
        assert_eq!(wal.position(), 1);
        assert!(!dir.path().join(LEGACY_FILE_NAME).exists());
    }

    #[tokio::test]
    async fn damage_in_a_segment_before_the_last_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open_with(dir.path(), 0, 1).expect("open");
        append(&wal, 1, &[Change::Watermark { micros: 1 }]).await;
        append(&wal, 1, &[Change::Watermark { micros: 2 }]).await;
        drop(wal);
        let path = segment_path(dir.path(), 0);
        let mut content = std::fs::read(&path).expect("read");
        let last = content.len() - 1;
        content[last] ^= 0xff;
        std::fs::write(&path, &content).expect("damage");
        let error = Wal::open(dir.path(), 0).expect_err("damaged");
        assert!(
            error.to_string().contains("later segments follow"),
            "{error}"
        );
    }
}
