//! Values in Postgres' text format: what Postgres' output functions print.
//!
//! The formats are exactly what Postgres 15 prints with its default settings
//! (`DateStyle = ISO`, `IntervalStyle = postgres`, `bytea_output = hex`):
//! `t`/`f`, `2022-01-01 10:00:00`, `2022-01-01 10:00:00+00` in the session's
//! time zone, `1 day 02:00:00`, `\x0102`, numerics with their scale, floats in
//! shortest round-trip form (`1e+20`) or, with `extra_float_digits` below 1,
//! rounded as `%g` does. The wire sends them, and casts to text produce them.
//! The test suite checks them against a real Postgres.
//!
//! `arrow-pg` was the first choice; its text output differs from Postgres for
//! floats, times, timestamps and intervals, and it sends NULL intervals as
//! zero, so Weir writes values itself here.

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, Time32MillisecondType,
    Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

use crate::pg_catalog::functions::arrow_time_zone;
use crate::settings::Settings;

/// How a session wants values written.
#[derive(Debug, Clone)]
pub struct OutputFormat {
    /// Time zone `timestamptz` values are shown in.
    pub time_zone: Tz,
    /// Postgres' `extra_float_digits`.
    pub extra_float_digits: i32,
    /// `bytea_output = hex` (else `escape`).
    pub bytea_hex: bool,
}

impl Default for OutputFormat {
    fn default() -> Self {
        OutputFormat {
            time_zone: utc(),
            extra_float_digits: 1,
            bytea_hex: true,
        }
    }
}

fn utc() -> Tz {
    Tz::from_str("+00:00").unwrap_or_else(|_| unreachable!("+00:00 is a valid offset"))
}

impl OutputFormat {
    /// The format for a session's settings.
    pub fn from_settings(settings: &Settings) -> Self {
        let tz = arrow_time_zone(&settings.time_zone());
        OutputFormat {
            time_zone: Tz::from_str(&tz).unwrap_or_else(|_| utc()),
            extra_float_digits: settings.extra_float_digits(),
            bytea_hex: settings.bytea_hex(),
        }
    }
}

/// A value that cannot be written in the requested format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, FormatError>;

/// Writes one value (not NULL) in text format.
pub fn write_text(
    array: &ArrayRef,
    row: usize,
    format: &OutputFormat,
    out: &mut String,
) -> Result<()> {
    macro_rules! display {
        ($t:ty) => {{
            let _ = write!(out, "{}", array.as_primitive::<$t>().value(row));
        }};
    }
    match array.data_type() {
        DataType::Boolean => out.push(if array.as_boolean().value(row) {
            't'
        } else {
            'f'
        }),
        DataType::Int8 => display!(Int8Type),
        DataType::Int16 => display!(Int16Type),
        DataType::Int32 => display!(Int32Type),
        DataType::Int64 => display!(Int64Type),
        DataType::UInt8 => display!(UInt8Type),
        DataType::UInt16 => display!(UInt16Type),
        DataType::UInt32 => display!(UInt32Type),
        DataType::UInt64 => display!(UInt64Type),
        DataType::Float16 => {
            let v = array.as_primitive::<Float16Type>().value(row).to_f32();
            write_float(f64::from(v), true, format.extra_float_digits, out)
        }
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            write_f32(v, format.extra_float_digits, out)
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            write_float(v, false, format.extra_float_digits, out)
        }
        DataType::Decimal128(_, scale) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            write_decimal(&v.to_string(), i32::from(*scale), out)
        }
        DataType::Decimal256(_, scale) => {
            let v = array.as_primitive::<Decimal256Type>().value(row);
            write_decimal(&v.to_string(), i32::from(*scale), out)
        }
        DataType::Utf8 => out.push_str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => out.push_str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => out.push_str(array.as_string_view().value(row)),
        DataType::Binary => write_bytea(array.as_binary::<i32>().value(row), format, out),
        DataType::LargeBinary => write_bytea(array.as_binary::<i64>().value(row), format, out),
        DataType::BinaryView => write_bytea(array.as_binary_view().value(row), format, out),
        DataType::FixedSizeBinary(_) => {
            write_bytea(array.as_fixed_size_binary().value(row), format, out)
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            write_date(date_from_days(i64::from(days))?, out)
        }
        DataType::Date64 => {
            let ms = array.as_primitive::<Date64Type>().value(row);
            write_date(date_from_days(ms.div_euclid(86_400_000))?, out)
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            write_time(time_micros(array, row)?, out);
        }
        DataType::Timestamp(unit, tz) => {
            let micros = timestamp_micros(array, row, *unit);
            let utc = datetime_from_micros(micros)?;
            match tz {
                None => write_timestamp(&utc, None, out),
                Some(_) => {
                    let local = format.time_zone.from_utc_datetime(&utc);
                    let offset = local.offset().fix().local_minus_utc();
                    write_timestamp(&local.naive_local(), Some(offset), out)
                }
            }
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, micros) = interval_parts(array, row)?;
            write_interval(months, days, micros, out)
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            write_array_text(&list.value(row), format, out)?
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            write_array_text(&list.value(row), format, out)?
        }
        DataType::FixedSizeList(_, _) => {
            let list = array.as_fixed_size_list();
            write_array_text(&list.value(row), format, out)?
        }
        DataType::Struct(_) => {
            let record = array.as_struct();
            out.push('(');
            for (i, field) in record.columns().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if field.is_null(row) {
                    continue;
                }
                let mut value = String::new();
                write_text(field, row, format, &mut value)?;
                quote_composite(&value, "(),\"\\", out);
            }
            out.push(')');
        }
        _ => {
            let formatter = datafusion::arrow::util::display::ArrayFormatter::try_new(
                array.as_ref(),
                &datafusion::arrow::util::display::FormatOptions::default(),
            )
            .map_err(|e| FormatError(e.to_string()))?;
            let _ = write!(out, "{}", formatter.value(row));
        }
    }
    Ok(())
}

/// `{1,2,NULL}`: elements in text, quoted when Postgres would quote them.
fn write_array_text(values: &ArrayRef, format: &OutputFormat, out: &mut String) -> Result<()> {
    out.push('{');
    let mut element = String::new();
    for i in 0..values.len() {
        if i > 0 {
            out.push(',');
        }
        if values.is_null(i) {
            out.push_str("NULL");
            continue;
        }
        element.clear();
        write_text(values, i, format, &mut element)?;
        let nested = matches!(
            values.data_type(),
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
        );
        if nested {
            out.push_str(&element);
        } else if element.eq_ignore_ascii_case("null") {
            out.push_str("\"NULL\"");
        } else {
            quote_composite(&element, "{},\"\\", out);
        }
    }
    out.push('}');
    Ok(())
}

/// Quotes an element of an array or record when it is empty or holds a
/// special character or whitespace.
fn quote_composite(value: &str, special: &str, out: &mut String) {
    let needs = value.is_empty()
        || value
            .chars()
            .any(|c| special.contains(c) || c.is_ascii_whitespace());
    if !needs {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn write_f32(v: f32, extra_float_digits: i32, out: &mut String) {
    if extra_float_digits > 0 && v.is_finite() && v != 0.0 {
        // The shortest digits that read back as the same f32.
        let s = format!("{v:e}");
        write_shortest(&s, 6, out);
    } else {
        write_float(f64::from(v), true, extra_float_digits, out)
    }
}

/// Postgres' `float8out` / `float4out`.
fn write_float(v: f64, single: bool, extra_float_digits: i32, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
    } else if extra_float_digits > 0 {
        write_shortest(&format!("{v:e}"), if single { 6 } else { 15 }, out);
    } else {
        let digits = if single { 6 } else { 15 } + extra_float_digits;
        write_g(v, digits.max(1) as usize, out);
    }
}

/// Shortest round-trip digits (from Rust's `{:e}`, e.g. `-1.2345e-5`) laid
/// out as Postgres does: fixed notation for exponents in `[-4, fixed_limit)`,
/// else `d.ddde±XX`.
fn write_shortest(exp_form: &str, fixed_limit: i32, out: &mut String) {
    let (mantissa, exponent) = exp_form.split_once('e').unwrap_or((exp_form, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if negative {
        out.push('-');
    }
    if (-4..fixed_limit).contains(&exponent) {
        write_fixed(&digits, exponent, out);
    } else {
        write_exponential(&digits, exponent, out);
    }
}

/// `digits` × 10^(exponent - len + 1), in fixed notation.
fn write_fixed(digits: &str, exponent: i32, out: &mut String) {
    let n = digits.len() as i32;
    if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else if exponent + 1 >= n {
        out.push_str(digits);
        for _ in 0..(exponent + 1 - n) {
            out.push('0');
        }
    } else {
        let (int, frac) = digits.split_at((exponent + 1) as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

fn write_exponential(digits: &str, exponent: i32, out: &mut String) {
    let (first, rest) = digits.split_at(1.min(digits.len()));
    out.push_str(first);
    if !rest.is_empty() {
        out.push('.');
        out.push_str(rest);
    }
    let _ = write!(
        out,
        "e{}{:02}",
        if exponent < 0 { '-' } else { '+' },
        exponent.abs()
    );
}

/// C's `%.{precision}g`.
fn write_g(v: f64, precision: usize, out: &mut String) {
    let s = format!("{:.*e}", precision - 1, v);
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    if negative {
        out.push('-');
    }
    if exponent < -4 || exponent >= precision as i32 {
        write_exponential(digits, exponent, out);
    } else {
        write_fixed(digits, exponent, out);
    }
}

/// An unscaled integer (as text) with `scale` decimal places.
fn write_decimal(unscaled: &str, scale: i32, out: &mut String) {
    let (negative, digits) = match unscaled.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, unscaled),
    };
    if negative {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(digits);
        for _ in 0..(-scale) {
            out.push('0');
        }
        return;
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        out.push_str("0.");
        for _ in 0..(scale - digits.len()) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

fn write_bytea(bytes: &[u8], format: &OutputFormat, out: &mut String) {
    if format.bytea_hex {
        out.push_str("\\x");
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
    } else {
        for &b in bytes {
            match b {
                b'\\' => out.push_str("\\\\"),
                0x20..=0x7e => out.push(b as char),
                _ => {
                    let _ = write!(out, "\\{b:03o}");
                }
            }
        }
    }
}

const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;
/// Days from 1970-01-01 to 2000-01-01, Postgres' epoch.
pub const PG_EPOCH_DAYS: i64 = 10_957;
pub const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;

fn date_from_days(days: i64) -> Result<NaiveDate> {
    i32::try_from(days + UNIX_EPOCH_DAYS_FROM_CE)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .ok_or_else(|| FormatError(format!("date out of range: {days} days")))
}

/// `2022-01-01`, or `0044-03-15 BC`.
fn write_date(date: NaiveDate, out: &mut String) {
    write_ymd(date, out);
    if date.year() <= 0 {
        out.push_str(" BC");
    }
}

fn write_ymd(date: NaiveDate, out: &mut String) {
    let year = date.year();
    let year = if year <= 0 { 1 - year } else { year };
    let _ = write!(out, "{year:04}-{:02}-{:02}", date.month(), date.day());
}

/// `HH:MM:SS` with the fraction of a second, trailing zeros dropped.
fn write_hms(hour: u32, minute: u32, second: u32, micros: u32, out: &mut String) {
    let _ = write!(out, "{hour:02}:{minute:02}:{second:02}");
    write_fraction(micros, out);
}

fn write_fraction(micros: u32, out: &mut String) {
    if micros == 0 {
        return;
    }
    let mut fraction = format!("{micros:06}");
    while fraction.ends_with('0') {
        fraction.pop();
    }
    out.push('.');
    out.push_str(&fraction);
}

fn write_time(micros: i64, out: &mut String) {
    let micros = micros.rem_euclid(86_400_000_000);
    let seconds = micros / 1_000_000;
    write_hms(
        (seconds / 3600) as u32,
        ((seconds / 60) % 60) as u32,
        (seconds % 60) as u32,
        (micros % 1_000_000) as u32,
        out,
    );
}

pub fn time_micros(array: &ArrayRef, row: usize) -> Result<i64> {
    Ok(match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            i64::from(array.as_primitive::<Time32SecondType>().value(row)) * 1_000_000
        }
        DataType::Time32(_) => {
            i64::from(array.as_primitive::<Time32MillisecondType>().value(row)) * 1000
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            array.as_primitive::<Time64NanosecondType>().value(row) / 1000
        }
        DataType::Time64(_) => array.as_primitive::<Time64MicrosecondType>().value(row),
        other => return Err(FormatError(format!("not a time: {other}"))),
    })
}

pub fn timestamp_micros(array: &ArrayRef, row: usize, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1_000_000),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .saturating_mul(1000),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .value(row)
            .div_euclid(1000),
    }
}

fn datetime_from_micros(micros: i64) -> Result<NaiveDateTime> {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|d| d.naive_utc())
        .ok_or_else(|| FormatError(format!("timestamp out of range: {micros} µs")))
}

/// `2022-01-01 10:00:00[.5][+05:30][ BC]`
fn write_timestamp(t: &NaiveDateTime, offset_seconds: Option<i32>, out: &mut String) {
    write_ymd(t.date(), out);
    out.push(' ');
    write_hms(t.hour(), t.minute(), t.second(), t.nanosecond() / 1000, out);
    if let Some(offset) = offset_seconds {
        let sign = if offset < 0 { '-' } else { '+' };
        let offset = offset.abs();
        let _ = write!(out, "{sign}{:02}", offset / 3600);
        if offset % 3600 != 0 {
            let _ = write!(out, ":{:02}", (offset / 60) % 60);
            if offset % 60 != 0 {
                let _ = write!(out, ":{:02}", offset % 60);
            }
        }
    }
    if t.date().year() <= 0 {
        out.push_str(" BC");
    }
}

/// Months, days and microseconds of an interval or duration.
pub fn interval_parts(array: &ArrayRef, row: usize) -> Result<(i32, i32, i64)> {
    Ok(match array.data_type() {
        DataType::Interval(IntervalUnit::YearMonth) => (
            array.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        ),
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            (0, v.days, i64::from(v.milliseconds) * 1000)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            (v.months, v.days, v.nanoseconds / 1000)
        }
        DataType::Duration(TimeUnit::Second) => (
            0,
            0,
            array
                .as_primitive::<DurationSecondType>()
                .value(row)
                .saturating_mul(1_000_000),
        ),
        DataType::Duration(TimeUnit::Millisecond) => (
            0,
            0,
            array
                .as_primitive::<DurationMillisecondType>()
                .value(row)
                .saturating_mul(1000),
        ),
        DataType::Duration(TimeUnit::Microsecond) => (
            0,
            0,
            array.as_primitive::<DurationMicrosecondType>().value(row),
        ),
        DataType::Duration(TimeUnit::Nanosecond) => (
            0,
            0,
            array.as_primitive::<DurationNanosecondType>().value(row) / 1000,
        ),
        other => return Err(FormatError(format!("not an interval: {other}"))),
    })
}

/// Postgres' `IntervalStyle = postgres`: `1 year 2 mons 3 days 04:05:06.789`.
fn write_interval(months: i32, days: i32, micros: i64, out: &mut String) {
    let years = months / 12;
    let months = months % 12;
    let mut is_zero = true;
    let mut is_before = false;
    for (value, unit) in [
        (i64::from(years), "year"),
        (i64::from(months), "mon"),
        (i64::from(days), "day"),
    ] {
        if value == 0 {
            continue;
        }
        let _ = write!(
            out,
            "{}{}{value} {unit}{}",
            if is_zero { "" } else { " " },
            if is_before && value > 0 { "+" } else { "" },
            if value != 1 { "s" } else { "" }
        );
        is_before = value < 0;
        is_zero = false;
    }
    if is_zero || micros != 0 {
        let minus = micros < 0;
        let micros = micros.unsigned_abs();
        let seconds = micros / 1_000_000;
        let _ = write!(
            out,
            "{}{}{:02}:{:02}:{:02}",
            if is_zero { "" } else { " " },
            if minus {
                "-"
            } else if is_before {
                "+"
            } else {
                ""
            },
            seconds / 3600,
            (seconds / 60) % 60,
            seconds % 60
        );
        write_fraction((micros % 1_000_000) as u32, out);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
        IntervalMonthDayNanoArray, ListArray, StringArray, Time64MicrosecondArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Int32Type, IntervalMonthDayNano};

    use super::*;

    fn text(array: ArrayRef) -> Vec<String> {
        text_with(array, &OutputFormat::default())
    }

    fn text_with(array: ArrayRef, format: &OutputFormat) -> Vec<String> {
        (0..array.len())
            .map(|i| {
                let mut s = String::new();
                write_text(&array, i, format, &mut s).expect("encode");
                s
            })
            .collect()
    }

    #[test]
    fn booleans_and_text() {
        assert_eq!(
            text(Arc::new(BooleanArray::from(vec![true, false]))),
            ["t", "f"]
        );
        assert_eq!(
            text(Arc::new(StringArray::from(vec!["a b", ""]))),
            ["a b", ""]
        );
    }

    #[test]
    fn floats_like_postgres() {
        let doubles = Arc::new(Float64Array::from(vec![
            0.1 + 0.2,
            1.0,
            1e20,
            1e-5,
            1e16,
            123456789012345.0,
            1e15,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0001,
        ]));
        assert_eq!(
            text(doubles),
            [
                "0.30000000000000004",
                "1",
                "1e+20",
                "1e-05",
                "1e+16",
                "123456789012345",
                "1e+15",
                "-0",
                "NaN",
                "Infinity",
                "-Infinity",
                "0.0001"
            ]
        );
        let reals = Arc::new(Float32Array::from(vec![
            1.1f32, 1e10, 123456.0, 1234567.0, 0.5,
        ]));
        assert_eq!(
            text(reals),
            ["1.1", "1e+10", "123456", "1.234567e+06", "0.5"]
        );
        let format = OutputFormat {
            extra_float_digits: 0,
            ..Default::default()
        };
        assert_eq!(
            text_with(Arc::new(Float64Array::from(vec![0.1 + 0.2, 1e20])), &format),
            ["0.3", "1e+20"]
        );
    }

    #[test]
    fn numerics_keep_their_scale() {
        let values = Decimal128Array::from(vec![150, 0, -310, 5, 123456])
            .with_precision_and_scale(10, 2)
            .expect("decimal");
        assert_eq!(
            text(Arc::new(values)),
            ["1.50", "0.00", "-3.10", "0.05", "1234.56"]
        );
    }

    #[test]
    fn bytea_in_hex() {
        let values = BinaryArray::from(vec![&[1u8, 2][..], &[][..]]);
        assert_eq!(text(Arc::new(values)), ["\\x0102", "\\x"]);
    }

    #[test]
    fn dates_times_timestamps() {
        // 2022-01-01 is day 18993 since 1970-01-01.
        assert_eq!(
            text(Arc::new(Date32Array::from(vec![18993]))),
            ["2022-01-01"]
        );
        let times =
            Time64MicrosecondArray::from(vec![36_000_000_000, 36_000_123_456, 36_000_500_000]);
        assert_eq!(
            text(Arc::new(times)),
            ["10:00:00", "10:00:00.123456", "10:00:00.5"]
        );
        let base = 1_641_031_200_000_000; // 2022-01-01 10:00:00 UTC
        let ts = TimestampMicrosecondArray::from(vec![base, base + 500_000]);
        assert_eq!(
            text(Arc::new(ts)),
            ["2022-01-01 10:00:00", "2022-01-01 10:00:00.5"]
        );
        let tstz = Arc::new(TimestampMicrosecondArray::from(vec![base]).with_timezone("+00:00"))
            as ArrayRef;
        assert_eq!(text(tstz.clone()), ["2022-01-01 10:00:00+00"]);
        let kolkata = OutputFormat {
            time_zone: Tz::from_str("Asia/Kolkata").expect("tz"),
            ..Default::default()
        };
        assert_eq!(text_with(tstz, &kolkata), ["2022-01-01 15:30:00+05:30"]);
    }

    #[test]
    fn intervals_in_postgres_style() {
        let hour = 3_600_000_000_000i64;
        let values = IntervalMonthDayNanoArray::from(vec![
            IntervalMonthDayNano::new(0, 1, 2 * hour),
            IntervalMonthDayNano::new(14, 3, 4 * hour + 5 * 60_000_000_000 + 6_789_000_000),
            IntervalMonthDayNano::new(0, -1, 0),
            IntervalMonthDayNano::new(-12, 3, 0),
            IntervalMonthDayNano::new(0, 0, 0),
            IntervalMonthDayNano::new(0, 1, -2 * hour),
            IntervalMonthDayNano::new(1, 0, 0),
        ]);
        assert_eq!(
            text(Arc::new(values)),
            [
                "1 day 02:00:00",
                "1 year 2 mons 3 days 04:05:06.789",
                "-1 days",
                "-1 years +3 days",
                "00:00:00",
                "1 day -02:00:00",
                "1 mon"
            ]
        );
    }

    #[test]
    fn arrays_in_braces() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![
            Some(1),
            None,
            Some(3),
        ])]);
        assert_eq!(text(Arc::new(list)), ["{1,NULL,3}"]);
    }
}
