//! The window table functions: `tumble(rel, ts, size [, offset])` and
//! `hop(rel, ts, slide, size [, offset])` (also written the Flink way,
//! `TABLE(TUMBLE(TABLE rel, DESCRIPTOR(ts), size))`).
//!
//! Each call is a [`WindowTable`]: a relation with `window_start` and
//! `window_end` added. In a one-off query it is scanned like a table, the
//! windows computed by the same kernel the streaming operator uses; in a
//! materialized view the planner turns it into that operator.
//!
//! The relation and the time column are written as names; before planning,
//! [`name_arguments`] makes them string literals, which is how DataFusion
//! passes table-function arguments.

use std::ops::ControlFlow;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, TableFactor, VisitMut, VisitorMut,
};
use weir_runtime::operators::{WindowKind, WindowSpec};

use crate::database::Database;
use crate::error::{WeirError, into_datafusion, sqlstate};
use crate::relation::Relation;

/// The window functions.
pub const WINDOW_FUNCTIONS: &[&str] = &["tumble", "hop"];

/// Makes the relation and time-column arguments of window function calls
/// string literals: `tumble(bid, date_time, ...)` → `tumble('bid', 'date_time', ...)`.
pub fn name_arguments<V: VisitMut>(node: &mut V) {
    struct Names;
    impl VisitorMut for Names {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(args),
                alias,
                ..
            } = factor
                && let Some(ast::ObjectNamePart::Identifier(function)) = name.0.last_mut()
                && function.quote_style.is_none()
                && WINDOW_FUNCTIONS
                    .iter()
                    .any(|w| function.value.eq_ignore_ascii_case(w))
            {
                // DataFusion looks table functions up by their exact name.
                function.value = function.value.to_lowercase();
                // Columns are qualified by the relation's name, as if it were
                // read directly (`bid.price`), unless the call has an alias.
                if alias.is_none()
                    && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(relation))) =
                        args.args.first()
                {
                    let relation = match relation {
                        ast::Expr::Identifier(ident) => Some(ident.clone()),
                        ast::Expr::CompoundIdentifier(parts) => parts.last().cloned(),
                        _ => None,
                    };
                    *alias = relation.map(|name| ast::TableAlias {
                        explicit: true,
                        name,
                        columns: vec![],
                        at: None,
                    });
                }
                for arg in args.args.iter_mut().take(2) {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) = arg {
                        let text = match expr {
                            ast::Expr::Identifier(ident) => Some(crate::session::ident_name(ident)),
                            ast::Expr::CompoundIdentifier(parts) => {
                                parts.last().map(crate::session::ident_name)
                            }
                            _ => None,
                        };
                        if let Some(text) = text {
                            *expr = ast::Expr::Value(ast::Value::SingleQuotedString(text).into());
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Names);
}

/// The most windows of one `hop` a row may belong to (size / slide).
const MAX_WINDOWS_PER_ROW: i64 = 10_000;

/// Registers `tumble` and `hop` with a session.
pub fn install(ctx: &datafusion::execution::context::SessionContext, db: &Arc<Database>) {
    ctx.register_udtf("tumble", Arc::new(WindowFunction::tumble(db)));
    ctx.register_udtf("hop", Arc::new(WindowFunction::hop(db)));
}

#[derive(Debug)]
pub struct WindowFunction {
    hop: bool,
    db: Weak<Database>,
}

impl WindowFunction {
    pub fn tumble(db: &Arc<Database>) -> Self {
        WindowFunction {
            hop: false,
            db: Arc::downgrade(db),
        }
    }

    pub fn hop(db: &Arc<Database>) -> Self {
        WindowFunction {
            hop: true,
            db: Arc::downgrade(db),
        }
    }

    fn name(&self) -> &'static str {
        if self.hop { "hop" } else { "tumble" }
    }

    fn usage(&self) -> String {
        if self.hop {
            "hop(relation, time_column, slide, size [, offset])".into()
        } else {
            "tumble(relation, time_column, size [, offset])".into()
        }
    }

    fn error(&self, code: &'static str, message: impl Into<String>) -> DataFusionError {
        into_datafusion(
            WeirError::new(code, message.into()).with_hint(format!("Write {}.", self.usage())),
        )
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let durations = if self.hop { 2 } else { 1 };
        if exprs.len() < 2 + durations || exprs.len() > 3 + durations {
            return Err(self.error(
                sqlstate::UNDEFINED_FUNCTION,
                format!(
                    "{} takes {} or {} arguments",
                    self.name(),
                    2 + durations,
                    3 + durations
                ),
            ));
        }
        let text = |e: &Expr, what: &str| match e {
            Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Ok(s.clone()),
            _ => Err(self.error(
                sqlstate::SYNTAX_ERROR,
                format!("the {what} of {} must be a name", self.name()),
            )),
        };
        let relation_name = text(&exprs[0], "first argument (the relation)")?;
        let column = text(&exprs[1], "second argument (the time column)")?;
        let db = self
            .db
            .upgrade()
            .ok_or_else(|| DataFusionError::Internal("the database is gone".into()))?;
        let relation = db
            .relation(&relation_name)
            .ok_or_else(|| into_datafusion(WeirError::undefined_table(&relation_name)))?;
        let schema = relation.schema();
        let time_column = schema.index_of(&column).map_err(|_| {
            self.error(
                sqlstate::UNDEFINED_COLUMN,
                format!("column \"{column}\" does not exist in \"{relation_name}\""),
            )
        })?;
        if !matches!(
            schema.field(time_column).data_type(),
            DataType::Timestamp(..)
        ) {
            return Err(self.error(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "the time column of {} must be a timestamp, and \"{column}\" is {}",
                    self.name(),
                    crate::session::type_name_of(schema.field(time_column))
                ),
            ));
        }
        let duration = |i: usize, what: &str| {
            micros(&exprs[i]).ok_or_else(|| {
                self.error(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                        "the {what} of {} must be an interval of days, hours, minutes or seconds",
                        self.name()
                    ),
                )
            })
        };
        let kind = if self.hop {
            let slide = duration(2, "slide")?;
            let size = duration(3, "size")?;
            if slide <= 0 || size <= 0 {
                return Err(self.error(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    "the slide and the size of hop must be positive",
                ));
            }
            if slide > size {
                return Err(self.error(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    "the slide of hop must not be larger than its size",
                ));
            }
            // Each row is copied into size / slide windows.
            if size / slide > MAX_WINDOWS_PER_ROW {
                return Err(self.error(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!(
                        "hop would put each row in {} windows; at most {MAX_WINDOWS_PER_ROW} are allowed (make the slide larger)",
                        size / slide
                    ),
                ));
            }
            WindowKind::Hop { slide, size }
        } else {
            let size = duration(2, "size")?;
            if size <= 0 {
                return Err(self.error(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    "the size of tumble must be positive",
                ));
            }
            WindowKind::Tumble { size }
        };
        let offset = if exprs.len() == 3 + durations {
            duration(2 + durations, "offset")?
        } else {
            0
        };
        let spec = WindowSpec {
            kind,
            offset,
            time_column,
        };
        Ok(Arc::new(WindowTable::new(relation, spec)?))
    }
}

/// An interval literal's length in microseconds, if it has no months.
fn micros(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => Some(
            i64::from(v.days)
                .checked_mul(86_400_000_000)?
                .checked_add(v.nanoseconds / 1000)?,
        ),
        ScalarValue::IntervalDayTime(Some(v)) => Some(
            i64::from(v.days)
                .checked_mul(86_400_000_000)?
                .checked_add(i64::from(v.milliseconds) * 1000)?,
        ),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMillisecond(Some(v)) => v.checked_mul(1000),
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1_000_000),
        _ => None,
    }
}

/// A relation with its rows' windows.
#[derive(Debug)]
pub struct WindowTable {
    pub source: Relation,
    pub spec: WindowSpec,
    schema: SchemaRef,
}

impl WindowTable {
    pub fn schema_ref(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn new(source: Relation, spec: WindowSpec) -> datafusion::common::Result<Self> {
        let schema = spec.output_schema(&source.schema())?;
        Ok(WindowTable {
            source,
            spec,
            schema,
        })
    }
}

#[async_trait]
impl TableProvider for WindowTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let input = self.source.provider().scan(state, None, &[], None).await?;
        let batches = datafusion::physical_plan::collect(input, state.task_ctx()).await?;
        let windowed = batches
            .iter()
            .map(|batch| self.spec.assign(batch, &self.schema).map(|(b, _)| b))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[windowed],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
