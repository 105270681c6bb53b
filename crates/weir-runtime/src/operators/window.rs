//! Window assignment: adds `window_start` and `window_end` to each row, for
//! tumbling windows (one window per row) and hopping windows (several). For
//! session windows it adds the row's own window, `[ts, ts + gap)`, which the
//! [session aggregation](super::session) merges into sessions.
//!
//! The same kernel ([`WindowSpec::assign`]) runs in streaming jobs and in
//! batch queries (`SELECT ... FROM tumble(t, ts, ...)` over a table), so both
//! put a row in the same windows. Times are computed in the time column's own
//! unit; windows are aligned to the Unix epoch plus the offset.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow::error::ArrowError;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;

use crate::message::{Chunk, Message, Watermark};
use crate::operator::{Operator, Result};

/// The kind of window, with durations in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Consecutive windows of `size`.
    Tumble { size: i64 },
    /// Windows of `size` starting every `slide`.
    Hop { slide: i64, size: i64 },
    /// Sessions: rows less than `gap` apart (or exactly `gap`) share one.
    Session { gap: i64 },
}

/// Which windows rows of a relation fall in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// Shift of the window boundaries from the epoch, in microseconds.
    pub offset: i64,
    /// Index of the time column.
    pub time_column: usize,
}

impl WindowSpec {
    /// The schema of assigned rows: the input's columns, then
    /// `window_start` and `window_end` of the time column's type.
    pub fn output_schema(&self, input: &Schema) -> Result<SchemaRef> {
        let time = input
            .fields()
            .get(self.time_column)
            .ok_or_else(|| DataFusionError::Internal("window time column out of range".into()))?;
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("window_start", time.data_type().clone(), true));
        fields.push(Field::new("window_end", time.data_type().clone(), true));
        Ok(Arc::new(Schema::new(fields)))
    }

    fn size(&self) -> i64 {
        match self.kind {
            WindowKind::Tumble { size } | WindowKind::Hop { size, .. } => size,
            WindowKind::Session { gap } => gap,
        }
    }

    fn slide(&self) -> i64 {
        match self.kind {
            WindowKind::Tumble { size } => size,
            WindowKind::Hop { slide, .. } => slide,
            WindowKind::Session { gap } => gap,
        }
    }

    /// The windows of each row: rows repeated once per window, with the
    /// window bounds appended. Rows without a time are dropped. The second
    /// value gives the input row of each output row, or is `None` when they
    /// are the input rows themselves, in order (each row in one window, as
    /// in a tumbling window): the columns are then passed on, not copied.
    pub fn assign(
        &self,
        batch: &RecordBatch,
        output_schema: &SchemaRef,
    ) -> Result<(RecordBatch, Option<UInt32Array>)> {
        let time = batch.column(self.time_column);
        let unit = time_unit(time.data_type())?;
        let per_unit = micros_per_unit(unit);
        let (size, slide, offset) = (
            to_unit(self.size(), per_unit),
            to_unit(self.slide(), per_unit),
            to_unit(self.offset, per_unit),
        );
        if slide <= 0 || size <= 0 {
            return Err(DataFusionError::Execution(format!(
                "window sizes must be whole multiples of the time column's unit ({unit:?})"
            )));
        }
        let values = timestamps(time)?;
        let mut rows: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut starts: Vec<i64> = Vec::with_capacity(batch.num_rows());
        let session = matches!(self.kind, WindowKind::Session { .. });
        for (row, ts) in values.iter().enumerate() {
            let Some(ts) = ts else { continue };
            if session {
                rows.push(row as u32);
                starts.push(*ts);
                continue;
            }
            // The latest window start at or before the row, then earlier ones
            // while the window still contains the row.
            let mut start = ts.saturating_sub(ts.saturating_sub(offset).rem_euclid(slide));
            while start > ts.saturating_sub(size) {
                rows.push(row as u32);
                starts.push(start);
                start = start.saturating_sub(slide);
                if start == i64::MIN {
                    break;
                }
            }
        }
        let identity = rows.len() == batch.num_rows()
            && rows.iter().enumerate().all(|(i, &row)| row as usize == i);
        let (mut columns, indices): (Vec<ArrayRef>, _) = if identity {
            (batch.columns().to_vec(), None)
        } else {
            let indices = UInt32Array::from(rows);
            let columns = batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<_, ArrowError>>()?;
            (columns, Some(indices))
        };
        let window_start = PrimitiveArray::<Int64Type>::from(starts.clone());
        let window_end = PrimitiveArray::<Int64Type>::from(
            starts
                .iter()
                .map(|s| s.saturating_add(size))
                .collect::<Vec<_>>(),
        );
        let time_type = time.data_type();
        columns.push(arrow::compute::cast(&window_start, time_type)?);
        columns.push(arrow::compute::cast(&window_end, time_type)?);
        Ok((
            RecordBatch::try_new(output_schema.clone(), columns)?,
            indices,
        ))
    }

    /// The smallest window start any row at or after `time` (in the time
    /// column's unit) can fall in.
    fn first_open_start(&self, time: i64, per_unit: i64) -> i64 {
        if let WindowKind::Session { .. } = self.kind {
            return time;
        }
        let (size, slide, offset) = (
            to_unit(self.size(), per_unit),
            to_unit(self.slide(), per_unit),
            to_unit(self.offset, per_unit),
        );
        if slide <= 0 {
            return time;
        }
        let earliest = time.saturating_sub(size);
        earliest
            .saturating_sub(earliest.saturating_sub(offset).rem_euclid(slide))
            .saturating_add(slide)
    }
}

/// Streaming window assignment. It passes on only the input columns the
/// query reads (`keep`), so rows repeated for several windows copy no
/// column nobody reads.
pub struct AssignWindows {
    /// The windows, over the kept columns.
    spec: WindowSpec,
    /// The input columns passed on, in order.
    keep: Vec<usize>,
    /// The input's time column.
    input_time_column: usize,
    output_schema: SchemaRef,
}

impl AssignWindows {
    /// Windows of `spec` (over the input's columns), keeping the input
    /// columns `keep` (which must hold the time column): the output is
    /// those columns, then `window_start` and `window_end`.
    pub fn new(spec: WindowSpec, keep: Vec<usize>, input: &Schema) -> Result<Self> {
        let time = keep
            .iter()
            .position(|&c| c == spec.time_column)
            .ok_or_else(|| DataFusionError::Internal("window time column not kept".into()))?;
        let kept = input.project(&keep)?;
        let input_time_column = spec.time_column;
        let spec = WindowSpec {
            time_column: time,
            ..spec
        };
        let output_schema = spec.output_schema(&kept)?;
        Ok(AssignWindows {
            spec,
            keep,
            input_time_column,
            output_schema,
        })
    }

    /// The schema of the assigned rows.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }
}

impl Operator for AssignWindows {
    fn name(&self) -> &'static str {
        "AssignWindows"
    }

    fn describe(&self) -> String {
        let column = self
            .output_schema
            .field(self.spec.time_column)
            .name()
            .clone();
        match self.spec.kind {
            WindowKind::Tumble { size } => format!("tumble({column}, {})", duration(size)),
            WindowKind::Hop { slide, size } => {
                format!(
                    "hop({column}, slide {}, size {})",
                    duration(slide),
                    duration(size)
                )
            }
            WindowKind::Session { gap } => format!("session({column}, gap {})", duration(gap)),
        }
    }

    fn process_chunk(&mut self, _input: usize, chunk: Chunk, out: &mut Vec<Message>) -> Result<()> {
        let kept = chunk.batch.project(&self.keep)?;
        let (batch, rows) = self.spec.assign(&kept, &self.output_schema)?;
        let ops = match (chunk.ops, rows) {
            (Some(ops), Some(rows)) => Some(take(&ops, &rows, None)?.as_primitive().clone()),
            (ops, None) => ops,
            (None, Some(_)) => None,
        };
        if batch.num_rows() > 0 {
            out.push(Message::Chunk(Chunk { batch, ops }));
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        let is_time = watermark.column == self.input_time_column;
        if let Some(column) = self.keep.iter().position(|&c| c == watermark.column) {
            out.push(Message::Watermark(Watermark {
                column,
                value: watermark.value.clone(),
            }));
        }
        if !is_time {
            return Ok(());
        }
        let Some((time, unit)) = timestamp_value(&watermark.value) else {
            return Ok(());
        };
        let per_unit = micros_per_unit(unit);
        let start = self.spec.first_open_start(time, per_unit);
        let end = start + to_unit(self.spec.size(), per_unit);
        let input_columns = self.output_schema.fields().len() - 2;
        for (column, value) in [(input_columns, start), (input_columns + 1, end)] {
            out.push(Message::Watermark(Watermark {
                column,
                value: timestamp_scalar(value, unit, &watermark.value),
            }));
        }
        Ok(())
    }
}

pub(crate) fn time_unit(data_type: &DataType) -> Result<TimeUnit> {
    match data_type {
        DataType::Timestamp(unit, _) => Ok(*unit),
        other => Err(DataFusionError::Plan(format!(
            "window time column must be a timestamp, not {other}"
        ))),
    }
}

pub(crate) fn micros_per_unit(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => -1_000_000,
        TimeUnit::Millisecond => -1000,
        TimeUnit::Microsecond => 1,
        TimeUnit::Nanosecond => 1000,
    }
}

/// Converts microseconds to the unit (`per_unit` < 0: coarser units).
pub(crate) fn to_unit(micros: i64, per_unit: i64) -> i64 {
    if per_unit > 0 {
        micros.saturating_mul(per_unit)
    } else {
        micros / -per_unit
    }
}

/// The raw values of a timestamp column.
pub(crate) fn timestamps(array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    Ok(match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            array.as_primitive::<TimestampSecondType>().iter().collect()
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .collect(),
        other => {
            return Err(DataFusionError::Plan(format!(
                "window time column must be a timestamp, not {other}"
            )));
        }
    })
}

pub(crate) fn timestamp_value(value: &ScalarValue) -> Option<(i64, TimeUnit)> {
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => Some((*v, TimeUnit::Second)),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some((*v, TimeUnit::Millisecond)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some((*v, TimeUnit::Microsecond)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some((*v, TimeUnit::Nanosecond)),
        _ => None,
    }
}

pub(crate) fn timestamp_scalar(value: i64, unit: TimeUnit, like: &ScalarValue) -> ScalarValue {
    let tz = match like {
        ScalarValue::TimestampSecond(_, tz)
        | ScalarValue::TimestampMillisecond(_, tz)
        | ScalarValue::TimestampMicrosecond(_, tz)
        | ScalarValue::TimestampNanosecond(_, tz) => tz.clone(),
        _ => None,
    };
    match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(Some(value), tz),
        TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(value), tz),
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(value), tz),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(value), tz),
    }
}

/// A duration in microseconds, as Postgres prints an interval of that length
/// (`00:00:10`, `1 day`, `00:00:00.5`).
pub(crate) fn duration(micros: i64) -> String {
    const DAY: i64 = 86_400_000_000;
    let days = micros / DAY;
    let rest = micros % DAY;
    let mut text = String::new();
    if days != 0 {
        text.push_str(&format!("{days} day{}", if days == 1 { "" } else { "s" }));
    }
    if rest != 0 || days == 0 {
        if !text.is_empty() {
            text.push(' ');
        }
        let seconds = rest / 1_000_000;
        text.push_str(&format!(
            "{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        ));
        let fraction = rest % 1_000_000;
        if fraction != 0 {
            let digits = format!("{fraction:06}");
            text.push('.');
            text.push_str(digits.trim_end_matches('0'));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, TimestampMicrosecondArray};

    const SECOND: i64 = 1_000_000;

    fn batch(times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int32, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from_iter_values(0..times.len() as i32)),
                Arc::new(TimestampMicrosecondArray::from(times.to_vec())),
            ],
        )
        .expect("batch")
    }

    fn starts(spec: &WindowSpec, times: &[i64]) -> Vec<(i32, i64)> {
        let input = batch(times);
        let schema = spec.output_schema(&input.schema()).expect("schema");
        let (out, _) = spec.assign(&input, &schema).expect("assign");
        let v = out.column(0).as_primitive::<arrow::datatypes::Int32Type>();
        let s = out.column(2).as_primitive::<TimestampMicrosecondType>();
        let e = out.column(3).as_primitive::<TimestampMicrosecondType>();
        (0..out.num_rows())
            .map(|i| {
                assert_eq!(e.value(i) - s.value(i), spec.size());
                (v.value(i), s.value(i))
            })
            .collect()
    }

    #[test]
    fn tumbling_windows() {
        let spec = WindowSpec {
            kind: WindowKind::Tumble { size: 10 * SECOND },
            offset: 0,
            time_column: 1,
        };
        assert_eq!(
            starts(&spec, &[0, 9 * SECOND, 10 * SECOND, -1]),
            [(0, 0), (1, 0), (2, 10 * SECOND), (3, -10 * SECOND)]
        );
        let shifted = WindowSpec {
            offset: 3 * SECOND,
            ..spec.clone()
        };
        assert_eq!(starts(&shifted, &[2 * SECOND]), [(0, -7 * SECOND)]);
    }

    #[test]
    fn hopping_windows() {
        let spec = WindowSpec {
            kind: WindowKind::Hop {
                slide: 2 * SECOND,
                size: 10 * SECOND,
            },
            offset: 0,
            time_column: 1,
        };
        let windows = starts(&spec, &[11 * SECOND]);
        assert_eq!(
            windows.iter().map(|(_, s)| s / SECOND).collect::<Vec<_>>(),
            [10, 8, 6, 4, 2],
            "every window of size 10 containing 11"
        );
        // The first window still open at time 11: [2, 12).
        assert_eq!(spec.first_open_start(11 * SECOND, 1), 2 * SECOND);
        let tumble = WindowSpec {
            kind: WindowKind::Tumble { size: 10 * SECOND },
            ..spec
        };
        assert_eq!(tumble.first_open_start(11 * SECOND, 1), 10 * SECOND);
    }
    /// The operator passes on only the kept columns: a hopping window
    /// repeats each row (and its change) once per window, a tumbling window
    /// passes the kept columns and changes on as they are; watermarks are
    /// renumbered to the kept columns, and those of dropped columns go.
    #[test]
    fn assignment_keeps_only_the_columns_read() {
        use arrow::array::Int8Array;
        let input = batch(&[11 * SECOND, 3 * SECOND]);
        let schema = input.schema();
        let mut hop = AssignWindows::new(
            WindowSpec {
                kind: WindowKind::Hop {
                    slide: 5 * SECOND,
                    size: 10 * SECOND,
                },
                offset: 0,
                time_column: 1,
            },
            vec![1],
            &schema,
        )
        .expect("operator");
        let names: Vec<_> = hop
            .output_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["ts", "window_start", "window_end"]);
        let mut out = Vec::new();
        let chunk = Chunk::new(input.clone(), Int8Array::from(vec![1, -1]));
        hop.process_chunk(0, chunk, &mut out).expect("assign");
        let Some(Message::Chunk(assigned)) = out.pop() else {
            panic!("no chunk");
        };
        assert_eq!(assigned.batch.num_columns(), 3);
        let starts = assigned
            .batch
            .column(1)
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            starts
                .values()
                .iter()
                .map(|s| s / SECOND)
                .collect::<Vec<_>>(),
            [10, 5, 0, -5]
        );
        assert_eq!(
            assigned.ops.expect("changes").values().to_vec(),
            [1, 1, -1, -1]
        );

        let mut tumble = AssignWindows::new(
            WindowSpec {
                kind: WindowKind::Tumble { size: 10 * SECOND },
                offset: 0,
                time_column: 1,
            },
            vec![1],
            &schema,
        )
        .expect("operator");
        let chunk = Chunk::new(input, Int8Array::from(vec![1, -1]));
        tumble.process_chunk(0, chunk, &mut out).expect("assign");
        let Some(Message::Chunk(assigned)) = out.pop() else {
            panic!("no chunk");
        };
        assert_eq!(assigned.batch.num_columns(), 3);
        assert_eq!(assigned.ops.expect("changes").values().to_vec(), [1, -1]);
        let starts = assigned
            .batch
            .column(1)
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(starts.values().to_vec(), [10 * SECOND, 0]);

        for column in [0, 1] {
            tumble
                .process_watermark(
                    Watermark {
                        column,
                        value: ScalarValue::TimestampMicrosecond(Some(25 * SECOND), None),
                    },
                    &mut out,
                )
                .expect("watermark");
        }
        let marks: Vec<_> = out
            .drain(..)
            .map(|m| match m {
                Message::Watermark(w) => (w.column, w.value),
                _ => panic!("not a watermark"),
            })
            .collect();
        // Column 0 is not kept: its watermark goes. The time column is
        // column 0 of the output, and the open window [20, 30) bounds the
        // window columns.
        assert_eq!(
            marks,
            [
                (
                    0,
                    ScalarValue::TimestampMicrosecond(Some(25 * SECOND), None)
                ),
                (
                    1,
                    ScalarValue::TimestampMicrosecond(Some(20 * SECOND), None)
                ),
                (
                    2,
                    ScalarValue::TimestampMicrosecond(Some(30 * SECOND), None)
                ),
            ]
        );
    }
}
