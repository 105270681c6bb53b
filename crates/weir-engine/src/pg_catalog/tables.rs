//! Rows of the `pg_catalog` tables that describe a database's relations.
//!
//! Values follow what Postgres 15 stores for the same objects, as far as psql
//! and drivers read them: relkind, type OIDs and modifiers, NOT NULL, the
//! primary key as a unique btree index plus a `p` constraint.

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use weir_sql::SqlType;

use super::{
    CatalogContext, DATABASE_OWNER_OID, INFORMATION_SCHEMA_NAMESPACE_OID, OWNER_OID,
    PG_CATALOG_NAMESPACE_OID, Row,
};
use crate::database::{PUBLIC_NAMESPACE_OID, PUBLIC_SCHEMA};
use crate::relation::Relation;

/// OID of the btree access method.
const BTREE_AM_OID: i32 = 403;
/// OID of the heap access method.
const HEAP_AM_OID: i32 = 2;
/// OID of the default collation (`pg_collation`), used by text types.
const DEFAULT_COLLATION_OID: i32 = 100;

fn text(v: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(v.into()))
}

fn int(v: impl Into<i64>) -> ScalarValue {
    ScalarValue::Int64(Some(v.into()))
}

fn boolean(v: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(v))
}

fn float(v: f64) -> ScalarValue {
    ScalarValue::Float64(Some(v))
}

fn int2_list(values: &[i16]) -> ScalarValue {
    let values: Vec<ScalarValue> = values
        .iter()
        .map(|v| ScalarValue::Int16(Some(*v)))
        .collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Int16))
}

/// The columns of a relation, with the types Postgres would show for them.
fn columns(relation: &Relation) -> Vec<(String, SqlType, bool)> {
    match relation {
        Relation::Table(t) => t
            .def
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.name.clone(),
                    c.ty.clone(),
                    c.not_null || t.def.primary_key.contains(&i),
                )
            })
            .collect(),
        Relation::View(_) | Relation::Stream(_) | Relation::MaterializedView(_) => relation
            .schema()
            .fields()
            .iter()
            .map(|f: &std::sync::Arc<Field>| {
                (
                    f.name().clone(),
                    SqlType::of_field(f)
                        .or_else(|| SqlType::from_arrow(f.data_type()))
                        .unwrap_or(SqlType::Text),
                    false,
                )
            })
            .collect(),
    }
}

pub(super) fn pg_namespace(_: &CatalogContext) -> Vec<Row> {
    [
        (PG_CATALOG_NAMESPACE_OID, "pg_catalog"),
        (PUBLIC_NAMESPACE_OID, PUBLIC_SCHEMA),
        (INFORMATION_SCHEMA_NAMESPACE_OID, "information_schema"),
    ]
    .into_iter()
    .map(|(oid, name)| {
        // As in Postgres 15, `public` belongs to pg_database_owner.
        let owner = if oid == PUBLIC_NAMESPACE_OID {
            DATABASE_OWNER_OID
        } else {
            OWNER_OID
        };
        vec![
            ("oid", int(oid)),
            ("nspname", text(name)),
            ("nspowner", int(owner)),
        ]
    })
    .collect()
}

pub(super) fn pg_class(ctx: &CatalogContext) -> Vec<Row> {
    let mut rows = Vec::new();
    for relation in ctx.db.relations() {
        let (relkind, relam, has_index, tuples, replident) = match &relation {
            Relation::Table(t) => (
                "r",
                HEAP_AM_OID,
                !t.def.primary_key.is_empty(),
                t.data.row_count() as f64,
                "d",
            ),
            Relation::View(_) => ("v", 0, false, 0.0, "n"),
            // A stream shows as a foreign table: its rows live elsewhere.
            Relation::Stream(_) => ("f", 0, false, 0.0, "n"),
            Relation::MaterializedView(v) => (
                "m",
                HEAP_AM_OID,
                false,
                v.sink.data().row_count() as f64,
                "d",
            ),
        };
        let columns = columns(&relation);
        rows.push(vec![
            ("oid", int(relation.oid())),
            ("relname", text(relation.name())),
            ("relnamespace", int(PUBLIC_NAMESPACE_OID)),
            ("reltype", int(0)),
            ("reloftype", int(0)),
            ("relowner", int(OWNER_OID)),
            ("relam", int(relam)),
            ("relfilenode", int(relation.oid())),
            ("reltablespace", int(0)),
            ("reltuples", float(tuples)),
            ("relhasindex", boolean(has_index)),
            ("relisshared", boolean(false)),
            ("relpersistence", text("p")),
            ("relkind", text(relkind)),
            ("relnatts", int(columns.len() as i64)),
            ("relhasrules", boolean(relkind == "v")),
            ("relispopulated", boolean(true)),
            ("relreplident", text(replident)),
        ]);
        if let Relation::Table(t) = &relation
            && let Some(index_oid) = t.def.primary_key_oid
        {
            rows.push(vec![
                ("oid", int(index_oid)),
                ("relname", text(t.def.primary_key_name())),
                ("relnamespace", int(PUBLIC_NAMESPACE_OID)),
                ("relowner", int(OWNER_OID)),
                ("relam", int(BTREE_AM_OID)),
                ("relfilenode", int(index_oid)),
                ("relpersistence", text("p")),
                ("relkind", text("i")),
                ("relnatts", int(t.def.primary_key.len() as i64)),
                ("relispopulated", boolean(true)),
                ("relreplident", text("n")),
            ]);
        }
    }
    rows
}

pub(super) fn pg_attribute(ctx: &CatalogContext) -> Vec<Row> {
    let mut rows = Vec::new();
    for relation in ctx.db.relations() {
        for (i, (name, ty, not_null)) in columns(&relation).into_iter().enumerate() {
            let has_default = match &relation {
                Relation::Table(t) => t.def.columns[i].default.is_some(),
                _ => false,
            };
            let collation = match ty {
                SqlType::Text | SqlType::Varchar(_) => DEFAULT_COLLATION_OID,
                _ => 0,
            };
            let len = ty.typlen();
            rows.push(vec![
                ("attrelid", int(relation.oid())),
                ("attname", text(name)),
                ("atttypid", int(ty.oid())),
                ("attstattarget", int(-1)),
                ("attlen", int(len)),
                ("attnum", int(i as i64 + 1)),
                ("attndims", int(0)),
                ("attcacheoff", int(-1)),
                ("atttypmod", int(ty.typmod())),
                ("attbyval", boolean(len > 0 && len <= 8)),
                ("attalign", text(if len == 8 { "d" } else { "i" })),
                ("attstorage", text(if len > 0 { "p" } else { "x" })),
                ("attnotnull", boolean(not_null)),
                ("atthasdef", boolean(has_default)),
                ("atthasmissing", boolean(false)),
                ("attidentity", text("")),
                ("attgenerated", text("")),
                ("attisdropped", boolean(false)),
                ("attislocal", boolean(true)),
                ("attinhcount", int(0)),
                ("attcollation", int(collation)),
            ]);
        }
    }
    rows
}

pub(super) fn pg_index(ctx: &CatalogContext) -> Vec<Row> {
    ctx.db
        .relations()
        .into_iter()
        .filter_map(|relation| match relation {
            Relation::Table(t) => {
                let index_oid = t.def.primary_key_oid?;
                let keys: Vec<i16> = t.def.primary_key.iter().map(|&i| i as i16 + 1).collect();
                Some(vec![
                    ("indexrelid", int(index_oid)),
                    ("indrelid", int(t.def.oid)),
                    ("indnatts", int(keys.len() as i64)),
                    ("indnkeyatts", int(keys.len() as i64)),
                    ("indisunique", boolean(true)),
                    ("indnullsnotdistinct", boolean(false)),
                    ("indisprimary", boolean(true)),
                    ("indisexclusion", boolean(false)),
                    ("indimmediate", boolean(true)),
                    ("indisclustered", boolean(false)),
                    ("indisvalid", boolean(true)),
                    ("indcheckxmin", boolean(false)),
                    ("indisready", boolean(true)),
                    ("indislive", boolean(true)),
                    ("indisreplident", boolean(false)),
                    ("indkey", int2_list(&keys)),
                ])
            }
            _ => None,
        })
        .collect()
}

/// The OID of a primary key's constraint: the one after its index's.
pub(crate) fn constraint_oid(index_oid: u32) -> u32 {
    index_oid + 1
}

pub(super) fn pg_constraint(ctx: &CatalogContext) -> Vec<Row> {
    ctx.db
        .relations()
        .into_iter()
        .filter_map(|relation| match relation {
            Relation::Table(t) => {
                let index_oid = t.def.primary_key_oid?;
                let keys: Vec<i16> = t.def.primary_key.iter().map(|&i| i as i16 + 1).collect();
                Some(vec![
                    ("oid", int(constraint_oid(index_oid))),
                    ("conname", text(t.def.primary_key_name())),
                    ("connamespace", int(PUBLIC_NAMESPACE_OID)),
                    ("contype", text("p")),
                    ("condeferrable", boolean(false)),
                    ("condeferred", boolean(false)),
                    ("convalidated", boolean(true)),
                    ("conrelid", int(t.def.oid)),
                    ("contypid", int(0)),
                    ("conindid", int(index_oid)),
                    ("conparentid", int(0)),
                    ("confrelid", int(0)),
                    ("confupdtype", text(" ")),
                    ("confdeltype", text(" ")),
                    ("confmatchtype", text(" ")),
                    ("conislocal", boolean(true)),
                    ("coninhcount", int(0)),
                    ("connoinherit", boolean(true)),
                    ("conkey", int2_list(&keys)),
                ])
            }
            _ => None,
        })
        .collect()
}

pub(super) fn pg_database(ctx: &CatalogContext) -> Vec<Row> {
    ctx.databases
        .list()
        .into_iter()
        .map(|db| {
            vec![
                ("oid", int(db.oid)),
                ("datname", text(db.name.clone())),
                ("datdba", int(OWNER_OID)),
                ("encoding", int(6)),
                ("datlocprovider", text("c")),
                ("datistemplate", boolean(false)),
                ("datallowconn", boolean(true)),
                ("datconnlimit", int(-1)),
                ("dattablespace", int(1663)),
                ("datcollate", text("C.UTF-8")),
                ("datctype", text("C.UTF-8")),
            ]
        })
        .collect()
}

pub(super) fn pg_tables(ctx: &CatalogContext) -> Vec<Row> {
    ctx.db
        .relations()
        .into_iter()
        .filter_map(|relation| match relation {
            Relation::Table(t) => Some(vec![
                ("schemaname", text(PUBLIC_SCHEMA)),
                ("tablename", text(t.def.name.clone())),
                ("tableowner", text(ctx.owner.clone())),
                ("hasindexes", boolean(!t.def.primary_key.is_empty())),
                ("hasindex", boolean(!t.def.primary_key.is_empty())),
                ("hasrules", boolean(false)),
                ("hastriggers", boolean(false)),
                ("rowsecurity", boolean(false)),
            ]),
            _ => None,
        })
        .collect()
}

pub(super) fn pg_views(ctx: &CatalogContext) -> Vec<Row> {
    ctx.db
        .relations()
        .into_iter()
        .filter_map(|relation| match relation {
            Relation::View(v) => Some(vec![
                ("schemaname", text(PUBLIC_SCHEMA)),
                ("viewname", text(v.def.name.clone())),
                ("viewowner", text(ctx.owner.clone())),
                ("definition", text(view_definition(&v.def.query))),
            ]),
            _ => None,
        })
        .collect()
}

/// A view's query as `pg_get_viewdef` shows it: ` SELECT ...;`.
pub(crate) fn view_definition(query: &str) -> String {
    format!(" {};", query.trim().trim_end_matches(';'))
}
