//! Checkpoints in object storage: the files of each checkpoint, and the
//! manifest that commits it.
//!
//! Layout, under the store's root:
//!
//! ```text
//! checkpoints/00000000000000000042/manifest.json   written last: the commit point
//! checkpoints/00000000000000000042/<name>.arrow    Arrow IPC streams
//! ```
//!
//! A checkpoint without a manifest was cut short (a crash while it was being
//! written) and does not count. A manifest lists every file with its size, so
//! that a missing or truncated file is detected before anything is restored
//! from it; the reader then falls back to an older checkpoint.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::location::{StateLocation, s3_store};

/// The format of manifests this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Errors reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("Arrow IPC: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("checkpoint {epoch}: {what}")]
    Damaged { epoch: u64, what: String },
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// The earlier checkpoint whose directory holds the file (a state that
    /// did not change, or the full copy under later change files); `None`:
    /// this checkpoint's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// What a committed checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub epoch: u64,
    /// Every change logged before this position is in the checkpoint.
    pub log_position: u64,
    /// When it started (milliseconds since the Unix epoch) and how long it
    /// took until the manifest was written.
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub files: Vec<FileEntry>,
    /// What the engine keeps besides files (relations' watermarks, source
    /// positions), as the engine defines it.
    pub engine: serde_json::Value,
}

impl Manifest {
    /// Bytes of all the checkpoint's files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Bytes of the files this checkpoint wrote (not those it shares with
    /// earlier ones).
    pub fn bytes_written(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.epoch.is_none_or(|e| e == self.epoch))
            .map(|f| f.bytes)
            .sum()
    }

    /// Where file `entry` of this checkpoint is: (epoch, name).
    pub fn location(&self, entry: &FileEntry) -> (u64, String) {
        (entry.epoch.unwrap_or(self.epoch), entry.name.clone())
    }

    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// The checkpoints of one Weir instance.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    /// For a local directory: its path (deleting files leaves their
    /// directory behind, which [`remove`](CheckpointStore::remove) deletes).
    local_root: Option<std::path::PathBuf>,
}

impl CheckpointStore {
    /// Checkpoints in `store` (at its root).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        CheckpointStore {
            store,
            local_root: None,
        }
    }

    /// Checkpoints at `location`: a local directory (created if missing) or
    /// an S3 bucket configured from the environment.
    pub fn open(location: &StateLocation) -> Result<Self, CheckpointError> {
        match location {
            StateLocation::Local(dir) => Self::local(dir).map_err(|e| {
                CheckpointError::Store(object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                })
            }),
            StateLocation::S3 { bucket, prefix } => Ok(Self::new(s3_store(bucket, prefix)?)),
        }
    }

    /// Checkpoints in the local directory `dir` (created if missing).
    pub fn local(dir: &std::path::Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(std::io::Error::other)?;
        Ok(CheckpointStore {
            store: Arc::new(store),
            local_root: Some(dir.to_path_buf()),
        })
    }

    fn path(epoch: u64, name: &str) -> Path {
        Path::from(format!("checkpoints/{epoch:020}/{name}"))
    }

    /// Writes `batches` as the file `name` of checkpoint `epoch`.
    pub async fn write_batches(
        &self,
        epoch: u64,
        name: &str,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<FileEntry, CheckpointError> {
        let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
        for batch in batches {
            writer.write(batch)?;
        }
        let bytes = writer.into_inner()?;
        let size = bytes.len() as u64;
        self.store
            .put(&Self::path(epoch, name), PutPayload::from(bytes))
            .await?;
        Ok(FileEntry {
            name: name.to_string(),
            bytes: size,
            epoch: None,
        })
    }

    /// Commits a checkpoint whose files are written: writes its manifest.
    pub async fn commit(&self, manifest: &Manifest) -> Result<(), CheckpointError> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| CheckpointError::Damaged {
            epoch: manifest.epoch,
            what: format!("cannot serialize the manifest: {e}"),
        })?;
        self.store
            .put(
                &Self::path(manifest.epoch, "manifest.json"),
                PutPayload::from_bytes(Bytes::from(json)),
            )
            .await?;
        Ok(())
    }

    /// The epochs of every checkpoint present (committed or not), oldest
    /// first.
    pub async fn epochs(&self) -> Result<Vec<u64>, CheckpointError> {
        let listing = match self
            .store
            .list_with_delimiter(Some(&Path::from("checkpoints")))
            .await
        {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut epochs: Vec<u64> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.parse().ok())
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// The manifest of checkpoint `epoch`, once every file it lists is
    /// checked to be there with its size; `None` when it was never committed.
    pub async fn manifest(&self, epoch: u64) -> Result<Option<Manifest>, CheckpointError> {
        let bytes = match self.store.get(&Self::path(epoch, "manifest.json")).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let damaged = |what: String| CheckpointError::Damaged { epoch, what };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| damaged(format!("the manifest cannot be read: {e}")))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(damaged(format!(
                "manifest format version {}, this build reads version {MANIFEST_VERSION}",
                manifest.version
            )));
        }
        for file in &manifest.files {
            let (at, _) = manifest.location(file);
            let meta = match self.store.head(&Self::path(at, &file.name)).await {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(damaged(format!("file {} is missing", file.name)));
                }
                Err(e) => return Err(e.into()),
            };
            if meta.size != file.bytes {
                return Err(damaged(format!(
                    "file {} has {} bytes, the manifest says {}",
                    file.name, meta.size, file.bytes
                )));
            }
        }
        Ok(Some(manifest))
    }

    /// The batches of a file of a committed checkpoint.
    pub async fn read_batches(
        &self,
        manifest: &Manifest,
        name: &str,
    ) -> Result<Vec<RecordBatch>, CheckpointError> {
        let entry = manifest
            .file(name)
            .ok_or_else(|| CheckpointError::Damaged {
                epoch: manifest.epoch,
                what: format!("the manifest lists no file {name}"),
            })?;
        let (at, _) = manifest.location(entry);
        self.read_file(at, entry).await
    }

    /// The batches of file `entry` in the directory of checkpoint `epoch`.
    pub async fn read_file(
        &self,
        epoch: u64,
        entry: &FileEntry,
    ) -> Result<Vec<RecordBatch>, CheckpointError> {
        let name = &entry.name;
        let damaged = |what: String| CheckpointError::Damaged { epoch, what };
        let bytes = self
            .store
            .get(&Self::path(epoch, name))
            .await?
            .bytes()
            .await?;
        if bytes.len() as u64 != entry.bytes {
            return Err(damaged(format!(
                "file {name} has {} bytes, the manifest says {}",
                bytes.len(),
                entry.bytes
            )));
        }
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| damaged(format!("file {name}: {e}")))?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| damaged(format!("file {name}: {e}")))
    }

    /// Deletes checkpoint `epoch`: its manifest first (so a crash meanwhile
    /// leaves an uncommitted checkpoint, not a damaged one), then each of its
    /// files that `shared` does not list as (epoch, name): files that later
    /// checkpoints still use stay until those go too.
    pub async fn remove(
        &self,
        epoch: u64,
        shared: &std::collections::HashSet<(u64, String)>,
    ) -> Result<(), CheckpointError> {
        match self.store.delete(&Self::path(epoch, "manifest.json")).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let prefix = Path::from(format!("checkpoints/{epoch:020}"));
        let listing = self.store.list_with_delimiter(Some(&prefix)).await?;
        let mut kept = 0;
        for object in listing.objects {
            let name = object.location.filename().unwrap_or_default().to_string();
            if shared.contains(&(epoch, name)) {
                kept += 1;
                continue;
            }
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(root) = &self.local_root
            && kept == 0
        {
            match std::fs::remove_dir(root.join(prefix.as_ref())) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(CheckpointError::Store(object_store::Error::Generic {
                        store: "local",
                        source: Box::new(e),
                    }));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .expect("batch")
    }

    async fn checkpoint(store: &CheckpointStore, epoch: u64, values: &[i64]) -> Manifest {
        let b = batch(values);
        let file = store
            .write_batches(epoch, "t.arrow", &b.schema(), std::slice::from_ref(&b))
            .await
            .expect("write");
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            epoch,
            log_position: epoch * 10,
            started_at_ms: 0,
            duration_ms: 1,
            files: vec![file],
            engine: serde_json::Value::Null,
        };
        store.commit(&manifest).await.expect("commit");
        manifest
    }

    #[tokio::test]
    async fn committed_checkpoints_read_back_and_uncommitted_ones_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::local(dir.path()).expect("store");
        assert!(store.epochs().await.expect("list").is_empty());
        checkpoint(&store, 3, &[1, 2, 3]).await;
        // Files without a manifest: a checkpoint cut short.
        let b = batch(&[9]);
        store
            .write_batches(4, "t.arrow", &b.schema(), &[b])
            .await
            .expect("write");
        assert_eq!(store.epochs().await.expect("list"), vec![3, 4]);
        assert!(store.manifest(4).await.expect("read").is_none());
        let manifest = store.manifest(3).await.expect("read").expect("committed");
        assert_eq!(manifest.log_position, 30);
        let batches = store
            .read_batches(&manifest, "t.arrow")
            .await
            .expect("read");
        assert_eq!(batches, vec![batch(&[1, 2, 3])]);
        let none = std::collections::HashSet::new();
        store.remove(4, &none).await.expect("remove");
        store.remove(3, &none).await.expect("remove");
        assert!(store.manifest(3).await.expect("read").is_none());
        // Nothing is left behind, not even the directories.
        assert!(store.epochs().await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn a_truncated_or_missing_file_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::local(dir.path()).expect("store");
        checkpoint(&store, 1, &[1, 2, 3]).await;
        checkpoint(&store, 2, &[4, 5, 6]).await;
        let file = dir.path().join(format!("checkpoints/{:020}/t.arrow", 2));
        let bytes = std::fs::read(&file).expect("read");
        std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate");
        let error = store.manifest(2).await.expect_err("truncated");
        assert!(
            error.to_string().contains("bytes, the manifest says"),
            "{error}"
        );
        std::fs::remove_file(&file).expect("remove");
        let error = store.manifest(2).await.expect_err("missing");
        assert!(error.to_string().contains("t.arrow is missing"), "{error}");
        assert!(store.manifest(1).await.expect("read").is_some());
    }

    #[tokio::test]
    async fn files_shared_with_a_later_checkpoint_outlive_their_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::local(dir.path()).expect("store");
        let first = checkpoint(&store, 1, &[1, 2, 3]).await;
        // Checkpoint 2 writes nothing new: it uses checkpoint 1's file.
        let mut shared = first.files[0].clone();
        shared.epoch = Some(1);
        let second = Manifest {
            epoch: 2,
            files: vec![shared],
            ..first.clone()
        };
        store.commit(&second).await.expect("commit");
        assert_eq!(second.bytes_written(), 0);
        assert_eq!(second.bytes(), first.bytes());
        let keep = second
            .files
            .iter()
            .map(|f| second.location(f))
            .collect::<std::collections::HashSet<_>>();
        store.remove(1, &keep).await.expect("remove 1");
        assert!(store.manifest(1).await.expect("read").is_none());
        let manifest = store.manifest(2).await.expect("read").expect("intact");
        let batches = store
            .read_batches(&manifest, "t.arrow")
            .await
            .expect("read");
        assert_eq!(batches, vec![batch(&[1, 2, 3])]);
    }
}
