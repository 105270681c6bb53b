//! One aggregate's current value for every group, as a typed vector indexed
//! by group, updated in place and read back for any groups without being
//! taken out.
//!
//! DataFusion's `GroupsAccumulator` lays groups out the same way but only
//! hands its values over by emitting them, which empties it: right when a
//! window closes ([`WindowAggregate`](super::WindowAggregate)), not after
//! every chunk, as an aggregation that emits on update must
//! ([`UpdatingWindowAggregate`](super::UpdatingWindowAggregate)). These
//! columns cover `count`, and `sum`, `min` and `max` over primitive types,
//! on inputs that only insert. Their checkpoint state is the one
//! DataFusion's accumulators of the same functions write, so a state saved
//! by the row-per-group aggregation restores here, and back.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Int64Array};
use arrow::array::{ArrowNativeTypeOp, PrimitiveArray};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::error::DataFusionError;

use super::aggregate::AggregateCall;
use crate::checkpoint::state_error;
use crate::operator::Result;

/// One aggregate function's value per group.
pub(crate) trait GroupColumn: Send {
    /// Adds rows: `groups[i]` is the group of row `i` of `args`; rows the
    /// `filter` rejects are left out; there are `total` groups.
    fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()>;

    /// Merges saved states, one row per entry of `groups`.
    fn merge(&mut self, states: &[ArrayRef], groups: &[usize], total: usize) -> Result<()>;

    /// The values of `groups`, in that order.
    fn values(&self, groups: &[usize]) -> Result<ArrayRef>;

    /// The checkpoint state of every group, as DataFusion's accumulator of
    /// the function writes it.
    fn state(&self) -> Result<Vec<ArrayRef>>;

    /// Bytes held.
    fn size(&self) -> usize;
}

/// The column for `call`, or `None` when it has none: a function other than
/// `count`, `sum`, `min`, `max`, `DISTINCT`, or a result type not covered.
pub(crate) fn group_column(call: &AggregateCall) -> Option<Box<dyn GroupColumn>> {
    let function = &call.function;
    if function.is_distinct() {
        return None;
    }
    let data_type = function.field().data_type().clone();
    match function.fun().name() {
        "count" => (data_type == DataType::Int64).then(|| Box::new(Count::default()) as _),
        "sum" if function.expressions().len() == 1 => fold(data_type, Fold::Sum),
        "min" if function.expressions().len() == 1 => fold(data_type, Fold::Min),
        "max" if function.expressions().len() == 1 => fold(data_type, Fold::Max),
        _ => None,
    }
}

/// `count`: rows whose arguments are all non-null (every row for `count(*)`).
#[derive(Default)]
struct Count {
    counts: Vec<i64>,
}

impl GroupColumn for Count {
    fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()> {
        self.counts.resize(total, 0);
        let nulls = args.iter().fold(None, |acc, a| {
            NullBuffer::union(acc.as_ref(), a.logical_nulls().as_ref())
        });
        for (i, &group) in groups.iter().enumerate() {
            if passes(filter, i) && nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                self.counts[group] += 1;
            }
        }
        Ok(())
    }

    fn merge(&mut self, states: &[ArrayRef], groups: &[usize], total: usize) -> Result<()> {
        self.counts.resize(total, 0);
        let counts = states
            .first()
            .and_then(|s| s.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| state_error("the saved counts are not integers"))?;
        for (i, &group) in groups.iter().enumerate() {
            if counts.is_valid(i) {
                self.counts[group] += counts.value(i);
            }
        }
        Ok(())
    }

    fn values(&self, groups: &[usize]) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from_iter_values(
            groups
                .iter()
                .map(|&g| self.counts.get(g).copied().unwrap_or(0)),
        )))
    }

    fn state(&self) -> Result<Vec<ArrayRef>> {
        Ok(vec![Arc::new(Int64Array::from(self.counts.clone()))])
    }

    fn size(&self) -> usize {
        self.counts.capacity() * 8
    }
}

/// How a [`Folded`] column folds a value into a group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    Sum,
    Min,
    Max,
}

/// `sum`, `min` or `max` in their result type `T`: a value per group, null
/// until the group has a non-null argument.
struct Folded<T: ArrowPrimitiveType> {
    fold: Fold,
    data_type: DataType,
    values: Vec<T::Native>,
    seen: Vec<bool>,
}

/// The folded column for a result of `data_type`, for the types covered.
fn fold(data_type: DataType, fold: Fold) -> Option<Box<dyn GroupColumn>> {
    fn new<T: ArrowPrimitiveType>(data_type: DataType, fold: Fold) -> Option<Box<dyn GroupColumn>> {
        Some(Box::new(Folded::<T> {
            fold,
            data_type,
            values: Vec::new(),
            seen: Vec::new(),
        }))
    }
    // A sum takes Int64, UInt64, Float64 or a decimal (DataFusion widens the
    // others before): its result type is one of these.
    let any_primitive = fold != Fold::Sum;
    match &data_type {
        DataType::Int64 => new::<Int64Type>(data_type, fold),
        DataType::UInt64 => new::<UInt64Type>(data_type, fold),
        DataType::Float64 => new::<Float64Type>(data_type, fold),
        DataType::Decimal128(_, _) => new::<Decimal128Type>(data_type, fold),
        _ if !any_primitive => None,
        DataType::Int8 => new::<Int8Type>(data_type, fold),
        DataType::Int16 => new::<Int16Type>(data_type, fold),
        DataType::Int32 => new::<Int32Type>(data_type, fold),
        DataType::UInt8 => new::<UInt8Type>(data_type, fold),
        DataType::UInt16 => new::<UInt16Type>(data_type, fold),
        DataType::UInt32 => new::<UInt32Type>(data_type, fold),
        DataType::Float32 => new::<Float32Type>(data_type, fold),
        DataType::Date32 => new::<Date32Type>(data_type, fold),
        DataType::Date64 => new::<Date64Type>(data_type, fold),
        DataType::Timestamp(TimeUnit::Second, _) => new::<TimestampSecondType>(data_type, fold),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            new::<TimestampMillisecondType>(data_type, fold)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            new::<TimestampMicrosecondType>(data_type, fold)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            new::<TimestampNanosecondType>(data_type, fold)
        }
        _ => None,
    }
}

impl<T: ArrowPrimitiveType> Folded<T> {
    /// Folds `array` (cast to the result type) into the groups.
    fn fold_in(
        &mut self,
        array: &ArrayRef,
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()> {
        self.values.resize(total, T::Native::default());
        self.seen.resize(total, false);
        let array = if array.data_type() == &self.data_type {
            array.clone()
        } else {
            cast(array, &self.data_type)?
        };
        let array = array.as_primitive_opt::<T>().ok_or_else(|| {
            DataFusionError::Internal("an aggregate's input is not of its result type".into())
        })?;
        let values = array.values();
        for (i, &group) in groups.iter().enumerate() {
            if !passes(filter, i) || array.is_null(i) {
                continue;
            }
            let value = values[i];
            let slot = &mut self.values[group];
            if !self.seen[group] {
                *slot = value;
                self.seen[group] = true;
                continue;
            }
            *slot = match self.fold {
                // Wrapping, as DataFusion's sum accumulators add.
                Fold::Sum => slot.add_wrapping(value),
                Fold::Min if value.is_lt(*slot) => value,
                Fold::Max if value.is_gt(*slot) => value,
                _ => *slot,
            };
        }
        Ok(())
    }

    fn array(&self, groups: impl Iterator<Item = usize> + Clone) -> ArrayRef {
        let values: Vec<T::Native> = groups
            .clone()
            .map(|g| self.values.get(g).copied().unwrap_or_default())
            .collect();
        let valid: BooleanBuffer = groups
            .map(|g| self.seen.get(g).copied().unwrap_or(false))
            .collect();
        let nulls = NullBuffer::new(valid);
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        Arc::new(
            PrimitiveArray::<T>::new(values.into(), nulls).with_data_type(self.data_type.clone()),
        )
    }
}

impl<T: ArrowPrimitiveType> GroupColumn for Folded<T> {
    fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()> {
        let array = args
            .first()
            .ok_or_else(|| DataFusionError::Internal("an aggregate without its argument".into()))?;
        self.fold_in(array, groups, filter, total)
    }

    /// The state is the value itself: the sum so far, the least or the
    /// greatest value.
    fn merge(&mut self, states: &[ArrayRef], groups: &[usize], total: usize) -> Result<()> {
        let array = states
            .first()
            .ok_or_else(|| state_error("an aggregate's saved state is missing"))?;
        self.fold_in(array, groups, None, total)
    }

    fn values(&self, groups: &[usize]) -> Result<ArrayRef> {
        Ok(self.array(groups.iter().copied()))
    }

    fn state(&self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.array(0..self.values.len())])
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
}

/// Whether row `i` passes `filter` (a null is a rejection, as in SQL).
fn passes(filter: Option<&BooleanArray>, i: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(i) && f.value(i))
}
