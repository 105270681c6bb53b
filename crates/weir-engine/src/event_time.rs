//! Event time of a table or stream: which column holds it, how the watermark
//! follows the rows (`WATERMARK FOR ts AS ts - INTERVAL '5' SECOND`), and
//! which rows arrive too late.
//!
//! Rows are taken in order. A row whose time is below the watermark when it
//! arrives is late: it is not applied (queries never see it) and is kept in
//! the late-rows system table instead. Each on-time row can advance the
//! watermark to its watermark expression.
//!
//! The expression is evaluated over every admitted batch, so it is planned
//! for speed: a fixed interval added to or subtracted from a timestamp
//! (`ts - INTERVAL '5' SECOND`) becomes a duration, which Arrow subtracts
//! as integers rather than through calendar arithmetic per row.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator};
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
        let expr = intervals_as_durations(expr, &df_schema)?;
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
/// Rewrites `timestamp ± interval literal` into `timestamp ± duration` where
/// the two agree for every row: an interval of no months, whose days are
/// exactly 24 hours (no days, or a timestamp without time zone), and that is
/// a whole number of the timestamp's unit. Arrow shifts a timestamp by an
/// interval through chrono, row by row (about 40 % of the time of admitting
/// a batch of Nexmark bids, by a profile); a duration is an integer
/// subtraction over the column.
fn intervals_as_durations(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    Ok(expr
        .transform_up(|e| {
            if let Expr::BinaryExpr(b) = &e
                && matches!(b.op, Operator::Minus | Operator::Plus)
                && let Expr::Literal(interval, _) = b.right.as_ref()
                && let DataType::Timestamp(unit, tz) = b.left.get_type(schema)?
                && let Some(duration) = fixed_duration(interval, unit, tz.is_none())
            {
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    b.left.clone(),
                    b.op,
                    Box::new(Expr::Literal(duration, None)),
                ))));
            }
            Ok(Transformed::no(e))
        })
        .data()?)
}

/// `interval` as a duration in `unit`, if it is one for every timestamp.
fn fixed_duration(interval: &ScalarValue, unit: TimeUnit, naive: bool) -> Option<ScalarValue> {
    const DAY: i128 = 86_400_000_000_000;
    let nanos: i128 = match interval {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 && (v.days == 0 || naive) => {
            i128::from(v.days) * DAY + i128::from(v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) if v.days == 0 || naive => {
            i128::from(v.days) * DAY + i128::from(v.milliseconds) * 1_000_000
        }
        _ => return None,
    };
    let per_unit: i128 = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    if nanos % per_unit != 0 {
        return None;
    }
    let value = i64::try_from(nanos / per_unit).ok()?;
    Some(match unit {
        TimeUnit::Second => ScalarValue::DurationSecond(Some(value)),
        TimeUnit::Millisecond => ScalarValue::DurationMillisecond(Some(value)),
        TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(value)),
        TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(value)),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};

    /// Timestamps around a daylight-saving change in Berlin (2026-03-29
    /// 01:00 UTC), the epoch, before it, and a null.
    fn times(unit: TimeUnit, tz: Option<&str>) -> RecordBatch {
        let micros = [
            Some(1_774_745_000_000_000_i64),
            Some(1_774_749_600_123_000),
            None,
            Some(0),
            Some(-86_400_000_000 - 5_000_000),
        ];
        let array: ArrayRef = match unit {
            TimeUnit::Second => Arc::new(TimestampSecondArray::from(
                micros.map(|m| m.map(|m| m.div_euclid(1_000_000))).to_vec(),
            )),
            TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(
                micros.map(|m| m.map(|m| m / 1000)).to_vec(),
            )),
            TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::from(micros.to_vec())),
            TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::from(
                micros.map(|m| m.map(|m| m * 1000)).to_vec(),
            )),
        };
        let array = cast(&array, &DataType::Timestamp(unit, tz.map(Into::into))).unwrap();
        let schema = Schema::new(vec![Field::new("ts", array.data_type().clone(), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![array]).unwrap()
    }

    fn has_interval(expr: &Expr) -> bool {
        expr.exists(|e| {
            Ok(matches!(
                e,
                Expr::Literal(
                    ScalarValue::IntervalMonthDayNano(_)
                        | ScalarValue::IntervalDayTime(_)
                        | ScalarValue::IntervalYearMonth(_),
                    _
                )
            ))
        })
        .unwrap()
    }

    /// The rewritten expression gives the same timestamps as the one written,
    /// for every unit and zone, and its intervals are durations exactly where
    /// that holds for every row.
    #[test]
    fn intervals_become_durations_only_where_they_agree() {
        let ctx = SessionContext::new();
        let cases = [
            // (expression, every interval a duration for a naive timestamp,
            // for a zoned one)
            ("ts - INTERVAL '4' SECOND", true, true),
            ("ts + INTERVAL '1' MINUTE", true, true),
            ("ts - INTERVAL '1 day 2 hours'", true, false),
            ("ts - INTERVAL '1' MONTH", false, false),
            (
                "(ts - INTERVAL '2' SECOND) - INTERVAL '250' MILLISECOND",
                true,
                true,
            ),
            ("ts", true, true),
        ];
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            for tz in [None, Some("Europe/Berlin"), Some("+02:00")] {
                let batch = times(unit, tz);
                let schema = DFSchema::try_from(batch.schema().as_ref().clone()).unwrap();
                for (sql, naive, zoned) in cases {
                    let written = ctx.parse_sql_expr(sql, &schema).unwrap();
                    let rewritten = intervals_as_durations(written.clone(), &schema).unwrap();
                    let whole_units = unit != TimeUnit::Second || !sql.contains("MILLISECOND");
                    let expected = whole_units && if tz.is_none() { naive } else { zoned };
                    assert_eq!(
                        !has_interval(&rewritten),
                        expected,
                        "{sql} over {unit:?} {tz:?}: {rewritten}"
                    );
                    let evaluate = |e: Expr| {
                        let expr = ctx.create_physical_expr(e, &schema).unwrap();
                        expr.evaluate(&batch).unwrap().into_array(5).unwrap()
                    };
                    assert_eq!(
                        evaluate(rewritten).as_ref(),
                        evaluate(written).as_ref(),
                        "{sql} over {unit:?} {tz:?}"
                    );
                }
            }
        }
    }

    /// Admitting rows moves the watermark to the largest time less the
    /// delay, and rows below it are late.
    #[test]
    fn admitted_rows_move_the_watermark_by_the_delay() {
        let ctx = SessionContext::new();
        let batch = times(TimeUnit::Microsecond, None);
        let spec = WatermarkSpec {
            column: "ts".into(),
            expr: "ts - INTERVAL '4' SECOND".into(),
        };
        let event_time = EventTime::plan(&spec, &batch.schema(), &ctx).unwrap();
        let admitted = event_time.admit(&batch).unwrap();
        event_time.commit(&admitted);
        // Row 0's mark is reached first; row 1 moves it further; rows 3 and 4
        // are below it by then.
        assert_eq!(
            event_time.current_micros(),
            Some(1_774_749_600_123_000 - 4_000_000)
        );
        assert_eq!(admitted.on_time.num_rows(), 3);
        let (late, marks) = admitted.late.expect("late rows");
        assert_eq!(late.num_rows(), 2);
        assert_eq!(marks, vec![1_774_749_600_123_000 - 4_000_000; 2]);
    }
}
