//! Session windows: rows of a partition whose times are at most `gap` apart
//! share a session, `[first row, last row + gap)`.
//!
//! Two kernels compute the same sessions. [`sessions`] assigns them to the
//! rows of a whole relation at once (a one-off query over a table).
//! [`SessionAggregate`] keeps them up to date over an append-only changelog:
//! each row arrives with its own window `[ts, ts + gap)` (from
//! [`AssignWindows`](super::AssignWindows)); overlapping or touching windows
//! of a partition merge, their accumulators merged too, and every session
//! whose result changed is emitted as a change (the deletion of its previous
//! row, the insertion of the new one). A session is final once the
//! watermark passes its end: its state is freed, and with `EMIT ON WINDOW
//! CLOSE` it is emitted only then.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, PrimitiveArray, RecordBatch, UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::common::hash_utils::RandomState;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use super::aggregate::{
    AggregateCall, Changes, call_inputs, call_rows, describe_aggregation, global_key,
};
use super::window::{duration, micros_per_unit, time_unit, timestamp_value, timestamps, to_unit};
use crate::checkpoint::{AccumulatorStates, GroupRows, StatePiece, merge_states, state_error};
use crate::message::{Chunk, Message, Op, Watermark};
use crate::operator::{Operator, Result};

/// The gap in the time column's unit.
fn gap_in(gap_micros: i64, unit: TimeUnit) -> Result<i64> {
    let gap = to_unit(gap_micros, micros_per_unit(unit));
    if gap <= 0 {
        return Err(DataFusionError::Execution(format!(
            "the session gap must be a whole multiple of the time column's unit ({unit:?})"
        )));
    }
    Ok(gap)
}

/// Rows sorted by time, split where the next row is more than `gap` after
/// the last: `(start, end, rows)` per session.
fn runs(mut times: Vec<(i64, u32)>, gap: i64) -> Vec<(i64, i64, Vec<u32>)> {
    times.sort_unstable();
    let mut runs: Vec<(i64, i64, Vec<u32>)> = Vec::new();
    for (ts, row) in times {
        match runs.last_mut() {
            Some((_, end, rows)) if ts <= *end => {
                *end = (*end).max(ts.saturating_add(gap));
                rows.push(row);
            }
            _ => runs.push((ts, ts.saturating_add(gap), vec![row])),
        }
    }
    runs
}

/// The rows of each partition: the first row's index and `(time, row)` pairs.
type PartitionRows = Vec<(usize, Vec<(i64, u32)>)>;

fn partition_rows(
    converter: Option<&RowConverter>,
    keys: &[ArrayRef],
    times: &[Option<i64>],
) -> Result<PartitionRows> {
    let rows = match converter {
        Some(converter) => Some(converter.convert_columns(keys)?),
        None => None,
    };
    let mut slots: HashMap<arrow::row::Row<'_>, usize, RandomState> = HashMap::default();
    let mut partitions: PartitionRows = Vec::new();
    for (i, ts) in times.iter().enumerate() {
        let Some(ts) = *ts else { continue };
        let slot = match &rows {
            Some(rows) => *slots.entry(rows.row(i)).or_insert_with(|| {
                partitions.push((i, Vec::new()));
                partitions.len() - 1
            }),
            None => {
                if partitions.is_empty() {
                    partitions.push((i, Vec::new()));
                }
                0
            }
        };
        partitions[slot].1.push((ts, i as u32));
    }
    Ok(partitions)
}

/// Assigns the sessions of `batch` (every row of a relation): rows with the
/// same values in the `partition` columns whose times are at most `gap`
/// (microseconds) apart share a session. Returns the rows, ordered by
/// partition and time, with `window_start` and `window_end` appended; rows
/// without a time are dropped.
pub fn sessions(
    batch: &RecordBatch,
    time_column: usize,
    partition: &[usize],
    gap_micros: i64,
    output_schema: &SchemaRef,
) -> Result<RecordBatch> {
    let time = batch.column(time_column);
    let gap = gap_in(gap_micros, time_unit(time.data_type())?)?;
    let keys: Vec<ArrayRef> = partition.iter().map(|&c| batch.column(c).clone()).collect();
    let converter = if keys.is_empty() {
        None
    } else {
        Some(RowConverter::new(
            keys.iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect(),
        )?)
    };
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut starts = Vec::with_capacity(batch.num_rows());
    let mut ends = Vec::with_capacity(batch.num_rows());
    for (_, times) in partition_rows(converter.as_ref(), &keys, &timestamps(time)?)? {
        for (start, end, members) in runs(times, gap) {
            for row in members {
                rows.push(row);
                starts.push(start);
                ends.push(end);
            }
        }
    }
    let indices = UInt32Array::from(rows);
    let mut columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<_, _>>()?;
    for bounds in [starts, ends] {
        let values = PrimitiveArray::<Int64Type>::from(bounds);
        columns.push(arrow::compute::cast(&values, time.data_type())?);
    }
    Ok(RecordBatch::try_new(output_schema.clone(), columns)?)
}

/// Which bound of the session a group key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionBound {
    Start,
    End,
}

/// One session of a partition.
struct Session {
    end: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// The output row last emitted.
    emitted: Option<Vec<ScalarValue>>,
    bytes: usize,
}

/// The open sessions of one partition, by start.
struct Partition {
    key: Vec<ScalarValue>,
    sessions: BTreeMap<i64, Session>,
}

/// Aggregation over session windows.
pub struct SessionAggregate {
    /// The group keys: the partition columns and the window bounds.
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Which group keys are window bounds (the others are the partition).
    bounds: Vec<Option<SessionBound>>,
    /// The input column with each row's own window bound, and which bound.
    time_column: usize,
    time_bound: SessionBound,
    gap_micros: i64,
    calls: Vec<AggregateCall>,
    output_schema: SchemaRef,
    converter: Option<RowConverter>,
    partitions: HashMap<OwnedRow, Partition, RandomState>,
    global_key: OwnedRow,
    emit_on_close: bool,
    state_bytes: usize,
    sessions: usize,
}

impl SessionAggregate {
    /// `bounds[i]` says whether group key `i` is a window bound; the time is
    /// read from `time_column` of the input, the row's own window `bound`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        bounds: Vec<Option<SessionBound>>,
        (time_column, time_bound): (usize, SessionBound),
        gap_micros: i64,
        calls: Vec<AggregateCall>,
        output_schema: SchemaRef,
        emit_on_close: bool,
    ) -> Result<Self> {
        let partition_types: Vec<SortField> = partition_types(&bounds, &output_schema)
            .into_iter()
            .map(SortField::new)
            .collect();
        let converter = if partition_types.is_empty() {
            None
        } else {
            Some(RowConverter::new(partition_types)?)
        };
        let aggregate = SessionAggregate {
            group_exprs,
            bounds,
            time_column,
            time_bound,
            gap_micros,
            calls,
            output_schema,
            converter,
            partitions: HashMap::default(),
            global_key: global_key()?,
            emit_on_close,
            state_bytes: 0,
            sessions: 0,
        };
        aggregate.accumulators()?;
        Ok(aggregate)
    }

    fn accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.calls
            .iter()
            .map(|call| call.function.create_accumulator())
            .collect()
    }

    /// The types of the partition keys (the group keys that are not window
    /// bounds).
    fn partition_types(&self) -> Vec<DataType> {
        partition_types(&self.bounds, &self.output_schema)
    }

    /// The output type of the window bounds (the time column's).
    fn time_type(&self) -> Option<&DataType> {
        self.bounds
            .iter()
            .position(Option::is_some)
            .map(|i| self.output_schema.field(i).data_type())
    }

    /// The output row of a session: the group keys, then the aggregates.
    fn row(
        &self,
        partition: &[ScalarValue],
        start: i64,
        session: &mut Session,
    ) -> Result<Vec<ScalarValue>> {
        let data_type = self
            .time_type()
            .ok_or_else(|| DataFusionError::Internal("session without a window key".into()))?;
        let mut partition = partition.iter();
        let mut row = Vec::with_capacity(self.output_schema.fields().len());
        for bound in &self.bounds {
            row.push(match bound {
                Some(SessionBound::Start) => timestamp(start, data_type)?,
                Some(SessionBound::End) => timestamp(session.end, data_type)?,
                None => partition.next().cloned().unwrap_or(ScalarValue::Null),
            });
        }
        for accumulator in &mut session.accumulators {
            row.push(accumulator.evaluate()?);
        }
        Ok(row)
    }

    /// Merges the rows `members` (spanning `[start, end)`) of partition `key`
    /// into its sessions; returns the start of the session they are in now.
    #[allow(clippy::too_many_arguments)]
    fn merge(
        &mut self,
        key: &OwnedRow,
        (start, end, members): (i64, i64, Vec<u32>),
        args: &[Vec<ArrayRef>],
        filters: &[Option<arrow::array::BooleanArray>],
        changes: &mut Changes,
    ) -> Result<i64> {
        let fresh = self.accumulators()?;
        let partition = self
            .partitions
            .get_mut(key)
            .ok_or_else(|| DataFusionError::Internal("partition vanished".into()))?;
        // Sessions overlapping or touching [start, end]: they are disjoint
        // and ordered, so they are the last ones starting at or before `end`.
        let overlapping: Vec<i64> = partition
            .sessions
            .range(..=end)
            .rev()
            .take_while(|(_, s)| s.end >= start)
            .map(|(s, _)| *s)
            .collect();
        let mut merged = Session {
            end,
            accumulators: fresh,
            emitted: None,
            bytes: 0,
        };
        let mut merged_start = start;
        let mut first = true;
        for at in overlapping {
            let Some(mut other) = partition.sessions.remove(&at) else {
                continue;
            };
            self.sessions -= 1;
            self.state_bytes = self.state_bytes.saturating_sub(other.bytes);
            merged_start = merged_start.min(at);
            merged.end = merged.end.max(other.end);
            if first {
                // The first keeps its accumulators and its emitted row.
                std::mem::swap(&mut merged.accumulators, &mut other.accumulators);
                merged.emitted = other.emitted.take();
                first = false;
                // `other` now holds the fresh accumulators: merge nothing.
                continue;
            }
            if let Some(old) = other.emitted.take() {
                changes.push(Op::Delete, &[], old);
            }
            for (into, from) in merged.accumulators.iter_mut().zip(&mut other.accumulators) {
                let state = from
                    .state()?
                    .iter()
                    .map(|s| s.to_array())
                    .collect::<Result<Vec<_>>>()?;
                into.merge_batch(&state)?;
            }
        }
        for (j, accumulator) in merged.accumulators.iter_mut().enumerate() {
            if let Some(values) = call_rows(&args[j], filters[j].as_ref(), &members)? {
                accumulator.update_batch(&values)?;
            }
        }
        merged.bytes = merged.accumulators.iter().map(|a| a.size()).sum::<usize>();
        self.state_bytes += merged.bytes;
        self.sessions += 1;
        partition.sessions.insert(merged_start, merged);
        Ok(merged_start)
    }

    /// Removes the sessions ending before `horizon`, which can no longer
    /// grow (emitting them with `EMIT ON WINDOW CLOSE`); returns the
    /// earliest start of a session still open (`horizon` if none is).
    fn close_sessions(&mut self, horizon: i64, out: &mut Vec<Message>) -> Result<i64> {
        let mut closed: Vec<(Vec<ScalarValue>, i64, Session)> = Vec::new();
        let mut earliest_open = horizon;
        self.partitions.retain(|_, partition| {
            while let Some(entry) = partition.sessions.first_entry() {
                if entry.get().end >= horizon {
                    earliest_open = earliest_open.min(*entry.key());
                    break;
                }
                let (start, session) = entry.remove_entry();
                closed.push((partition.key.clone(), start, session));
            }
            !partition.sessions.is_empty()
        });
        for (_, _, session) in &closed {
            self.sessions -= 1;
            self.state_bytes = self.state_bytes.saturating_sub(session.bytes);
        }
        if self.emit_on_close && !closed.is_empty() {
            let mut changes = Changes::default();
            let mut rows = Vec::with_capacity(closed.len());
            for (key, start, mut session) in closed {
                rows.push(self.row(&key, start, &mut session)?);
            }
            rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            for row in rows {
                changes.push(Op::Insert, &[], row);
            }
            self.flush(changes, out)?;
        }
        Ok(earliest_open)
    }

    fn flush(&self, changes: Changes, out: &mut Vec<Message>) -> Result<()> {
        if let Some(chunk) = changes.into_chunk(&self.output_schema)? {
            out.push(Message::Chunk(chunk));
        }
        Ok(())
    }
}

/// The types of the group keys that are not window bounds.
fn partition_types(bounds: &[Option<SessionBound>], output_schema: &SchemaRef) -> Vec<DataType> {
    bounds
        .iter()
        .enumerate()
        .filter(|(_, b)| b.is_none())
        .map(|(i, _)| output_schema.field(i).data_type().clone())
        .collect()
}

/// A timestamp scalar of `data_type` (a timestamp type).
fn timestamp(value: i64, data_type: &DataType) -> Result<ScalarValue> {
    Ok(match data_type {
        DataType::Timestamp(TimeUnit::Second, tz) => {
            ScalarValue::TimestampSecond(Some(value), tz.clone())
        }
        DataType::Timestamp(TimeUnit::Millisecond, tz) => {
            ScalarValue::TimestampMillisecond(Some(value), tz.clone())
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            ScalarValue::TimestampMicrosecond(Some(value), tz.clone())
        }
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
            ScalarValue::TimestampNanosecond(Some(value), tz.clone())
        }
        other => {
            return Err(DataFusionError::Internal(format!(
                "session bound of type {other}"
            )));
        }
    })
}

impl Operator for SessionAggregate {
    fn name(&self) -> &'static str {
        "SessionAggregate"
    }

    fn describe(&self) -> String {
        format!(
            "{} gap={} emit={}",
            describe_aggregation(&self.group_exprs, &self.calls),
            duration(self.gap_micros),
            if self.emit_on_close {
                "on window close"
            } else {
                "on update"
            }
        )
    }

    fn process_chunk(&mut self, _input: usize, chunk: Chunk, out: &mut Vec<Message>) -> Result<()> {
        if !chunk.is_insert_only() {
            return Err(DataFusionError::Execution(
                "session windows need an input that only inserts rows".into(),
            ));
        }
        let batch = &chunk.batch;
        let n = batch.num_rows();
        let time = batch.column(self.time_column);
        let gap = gap_in(self.gap_micros, time_unit(time.data_type())?)?;
        // Each row's time: its own window's start.
        let times: Vec<Option<i64>> = timestamps(time)?
            .into_iter()
            .map(|t| match self.time_bound {
                SessionBound::Start => t,
                SessionBound::End => t.map(|t| t.saturating_sub(gap)),
            })
            .collect();
        let keys = self
            .group_exprs
            .iter()
            .zip(&self.bounds)
            .filter(|(_, b)| b.is_none())
            .map(|(e, _)| e.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        let (args, filters) = call_inputs(&self.calls, batch)?;
        let rows = match &self.converter {
            Some(converter) => Some(converter.convert_columns(&keys)?),
            None => None,
        };

        let mut changes = Changes::default();
        let mut touched: Vec<(OwnedRow, i64)> = Vec::new();
        for (first, times) in partition_rows(self.converter.as_ref(), &keys, &times)? {
            let key = match &rows {
                Some(rows) => rows.row(first).owned(),
                None => self.global_key.clone(),
            };
            if !self.partitions.contains_key(&key) {
                let partition = Partition {
                    key: keys
                        .iter()
                        .map(|k| ScalarValue::try_from_array(k, first))
                        .collect::<Result<Vec<_>>>()?,
                    sessions: BTreeMap::new(),
                };
                self.partitions.insert(key.clone(), partition);
            }
            for run in runs(times, gap) {
                let start = self.merge(&key, run, &args, &filters, &mut changes)?;
                touched.push((key.clone(), start));
            }
        }
        if !self.emit_on_close {
            for (key, start) in touched {
                // Skipped when a later run of the chunk merged it away.
                let Some(partition) = self.partitions.get_mut(&key) else {
                    continue;
                };
                let Some(mut session) = partition.sessions.remove(&start) else {
                    continue;
                };
                let key_values = partition.key.clone();
                let row = self.row(&key_values, start, &mut session)?;
                if session.emitted.as_ref() != Some(&row) {
                    if let Some(old) = session.emitted.take() {
                        changes.push(Op::Delete, &[], old);
                    }
                    changes.push(Op::Insert, &[], row.clone());
                    session.emitted = Some(row);
                }
                if let Some(partition) = self.partitions.get_mut(&key) {
                    partition.sessions.insert(start, session);
                }
            }
        }
        self.flush(changes, out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        if watermark.column != self.time_column {
            return Ok(());
        }
        let Some((value, unit)) = timestamp_value(&watermark.value) else {
            return Ok(());
        };
        let gap = gap_in(self.gap_micros, unit)?;
        // Rows to come have their own window starting at or after this.
        let horizon = match self.time_bound {
            SessionBound::Start => value,
            SessionBound::End => value.saturating_sub(gap),
        };
        let earliest_open = self.close_sessions(horizon, out)?;
        // Rows to come change sessions starting at or after the earliest
        // open one and ending at or after the horizon.
        if let Some(data_type) = self.time_type().cloned() {
            for (key, bound) in self.bounds.iter().enumerate() {
                let value = match bound {
                    Some(SessionBound::Start) => earliest_open,
                    Some(SessionBound::End) => horizon,
                    None => continue,
                };
                out.push(Message::Watermark(Watermark {
                    column: key,
                    value: timestamp(value, &data_type)?,
                }));
            }
        }
        Ok(())
    }

    /// At the end of the input, open sessions are final too: with `EMIT ON
    /// WINDOW CLOSE` they are emitted now, as if the watermark had passed
    /// them.
    fn finish(&mut self, out: &mut Vec<Message>) -> Result<()> {
        if self.emit_on_close {
            self.close_sessions(i64::MAX, out)?;
        }
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.state_bytes + self.sessions * std::mem::size_of::<Session>()
    }

    /// One row per open session: its partition key, start and end (in the
    /// time column's unit), its accumulators' states. Always whole: open
    /// sessions are few and short-lived.
    fn checkpoint(&mut self, _full: bool) -> Result<Option<StatePiece>> {
        let mut rows = GroupRows::new(self.partition_types(), &mut self.accumulators()?)?;
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        for partition in self.partitions.values_mut() {
            for (start, session) in partition.sessions.iter_mut() {
                rows.push(&partition.key, &mut session.accumulators)?;
                starts.push(*start);
                ends.push(session.end);
            }
        }
        let batch = rows.finish(vec![
            (
                "start".into(),
                Arc::new(Int64Array::from(starts)) as ArrayRef,
            ),
            ("end".into(), Arc::new(Int64Array::from(ends)) as ArrayRef),
        ])?;
        Ok(Some(StatePiece::Full(vec![batch])))
    }

    fn restore(&mut self, state: RecordBatch) -> Result<()> {
        let k = self.partition_types().len();
        let columns = state.columns();
        if columns.len() < k + 2 {
            return Err(state_error("the saved session state has too few columns"));
        }
        let keys = &columns[..k];
        let bound = |i: usize| {
            columns[i]
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| state_error("the saved session bounds are not integers"))
        };
        let (starts, ends) = (bound(k)?, bound(k + 1)?);
        let states = &columns[k + 2..];
        let widths = AccumulatorStates::widths(&mut self.accumulators()?)?;
        let converted = match &self.converter {
            Some(converter) => Some(converter.convert_columns(keys)?),
            None => None,
        };
        for i in 0..state.num_rows() {
            let key = match &converted {
                Some(converted) => converted.row(i).owned(),
                None => self.global_key.clone(),
            };
            let mut accumulators = self.accumulators()?;
            merge_states(states, &widths, i, &mut accumulators)?;
            let mut session = Session {
                end: ends.value(i),
                accumulators,
                emitted: None,
                bytes: 0,
            };
            session.bytes = session.accumulators.iter().map(|a| a.size()).sum::<usize>();
            let partition_key = keys
                .iter()
                .map(|k| ScalarValue::try_from_array(k, i))
                .collect::<Result<Vec<_>>>()?;
            // An open session's row was emitted as it changed, unless rows
            // are emitted when sessions close.
            if !self.emit_on_close {
                session.emitted = Some(self.row(&partition_key, starts.value(i), &mut session)?);
            }
            self.state_bytes += session.bytes;
            self.sessions += 1;
            self.partitions
                .entry(key)
                .or_insert_with(|| Partition {
                    key: partition_key,
                    sessions: BTreeMap::new(),
                })
                .sessions
                .insert(starts.value(i), session);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int32Array, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    const SECOND: i64 = 1_000_000;

    #[test]
    fn rows_at_most_a_gap_apart_share_a_session() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int32, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1, 1, 2, 1, 1, 1])),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(0),
                    Some(5 * SECOND),
                    Some(SECOND),
                    Some(20 * SECOND),
                    Some(15 * SECOND),
                    None,
                ])),
            ],
        )
        .expect("batch");
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(
            "window_start",
            fields[1].data_type().clone(),
            true,
        ));
        fields.push(Field::new(
            "window_end",
            fields[1].data_type().clone(),
            true,
        ));
        let output = Arc::new(Schema::new(fields));
        let out = sessions(&batch, 1, &[0], 10 * SECOND, &output).expect("sessions");
        let k = out.column(0).as_primitive::<arrow::datatypes::Int32Type>();
        let start = out
            .column(2)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let end = out
            .column(3)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let got: Vec<(i32, i64, i64)> = (0..out.num_rows())
            .map(|i| (k.value(i), start.value(i) / SECOND, end.value(i) / SECOND))
            .collect();
        // Key 1: 0 and 5 share [0, 15); 15 touches it (exactly the gap after
        // 5), then 20: one session [0, 30). Key 2 alone. The NULL time is in
        // no session.
        let mut expected = vec![(1, 0, 30); 4];
        expected.push((2, 1, 11));
        let mut sorted = got.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn a_gap_larger_than_the_gap_splits_sessions() {
        let got = runs(vec![(0, 0), (11, 1), (30, 2), (21, 3)], 10);
        let bounds: Vec<(i64, i64, usize)> =
            got.iter().map(|(s, e, r)| (*s, *e, r.len())).collect();
        assert_eq!(bounds, [(0, 10, 1), (11, 40, 3)]);
    }
}
