//! A small document kept in object storage and replaced atomically.
//!
//! Used for the catalog. On a local directory `object_store` writes to a
//! temporary file and renames it into place, so a crash of the process leaves
//! either the old or the new document, never a torn one. (The file is not
//! fsynced: a power loss right after a write may lose that write.)

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// One named document in an object store.
#[derive(Debug, Clone)]
pub struct DurableFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl DurableFile {
    /// The document `name` in the local directory `dir` (created if missing).
    pub fn local(dir: &FsPath, name: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(std::io::Error::other)?;
        Ok(DurableFile {
            store: Arc::new(store),
            path: Path::from(name),
        })
    }

    /// The content, or `None` when the document was never written.
    pub async fn read(&self) -> object_store::Result<Option<Bytes>> {
        match self.store.get(&self.path).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the content.
    pub async fn write(&self, content: Bytes) -> object_store::Result<()> {
        self.store
            .put(&self.path, PutPayload::from_bytes(content))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_replace_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = DurableFile::local(dir.path(), "catalog.json").expect("open");
        assert_eq!(file.read().await.expect("read"), None);
        file.write(Bytes::from_static(b"one")).await.expect("write");
        file.write(Bytes::from_static(b"two")).await.expect("write");
        let reopened = DurableFile::local(dir.path(), "catalog.json").expect("reopen");
        assert_eq!(
            reopened.read().await.expect("read").as_deref(),
            Some(&b"two"[..])
        );
    }
}
