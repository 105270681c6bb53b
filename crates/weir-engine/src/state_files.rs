//! Incremental checkpoints: which files hold each state.
//!
//! A state (a table's rows, a view's rows, one operator subtask's groups) is
//! a chain of files: a full copy, then the change files of the checkpoints
//! after it (`weir_state::delta`). A checkpoint writes a state's changes when
//! its owner handed over only those, and a full copy otherwise; a state
//! without changes writes nothing and keeps its chain. Past
//! [`MAX_CHANGE_FILES`] change files, the chain is compacted: read back,
//! put together and written as a new full copy. The manifest lists every
//! file of every chain, in whichever checkpoint's directory it is.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir_runtime::StatePiece;
use weir_state::delta::{Matching, OPS_COLUMN, apply_changes};
use weir_state::{CheckpointStore, FileEntry, Manifest};

use crate::checkpoint::storage_error;
use crate::error::{Result, WeirError, sqlstate};

/// Change files a chain may have before it is compacted.
pub const MAX_CHANGE_FILES: usize = 8;

/// How the rows of a state are matched by its changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateKind {
    /// A table's or a view's rows: a multiset.
    Rows,
    /// An operator's groups: one row per key (the `key_*` columns).
    Groups,
}

/// What a checkpoint hands over for one state.
pub(crate) struct Piece {
    /// The state's name, unique in the instance (`db1-table5`).
    pub name: String,
    pub kind: StateKind,
    /// The state's columns (without the operations column).
    pub schema: SchemaRef,
    pub piece: StatePiece,
}

/// A file of a chain: the checkpoint whose directory holds it, and it.
pub(crate) type Located = (u64, FileEntry);

/// The chains of the last committed checkpoint, by state name.
#[derive(Debug, Default, Clone)]
pub(crate) struct Chains(pub HashMap<String, Vec<Located>>);

fn damaged(e: impl std::fmt::Display) -> WeirError {
    WeirError::new(sqlstate::DATA_CORRUPTED, e.to_string())
}

/// `schema` with the operations column after its columns.
fn changes_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields = schema.fields().to_vec();
    fields.push(Arc::new(Field::new(OPS_COLUMN, DataType::Int8, false)));
    Arc::new(Schema::new(fields))
}

/// How `kind`'s changes match rows, for batches of `schema`.
fn matching(kind: StateKind, schema: &Schema) -> Vec<usize> {
    match kind {
        StateKind::Rows => Vec::new(),
        StateKind::Groups => schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name().starts_with("key_"))
            .map(|(i, _)| i)
            .collect(),
    }
}

/// Puts a state back together: `full` then `changes`, in order.
fn assemble(
    kind: StateKind,
    full: Vec<RecordBatch>,
    changes: &[RecordBatch],
) -> std::result::Result<Vec<RecordBatch>, String> {
    if changes.is_empty() {
        return Ok(full);
    }
    let schema = full
        .first()
        .map(RecordBatch::schema)
        .unwrap_or_else(|| changes[0].schema());
    let keys = matching(kind, &schema);
    let how = match kind {
        StateKind::Rows => Matching::Rows,
        StateKind::Groups => Matching::Key(&keys),
    };
    apply_changes(&full, changes, how)
}

impl Chains {
    /// Writes `piece` into checkpoint `epoch` and returns the state's chain
    /// after it.
    pub(crate) async fn write(
        &self,
        store: &CheckpointStore,
        epoch: u64,
        piece: Piece,
    ) -> Result<Vec<Located>> {
        let full_name = format!("{}.arrow", piece.name);
        let batches = match piece.piece {
            StatePiece::Full(batches) => {
                let entry = store
                    .write_batches(epoch, &full_name, &piece.schema, &batches)
                    .await
                    .map_err(storage_error)?;
                return Ok(vec![(epoch, entry)]);
            }
            StatePiece::Changes(batches) => batches,
        };
        let mut chain = self.0.get(&piece.name).cloned().ok_or_else(|| {
            WeirError::internal(format!(
                "{} handed over changes, but the last checkpoint has no copy of it",
                piece.name
            ))
        })?;
        let changed: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        if changed.is_empty() {
            return Ok(chain);
        }
        let schema = changes_schema(&piece.schema);
        // Re-labelled with the state's column names and nullability.
        let changed = changed
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| WeirError::internal(format!("{}: {e}", piece.name)))?;
        let name = format!("{}.changes-{epoch}.arrow", piece.name);
        let entry = store
            .write_batches(epoch, &name, &schema, &changed)
            .await
            .map_err(storage_error)?;
        chain.push((epoch, entry));
        if chain.len() > MAX_CHANGE_FILES + 1 {
            let rows = read_chain(store, piece.kind, &chain).await?;
            let entry = store
                .write_batches(epoch, &full_name, &piece.schema, &rows)
                .await
                .map_err(storage_error)?;
            chain = vec![(epoch, entry)];
        }
        Ok(chain)
    }
}

/// The state a chain holds, put back together.
pub(crate) async fn read_chain(
    store: &CheckpointStore,
    kind: StateKind,
    chain: &[Located],
) -> Result<Vec<RecordBatch>> {
    let mut files = Vec::with_capacity(chain.len());
    for (epoch, entry) in chain {
        files.push(store.read_file(*epoch, entry).await.map_err(damaged)?);
    }
    let mut files = files.into_iter();
    let full = files.next().unwrap_or_default();
    let changes: Vec<RecordBatch> = files.flatten().collect();
    assemble(kind, full, &changes).map_err(damaged)
}

/// The chain of files `names` (full copy first) of committed `manifest`.
pub(crate) fn chain_of(manifest: &Manifest, names: &[String]) -> Result<Vec<Located>> {
    names
        .iter()
        .map(|name| {
            let entry = manifest.file(name).ok_or_else(|| {
                damaged(format!(
                    "checkpoint {}: the manifest lists no file {name}",
                    manifest.epoch
                ))
            })?;
            let (epoch, _) = manifest.location(entry);
            Ok((epoch, entry.clone()))
        })
        .collect()
}

/// The manifest's entry for a file of a chain, in checkpoint `epoch`.
pub(crate) fn manifest_entry(epoch: u64, (at, entry): &Located) -> FileEntry {
    FileEntry {
        epoch: (*at != epoch).then_some(*at),
        ..entry.clone()
    }
}
