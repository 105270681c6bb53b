//! The catalog: what each database contains, as definitions that can be saved
//! and loaded.
//!
//! Definitions are plain data (serde). The objects that serve them to queries
//! (a table's rows, a view's plan) are built from them by [`crate::session`];
//! on restart the engine rebuilds every object from its definition, in the
//! order they are saved in: each after the relations it reads.
//!
//! The whole catalog is one small JSON document (`catalog.json`), rewritten
//! atomically after each DDL statement.

use serde::{Deserialize, Serialize};
use weir_sql::SqlType;

/// The first OID given to user objects, as in Postgres.
pub const FIRST_USER_OID: u32 = 16384;

/// Version of the saved catalog format.
pub const CATALOG_FORMAT_VERSION: u32 = 1;

/// The saved catalog of a whole Weir instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogDef {
    pub version: u32,
    /// The next OID to hand out; OIDs are never reused.
    pub next_oid: u32,
    pub databases: Vec<DatabaseDef>,
}

/// One database and its objects, in creation order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseDef {
    pub oid: u32,
    pub name: String,
    pub objects: Vec<ObjectDef>,
}

/// A relation in a database's `public` schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObjectDef {
    Table(TableDef),
    View(ViewDef),
    Stream(StreamDef),
    MaterializedView(MaterializedViewDef),
    Sink(SinkDef),
}

impl ObjectDef {
    pub fn oid(&self) -> u32 {
        match self {
            ObjectDef::Table(t) => t.oid,
            ObjectDef::View(v) => v.oid,
            ObjectDef::Stream(s) => s.oid,
            ObjectDef::MaterializedView(m) => m.oid,
            ObjectDef::Sink(k) => k.oid,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ObjectDef::Table(t) => &t.name,
            ObjectDef::View(v) => &v.name,
            ObjectDef::Stream(s) => &s.name,
            ObjectDef::MaterializedView(m) => &m.name,
            ObjectDef::Sink(k) => &k.name,
        }
    }
}

/// A column as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: SqlType,
    pub not_null: bool,
    /// The `DEFAULT` expression, as SQL text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// The Arrow schema of declared columns. Every field is nullable: NOT NULL
/// is enforced by the table store with Postgres' error (declared
/// non-nullable fields would make DataFusion fail earlier, with its own).
pub fn arrow_schema(columns: &[ColumnDef]) -> datafusion::arrow::datatypes::SchemaRef {
    std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(
        columns
            .iter()
            .map(|c| c.ty.field(&c.name, true))
            .collect::<Vec<_>>(),
    ))
}

/// A table: its columns and its primary key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableDef {
    pub oid: u32,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Column indices of the primary key, in key order; empty without a key.
    #[serde(default)]
    pub primary_key: Vec<usize>,
    /// OID of the primary key's index and constraint (as psql's `\d` shows them).
    #[serde(default)]
    pub primary_key_oid: Option<u32>,
    /// Event time, for tables declared `WATERMARK FOR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkSpec>,
    /// Rows are only ever inserted (`APPEND ONLY`).
    #[serde(default)]
    pub append_only: bool,
}

/// Event time of a table or stream: `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatermarkSpec {
    pub column: String,
    /// The watermark expression, as SQL text (`ts - INTERVAL '5' SECOND`).
    pub expr: String,
}

/// A stream: rows that flow through to the queries reading them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamDef {
    pub oid: u32,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkSpec>,
    /// `WITH (...)` options: the connector and its settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<(String, String)>,
}

impl StreamDef {
    /// Whether a connector feeds the stream.
    pub fn has_connector(&self) -> bool {
        self.options
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connector"))
    }
}

/// A sink: a query's results written out through a connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkDef {
    pub oid: u32,
    pub name: String,
    /// The query whose results it writes out, as SQL text (`SELECT * FROM
    /// relation` for `CREATE SINK ... FROM relation`).
    pub query: String,
    #[serde(default)]
    pub emit_on_window_close: bool,
    pub parallelism: usize,
    /// The write-ahead log position when it started reading its inputs.
    #[serde(default)]
    pub log_position: u64,
    /// `WITH (connector = ..., ...)`.
    pub options: Vec<(String, String)>,
}

/// A materialized view: a query kept up to date as its inputs change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaterializedViewDef {
    pub oid: u32,
    pub name: String,
    /// The query, as SQL text.
    pub query: String,
    /// `EMIT ON WINDOW CLOSE`.
    #[serde(default)]
    pub emit_on_window_close: bool,
    /// Subtasks of its keyed operators (`streaming_parallelism` when it was
    /// created); views saved before parallelism existed ran one.
    #[serde(default = "one")]
    pub parallelism: usize,
    /// The write-ahead log position when the view started reading its
    /// inputs: at restart it starts again there (see `write_log`).
    #[serde(default)]
    pub log_position: u64,
}

fn one() -> usize {
    1
}

impl TableDef {
    /// Name of the primary key constraint, `<table>_pkey` as in Postgres.
    pub fn primary_key_name(&self) -> String {
        format!("{}_pkey", self.name)
    }

    pub fn primary_key_columns(&self) -> Vec<&str> {
        self.primary_key
            .iter()
            .filter_map(|&i| self.columns.get(i).map(|c| c.name.as_str()))
            .collect()
    }
}

/// A view: a named query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewDef {
    pub oid: u32,
    pub name: String,
    /// The query, as SQL text.
    pub query: String,
    /// Column names given in `CREATE VIEW v (a, b)`, empty when not given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub column_names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_round_trips_through_json() {
        let catalog = CatalogDef {
            version: CATALOG_FORMAT_VERSION,
            next_oid: FIRST_USER_OID + 3,
            databases: vec![DatabaseDef {
                oid: FIRST_USER_OID,
                name: "weir".into(),
                objects: vec![
                    ObjectDef::Table(TableDef {
                        oid: FIRST_USER_OID + 1,
                        name: "t".into(),
                        columns: vec![ColumnDef {
                            name: "id".into(),
                            ty: SqlType::Numeric {
                                precision: Some(10),
                                scale: Some(2),
                            },
                            not_null: true,
                            default: Some("0".into()),
                        }],
                        primary_key: vec![0],
                        primary_key_oid: Some(FIRST_USER_OID + 2),
                        watermark: None,
                        append_only: false,
                    }),
                    ObjectDef::View(ViewDef {
                        oid: FIRST_USER_OID + 3,
                        name: "v".into(),
                        query: "SELECT id FROM t".into(),
                        column_names: vec![],
                    }),
                ],
            }],
        };
        let json = serde_json::to_string(&catalog).expect("serialize");
        let back: CatalogDef = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.databases[0].objects.len(), 2);
        match &back.databases[0].objects[0] {
            ObjectDef::Table(t) => {
                assert_eq!(t.columns[0].ty.to_string(), "numeric(10,2)");
                assert_eq!(t.primary_key_name(), "t_pkey");
            }
            other => panic!("expected a table, got {other:?}"),
        }
    }
}
