//! Errors as users see them: a Postgres SQLSTATE, a message that says what went
//! wrong, and where useful a detail and a hint that say what to do next.
//!
//! Errors from the layers below (the parser, DataFusion, Arrow, the table store)
//! are translated here, in one place, so that every path reports the same code
//! for the same mistake.

use std::fmt;

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, SchemaError};
use weir_sql::ParseError;
use weir_sql::types::TypeError;

/// A SQLSTATE code (`42P01`).
pub type SqlState = &'static str;

/// The SQLSTATE codes Weir reports, named as in Postgres' errcodes.
pub mod sqlstate {
    use super::SqlState;
    pub const SUCCESSFUL_COMPLETION: SqlState = "00000";
    pub const WARNING: SqlState = "01000";
    pub const FEATURE_NOT_SUPPORTED: SqlState = "0A000";
    pub const INVALID_REGULAR_EXPRESSION: SqlState = "2201B";
    pub const CARDINALITY_VIOLATION: SqlState = "21000";
    pub const DATA_EXCEPTION: SqlState = "22000";
    pub const STRING_DATA_RIGHT_TRUNCATION: SqlState = "22001";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: SqlState = "22003";
    pub const INVALID_DATETIME_FORMAT: SqlState = "22007";
    pub const DATETIME_FIELD_OVERFLOW: SqlState = "22008";
    pub const DIVISION_BY_ZERO: SqlState = "22012";
    pub const INVALID_PARAMETER_VALUE: SqlState = "22023";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = "55000";
    pub const INVALID_TEXT_REPRESENTATION: SqlState = "22P02";
    pub const NOT_NULL_VIOLATION: SqlState = "23502";
    pub const UNIQUE_VIOLATION: SqlState = "23505";
    pub const ACTIVE_SQL_TRANSACTION: SqlState = "25001";
    pub const NO_ACTIVE_SQL_TRANSACTION: SqlState = "25P01";
    pub const IN_FAILED_SQL_TRANSACTION: SqlState = "25P02";
    pub const INVALID_CATALOG_NAME: SqlState = "3D000";
    pub const INVALID_AUTHORIZATION_SPECIFICATION: SqlState = "28000";
    pub const INVALID_PASSWORD: SqlState = "28P01";
    pub const INVALID_SCHEMA_NAME: SqlState = "3F000";
    pub const DEPENDENT_OBJECTS_STILL_EXIST: SqlState = "2BP01";
    pub const SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION: SqlState = "42000";
    pub const SYNTAX_ERROR: SqlState = "42601";
    pub const DATATYPE_MISMATCH: SqlState = "42804";
    pub const WRONG_OBJECT_TYPE: SqlState = "42809";
    pub const UNDEFINED_COLUMN: SqlState = "42703";
    pub const UNDEFINED_FUNCTION: SqlState = "42883";
    pub const UNDEFINED_TABLE: SqlState = "42P01";
    pub const UNDEFINED_OBJECT: SqlState = "42704";
    pub const DUPLICATE_COLUMN: SqlState = "42701";
    pub const DUPLICATE_DATABASE: SqlState = "42P04";
    pub const DUPLICATE_TABLE: SqlState = "42P07";
    pub const AMBIGUOUS_COLUMN: SqlState = "42702";
    pub const INVALID_TABLE_DEFINITION: SqlState = "42P16";
    pub const INVALID_OBJECT_DEFINITION: SqlState = "42P17";
    pub const GROUPING_ERROR: SqlState = "42803";
    pub const OBJECT_IN_USE: SqlState = "55006";
    pub const QUERY_CANCELED: SqlState = "57014";
    pub const OUT_OF_MEMORY: SqlState = "53200";
    pub const TOO_MANY_CONNECTIONS: SqlState = "53300";
    pub const CONFIGURATION_LIMIT_EXCEEDED: SqlState = "53400";
    pub const INVALID_CURSOR_NAME: SqlState = "34000";
    pub const DUPLICATE_CURSOR: SqlState = "42P03";
    pub const IO_ERROR: SqlState = "58030";
    pub const INTERNAL_ERROR: SqlState = "XX000";
    pub const DATA_CORRUPTED: SqlState = "XX001";
    pub const PROTOCOL_VIOLATION: SqlState = "08P01";
}

use sqlstate::*;

/// An error to report to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeirError {
    pub code: SqlState,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character offset in the statement text.
    pub position: Option<usize>,
}

pub type Result<T, E = WeirError> = std::result::Result<T, E>;

impl WeirError {
    pub fn new(code: SqlState, message: impl Into<String>) -> Self {
        WeirError {
            code,
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn not_supported(what: impl fmt::Display) -> Self {
        WeirError::new(FEATURE_NOT_SUPPORTED, format!("{what} is not supported"))
    }

    pub fn internal(what: impl fmt::Display) -> Self {
        WeirError::new(INTERNAL_ERROR, what.to_string())
    }

    pub fn undefined_table(name: impl fmt::Display) -> Self {
        WeirError::new(
            UNDEFINED_TABLE,
            format!("relation \"{name}\" does not exist"),
        )
    }

    pub fn canceled() -> Self {
        WeirError::new(QUERY_CANCELED, "canceling statement due to user request")
    }
}

impl fmt::Display for WeirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for WeirError {}

impl From<ParseError> for WeirError {
    fn from(e: ParseError) -> Self {
        WeirError {
            code: SYNTAX_ERROR,
            message: e.message,
            detail: e.detail,
            hint: None,
            position: e.position,
        }
    }
}

impl From<TypeError> for WeirError {
    fn from(e: TypeError) -> Self {
        match e {
            TypeError::Unsupported(m) => WeirError::new(FEATURE_NOT_SUPPORTED, m),
            TypeError::InvalidModifier(m) => WeirError::new(INVALID_PARAMETER_VALUE, m),
        }
    }
}

impl From<ArrowError> for WeirError {
    fn from(e: ArrowError) -> Self {
        known_limitation(from_arrow(&e))
    }
}

impl From<DataFusionError> for WeirError {
    fn from(e: DataFusionError) -> Self {
        known_limitation(from_datafusion(&e))
    }
}

/// Errors DataFusion reports as internal that are the user's input or a
/// known limitation, by their wording (found by `tests/sql_fuzz.rs`).
fn known_limitation(e: WeirError) -> WeirError {
    if e.code != INTERNAL_ERROR {
        return e;
    }
    let m = &e.message;
    if m.contains("regex parse error") {
        let detail = m
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .trim_start_matches("error: ");
        return WeirError::new(
            INVALID_REGULAR_EXPRESSION,
            format!("invalid regular expression: {detail}"),
        );
    }
    if m.contains("Failed to coerce types") {
        return WeirError::new(DATATYPE_MISMATCH, m.clone());
    }
    if m.contains("Cannot run range queries on datatype") {
        return WeirError::new(
            FEATURE_NOT_SUPPORTED,
            "RANGE window frames are not supported when ordering by a column of this type; \
             use ROWS, or order by a number, date or timestamp",
        );
    }
    if m.contains("ScalarSubqueryExpr evaluated before the subquery was executed") {
        return WeirError::new(
            FEATURE_NOT_SUPPORTED,
            "a scalar subquery is not supported here (in VALUES); use INSERT ... SELECT",
        );
    }
    e
}

/// Puts a [`WeirError`] inside a DataFusion error (for code running inside
/// DataFusion, such as functions), so that it comes out unchanged.
pub fn into_datafusion(e: WeirError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn from_datafusion(e: &DataFusionError) -> WeirError {
    match e {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            from_datafusion(inner)
        }
        DataFusionError::Shared(inner) => from_datafusion(inner),
        DataFusionError::Collection(errors) => match errors.first() {
            Some(first) => from_datafusion(first),
            None => WeirError::internal("unknown error"),
        },
        DataFusionError::ArrowError(arrow, _) => from_arrow(arrow),
        DataFusionError::External(inner) => {
            if let Some(weir) = inner.downcast_ref::<WeirError>() {
                weir.clone()
            } else if let Some(arrow) = inner.downcast_ref::<ArrowError>() {
                from_arrow(arrow)
            } else if let Some(df) = inner.downcast_ref::<DataFusionError>() {
                from_datafusion(df)
            } else {
                WeirError::new(INTERNAL_ERROR, inner.to_string())
            }
        }
        DataFusionError::SQL(parse, _) => WeirError::new(SYNTAX_ERROR, parse.to_string()),
        DataFusionError::NotImplemented(m) => {
            WeirError::new(FEATURE_NOT_SUPPORTED, format!("{m} is not supported"))
        }
        DataFusionError::SchemaError(schema, _) => from_schema(schema),
        DataFusionError::Plan(m) => from_plan_message(m),
        DataFusionError::Execution(m) => from_execution_message(m),
        DataFusionError::ResourcesExhausted(m) => WeirError::new(OUT_OF_MEMORY, m.clone())
            .with_hint(
                "The query needs more memory than one query may use (weir serve \
                 --query-memory-limit).",
            ),
        DataFusionError::IoError(io) => WeirError::new(IO_ERROR, io.to_string()),
        DataFusionError::ObjectStore(os) => WeirError::new(IO_ERROR, os.to_string()),
        DataFusionError::Configuration(m) => WeirError::new(INVALID_PARAMETER_VALUE, m.clone()),
        DataFusionError::ExecutionJoin(j) if j.is_cancelled() => WeirError::canceled(),
        other => WeirError::new(INTERNAL_ERROR, other.message().into_owned()),
    }
}

fn from_schema(e: &SchemaError) -> WeirError {
    match e {
        SchemaError::FieldNotFound { field, .. } => {
            let mut err = WeirError::new(
                UNDEFINED_COLUMN,
                format!("column \"{}\" does not exist", field.name),
            );
            if let Some(relation) = &field.relation {
                err.message = format!("column {}.{} does not exist", relation.table(), field.name);
            }
            err
        }
        SchemaError::AmbiguousReference { field } => WeirError::new(
            AMBIGUOUS_COLUMN,
            format!("column reference \"{}\" is ambiguous", field.name),
        ),
        SchemaError::DuplicateQualifiedField { qualifier, name } => WeirError::new(
            DUPLICATE_COLUMN,
            format!("column \"{name}\" specified more than once in {qualifier}"),
        ),
        SchemaError::DuplicateUnqualifiedField { name } => WeirError::new(
            DUPLICATE_COLUMN,
            format!("column \"{name}\" specified more than once"),
        ),
    }
}

/// DataFusion reports most planning mistakes as `Plan(String)`; the wording is
/// stable enough to pick the Postgres code from it.
fn from_plan_message(m: &str) -> WeirError {
    if let Some(known) = known_value_error(m) {
        return known;
    }
    let lower = m.to_ascii_lowercase();
    let code = if lower.contains("not found") && lower.starts_with("table") {
        return match table_name_in(m) {
            Some(name) => WeirError::undefined_table(name),
            None => WeirError::new(UNDEFINED_TABLE, m.to_string()),
        };
    } else if lower.contains("invalid function")
        || lower.contains("no function matches")
        || lower.contains("function") && lower.contains("does not exist")
    {
        UNDEFINED_FUNCTION
    } else if lower.contains("cannot be cast")
        || lower.contains("coerce")
        || lower.contains("common type")
        || lower.contains("non-boolean")
        || lower.contains("must be boolean")
        || lower.contains("type mismatch")
        || lower.contains("failed to coerce")
        || lower.contains("does not support") && lower.contains("type")
    {
        DATATYPE_MISMATCH
    } else if lower.contains("group by") || lower.contains("aggregate") {
        GROUPING_ERROR
    } else if lower.contains("division by zero") || lower.contains("divide by zero") {
        DIVISION_BY_ZERO
    } else if lower.contains("unsupported") || lower.contains("not supported") {
        FEATURE_NOT_SUPPORTED
    } else {
        SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION
    };
    WeirError::new(code, m.to_string())
}

fn from_execution_message(m: &str) -> WeirError {
    if let Some(known) = known_value_error(m) {
        return known;
    }
    let lower = m.to_ascii_lowercase();
    let code = if lower.contains("divide by zero") || lower.contains("division by zero") {
        return WeirError::new(DIVISION_BY_ZERO, "division by zero");
    } else if lower.contains("overflow") {
        NUMERIC_VALUE_OUT_OF_RANGE
    } else if lower.contains("cannot cast") || lower.contains("invalid") && lower.contains("syntax")
    {
        INVALID_TEXT_REPRESENTATION
    } else if lower.contains("more than one row") {
        CARDINALITY_VIOLATION
    } else {
        DATA_EXCEPTION
    };
    WeirError::new(code, m.to_string())
}

fn from_arrow(e: &ArrowError) -> WeirError {
    match e {
        ArrowError::DivideByZero => WeirError::new(DIVISION_BY_ZERO, "division by zero"),
        ArrowError::ArithmeticOverflow(m) => WeirError::new(
            NUMERIC_VALUE_OUT_OF_RANGE,
            format!("value out of range: {m}"),
        ),
        ArrowError::CastError(m) | ArrowError::ParseError(m) => from_cast_message(m),
        ArrowError::InvalidArgumentError(m) if m.to_ascii_lowercase().contains("decimal") => {
            from_cast_message(m)
        }
        ArrowError::InvalidArgumentError(m) | ArrowError::ComputeError(m)
            if known_value_error(m).is_some() =>
        {
            from_cast_message(m)
        }
        ArrowError::ComputeError(m) if m.to_ascii_lowercase().contains("overflow") => {
            WeirError::new(
                NUMERIC_VALUE_OUT_OF_RANGE,
                format!("value out of range: {m}"),
            )
        }
        ArrowError::ExternalError(inner) => {
            if let Some(weir) = inner.downcast_ref::<WeirError>() {
                weir.clone()
            } else if let Some(df) = inner.downcast_ref::<DataFusionError>() {
                from_datafusion(df)
            } else {
                WeirError::new(INTERNAL_ERROR, inner.to_string())
            }
        }
        ArrowError::MemoryError(m) => WeirError::new(OUT_OF_MEMORY, m.clone()),
        ArrowError::NotYetImplemented(m) => WeirError::not_supported(m),
        other => WeirError::new(DATA_EXCEPTION, other.to_string()),
    }
}

/// Arrow's cast errors, worded as Postgres' input-syntax errors where the value
/// and the type can be recognised.
fn from_cast_message(m: &str) -> WeirError {
    known_value_error(m)
        .unwrap_or_else(|| WeirError::new(INVALID_TEXT_REPRESENTATION, m.to_string()))
}

/// Errors about a value that Arrow and DataFusion word in a few stable ways,
/// wherever they appear in a message (DataFusion wraps them in plan errors
/// when it folds constants).
fn known_value_error(m: &str) -> Option<WeirError> {
    let lower = m.to_ascii_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        return Some(WeirError::new(DIVISION_BY_ZERO, "division by zero"));
    }
    // "Can't cast value 32768 to type Int16"
    if let Some(start) = m.find("Can't cast value ")
        && let Some((_, ty)) = m[start..].split_once(" to type ")
    {
        let ty = ty
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or(ty);
        let pg = match ty {
            "Int16" => "smallint",
            "Int32" => "integer",
            "Int64" => "bigint",
            _ => "value",
        };
        return Some(WeirError::new(
            NUMERIC_VALUE_OUT_OF_RANGE,
            format!("{pg} out of range"),
        ));
    }
    if lower.contains("too large to store in a decimal") {
        return Some(
            WeirError::new(NUMERIC_VALUE_OUT_OF_RANGE, "numeric field overflow")
                .with_detail(m.to_string()),
        );
    }
    // "Cannot cast string 'abc' to value of Int32 type"
    const CANNOT_CAST: &str = "Cannot cast string '";
    if let Some(start) = m.find(CANNOT_CAST)
        && let Some((value, ty)) = m[start + CANNOT_CAST.len()..].split_once("' to value of ")
    {
        let ty = ty.split(' ').next().unwrap_or(ty);
        let pg = match ty {
            "Int16" => "smallint",
            "Int32" => "integer",
            "Int64" => "bigint",
            "Float32" => "real",
            "Float64" => "double precision",
            "Boolean" => "boolean",
            t if t.starts_with("Decimal") => "numeric",
            t if t.starts_with("Timestamp") => "timestamp",
            t if t.starts_with("Date") => "date",
            t if t.starts_with("Time") => "time",
            t if t.starts_with("Interval") => "interval",
            other => other,
        };
        let code = if matches!(pg, "timestamp" | "date" | "time") {
            INVALID_DATETIME_FORMAT
        } else {
            INVALID_TEXT_REPRESENTATION
        };
        return Some(WeirError::new(
            code,
            format!("invalid input syntax for type {pg}: \"{value}\""),
        ));
    }
    if lower.contains("overflow") || lower.contains("out of range") {
        return Some(WeirError::new(NUMERIC_VALUE_OUT_OF_RANGE, m.to_string()));
    }
    None
}

/// `table 'weir.public.foo' not found` → `foo`.
fn table_name_in(m: &str) -> Option<&str> {
    let start = m.find('\'')? + 1;
    let end = start + m[start..].find('\'')?;
    let qualified = &m[start..end];
    Some(qualified.rsplit('.').next().unwrap_or(qualified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_errors_get_postgres_codes() {
        let e: WeirError =
            DataFusionError::Plan("table 'weir.public.nope' not found".into()).into();
        assert_eq!(e.code, UNDEFINED_TABLE);
        assert_eq!(e.message, "relation \"nope\" does not exist");

        let e: WeirError =
            DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None).into();
        assert_eq!(e.code, DIVISION_BY_ZERO);

        let e: WeirError =
            ArrowError::CastError("Cannot cast string 'abc' to value of Int32 type".into()).into();
        assert_eq!(e.code, INVALID_TEXT_REPRESENTATION);
        assert_eq!(e.message, "invalid input syntax for type integer: \"abc\"");

        let inner = WeirError::new(UNIQUE_VIOLATION, "dup");
        let wrapped = DataFusionError::Context(
            "while inserting".into(),
            Box::new(into_datafusion(inner.clone())),
        );
        assert_eq!(WeirError::from(wrapped), inner);
    }
}
