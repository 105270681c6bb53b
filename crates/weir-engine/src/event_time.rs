//! Event time of a table or stream: which column holds it, how the watermark
//! follows the rows (`WATERMARK FOR ts AS ts - INTERVAL '5' SECOND`), and
//! which rows arrive too late.
//!
//! Rows are taken in order. A row whose time is below the watermark when it
//! arrives is late: it is not applied (queries never see it) and is kept in
//! the late-rows system table instead. Each on-time row can advance the
//! watermark to its watermark expression.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use weir_runtime::Watermark;

use crate::catalog::WatermarkSpec;
use crate::error::{Result, WeirError, sqlstate};

/// The event time of a relation.
#[derive(Debug)]
pub struct EventTime {
    /// Index of the time column.
    pub column: usize,
    column_type: DataType,
    expr: Arc<dyn PhysicalExpr>,
    /// The watermark, in microseconds since the epoch.
    watermark: Mutex<Option<i64>>,
}

/// Rows split by [`EventTime::admit`].
pub struct Admitted {
    pub on_time: RecordBatch,
    /// Late rows, with the watermark each found when it arrived.
    pub late: Option<(RecordBatch, Vec<i64>)>,
    /// The new watermark, if the rows advance it (once committed).
    pub watermark: Option<Watermark>,
    /// The same, in microseconds.
    advanced_to: Option<i64>,
}

impl EventTime {
    /// Plans `WATERMARK FOR column AS expr` over a relation's columns.
    pub fn plan(spec: &WatermarkSpec, schema: &SchemaRef, ctx: &SessionContext) -> Result<Self> {
        let column = schema.index_of(&spec.column).map_err(|_| {
            WeirError::new(
                sqlstate::UNDEFINED_COLUMN,
                format!(
                    "column \"{}\" named in WATERMARK FOR does not exist",
                    spec.column
                ),
            )
        })?;
        let column_type = schema.field(column).data_type().clone();
        if !matches!(column_type, DataType::Timestamp(..)) {
            return Err(WeirError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "the event time column \"{}\" must be a timestamp or timestamptz",
                    spec.column
                ),
            ));
        }
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let expr = ctx.parse_sql_expr(&spec.expr, &df_schema)?;
        if !matches!(expr.get_type(&df_schema)?, DataType::Timestamp(..)) {
            return Err(WeirError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!("the watermark expression {} must be a timestamp", spec.expr),
            ));
        }
        let expr = ctx.create_physical_expr(expr, &df_schema)?;
        Ok(EventTime {
            column,
            column_type,
            expr,
            watermark: Mutex::new(None),
        })
    }

    /// The current watermark, as a message.
    pub fn current(&self) -> Option<Watermark> {
        let micros = (*self.lock())?;
        self.message(micros).ok()
    }

    /// The current watermark, in microseconds.
    pub fn current_micros(&self) -> Option<i64> {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.watermark.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn message(&self, micros: i64) -> Result<Watermark> {
        let tz = match &self.column_type {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let value =
            ScalarValue::TimestampMicrosecond(Some(micros), tz).cast_to(&self.column_type)?;
        Ok(Watermark {
            column: self.column,
            value,
        })
    }

    /// Moves the watermark to at least `micros` (an idle source following
    /// processing time). Returns the new watermark if it moved.
    pub fn advance_to(&self, micros: i64) -> Result<Option<Watermark>> {
        let mut watermark = self.lock();
        if watermark.is_some_and(|w| w >= micros) {
            return Ok(None);
        }
        *watermark = Some(micros);
        drop(watermark);
        self.message(micros).map(Some)
    }

    /// Splits rows into on-time and late ones, and works out the watermark
    /// they advance to; [`EventTime::commit`] moves it once the rows are
    /// applied. The caller serializes admissions (a writer or ingest lock).
    pub fn admit(&self, batch: &RecordBatch) -> Result<Admitted> {
        let n = batch.num_rows();
        let times = micros(batch.column(self.column))?;
        let marks = micros(&self.expr.evaluate(batch)?.into_array(n)?)?;
        let before = *self.lock();
        let mut current = before;
        let watermark = &mut current;
        let mut keep = Vec::with_capacity(n);
        let mut late_marks = Vec::new();
        for i in 0..n {
            let time = times.is_valid(i).then(|| times.value(i));
            match (time, *watermark) {
                (Some(t), Some(w)) if t < w => {
                    keep.push(false);
                    late_marks.push(w);
                }
                _ => {
                    keep.push(true);
                    if marks.is_valid(i) {
                        let mark = marks.value(i);
                        if watermark.is_none_or(|w| mark > w) {
                            *watermark = Some(mark);
                        }
                    }
                }
            }
        }
        let after = *watermark;
        let advanced = match (before, after) {
            (_, None) => None,
            (None, Some(w)) => Some(w),
            (Some(b), Some(w)) if w > b => Some(w),
            _ => None,
        };
        let (on_time, late) = if late_marks.is_empty() {
            (batch.clone(), None)
        } else {
            let mask = BooleanArray::from(keep);
            let late_mask = datafusion::arrow::compute::not(&mask)?;
            (
                filter_record_batch(batch, &mask)?,
                Some((filter_record_batch(batch, &late_mask)?, late_marks)),
            )
        };
        Ok(Admitted {
            on_time,
            late,
            watermark: advanced.map(|w| self.message(w)).transpose()?,
            advanced_to: advanced,
        })
    }

    /// Moves the watermark to where admitted rows, now applied, took it.
    pub fn commit(&self, admitted: &Admitted) {
        if let Some(to) = admitted.advanced_to {
            let mut watermark = self.lock();
            if watermark.is_none_or(|w| to > w) {
                *watermark = Some(to);
            }
        }
    }
}

/// A timestamp array as microseconds since the epoch (the same instants).
fn micros(
    array: &ArrayRef,
) -> Result<datafusion::arrow::array::PrimitiveArray<TimestampMicrosecondType>> {
    let tz = match array.data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        other => {
            return Err(WeirError::internal(format!(
                "event time is not a timestamp: {other}"
            )));
        }
    };
    let converted = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, tz))?;
    Ok(converted.as_primitive::<TimestampMicrosecondType>().clone())
}
