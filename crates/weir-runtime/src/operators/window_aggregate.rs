//! Windowed aggregation that emits on window close, with columnar state.
//!
//! Over an append-only input with `EMIT ON WINDOW CLOSE` (and under a
//! window join, which closes its sides' windows the same way), a window's
//! groups never change once emitted and are emitted all at once. So each
//! open window keeps its own groups, laid out as DataFusion's own hash
//! aggregation lays them out: the group keys other than the window interned
//! to group indices ([`GroupValues`]) and one typed vector per aggregate
//! ([`GroupsAccumulator`]). A chunk's rows are split by window and each part
//! updates its window's vectors in one call per aggregate; when the
//! watermark passes a window, its keys and values are taken out as Arrow
//! columns and the window's state is dropped whole.
//!
//! [`Aggregate`](super::Aggregate) (a row and boxed accumulators per group)
//! remains for inputs that retract, for results that update, and for
//! aggregate functions without a columnar form. Both write the same
//! checkpoint rows: the group keys, a row count, the accumulators' states.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{can_cast_types, cast, concat_batches, take, take_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::aggregate::{
    AggregateCall, Ordered, WindowClose, call_inputs, describe_aggregation, forwarded_watermarks,
};
use crate::checkpoint::{StatePiece, state_batch, state_error};
use crate::message::{Chunk, Message, Watermark};
use crate::operator::{Operator, Result};

/// Aggregate functions whose columnar state round-trips through a
/// checkpoint (`state`, then `merge_batch` into fresh accumulators).
const COLUMNAR: [&str; 5] = ["count", "sum", "min", "max", "avg"];

/// The groups of one open window.
struct WindowGroups {
    /// The window (the value of the window key).
    window: ScalarValue,
    /// The other group keys, interned; `None` when the window is the only
    /// key (one group).
    keys: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Rows per group.
    rows: Vec<i64>,
    /// Scratch: the group index of each row of the part being added.
    indices: Vec<usize>,
    bytes: usize,
}

impl WindowGroups {
    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Interns `keys` (one array per other key, `n` rows) into `self.indices`.
    fn intern(&mut self, keys: &[ArrayRef], n: usize) -> Result<()> {
        let groups = intern_groups(&mut self.keys, keys, n, self.rows.len(), &mut self.indices)?;
        self.rows.resize(groups, 0);
        Ok(())
    }

    /// Adds `n` rows: their other keys, and per call its arguments and
    /// `FILTER` mask.
    fn update(
        &mut self,
        keys: &[ArrayRef],
        args: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
        n: usize,
    ) -> Result<()> {
        self.intern(keys, n)?;
        for &group in &self.indices {
            self.rows[group] += 1;
        }
        let groups = self.len();
        for ((accumulator, args), filter) in self.accumulators.iter_mut().zip(args).zip(filters) {
            accumulator.update_batch(args, &self.indices, filter.as_ref(), groups)?;
        }
        self.measure();
        Ok(())
    }

    /// Merges saved groups: their other keys, row counts and states
    /// (`widths[j]` columns for call `j`).
    fn merge(
        &mut self,
        keys: &[ArrayRef],
        rows: &Int64Array,
        states: &[ArrayRef],
        widths: &[usize],
    ) -> Result<()> {
        self.intern(keys, rows.len())?;
        for (&group, count) in self.indices.iter().zip(rows.values()) {
            self.rows[group] += count;
        }
        let groups = self.len();
        let mut at = 0;
        for (accumulator, &width) in self.accumulators.iter_mut().zip(widths) {
            let Some(columns) = states.get(at..at + width) else {
                return Err(state_error("the saved state has too few columns"));
            };
            accumulator.merge_batch(columns, &self.indices, groups)?;
            at += width;
        }
        self.measure();
        Ok(())
    }

    fn measure(&mut self) {
        self.bytes = self.keys.as_ref().map_or(0, |k| k.size())
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
            + self.rows.capacity() * 8
            + self.indices.capacity() * 8;
    }

    /// Takes every group out: the other keys' columns, then per call its
    /// values (`final_values`) or its state columns; leaves no group.
    fn take(&mut self, final_values: bool) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>, Vec<i64>)> {
        let n = self.len();
        let keys = match &mut self.keys {
            Some(values) => {
                let keys = values.emit(EmitTo::All)?;
                // Emitting all leaves the hash table to the caller to clear.
                values.clear_shrink(n);
                keys
            }
            None => Vec::new(),
        };
        let mut values = Vec::new();
        for accumulator in &mut self.accumulators {
            if final_values {
                values.push(accumulator.evaluate(EmitTo::All)?);
            } else {
                values.extend(accumulator.state(EmitTo::All)?);
            }
        }
        Ok((keys, values, std::mem::take(&mut self.rows)))
    }
}

/// Windowed aggregation with `EMIT ON WINDOW CLOSE` over an append-only
/// input, state kept per window in columns.
pub struct WindowAggregate {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    calls: Vec<AggregateCall>,
    output_schema: SchemaRef,
    window: WindowClose,
    /// The schema of the group keys other than the window.
    others: SchemaRef,
    /// Orders emitted groups by their keys, as [`Aggregate`](super::Aggregate)
    /// emits them.
    converter: RowConverter,
    windows: BTreeMap<Ordered, WindowGroups>,
    /// State columns per call.
    widths: Vec<usize>,
}

impl WindowAggregate {
    /// Whether the aggregation can run here: an append-only input, groups
    /// that close on a window and emit then, and aggregate functions with a
    /// columnar form whose state can be saved.
    pub fn supports(
        calls: &[AggregateCall],
        output_schema: &SchemaRef,
        window: Option<WindowClose>,
        retracting: bool,
    ) -> bool {
        let Some(window) = window else {
            return false;
        };
        window.emit_on_close
            && !retracting
            && can_cast_types(
                output_schema.field(window.key).data_type(),
                &DataType::Int64,
            )
            && calls.iter().all(|call| {
                !call.function.is_distinct()
                    && COLUMNAR.contains(&call.function.fun().name())
                    && call.function.groups_accumulator_supported()
                    && call.function.create_groups_accumulator().is_ok()
            })
    }

    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        calls: Vec<AggregateCall>,
        output_schema: SchemaRef,
        window: WindowClose,
    ) -> Result<Self> {
        let key_fields: Vec<Field> = (0..group_exprs.len())
            .map(|i| output_schema.field(i).clone())
            .collect();
        let others = Arc::new(Schema::new(
            key_fields
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != window.key)
                .map(|(_, f)| f.clone())
                .collect::<Vec<_>>(),
        ));
        let converter = RowConverter::new(
            key_fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let widths = calls
            .iter()
            .map(|c| Ok(c.function.state_fields()?.len()))
            .collect::<Result<Vec<_>>>()?;
        Ok(WindowAggregate {
            group_exprs,
            calls,
            output_schema,
            window,
            others,
            converter,
            windows: BTreeMap::new(),
            widths,
        })
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
            let accumulators = self
                .calls
                .iter()
                .map(|c| c.function.create_groups_accumulator())
                .collect::<Result<Vec<_>>>()?;
            let groups = WindowGroups {
                window: key.0.clone(),
                keys,
                accumulators,
                rows: Vec::new(),
                indices: Vec::new(),
                bytes: 0,
            };
            self.windows.insert(key.clone(), groups);
        }
        self.windows
            .get_mut(&key)
            .ok_or_else(|| DataFusionError::Internal("window groups vanished".into()))
    }

    /// The full key columns of `groups` (`n` of them), given its other keys.
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

    /// Emits (with `emit`) and drops the groups of the windows below
    /// `below`, or of every window.
    fn close_windows(&mut self, below: Option<ScalarValue>, out: &mut Vec<Message>) -> Result<()> {
        let closing = match below {
            Some(value) => {
                let open = self.windows.split_off(&Ordered(value));
                std::mem::replace(&mut self.windows, open)
            }
            None => std::mem::take(&mut self.windows),
        };
        let mut batches = Vec::with_capacity(closing.len());
        for (_, mut groups) in closing {
            let n = groups.len();
            if n == 0 {
                continue;
            }
            let (others, values, _) = groups.take(true)?;
            let mut columns = self.key_columns(&groups.window, others, n)?;
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
            batches.push(RecordBatch::try_new(self.output_schema.clone(), columns)?);
        }
        if batches.is_empty() {
            return Ok(());
        }
        let batch = concat_batches(&self.output_schema, &batches)?;
        // In the order of their keys, as one window's groups are emitted by
        // the row-per-group aggregation.
        let rows = self
            .converter
            .convert_columns(&batch.columns()[..self.group_exprs.len()])?;
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        order.sort_unstable_by(|a, b| rows.row(*a as usize).cmp(&rows.row(*b as usize)));
        let batch = take_record_batch(&batch, &UInt32Array::from(order))?;
        out.push(Message::Chunk(Chunk::inserts(batch)));
        Ok(())
    }
}

/// The rows of `column` per distinct value, in order of first appearance:
/// the first row of each, and its rows (`None` when they are all the
/// rows). Null rows are one part more `with_nulls`, else left out.
pub(crate) fn split_by_value(
    column: &ArrayRef,
    with_nulls: bool,
) -> Result<Vec<(usize, Option<UInt32Array>)>> {
    let n = column.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let values = cast(column, &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>();
    if values.null_count() == 0 {
        let first = values.value(0);
        if values.values().iter().all(|v| *v == first) {
            return Ok(vec![(0, None)]);
        }
    }
    // Few distinct windows per chunk: a short list beats a hash map.
    let mut parts: Vec<(Option<i64>, usize, Vec<u32>)> = Vec::new();
    let mut last = 0;
    for i in 0..n {
        let value = values.is_valid(i).then(|| values.value(i));
        if value.is_none() && !with_nulls {
            continue;
        }
        if parts.get(last).is_none_or(|p| p.0 != value) {
            match parts.iter().position(|p| p.0 == value) {
                Some(at) => last = at,
                None => {
                    parts.push((value, i, Vec::new()));
                    last = parts.len() - 1;
                }
            }
        }
        parts[last].2.push(i as u32);
    }
    if let [(_, 0, rows)] = parts.as_slice()
        && rows.len() == n
    {
        return Ok(vec![(0, None)]);
    }
    Ok(parts
        .into_iter()
        .map(|(_, first, rows)| (first, Some(UInt32Array::from(rows))))
        .collect())
}

/// The rows of one window in a chunk: the window, its rows of the chunk
/// (`None`: all of them), and their other group keys, per call its
/// arguments and `FILTER` mask.
pub(crate) struct WindowPart {
    pub(crate) window: ScalarValue,
    pub(crate) rows: Option<UInt32Array>,
    pub(crate) count: usize,
    pub(crate) others: Vec<ArrayRef>,
    pub(crate) args: Vec<Vec<ArrayRef>>,
    pub(crate) filters: Vec<Option<BooleanArray>>,
}

/// A chunk's rows split by the value of the window key `window_key` of
/// `keys` (see [`split_by_value`] for `with_nulls`).
pub(crate) fn window_parts(
    keys: &[ArrayRef],
    window_key: usize,
    args: &[Vec<ArrayRef>],
    filters: &[Option<BooleanArray>],
    with_nulls: bool,
) -> Result<Vec<WindowPart>> {
    let window_column = &keys[window_key];
    let n = window_column.len();
    split_by_value(window_column, with_nulls)?
        .into_iter()
        .map(|(first, rows)| {
            let picked = rows.as_ref();
            let others = keys
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != window_key)
                .map(|(_, key)| pick(key, picked))
                .collect::<Result<Vec<_>>>()?;
            let args = args
                .iter()
                .map(|call| call.iter().map(|a| pick(a, picked)).collect())
                .collect::<Result<Vec<Vec<_>>>>()?;
            let filters = filters
                .iter()
                .map(|f| match (f, picked) {
                    (Some(f), Some(rows)) => Ok(Some(take(f, rows, None)?.as_boolean().clone())),
                    (f, _) => Ok(f.clone()),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(WindowPart {
                window: ScalarValue::try_from_array(window_column, first)?,
                count: picked.map_or(n, |r| r.len()),
                rows,
                others,
                args,
                filters,
            })
        })
        .collect()
}

/// Interns the other group keys of `n` rows (`keys`, one array per key)
/// into `indices`, the group of each row, and returns the number of groups.
/// With no other key (`values` is `None`) the window has one group, once
/// any row came (`existing` groups before these rows).
pub(crate) fn intern_groups(
    values: &mut Option<Box<dyn GroupValues>>,
    keys: &[ArrayRef],
    n: usize,
    existing: usize,
    indices: &mut Vec<usize>,
) -> Result<usize> {
    match values {
        Some(values) => {
            values.intern(keys, indices)?;
            Ok(values.len())
        }
        None => {
            indices.clear();
            indices.resize(n, 0);
            Ok(usize::from(n > 0 || existing > 0))
        }
    }
}

/// One window's groups in a saved aggregation state (rows of group keys,
/// the row count, then the accumulators' state columns).
pub(crate) struct SavedWindow {
    pub window: ScalarValue,
    /// The group keys other than the window.
    pub others: Vec<ArrayRef>,
    pub counts: Int64Array,
    pub states: Vec<ArrayRef>,
}

/// The saved state's rows (`keys` group-key columns, the window's at
/// `window_key`, then the counts and the states), window by window; rows
/// with a NULL window among them if `with_nulls`.
pub(crate) fn saved_windows(
    columns: &[ArrayRef],
    keys: usize,
    window_key: usize,
    with_nulls: bool,
) -> Result<Vec<SavedWindow>> {
    let window_column = &columns[window_key];
    split_by_value(window_column, with_nulls)?
        .into_iter()
        .map(|(first, rows)| {
            let rows = rows.as_ref();
            let others = (0..keys)
                .filter(|&i| i != window_key)
                .map(|i| pick(&columns[i], rows))
                .collect::<Result<Vec<_>>>()?;
            let counts = pick(&columns[keys], rows)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| state_error("the saved row counts are not integers"))?
                .clone();
            let states = columns[keys + 1..]
                .iter()
                .map(|c| pick(c, rows))
                .collect::<Result<Vec<_>>>()?;
            Ok(SavedWindow {
                window: ScalarValue::try_from_array(window_column, first)?,
                others,
                counts,
                states,
            })
        })
        .collect()
}

/// `array` at `rows` (all of it for `None`).
pub(crate) fn pick(array: &ArrayRef, rows: Option<&UInt32Array>) -> Result<ArrayRef> {
    match rows {
        Some(rows) => Ok(take(array.as_ref(), rows, None)?),
        None => Ok(array.clone()),
    }
}

impl Operator for WindowAggregate {
    fn name(&self) -> &'static str {
        "WindowAggregate"
    }

    fn describe(&self) -> String {
        format!(
            "{} emit=on window close",
            describe_aggregation(&self.group_exprs, &self.calls)
        )
    }

    fn process_chunk(
        &mut self,
        _input: usize,
        chunk: Chunk,
        _out: &mut Vec<Message>,
    ) -> Result<()> {
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
        // Rows whose window is null belong to no window that closes; the
        // row-per-group aggregation never emits them either.
        for part in window_parts(&keys, self.window.key, &args, &filters, false)? {
            self.groups(part.window)?.update(
                &part.others,
                &part.args,
                &part.filters,
                part.count,
            )?;
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        if self.window.input_column == watermark.column {
            self.close_windows(Some(watermark.value.clone()), out)?;
        }
        out.extend(forwarded_watermarks(&self.group_exprs, &watermark));
        Ok(())
    }

    /// At the end of the input every open window is final.
    fn finish(&mut self, out: &mut Vec<Message>) -> Result<()> {
        self.close_windows(None, out)
    }

    fn state_bytes(&self) -> usize {
        self.windows.values().map(|w| w.bytes).sum()
    }

    /// One row per group: its key, its row count, its accumulators' states
    /// (always the whole state: it is only the open windows').
    fn checkpoint(&mut self, _full: bool) -> Result<Option<StatePiece>> {
        let mut key_columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.group_exprs.len()];
        let mut counts: Vec<Vec<i64>> = Vec::new();
        let mut state_columns: Vec<Vec<ArrayRef>> = Vec::new();
        let windows = std::mem::take(&mut self.windows);
        for (key, mut groups) in windows {
            let n = groups.len();
            let (others, states, rows) = groups.take(false)?;
            // Taking the state empties the window's groups: put them back.
            groups.merge(
                &others,
                &Int64Array::from(rows.clone()),
                &states,
                &self.widths,
            )?;
            let keys = self.key_columns(&groups.window, others, n)?;
            for (column, key) in key_columns.iter_mut().zip(keys) {
                column.push(key);
            }
            counts.push(rows);
            if state_columns.is_empty() {
                state_columns = vec![Vec::new(); states.len()];
            }
            for (column, state) in state_columns.iter_mut().zip(states) {
                column.push(state);
            }
            self.windows.insert(key, groups);
        }
        let concat = |parts: Vec<ArrayRef>, data_type: &DataType| -> Result<ArrayRef> {
            if parts.is_empty() {
                return Ok(arrow::array::new_empty_array(data_type));
            }
            let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            Ok(arrow::compute::concat(&parts)?)
        };
        let mut columns = Vec::new();
        let mut rows = 0;
        for (i, parts) in key_columns.into_iter().enumerate() {
            let column = concat(parts, self.output_schema.field(i).data_type())?;
            rows = column.len();
            columns.push((format!("key_{i}"), column));
        }
        let counts: Int64Array = counts.into_iter().flatten().collect();
        rows = rows.max(counts.len());
        columns.push(("rows".to_string(), Arc::new(counts) as ArrayRef));
        let state_types: Vec<DataType> = self
            .calls
            .iter()
            .map(|c| c.function.state_fields())
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .map(|f| f.data_type().clone())
            .collect();
        if state_columns.is_empty() {
            state_columns = vec![Vec::new(); state_types.len()];
        }
        for (i, (parts, data_type)) in state_columns.into_iter().zip(&state_types).enumerate() {
            columns.push((format!("state_{i}"), concat(parts, data_type)?));
        }
        Ok(Some(StatePiece::Full(vec![state_batch(columns, rows)?])))
    }

    fn restore(&mut self, state: RecordBatch) -> Result<()> {
        let k = self.group_exprs.len();
        let columns = state.columns();
        if columns.len() <= k {
            return Err(state_error(
                "the saved aggregation state has too few columns",
            ));
        }
        for saved in saved_windows(columns, k, self.window.key, false)? {
            let widths = self.widths.clone();
            self.groups(saved.window)?.merge(
                &saved.others,
                &saved.counts,
                &saved.states,
                &widths,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::operators::Aggregate;
    use arrow::array::TimestampMicrosecondArray;
    use arrow::datatypes::TimeUnit;
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use datafusion::functions_aggregate::{average, count, min_max, sum};
    use datafusion::logical_expr::AggregateUDF;
    use datafusion::logical_expr::Operator as BinaryOperator;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::{Column, Literal, binary, cast};

    /// Rows `(k, t, v)`: a key, a window start in microseconds, a value.
    pub(crate) fn input_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    pub(crate) fn call(udaf: Arc<AggregateUDF>, name: &str, filtered: bool) -> AggregateCall {
        let schema = input_schema();
        let v: Arc<dyn PhysicalExpr> = Arc::new(Column::new("v", 2));
        // avg takes a double, as DataFusion's type coercion casts it.
        let argument = if name == "a" {
            cast(v, &schema, DataType::Float64).expect("cast")
        } else {
            v
        };
        let function = AggregateExprBuilder::new(udaf, vec![argument])
            .schema(schema.clone())
            .alias(name)
            .build()
            .expect("aggregate");
        // FILTER (WHERE v > 3)
        let filter = filtered.then(|| {
            binary(
                Arc::new(Column::new("v", 2)),
                BinaryOperator::Gt,
                Arc::new(Literal::new(ScalarValue::Int64(Some(3)))),
                &schema,
            )
            .expect("filter")
        });
        AggregateCall {
            function: Arc::new(function),
            filter,
        }
    }

    /// The parts of an aggregation: its keys, calls, output schema and
    /// window. `calls` grouped by `(k, t)` (`keyed`) or `t` alone, `t` a
    /// window closing on its watermark, emitting then (`emit_on_close`) or
    /// on update.
    pub(crate) type Parts = (
        Vec<Arc<dyn PhysicalExpr>>,
        Vec<AggregateCall>,
        SchemaRef,
        WindowClose,
    );

    pub(crate) fn parts_with(keyed: bool, calls: Vec<AggregateCall>, emit_on_close: bool) -> Parts {
        let mut keys: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        let mut fields = Vec::new();
        if keyed {
            keys.push(Arc::new(Column::new("k", 0)));
            fields.push(input_schema().field(0).clone());
        }
        keys.push(Arc::new(Column::new("t", 1)));
        fields.push(input_schema().field(1).clone());
        for call in &calls {
            fields.push(call.function.field().as_ref().clone());
        }
        let window = WindowClose {
            key: usize::from(keyed),
            input_column: 1,
            emit_on_close,
        };
        (keys, calls, Arc::new(Schema::new(fields)), window)
    }

    /// `count(v)`, `sum(v)`, `max(v) FILTER (WHERE v > 3)`, `avg(v)`,
    /// emitting on window close.
    fn parts(keyed: bool) -> Parts {
        let calls = vec![
            call(count::count_udaf(), "n", false),
            call(sum::sum_udaf(), "s", false),
            call(min_max::max_udaf(), "m", true),
            call(average::avg_udaf(), "a", false),
        ];
        parts_with(keyed, calls, true)
    }

    /// Deterministic pseudo-random numbers from `seed`: each call gives
    /// one below its argument.
    pub(crate) fn numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        }
    }

    /// A deterministic input: chunks of rows over a few keys (some null)
    /// and windows, out of order within a bound, each chunk followed by a
    /// watermark.
    pub(crate) fn input() -> Vec<Message> {
        let mut next = numbers(7);
        let mut messages = Vec::new();
        for chunk in 0..40i64 {
            let n = 1 + next(60) as usize;
            let (mut k, mut t, mut v) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..n {
                k.push((next(8) != 0).then(|| next(12) as i64));
                t.push((chunk / 4 + next(3) as i64) * 1000);
                v.push((next(10) != 0).then(|| next(100) as i64 - 20));
            }
            let batch = RecordBatch::try_new(
                input_schema(),
                vec![
                    Arc::new(Int64Array::from(k)),
                    Arc::new(TimestampMicrosecondArray::from(t)),
                    Arc::new(Int64Array::from(v)),
                ],
            )
            .expect("batch");
            messages.push(Message::Chunk(Chunk::inserts(batch)));
            messages.push(Message::Watermark(Watermark {
                column: 1,
                value: ScalarValue::TimestampMicrosecond(Some(chunk / 4 * 1000), None),
            }));
        }
        messages
    }

    /// Runs `operator` over `messages` (then its end, with `finish`).
    fn run(operator: &mut dyn Operator, messages: &[Message], finish: bool) -> Vec<String> {
        let mut out = Vec::new();
        for message in messages {
            match message.clone() {
                Message::Chunk(chunk) => operator.process_chunk(0, chunk, &mut out),
                Message::Watermark(w) => operator.process_watermark(w, &mut out),
                _ => Ok(()),
            }
            .expect("process");
        }
        if finish {
            operator.finish(&mut out).expect("finish");
        }
        rows(&out)
    }

    /// The output rows, in order, as text; watermarks as `wm <column>`.
    fn rows(out: &[Message]) -> Vec<String> {
        let options = FormatOptions::default().with_null("null");
        let mut rows = Vec::new();
        for message in out {
            match message {
                Message::Chunk(chunk) => {
                    assert!(chunk.is_insert_only());
                    let formatters: Vec<ArrayFormatter> = chunk
                        .batch
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("format"))
                        .collect();
                    for i in 0..chunk.batch.num_rows() {
                        let row: Vec<String> =
                            formatters.iter().map(|f| f.value(i).to_string()).collect();
                        rows.push(row.join(","));
                    }
                }
                Message::Watermark(w) => rows.push(format!("wm {}", w.column)),
                _ => {}
            }
        }
        rows
    }

    #[test]
    fn emits_what_the_row_per_group_aggregation_emits() {
        for keyed in [true, false] {
            let (keys, calls, schema, window) = parts(keyed);
            assert!(WindowAggregate::supports(
                &calls,
                &schema,
                Some(window),
                false
            ));
            let mut rows_per_group = Aggregate::new(
                keys.clone(),
                calls.clone(),
                schema.clone(),
                Some(window),
                false,
            )
            .expect("aggregate");
            let mut columnar =
                WindowAggregate::new(keys, calls, schema, window).expect("aggregate");
            let expected = run(&mut rows_per_group, &input(), true);
            let got = run(&mut columnar, &input(), true);
            assert!(expected.iter().filter(|r| !r.starts_with("wm")).count() > 10);
            assert_eq!(got, expected, "keyed: {keyed}");
        }
    }

    #[test]
    fn a_restored_state_goes_on_as_if_uninterrupted() {
        for keyed in [true, false] {
            let (keys, calls, schema, window) = parts(keyed);
            let new = || {
                WindowAggregate::new(keys.clone(), calls.clone(), schema.clone(), window)
                    .expect("aggregate")
            };
            let messages = input();
            let whole = run(&mut new(), &messages, true);
            for cut in [1, 13, 40, 57] {
                let mut before = new();
                let mut got = run(&mut before, &messages[..cut], false);
                let Some(StatePiece::Full(states)) = before.checkpoint(false).expect("checkpoint")
                else {
                    panic!("no full state");
                };
                // The state was put back: the operator itself goes on too.
                assert_eq!(
                    [got.clone(), run(&mut before, &messages[cut..], true)].concat(),
                    whole
                );
                // And so does a fresh one from the saved rows, whether the
                // state was taken whole or in two halves.
                let mut after = new();
                for state in states {
                    let half = state.num_rows() / 2;
                    after.restore(state.slice(0, half)).expect("restore");
                    after
                        .restore(state.slice(half, state.num_rows() - half))
                        .expect("restore");
                }
                got.extend(run(&mut after, &messages[cut..], true));
                assert_eq!(got, whole, "keyed: {keyed}, cut at {cut}");
            }
        }
    }

    #[test]
    fn its_state_restores_into_the_row_per_group_aggregation() {
        let (keys, calls, schema, window) = parts(true);
        let messages = input();
        let new = || {
            WindowAggregate::new(keys.clone(), calls.clone(), schema.clone(), window)
                .expect("aggregate")
        };
        let whole = run(&mut new(), &messages, true);
        let mut columnar = new();
        let mut got = run(&mut columnar, &messages[..30], false);
        let Some(StatePiece::Full(states)) = columnar.checkpoint(true).expect("checkpoint") else {
            panic!("no full state");
        };
        let mut rows_per_group = Aggregate::new(
            keys.clone(),
            calls.clone(),
            schema.clone(),
            Some(window),
            false,
        )
        .expect("aggregate");
        for state in states {
            rows_per_group.restore(state).expect("restore");
        }
        got.extend(run(&mut rows_per_group, &messages[30..], true));
        assert_eq!(got, whole);
    }
}
