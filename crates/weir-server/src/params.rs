//! Bind parameters: the bytes a client sends for `$1`, `$2`, ... turned into
//! values of the types the statement needs.
//!
//! A parameter arrives in text or binary format. Its type is the one the
//! client declared in `Parse`, else the one Weir inferred from the statement
//! (reported in `ParameterDescription`), else text. Text values are parsed the
//! way a cast from text would parse them; binary values are decoded from
//! Postgres' binary format of the declared type and then cast.

use std::sync::Arc;

use arrow::datatypes::DataType;
use bytes::Bytes;
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use weir_engine::text_format::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use weir_engine::{Prepared, WeirError, sqlstate};

use crate::encode::pg_type;

/// The Postgres type reported for each parameter of a statement.
pub fn parameter_types(prepared: &Prepared) -> Result<Vec<Type>, WeirError> {
    Ok(prepared
        .param_types()?
        .iter()
        .map(|ty| match ty {
            Some(ty) => Type::from_oid(pg_type(ty).oid).unwrap_or(Type::TEXT),
            None => Type::TEXT,
        })
        .collect())
}

/// The values bound to a portal.
pub fn decode(portal: &Portal<Arc<Prepared>>) -> Result<Vec<ScalarValue>, WeirError> {
    let inferred = portal.statement.statement.param_types()?;
    let count = portal.parameters.len();
    if let Format::Individual(codes) = &portal.parameter_format
        && codes.len() != count
        && codes.len() > 1
    {
        return Err(protocol_violation(format!(
            "bind message has {} parameter formats but {count} parameters",
            codes.len()
        )));
    }
    if count < inferred.len() {
        return Err(protocol_violation(format!(
            "bind message supplies {count} parameters, but prepared statement requires {}",
            inferred.len()
        )));
    }
    (0..count)
        .map(|i| {
            let declared = portal.statement.parameter_types.get(i).cloned().flatten();
            let target = inferred
                .get(i)
                .cloned()
                .flatten()
                .or_else(|| {
                    let ty = weir_sql::SqlType::from_oid(declared.as_ref()?.oid())?;
                    Some(ty.arrow_type())
                })
                .unwrap_or(DataType::Utf8);
            let binary = match &portal.parameter_format {
                Format::UnifiedText => false,
                Format::UnifiedBinary => true,
                Format::Individual(codes) => {
                    codes.get(i).or(codes.first()).is_some_and(|c| *c == 1)
                }
            };
            decode_one(
                portal.parameters[i].as_ref(),
                binary,
                declared.as_ref(),
                &target,
            )
            .map_err(|e| {
                let mut e = e;
                e.message = format!("parameter ${}: {}", i + 1, e.message);
                e
            })
        })
        .collect()
}

fn decode_one(
    bytes: Option<&Bytes>,
    binary: bool,
    declared: Option<&Type>,
    target: &DataType,
) -> Result<ScalarValue, WeirError> {
    let Some(bytes) = bytes else {
        return ScalarValue::try_from(target).map_err(WeirError::from);
    };
    let value = if binary {
        let wire_type = declared
            .cloned()
            .or_else(|| Type::from_oid(pg_type(target).oid))
            .unwrap_or(Type::BYTEA);
        decode_binary(bytes, &wire_type)?
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            WeirError::new(
                sqlstate::INVALID_TEXT_REPRESENTATION,
                "invalid byte sequence for encoding \"UTF8\"",
            )
        })?;
        if matches!(target, DataType::Boolean) {
            return parse_bool(text);
        }
        ScalarValue::Utf8(Some(text.to_string()))
    };
    if value.data_type() == *target {
        return Ok(value);
    }
    value.cast_to(target).map_err(WeirError::from)
}

fn parse_bool(text: &str) -> Result<ScalarValue, WeirError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "yes" | "y" | "on" | "1" => Ok(ScalarValue::Boolean(Some(true))),
        "f" | "false" | "no" | "n" | "off" | "0" => Ok(ScalarValue::Boolean(Some(false))),
        _ => Err(WeirError::new(
            sqlstate::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type boolean: \"{text}\""),
        )),
    }
}

fn decode_binary(bytes: &[u8], ty: &Type) -> Result<ScalarValue, WeirError> {
    let bad = || {
        WeirError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid binary value for type {}", ty.name()),
        )
    };
    let fixed = |n: usize| -> Result<&[u8], WeirError> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(bad())
        }
    };
    Ok(match ty.oid() {
        16 => ScalarValue::Boolean(Some(fixed(1)?[0] != 0)),
        17 => ScalarValue::Binary(Some(bytes.to_vec())),
        21 => ScalarValue::Int16(Some(i16::from_be_bytes(
            fixed(2)?.try_into().map_err(|_| bad())?,
        ))),
        23 => ScalarValue::Int32(Some(i32::from_be_bytes(
            fixed(4)?.try_into().map_err(|_| bad())?,
        ))),
        20 => ScalarValue::Int64(Some(i64::from_be_bytes(
            fixed(8)?.try_into().map_err(|_| bad())?,
        ))),
        700 => ScalarValue::Float32(Some(f32::from_be_bytes(
            fixed(4)?.try_into().map_err(|_| bad())?,
        ))),
        701 => ScalarValue::Float64(Some(f64::from_be_bytes(
            fixed(8)?.try_into().map_err(|_| bad())?,
        ))),
        25 | 1043 | 19 | 1042 | 705 => ScalarValue::Utf8(Some(
            std::str::from_utf8(bytes).map_err(|_| bad())?.to_string(),
        )),
        1082 => {
            let days = i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad())?);
            let unix = i64::from(days) + PG_EPOCH_DAYS;
            ScalarValue::Date32(Some(i32::try_from(unix).map_err(|_| out_of_range())?))
        }
        1083 => ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(
            fixed(8)?.try_into().map_err(|_| bad())?,
        ))),
        1114 | 1184 => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad())?);
            let tz = (ty.oid() == 1184).then(|| weir_sql::types::UTC.into());
            let unix = micros
                .checked_add(PG_EPOCH_MICROS)
                .ok_or_else(out_of_range)?;
            ScalarValue::TimestampMicrosecond(Some(unix), tz)
        }
        1186 => {
            let b = fixed(16)?;
            let micros = i64::from_be_bytes(b[0..8].try_into().map_err(|_| bad())?);
            let days = i32::from_be_bytes(b[8..12].try_into().map_err(|_| bad())?);
            let months = i32::from_be_bytes(b[12..16].try_into().map_err(|_| bad())?);
            ScalarValue::IntervalMonthDayNano(Some(arrow::datatypes::IntervalMonthDayNano::new(
                months,
                days,
                micros.saturating_mul(1000),
            )))
        }
        1700 => ScalarValue::Utf8(Some(numeric_text(bytes).ok_or_else(bad)?)),
        _ => {
            return Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("binary parameters of type {} are not supported", ty.name()),
            ));
        }
    })
}

/// Postgres' binary `numeric` as decimal text.
fn numeric_text(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes(bytes.get(i..i + 2)?.try_into().ok()?))
    };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = i32::from(word(2)?);
    let sign = word(4)? as u16;
    let dscale = usize::try_from(word(6)?).ok()?;
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Option<_>>()?;
    let mut int_part = String::new();
    let mut frac_part = String::new();
    for (i, d) in digits.iter().enumerate() {
        let position = weight - i as i32; // power of 10000
        let group = format!("{:04}", d);
        if position >= 0 {
            int_part.push_str(&group);
        } else {
            // Fill groups skipped between the decimal point and this one.
            while (frac_part.len() as i32) < (-position - 1) * 4 {
                frac_part.push_str("0000");
            }
            frac_part.push_str(&group);
        }
    }
    // Trailing integer groups not present are zeros.
    let present_int = digits.len().min((weight + 1).max(0) as usize) as i32;
    for _ in present_int..(weight + 1) {
        int_part.push_str("0000");
    }
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let mut frac: String = frac_part.chars().take(dscale).collect();
    while frac.len() < dscale {
        frac.push('0');
    }
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    text.push_str(int_part);
    if dscale > 0 {
        text.push('.');
        text.push_str(&frac);
    }
    Some(text)
}

/// `infinity` and other values Weir's dates and timestamps cannot hold.
fn out_of_range() -> WeirError {
    WeirError::new(
        sqlstate::DATETIME_FIELD_OVERFLOW,
        "date or timestamp out of range (infinity is not supported)",
    )
}

fn protocol_violation(message: String) -> WeirError {
    WeirError::new(sqlstate::PROTOCOL_VIOLATION, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_numeric_to_text() {
        // 1234.56
        assert_eq!(
            numeric_text(&[0, 2, 0, 0, 0, 0, 0, 2, 0x04, 0xd2, 0x15, 0xe0]).as_deref(),
            Some("1234.56")
        );
        // 0.5
        assert_eq!(
            numeric_text(&[0, 1, 0xff, 0xff, 0, 0, 0, 1, 0x13, 0x88]).as_deref(),
            Some("0.5")
        );
        // -20000 (one digit group 2, weight 1)
        assert_eq!(
            numeric_text(&[0, 1, 0, 1, 0x40, 0, 0, 0, 0, 2]).as_deref(),
            Some("-20000")
        );
    }

    #[test]
    fn text_parameters_are_cast() {
        let v = decode_one(
            Some(&Bytes::from_static(b"42")),
            false,
            None,
            &DataType::Int64,
        )
        .expect("int");
        assert_eq!(v, ScalarValue::Int64(Some(42)));
        let e = decode_one(
            Some(&Bytes::from_static(b"x")),
            false,
            None,
            &DataType::Int32,
        )
        .expect_err("not an int");
        assert_eq!(e.code, sqlstate::INVALID_TEXT_REPRESENTATION);
        let v = decode_one(None, false, None, &DataType::Int32).expect("null");
        assert_eq!(v, ScalarValue::Int32(None));
    }
}
