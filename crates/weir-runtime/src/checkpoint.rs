//! Operator state at a checkpoint: what a stateful operator hands over when a
//! checkpoint barrier reaches it, and takes back when its job is restored.
//!
//! When a checkpoint barrier has arrived on every input of an operator, the
//! driver asks it for its state ([`Operator::checkpoint`](crate::Operator))
//! and reports it to the job's [`JobStates`] before it passes the barrier on.
//! So when the barrier reaches the job's sink, every node has reported the
//! state it had after exactly the changes that came before the barrier.
//!
//! A state is a record batch (one row per group, or per session), which the
//! engine writes to object storage as Arrow IPC; an operator that tracks
//! which groups changed hands over only those ([`StatePiece::Changes`])
//! unless the barrier asks for everything. Aggregations keep DataFusion
//! accumulators; their state is what `Accumulator::state` returns (the
//! partial state DataFusion merges across partitions), restored into fresh
//! accumulators with `merge_batch`.

use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_empty_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use crate::operator::Result;

/// What a part of a job hands over at a checkpoint: its whole state, or only
/// what changed since its previous checkpoint.
#[derive(Debug, Clone)]
pub enum StatePiece {
    /// Every row of the state.
    Full(Vec<RecordBatch>),
    /// The rows changed since the previous checkpoint, with a last
    /// operations column (see `weir_state::delta`): for an operator's
    /// groups, `1` replaces the row of the key and `-1` removes the key.
    Changes(Vec<RecordBatch>),
}

/// The state one subtask of one node handed over at a checkpoint (or takes
/// back, whole, at a restore).
#[derive(Debug, Clone)]
pub struct OperatorState {
    pub node: usize,
    pub subtask: usize,
    pub state: StatePiece,
}

/// What the operators of a job reported at the last checkpoint barrier.
#[derive(Debug, Default)]
pub struct JobStates(Mutex<Reported>);

#[derive(Debug, Default)]
struct Reported {
    epoch: u64,
    states: Vec<OperatorState>,
    /// Operators that could not hand over their state.
    errors: Vec<String>,
}

impl JobStates {
    /// Records what node `node`, subtask `subtask` handed over at the
    /// barrier of `epoch`.
    fn report(
        &self,
        epoch: u64,
        node: usize,
        subtask: usize,
        state: std::result::Result<StatePiece, String>,
    ) {
        let mut reported = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if reported.epoch != epoch {
            *reported = Reported {
                epoch,
                ..Reported::default()
            };
        }
        match state {
            Ok(state) => reported.states.push(OperatorState {
                node,
                subtask,
                state,
            }),
            Err(error) => reported.errors.push(error),
        }
    }

    /// The states reported at the barrier of `epoch` (the caller knows the
    /// barrier went through the whole job), or why some operator could not
    /// hand its state over.
    pub fn take(&self, epoch: u64) -> std::result::Result<Vec<OperatorState>, String> {
        let mut reported = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if reported.epoch != epoch {
            return Ok(Vec::new());
        }
        if let Some(error) = reported.errors.first() {
            return Err(error.clone());
        }
        Ok(std::mem::take(&mut reported.states))
    }
}

/// Where a running subtask reports its state.
#[derive(Debug, Clone)]
pub(crate) struct StateReport {
    pub(crate) states: Arc<JobStates>,
    pub(crate) node: usize,
    pub(crate) subtask: usize,
}

impl StateReport {
    pub(crate) fn report(&self, epoch: u64, state: std::result::Result<StatePiece, String>) {
        self.states.report(epoch, self.node, self.subtask, state);
    }
}

/// A state batch of groups (or sessions) being built: their key columns
/// (`key_0`, ...), columns of the caller's, then their accumulators' states
/// (`state_0`, ...).
pub(crate) struct GroupRows {
    key_types: Vec<DataType>,
    keys: Vec<Vec<ScalarValue>>,
    states: AccumulatorStates,
    rows: usize,
}

impl GroupRows {
    /// Rows of groups with keys of `key_types` and accumulators like
    /// `fresh` (new ones, of each call).
    pub(crate) fn new(
        key_types: Vec<DataType>,
        fresh: &mut [Box<dyn Accumulator>],
    ) -> Result<Self> {
        Ok(GroupRows {
            keys: vec![Vec::new(); key_types.len()],
            key_types,
            states: AccumulatorStates::new(fresh)?,
            rows: 0,
        })
    }

    /// Adds a group's row: its key and its accumulators' states.
    pub(crate) fn push(
        &mut self,
        key: &[ScalarValue],
        accumulators: &mut [Box<dyn Accumulator>],
    ) -> Result<()> {
        if key.len() != self.keys.len() {
            return Err(state_error("a group's key changed shape"));
        }
        for (column, value) in self.keys.iter_mut().zip(key) {
            column.push(value.clone());
        }
        self.states.push(accumulators)?;
        self.rows += 1;
        Ok(())
    }

    /// The batch: keys, then `extra` (one value per row pushed), then states.
    pub(crate) fn finish(self, extra: Vec<(String, ArrayRef)>) -> Result<RecordBatch> {
        let mut columns = Vec::new();
        for (i, (values, data_type)) in self.keys.into_iter().zip(&self.key_types).enumerate() {
            columns.push((format!("key_{i}"), scalar_column(values, data_type)?));
        }
        columns.extend(extra);
        columns.extend(self.states.finish()?);
        state_batch(columns, self.rows)
    }
}

/// The states of the accumulators of many groups, as columns: one column per
/// state value of each accumulator, one row per group.
pub(crate) struct AccumulatorStates {
    /// Per column: a value of its type (the state of a fresh accumulator),
    /// for a column without rows.
    templates: Vec<ScalarValue>,
    columns: Vec<Vec<ScalarValue>>,
}

impl AccumulatorStates {
    /// Columns for accumulators like `fresh` (new ones, of each call).
    pub(crate) fn new(fresh: &mut [Box<dyn Accumulator>]) -> Result<Self> {
        let mut templates = Vec::new();
        for accumulator in fresh {
            templates.extend(accumulator.state()?);
        }
        let columns = templates.iter().map(|_| Vec::new()).collect();
        Ok(AccumulatorStates { templates, columns })
    }

    /// How many state values each of `fresh` has.
    pub(crate) fn widths(fresh: &mut [Box<dyn Accumulator>]) -> Result<Vec<usize>> {
        fresh
            .iter_mut()
            .map(|a| Ok(a.state()?.len()))
            .collect::<Result<Vec<_>>>()
    }

    /// Adds the states of one group's accumulators as a row.
    pub(crate) fn push(&mut self, accumulators: &mut [Box<dyn Accumulator>]) -> Result<()> {
        let mut column = 0;
        for accumulator in accumulators {
            for value in accumulator.state()? {
                let Some(values) = self.columns.get_mut(column) else {
                    return Err(state_error("an accumulator's state changed shape"));
                };
                values.push(value);
                column += 1;
            }
        }
        if column != self.columns.len() {
            return Err(state_error("an accumulator's state changed shape"));
        }
        Ok(())
    }

    /// The columns, named `state_0`, `state_1`, ...
    pub(crate) fn finish(self) -> Result<Vec<(String, ArrayRef)>> {
        self.columns
            .into_iter()
            .zip(self.templates)
            .enumerate()
            .map(|(i, (values, template))| {
                let array = if values.is_empty() {
                    new_empty_array(&template.data_type())
                } else {
                    ScalarValue::iter_to_array(values)?
                };
                Ok((format!("state_{i}"), array))
            })
            .collect()
    }
}

/// Merges row `row` of state `columns` (as [`AccumulatorStates`] wrote them,
/// `widths` values per accumulator) into fresh `accumulators`.
pub(crate) fn merge_states(
    columns: &[ArrayRef],
    widths: &[usize],
    row: usize,
    accumulators: &mut [Box<dyn Accumulator>],
) -> Result<()> {
    let mut at = 0;
    for (accumulator, width) in accumulators.iter_mut().zip(widths) {
        let Some(values) = columns.get(at..at + width) else {
            return Err(state_error("the saved state has too few columns"));
        };
        let values: Vec<ArrayRef> = values.iter().map(|c| c.slice(row, 1)).collect();
        accumulator.merge_batch(&values)?;
        at += width;
    }
    Ok(())
}

/// A column of `values`, of type `data_type` (an empty one when there are
/// none).
pub(crate) fn scalar_column(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    if values.is_empty() {
        return Ok(new_empty_array(data_type));
    }
    let array = ScalarValue::iter_to_array(values)?;
    if array.data_type() == data_type {
        Ok(array)
    } else {
        Ok(cast(&array, data_type)?)
    }
}

/// A state batch of named columns of `rows` rows.
pub(crate) fn state_batch(columns: Vec<(String, ArrayRef)>, rows: usize) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(name, array.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, array)| array).collect();
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

/// A state that cannot be restored.
pub(crate) fn state_error(what: &str) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!("operator state: {what}"))
}
