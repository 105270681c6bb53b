//! Casts between text and other types with Postgres' syntax.
//!
//! DataFusion casts text to `bytea` by taking the string's bytes, reads
//! intervals only in its own syntax, and writes values to text in Arrow's
//! format. Postgres clients write `'\x0102'` for two bytes and `'1 day
//! 02:00:00'` for an interval, and expect `now()::text` to read like the value
//! psql shows. The analyzer rule here replaces such casts (including the ones
//! DataFusion adds itself, for example when inserting text into a `bytea`
//! column) with functions that parse and print Postgres' syntax.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, IntervalMonthDayNanoBuilder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::{WeirError, into_datafusion, sqlstate};
use crate::pg_catalog::functions::SharedSettings;
use crate::text_format::{OutputFormat, write_text};

/// Rewrites casts from text to `bytea` and `interval` into Postgres parsers,
/// and casts to text into Postgres' output functions.
#[derive(Debug)]
pub struct PostgresCasts {
    text_out: ScalarUDF,
}

impl AnalyzerRule for PostgresCasts {
    fn name(&self) -> &str {
        "postgres_casts"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let schema = input_schema(&node)?;
            node.map_expressions(|expr| expr.transform_up(|e| rewrite(e, &schema, &self.text_out)))
        })
        .map(|t| t.data)
    }
}

/// The schema the expressions of a plan node are evaluated against.
fn input_schema(node: &LogicalPlan) -> DfResult<DFSchema> {
    let mut schema = DFSchema::empty();
    for input in node.inputs() {
        schema.merge(input.schema());
    }
    Ok(schema)
}

fn rewrite(expr: Expr, schema: &DFSchema, text_out: &ScalarUDF) -> DfResult<Transformed<Expr>> {
    let (inner, target) = match &expr {
        Expr::Cast(cast) => (&cast.expr, cast.field.data_type()),
        Expr::TryCast(cast) => (&cast.expr, cast.field.data_type()),
        _ => return Ok(Transformed::no(expr)),
    };
    let Ok(source) = inner.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    let textual =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    if textual(target) && has_postgres_text_form(&source) {
        let text = text_out.call(vec![(**inner).clone()]);
        return Ok(Transformed::yes(if *target == DataType::Utf8 {
            text
        } else {
            text.cast_to(target, schema)?
        }));
    }
    if !textual(&source) {
        return Ok(Transformed::no(expr));
    }
    let parser = match target {
        DataType::Binary => bytea_in(),
        DataType::Interval(IntervalUnit::MonthDayNano) => interval_in(),
        _ => return Ok(Transformed::no(expr)),
    };
    Ok(Transformed::yes(parser.call(vec![(**inner).clone()])))
}

/// Types whose text form in Postgres differs from Arrow's.
fn has_postgres_text_form(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(..)
            | DataType::Interval(_)
            | DataType::Duration(_)
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::List(_)
    )
}

/// `value::text`: the value as Postgres' output function prints it, in the
/// session's settings (time zone, float digits); booleans are `true`/`false`.
struct TextOut {
    signature: Signature,
    settings: SharedSettings,
}

impl std::fmt::Debug for TextOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TextOut")
    }
}

impl PartialEq for TextOut {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TextOut {}

impl std::hash::Hash for TextOut {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_text_out".hash(state);
    }
}

impl ScalarUDFImpl for TextOut {
    fn name(&self) -> &str {
        "pg_text_out"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (input, scalar) = only_argument(&args)?;
        let input = &input;
        let format = {
            let settings = self.settings.read().unwrap_or_else(|p| p.into_inner());
            OutputFormat::from_settings(&settings)
        };
        let mut out = StringBuilder::with_capacity(input.len(), input.len() * 16);
        let mut text = String::new();
        for row in 0..input.len() {
            if input.is_null(row) {
                out.append_null();
            } else if let Some(booleans) = input.as_boolean_opt() {
                out.append_value(if booleans.value(row) { "true" } else { "false" });
            } else {
                text.clear();
                write_text(input, row, &format, &mut text)
                    .map_err(|e| into_datafusion(WeirError::internal(e.0)))?;
                out.append_value(&text);
            }
        }
        let output: ArrayRef = Arc::new(out.finish());
        columnar(output, scalar)
    }
}

/// The argument of a one-argument function, as an array, and whether it was a
/// scalar.
fn only_argument(args: &ScalarFunctionArgs) -> DfResult<(ArrayRef, bool)> {
    let scalar = matches!(args.args.first(), Some(ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let input = arrays
        .into_iter()
        .next()
        .ok_or_else(|| into_datafusion(WeirError::internal("missing argument")))?;
    Ok((input, scalar))
}

/// A function's result, as a scalar when its argument was one.
fn columnar(output: ArrayRef, scalar: bool) -> DfResult<ColumnarValue> {
    if scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &output, 0,
        )?))
    } else {
        Ok(ColumnarValue::Array(output))
    }
}

fn bytea_in() -> ScalarUDF {
    ScalarUDF::from(TextParser {
        name: "pg_bytea_in",
        signature: Signature::string(1, Volatility::Immutable),
        output: DataType::Binary,
    })
}

fn interval_in() -> ScalarUDF {
    ScalarUDF::from(TextParser {
        name: "pg_interval_in",
        signature: Signature::string(1, Volatility::Immutable),
        output: DataType::Interval(IntervalUnit::MonthDayNano),
    })
}

/// A function parsing text into a value with a Postgres input function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextParser {
    name: &'static str,
    signature: Signature,
    output: DataType,
}

impl ScalarUDFImpl for TextParser {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.output.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (input, scalar) = only_argument(&args)?;
        let input = datafusion::arrow::compute::cast(&input, &DataType::Utf8)?;
        let text = input.as_string::<i32>();
        let output: ArrayRef = match self.output {
            DataType::Binary => {
                let mut out = BinaryBuilder::with_capacity(text.len(), text.len() * 8);
                for value in text.iter() {
                    match value {
                        Some(v) => out.append_value(parse_bytea(v).map_err(into_datafusion)?),
                        None => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
            _ => {
                let mut out = IntervalMonthDayNanoBuilder::with_capacity(text.len());
                for value in text.iter() {
                    match value {
                        Some(v) => out.append_value(parse_interval(v).map_err(into_datafusion)?),
                        None => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
        };
        columnar(output, scalar)
    }
}

fn invalid(ty: &str, value: &str) -> WeirError {
    WeirError::new(
        sqlstate::INVALID_TEXT_REPRESENTATION,
        format!("invalid input syntax for type {ty}: \"{value}\""),
    )
}

/// Postgres' `bytea` input: `\x` followed by hex digits, or the escape format
/// (`\\` for a backslash, `\ooo` for an octal byte).
pub fn parse_bytea(text: &str) -> Result<Vec<u8>, WeirError> {
    if let Some(hex) = text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("\\X"))
    {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return Err(WeirError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                "invalid hexadecimal data: odd number of digits",
            ));
        }
        return digits
            .chunks(2)
            .map(|pair| {
                let s = std::str::from_utf8(pair).map_err(|_| invalid("bytea", text))?;
                if !pair.iter().all(u8::is_ascii_hexdigit) {
                    return Err(WeirError::new(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("invalid hexadecimal digit: \"{s}\""),
                    ));
                }
                u8::from_str_radix(s, 16).map_err(|_| {
                    WeirError::new(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("invalid hexadecimal digit: \"{}\"", s),
                    )
                })
            })
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if let Some(octal) = bytes.get(i + 1..i + 4)
            && octal.iter().all(|b| (b'0'..=b'7').contains(b))
            && octal[0] <= b'3'
        {
            out.push(octal.iter().fold(0u8, |acc, b| acc * 8 + (b - b'0')));
            i += 4;
        } else {
            return Err(invalid("bytea", text));
        }
    }
    Ok(out)
}

const MICROS_PER_SECOND: f64 = 1e6;
const NANOS_PER_MICRO: i64 = 1000;

/// An interval being built: whole months and days, and microseconds.
#[derive(Default)]
struct Parts {
    months: f64,
    days: f64,
    micros: f64,
}

impl Parts {
    fn add(&mut self, value: f64, unit: &str) -> Option<()> {
        match unit {
            "microsecond" | "microseconds" | "us" | "usec" | "usecs" | "useconds" => {
                self.micros += value
            }
            "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "mseconds" => {
                self.micros += value * 1e3
            }
            "second" | "seconds" | "s" | "sec" | "secs" => self.micros += value * MICROS_PER_SECOND,
            "minute" | "minutes" | "m" | "min" | "mins" => {
                self.micros += value * 60.0 * MICROS_PER_SECOND
            }
            "hour" | "hours" | "h" | "hr" | "hrs" => {
                self.micros += value * 3600.0 * MICROS_PER_SECOND
            }
            "day" | "days" | "d" => self.days += value,
            "week" | "weeks" | "w" => self.days += value * 7.0,
            "month" | "months" | "mon" | "mons" => self.months += value,
            "year" | "years" | "y" | "yr" | "yrs" => self.months += value * 12.0,
            "decade" | "decades" | "dec" | "decs" => self.months += value * 120.0,
            "century" | "centuries" | "c" | "cent" => self.months += value * 1200.0,
            "millennium" | "millennia" | "mil" | "mils" => self.months += value * 12000.0,
            _ => return None,
        }
        Some(())
    }

    /// Whole units, with fractions spilling into the next smaller unit as in
    /// Postgres (a month is 30 days, a day 24 hours).
    fn finish(self, negate: bool) -> Option<IntervalMonthDayNano> {
        let sign = if negate { -1.0 } else { 1.0 };
        let months = (self.months * sign).trunc();
        let days_total = self.days * sign + (self.months * sign - months) * 30.0;
        let days = days_total.trunc();
        let micros =
            (self.micros * sign + (days_total - days) * 86_400.0 * MICROS_PER_SECOND).round();
        if !(i32::MIN as f64..=i32::MAX as f64).contains(&months)
            || !(i32::MIN as f64..=i32::MAX as f64).contains(&days)
            || micros.abs() > (i64::MAX / NANOS_PER_MICRO) as f64
        {
            return None;
        }
        Some(IntervalMonthDayNano::new(
            months as i32,
            days as i32,
            micros as i64 * NANOS_PER_MICRO,
        ))
    }
}

/// Postgres' interval input: `1 year 2 mons 3 days 04:05:06.789`, `-1 day`,
/// `2 hours 30 minutes`, `1 day ago`, `3 4:05:06`, ISO 8601 `P1Y2M3DT4H5M6S`.
pub fn parse_interval(text: &str) -> Result<IntervalMonthDayNano, WeirError> {
    let trimmed = text.trim();
    let parsed = if trimmed.starts_with('P') || trimmed.starts_with('p') {
        parse_iso_interval(&trimmed[1..])
    } else {
        parse_postgres_interval(trimmed)
    };
    parsed.ok_or_else(|| {
        WeirError::new(
            sqlstate::INVALID_DATETIME_FORMAT,
            format!("invalid input syntax for type interval: \"{text}\""),
        )
    })
}

fn parse_postgres_interval(text: &str) -> Option<IntervalMonthDayNano> {
    let lower = text.to_ascii_lowercase();
    let mut tokens: Vec<&str> = lower.split_whitespace().collect();
    if tokens.first() == Some(&"@") {
        tokens.remove(0);
    }
    let negate = tokens.last() == Some(&"ago");
    if negate {
        tokens.pop();
    }
    if tokens.is_empty() {
        return None;
    }
    let mut parts = Parts::default();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        if token.contains(':') {
            parts.micros += parse_time_of_day(token)?;
            i += 1;
            continue;
        }
        // A number, with its unit attached ("10min") or in the next token.
        let split = token
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
            .unwrap_or(token.len());
        let (number, attached) = token.split_at(split);
        let value: f64 = number.parse().ok()?;
        if !attached.is_empty() {
            parts.add(value, attached)?;
            i += 1;
        } else if let Some(unit) = tokens
            .get(i + 1)
            .filter(|t| !t.contains(':') && t.parse::<f64>().is_err())
        {
            parts.add(value, unit)?;
            i += 2;
        } else if tokens.get(i + 1).is_some_and(|t| t.contains(':')) {
            // SQL-standard "3 4:05:06": days, then a time.
            parts.days += value;
            i += 1;
        } else if i + 1 == tokens.len() {
            parts.micros += value * MICROS_PER_SECOND;
            i += 1;
        } else {
            return None;
        }
    }
    parts.finish(negate)
}

/// `[-]HH:MM[:SS[.ffffff]]` in microseconds.
fn parse_time_of_day(token: &str) -> Option<f64> {
    let (negative, body) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token.strip_prefix('+').unwrap_or(token)),
    };
    let fields: Vec<&str> = body.split(':').collect();
    if !(2..=3).contains(&fields.len()) {
        return None;
    }
    let hours: f64 = fields[0].parse().ok()?;
    let minutes: f64 = fields[1].parse().ok()?;
    let seconds: f64 = match fields.get(2) {
        Some(s) => s.parse().ok()?,
        None => 0.0,
    };
    let micros = (hours * 3600.0 + minutes * 60.0 + seconds) * MICROS_PER_SECOND;
    Some(if negative { -micros } else { micros })
}

/// ISO 8601 durations after the `P`: `1Y2M3DT4H5M6S`, `T30M`, `2W`.
fn parse_iso_interval(text: &str) -> Option<IntervalMonthDayNano> {
    let mut parts = Parts::default();
    let mut in_time = false;
    let mut number = String::new();
    for c in text.chars() {
        match c.to_ascii_uppercase() {
            'T' if number.is_empty() => in_time = true,
            d if d.is_ascii_digit() || d == '.' || d == '-' => number.push(d),
            unit => {
                let value: f64 = number.parse().ok()?;
                number.clear();
                let unit = match (unit, in_time) {
                    ('Y', false) => "year",
                    ('M', false) => "month",
                    ('W', false) => "week",
                    ('D', false) => "day",
                    ('H', true) => "hour",
                    ('M', true) => "minute",
                    ('S', true) => "second",
                    _ => return None,
                };
                parts.add(value, unit)?;
            }
        }
    }
    if !number.is_empty() {
        return None;
    }
    parts.finish(false)
}

/// Installs the rule and its functions into a session.
pub fn install(ctx: &datafusion::execution::context::SessionContext, settings: &SharedSettings) {
    let text_out = ScalarUDF::from(TextOut {
        signature: Signature::any(1, Volatility::Stable),
        settings: settings.clone(),
    });
    ctx.add_analyzer_rule(Arc::new(PostgresCasts { text_out }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(text: &str) -> (i32, i32, i64) {
        let v = parse_interval(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (v.months, v.days, v.nanoseconds / 1000)
    }

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn intervals_in_postgres_syntax() {
        assert_eq!(interval("1 day 02:00:00"), (0, 1, 2 * HOUR));
        assert_eq!(
            interval("1 year 2 mons 3 days 04:05:06.789"),
            (14, 3, 4 * HOUR + 5 * 60_000_000 + 6_789_000)
        );
        assert_eq!(interval("1 year 2 months 3 days"), (14, 3, 0));
        assert_eq!(interval("-1 day"), (0, -1, 0));
        assert_eq!(interval("-1 days"), (0, -1, 0));
        assert_eq!(interval("1 day -02:00:00"), (0, 1, -2 * HOUR));
        assert_eq!(
            interval("2 hours 30 minutes"),
            (0, 0, 2 * HOUR + 30 * 60_000_000)
        );
        assert_eq!(interval("10min"), (0, 0, 10 * 60_000_000));
        assert_eq!(interval("1 day ago"), (0, -1, 0));
        assert_eq!(interval("1.5 days"), (0, 1, 12 * HOUR));
        assert_eq!(interval("1.5 months"), (1, 15, 0));
        assert_eq!(
            interval("3 4:05:06"),
            (0, 3, 4 * HOUR + 5 * 60_000_000 + 6_000_000)
        );
        assert_eq!(interval("5"), (0, 0, 5_000_000));
        assert_eq!(interval("00:00:00"), (0, 0, 0));
        assert_eq!(interval("@ 1 minute"), (0, 0, 60_000_000));
        assert_eq!(
            interval("P1Y2M3DT4H5M6S"),
            (14, 3, 4 * HOUR + 5 * 60_000_000 + 6_000_000)
        );
        assert_eq!(interval("PT30M"), (0, 0, 30 * 60_000_000));
        assert!(parse_interval("1 fortnight").is_err());
        assert!(parse_interval("").is_err());
        assert_eq!(
            parse_interval("banana").expect_err("not an interval").code,
            sqlstate::INVALID_DATETIME_FORMAT
        );
    }

    #[test]
    fn bytea_input_formats() {
        assert_eq!(parse_bytea("\\x0102").expect("hex"), vec![1, 2]);
        assert_eq!(
            parse_bytea("\\xDEAD beef").expect("hex"),
            vec![0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(parse_bytea("abc").expect("escape"), b"abc".to_vec());
        assert_eq!(
            parse_bytea("a\\\\b\\001").expect("escape"),
            vec![b'a', b'\\', b'b', 1]
        );
        assert!(parse_bytea("\\x123").is_err());
        assert!(parse_bytea("\\x+f").is_err());
        assert!(parse_bytea("\\q").is_err());
    }
}
