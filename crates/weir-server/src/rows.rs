//! Result rows on the wire: their description (`RowDescription`), and the
//! stream of `DataRow`s encoded from Arrow batches as they are produced.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use futures::stream::BoxStream;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use weir_engine::{WeirError, sqlstate};

use weir_engine::text_format::OutputFormat;

use crate::encode::{encode_batch, pg_field_type};

/// Whether each column of `schema` is sent in binary, for a result format.
pub fn binary_columns(schema: &SchemaRef, format: &Format) -> Vec<bool> {
    (0..schema.fields().len())
        .map(|i| match format {
            Format::UnifiedText => false,
            Format::UnifiedBinary => true,
            // A malformed Bind may give fewer codes than columns: text then.
            Format::Individual(codes) => codes.get(i).is_some_and(|c| *c == 1),
        })
        .collect()
}

/// The `FieldInfo`s pgwire sends when a statement or portal is described.
pub fn field_infos(schema: &SchemaRef, binary: &[bool]) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let ty = pg_field_type(field);
            let format = if binary.get(i).copied().unwrap_or(false) {
                FieldFormat::Binary
            } else {
                FieldFormat::Text
            };
            FieldInfo::new(
                field.name().clone(),
                None,
                None,
                Type::from_oid(ty.oid).unwrap_or(Type::TEXT),
                format,
            )
            .with_type_size(ty.len)
            .with_type_modifier(ty.typmod)
        })
        .collect()
}

/// `RowDescription` for a result sent in text format (simple protocol).
pub fn row_description(schema: &SchemaRef) -> RowDescription {
    let fields = schema
        .fields()
        .iter()
        .map(|field| {
            let ty = pg_field_type(field);
            FieldDescription::new(field.name().clone(), 0, 0, ty.oid, ty.len, ty.typmod, 0)
        })
        .collect();
    RowDescription::new(fields)
}

/// Encoded rows, pulled from a stream of Arrow batches.
pub struct RowStream {
    batches: SendableRecordBatchStream,
    binary: Arc<[bool]>,
    format: OutputFormat,
    pending: VecDeque<DataRow>,
    done: bool,
}

impl RowStream {
    pub fn new(
        batches: SendableRecordBatchStream,
        binary: Vec<bool>,
        format: OutputFormat,
    ) -> Self {
        RowStream {
            batches,
            binary: binary.into(),
            format,
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// The next row, waiting for the query to produce it; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<DataRow>, WeirError> {
        loop {
            if let Some(row) = self.pending.pop_front() {
                return Ok(Some(row));
            }
            if self.done {
                return Ok(None);
            }
            match self.batches.next().await {
                Some(Ok(batch)) => {
                    let rows = encode_batch(&batch, &self.binary, &self.format).map_err(|e| {
                        WeirError::new(sqlstate::FEATURE_NOT_SUPPORTED, e.to_string())
                    })?;
                    self.pending.extend(rows);
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Err(WeirError::from(e));
                }
                None => self.done = true,
            }
        }
    }

    /// Whether a row is ready without waiting for the query.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The rows as a stream, for a portal suspended by a row limit.
    pub fn into_stream(self) -> BoxStream<'static, pgwire::error::PgWireResult<DataRow>> {
        futures::stream::unfold(self, |mut rows| async move {
            match rows.next().await {
                Ok(Some(row)) => Some((Ok(row), rows)),
                Ok(None) => None,
                Err(e) => Some((Err(crate::errors::user_error(e)), rows)),
            }
        })
        .boxed()
    }
}
