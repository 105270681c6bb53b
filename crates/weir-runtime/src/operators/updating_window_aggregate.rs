//! Windowed aggregation that emits on update, with columnar state.
//!
//! Over an append-only input without `EMIT ON WINDOW CLOSE`, every chunk
//! changes some groups of some open windows, and each changed group emits
//! the deletion of its previous row and its new row. Each open window keeps
//! its groups as [`WindowAggregate`](super::WindowAggregate) does: the group
//! keys other than the window interned to group indices ([`GroupValues`]),
//! and per aggregate a typed vector indexed by group ([`GroupColumn`]), which
//! unlike DataFusion's accumulators can be read without being emptied. A
//! chunk's rows are split by window; per window, the values of the groups
//! the rows touch are read before and after the update, and the groups
//! whose values changed are emitted as Arrow columns, deletions first. When
//! the watermark passes a window its groups are final (their rows were
//! emitted as they changed) and the window's state is dropped whole.
//!
//! The checkpoint rows are those of [`Aggregate`](super::Aggregate): the
//! group keys, a row count, the accumulators' states.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int8Array, Int64Array, RecordBatch, UInt32Array,
};
use arrow::compute::kernels::cmp::distinct;
use arrow::compute::{cast, concat, concat_batches, filter, or, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::aggregate::{
    AggregateCall, Ordered, WindowClose, call_inputs, describe_aggregation, forwarded_watermarks,
};
use super::group_columns::{GroupColumn, group_column};
use super::window_aggregate::{intern_groups, saved_windows, window_parts};
use crate::checkpoint::{StatePiece, state_batch, state_error};
use crate::message::{Chunk, Message, Op, Watermark};
use crate::operator::{Operator, Result};

/// The groups of one open window.
struct WindowGroups {
    /// The other group keys, interned; `None` when the window is the only
    /// key (one group).
    keys: Option<Box<dyn GroupValues>>,
    columns: Vec<Box<dyn GroupColumn>>,
    /// Rows per group.
    rows: Vec<i64>,
    /// Scratch: the group index of each row of the part being added.
    indices: Vec<usize>,
    /// Scratch: per group, the number of the last part that touched it.
    marks: Vec<u32>,
    part: u32,
    bytes: usize,
}

/// The groups a part of a chunk touched: those that existed before it and
/// those it created, each with the first of its rows in the part.
#[derive(Default)]
struct Touched {
    old: Vec<usize>,
    old_rows: Vec<u32>,
    new: Vec<usize>,
    new_rows: Vec<u32>,
}

impl WindowGroups {
    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Interns `keys` (one array per other key, `n` rows) into `self.indices`.
    fn intern(&mut self, keys: &[ArrayRef], n: usize) -> Result<()> {
        let groups = intern_groups(&mut self.keys, keys, n, self.rows.len(), &mut self.indices)?;
        self.rows.resize(groups, 0);
        self.marks.resize(groups, 0);
        Ok(())
    }

    /// The groups of `self.indices`, once each, split by whether they
    /// existed before (the first `before` groups) or are new.
    fn touched(&mut self, before: usize) -> Touched {
        self.part = self.part.wrapping_add(1);
        if self.part == 0 {
            self.marks.fill(0);
            self.part = 1;
        }
        let mut touched = Touched::default();
        for (row, &group) in self.indices.iter().enumerate() {
            if self.marks[group] == self.part {
                continue;
            }
            self.marks[group] = self.part;
            if group < before {
                touched.old.push(group);
                touched.old_rows.push(row as u32);
            } else {
                touched.new.push(group);
                touched.new_rows.push(row as u32);
            }
        }
        touched
    }

    fn values(&self, groups: &[usize]) -> Result<Vec<ArrayRef>> {
        self.columns.iter().map(|c| c.values(groups)).collect()
    }

    fn measure(&mut self) {
        self.bytes = self.keys.as_ref().map_or(0, |k| k.size())
            + self.columns.iter().map(|c| c.size()).sum::<usize>()
            + self.rows.capacity() * 8
            + self.indices.capacity() * 8
            + self.marks.capacity() * 4;
    }
}

/// What one part of a chunk changed: rows (of the chunk) whose keys are the
/// keys of the changed groups, and the groups' values, for the deletions of
/// old rows and the insertions of new ones.
struct Change {
    deleted_rows: Vec<u32>,
    deleted: Vec<ArrayRef>,
    inserted_rows: Vec<u32>,
    inserted: Vec<ArrayRef>,
}

/// Windowed aggregation emitting on update over an append-only input, state
/// kept per window in columns.
pub struct UpdatingWindowAggregate {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    calls: Vec<AggregateCall>,
    output_schema: SchemaRef,
    window: WindowClose,
    /// The schema of the group keys other than the window.
    others: SchemaRef,
    windows: BTreeMap<Ordered, WindowGroups>,
    /// State columns per call.
    widths: Vec<usize>,
}

impl UpdatingWindowAggregate {
    /// Whether the aggregation can run here: an append-only input, groups
    /// on a window that emit as they change, and aggregates each with a
    /// [`GroupColumn`].
    pub fn supports(
        calls: &[AggregateCall],
        window: Option<WindowClose>,
        retracting: bool,
    ) -> bool {
        window.is_some_and(|w| !w.emit_on_close)
            && !retracting
            && calls.iter().all(|call| {
                group_column(call).is_some()
                    && call
                        .function
                        .state_fields()
                        .is_ok_and(|fields| fields.len() == 1)
            })
    }

    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        calls: Vec<AggregateCall>,
        output_schema: SchemaRef,
        window: WindowClose,
    ) -> Result<Self> {
        let others = Arc::new(Schema::new(
            (0..group_exprs.len())
                .filter(|&i| i != window.key)
                .map(|i| output_schema.field(i).clone())
                .collect::<Vec<Field>>(),
        ));
        let widths = calls
            .iter()
            .map(|c| Ok(c.function.state_fields()?.len()))
            .collect::<Result<Vec<_>>>()?;
        let operator = UpdatingWindowAggregate {
            group_exprs,
            calls,
            output_schema,
            window,
            others,
            windows: BTreeMap::new(),
            widths,
        };
        operator.columns()?;
        Ok(operator)
    }

    fn columns(&self) -> Result<Vec<Box<dyn GroupColumn>>> {
        self.calls
            .iter()
            .map(|call| {
                group_column(call).ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "{} has no columnar form for an updating aggregation",
                        call.function.name()
                    ))
                })
            })
            .collect()
    }

    /// The groups of `window`, new ones if it has none yet.
    fn groups(&mut self, window: ScalarValue) -> Result<&mut WindowGroups> {
        let key = Ordered(window);
        if !self.windows.contains_key(&key) {
            let keys = if self.others.fields().is_empty() {
                None
            } else {
                Some(new_group_values(self.others.clone(), &GroupOrdering::None)?)
            };
            let groups = WindowGroups {
                keys,
                columns: self.columns()?,
                rows: Vec::new(),
                indices: Vec::new(),
                marks: Vec::new(),
                part: 0,
                bytes: 0,
            };
            self.windows.insert(key.clone(), groups);
        }
        self.windows
            .get_mut(&key)
            .ok_or_else(|| DataFusionError::Internal("window groups vanished".into()))
    }

    /// Adds the `n` rows of one window (their other keys, per call its
    /// arguments and `FILTER` mask) and says which groups changed.
    fn update(
        &mut self,
        window: ScalarValue,
        keys: &[ArrayRef],
        args: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
        n: usize,
    ) -> Result<Change> {
        let groups = self.groups(window)?;
        let before = groups.len();
        groups.intern(keys, n)?;
        let touched = groups.touched(before);
        let old = groups.values(&touched.old)?;
        for &group in &groups.indices {
            groups.rows[group] += 1;
        }
        let total = groups.len();
        for ((column, args), filter) in groups.columns.iter_mut().zip(args).zip(filters) {
            column.update(args, &groups.indices, filter.as_ref(), total)?;
        }
        groups.measure();
        let now = groups.values(&touched.old)?;
        let mut inserted = groups.values(&touched.new)?;
        // Groups whose values did not change emit nothing.
        let mut changed: Option<BooleanArray> = None;
        for (old, now) in old.iter().zip(&now) {
            let differs = distinct(old, now)?;
            changed = Some(match changed {
                Some(changed) => or(&changed, &differs)?,
                None => differs,
            });
        }
        let changed = changed.unwrap_or_else(|| BooleanArray::from(vec![false; touched.old.len()]));
        let keep = |arrays: &[ArrayRef]| -> Result<Vec<ArrayRef>> {
            arrays
                .iter()
                .map(|a| Ok(filter(a.as_ref(), &changed)?))
                .collect()
        };
        let changed_rows: Vec<u32> = touched
            .old_rows
            .iter()
            .zip(changed.values())
            .filter(|(_, c)| *c)
            .map(|(r, _)| *r)
            .collect();
        let deleted = keep(&old)?;
        let now = keep(&now)?;
        let mut inserted_rows = changed_rows.clone();
        inserted_rows.extend(&touched.new_rows);
        inserted = now
            .iter()
            .zip(&inserted)
            .map(|(a, b)| Ok(concat(&[a.as_ref(), b.as_ref()])?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Change {
            deleted_rows: changed_rows,
            deleted,
            inserted_rows,
            inserted,
        })
    }

    /// Output rows: the group keys at `rows` of `keys`, then `values`.
    fn output(
        &self,
        keys: &[ArrayRef],
        rows: &[u32],
        values: Vec<ArrayRef>,
    ) -> Result<RecordBatch> {
        let indices = UInt32Array::from(rows.to_vec());
        let mut columns = keys
            .iter()
            .map(|k| Ok(take(k.as_ref(), &indices, None)?))
            .collect::<Result<Vec<_>>>()?;
        columns.extend(values);
        let columns = columns
            .into_iter()
            .zip(self.output_schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column)
                } else {
                    Ok(cast(&column, field.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(self.output_schema.clone(), columns)?)
    }

    /// The full key columns of `n` groups of `window`, given its other keys.
    fn key_columns(
        &self,
        window: &ScalarValue,
        others: Vec<ArrayRef>,
        n: usize,
    ) -> Result<Vec<ArrayRef>> {
        let mut others = others.into_iter();
        (0..self.group_exprs.len())
            .map(|k| {
                if k == self.window.key {
                    Ok(window.to_array_of_size(n)?)
                } else {
                    others
                        .next()
                        .ok_or_else(|| DataFusionError::Internal("group keys missing".into()))
                }
            })
            .collect()
    }
}

impl Operator for UpdatingWindowAggregate {
    fn name(&self) -> &'static str {
        "WindowAggregate"
    }

    fn describe(&self) -> String {
        format!(
            "{} emit=on update",
            describe_aggregation(&self.group_exprs, &self.calls)
        )
    }

    fn process_chunk(&mut self, _input: usize, chunk: Chunk, out: &mut Vec<Message>) -> Result<()> {
        if !chunk.is_insert_only() {
            return Err(DataFusionError::Internal(
                "a window aggregation over an append-only input received a deletion".into(),
            ));
        }
        let batch = &chunk.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = self
            .group_exprs
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        let (args, filters) = call_inputs(&self.calls, batch)?;
        let (mut deletions, mut insertions) = (Vec::new(), Vec::new());
        for part in window_parts(&keys, self.window.key, &args, &filters, true)? {
            let rows = part.rows.as_ref();
            let change = self.update(
                part.window,
                &part.others,
                &part.args,
                &part.filters,
                part.count,
            )?;
            // Rows of the part back to rows of the chunk, for the keys.
            let in_chunk = |part_rows: &[u32]| -> Vec<u32> {
                match rows {
                    Some(rows) => part_rows.iter().map(|&r| rows.value(r as usize)).collect(),
                    None => part_rows.to_vec(),
                }
            };
            if !change.deleted_rows.is_empty() {
                deletions.push(self.output(
                    &keys,
                    &in_chunk(&change.deleted_rows),
                    change.deleted,
                )?);
            }
            if !change.inserted_rows.is_empty() {
                insertions.push(self.output(
                    &keys,
                    &in_chunk(&change.inserted_rows),
                    change.inserted,
                )?);
            }
        }
        let (deleted, inserted) = (
            deletions.iter().map(|b| b.num_rows()).sum::<usize>(),
            insertions.iter().map(|b| b.num_rows()).sum::<usize>(),
        );
        if deleted + inserted == 0 {
            return Ok(());
        }
        let batches: Vec<RecordBatch> = deletions.into_iter().chain(insertions).collect();
        let batch = concat_batches(&self.output_schema, &batches)?;
        out.push(Message::Chunk(if deleted == 0 {
            Chunk::inserts(batch)
        } else {
            let mut ops = vec![Op::Delete.code(); deleted];
            ops.resize(deleted + inserted, Op::Insert.code());
            Chunk::new(batch, Int8Array::from(ops))
        }));
        Ok(())
    }

    /// Windows the watermark passed get no more rows: their groups, emitted
    /// as they changed, are dropped. Groups whose window is null never close,
    /// as in the row-per-group aggregation.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        if self.window.input_column == watermark.column {
            let open = self.windows.split_off(&Ordered(watermark.value.clone()));
            let closed = std::mem::replace(&mut self.windows, open);
            for (window, groups) in closed {
                if window.0.is_null() {
                    self.windows.insert(window, groups);
                }
            }
        }
        out.extend(forwarded_watermarks(&self.group_exprs, &watermark));
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.windows.values().map(|w| w.bytes).sum()
    }

    /// One row per group: its key, its row count, its accumulators' states
    /// (always the whole state: it is only the open windows').
    fn checkpoint(&mut self, _full: bool) -> Result<Option<StatePiece>> {
        let mut key_parts: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.group_exprs.len()];
        let mut counts: Vec<i64> = Vec::new();
        let mut state_parts: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.calls.len()];
        let mut windows = std::mem::take(&mut self.windows);
        for (window, groups) in windows.iter_mut() {
            let n = groups.len();
            let others = match &mut groups.keys {
                Some(values) => {
                    // Emitting the keys takes them out: intern them again,
                    // in the same order, so each keeps its group index.
                    let keys = values.emit(EmitTo::All)?;
                    values.clear_shrink(n);
                    values.intern(&keys, &mut groups.indices)?;
                    if groups.indices.iter().enumerate().any(|(i, g)| i != *g) {
                        return Err(DataFusionError::Internal(
                            "group keys came back in another order".into(),
                        ));
                    }
                    keys
                }
                None => Vec::new(),
            };
            for (part, key) in key_parts
                .iter_mut()
                .zip(self.key_columns(&window.0, others, n)?)
            {
                part.push(key);
            }
            counts.extend(&groups.rows);
            for (part, column) in state_parts.iter_mut().zip(&groups.columns) {
                part.extend(column.state()?);
            }
        }
        self.windows = windows;
        let concat_parts = |parts: Vec<ArrayRef>, data_type: &DataType| -> Result<ArrayRef> {
            if parts.is_empty() {
                return Ok(arrow::array::new_empty_array(data_type));
            }
            let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            Ok(concat(&parts)?)
        };
        let mut columns = Vec::new();
        for (i, parts) in key_parts.into_iter().enumerate() {
            let column = concat_parts(parts, self.output_schema.field(i).data_type())?;
            columns.push((format!("key_{i}"), column));
        }
        let rows = counts.len();
        columns.push((
            "rows".to_string(),
            Arc::new(Int64Array::from(counts)) as ArrayRef,
        ));
        for (i, (parts, call)) in state_parts.into_iter().zip(&self.calls).enumerate() {
            let data_type = call.function.field().data_type().clone();
            columns.push((format!("state_{i}"), concat_parts(parts, &data_type)?));
        }
        Ok(Some(StatePiece::Full(vec![state_batch(columns, rows)?])))
    }

    fn restore(&mut self, state: RecordBatch) -> Result<()> {
        let k = self.group_exprs.len();
        let columns = state.columns();
        let width: usize = self.widths.iter().sum();
        if columns.len() != k + 1 + width {
            return Err(state_error(
                "the saved aggregation state has another number of columns",
            ));
        }
        for saved in saved_windows(columns, k, self.window.key, true)? {
            let groups = self.groups(saved.window)?;
            groups.intern(&saved.others, saved.counts.len())?;
            for (&group, count) in groups.indices.iter().zip(saved.counts.values()) {
                groups.rows[group] += count;
            }
            let total = groups.len();
            for (column, state) in groups.columns.iter_mut().zip(&saved.states) {
                column.merge(std::slice::from_ref(state), &groups.indices, total)?;
            }
            groups.measure();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::Aggregate;
    use crate::operators::window_aggregate::tests::{Parts, call, input, parts_with};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use datafusion::functions_aggregate::{count, min_max, sum};

    /// `count(v)`, `sum(v)`, `max(v) FILTER (WHERE v > 3)`, `min(v)`
    /// grouped by `(k, t)` (`keyed`) or `t` alone, emitting on update.
    fn parts(keyed: bool) -> Parts {
        let calls = vec![
            call(count::count_udaf(), "n", false),
            call(sum::sum_udaf(), "s", false),
            call(min_max::max_udaf(), "m", true),
            call(min_max::min_udaf(), "l", false),
        ];
        parts_with(keyed, calls, false)
    }

    /// Runs `operator` over `messages`: per output chunk its rows as text
    /// with their operations, sorted (the order of changes to different
    /// groups within a chunk is free); watermarks as `wm <column>`.
    fn run(operator: &mut dyn Operator, messages: &[Message]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for message in messages {
            match message.clone() {
                Message::Chunk(chunk) => operator.process_chunk(0, chunk, &mut out),
                Message::Watermark(w) => operator.process_watermark(w, &mut out),
                _ => Ok(()),
            }
            .expect("process");
        }
        operator.finish(&mut out).expect("finish");
        let options = FormatOptions::default().with_null("null");
        out.iter()
            .filter_map(|message| match message {
                Message::Chunk(chunk) => {
                    let formatters: Vec<ArrayFormatter> = chunk
                        .batch
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("format"))
                        .collect();
                    let mut rows: Vec<String> = (0..chunk.batch.num_rows())
                        .map(|i| {
                            let op = if chunk.op(i) == Op::Delete { "-" } else { "+" };
                            let row: Vec<String> =
                                formatters.iter().map(|f| f.value(i).to_string()).collect();
                            format!("{op}{}", row.join(","))
                        })
                        .collect();
                    rows.sort();
                    Some(rows)
                }
                Message::Watermark(w) => Some(vec![format!("wm {}", w.column)]),
                _ => None,
            })
            .collect()
    }

    fn row_per_group(keyed: bool) -> Aggregate {
        let (keys, calls, schema, window) = parts(keyed);
        Aggregate::new(keys, calls, schema, Some(window), false).expect("aggregate")
    }

    fn columnar(keyed: bool) -> UpdatingWindowAggregate {
        let (keys, calls, schema, window) = parts(keyed);
        UpdatingWindowAggregate::new(keys, calls, schema, window).expect("aggregate")
    }

    /// The saved state of `operator`, whole.
    fn state(operator: &mut dyn Operator) -> Vec<RecordBatch> {
        match operator.checkpoint(true).expect("checkpoint") {
            Some(StatePiece::Full(states)) => states,
            _ => panic!("no full state"),
        }
    }

    #[test]
    fn emits_what_the_row_per_group_aggregation_emits() {
        for keyed in [true, false] {
            let (_, calls, _, window) = parts(keyed);
            assert!(UpdatingWindowAggregate::supports(
                &calls,
                Some(window),
                false
            ));
            let expected = run(&mut row_per_group(keyed), &input());
            let got = run(&mut columnar(keyed), &input());
            let deletions = expected.iter().flatten().filter(|r| r.starts_with('-'));
            assert!(deletions.count() > 10, "the input updates groups");
            assert_eq!(got, expected, "keyed: {keyed}");
        }
    }

    #[test]
    fn a_restored_state_goes_on_as_if_uninterrupted() {
        for keyed in [true, false] {
            let messages = input();
            let whole = run(&mut columnar(keyed), &messages);
            for cut in [1, 13, 40, 57] {
                let mut before = columnar(keyed);
                let head = run(&mut before, &messages[..cut]);
                let states = state(&mut before);
                assert_eq!(
                    [head.clone(), run(&mut before, &messages[cut..])].concat(),
                    whole,
                    "the operator itself goes on after its checkpoint"
                );
                let mut after = columnar(keyed);
                for state in states {
                    let half = state.num_rows() / 2;
                    after.restore(state.slice(0, half)).expect("restore");
                    after
                        .restore(state.slice(half, state.num_rows() - half))
                        .expect("restore");
                }
                let got = [head, run(&mut after, &messages[cut..])].concat();
                assert_eq!(got, whole, "keyed: {keyed}, cut at {cut}");
            }
        }
    }

    #[test]
    fn its_state_and_the_row_per_group_state_restore_into_each_other() {
        let messages = input();
        let whole = run(&mut row_per_group(true), &messages);
        // Row per group, then columnar.
        let mut first = row_per_group(true);
        let head = run(&mut first, &messages[..30]);
        let mut second = columnar(true);
        for state in state(&mut first) {
            second.restore(state).expect("restore");
        }
        let got = [head, run(&mut second, &messages[30..])].concat();
        assert_eq!(got, whole);
        // Columnar, then row per group.
        let mut first = columnar(true);
        let head = run(&mut first, &messages[..30]);
        let mut second = row_per_group(true);
        for state in state(&mut first) {
            second.restore(state).expect("restore");
        }
        let got = [head, run(&mut second, &messages[30..])].concat();
        assert_eq!(got, whole);
    }
}
