//! Weir's statements: the Postgres dialect sqlparser understands, plus the
//! statements Weir adds to it.

use std::fmt;

use datafusion::sql::sqlparser::ast;

/// One parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// A statement of the Postgres dialect, as sqlparser parses it.
    Standard(Box<ast::Statement>),
    /// `SHOW TABLES | VIEWS | DATABASES [LIKE 'pattern']`: the catalog objects of a kind.
    ShowObjects(ShowObjects),
}

/// The kinds of catalog objects `SHOW <kind>` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Table,
    View,
    Database,
}

impl ObjectKind {
    /// The plural used in `SHOW` and in messages (`tables`).
    pub fn plural(self) -> &'static str {
        match self {
            ObjectKind::Table => "tables",
            ObjectKind::View => "views",
            ObjectKind::Database => "databases",
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
        }
    }
}
