//! Grouped aggregation over a changelog, kept up to date incrementally.
//!
//! Each group keeps DataFusion accumulators. Insertions update them,
//! deletions retract from them (accumulators that support retraction are
//! used when the input can delete). After each chunk, every group whose
//! result changed emits the deletion of its previous row and the insertion
//! of the new one: the output is itself a changelog.
//!
//! When a group key is a window column with a watermark, groups below the
//! watermark are final: they are removed from the state, and with
//! `EMIT ON WINDOW CLOSE` their rows are emitted only then, once, as
//! insertions (the output is append-only).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, RecordBatch, UInt32Array,
};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::common::hash_utils::RandomState;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::checkpoint::{AccumulatorStates, GroupRows, StatePiece, merge_states, state_error};
use crate::message::{Barrier, Chunk, Message, Op, Watermark};
use crate::operator::{Operator, Result};

/// One aggregate function call, with its `FILTER (WHERE ...)` if any.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    pub function: Arc<AggregateFunctionExpr>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// How `EXPLAIN` shows an aggregation: `keys=[k@0, window_start@2]
/// aggregates=[count(Int64(1))]`.
pub(crate) fn describe_aggregation(
    group_exprs: &[Arc<dyn PhysicalExpr>],
    calls: &[AggregateCall],
) -> String {
    let keys: Vec<String> = group_exprs.iter().map(|e| e.to_string()).collect();
    let calls: Vec<String> = calls
        .iter()
        .map(|c| c.function.name().to_string())
        .collect();
    format!(
        "keys=[{}] aggregates=[{}]",
        keys.join(", "),
        calls.join(", ")
    )
}

/// The arguments of each call over `batch`, and its `FILTER` mask if any.
pub(crate) type CallInputs = (Vec<Vec<ArrayRef>>, Vec<Option<BooleanArray>>);

pub(crate) fn call_inputs(calls: &[AggregateCall], batch: &RecordBatch) -> Result<CallInputs> {
    let n = batch.num_rows();
    let args = calls
        .iter()
        .map(|call| {
            call.function
                .expressions()
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(n))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let filters = calls
        .iter()
        .map(|call| match &call.filter {
            Some(f) => Ok(Some(f.evaluate(batch)?.into_array(n)?.as_boolean().clone())),
            None => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((args, filters))
}

/// The arguments of a call at `rows`, keeping those its `FILTER` passes;
/// `None` when none is left.
pub(crate) fn call_rows(
    args: &[ArrayRef],
    filter: Option<&BooleanArray>,
    rows: &[u32],
) -> Result<Option<Vec<ArrayRef>>> {
    let rows: Vec<u32> = match filter {
        Some(mask) => rows
            .iter()
            .copied()
            .filter(|&i| mask.is_valid(i as usize) && mask.value(i as usize))
            .collect(),
        None => {
            // Consecutive rows (one row, most often) are a slice: no copy.
            if let Some(&first) = rows.first()
                && rows.windows(2).all(|w| w[1] == w[0] + 1)
            {
                let (offset, length) = (first as usize, rows.len());
                return Ok(Some(args.iter().map(|a| a.slice(offset, length)).collect()));
            }
            rows.to_vec()
        }
    };
    if rows.is_empty() {
        return Ok(None);
    }
    let indices = UInt32Array::from(rows);
    let values = args
        .iter()
        .map(|a| take(a.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some(values))
}

/// How window groups close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowClose {
    /// Position of the window column among the group keys.
    pub key: usize,
    /// The input column whose watermark closes groups.
    pub input_column: usize,
    /// Emit each group once, when it closes (`EMIT ON WINDOW CLOSE`).
    pub emit_on_close: bool,
}

struct Group {
    key: Vec<ScalarValue>,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Rows in the group (insertions minus deletions).
    rows: i64,
    /// The aggregate values last emitted.
    emitted: Option<Vec<ScalarValue>>,
    bytes: usize,
}

impl Group {
    /// The aggregate values of the group now.
    fn values(&mut self) -> Result<Vec<ScalarValue>> {
        self.accumulators.iter_mut().map(|a| a.evaluate()).collect()
    }

    /// Bytes the group holds now.
    fn size(&self) -> usize {
        self.accumulators.iter().map(|a| a.size()).sum::<usize>()
            + self.key.iter().map(ScalarValue::size).sum::<usize>()
    }
}

/// Grouped aggregation.
pub struct Aggregate {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    calls: Vec<AggregateCall>,
    output_schema: SchemaRef,
    converter: RowConverter,
    /// Hashed with aHash: SipHash, std's default, was a tenth of the time.
    groups: HashMap<OwnedRow, Group, RandomState>,
    window: Option<WindowClose>,
    /// With a window: the keys of the groups of each window, so that a
    /// watermark closes windows without looking at every group.
    windows: BTreeMap<Ordered, Vec<OwnedRow>>,
    /// The input can delete rows: accumulators must retract.
    retracting: bool,
    started: bool,
    state_bytes: usize,
    /// The key of the one group when there is no GROUP BY.
    global_key: OwnedRow,
    /// The groups changed (or removed) since the last checkpoint, once one
    /// took the whole state; `None` before that, or when so many changed
    /// that the next checkpoint takes the whole state anyway.
    changed: Option<HashSet<OwnedRow, RandomState>>,
}

impl Aggregate {
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        calls: Vec<AggregateCall>,
        output_schema: SchemaRef,
        window: Option<WindowClose>,
        retracting: bool,
    ) -> Result<Self> {
        let key_types = group_exprs
            .iter()
            .enumerate()
            .map(|(i, _)| SortField::new(output_schema.field(i).data_type().clone()))
            .collect();
        let aggregate = Aggregate {
            converter: RowConverter::new(key_types)?,
            group_exprs,
            calls,
            output_schema,
            groups: HashMap::default(),
            window,
            windows: BTreeMap::new(),
            retracting,
            started: false,
            state_bytes: 0,
            global_key: global_key()?,
            changed: None,
        };
        // Fail at planning, not on the first row, when an accumulator cannot
        // retract.
        aggregate.accumulators()?;
        Ok(aggregate)
    }

    fn accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.calls
            .iter()
            .map(|call| {
                let name = call.function.fun().name();
                if self.retracting && (name == "min" || name == "max") {
                    // DataFusion's sliding min and max retract in arrival
                    // order only; a changelog retracts any value.
                    let data_type = call.function.field().data_type().clone();
                    Ok(Box::new(RetractableExtreme::new(name == "max", data_type))
                        as Box<dyn Accumulator>)
                } else if self.retracting {
                    call.function.create_sliding_accumulator().map_err(|_| {
                        DataFusionError::NotImplemented(format!(
                            "{} over an input with updates or deletions (it cannot be \
                             kept up to date incrementally)",
                            call.function.name()
                        ))
                    })
                } else {
                    call.function.create_accumulator()
                }
            })
            .collect()
    }

    /// Adds a group, listed under its window when there is one.
    fn add_group(&mut self, key: OwnedRow, group: Group) {
        if let Some(window) = self.window
            && let Some(start) = group.key.get(window.key)
            && !start.is_null()
        {
            self.windows
                .entry(Ordered(start.clone()))
                .or_default()
                .push(key.clone());
        }
        self.groups.insert(key, group);
    }

    /// Notes that group `key` changed since the last checkpoint.
    fn touch(&mut self, key: &OwnedRow) {
        if let Some(changed) = &mut self.changed {
            changed.insert(key.clone());
            // Past this, the whole state costs about the same to write.
            if changed.len() > 2 * self.groups.len().max(1024) {
                self.changed = None;
            }
        }
    }

    /// The checkpoint rows (key, row count, accumulator states) of every
    /// group (`only` = `None`), or of the groups in `only` with an
    /// operations column: 1 for a group's new row, -1 for a group removed.
    fn state_rows(&mut self, only: Option<&HashSet<OwnedRow, RandomState>>) -> Result<RecordBatch> {
        let key_types = (0..self.group_exprs.len())
            .map(|i| self.output_schema.field(i).data_type().clone())
            .collect();
        let mut fresh = self.accumulators()?;
        let mut rows = GroupRows::new(key_types, &mut fresh)?;
        let mut counts = Vec::new();
        let Some(only) = only else {
            for group in self.groups.values_mut() {
                rows.push(&group.key, &mut group.accumulators)?;
                counts.push(group.rows);
            }
            return rows.finish(vec![(
                "rows".to_string(),
                Arc::new(Int64Array::from(counts)) as ArrayRef,
            )]);
        };
        let mut ops = Vec::with_capacity(only.len());
        let mut removed = Vec::new();
        for key in only {
            match self.groups.get_mut(key) {
                Some(group) => {
                    rows.push(&group.key, &mut group.accumulators)?;
                    counts.push(group.rows);
                    ops.push(1i8);
                }
                None => removed.push(key.row()),
            }
        }
        if !removed.is_empty() {
            let keys = self.converter.convert_rows(removed.iter().copied())?;
            for i in 0..removed.len() {
                let key = keys
                    .iter()
                    .map(|k| ScalarValue::try_from_array(k, i))
                    .collect::<Result<Vec<_>>>()?;
                rows.push(&key, &mut self.accumulators()?)?;
                counts.push(0);
                ops.push(-1);
            }
        }
        let batch = rows.finish(vec![(
            "rows".to_string(),
            Arc::new(Int64Array::from(counts)) as ArrayRef,
        )])?;
        Ok(weir_state::delta::with_ops(
            &batch,
            Some(&Int8Array::from(ops)),
        )?)
    }

    /// An aggregate without GROUP BY has one row even without input rows.
    fn is_global(&self) -> bool {
        self.group_exprs.is_empty()
    }

    /// Emits the initial row of a global aggregate.
    fn start(&mut self, out: &mut Vec<Message>) -> Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        if self.is_global() && self.window.is_none() {
            let group = Group {
                key: vec![],
                accumulators: self.accumulators()?,
                rows: 0,
                emitted: None,
                bytes: 0,
            };
            self.groups.insert(self.global_key.clone(), group);
            let mut changes = Changes::default();
            let key = self.global_key.clone();
            self.touch(&key);
            self.emit_changed(std::slice::from_ref(&key), &mut changes)?;
            self.flush(changes, out)?;
        }
        Ok(())
    }

    /// Emits the changes of the groups whose values changed.
    fn emit_changed(&mut self, keys: &[OwnedRow], changes: &mut Changes) -> Result<()> {
        let global = self.is_global();
        for key in keys {
            let Some(group) = self.groups.get_mut(key) else {
                continue;
            };
            if group.rows <= 0 && !global {
                if let Some(old) = group.emitted.take() {
                    changes.push(Op::Delete, &group.key, old);
                }
                let bytes = group.bytes;
                self.groups.remove(key);
                self.state_bytes = self.state_bytes.saturating_sub(bytes);
                continue;
            }
            let values = group.values()?;
            if group.emitted.as_ref() != Some(&values) {
                if let Some(old) = group.emitted.take() {
                    changes.push(Op::Delete, &group.key, old);
                }
                changes.push(Op::Insert, &group.key, values.clone());
                group.emitted = Some(values);
            }
        }
        Ok(())
    }

    /// Removes the groups of windows below `below` (all of them without
    /// it), which get no more rows; with `emit`, emits their rows.
    fn close_windows(
        &mut self,
        below: Option<ScalarValue>,
        emit: bool,
        out: &mut Vec<Message>,
    ) -> Result<()> {
        let closing = match below {
            Some(value) => {
                let open = self.windows.split_off(&Ordered(value));
                std::mem::replace(&mut self.windows, open)
            }
            None => std::mem::take(&mut self.windows),
        };
        let mut closed: Vec<(OwnedRow, Group)> = Vec::new();
        // A key is listed once per time its group was created.
        for key in closing.into_values().flatten() {
            if let Some(group) = self.groups.remove(&key) {
                self.state_bytes = self.state_bytes.saturating_sub(group.bytes);
                self.touch(&key);
                closed.push((key, group));
            }
        }
        if emit && !closed.is_empty() {
            closed.sort_by(|a, b| a.0.cmp(&b.0));
            let mut changes = Changes::default();
            for (_, mut group) in closed {
                if group.rows <= 0 {
                    continue;
                }
                let values = group.values()?;
                changes.push(Op::Insert, &group.key, values);
            }
            self.flush(changes, out)?;
        }
        Ok(())
    }

    fn flush(&self, changes: Changes, out: &mut Vec<Message>) -> Result<()> {
        if let Some(chunk) = changes.into_chunk(&self.output_schema)? {
            out.push(Message::Chunk(chunk));
        }
        Ok(())
    }
}

/// The aggregation of `calls` grouped by `group_exprs`: columnar per window
/// where it can run ([`WindowAggregate`](super::WindowAggregate) when it
/// emits on window close, [`UpdatingWindowAggregate`](super::UpdatingWindowAggregate)
/// when it emits on update), else a row per group ([`Aggregate`]).
pub fn aggregation(
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    calls: Vec<AggregateCall>,
    output_schema: SchemaRef,
    window: Option<WindowClose>,
    retracting: bool,
) -> Result<Box<dyn Operator>> {
    if let Some(close) = window
        && super::WindowAggregate::supports(&calls, &output_schema, window, retracting)
    {
        return Ok(Box::new(super::WindowAggregate::new(
            group_exprs,
            calls,
            output_schema,
            close,
        )?));
    }
    if let Some(close) = window
        && super::UpdatingWindowAggregate::supports(&calls, window, retracting)
    {
        return Ok(Box::new(super::UpdatingWindowAggregate::new(
            group_exprs,
            calls,
            output_schema,
            close,
        )?));
    }
    Ok(Box::new(Aggregate::new(
        group_exprs,
        calls,
        output_schema,
        window,
        retracting,
    )?))
}

/// The watermarks an aggregation passes on for `watermark`: group keys that
/// are the watermark's input column carry it along.
pub(crate) fn forwarded_watermarks(
    group_exprs: &[Arc<dyn PhysicalExpr>],
    watermark: &Watermark,
) -> Vec<Message> {
    group_exprs
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                .is_some_and(|c| c.index() == watermark.column)
        })
        .map(|(key, _)| {
            Message::Watermark(Watermark {
                column: key,
                value: watermark.value.clone(),
            })
        })
        .collect()
}

/// The key of the single group of an aggregate without GROUP BY.
pub(crate) fn global_key() -> Result<OwnedRow> {
    let converter = RowConverter::new(vec![SortField::new(DataType::Boolean)])?;
    let rows = converter.convert_columns(&[Arc::new(BooleanArray::from(vec![true]))])?;
    Ok(rows.row(0).owned())
}

/// Output rows being collected: an operation, the key, the values.
#[derive(Default)]
pub(crate) struct Changes {
    ops: Vec<i8>,
    rows: Vec<Vec<ScalarValue>>,
}

impl Changes {
    pub(crate) fn push(&mut self, op: Op, key: &[ScalarValue], values: Vec<ScalarValue>) {
        let mut row = key.to_vec();
        row.extend(values);
        self.ops.push(op.code());
        self.rows.push(row);
    }

    pub(crate) fn into_chunk(self, schema: &SchemaRef) -> Result<Option<Chunk>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let width = schema.fields().len();
        let mut values: Vec<Vec<ScalarValue>> = (0..width)
            .map(|_| Vec::with_capacity(self.rows.len()))
            .collect();
        for row in self.rows {
            for (column, value) in values.iter_mut().zip(row) {
                column.push(value);
            }
        }
        let columns = schema
            .fields()
            .iter()
            .zip(values)
            .map(|(field, column)| {
                let array = ScalarValue::iter_to_array(column)?;
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    Ok(cast(&array, field.data_type())?)
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let chunk = Chunk::new(batch, Int8Array::from(self.ops));
        Ok(Some(if chunk.is_insert_only() {
            Chunk::inserts(chunk.batch)
        } else {
            chunk
        }))
    }
}

impl Operator for Aggregate {
    fn name(&self) -> &'static str {
        if self.window.is_some() {
            "WindowAggregate"
        } else {
            "HashAggregate"
        }
    }

    fn describe(&self) -> String {
        let mut text = describe_aggregation(&self.group_exprs, &self.calls);
        if let Some(window) = self.window {
            text.push_str(if window.emit_on_close {
                " emit=on window close"
            } else {
                " emit=on update"
            });
        }
        text
    }

    fn process_chunk(&mut self, _input: usize, chunk: Chunk, out: &mut Vec<Message>) -> Result<()> {
        self.start(out)?;
        let batch = &chunk.batch;
        let n = batch.num_rows();
        let keys = self
            .group_exprs
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        let rows = if self.is_global() {
            None
        } else {
            Some(self.converter.convert_columns(&keys)?)
        };
        let (args, filters) = call_inputs(&self.calls, batch)?;

        // The rows of each group in this chunk, inserted and deleted: each
        // row's slot (its group's, in order of first appearance), then the
        // row numbers ordered by slot, inserted rows before deleted ones.
        let mut slots: HashMap<arrow::row::Row<'_>, u32, RandomState> = HashMap::default();
        let mut firsts: Vec<usize> = Vec::new();
        let mut row_slots: Vec<u32> = Vec::with_capacity(n);
        for i in 0..n {
            let slot = match &rows {
                Some(rows) => *slots.entry(rows.row(i)).or_insert_with(|| {
                    firsts.push(i);
                    (firsts.len() - 1) as u32
                }),
                None => {
                    if firsts.is_empty() {
                        firsts.push(i);
                    }
                    0
                }
            };
            row_slots.push(slot);
        }
        let deleting = chunk.ops.as_ref().map(|ops| ops.values());
        let is_delete = |i: usize| deleting.is_some_and(|ops| ops[i] == Op::Delete.code());
        // Per slot: where its inserted rows start, and its deleted rows.
        let mut starts = vec![0u32; 2 * firsts.len() + 1];
        for (i, slot) in row_slots.iter().enumerate() {
            starts[2 * *slot as usize + 1 + usize::from(is_delete(i))] += 1;
        }
        for k in 1..starts.len() {
            starts[k] += starts[k - 1];
        }
        let mut ordered = vec![0u32; n];
        let mut next = starts.clone();
        for (i, slot) in row_slots.iter().enumerate() {
            let at = &mut next[2 * *slot as usize + usize::from(is_delete(i))];
            ordered[*at as usize] = i as u32;
            *at += 1;
        }

        let mut changed = Vec::with_capacity(firsts.len());
        for (slot, first) in firsts.into_iter().enumerate() {
            let bound = |k: usize| starts[2 * slot + k] as usize;
            let inserted = &ordered[bound(0)..bound(1)];
            let deleted = &ordered[bound(1)..bound(2)];
            let key = match &rows {
                Some(rows) => rows.row(first).owned(),
                None => self.global_key.clone(),
            };
            if !self.groups.contains_key(&key) {
                let group = Group {
                    key: keys
                        .iter()
                        .map(|k| ScalarValue::try_from_array(k, first))
                        .collect::<Result<Vec<_>>>()?,
                    accumulators: self.accumulators()?,
                    rows: 0,
                    emitted: None,
                    bytes: 0,
                };
                self.add_group(key.clone(), group);
            }
            let group = self
                .groups
                .get_mut(&key)
                .ok_or_else(|| DataFusionError::Internal("group vanished".into()))?;
            for (j, accumulator) in group.accumulators.iter_mut().enumerate() {
                for (indices, retract) in [(inserted, false), (deleted, true)] {
                    let Some(values) = call_rows(&args[j], filters[j].as_ref(), indices)? else {
                        continue;
                    };
                    if retract {
                        accumulator.retract_batch(&values)?;
                    } else {
                        accumulator.update_batch(&values)?;
                    }
                }
            }
            group.rows += inserted.len() as i64 - deleted.len() as i64;
            let bytes = group.size();
            self.state_bytes = self.state_bytes.saturating_sub(group.bytes) + bytes;
            group.bytes = bytes;
            self.touch(&key);
            changed.push(key);
        }
        if self.window.is_some_and(|w| w.emit_on_close) {
            return Ok(());
        }
        let mut changes = Changes::default();
        self.emit_changed(&changed, &mut changes)?;
        self.flush(changes, out)
    }

    fn process_barrier(&mut self, _barrier: Barrier, out: &mut Vec<Message>) -> Result<()> {
        // A global aggregate over inputs that never changed still has its row.
        self.start(out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        self.start(out)?;
        if let Some(window) = self.window
            && window.input_column == watermark.column
        {
            self.close_windows(Some(watermark.value.clone()), window.emit_on_close, out)?;
        }
        out.extend(forwarded_watermarks(&self.group_exprs, &watermark));
        Ok(())
    }

    /// At the end of the input, windows still open are final too: with
    /// `EMIT ON WINDOW CLOSE` they are emitted now, as if the watermark had
    /// passed them.
    fn finish(&mut self, out: &mut Vec<Message>) -> Result<()> {
        if let Some(window) = self.window
            && window.emit_on_close
        {
            self.start(out)?;
            self.close_windows(None, true, out)?;
        }
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.state_bytes + self.groups.len() * std::mem::size_of::<Group>()
    }

    /// One row per group: its key, its row count, its accumulators' states;
    /// unless `full`, only the groups changed since the last checkpoint
    /// (when they are fewer than half).
    fn checkpoint(&mut self, full: bool) -> Result<Option<StatePiece>> {
        if self.retracting {
            // Over a changelog an accumulator must come back able to retract
            // what it holds: the states of these keep all of it.
            if let Some(call) = self.calls.iter().find(|c| {
                c.function.is_distinct()
                    || !["sum", "count", "avg", "min", "max"].contains(&c.function.fun().name())
            }) {
                return Err(DataFusionError::NotImplemented(format!(
                    "the state of {} over an input with updates or deletions cannot be \
                     checkpointed yet",
                    call.function.name()
                )));
            }
        }
        let changed = self.changed.replace(HashSet::default());
        let piece = match changed {
            Some(changed) if !full && changed.len() * 2 < self.groups.len() => {
                StatePiece::Changes(vec![self.state_rows(Some(&changed))?])
            }
            _ => StatePiece::Full(vec![self.state_rows(None)?]),
        };
        Ok(Some(piece))
    }

    fn restore(&mut self, state: RecordBatch) -> Result<()> {
        let k = self.group_exprs.len();
        let columns = state.columns();
        if columns.len() <= k {
            return Err(state_error(
                "the saved aggregation state has too few columns",
            ));
        }
        let keys = &columns[..k];
        let rows = columns[k]
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| state_error("the saved row counts are not integers"))?;
        let states = &columns[k + 1..];
        let widths = AccumulatorStates::widths(&mut self.accumulators()?)?;
        let converted = if self.is_global() {
            None
        } else {
            Some(self.converter.convert_columns(keys)?)
        };
        let emit_on_close = self.window.is_some_and(|w| w.emit_on_close);
        for i in 0..state.num_rows() {
            let key = match &converted {
                Some(converted) => converted.row(i).owned(),
                None => self.global_key.clone(),
            };
            let mut accumulators = self.accumulators()?;
            merge_states(states, &widths, i, &mut accumulators)?;
            let mut group = Group {
                key: keys
                    .iter()
                    .map(|k| ScalarValue::try_from_array(k, i))
                    .collect::<Result<Vec<_>>>()?,
                accumulators,
                rows: rows.value(i),
                emitted: None,
                bytes: 0,
            };
            // Every group's current values are what was last emitted (each
            // chunk's changes are emitted as it is processed), unless groups
            // emit only when their window closes.
            if !emit_on_close {
                group.emitted = Some(group.values()?);
            }
            group.bytes = group.size();
            self.state_bytes += group.bytes;
            self.add_group(key, group);
        }
        // The checkpoint was taken at a barrier, after the start.
        self.started = true;
        Ok(())
    }
}

/// A scalar ordered for a BTreeMap (values of one column compare totally).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ordered(pub(crate) ScalarValue);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .partial_cmp(&other.0)
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

/// `min` or `max` over a multiset of values, any of which can be retracted:
/// the values are kept with their counts, in order.
#[derive(Debug)]
struct RetractableExtreme {
    max: bool,
    data_type: DataType,
    values: std::collections::BTreeMap<Ordered, i64>,
    bytes: usize,
}

impl RetractableExtreme {
    fn new(max: bool, data_type: DataType) -> Self {
        RetractableExtreme {
            max,
            data_type,
            values: std::collections::BTreeMap::new(),
            bytes: 0,
        }
    }

    fn change(&mut self, values: &[ArrayRef], delta: i64) -> datafusion::common::Result<()> {
        let Some(array) = values.first() else {
            return Ok(());
        };
        for i in 0..array.len() {
            if array.is_null(i) {
                continue;
            }
            let value = Ordered(ScalarValue::try_from_array(array, i)?);
            let size = value.0.size();
            let count = self.values.entry(value.clone()).or_insert_with(|| 0);
            if *count == 0 {
                self.bytes += size;
            }
            *count += delta;
            if *count <= 0 {
                self.values.remove(&value);
                self.bytes = self.bytes.saturating_sub(size);
            }
        }
        Ok(())
    }
}

impl Accumulator for RetractableExtreme {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.change(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.change(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> datafusion::common::Result<ScalarValue> {
        let extreme = if self.max {
            self.values.keys().next_back()
        } else {
            self.values.keys().next()
        };
        match extreme {
            Some(value) => Ok(value.0.clone()),
            None => ScalarValue::try_from(&self.data_type),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.bytes + self.values.len() * 16
    }

    /// Every value with its count (two lists), so that a restored
    /// accumulator can still retract any of them.
    fn state(&mut self) -> datafusion::common::Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self.values.keys().map(|v| v.0.clone()).collect();
        let counts: Vec<ScalarValue> = self
            .values
            .values()
            .map(|c| ScalarValue::Int64(Some(*c)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.data_type)),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::common::Result<()> {
        let (Some(values), Some(counts)) = (states.first(), states.get(1)) else {
            return Err(state_error("min/max state without its counts"));
        };
        let (values, counts) = (values.as_list::<i32>(), counts.as_list::<i32>());
        for row in 0..values.len() {
            let (values, counts) = (values.value(row), counts.value(row));
            let counts = counts
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| state_error("min/max counts are not integers"))?;
            for i in 0..values.len() {
                self.change(&[values.slice(i, 1)], counts.value(i))?;
            }
        }
        Ok(())
    }
}
