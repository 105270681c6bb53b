//! The window table functions: `tumble(rel, ts, size [, offset])`,
//! `hop(rel, ts, slide, size [, offset])` and `session(rel, ts, gap
//! [, partition columns])` (also written the Flink way,
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
use datafusion::arrow::compute::concat_batches;
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
use weir_runtime::operators::{WindowKind, WindowSpec, sessions};

use crate::database::Database;
use crate::error::{WeirError, into_datafusion, sqlstate};
use crate::relation::Relation;

/// The window functions.
pub const WINDOW_FUNCTIONS: &[&str] = &["tumble", "hop", "session"];

/// Makes the relation and time-column arguments of window function calls
/// string literals: `tumble(bid, date_time, ...)` → `tumble('bid', 'date_time', ...)`.
pub fn name_arguments<V: VisitMut>(node: &mut V) {
    partition_sessions(node);
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
                // Session's partition columns are names too.
                let names = if function.value == "session" {
                    usize::MAX
                } else {
                    2
                };
                for (i, arg) in args.args.iter_mut().enumerate().take(names) {
                    if i == 2 {
                        continue;
                    }
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

/// Gives `session(rel, ts, gap)` calls without partition columns those of
/// the query's `GROUP BY` (other than the window bounds): sessions are per
/// group. `GROUP BY user, window_start` → `session(rel, ts, gap, user)`.
fn partition_sessions<V: VisitMut>(node: &mut V) {
    struct Partitions;
    impl VisitorMut for Partitions {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
            partition_in(&mut query.body);
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Partitions);
}

fn partition_in(body: &mut ast::SetExpr) {
    let select = match body {
        ast::SetExpr::Select(select) => select,
        ast::SetExpr::SetOperation { left, right, .. } => {
            partition_in(left);
            partition_in(right);
            return;
        }
        _ => return,
    };
    let ast::GroupByExpr::Expressions(group_by, _) = &select.group_by else {
        return;
    };
    let column = |e: &ast::Expr| match e {
        ast::Expr::Identifier(ident) => Some(ident.clone()),
        ast::Expr::CompoundIdentifier(parts) => parts.last().cloned(),
        _ => None,
    };
    let keys: Vec<ast::Expr> = group_by
        .iter()
        .filter_map(|e| match e {
            // `GROUP BY 1`: the first output column.
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => n
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| select.projection.get(i.checked_sub(1)?))
                    .and_then(|item| match item {
                        ast::SelectItem::UnnamedExpr(e)
                        | ast::SelectItem::ExprWithAlias { expr: e, .. } => column(e),
                        _ => None,
                    }),
                _ => None,
            },
            e => column(e),
        })
        .filter(|ident| {
            let name = crate::session::ident_name(ident);
            name != "window_start" && name != "window_end"
        })
        .map(ast::Expr::Identifier)
        .collect();
    for table in &mut select.from {
        let factors = std::iter::once(&mut table.relation)
            .chain(table.joins.iter_mut().map(|j| &mut j.relation));
        for factor in factors {
            if let TableFactor::Table {
                name,
                args: Some(args),
                ..
            } = factor
                && let Some(ast::ObjectNamePart::Identifier(function)) = name.0.last()
                && function.quote_style.is_none()
                && function.value.eq_ignore_ascii_case("session")
                && args.args.len() == 3
            {
                args.args.extend(
                    keys.iter()
                        .map(|k| FunctionArg::Unnamed(FunctionArgExpr::Expr(k.clone()))),
                );
            }
        }
    }
}

/// The most windows of one `hop` a row may belong to (size / slide).
const MAX_WINDOWS_PER_ROW: i64 = 10_000;

/// Registers the window functions with a session.
pub fn install(ctx: &datafusion::execution::context::SessionContext, db: &Arc<Database>) {
    for function in [Function::Tumble, Function::Hop, Function::Session] {
        ctx.register_udtf(
            function.name(),
            Arc::new(WindowFunction {
                function,
                db: Arc::downgrade(db),
            }),
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Tumble,
    Hop,
    Session,
}

impl Function {
    fn name(self) -> &'static str {
        match self {
            Function::Tumble => "tumble",
            Function::Hop => "hop",
            Function::Session => "session",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Function::Tumble => "tumble(relation, time_column, size [, offset])",
            Function::Hop => "hop(relation, time_column, slide, size [, offset])",
            Function::Session => "session(relation, time_column, gap [, partition_column, ...])",
        }
    }

    /// The interval arguments after the relation and the time column: the
    /// fewest and the most.
    fn durations(self) -> (usize, usize) {
        match self {
            Function::Tumble => (1, 2),
            Function::Hop => (2, 3),
            Function::Session => (1, 1),
        }
    }
}

#[derive(Debug)]
pub struct WindowFunction {
    function: Function,
    db: Weak<Database>,
}

impl WindowFunction {
    fn name(&self) -> &'static str {
        self.function.name()
    }

    fn error(&self, code: &'static str, message: impl Into<String>) -> DataFusionError {
        into_datafusion(
            WeirError::new(code, message.into())
                .with_hint(format!("Write {}.", self.function.usage())),
        )
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let (fewest, most) = self.function.durations();
        let session = self.function == Function::Session;
        if exprs.len() < 2 + fewest || (!session && exprs.len() > 2 + most) {
            return Err(self.error(
                sqlstate::UNDEFINED_FUNCTION,
                if session {
                    format!("{} takes at least 3 arguments", self.name())
                } else {
                    format!(
                        "{} takes {} or {} arguments",
                        self.name(),
                        2 + fewest,
                        2 + most
                    )
                },
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
        let column_index = |column: &str| {
            schema.index_of(column).map_err(|_| {
                self.error(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("column \"{column}\" does not exist in \"{relation_name}\""),
                )
            })
        };
        let time_column = column_index(&column)?;
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
        let mut partition = Vec::new();
        let kind = match self.function {
            Function::Hop => {
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
            }
            Function::Tumble => {
                let size = duration(2, "size")?;
                if size <= 0 {
                    return Err(self.error(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        "the size of tumble must be positive",
                    ));
                }
                WindowKind::Tumble { size }
            }
            Function::Session => {
                let gap = duration(2, "gap")?;
                if gap <= 0 {
                    return Err(self.error(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        "the gap of session must be positive",
                    ));
                }
                for expr in &exprs[3..] {
                    let name = text(expr, "partition column")?;
                    partition.push(column_index(&name)?);
                }
                WindowKind::Session { gap }
            }
        };
        let offset = if !session && exprs.len() == 2 + most {
            duration(2 + most - 1, "offset")?
        } else {
            0
        };
        let spec = WindowSpec {
            kind,
            offset,
            time_column,
        };
        Ok(Arc::new(WindowTable::new(relation, spec, partition)?))
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
    /// Session windows: the columns whose values each have their sessions.
    pub partition: Vec<usize>,
    schema: SchemaRef,
}

impl WindowTable {
    pub fn schema_ref(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn new(
        source: Relation,
        spec: WindowSpec,
        partition: Vec<usize>,
    ) -> datafusion::common::Result<Self> {
        let schema = spec.output_schema(&source.schema())?;
        Ok(WindowTable {
            source,
            spec,
            partition,
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
        let windowed = if let WindowKind::Session { gap } = self.spec.kind {
            // Sessions span batches: assign them over all the rows at once.
            let all = concat_batches(&self.source.schema(), &batches)?;
            vec![sessions(
                &all,
                self.spec.time_column,
                &self.partition,
                gap,
                &self.schema,
            )?]
        } else {
            batches
                .iter()
                .map(|batch| self.spec.assign(batch, &self.schema).map(|(b, _)| b))
                .collect::<datafusion::common::Result<Vec<_>>>()?
        };
        Ok(MemorySourceConfig::try_new_exec(
            &[windowed],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
