//! Names as Postgres resolves them: unquoted identifiers fold to lower case,
//! quoted ones are kept; relations may be qualified by `public` and by the
//! current database.

use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::Session;
use crate::database::PUBLIC_SCHEMA;
use crate::error::{Result, WeirError, sqlstate};

/// The name an identifier stands for.
pub(crate) fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn part_name(part: &ObjectNamePart) -> Result<String> {
    match part {
        ObjectNamePart::Identifier(ident) => Ok(ident_name(ident)),
        other => Err(WeirError::new(
            sqlstate::SYNTAX_ERROR,
            format!("unexpected name part {other}"),
        )),
    }
}

impl Session {
    /// The relation a (possibly qualified) name designates in this database.
    pub(crate) fn relation_name(&self, name: &ObjectName) -> Result<String> {
        let parts = name
            .0
            .iter()
            .map(part_name)
            .collect::<Result<Vec<String>>>()?;
        match parts.as_slice() {
            [relation] => Ok(relation.clone()),
            [schema, relation] => {
                self.check_schema(schema)?;
                Ok(relation.clone())
            }
            [database, schema, relation] => {
                if *database != self.db.name {
                    return Err(WeirError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("cross-database references are not implemented: {name}"),
                    ));
                }
                self.check_schema(schema)?;
                Ok(relation.clone())
            }
            _ => Err(WeirError::new(
                sqlstate::SYNTAX_ERROR,
                format!("improper qualified name (too many dotted names): {name}"),
            )),
        }
    }

    /// The single-part name of a database, role, setting, ...
    pub(crate) fn simple_name(&self, name: &ObjectName) -> Result<String> {
        match name.0.as_slice() {
            [part] => part_name(part),
            _ => Err(WeirError::new(
                sqlstate::SYNTAX_ERROR,
                format!("improper qualified name: {name}"),
            )),
        }
    }

    fn check_schema(&self, schema: &str) -> Result<()> {
        if schema == PUBLIC_SCHEMA {
            Ok(())
        } else if schema == "pg_catalog" || schema == "information_schema" {
            Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("the system schema {schema} cannot be changed"),
            ))
        } else {
            Err(WeirError::new(
                sqlstate::INVALID_SCHEMA_NAME,
                format!("schema \"{schema}\" does not exist"),
            )
            .with_hint("Weir databases have one schema, public."))
        }
    }
}
