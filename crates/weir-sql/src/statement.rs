//! Weir's statements: the Postgres dialect sqlparser understands, plus the
//! statements Weir adds to it.

use std::fmt;

use datafusion::sql::sqlparser::ast;

/// One parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// A statement of the Postgres dialect, as sqlparser parses it.
    Standard(Box<ast::Statement>),
    /// `SHOW TABLES | VIEWS | ... [LIKE 'pattern']`: catalog objects of a kind.
    ShowObjects(ShowObjects),
    /// `CREATE STREAM`, `CREATE SOURCE`, or `CREATE TABLE` with event time
    /// (`WATERMARK FOR`) or `APPEND ONLY`.
    CreateStream(Box<CreateStream>),
    /// `CREATE MATERIALIZED VIEW name AS query [EMIT ON WINDOW CLOSE]`.
    CreateMaterializedView(Box<CreateMaterializedView>),
    /// `EXPLAIN CREATE MATERIALIZED VIEW ...`: the operator graph.
    ExplainMaterializedView(Box<CreateMaterializedView>),
    /// `DROP STREAM | SOURCE [IF EXISTS] name, ... [CASCADE]`.
    DropStream(DropStream),
    /// `CREATE SINK [IF NOT EXISTS] name FROM relation | AS query
    /// [EMIT ON WINDOW CLOSE] WITH (connector = ..., ...)`.
    CreateSink(Box<CreateSink>),
    /// `DROP SINK [IF EXISTS] name, ...`.
    DropSink(DropStream),
    /// `FLUSH`: waits until every materialized view reflects prior writes.
    Flush,
    /// `CHECKPOINT`: takes a checkpoint now.
    Checkpoint,
    /// `FETCH ... WITH (timeout = '1s')`: a `FETCH` (the statement) that
    /// returns the rows ready when the timeout passes, if fewer came.
    FetchWithTimeout(Box<ast::Statement>, std::time::Duration),
    /// `SUBSCRIBE [TO] relation | (query) [WITH (snapshot = true | false)]`.
    Subscribe(Box<Subscribe>),
    /// `DECLARE name [NO SCROLL] CURSOR [WITH HOLD | WITHOUT HOLD] FOR
    /// SUBSCRIBE ...`.
    DeclareSubscribe(Box<DeclareSubscribe>),
}

/// The kinds of catalog objects `SHOW <kind>` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Table,
    View,
    Database,
    Stream,
    MaterializedView,
}

impl ObjectKind {
    /// The plural used in `SHOW` and in messages (`tables`).
    pub fn plural(self) -> &'static str {
        match self {
            ObjectKind::Table => "tables",
            ObjectKind::View => "views",
            ObjectKind::Database => "databases",
            ObjectKind::Stream => "streams",
            ObjectKind::MaterializedView => "materialized views",
        }
    }
}

/// `SHOW <kind> [LIKE 'pattern']`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowObjects {
    pub kind: ObjectKind,
    /// A SQL `LIKE` pattern the names must match.
    pub like: Option<String>,
}

/// What `CREATE STREAM` / `CREATE TABLE ... APPEND ONLY` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Rows flow through and are not stored.
    Stream,
    /// `CREATE SOURCE`: a stream, under the name RisingWave uses.
    Source,
    /// Rows are stored, like any table.
    Table,
}

/// `WATERMARK FOR column AS expr`: event time is `column`, and the watermark
/// is `expr` over the latest rows (`ts - INTERVAL '5' SECOND`).
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDef {
    pub column: ast::Ident,
    pub expr: ast::Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateStream {
    pub kind: StreamKind,
    pub name: ast::ObjectName,
    pub if_not_exists: bool,
    pub columns: Vec<ast::ColumnDef>,
    /// Table constraints (`PRIMARY KEY (...)`), for tables.
    pub constraints: Vec<ast::TableConstraint>,
    pub watermark: Option<WatermarkDef>,
    /// `APPEND ONLY`: rows are only ever inserted.
    pub append_only: bool,
    /// `WITH (key = 'value', ...)`, keys lowercased.
    pub options: Vec<(String, String)>,
}

/// When a materialized view's rows appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emit {
    /// Rows reflect every processed input row, open windows included.
    #[default]
    OnUpdate,
    /// A window's rows appear once, final, when the watermark passes its end.
    OnWindowClose,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateMaterializedView {
    pub name: ast::ObjectName,
    pub if_not_exists: bool,
    pub query: Box<ast::Query>,
    pub emit: Emit,
}

/// What a sink writes out, or a `SUBSCRIBE` reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkInput {
    /// `FROM relation` (`SUBSCRIBE relation`): its rows (a materialized
    /// view's current ones first), then its changes.
    From(ast::ObjectName),
    /// `AS query`.
    Query(Box<ast::Query>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSink {
    pub name: ast::ObjectName,
    pub if_not_exists: bool,
    pub input: SinkInput,
    pub emit: Emit,
    /// `WITH (key = 'value', ...)`, keys lowercased.
    pub options: Vec<(String, String)>,
}

/// `SUBSCRIBE`: a relation's or a query's rows, then every change.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// A relation (read as `SELECT * FROM relation`) or a query.
    pub input: SinkInput,
    /// Whether the current rows come first (the default).
    pub snapshot: bool,
}

/// A cursor over a `SUBSCRIBE`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclareSubscribe {
    pub cursor: ast::Ident,
    /// `WITH HOLD`: the cursor outlives the transaction block.
    pub hold: bool,
    pub subscribe: Subscribe,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DropStream {
    pub names: Vec<ast::ObjectName>,
    pub if_exists: bool,
    pub cascade: bool,
}

impl fmt::Display for Subscribe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.input {
            SinkInput::From(name) => write!(f, "SUBSCRIBE {name}")?,
            SinkInput::Query(query) => write!(f, "SUBSCRIBE ({query})")?,
        }
        if !self.snapshot {
            write!(f, " WITH (snapshot = false)")?;
        }
        Ok(())
    }
}

impl fmt::Display for CreateMaterializedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CREATE MATERIALIZED VIEW ")?;
        if self.if_not_exists {
            write!(f, "IF NOT EXISTS ")?;
        }
        write!(f, "{} AS {}", self.name, self.query)?;
        if self.emit == Emit::OnWindowClose {
            write!(f, " EMIT ON WINDOW CLOSE")?;
        }
        Ok(())
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Standard(stmt) => write!(f, "{stmt}"),
            Statement::ShowObjects(show) => {
                write!(f, "SHOW {}", show.kind.plural().to_uppercase())?;
                if let Some(like) = &show.like {
                    write!(f, " LIKE '{}'", like.replace('\'', "''"))?;
                }
                Ok(())
            }
            Statement::CreateStream(create) => write!(
                f,
                "CREATE {} {}",
                match create.kind {
                    StreamKind::Stream => "STREAM",
                    StreamKind::Source => "SOURCE",
                    StreamKind::Table => "TABLE",
                },
                create.name
            ),
            Statement::CreateMaterializedView(create) => write!(f, "{create}"),
            Statement::ExplainMaterializedView(create) => write!(f, "EXPLAIN {create}"),
            Statement::DropStream(drop) => {
                let names: Vec<String> = drop.names.iter().map(|n| n.to_string()).collect();
                write!(f, "DROP STREAM {}", names.join(", "))
            }
            Statement::CreateSink(create) => write!(f, "CREATE SINK {}", create.name),
            Statement::DropSink(drop) => {
                let names: Vec<String> = drop.names.iter().map(|n| n.to_string()).collect();
                write!(f, "DROP SINK {}", names.join(", "))
            }
            Statement::Flush => write!(f, "FLUSH"),
            Statement::Checkpoint => write!(f, "CHECKPOINT"),
            Statement::FetchWithTimeout(fetch, timeout) => {
                write!(f, "{fetch} WITH (timeout = '{}ms')", timeout.as_millis())
            }
            Statement::Subscribe(subscribe) => write!(f, "{subscribe}"),
            Statement::DeclareSubscribe(declare) => write!(
                f,
                "DECLARE {} CURSOR{} FOR {}",
                declare.cursor,
                if declare.hold { " WITH HOLD" } else { "" },
                declare.subscribe
            ),
        }
    }
}
