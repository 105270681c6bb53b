//! The formats of `COPY ... TO STDOUT`: Postgres' text format (columns
//! separated by a tab, `\N` for NULL, backslash escapes) and CSV (quoted
//! where needed, empty for NULL), with their options (`FORMAT`,
//! `DELIMITER`, `NULL`, `HEADER`, `QUOTE`, `ESCAPE`, and the pre-9.0
//! spellings `CSV`, `HEADER`, `DELIMITER AS`, `NULL AS`).
//!
//! A batch of rows becomes lines of bytes, one per row; the wire layer sends
//! each line as a `CopyData` message.

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};

use crate::error::{Result, WeirError, sqlstate};
use crate::text_format::{OutputFormat, write_text};

/// How `COPY` writes rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: char,
    /// What a NULL is written as.
    pub null: String,
    /// A first line with the column names.
    pub header: bool,
    /// CSV: the quote and the character that escapes it inside quotes.
    pub quote: char,
    pub escape: char,
}

impl Default for CopyFormat {
    fn default() -> Self {
        CopyFormat {
            csv: false,
            delimiter: '\t',
            null: "\\N".into(),
            header: false,
            quote: '"',
            escape: '"',
        }
    }
}

fn redundant() -> WeirError {
    WeirError::new(sqlstate::SYNTAX_ERROR, "conflicting or redundant options")
}

/// One option, set at most once.
fn set<T>(slot: &mut Option<T>, value: T) -> Result<()> {
    if slot.replace(value).is_some() {
        return Err(redundant());
    }
    Ok(())
}

impl CopyFormat {
    /// The format `COPY ... WITH (...)` (or its older spelling) asks for.
    pub fn from_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Self> {
        let mut format: Option<String> = None;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) =
            (None, None, None, None, None);
        for option in options {
            match option {
                CopyOption::Format(name) => set(&mut format, name.value.to_ascii_lowercase())?,
                CopyOption::Delimiter(c) => set(&mut delimiter, *c)?,
                CopyOption::Null(text) => set(&mut null, text.clone())?,
                CopyOption::Header(on) => set(&mut header, *on)?,
                CopyOption::Quote(c) => set(&mut quote, *c)?,
                CopyOption::Escape(c) => set(&mut escape, *c)?,
                other => {
                    return Err(WeirError::not_supported(format!("COPY option {other}")));
                }
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Csv(csv) => {
                    set(&mut format, "csv".to_string())?;
                    for option in csv {
                        match option {
                            CopyLegacyCsvOption::Header => set(&mut header, true)?,
                            CopyLegacyCsvOption::Quote(c) => set(&mut quote, *c)?,
                            CopyLegacyCsvOption::Escape(c) => set(&mut escape, *c)?,
                            other => {
                                return Err(WeirError::not_supported(format!(
                                    "COPY option {other}"
                                )));
                            }
                        }
                    }
                }
                CopyLegacyOption::Binary => set(&mut format, "binary".to_string())?,
                CopyLegacyOption::Delimiter(c) => set(&mut delimiter, *c)?,
                CopyLegacyOption::Null(text) => set(&mut null, text.clone())?,
                CopyLegacyOption::Header => set(&mut header, true)?,
                other => {
                    return Err(WeirError::not_supported(format!("COPY option {other}")));
                }
            }
        }
        let csv = match format.as_deref() {
            None | Some("text") => false,
            Some("csv") => true,
            Some("binary") => return Err(WeirError::not_supported("COPY in binary format")),
            Some(other) => {
                return Err(WeirError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("COPY format \"{other}\" not recognized"),
                ));
            }
        };
        if !csv && (quote.is_some() || escape.is_some()) {
            let what = if quote.is_some() { "quote" } else { "escape" };
            return Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("COPY {what} available only in CSV mode"),
            ));
        }
        let defaults = CopyFormat::default();
        let delimiter = delimiter.unwrap_or(if csv { ',' } else { '\t' });
        let quote = quote.unwrap_or(defaults.quote);
        let format = CopyFormat {
            csv,
            delimiter,
            null: null.unwrap_or_else(|| if csv { String::new() } else { defaults.null }),
            header: header.unwrap_or(false),
            quote,
            escape: escape.unwrap_or(quote),
        };
        if !delimiter.is_ascii() || matches!(delimiter, '\r' | '\n') {
            return Err(WeirError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                "COPY delimiter must be a single one-byte character other than newline or carriage return",
            ));
        }
        if format.null.contains(['\r', '\n']) {
            return Err(WeirError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                "COPY null representation cannot use newline or carriage return",
            ));
        }
        if csv && format.quote == delimiter {
            return Err(WeirError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                "COPY delimiter and quote must be different",
            ));
        }
        Ok(format)
    }

    /// The header line (with its newline).
    pub fn header_line(&self, schema: &Schema) -> Vec<u8> {
        let mut line = String::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if i > 0 {
                line.push(self.delimiter);
            }
            self.push_value(&mut line, field.name());
        }
        line.push('\n');
        line.into_bytes()
    }

    /// Each row of `batch` as a line (with its newline).
    pub fn lines(&self, batch: &RecordBatch, format: &OutputFormat) -> Result<Vec<Vec<u8>>> {
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Dictionary(_, value) => {
                    datafusion::arrow::compute::cast(c, value).map_err(WeirError::from)
                }
                _ => Ok(c.clone()),
            })
            .collect::<Result<_>>()?;
        let mut lines = Vec::with_capacity(batch.num_rows());
        let mut text = String::new();
        for row in 0..batch.num_rows() {
            let mut line = String::new();
            for (i, column) in columns.iter().enumerate() {
                if i > 0 {
                    line.push(self.delimiter);
                }
                if column.is_null(row) {
                    line.push_str(&self.null);
                    continue;
                }
                text.clear();
                write_text(column, row, format, &mut text)
                    .map_err(|e| WeirError::new(sqlstate::FEATURE_NOT_SUPPORTED, e.to_string()))?;
                self.push_value(&mut line, &text);
            }
            line.push('\n');
            lines.push(line.into_bytes());
        }
        Ok(lines)
    }

    /// A value (not NULL) escaped or quoted as the format wants.
    fn push_value(&self, line: &mut String, value: &str) {
        if self.csv {
            let needs_quotes = value == self.null
                || value == "\\."
                || value.contains([self.delimiter, self.quote, '\r', '\n']);
            if !needs_quotes {
                line.push_str(value);
                return;
            }
            line.push(self.quote);
            for c in value.chars() {
                if c == self.quote || c == self.escape {
                    line.push(self.escape);
                }
                line.push(c);
            }
            line.push(self.quote);
            return;
        }
        for c in value.chars() {
            match c {
                '\\' => line.push_str("\\\\"),
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                '\t' => line.push_str("\\t"),
                '\u{8}' => line.push_str("\\b"),
                '\u{c}' => line.push_str("\\f"),
                '\u{b}' => line.push_str("\\v"),
                c if c == self.delimiter => {
                    line.push('\\');
                    line.push(c);
                }
                c => line.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::sync::Arc;

    fn format_of(sql: &str) -> Result<CopyFormat> {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parse");
        let Some(Statement::Copy {
            options,
            legacy_options,
            ..
        }) = statements.pop()
        else {
            panic!("not a COPY: {sql}");
        };
        CopyFormat::from_options(&options, &legacy_options)
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int32, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None, Some(3), Some(4)])),
                Arc::new(StringArray::from(vec![
                    Some("plain"),
                    Some("tab\there, new\nline \\ back"),
                    None,
                    Some(""),
                ])),
            ],
        )
        .expect("batch")
    }

    fn text(format: &CopyFormat) -> String {
        let lines = format
            .lines(&batch(), &OutputFormat::default())
            .expect("lines");
        String::from_utf8(lines.concat()).expect("utf-8")
    }

    #[test]
    fn text_format_escapes_as_postgres_does() {
        let format = format_of("COPY (SELECT 1) TO STDOUT").expect("format");
        assert_eq!(format, CopyFormat::default());
        assert_eq!(
            text(&format),
            "1\tplain\n\\N\ttab\\there, new\\nline \\\\ back\n3\t\\N\n4\t\n"
        );
        let format =
            format_of("COPY t TO STDOUT WITH (DELIMITER '|', NULL 'nil', HEADER)").expect("format");
        assert_eq!(
            String::from_utf8(format.header_line(&batch().schema())).expect("utf-8"),
            "k|v\n"
        );
        assert_eq!(
            text(&format),
            "1|plain\nnil|tab\\there, new\\nline \\\\ back\n3|nil\n4|\n"
        );
    }

    #[test]
    fn csv_quotes_where_needed() {
        for sql in [
            "COPY t TO STDOUT WITH (FORMAT csv, HEADER true)",
            "COPY t TO STDOUT WITH CSV HEADER",
        ] {
            let format = format_of(sql).expect("format");
            assert!(format.csv && format.header, "{sql}");
            assert_eq!(
                text(&format),
                "1,plain\n,\"tab\there, new\nline \\ back\"\n3,\n4,\"\"\n",
                "{sql}"
            );
        }
        let format =
            format_of("COPY t TO STDOUT (FORMAT csv, QUOTE '''', ESCAPE '\\')").expect("format");
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, false)]));
        let quoted = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["it's", "a,b"]))],
        )
        .expect("batch");
        let lines = format
            .lines(&quoted, &OutputFormat::default())
            .expect("lines");
        assert_eq!(lines.concat(), b"'it\\'s'\n'a,b'\n");
    }

    #[test]
    fn wrong_options_are_refused_with_postgres_codes() {
        let code = |sql: &str| format_of(sql).expect_err(sql).code;
        assert_eq!(code("COPY t TO STDOUT (FORMAT xml)"), "22023");
        assert_eq!(code("COPY t TO STDOUT (FORMAT binary)"), "0A000");
        assert_eq!(code("COPY t TO STDOUT (FORMAT csv, FORMAT text)"), "42601");
        assert_eq!(code("COPY t TO STDOUT (QUOTE '''')"), "0A000");
        assert_eq!(
            code("COPY t TO STDOUT (FORMAT csv, DELIMITER '\"')"),
            "22023"
        );
    }
}
