//! Postgres column types as Weir declares and stores them.
//!
//! A [`SqlType`] is what a user wrote in `CREATE TABLE` (`varchar(10)`,
//! `numeric(10,2)`, ...). It decides the Arrow type the column is stored as, the
//! type OID and modifier clients see in `RowDescription` and `pg_attribute`, and
//! the checks an assignment must pass (length of a `varchar(n)`).
//!
//! Time values are kept with microsecond precision, as in Postgres, so that the
//! whole Postgres range (`9999-12-31`, `0001-01-01`) fits; `timestamptz` is an
//! instant stored in UTC and shown in the session's `TimeZone`.

use std::fmt;

use datafusion::arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{
    CharacterLength, DataType as AstType, ExactNumberInfo, TimezoneInfo,
};
use serde::{Deserialize, Serialize};

/// Largest precision of a Postgres `numeric` Weir can store (Arrow `Decimal128`).
pub const MAX_NUMERIC_PRECISION: u8 = 38;
/// Scale given to a `numeric` declared without precision and scale.
pub const DEFAULT_NUMERIC_SCALE: i8 = 10;

/// The time zone tag of a stored `timestamptz` column: instants in UTC.
pub const UTC: &str = "+00:00";

/// The Arrow field metadata key that carries a column's declared type, so that
/// `varchar(5)` is still `varchar(5)` (not just text) wherever the column goes.
pub const FIELD_METADATA_KEY: &str = "weir.sql_type";

/// A column type, as declared in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlType {
    Boolean,
    SmallInt,
    Integer,
    BigInt,
    Real,
    DoublePrecision,
    /// `numeric(precision, scale)`; both absent for a bare `numeric`.
    Numeric {
        precision: Option<u8>,
        scale: Option<i8>,
    },
    Text,
    /// `varchar(n)`; `None` for an unbounded `varchar`.
    Varchar(Option<u32>),
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
}

/// Why a declared type cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeError {
    /// The type exists in Postgres but Weir does not support it (SQLSTATE 0A000).
    Unsupported(String),
    /// The type modifiers are out of range, e.g. `numeric(0)` (SQLSTATE 22023).
    InvalidModifier(String),
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeError::Unsupported(msg) | TypeError::InvalidModifier(msg) => f.write_str(msg),
        }
    }
}

impl SqlType {
    /// The type a user declared, from its parsed form.
    pub fn from_ast(ty: &AstType) -> Result<SqlType, TypeError> {
        use AstType as T;
        Ok(match ty {
            T::Boolean | T::Bool => SqlType::Boolean,
            T::SmallInt(_) | T::Int2(_) => SqlType::SmallInt,
            T::Int(_) | T::Integer(_) | T::Int4(_) => SqlType::Integer,
            T::BigInt(_) | T::Int8(_) => SqlType::BigInt,
            T::Real | T::Float4 => SqlType::Real,
            T::DoublePrecision | T::Float8 | T::Double(ExactNumberInfo::None) => {
                SqlType::DoublePrecision
            }
            // Postgres: float(1..24) is real, float(25..53) and bare float are double.
            T::Float(ExactNumberInfo::Precision(p)) if (1..=24).contains(p) => SqlType::Real,
            T::Float(ExactNumberInfo::Precision(p)) if (25..=53).contains(p) => {
                SqlType::DoublePrecision
            }
            T::Float(ExactNumberInfo::None) => SqlType::DoublePrecision,
            T::Float(_) => {
                return Err(TypeError::InvalidModifier(
                    "precision for type float must be between 1 and 53 bits".into(),
                ));
            }
            T::Numeric(info) | T::Decimal(info) | T::Dec(info) => numeric(info)?,
            T::Text | T::String(None) => SqlType::Text,
            T::Varchar(len) | T::CharacterVarying(len) | T::CharVarying(len) => {
                SqlType::Varchar(char_length(len)?)
            }
            T::Bytea => SqlType::Bytea,
            T::Date => SqlType::Date,
            T::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => SqlType::Time,
            T::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                SqlType::Timestamp
            }
            T::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => SqlType::TimestampTz,
            T::Interval { fields: None, .. } => SqlType::Interval,
            T::Custom(name, modifiers) if modifiers.is_empty() => {
                match name.to_string().to_ascii_lowercase().as_str() {
                    "int" | "int4" | "serial" => SqlType::Integer,
                    "int2" => SqlType::SmallInt,
                    "int8" => SqlType::BigInt,
                    "float4" => SqlType::Real,
                    "float8" => SqlType::DoublePrecision,
                    "bool" => SqlType::Boolean,
                    "timestamptz" => SqlType::TimestampTz,
                    "string" => SqlType::Text,
                    other => return Err(unsupported(other)),
                }
            }
            other => return Err(unsupported(&other.to_string().to_lowercase())),
        })
    }

    /// The Weir type of values of an Arrow type, for columns of query results and
    /// views. `None` when no Postgres type corresponds.
    pub fn from_arrow(ty: &DataType) -> Option<SqlType> {
        Some(match ty {
            DataType::Boolean => SqlType::Boolean,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => SqlType::SmallInt,
            DataType::Int32 | DataType::UInt16 => SqlType::Integer,
            DataType::Int64 | DataType::UInt32 => SqlType::BigInt,
            DataType::UInt64 => SqlType::Numeric {
                precision: Some(20),
                scale: Some(0),
            },
            DataType::Float16 | DataType::Float32 => SqlType::Real,
            DataType::Float64 => SqlType::DoublePrecision,
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => SqlType::Numeric {
                precision: Some(*p),
                scale: Some(*s),
            },
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlType::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytea,
            DataType::Date32 | DataType::Date64 => SqlType::Date,
            DataType::Time32(_) | DataType::Time64(_) => SqlType::Time,
            DataType::Timestamp(_, None) => SqlType::Timestamp,
            DataType::Timestamp(_, Some(_)) => SqlType::TimestampTz,
            DataType::Interval(_) | DataType::Duration(_) => SqlType::Interval,
            DataType::Dictionary(_, value) => return SqlType::from_arrow(value),
            _ => return None,
        })
    }

    /// The declared type a field carries in its metadata, if any.
    pub fn of_field(field: &datafusion::arrow::datatypes::Field) -> Option<SqlType> {
        let text = field.metadata().get(FIELD_METADATA_KEY)?;
        serde_json::from_str(text).ok()
    }

    /// An Arrow field of this type that remembers it.
    pub fn field(&self, name: &str, nullable: bool) -> datafusion::arrow::datatypes::Field {
        let field = datafusion::arrow::datatypes::Field::new(name, self.arrow_type(), nullable);
        match serde_json::to_string(self) {
            Ok(json) => field.with_metadata([(FIELD_METADATA_KEY.to_string(), json)].into()),
            Err(_) => field,
        }
    }

    /// The Arrow type values of this column are stored as.
    pub fn arrow_type(&self) -> DataType {
        match self {
            SqlType::Boolean => DataType::Boolean,
            SqlType::SmallInt => DataType::Int16,
            SqlType::Integer => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Real => DataType::Float32,
            SqlType::DoublePrecision => DataType::Float64,
            SqlType::Numeric { precision, scale } => DataType::Decimal128(
                precision.unwrap_or(MAX_NUMERIC_PRECISION),
                scale.unwrap_or(if precision.is_some() {
                    0
                } else {
                    DEFAULT_NUMERIC_SCALE
                }),
            ),
            SqlType::Text | SqlType::Varchar(_) => DataType::Utf8,
            SqlType::Bytea => DataType::Binary,
            SqlType::Date => DataType::Date32,
            SqlType::Time => DataType::Time64(TimeUnit::Microsecond),
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            SqlType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
        }
    }

    /// The Postgres type OID (`pg_type.oid`).
    pub fn oid(&self) -> u32 {
        match self {
            SqlType::Boolean => 16,
            SqlType::Bytea => 17,
            SqlType::BigInt => 20,
            SqlType::SmallInt => 21,
            SqlType::Integer => 23,
            SqlType::Text => 25,
            SqlType::Real => 700,
            SqlType::DoublePrecision => 701,
            SqlType::Varchar(_) => 1043,
            SqlType::Date => 1082,
            SqlType::Time => 1083,
            SqlType::Timestamp => 1114,
            SqlType::TimestampTz => 1184,
            SqlType::Interval => 1186,
            SqlType::Numeric { .. } => 1700,
        }
    }

    /// The type of a Postgres type OID, for the types Weir has (`varchar`
    /// and `bpchar` read as `text`).
    pub fn from_oid(oid: u32) -> Option<SqlType> {
        Some(match oid {
            16 => SqlType::Boolean,
            17 => SqlType::Bytea,
            20 => SqlType::BigInt,
            21 => SqlType::SmallInt,
            23 => SqlType::Integer,
            19 | 25 | 1042 | 1043 => SqlType::Text,
            700 => SqlType::Real,
            701 => SqlType::DoublePrecision,
            1082 => SqlType::Date,
            1083 => SqlType::Time,
            1114 => SqlType::Timestamp,
            1184 => SqlType::TimestampTz,
            1186 => SqlType::Interval,
            1700 => SqlType::Numeric {
                precision: None,
                scale: None,
            },
            _ => return None,
        })
    }

    /// The Postgres type modifier (`pg_attribute.atttypmod`), -1 when none.
    pub fn typmod(&self) -> i32 {
        match self {
            SqlType::Varchar(Some(n)) => *n as i32 + 4,
            SqlType::Numeric {
                precision: Some(p),
                scale,
            } => ((i32::from(*p) << 16) | (i32::from(scale.unwrap_or(0)) & 0xffff)) + 4,
            _ => -1,
        }
    }

    /// The storage size Postgres reports for the type (`pg_type.typlen`).
    pub fn typlen(&self) -> i16 {
        match self {
            SqlType::Boolean => 1,
            SqlType::SmallInt => 2,
            SqlType::Integer | SqlType::Real | SqlType::Date => 4,
            SqlType::BigInt
            | SqlType::DoublePrecision
            | SqlType::Time
            | SqlType::Timestamp
            | SqlType::TimestampTz => 8,
            SqlType::Interval => 16,
            _ => -1,
        }
    }

    /// Maximum length in characters of values, for `varchar(n)`.
    pub fn max_length(&self) -> Option<u32> {
        match self {
            SqlType::Varchar(n) => *n,
            _ => None,
        }
    }
}

/// The name Postgres' `format_type` gives the type: `character varying(10)`,
/// `numeric(10,2)`, `timestamp with time zone`, ...
impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Boolean => f.write_str("boolean"),
            SqlType::SmallInt => f.write_str("smallint"),
            SqlType::Integer => f.write_str("integer"),
            SqlType::BigInt => f.write_str("bigint"),
            SqlType::Real => f.write_str("real"),
            SqlType::DoublePrecision => f.write_str("double precision"),
            SqlType::Numeric {
                precision: Some(p),
                scale,
            } => write!(f, "numeric({p},{})", scale.unwrap_or(0)),
            SqlType::Numeric { .. } => f.write_str("numeric"),
            SqlType::Text => f.write_str("text"),
            SqlType::Varchar(Some(n)) => write!(f, "character varying({n})"),
            SqlType::Varchar(None) => f.write_str("character varying"),
            SqlType::Bytea => f.write_str("bytea"),
            SqlType::Date => f.write_str("date"),
            SqlType::Time => f.write_str("time without time zone"),
            SqlType::Timestamp => f.write_str("timestamp without time zone"),
            SqlType::TimestampTz => f.write_str("timestamp with time zone"),
            SqlType::Interval => f.write_str("interval"),
        }
    }
}

fn unsupported(name: &str) -> TypeError {
    TypeError::Unsupported(format!(
        "type {name} is not supported; use one of boolean, smallint, integer, bigint, real, \
         double precision, numeric, text, varchar, bytea, date, time, timestamp, timestamptz, \
         interval"
    ))
}

fn numeric(info: &ExactNumberInfo) -> Result<SqlType, TypeError> {
    let (precision, scale) = match *info {
        ExactNumberInfo::None => {
            return Ok(SqlType::Numeric {
                precision: None,
                scale: None,
            });
        }
        ExactNumberInfo::Precision(p) => (p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (p, s),
    };
    if !(1..=u64::from(MAX_NUMERIC_PRECISION)).contains(&precision) {
        return Err(TypeError::InvalidModifier(format!(
            "NUMERIC precision {precision} must be between 1 and {MAX_NUMERIC_PRECISION}"
        )));
    }
    if scale < 0 || scale as u64 > precision {
        return Err(TypeError::InvalidModifier(format!(
            "NUMERIC scale {scale} must be between 0 and precision {precision}"
        )));
    }
    Ok(SqlType::Numeric {
        precision: Some(precision as u8),
        scale: Some(scale as i8),
    })
}

fn char_length(len: &Option<CharacterLength>) -> Result<Option<u32>, TypeError> {
    match len {
        None => Ok(None),
        Some(CharacterLength::IntegerLength { length, .. }) => match u32::try_from(*length) {
            Ok(n) if (1..=10_485_760).contains(&n) => Ok(Some(n)),
            _ => Err(TypeError::InvalidModifier(format!(
                "length for type varchar must be between 1 and 10485760, not {length}"
            ))),
        },
        Some(CharacterLength::Max) => Err(unsupported("varchar(max)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(ty: &str) -> Result<SqlType, TypeError> {
        let mut parser = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(ty)
            .expect("tokenize");
        SqlType::from_ast(&parser.parse_data_type().expect("parse type"))
    }

    #[test]
    fn postgres_type_names_map_to_their_types() {
        let cases = [
            ("boolean", SqlType::Boolean, "boolean"),
            ("int2", SqlType::SmallInt, "smallint"),
            ("int", SqlType::Integer, "integer"),
            ("bigint", SqlType::BigInt, "bigint"),
            ("float4", SqlType::Real, "real"),
            (
                "double precision",
                SqlType::DoublePrecision,
                "double precision",
            ),
            ("float", SqlType::DoublePrecision, "double precision"),
            (
                "varchar(10)",
                SqlType::Varchar(Some(10)),
                "character varying(10)",
            ),
            ("text", SqlType::Text, "text"),
            ("bytea", SqlType::Bytea, "bytea"),
            (
                "timestamptz",
                SqlType::TimestampTz,
                "timestamp with time zone",
            ),
            (
                "timestamp without time zone",
                SqlType::Timestamp,
                "timestamp without time zone",
            ),
            ("time", SqlType::Time, "time without time zone"),
            ("interval", SqlType::Interval, "interval"),
        ];
        for (text, expected, display) in cases {
            let ty = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(ty, expected, "{text}");
            assert_eq!(ty.to_string(), display, "{text}");
        }
    }

    #[test]
    fn numeric_keeps_precision_and_scale() {
        let ty = parse("numeric(10,2)").expect("numeric");
        assert_eq!(ty.to_string(), "numeric(10,2)");
        assert_eq!(ty.arrow_type(), DataType::Decimal128(10, 2));
        // Postgres: ((10 << 16) | 2) + 4
        assert_eq!(ty.typmod(), 655366);
        assert_eq!(
            parse("numeric(5)").expect("numeric").arrow_type(),
            DataType::Decimal128(5, 0)
        );
        assert!(matches!(
            parse("numeric(40,2)"),
            Err(TypeError::InvalidModifier(_))
        ));
        assert!(matches!(
            parse("numeric(4,6)"),
            Err(TypeError::InvalidModifier(_))
        ));
    }

    #[test]
    fn varchar_typmod_is_length_plus_header() {
        assert_eq!(parse("varchar(10)").expect("varchar").typmod(), 14);
        assert_eq!(parse("varchar").expect("varchar").typmod(), -1);
    }

    #[test]
    fn unsupported_types_are_named() {
        let err = parse("point").expect_err("point is not supported");
        assert!(err.to_string().contains("point"), "{err}");
    }
}
