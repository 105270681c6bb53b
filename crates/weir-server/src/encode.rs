//! Arrow values on the wire: `DataRow`s in text or binary format, and the
//! Postgres type each column is described as.
//!
//! Text values are written by [`weir_engine::text_format`] (Postgres' output
//! functions); binary values follow Postgres' `send` functions, checked
//! against a real Postgres by the test suite.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use bytes::{BufMut, BytesMut};
use pgwire::messages::data::DataRow;
use weir_engine::text_format::{
    FormatError, OutputFormat, PG_EPOCH_DAYS, PG_EPOCH_MICROS, interval_parts, time_micros,
    timestamp_micros, write_text,
};

type Result<T> = std::result::Result<T, FormatError>;

/// The Postgres type a column is described as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgType {
    pub oid: u32,
    /// `pg_type.typlen`: width in bytes, -1 for variable width.
    pub len: i16,
    /// Type modifier (`numeric(p,s)`), -1 for none.
    pub typmod: i32,
}

impl From<&weir_sql::SqlType> for PgType {
    fn from(ty: &weir_sql::SqlType) -> Self {
        PgType {
            oid: ty.oid(),
            len: ty.typlen(),
            typmod: ty.typmod(),
        }
    }
}

/// A type sent as text.
const TEXT: PgType = PgType {
    oid: 25,
    len: -1,
    typmod: -1,
};

/// The Postgres type of a result field: its declared type when it comes from
/// a table column, else the type of its Arrow type.
pub fn pg_field_type(field: &arrow::datatypes::Field) -> PgType {
    match weir_sql::SqlType::of_field(field) {
        Some(ty) if ty.arrow_type() == *field.data_type() => PgType::from(&ty),
        _ => pg_type(field.data_type()),
    }
}

/// The Postgres type of an Arrow type: scalars as [`weir_sql::SqlType`] maps
/// them, lists as the array type of their element, anything else as text.
pub fn pg_type(data_type: &DataType) -> PgType {
    match data_type {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => PgType {
            oid: array_oid(pg_type(f.data_type()).oid),
            ..TEXT
        },
        // record
        DataType::Struct(_) => PgType { oid: 2249, ..TEXT },
        DataType::Null => TEXT,
        other => weir_sql::SqlType::from_arrow(other).map_or(TEXT, |ty| PgType::from(&ty)),
    }
}

/// The array type of an element type (`int4` → `int4[]`).
fn array_oid(element: u32) -> u32 {
    match element {
        16 => 1000,
        17 => 1001,
        20 => 1016,
        21 => 1005,
        23 => 1007,
        25 => 1009,
        700 => 1021,
        701 => 1022,
        1043 => 1015,
        1082 => 1182,
        1083 => 1183,
        1114 => 1115,
        1184 => 1185,
        1186 => 1187,
        1700 => 1231,
        2249 => 2287,
        _ => 1009,
    }
}

/// Encodes the rows of a batch as `DataRow` messages; `binary[i]` says whether
/// column `i` is wanted in binary format.
pub fn encode_batch(
    batch: &RecordBatch,
    binary: &[bool],
    format: &OutputFormat,
) -> Result<Vec<DataRow>> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Dictionary(_, value) => {
                arrow::compute::cast(c, value).map_err(|e| FormatError(e.to_string()))
            }
            _ => Ok(c.clone()),
        })
        .collect::<Result<_>>()?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        let mut data = BytesMut::with_capacity(columns.len() * 12);
        for (i, column) in columns.iter().enumerate() {
            if column.is_null(row) {
                data.put_i32(-1);
                continue;
            }
            if binary.get(i).copied().unwrap_or(false) {
                let start = data.len();
                data.put_i32(0);
                write_binary(column, row, &mut data)?;
                let len = (data.len() - start - 4) as i32;
                data[start..start + 4].copy_from_slice(&len.to_be_bytes());
            } else {
                text.clear();
                write_text(column, row, format, &mut text)?;
                data.put_i32(text.len() as i32);
                data.put_slice(text.as_bytes());
            }
        }
        rows.push(DataRow::new(data, columns.len() as i16));
    }
    Ok(rows)
}

/// Writes one value (not NULL) in binary format.
fn write_binary(array: &ArrayRef, row: usize, out: &mut BytesMut) -> Result<()> {
    match array.data_type() {
        DataType::Boolean => out.put_u8(u8::from(array.as_boolean().value(row))),
        DataType::Int8 => out.put_i16(i16::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => out.put_i16(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => out.put_i32(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => out.put_i64(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => out.put_i16(i16::from(array.as_primitive::<UInt8Type>().value(row))),
        DataType::UInt16 => out.put_i32(i32::from(array.as_primitive::<UInt16Type>().value(row))),
        DataType::UInt32 => out.put_i64(i64::from(array.as_primitive::<UInt32Type>().value(row))),
        DataType::UInt64 => {
            let v = array.as_primitive::<UInt64Type>().value(row);
            write_numeric_binary(&v.to_string(), 0, out)
        }
        DataType::Float16 => out.put_f32(array.as_primitive::<Float16Type>().value(row).to_f32()),
        DataType::Float32 => out.put_f32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => out.put_f64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            write_numeric_binary(&v.to_string(), i32::from(*scale), out)
        }
        DataType::Decimal256(_, scale) => {
            let v = array.as_primitive::<Decimal256Type>().value(row);
            write_numeric_binary(&v.to_string(), i32::from(*scale), out)
        }
        DataType::Utf8 => out.put_slice(array.as_string::<i32>().value(row).as_bytes()),
        DataType::LargeUtf8 => out.put_slice(array.as_string::<i64>().value(row).as_bytes()),
        DataType::Utf8View => out.put_slice(array.as_string_view().value(row).as_bytes()),
        DataType::Binary => out.put_slice(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => out.put_slice(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => out.put_slice(array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => out.put_slice(array.as_fixed_size_binary().value(row)),
        DataType::Date32 => {
            let days = i64::from(array.as_primitive::<Date32Type>().value(row));
            out.put_i32((days - PG_EPOCH_DAYS) as i32)
        }
        DataType::Date64 => {
            let days = array
                .as_primitive::<Date64Type>()
                .value(row)
                .div_euclid(86_400_000);
            out.put_i32((days - PG_EPOCH_DAYS) as i32)
        }
        DataType::Time32(_) | DataType::Time64(_) => out.put_i64(time_micros(array, row)?),
        DataType::Timestamp(unit, _) => {
            out.put_i64(timestamp_micros(array, row, *unit).saturating_sub(PG_EPOCH_MICROS))
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, micros) = interval_parts(array, row)?;
            out.put_i64(micros);
            out.put_i32(days);
            out.put_i32(months);
        }
        DataType::List(_) => write_array_binary(&array.as_list::<i32>().value(row), out)?,
        DataType::LargeList(_) => write_array_binary(&array.as_list::<i64>().value(row), out)?,
        DataType::FixedSizeList(..) => {
            write_array_binary(&array.as_fixed_size_list().value(row), out)?
        }
        other => {
            return Err(FormatError(format!(
                "binary format is not supported for values of type {other}"
            )));
        }
    }
    Ok(())
}

/// A one-dimensional Postgres array in binary format.
fn write_array_binary(values: &ArrayRef, out: &mut BytesMut) -> Result<()> {
    out.put_i32(1); // dimensions
    out.put_i32(i32::from(values.null_count() > 0));
    out.put_u32(pg_type(values.data_type()).oid);
    out.put_i32(values.len() as i32);
    out.put_i32(1); // lower bound
    for i in 0..values.len() {
        if values.is_null(i) {
            out.put_i32(-1);
            continue;
        }
        let start = out.len();
        out.put_i32(0);
        write_binary(values, i, out)?;
        let len = (out.len() - start - 4) as i32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

/// Postgres' binary `numeric`: base-10000 digits with a weight, a sign and the
/// display scale.
fn write_numeric_binary(unscaled: &str, scale: i32, out: &mut BytesMut) {
    let (negative, digits) = match unscaled.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, unscaled),
    };
    let (int_part, frac_part): (String, String) = if scale > 0 {
        let scale = scale as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (i, f) = padded.split_at(padded.len() - scale);
        (i.to_string(), f.to_string())
    } else {
        (
            format!("{digits}{}", "0".repeat((-scale) as usize)),
            String::new(),
        )
    };
    let int_padded = format!("{}{int_part}", "0".repeat((4 - int_part.len() % 4) % 4));
    let frac_padded = format!("{frac_part}{}", "0".repeat((4 - frac_part.len() % 4) % 4));
    let mut groups: Vec<i16> = int_padded
        .as_bytes()
        .chunks(4)
        .chain(frac_padded.as_bytes().chunks(4))
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
        .collect();
    let mut weight = (int_padded.len() / 4) as i16 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i16;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let sign: u16 = if groups.is_empty() {
        weight = 0;
        0
    } else if negative {
        0x4000
    } else {
        0
    };
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_i16(scale.max(0) as i16);
    for g in groups {
        out.put_i16(g);
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    #[test]
    fn binary_numeric_matches_postgres() {
        // 1234.56 → ndigits 2, weight 0, digits [1234, 5600], dscale 2
        let mut out = BytesMut::new();
        write_numeric_binary("123456", 2, &mut out);
        assert_eq!(&out[..], &[0, 2, 0, 0, 0, 0, 0, 2, 0x04, 0xd2, 0x15, 0xe0]);
        // 0.5 → ndigits 1, weight -1, digits [5000], dscale 1
        let mut out = BytesMut::new();
        write_numeric_binary("5", 1, &mut out);
        assert_eq!(&out[..], &[0, 1, 0xff, 0xff, 0, 0, 0, 1, 0x13, 0x88]);
        // 0 → no digits
        let mut out = BytesMut::new();
        write_numeric_binary("0", 2, &mut out);
        assert_eq!(&out[..], &[0, 0, 0, 0, 0, 0, 0, 2]);
    }
}
