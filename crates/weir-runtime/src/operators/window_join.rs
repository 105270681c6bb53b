//! Window join: a join of two inputs that includes an equality of their
//! event-time keys (`window_start` of windows over streams with watermarks,
//! as in Nexmark q5, q7 and q8), evaluated once per key value, when the
//! watermark of both sides has passed it.
//!
//! Each side's changes are kept per value of its time key. When the
//! combined watermark (the least of both sides': the driver combines them
//! on one column, see [`Operator::watermark_column`]) passes a value, no
//! change with that value can come any more. The rows of each side are then
//! consolidated (insertions less deletions, so that an updating aggregate
//! below is seen at its final value), joined by hash on the equality keys,
//! filtered by the rest of the join condition, padded with NULLs for outer
//! joins, and emitted as insertions; the key's rows are dropped. The output
//! is append-only and final, like an aggregate's with `EMIT ON WINDOW
//! CLOSE`. When both inputs end, every key left is joined and emitted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int8Array, RecordBatch, UInt32Array,
    make_comparator, new_null_array,
};
use arrow::compute::SortOptions;
use arrow::compute::{concat_batches, take, take_record_batch};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef, UInt32Type};
use arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::error::DataFusionError;
use datafusion::physical_expr::PhysicalExpr;

use super::window::{timestamp_value, timestamps};
use crate::checkpoint::StatePiece;
use crate::message::{Chunk, Message, Watermark};
use crate::operator::{Operator, Result};

/// What a join emits: pairs (with the rows of a side without a partner,
/// for outer joins), or the rows of one side with a partner (semi) or
/// without (anti).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    LeftSemi,
    RightSemi,
    LeftAnti,
    RightAnti,
}

impl JoinKind {
    /// For joins that emit pairs: whether the rows of `side` without a
    /// partner are emitted too.
    fn keeps_unmatched(self, side: usize) -> bool {
        match self {
            JoinKind::Left => side == 0,
            JoinKind::Right => side == 1,
            JoinKind::Full => true,
            _ => false,
        }
    }

    /// For joins that emit one side's rows: that side, and whether the rows
    /// with a partner (semi) or those without (anti) are emitted.
    pub fn one_side(self) -> Option<(usize, bool)> {
        match self {
            JoinKind::LeftSemi => Some((0, true)),
            JoinKind::RightSemi => Some((1, true)),
            JoinKind::LeftAnti => Some((0, false)),
            JoinKind::RightAnti => Some((1, false)),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            JoinKind::Inner => "inner",
            JoinKind::Left => "left",
            JoinKind::Right => "right",
            JoinKind::Full => "full",
            JoinKind::LeftSemi => "left semi",
            JoinKind::RightSemi => "right semi",
            JoinKind::LeftAnti => "left anti",
            JoinKind::RightAnti => "right anti",
        }
    }
}

/// One input of a join.
#[derive(Debug, Clone)]
pub struct JoinSide {
    pub schema: SchemaRef,
    /// The equality keys over this side's rows, pair by pair with the
    /// other side's.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The column of the event-time key (a timestamp with a watermark).
    pub time: usize,
}

/// The window join of two inputs (0: left, 1: right).
pub struct WindowJoin {
    kind: JoinKind,
    sides: [JoinSide; 2],
    /// The join condition beyond the equalities, over the pairs (the
    /// columns of both sides).
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// The columns of both sides, as the filter sees them.
    pairs_schema: SchemaRef,
    /// NULL keys match each other (`IS NOT DISTINCT FROM`).
    nulls_equal: bool,
    output_schema: SchemaRef,
    /// Each side's changes by time key (NULL times first, as `i64::MIN`).
    pending: [BTreeMap<i64, Vec<Chunk>>; 2],
    bytes: usize,
    /// Keys below this were emitted.
    closed: Option<i64>,
}

impl WindowJoin {
    pub fn new(
        kind: JoinKind,
        sides: [JoinSide; 2],
        filter: Option<Arc<dyn PhysicalExpr>>,
        nulls_equal: bool,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        if sides[0].keys.len() != sides[1].keys.len() {
            return Err(DataFusionError::Internal(
                "a join needs as many keys on both sides".into(),
            ));
        }
        let pairs_schema = Arc::new(Schema::new(
            sides[0]
                .schema
                .fields()
                .iter()
                .chain(sides[1].schema.fields())
                .cloned()
                .collect::<Vec<_>>(),
        ));
        Ok(WindowJoin {
            kind,
            sides,
            filter,
            pairs_schema,
            nulls_equal,
            output_schema,
            pending: [BTreeMap::new(), BTreeMap::new()],
            bytes: 0,
            closed: None,
        })
    }

    /// Files a side's rows under their time keys.
    fn keep(&mut self, side: usize, chunk: Chunk) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let times = timestamps(chunk.batch.column(self.sides[side].time))?;
        let key = |t: &Option<i64>| t.unwrap_or(i64::MIN);
        let first = key(&times[0]);
        let mut parts: Vec<(i64, Chunk)> = Vec::new();
        if times.iter().all(|t| key(t) == first) {
            parts.push((first, chunk));
        } else {
            let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
            for (row, t) in times.iter().enumerate() {
                rows.entry(key(t)).or_default().push(row as u32);
            }
            for (time, rows) in rows {
                parts.push((time, chunk.take(&UInt32Array::from(rows))?));
            }
        }
        for (time, part) in parts {
            if self.closed.is_some_and(|closed| time < closed) {
                // The watermark promised no such row: the time key comes
                // from a watermarked column, whose late rows were diverted.
                return Err(DataFusionError::Internal(format!(
                    "a window join received a row behind the watermark (time key {time})"
                )));
            }
            self.bytes += part.batch.get_array_memory_size();
            self.pending[side].entry(time).or_default().push(part);
        }
        Ok(())
    }

    /// Joins and emits every key below `bound` (every key without one).
    fn close(&mut self, bound: Option<i64>, out: &mut Vec<Message>) -> Result<()> {
        let mut closed: [BTreeMap<i64, Vec<Chunk>>; 2] = Default::default();
        for (side, pending) in self.pending.iter_mut().enumerate() {
            closed[side] = match bound {
                Some(bound) => {
                    let open = pending.split_off(&bound);
                    std::mem::replace(pending, open)
                }
                None => std::mem::take(pending),
            };
        }
        if let Some(bound) = bound {
            self.closed = Some(self.closed.map_or(bound, |c| c.max(bound)));
        }
        let [mut left, mut right] = closed;
        let mut times: Vec<i64> = left.keys().chain(right.keys()).copied().collect();
        times.sort_unstable();
        times.dedup();
        let mut batches = Vec::new();
        for time in times {
            let l = left.remove(&time).unwrap_or_default();
            let r = right.remove(&time).unwrap_or_default();
            for chunk in l.iter().chain(&r) {
                self.bytes = self
                    .bytes
                    .saturating_sub(chunk.batch.get_array_memory_size());
            }
            let r = concat_batches(
                &self.sides[1].schema,
                &consolidate(&self.sides[1].schema, r)?,
            )?;
            let mut l = consolidate(&self.sides[0].schema, l)?;
            // The left rows join batch by batch, unless what is emitted of
            // the right rows depends on all of them.
            if self.kind.keeps_unmatched(1) || self.kind.one_side().is_some_and(|(s, _)| s == 1) {
                l = vec![concat_batches(&self.sides[0].schema, &l)?];
            }
            for l in &l {
                if let Some(batch) = self.join(l, &r)? {
                    batches.push(batch);
                }
            }
        }
        if !batches.is_empty() {
            let batch = concat_batches(&self.output_schema, &batches)?;
            if batch.num_rows() > 0 {
                out.push(Message::Chunk(Chunk::inserts(batch)));
            }
        }
        Ok(())
    }

    /// The join of the final rows of one time key.
    fn join(&self, left: &RecordBatch, right: &RecordBatch) -> Result<Option<RecordBatch>> {
        let (mut li, mut ri) = (Vec::new(), Vec::new());
        if left.num_rows() > 0 && right.num_rows() > 0 {
            let lk = evaluate(&self.sides[0].keys, left)?;
            let rk = evaluate(&self.sides[1].keys, right)?;
            (li, ri) = equal_keys(
                (&lk, left.num_rows()),
                (&rk, right.num_rows()),
                self.nulls_equal,
            )?;
        }
        let mut li = UInt32Array::from(li);
        let mut ri = UInt32Array::from(ri);
        let mut pairs = self.pairs(left, right, &li, &ri)?;
        if let Some(filter) = &self.filter
            && pairs.num_rows() > 0
        {
            let mask = filter.evaluate(&pairs)?.into_array(pairs.num_rows())?;
            let mask = mask.as_boolean();
            // NULL is not true.
            let mask = match mask.nulls() {
                Some(nulls) => BooleanArray::new(mask.values() & nulls.inner(), None),
                None => mask.clone(),
            };
            pairs = arrow::compute::filter_record_batch(&pairs, &mask)?;
            li = arrow::compute::filter(&li, &mask)?
                .as_primitive::<UInt32Type>()
                .clone();
            ri = arrow::compute::filter(&ri, &mask)?
                .as_primitive::<UInt32Type>()
                .clone();
        }
        if let Some((side, matched)) = self.kind.one_side() {
            let (batch, indices) = if side == 0 { (left, &li) } else { (right, &ri) };
            let rows = rows_where(batch.num_rows(), indices, matched);
            if rows.is_empty() {
                return Ok(None);
            }
            let batch = take_record_batch(batch, &rows)?;
            return Ok(Some(RecordBatch::try_new_with_options(
                self.output_schema.clone(),
                batch.columns().to_vec(),
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )?));
        }
        let pairs = RecordBatch::try_new_with_options(
            self.output_schema.clone(),
            pairs.columns().to_vec(),
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(pairs.num_rows())),
        )?;
        let mut parts = vec![pairs];
        for (side, (batch, matched)) in [(left, &li), (right, &ri)].into_iter().enumerate() {
            if !self.kind.keeps_unmatched(side) {
                continue;
            }
            let alone = rows_where(batch.num_rows(), matched, false);
            if !alone.is_empty() {
                parts.push(self.padded(side, batch, &alone)?);
            }
        }
        let batch = concat_batches(&self.output_schema, &parts)?;
        Ok((batch.num_rows() > 0).then_some(batch))
    }

    /// The pairs `(left[li[i]], right[ri[i]])`, with the columns of both.
    fn pairs(
        &self,
        left: &RecordBatch,
        right: &RecordBatch,
        li: &UInt32Array,
        ri: &UInt32Array,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.pairs_schema.fields().len());
        for (batch, indices) in [(left, li), (right, ri)] {
            for column in batch.columns() {
                columns.push(take(column.as_ref(), indices, None)?);
            }
        }
        Ok(RecordBatch::try_new_with_options(
            self.pairs_schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(li.len())),
        )?)
    }

    /// Output rows of one side's rows at `rows`, NULLs for the other side.
    fn padded(&self, side: usize, batch: &RecordBatch, rows: &UInt32Array) -> Result<RecordBatch> {
        let n = rows.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        for s in 0..2 {
            if s == side {
                for column in batch.columns() {
                    columns.push(take(column.as_ref(), rows, None)?);
                }
            } else {
                for field in self.sides[s].schema.fields() {
                    columns.push(new_null_array(field.data_type(), n));
                }
            }
        }
        Ok(RecordBatch::try_new_with_options(
            self.output_schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }

    /// The output columns that carry the watermark: the time columns of
    /// the sides whose columns the output has.
    pub fn output_time_columns(kind: JoinKind, sides: &[JoinSide; 2]) -> Vec<usize> {
        match kind.one_side() {
            Some((side, _)) => vec![sides[side].time],
            None => vec![
                sides[0].time,
                sides[0].schema.fields().len() + sides[1].time,
            ],
        }
    }

    fn row_converter(schema: &Schema) -> Result<RowConverter> {
        Ok(RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?)
    }
}

/// The rows among `0..n` that are in `indices` (`listed`), or those that
/// are not.
fn rows_where(n: usize, indices: &UInt32Array, listed: bool) -> UInt32Array {
    let mut seen = vec![false; n];
    for i in indices.values() {
        seen[*i as usize] = true;
    }
    (0..n as u32)
        .filter(|i| seen[*i as usize] == listed)
        .collect()
}

/// The pairs of rows (left, right) whose keys are equal, in left row order,
/// NULL keys matching only if `nulls_equal`: the right rows are filed by
/// the hash of their keys (hashed column by column), each left row's
/// candidates are those of its hash, and a candidate is kept if its keys
/// compare equal.
fn equal_keys(
    (left, left_rows): (&[ArrayRef], usize),
    (right, right_rows): (&[ArrayRef], usize),
    nulls_equal: bool,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let hashes = |keys: &[ArrayRef], rows: usize| -> Result<Vec<u64>> {
        let mut hashes = vec![0; rows];
        create_hashes(keys, &RandomState::default(), &mut hashes)?;
        Ok(hashes)
    };
    let keyed = |keys: &[ArrayRef], row: usize| nulls_equal || keys.iter().all(|k| k.is_valid(row));
    let (lh, rh) = (hashes(left, left_rows)?, hashes(right, right_rows)?);
    let mut table: HashMap<u64, Vec<u32>, RandomState> =
        HashMap::with_capacity_and_hasher(rh.len(), RandomState::default());
    for (r, hash) in rh.iter().enumerate() {
        if keyed(right, r) {
            table.entry(*hash).or_default().push(r as u32);
        }
    }
    let comparators = left
        .iter()
        .zip(right)
        .map(|(l, r)| make_comparator(l.as_ref(), r.as_ref(), SortOptions::default()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let (mut li, mut ri) = (Vec::new(), Vec::new());
    for (l, hash) in lh.iter().enumerate() {
        let Some(candidates) = table.get(hash) else {
            continue;
        };
        if !keyed(left, l) {
            continue;
        }
        for &r in candidates {
            if comparators.iter().all(|c| c(l, r as usize).is_eq()) {
                li.push(l as u32);
                ri.push(r);
            }
        }
    }
    Ok((li, ri))
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

/// The rows left once deletions cancel insertions of equal rows: the
/// chunks' own batches when they only insert (not copied into one).
fn consolidate(schema: &SchemaRef, chunks: Vec<Chunk>) -> Result<Vec<RecordBatch>> {
    if chunks.iter().all(Chunk::is_insert_only) {
        return Ok(chunks.into_iter().map(|c| c.batch).collect());
    }
    let all = concat_batches(schema, chunks.iter().map(|c| &c.batch))?;
    let ops: Vec<i64> = chunks
        .iter()
        .flat_map(|c| (0..c.num_rows()).map(move |i| c.op(i).code() as i64))
        .collect();
    let converter = WindowJoin::row_converter(schema)?;
    let rows = converter.convert_columns(all.columns())?;
    // Net count and first position of each distinct row.
    let mut counts: HashMap<&[u8], (i64, u32), RandomState> = HashMap::default();
    for (i, op) in ops.iter().enumerate() {
        let entry = counts.entry(rows.row(i).data()).or_insert((0, i as u32));
        entry.0 += op;
    }
    let mut kept: Vec<(u32, i64)> = counts
        .into_values()
        .filter(|(count, _)| *count > 0)
        .map(|(count, first)| (first, count))
        .collect();
    kept.sort_unstable();
    let indices: Vec<u32> = kept
        .into_iter()
        .flat_map(|(first, count)| std::iter::repeat_n(first, count as usize))
        .collect();
    Ok(vec![take_record_batch(&all, &UInt32Array::from(indices))?])
}

/// The schema of a join's checkpointed state: each pending row with its
/// side, its operation, and its values in Arrow's row format.
fn state_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("side", DataType::Int8, false),
        Field::new("op", DataType::Int8, false),
        Field::new("row", DataType::Binary, false),
    ]))
}

impl Operator for WindowJoin {
    fn name(&self) -> &'static str {
        "WindowJoin"
    }

    fn describe(&self) -> String {
        let kind = self.kind.name();
        let keys: Vec<String> = self.sides[0]
            .keys
            .iter()
            .zip(&self.sides[1].keys)
            .map(|(l, r)| format!("{l} = {r}"))
            .collect();
        let time = |s: usize| {
            self.sides[s]
                .schema
                .field(self.sides[s].time)
                .name()
                .clone()
        };
        let mut text = format!(
            "{kind} on [{}] closing on {} = {}",
            keys.join(", "),
            time(0),
            time(1)
        );
        if let Some(filter) = &self.filter {
            text.push_str(&format!(" filter {filter}"));
        }
        text
    }

    fn process_chunk(&mut self, input: usize, chunk: Chunk, _out: &mut Vec<Message>) -> Result<()> {
        self.keep(input.min(1), chunk)
    }

    fn watermark_column(&self, input: usize, column: usize) -> Option<usize> {
        (column == self.sides[input.min(1)].time).then_some(self.sides[0].time)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        if watermark.column != self.sides[0].time {
            return Ok(());
        }
        let Some((bound, _)) = timestamp_value(&watermark.value) else {
            return Ok(());
        };
        self.close(Some(bound), out)?;
        // The time columns of the output are behind the watermark.
        for column in Self::output_time_columns(self.kind, &self.sides) {
            out.push(Message::Watermark(Watermark {
                column,
                value: watermark.value.clone(),
            }));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Message>) -> Result<()> {
        self.close(None, out)
    }

    fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Every pending row of both sides (the state is bounded by the open
    /// windows, and handed over whole).
    fn checkpoint(&mut self, _full: bool) -> Result<Option<StatePiece>> {
        let schema = state_schema();
        let mut batches = Vec::new();
        for (side, pending) in self.pending.iter().enumerate() {
            let converter = Self::row_converter(&self.sides[side].schema)?;
            for chunk in pending.values().flatten() {
                let rows = converter.convert_columns(chunk.batch.columns())?;
                let values = BinaryArray::from_iter_values(rows.iter().map(|r| r.data()));
                let ops: Int8Array = (0..chunk.num_rows()).map(|i| chunk.op(i).code()).collect();
                batches.push(RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int8Array::from(vec![side as i8; chunk.num_rows()])),
                        Arc::new(ops),
                        Arc::new(values),
                    ],
                )?);
            }
        }
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        Ok(Some(StatePiece::Full(batches)))
    }

    fn restore(&mut self, state: RecordBatch) -> Result<()> {
        let error = || DataFusionError::Execution("a window join's state has other columns".into());
        let sides = state
            .column_by_name("side")
            .and_then(|c| c.as_primitive_opt::<Int8Type>())
            .ok_or_else(error)?;
        let ops = state
            .column_by_name("op")
            .and_then(|c| c.as_primitive_opt::<Int8Type>())
            .ok_or_else(error)?;
        let values = state
            .column_by_name("row")
            .and_then(|c| c.as_binary_opt::<i32>())
            .ok_or_else(error)?;
        for side in 0..2 {
            let rows: Vec<usize> = (0..state.num_rows())
                .filter(|&i| sides.value(i) as usize == side)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let converter = Self::row_converter(&self.sides[side].schema)?;
            let parser = converter.parser();
            let columns =
                converter.convert_rows(rows.iter().map(|&i| parser.parse(values.value(i))))?;
            let batch = RecordBatch::try_new_with_options(
                self.sides[side].schema.clone(),
                columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
            )?;
            let ops: Int8Array = rows.iter().map(|&i| ops.value(i)).collect();
            self.keep(side, Chunk::new(batch, ops))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{Int64Type, TimeUnit};
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::Column;

    /// Rows `(k, t)`: a key and a time in microseconds.
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        ]))
    }

    fn rows(rows: &[(Option<i64>, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
                Arc::new(TimestampMicrosecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch")
    }

    /// A side of rows `(k, t)` joined on both columns, `t` its time key.
    fn side() -> JoinSide {
        JoinSide {
            schema: schema(),
            keys: vec![
                Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>,
                Arc::new(Column::new("t", 1)),
            ],
            time: 1,
        }
    }

    fn join(kind: JoinKind) -> WindowJoin {
        let mut fields = schema().fields().to_vec();
        fields.extend(schema().fields().iter().cloned());
        let output = Arc::new(Schema::new(
            fields
                .into_iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        WindowJoin::new(kind, [side(), side()], None, false, output).expect("join")
    }

    fn watermark(t: i64) -> Watermark {
        Watermark {
            column: 1,
            value: ScalarValue::TimestampMicrosecond(Some(t), None),
        }
    }

    /// The output rows as `(left k, right k)`, sorted.
    fn pairs(out: &[Message]) -> Vec<(Option<i64>, Option<i64>)> {
        let mut pairs = Vec::new();
        for message in out {
            if let Message::Chunk(chunk) = message {
                assert!(chunk.is_insert_only());
                let l = chunk.batch.column(0).as_primitive::<Int64Type>();
                let r = chunk.batch.column(2).as_primitive::<Int64Type>();
                for i in 0..chunk.num_rows() {
                    pairs.push((
                        l.is_valid(i).then(|| l.value(i)),
                        r.is_valid(i).then(|| r.value(i)),
                    ));
                }
            }
        }
        pairs.sort();
        pairs
    }

    #[test]
    fn a_window_is_joined_once_the_watermark_passes_it() {
        let mut join = join(JoinKind::Inner);
        let mut out = Vec::new();
        join.process_chunk(
            0,
            Chunk::inserts(rows(&[(Some(1), 10), (Some(2), 10), (Some(1), 20)])),
            &mut out,
        )
        .expect("left");
        join.process_chunk(
            1,
            Chunk::inserts(rows(&[
                (Some(1), 10),
                (Some(1), 10),
                (None, 10),
                (Some(1), 20),
            ])),
            &mut out,
        )
        .expect("right");
        assert!(out.is_empty(), "nothing before the watermark");
        join.process_watermark(watermark(11), &mut out)
            .expect("watermark");
        // Key 1 at time 10 twice on the right; NULL keys match nothing.
        assert_eq!(pairs(&out), vec![(Some(1), Some(1)), (Some(1), Some(1))]);
        let forwarded: Vec<usize> = out
            .iter()
            .filter_map(|m| match m {
                Message::Watermark(w) => Some(w.column),
                _ => None,
            })
            .collect();
        assert_eq!(forwarded, vec![1, 3]);
        out.clear();
        join.finish(&mut out).expect("finish");
        assert_eq!(pairs(&out), vec![(Some(1), Some(1))]);
        assert_eq!(join.state_bytes(), 0);
    }

    #[test]
    fn deletions_cancel_insertions_before_the_join() {
        let mut join = join(JoinKind::Full);
        let mut out = Vec::new();
        // An updating input: 3 inserted, then replaced by 4.
        join.process_chunk(0, Chunk::inserts(rows(&[(Some(3), 10)])), &mut out)
            .expect("left");
        join.process_chunk(
            0,
            Chunk::new(
                rows(&[(Some(3), 10), (Some(4), 10)]),
                Int8Array::from(vec![-1, 1]),
            ),
            &mut out,
        )
        .expect("left");
        join.process_chunk(
            1,
            Chunk::inserts(rows(&[(Some(4), 10), (Some(5), 10)])),
            &mut out,
        )
        .expect("right");
        join.process_watermark(watermark(100), &mut out)
            .expect("watermark");
        assert_eq!(pairs(&out), vec![(None, Some(5)), (Some(4), Some(4))]);
    }

    #[test]
    fn pending_rows_survive_a_checkpoint() {
        let mut join = join(JoinKind::Left);
        let mut out = Vec::new();
        join.process_chunk(
            0,
            Chunk::inserts(rows(&[(Some(1), 10), (Some(2), 10)])),
            &mut out,
        )
        .expect("left");
        join.process_chunk(1, Chunk::inserts(rows(&[(Some(2), 10)])), &mut out)
            .expect("right");
        let Some(StatePiece::Full(state)) = join.checkpoint(true).expect("checkpoint") else {
            panic!("a join keeps its whole state");
        };
        let mut restored = self::join(JoinKind::Left);
        for batch in state {
            restored.restore(batch).expect("restore");
        }
        restored
            .process_watermark(watermark(11), &mut out)
            .expect("watermark");
        assert_eq!(pairs(&out), vec![(Some(1), None), (Some(2), Some(2))]);
    }

    /// Every join kind, with and without NULL keys matching, over a left
    /// side that arrives in several insert-only chunks and a right side
    /// with a deletion: the output is that of a nested-loop join of the
    /// final rows.
    #[test]
    fn every_kind_matches_a_nested_loop_join() {
        type Row = (Option<i64>, i64);
        let mut next = crate::operators::window_aggregate::tests::numbers(11);
        let mut random_rows = |n: usize| -> Vec<Row> {
            (0..n)
                .map(|_| ((next(5) != 0).then(|| next(4) as i64), 10 * next(2) as i64))
                .collect()
        };
        let left_chunks: Vec<Vec<Row>> = (0..4).map(|i| random_rows(6 + i)).collect();
        let right_rows = random_rows(12);
        let deleted = right_rows[0];
        let left: Vec<Row> = left_chunks.concat();
        let right: Vec<Row> = right_rows[1..].to_vec();
        assert!(
            left.iter()
                .any(|l| l.0.is_none() && right.iter().any(|r| r.0.is_none() && r.1 == l.1)),
            "the input pairs NULL keys"
        );
        let kinds = [
            JoinKind::Inner,
            JoinKind::Left,
            JoinKind::Right,
            JoinKind::Full,
            JoinKind::LeftSemi,
            JoinKind::RightSemi,
            JoinKind::LeftAnti,
            JoinKind::RightAnti,
        ];
        for kind in kinds {
            for nulls_equal in [false, true] {
                let equal =
                    |l: &Row, r: &Row| l.1 == r.1 && (l.0 == r.0 && (l.0.is_some() || nulls_equal));
                // The expected rows: (left k, left t, right k, right t).
                type Out = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
                let mut expected: Vec<Out> = Vec::new();
                let pair = |l: Option<&Row>, r: Option<&Row>| -> Out {
                    (
                        l.and_then(|l| l.0),
                        l.map(|l| l.1),
                        r.and_then(|r| r.0),
                        r.map(|r| r.1),
                    )
                };
                match kind.one_side() {
                    Some((0, matched)) => expected.extend(
                        left.iter()
                            .filter(|l| right.iter().any(|r| equal(l, r)) == matched)
                            .map(|l| pair(Some(l), None)),
                    ),
                    Some((_, matched)) => expected.extend(
                        right
                            .iter()
                            .filter(|r| left.iter().any(|l| equal(l, r)) == matched)
                            .map(|r| pair(Some(r), None)),
                    ),
                    None => {
                        for l in &left {
                            for r in right.iter().filter(|r| equal(l, r)) {
                                expected.push(pair(Some(l), Some(r)));
                            }
                            if kind.keeps_unmatched(0) && !right.iter().any(|r| equal(l, r)) {
                                expected.push(pair(Some(l), None));
                            }
                        }
                        for r in &right {
                            if kind.keeps_unmatched(1) && !left.iter().any(|l| equal(l, r)) {
                                expected.push(pair(None, Some(r)));
                            }
                        }
                    }
                }
                expected.sort();

                let mut fields: Vec<Field> = schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                if kind.one_side().is_none() {
                    fields.extend(schema().fields().iter().map(|f| f.as_ref().clone()));
                }
                let output = Arc::new(Schema::new(
                    fields
                        .into_iter()
                        .map(|f| f.with_nullable(true))
                        .collect::<Vec<_>>(),
                ));
                let mut join = WindowJoin::new(kind, [side(), side()], None, nulls_equal, output)
                    .expect("join");
                let mut out = Vec::new();
                for chunk in &left_chunks {
                    join.process_chunk(0, Chunk::inserts(rows(chunk)), &mut out)
                        .expect("left");
                }
                join.process_chunk(1, Chunk::inserts(rows(&right_rows)), &mut out)
                    .expect("right");
                join.process_chunk(
                    1,
                    Chunk::new(rows(&[deleted]), Int8Array::from(vec![-1])),
                    &mut out,
                )
                .expect("right deletion");
                join.process_watermark(watermark(100), &mut out)
                    .expect("watermark");
                let mut actual: Vec<Out> = Vec::new();
                for message in &out {
                    let Message::Chunk(chunk) = message else {
                        continue;
                    };
                    let value = |c: usize, i: usize| -> Option<i64> {
                        let column = chunk.batch.columns().get(c)?;
                        let column = arrow::compute::cast(column, &DataType::Int64).expect("cast");
                        let column = column.as_primitive::<Int64Type>();
                        column.is_valid(i).then(|| column.value(i))
                    };
                    for i in 0..chunk.num_rows() {
                        actual.push((value(0, i), value(1, i), value(2, i), value(3, i)));
                    }
                }
                actual.sort();
                assert_eq!(actual, expected, "{kind:?}, NULLs equal: {nulls_equal}");
            }
        }
    }
}
