//! Result column names as Postgres gives them.
//!
//! Postgres names an unaliased output column after what it computes: a column
//! by its name, a function call by the function (`count`), a cast by its type
//! (`int4`), anything else `?column?`; and it allows two columns with the same
//! name (`SELECT 1, 1`). DataFusion names columns after the whole expression
//! and refuses duplicates. Before planning, every unaliased computed column of
//! a query's output gets an alias: a unique internal one for queries, whose
//! rows are then described with the Postgres names; the Postgres name itself
//! for views and tables created from a query, whose columns keep it.

use datafusion::sql::sqlparser::ast::{
    self, DataType, Expr, Ident, ObjectNamePart, Query, SelectItem, SetExpr, TimezoneInfo,
};

use super::names::ident_name;

/// Prefix of the internal aliases.
const INTERNAL: &str = "__weir_column_";

/// How unaliased columns are aliased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aliasing {
    /// Unique internal names; [`output_name`] gives the Postgres name back.
    Internal,
    /// The Postgres name (for views and `CREATE TABLE AS`).
    Postgres,
}

/// Aliases the output columns of the query that DataFusion could not name as
/// Postgres does: computed columns without an alias, and repeated names.
/// Returns the Postgres names of the internal aliases, in order.
pub(crate) fn alias_output_columns(query: &mut Query, aliasing: Aliasing) -> Vec<String> {
    let mut names = Vec::new();
    let Some(select) = leftmost_select(&mut query.body) else {
        return names;
    };
    let mut seen = std::collections::HashSet::new();
    for item in &mut select.projection {
        let (expr, name, keep) = match item {
            SelectItem::UnnamedExpr(expr) => {
                let name = postgres_name(expr).0;
                let plain = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                (expr.clone(), name, plain)
            }
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), ident_name(alias), true),
            _ => continue,
        };
        let repeated = !seen.insert(name.clone());
        if keep && !repeated {
            continue;
        }
        let alias = match aliasing {
            Aliasing::Internal => {
                let alias = format!("{INTERNAL}{}", names.len());
                names.push(name);
                alias
            }
            Aliasing::Postgres => name,
        };
        *item = SelectItem::ExprWithAlias {
            expr,
            alias: Ident::with_quote('"', alias),
        };
    }
    names
}

/// The name to show for an output field, given the names returned by
/// [`alias_output_columns`].
pub(crate) fn output_name(field: &str, names: &[String]) -> String {
    field
        .strip_prefix(INTERNAL)
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| names.get(i).cloned())
        .unwrap_or_else(|| field.to_string())
}

fn leftmost_select(body: &mut SetExpr) -> Option<&mut ast::Select> {
    match body {
        SetExpr::Select(select) => Some(select),
        SetExpr::SetOperation { left, .. } => leftmost_select(left),
        SetExpr::Query(query) => leftmost_select(&mut query.body),
        _ => None,
    }
}

/// Postgres' name for an expression, and how strongly it holds: 2 for a
/// column's own name, 1 for a name from a function or type, 0 for `?column?`.
fn postgres_name(expr: &Expr) -> (String, u8) {
    match expr {
        Expr::Identifier(ident) => (ident_name(ident), 2),
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(ident) => (ident_name(ident), 2),
            None => unknown(),
        },
        Expr::Nested(inner) => postgres_name(inner),
        Expr::Function(function) => match function.name.0.last() {
            Some(ObjectNamePart::Identifier(ident)) => (ident_name(ident), 1),
            _ => unknown(),
        },
        Expr::Cast {
            expr, data_type, ..
        } => {
            let inner = postgres_name(expr);
            if inner.1 > 1 {
                inner
            } else {
                (type_name(data_type), 1)
            }
        }
        Expr::TypedString(typed) => (type_name(&typed.data_type), 1),
        Expr::Interval(_) => ("interval".into(), 1),
        Expr::Case { .. } => ("case".into(), 1),
        Expr::Exists { .. } => ("exists".into(), 1),
        Expr::Array(_) => ("array".into(), 1),
        Expr::Tuple(_) => ("row".into(), 1),
        Expr::Extract { .. } => ("extract".into(), 1),
        Expr::Substring { .. } => ("substring".into(), 1),
        Expr::Trim { .. } => ("btrim".into(), 1),
        Expr::Position { .. } => ("position".into(), 1),
        Expr::Overlay { .. } => ("overlay".into(), 1),
        Expr::Ceil { .. } => ("ceil".into(), 1),
        Expr::Floor { .. } => ("floor".into(), 1),
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.first() {
                Some(SelectItem::ExprWithAlias { alias, .. }) => (ident_name(alias), 2),
                Some(SelectItem::UnnamedExpr(expr)) => postgres_name(expr),
                _ => unknown(),
            },
            _ => unknown(),
        },
        _ => unknown(),
    }
}

fn unknown() -> (String, u8) {
    ("?column?".into(), 0)
}

/// A type's internal Postgres name (`int4`, `float8`, `timestamptz`).
fn type_name(data_type: &DataType) -> String {
    use DataType as T;
    match data_type {
        T::Int(_) | T::Integer(_) | T::Int4(_) => "int4",
        T::SmallInt(_) | T::Int2(_) => "int2",
        T::BigInt(_) | T::Int8(_) => "int8",
        T::Real | T::Float4 => "float4",
        T::Double(_) | T::DoublePrecision | T::Float8 => "float8",
        T::Float(ast::ExactNumberInfo::Precision(p)) if *p <= 24 => "float4",
        T::Float(_) => "float8",
        T::Numeric(_) | T::Decimal(_) | T::Dec(_) => "numeric",
        T::Text | T::String(_) => "text",
        T::Varchar(_) | T::CharacterVarying(_) | T::CharVarying(_) => "varchar",
        T::Char(_) | T::Character(_) => "bpchar",
        T::Boolean | T::Bool => "bool",
        T::Date => "date",
        T::Time(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timetz",
        T::Time(..) => "time",
        T::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz",
        T::Timestamp(..) => "timestamp",
        T::Interval { .. } => "interval",
        T::Bytea => "bytea",
        T::JSON => "json",
        T::JSONB => "jsonb",
        T::Uuid => "uuid",
        T::Custom(name, _) => {
            return match name.0.last() {
                Some(ObjectNamePart::Identifier(ident)) => ident_name(ident),
                _ => name.to_string().to_lowercase(),
            };
        }
        T::Array(_) => return format!("{}", data_type).to_lowercase(),
        other => return other.to_string().to_lowercase(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> (Vec<String>, String) {
        let mut statements = weir_sql::parse_sql(sql).expect("parse");
        let Some(weir_sql::Statement::Standard(statement)) = statements.pop() else {
            panic!("not a standard statement");
        };
        let ast::Statement::Query(mut query) = *statement else {
            panic!("not a query");
        };
        let names = alias_output_columns(&mut query, Aliasing::Internal);
        (names, query.to_string())
    }

    #[test]
    fn names_follow_postgres() {
        let (names, _) = names(
            "SELECT a, t.b, count(*), 1, 1.5::real, b::int, 'x'::text, \
             CASE WHEN a THEN 1 END, (SELECT max(x) AS m FROM u), now(), a + 1",
        );
        assert_eq!(
            names,
            [
                "count", "?column?", "float4", "b", "text", "case", "m", "now", "?column?"
            ]
        );
    }

    #[test]
    fn only_unaliased_computed_columns_get_aliases() {
        let (_, sql) = names("SELECT a, 1 AS one, 2 FROM t UNION ALL SELECT b, 1, 2 FROM u");
        assert!(
            sql.starts_with("SELECT a, 1 AS one, 2 AS \"__weir_column_0\" FROM t"),
            "{sql}"
        );
        let (names, sql) = names("SELECT a, a, 1 AS x, 2 AS x FROM t");
        assert_eq!(names, ["a", "x"]);
        assert!(
            sql.starts_with("SELECT a, a AS \"__weir_column_0\", 1 AS x, 2 AS \"__weir_column_1\""),
            "{sql}"
        );
        assert_eq!(
            output_name("__weir_column_0", &["?column?".into()]),
            "?column?"
        );
        assert_eq!(output_name("a", &[]), "a");
    }
}
