//! What a statement produces: rows, or a command tag.

use std::fmt;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;

/// The result of executing one statement.
pub enum Output {
    /// Rows, produced as the stream is polled.
    Rows(Rows),
    /// A command that returns no rows (`INSERT 0 3`, `CREATE TABLE`).
    Command(CommandTag),
    /// `COPY ... TO STDOUT`: rows to send in COPY format.
    CopyOut(CopyOut),
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Rows(rows) => f
                .debug_struct("Rows")
                .field("schema", &rows.schema)
                .field("command", &rows.command)
                .finish(),
            Output::Command(tag) => write!(f, "Command({tag})"),
            Output::CopyOut(copy) => f
                .debug_struct("CopyOut")
                .field("schema", &copy.rows.schema)
                .field("format", &copy.format)
                .finish(),
        }
    }
}

/// A stream of result rows.
pub struct Rows {
    pub schema: SchemaRef,
    pub batches: SendableRecordBatchStream,
    /// The command word of the tag sent after the rows (`SELECT`, `SHOW`).
    pub command: &'static str,
}

/// The rows of `COPY ... TO STDOUT` and their format.
pub struct CopyOut {
    pub rows: Rows,
    pub format: crate::copy_format::CopyFormat,
}

/// The tag Postgres sends in `CommandComplete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    pub command: String,
    /// Rows affected, for the commands that report it.
    pub rows: Option<u64>,
}

impl CommandTag {
    pub fn new(command: impl Into<String>) -> Self {
        CommandTag {
            command: command.into(),
            rows: None,
        }
    }

    pub fn with_rows(command: impl Into<String>, rows: u64) -> Self {
        CommandTag {
            command: command.into(),
            rows: Some(rows),
        }
    }

    /// The tag after `rows` result rows of a command: `SELECT 3`, or the bare
    /// command for `SHOW`, as in Postgres.
    pub fn rows(command: &str, rows: usize) -> Self {
        if command == "SELECT" {
            CommandTag::with_rows(command, rows as u64)
        } else {
            CommandTag::new(command)
        }
    }
}

/// `INSERT 0 3`, `UPDATE 2`, `CREATE TABLE`.
impl fmt::Display for CommandTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.command.as_str(), self.rows) {
            ("INSERT", Some(rows)) => write!(f, "INSERT 0 {rows}"),
            (command, Some(rows)) => write!(f, "{command} {rows}"),
            (command, None) => f.write_str(command),
        }
    }
}

/// A message for the client that is not an error (`NOTICE`, `WARNING`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_read_like_postgres() {
        assert_eq!(CommandTag::with_rows("INSERT", 3).to_string(), "INSERT 0 3");
        assert_eq!(CommandTag::with_rows("UPDATE", 2).to_string(), "UPDATE 2");
        assert_eq!(CommandTag::new("CREATE TABLE").to_string(), "CREATE TABLE");
    }
}
