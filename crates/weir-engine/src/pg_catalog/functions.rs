//! Postgres functions clients call, installed into each session.
//!
//! Those `datafusion-pg-catalog` provides correctly are reused; Weir adds the
//! ones that need its catalog or its session (`pg_get_indexdef`,
//! `pg_get_viewdef`, `current_setting`, the session user), and the type planner
//! that gives SQL types Postgres' precision (timestamps in microseconds,
//! `timestamptz` in the session's time zone).

use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int32Type, Int64Type, TimeUnit};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::{DataType as AstType, TimezoneInfo};
use datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt;
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use datafusion_pg_catalog::pg_catalog::{
    self as upstream, PgCatalogStaticTables, array_bounds_udf, format_type, has_privilege_udf,
    pg_get_expr_udf, quote_ident_udf,
};

use super::tables::{constraint_oid, view_definition};
use crate::database::{Database, PUBLIC_SCHEMA};
use crate::relation::Relation;
use crate::settings::{SERVER_VERSION, Settings};

/// A session's settings, shared with the functions that read them.
pub type SharedSettings = Arc<RwLock<Settings>>;

/// Installs the Postgres functions and type planner into a session's context.
pub fn install(
    ctx: &SessionContext,
    db: &Arc<Database>,
    static_tables: &PgCatalogStaticTables,
    settings: &SharedSettings,
    user: &str,
) {
    // From datafusion-pg-catalog, where they answer as Postgres does.
    for udf in [
        upstream::create_current_database_udf(&db.name),
        upstream::create_current_schema_udf(),
        upstream::create_current_schemas_udf(),
        upstream::create_pg_table_is_visible(),
        format_type::create_format_type_udf(),
        has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
        pg_get_expr_udf::create_pg_get_expr_udf(),
        upstream::create_pg_get_partkeydef_udf(),
        upstream::create_pg_relation_is_publishable_udf(),
        upstream::create_pg_get_statisticsobjdef_columns_udf(),
        upstream::create_pg_backend_pid_udf(),
        upstream::create_pg_relation_size_udf(),
        upstream::create_pg_total_relation_size_udf(),
        upstream::create_pg_stat_get_numscans(),
        upstream::create_pg_get_partition_ancestors_udf(),
        quote_ident_udf::create_quote_ident_udf(),
        quote_ident_udf::create_parse_ident_udf(),
        array_bounds_udf::create_array_upper_udf(),
        array_bounds_udf::create_array_lower_udf(),
    ] {
        ctx.register_udf(udf);
    }
    ctx.register_udtf("pg_get_keywords", static_tables.pg_get_keywords.clone());

    // Weir's own.
    let owner = user.to_string();
    let session_user = user.to_string();
    let settings_for_current = settings.clone();
    let db_index = Arc::downgrade(db);
    let db_constraint = Arc::downgrade(db);
    let db_view = Arc::downgrade(db);
    for udf in [
        text_fn(
            "pg_get_userbyid",
            &[&[OID]],
            Volatility::Stable,
            move |args| match args.first()?.as_int()? {
                oid if oid == i64::from(super::DATABASE_OWNER_OID) => {
                    Some("pg_database_owner".into())
                }
                _ => Some(owner.clone()),
            },
        ),
        // Weir has no roles: the current user is the session's.
        text_fn("session_user", &[&[]], Volatility::Stable, move |_| {
            Some(session_user.clone())
        })
        .with_aliases(["current_user", "current_role", "user"]),
        text_fn(
            "pg_encoding_to_char",
            &[&[OID]],
            Volatility::Immutable,
            |args| (args.first()?.as_int()? == 6).then(|| "UTF8".to_string()),
        ),
        text_fn("version", &[&[]], Volatility::Immutable, |_| {
            Some(format!(
                "PostgreSQL {SERVER_VERSION} (Weir {}) on {}-linux, 64-bit",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH
            ))
        }),
        text_fn(
            "current_setting",
            &[&[DataType::Utf8], &[DataType::Utf8, DataType::Boolean]],
            Volatility::Stable,
            move |args| {
                let name = args.first()?.as_text()?;
                let settings = settings_for_current.read().ok()?;
                settings.get(&name).ok()
            },
        ),
        text_fn(
            "pg_get_indexdef",
            &[&[OID], &[OID, DataType::Int32, DataType::Boolean]],
            Volatility::Stable,
            move |args| {
                let oid = args.first()?.as_int()?;
                let db = db_index.upgrade()?;
                let table = table_with_key(&db, |key_oid| i64::from(key_oid) == oid)?;
                let column = args.get(1).and_then(Value::as_int).unwrap_or(0);
                let keys = table.def.primary_key_columns();
                if column > 0 {
                    return keys.get(column as usize - 1).map(|k| quote_ident(k));
                }
                Some(format!(
                    "CREATE UNIQUE INDEX {} ON {PUBLIC_SCHEMA}.{} USING btree ({})",
                    quote_ident(&table.def.primary_key_name()),
                    quote_ident(&table.def.name),
                    keys.iter()
                        .map(|k| quote_ident(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            },
        ),
        text_fn(
            "pg_get_constraintdef",
            &[&[OID], &[OID, DataType::Boolean]],
            Volatility::Stable,
            move |args| {
                let oid = args.first()?.as_int()?;
                let db = db_constraint.upgrade()?;
                let table =
                    table_with_key(&db, |key_oid| i64::from(constraint_oid(key_oid)) == oid)?;
                let keys = table.def.primary_key_columns();
                Some(format!(
                    "PRIMARY KEY ({})",
                    keys.iter()
                        .map(|k| quote_ident(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            },
        ),
        text_fn(
            "pg_get_viewdef",
            &[
                &[OID],
                &[OID, DataType::Boolean],
                &[DataType::Utf8],
                &[DataType::Utf8, DataType::Boolean],
            ],
            Volatility::Stable,
            move |args| {
                let db = db_view.upgrade()?;
                let relation = match args.first()? {
                    Value::Int(oid) => db
                        .relations()
                        .into_iter()
                        .find(|r| i64::from(r.oid()) == *oid)?,
                    Value::Text(name) => db.relation(name.rsplit('.').next()?)?,
                    Value::Null => return None,
                };
                match relation {
                    Relation::View(v) => Some(view_definition(&v.def.query)),
                    Relation::MaterializedView(v) => Some(view_definition(&v.def.query)),
                    _ => None,
                }
            },
        ),
        text_fn(
            "obj_description",
            &[&[OID], &[OID, DataType::Utf8]],
            Volatility::Stable,
            |_| None,
        ),
        text_fn(
            "col_description",
            &[&[OID, DataType::Int32]],
            Volatility::Stable,
            |_| None,
        ),
        text_fn(
            "shobj_description",
            &[&[OID, DataType::Utf8]],
            Volatility::Stable,
            |_| None,
        ),
    ] {
        ctx.register_udf(udf);
    }

    let state = ctx.state_ref();
    let new_state = SessionStateBuilder::new_from_existing(state.read().clone())
        .with_type_planner(Arc::new(WeirTypePlanner {
            settings: settings.clone(),
        }))
        .build();
    *state.write() = new_state;
    CoerceIntArgsToBigInt::widen(ctx);
}

/// Postgres OIDs are `int4` in the crate's catalog tables.
const OID: DataType = DataType::Int32;

fn table_with_key(
    db: &Database,
    matches: impl Fn(u32) -> bool,
) -> Option<Arc<crate::relation::Table>> {
    db.relations().into_iter().find_map(|r| match r {
        Relation::Table(t) if t.def.primary_key_oid.is_some_and(&matches) => Some(t),
        _ => None,
    })
}

/// An identifier as Postgres prints it: quoted unless it is a plain lowercase
/// name.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// An argument value of a catalog function, for one row.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Text(String),
    Null,
}

impl Value {
    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    fn as_text(&self) -> Option<String> {
        match self {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn of(array: &ArrayRef, row: usize) -> Value {
        if array.is_null(row) {
            return Value::Null;
        }
        match array.data_type() {
            DataType::Int32 => Value::Int(i64::from(array.as_primitive::<Int32Type>().value(row))),
            DataType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(row)),
            DataType::Utf8 => Value::Text(array.as_string::<i32>().value(row).to_string()),
            DataType::Utf8View => Value::Text(array.as_string_view().value(row).to_string()),
            DataType::Boolean => Value::Int(i64::from(array.as_boolean().value(row))),
            _ => Value::Null,
        }
    }
}

type TextFn = dyn Fn(&[Value]) -> Option<String> + Send + Sync;

/// A function returning text, evaluated row by row.
struct TextUdf {
    name: &'static str,
    signature: Signature,
    fun: Box<TextFn>,
}

impl std::fmt::Debug for TextUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextUdf").field("name", &self.name).finish()
    }
}

impl PartialEq for TextUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TextUdf {}

impl Hash for TextUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

fn text_fn(
    name: &'static str,
    signatures: &[&[DataType]],
    volatility: Volatility,
    fun: impl Fn(&[Value]) -> Option<String> + Send + Sync + 'static,
) -> ScalarUDF {
    // Arguments are read by kind (number, text, boolean) whatever their exact
    // Arrow type, so only the number of arguments is checked: clients pass
    // OIDs as int4 or int8 and positions as int2, int4 or int8.
    let mut arities: Vec<usize> = signatures.iter().map(|s| s.len()).collect();
    arities.sort_unstable();
    arities.dedup();
    let signature = match arities.as_slice() {
        [0] => Signature::nullary(volatility),
        [n] => Signature::any(*n, volatility),
        many => Signature::one_of(
            many.iter()
                .map(|n| {
                    if *n == 0 {
                        TypeSignature::Nullary
                    } else {
                        TypeSignature::Any(*n)
                    }
                })
                .collect(),
            volatility,
        ),
    };
    ScalarUDF::from(TextUdf {
        name,
        signature,
        fun: Box::new(fun),
    })
}

impl ScalarUDFImpl for TextUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        let mut values = Vec::with_capacity(arrays.len());
        for row in 0..rows.max(usize::from(arrays.is_empty())) {
            values.clear();
            values.extend(arrays.iter().map(|a| Value::of(a, row)));
            match (self.fun)(&values) {
                Some(v) => out.append_value(v),
                None => out.append_null(),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&array, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(array))
    }
}

/// Plans SQL types with Postgres' precision: `timestamp`, `time` in
/// microseconds; `timestamptz` an instant in the session's time zone.
#[derive(Debug)]
struct WeirTypePlanner {
    settings: SharedSettings,
}

impl TypePlanner for WeirTypePlanner {
    fn plan_type_field(&self, sql_type: &AstType) -> DfResult<Option<FieldRef>> {
        let ty = match sql_type {
            AstType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            AstType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(self.time_zone()?.into()))
            }
            AstType::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                DataType::Time64(TimeUnit::Microsecond)
            }
            AstType::Custom(name, args)
                if args.is_empty() && name.to_string().eq_ignore_ascii_case("timestamptz") =>
            {
                DataType::Timestamp(TimeUnit::Microsecond, Some(self.time_zone()?.into()))
            }
            other => return PgOidTypePlanner.plan_type_field(other),
        };
        Ok(Some(Arc::new(Field::new("", ty, true))))
    }
}

impl WeirTypePlanner {
    fn time_zone(&self) -> DfResult<String> {
        let settings = self
            .settings
            .read()
            .map_err(|_| DataFusionError::Internal("session settings poisoned".into()))?;
        Ok(arrow_time_zone(&settings.time_zone()))
    }
}

/// The Arrow time zone tag for a session time zone (UTC as `+00:00`, the tag
/// stored `timestamptz` columns carry).
pub fn arrow_time_zone(tz: &str) -> String {
    if tz.eq_ignore_ascii_case("UTC") || tz.eq_ignore_ascii_case("GMT") {
        weir_sql::types::UTC.to_string()
    } else {
        tz.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_like_postgres() {
        assert_eq!(quote_ident("id"), "id");
        assert_eq!(quote_ident("Id"), "\"Id\"");
        assert_eq!(quote_ident("my col"), "\"my col\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
