//! From a query's DataFusion logical plan to a streaming job.
//!
//! DataFusion plans (and optimizes) the query of a materialized view; the
//! planner walks that plan and builds the operator graph that keeps its
//! result up to date: scans become subscriptions to the changelogs of tables,
//! streams and materialized views; projections, filters, window table
//! functions, aggregations, unions and window joins (joins on an equality
//! of event-time columns) become operators.
//!
//! Along the way it tracks, for every column, whether it carries a watermark
//! (the event time of a source, a window bound, a monotone function of
//! those), and whether the changelog can delete rows. A GROUP BY on a column
//! with a watermark makes a windowed aggregation: its groups close when the
//! watermark passes them. Rows of a session window carry their own window
//! until the aggregation above them, which merges windows into sessions.
//!
//! Keyed aggregations and joins run as `parallelism` subtasks behind a hash
//! shuffle on their group key (on the partition key for sessions, on each
//! side's join key for joins); every other operator
//! runs as one task, and a parallel node last in the job is followed by a
//! merge into the view.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::common::NullEquality;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
#[allow(deprecated)]
// LoweredAggregateBuilder needs a planning context DataFusion does not export yet
use datafusion::physical_planner::create_aggregate_expr_and_maybe_filter;
use tokio::sync::mpsc;
use weir_runtime::feed::CHANNEL_CAPACITY;
use weir_runtime::operators::project::watermark_input;
use weir_runtime::operators::{
    AggregateCall, AssignWindows, Filter, JoinKind, JoinSide, Merge, Project, SessionAggregate,
    SessionBound, Union, WindowClose, WindowJoin, WindowKind, aggregation,
};
use weir_runtime::{Chunk, Input, JobGraph, Message, Operator, Outputs};
use weir_state::{TableWriter, Wal};

use super::window_function::WindowTable;
use crate::database::Database;
use crate::error::{Result, WeirError, sqlstate};
use crate::relation::Relation;

/// Where a node reads from.
#[derive(Clone)]
enum Source {
    Node(usize),
    Relation(Relation),
}

/// A node of the plan: one operator per subtask.
struct Node {
    subtasks: Vec<Box<dyn Operator>>,
    /// With several subtasks: per input, the key that spreads its rows
    /// over them.
    keys: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    inputs: Vec<Source>,
}

/// What a lowered part of the plan produces.
#[derive(Clone)]
struct Lowered {
    source: Source,
    schema: SchemaRef,
    /// Columns that carry a watermark.
    watermarks: BTreeSet<usize>,
    /// Its changelog only inserts.
    append_only: bool,
    /// Rows of a session window not aggregated yet.
    session: Option<SessionColumns>,
    /// The column of the window whose closing makes rows final: its
    /// watermark passes a value only once every change of the rows with
    /// that value went by (a windowed aggregation's window key).
    closes_on: Option<usize>,
}

/// Where the window bounds of a session window are, before the aggregation
/// that merges each row's own window (`[ts, ts + gap)`) into sessions.
#[derive(Debug, Clone)]
struct SessionColumns {
    start: Option<usize>,
    end: Option<usize>,
    gap: i64,
    /// The partition columns named in the call.
    partition: Vec<String>,
}

impl SessionColumns {
    fn bound(&self, column: usize) -> Option<SessionBound> {
        if self.start == Some(column) {
            Some(SessionBound::Start)
        } else if self.end == Some(column) {
            Some(SessionBound::End)
        } else {
            None
        }
    }

    /// The same columns after a projection taking `columns[i]` to output `i`.
    fn project(&self, columns: &[Option<usize>]) -> Option<SessionColumns> {
        let find = |c: Option<usize>| c.and_then(|c| columns.iter().position(|&i| i == Some(c)));
        let (start, end) = (find(self.start), find(self.end));
        (start.is_some() || end.is_some()).then(|| SessionColumns {
            start,
            end,
            ..self.clone()
        })
    }
}

fn session_not_aggregated() -> WeirError {
    WeirError::new(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "in a streaming query, the rows of a session window must be aggregated \
         by GROUP BY window_start and window_end before anything else uses the window bounds",
    )
    .with_hint("Write SELECT key, window_start, window_end, count(*) FROM session(rel, ts, gap) GROUP BY key, window_start, window_end.")
}

/// A streaming job, planned and not started.
pub struct StreamPlan {
    nodes: Vec<Node>,
    /// The relations the job reads.
    pub sources: Vec<String>,
    pub schema: SchemaRef,
    /// Output columns that carry a watermark.
    pub watermark_columns: Vec<usize>,
    /// The output only inserts.
    pub append_only: bool,
}

/// Plans the job of a materialized view's query.
pub fn plan(
    plan: &LogicalPlan,
    db: &Database,
    ctx: &SessionContext,
    emit_on_window_close: bool,
    parallelism: usize,
) -> Result<StreamPlan> {
    let mut planner = Planner {
        db,
        ctx,
        nodes: Vec::new(),
        sources: Vec::new(),
        emit_on_window_close,
        windowed: false,
        parallelism: parallelism.max(1),
        planned: HashMap::new(),
    };
    let root = planner.lower(plan)?;
    if root.session.is_some() {
        return Err(session_not_aggregated());
    }
    if emit_on_window_close && !planner.windowed {
        return Err(WeirError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "EMIT ON WINDOW CLOSE needs a GROUP BY on a window column \
             (window_start or window_end) of a source with a watermark",
        ));
    }
    // The job ends with an operator whose output goes to the view; a plan
    // that is only a scan gets a pass-through projection.
    match root.source {
        Source::Relation(_) => {
            let exprs = (0..root.schema.fields().len())
                .map(|i| {
                    Arc::new(Column::new(root.schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
                })
                .collect();
            let project = Project::new(exprs, root.schema.clone(), root.schema.clone());
            planner.add(Box::new(project), vec![root.source]);
        }
        // The view is fed by one task.
        Source::Node(id) if planner.nodes[id].subtasks.len() > 1 => {
            planner.add(Box::new(Merge), vec![root.source]);
        }
        Source::Node(_) => {}
    }
    let mut sources = planner.sources;
    sources.sort();
    sources.dedup();
    Ok(StreamPlan {
        nodes: planner.nodes,
        sources,
        schema: root.schema,
        watermark_columns: root.watermarks.into_iter().collect(),
        append_only: root.append_only,
    })
}

struct Planner<'a> {
    db: &'a Database,
    ctx: &'a SessionContext,
    nodes: Vec<Node>,
    sources: Vec<String>,
    emit_on_window_close: bool,
    /// A windowed aggregation was planned.
    windowed: bool,
    /// Subtasks of keyed operators.
    parallelism: usize,
    /// The parts of the plan lowered to nodes so far (and whether their
    /// windowed aggregations emit on close), shared by a part that is the
    /// same.
    planned: HashMap<PlanKey, Lowered>,
}

/// What makes two parts of a plan lower to the same nodes: the logical plan,
/// whether windowed aggregations emit on close, and what each scan reads
/// (a scan's equality in the logical plan leaves its table provider out,
/// so `hop(bid, ...)` with other sizes would compare equal).
type PlanKey = (LogicalPlan, bool, Vec<String>);

/// What each scan in `plan` reads: for a window function, its relation and
/// windows; for another provider, the provider itself (its address: two
/// scans share nodes only when they read the same provider).
fn scanned(plan: &LogicalPlan) -> Result<Vec<String>> {
    let mut scans = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let provider = source_as_provider(&scan.source)?;
            scans.push(match provider.as_ref().downcast_ref::<WindowTable>() {
                Some(window) => format!(
                    "{} {} {:?} {:?}",
                    window.source.kind_name(),
                    window.source.name(),
                    window.spec,
                    window.partition
                ),
                None => format!("{:p}", Arc::as_ptr(&provider)),
            });
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(scans)
}

fn unsupported(what: &str) -> WeirError {
    WeirError::new(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "{what} is not supported in a streaming query (a materialized view, or a SELECT that reads a stream) yet"
        ),
    )
}

impl Planner<'_> {
    fn add(&mut self, operator: Box<dyn Operator>, inputs: Vec<Source>) -> Source {
        self.nodes.push(Node {
            subtasks: vec![operator],
            keys: Vec::new(),
            inputs,
        });
        Source::Node(self.nodes.len() - 1)
    }

    /// Adds a keyed operator: `parallelism` subtasks made by `make`, each
    /// owning the rows whose key hashes to it (`keys[i]` for the rows of
    /// input `i`). Without keys, one subtask.
    fn add_keyed(
        &mut self,
        make: impl Fn() -> Result<Box<dyn Operator>>,
        keys: Vec<Vec<Arc<dyn PhysicalExpr>>>,
        inputs: Vec<Source>,
    ) -> Result<Source> {
        let count = if keys.iter().any(Vec::is_empty) {
            1
        } else {
            self.parallelism
        };
        let subtasks = (0..count).map(|_| make()).collect::<Result<Vec<_>>>()?;
        let keys = if count > 1 { keys } else { Vec::new() };
        self.nodes.push(Node {
            subtasks,
            keys,
            inputs,
        });
        Ok(Source::Node(self.nodes.len() - 1))
    }

    /// Lowers `plan`, sharing the nodes of an identical part lowered
    /// before: a query that spells the same subquery twice (Nexmark q5 counts
    /// the bids of each auction and window once for the join's left side
    /// and once for the maximum on its right) computes it once and feeds
    /// every reader from it.
    fn lower(&mut self, plan: &LogicalPlan) -> Result<Lowered> {
        let key = (plan.clone(), self.emit_on_window_close, scanned(plan)?);
        if let Some(lowered) = self.planned.get(&key) {
            return Ok(lowered.clone());
        }
        let lowered = self.lower_new(plan)?;
        if matches!(lowered.source, Source::Node(_)) {
            self.planned.insert(key, lowered.clone());
        }
        Ok(lowered)
    }

    /// Lowers `plan` to new nodes.
    fn lower_new(&mut self, plan: &LogicalPlan) -> Result<Lowered> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let provider = source_as_provider(&scan.source)?;
                let lowered = if let Some(window) = provider.as_ref().downcast_ref::<WindowTable>()
                {
                    self.assign_windows(window, scan.projection.as_deref())?
                } else {
                    let name = scan.table_name.table();
                    let relation = self
                        .db
                        .relation(name)
                        .ok_or_else(|| WeirError::undefined_table(name))?;
                    let lowered = self.relation(&relation)?;
                    match &scan.projection {
                        Some(projection) => self.select_columns(lowered, projection)?,
                        None => lowered,
                    }
                };
                let mut lowered = lowered;
                for filter in &scan.filters {
                    lowered = self.filter(lowered, filter, scan.projected_schema.as_ref())?;
                }
                Ok(lowered)
            }
            LogicalPlan::Projection(projection) => {
                let mut input = self.lower(&projection.input)?;
                let input_schema = projection.input.schema();
                let exprs = projection
                    .expr
                    .iter()
                    .map(|e| self.physical(e, input_schema))
                    .collect::<Result<Vec<_>>>()?;
                if let Some(session) = input.session.take() {
                    // Window bounds may be passed on, not computed with.
                    let mut columns = Vec::with_capacity(exprs.len());
                    for expr in &exprs {
                        let column = expr.downcast_ref::<Column>().map(|c| c.index());
                        if column.is_none()
                            && collect_columns(expr)
                                .iter()
                                .any(|c| session.bound(c.index()).is_some())
                        {
                            return Err(session_not_aggregated());
                        }
                        columns.push(column);
                    }
                    input.session = session.project(&columns);
                }
                let mut watermarks = BTreeSet::new();
                for (i, expr) in exprs.iter().enumerate() {
                    if let Some(column) = watermark_input(expr)?
                        && input.watermarks.contains(&column)
                    {
                        watermarks.insert(i);
                    }
                }
                let schema: SchemaRef = Arc::new(projection.schema.as_arrow().clone());
                let session = input.session.take();
                let mut lowered = self.project(input, exprs, schema, watermarks);
                lowered.session = session;
                Ok(lowered)
            }
            LogicalPlan::Filter(filter) => {
                let input = self.lower(&filter.input)?;
                self.filter(input, &filter.predicate, filter.input.schema())
            }
            LogicalPlan::SubqueryAlias(alias) => self.lower(&alias.input),
            LogicalPlan::Aggregate(aggregate) => {
                if aggregate
                    .group_expr
                    .iter()
                    .any(|e| matches!(e, Expr::GroupingSet(_)))
                {
                    return Err(unsupported("GROUPING SETS, ROLLUP or CUBE"));
                }
                let input = self.lower(&aggregate.input)?;
                let input_schema = aggregate.input.schema();
                let group_exprs = aggregate
                    .group_expr
                    .iter()
                    .map(|e| self.physical(e, input_schema))
                    .collect::<Result<Vec<_>>>()?;
                let props = self.ctx.state().execution_props().clone();
                let calls = aggregate
                    .aggr_expr
                    .iter()
                    .map(|e| {
                        #[allow(deprecated)]
                        let (function, filter, order_by) = create_aggregate_expr_and_maybe_filter(
                            e,
                            input_schema,
                            input_schema.as_arrow(),
                            &props,
                        )?;
                        if !order_by.is_empty() {
                            return Err(unsupported("an aggregate with ORDER BY"));
                        }
                        Ok(AggregateCall { function, filter })
                    })
                    .collect::<Result<Vec<_>>>()?;
                // A group key that carries a watermark is a window: its
                // groups close as the watermark passes them.
                let mut window = None;
                let mut watermarks = BTreeSet::new();
                for (key, expr) in group_exprs.iter().enumerate() {
                    if let Some(column) = expr.downcast_ref::<Column>()
                        && input.watermarks.contains(&column.index())
                    {
                        watermarks.insert(key);
                        if window.is_none() {
                            window = Some(WindowClose {
                                key,
                                input_column: column.index(),
                                emit_on_close: self.emit_on_window_close,
                            });
                        }
                    }
                }
                if window.is_some() {
                    self.windowed = true;
                }
                let schema: SchemaRef = Arc::new(aggregate.schema.as_arrow().clone());
                if let Some(session) = &input.session {
                    return self.session_aggregate(
                        session.clone(),
                        input,
                        &aggregate.group_expr,
                        group_exprs,
                        calls,
                        schema,
                    );
                }
                let retracting = !input.append_only;
                let keys = group_exprs.clone();
                let node = self.add_keyed(
                    || {
                        Ok(aggregation(
                            group_exprs.clone(),
                            calls.clone(),
                            schema.clone(),
                            window,
                            retracting,
                        )?)
                    },
                    vec![keys],
                    vec![input.source],
                )?;
                Ok(Lowered {
                    source: node,
                    schema,
                    watermarks,
                    append_only: window.is_some_and(|w| w.emit_on_close),
                    session: None,
                    closes_on: window.map(|w| w.key),
                })
            }
            LogicalPlan::Union(union) => {
                let inputs = union
                    .inputs
                    .iter()
                    .map(|i| self.lower(i))
                    .collect::<Result<Vec<_>>>()?;
                if inputs.iter().any(|i| i.session.is_some()) {
                    return Err(session_not_aggregated());
                }
                let mut watermarks = inputs
                    .first()
                    .map(|i| i.watermarks.clone())
                    .unwrap_or_default();
                for input in &inputs {
                    watermarks = watermarks
                        .intersection(&input.watermarks)
                        .copied()
                        .collect();
                }
                let append_only = inputs.iter().all(|i| i.append_only);
                let schema: SchemaRef = Arc::new(union.schema.as_arrow().clone());
                let sources = inputs.into_iter().map(|i| i.source).collect();
                let node = self.add(Box::new(Union::new(schema.clone())), sources);
                Ok(Lowered {
                    source: node,
                    schema,
                    watermarks,
                    append_only,
                    session: None,
                    closes_on: None,
                })
            }
            LogicalPlan::Join(join) => self.join(join),
            LogicalPlan::Sort(_) => Err(unsupported("ORDER BY")),
            LogicalPlan::Limit(_) => Err(unsupported("LIMIT")),
            LogicalPlan::Window(_) => Err(unsupported("a window function (OVER)")),
            LogicalPlan::Distinct(_) => Err(unsupported("DISTINCT ON")),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Err(unsupported(
                "a query without a table, stream or view to read",
            )),
            other => Err(unsupported(&format!("{} in a query", other.display()))),
        }
    }

    /// The changelog of a relation.
    /// Window assignment for a window table function (`tumble(bid, ...)`)
    /// scanned with `projection`: the assignment passes on only the
    /// relation's columns the scan reads (and the time and partition
    /// columns), so rows repeated for several windows copy nothing unread.
    fn assign_windows(
        &mut self,
        window: &WindowTable,
        projection: Option<&[usize]>,
    ) -> Result<Lowered> {
        let source = self.relation(&window.source)?;
        let width = source.schema.fields().len();
        let time = window.spec.time_column;
        let every: Vec<usize> = (0..width + 2).collect();
        let projection = projection.unwrap_or(&every);
        let mut keep: Vec<usize> = projection
            .iter()
            .copied()
            .filter(|&c| c < width)
            .chain([time])
            .chain(window.partition.iter().copied())
            .collect();
        keep.sort_unstable();
        keep.dedup();
        // A column's place among the assignment's output columns.
        let place = |c: usize| -> Result<usize> {
            if c >= width {
                return Ok(keep.len() + (c - width));
            }
            keep.binary_search(&c)
                .map_err(|_| WeirError::internal("window column not kept"))
        };
        let session = match window.spec.kind {
            WindowKind::Session { gap } => {
                if !source.append_only {
                    return Err(WeirError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!(
                            "session windows over \"{}\", whose rows can be updated or deleted, are not supported",
                            window.source.name()
                        ),
                    )
                    .with_hint("Read a stream or an APPEND ONLY table."));
                }
                Some(SessionColumns {
                    start: Some(keep.len()),
                    end: Some(keep.len() + 1),
                    gap,
                    partition: window
                        .partition
                        .iter()
                        .map(|&c| source.schema.field(c).name().clone())
                        .collect(),
                })
            }
            _ => None,
        };
        let mut watermarks = BTreeSet::new();
        if source.watermarks.contains(&time) {
            watermarks.extend([place(time)?, keep.len(), keep.len() + 1]);
        }
        let columns = projection
            .iter()
            .map(|&c| place(c))
            .collect::<Result<Vec<_>>>()?;
        let assign = AssignWindows::new(window.spec.clone(), keep, &source.schema)?;
        let schema = assign.output_schema().clone();
        let node = self.add(Box::new(assign), vec![source.source]);
        let lowered = Lowered {
            source: node,
            schema,
            watermarks,
            append_only: source.append_only,
            session,
            closes_on: None,
        };
        if columns.iter().copied().eq(0..lowered.schema.fields().len()) {
            Ok(lowered)
        } else {
            self.select_columns(lowered, &columns)
        }
    }

    fn relation(&mut self, relation: &Relation) -> Result<Lowered> {
        let (watermarks, append_only): (BTreeSet<usize>, bool) = match relation {
            Relation::Table(t) => (
                t.event_time.iter().map(|e| e.column).collect(),
                t.def.append_only,
            ),
            Relation::Stream(s) => (s.event_time.iter().map(|e| e.column).collect(), true),
            Relation::MaterializedView(m) => {
                (m.watermark_columns.iter().copied().collect(), m.append_only)
            }
            Relation::View(v) => {
                return Err(WeirError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "a window function over view \"{}\" is not supported in a streaming query (a materialized view, or a SELECT that reads a stream) yet",
                        v.def.name
                    ),
                )
                .with_hint("Apply the window function to the tables or streams the view reads."));
            }
        };
        self.sources.push(relation.name().to_string());
        Ok(Lowered {
            source: Source::Relation(relation.clone()),
            schema: relation.schema(),
            watermarks,
            append_only,
            session: None,
            closes_on: None,
        })
    }

    fn select_columns(&mut self, mut input: Lowered, columns: &[usize]) -> Result<Lowered> {
        let session = input
            .session
            .take()
            .and_then(|s| s.project(&columns.iter().map(|&c| Some(c)).collect::<Vec<_>>()));
        let fields: Vec<_> = columns
            .iter()
            .map(|&i| input.schema.field(i).clone())
            .collect();
        let schema: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let exprs = columns
            .iter()
            .map(|&i| {
                Arc::new(Column::new(input.schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
            })
            .collect();
        let watermarks = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| input.watermarks.contains(c))
            .map(|(i, _)| i)
            .collect();
        let mut lowered = self.project(input, exprs, schema, watermarks);
        lowered.session = session;
        Ok(lowered)
    }

    /// A projection node computing `exprs` over `input`.
    fn project(
        &mut self,
        input: Lowered,
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        watermarks: BTreeSet<usize>,
    ) -> Lowered {
        // A column passed on as it is keeps closing its window.
        let closes_on = input.closes_on.and_then(|c| {
            exprs.iter().position(|e| {
                e.downcast_ref::<Column>()
                    .is_some_and(|column| column.index() == c)
            })
        });
        let node = self.add(
            Box::new(Project::new(exprs, input.schema.clone(), schema.clone())),
            vec![input.source],
        );
        Lowered {
            source: node,
            schema,
            watermarks,
            append_only: input.append_only,
            session: None,
            closes_on,
        }
    }

    fn filter(&mut self, input: Lowered, predicate: &Expr, schema: &DFSchema) -> Result<Lowered> {
        let predicate = self.physical(predicate, schema)?;
        if let Some(session) = &input.session
            && collect_columns(&predicate)
                .iter()
                .any(|c| session.bound(c.index()).is_some())
        {
            return Err(session_not_aggregated());
        }
        let node = self.add(Box::new(Filter::new(predicate)), vec![input.source]);
        Ok(Lowered {
            source: node,
            ..input
        })
    }

    /// The aggregation of a session window: its group keys are the window
    /// bounds and the partition columns.
    fn session_aggregate(
        &mut self,
        session: SessionColumns,
        input: Lowered,
        logical_keys: &[Expr],
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        calls: Vec<AggregateCall>,
        schema: SchemaRef,
    ) -> Result<Lowered> {
        let mut bounds = Vec::with_capacity(group_exprs.len());
        let mut partition = Vec::new();
        for (expr, logical) in group_exprs.iter().zip(logical_keys) {
            let bound = expr
                .downcast_ref::<Column>()
                .and_then(|c| session.bound(c.index()));
            if bound.is_none() {
                if collect_columns(expr)
                    .iter()
                    .any(|c| session.bound(c.index()).is_some())
                {
                    return Err(session_not_aggregated());
                }
                match logical {
                    Expr::Column(c) => partition.push(c.name.clone()),
                    other => partition.push(other.schema_name().to_string()),
                }
            }
            bounds.push(bound);
        }
        if bounds.iter().all(Option::is_none) {
            return Err(session_not_aggregated());
        }
        let mut expected = session.partition.clone();
        expected.sort();
        partition.sort();
        if partition != expected {
            return Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "in a streaming query, a session window partitioned by ({}) must be grouped by exactly those columns and the window bounds, not by ({})",
                    expected.join(", "),
                    partition.join(", ")
                ),
            ));
        }
        let time = match (session.start, session.end) {
            (Some(start), _) => (start, SessionBound::Start),
            (None, Some(end)) => (end, SessionBound::End),
            (None, None) => return Err(session_not_aggregated()),
        };
        // The watermark that closes sessions is the row time's.
        if !input.watermarks.contains(&time.0) && self.emit_on_window_close {
            return Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "EMIT ON WINDOW CLOSE needs a session window over a time column with a watermark",
            ));
        }
        let windowed = input.watermarks.contains(&time.0);
        let watermarks = if windowed {
            bounds
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_some())
                .map(|(i, _)| i)
                .collect()
        } else {
            BTreeSet::new()
        };
        self.windowed |= windowed;
        // Sessions of a partition merge: its rows go to one subtask.
        let keys = group_exprs
            .iter()
            .zip(&bounds)
            .filter(|(_, bound)| bound.is_none())
            .map(|(expr, _)| expr.clone())
            .collect();
        let emit_on_window_close = self.emit_on_window_close;
        let node = self.add_keyed(
            || {
                Ok(Box::new(SessionAggregate::new(
                    group_exprs.clone(),
                    bounds.clone(),
                    time,
                    session.gap,
                    calls.clone(),
                    schema.clone(),
                    emit_on_window_close,
                )?) as Box<dyn Operator>)
            },
            vec![keys],
            vec![input.source],
        )?;
        Ok(Lowered {
            source: node,
            schema,
            watermarks,
            append_only: self.emit_on_window_close,
            session: None,
            closes_on: None,
        })
    }

    /// A join. Weir runs joins whose condition equates event-time columns
    /// of both sides (`window_start` of windows over streams with
    /// watermarks): a window join, which joins the rows of each time value
    /// once the watermark of both sides has passed it. Other joins need
    /// state without bound and are not supported yet.
    ///
    /// The join reads only closed windows, so aggregations below it emit
    /// their windows once, when they close (as with `EMIT ON WINDOW
    /// CLOSE`), instead of a change per update, when the window they close
    /// on is the join's time key; otherwise the join consolidates their
    /// updates itself.
    fn join(&mut self, join: &Join) -> Result<Lowered> {
        let kind = match join.join_type {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            JoinType::Right => JoinKind::Right,
            JoinType::Full => JoinKind::Full,
            // EXISTS, IN (subquery), and inner joins that read one side.
            JoinType::LeftSemi => JoinKind::LeftSemi,
            JoinType::RightSemi => JoinKind::RightSemi,
            JoinType::LeftAnti if !join.null_aware => JoinKind::LeftAnti,
            JoinType::RightAnti => JoinKind::RightAnti,
            other => return Err(unsupported(&format!("a {other} join (NOT IN a subquery)"))),
        };
        let mark = (self.nodes.len(), self.sources.len());
        let (left, right) = match self.join_inputs(join, [true, true]) {
            Ok(sides) => sides,
            Err(_) => {
                self.truncate(mark);
                self.join_inputs(join, [false, false])?
            }
        };
        let keys = |plan: &LogicalPlan, side: usize| {
            join.on
                .iter()
                .map(|pair| {
                    let expr = if side == 0 { &pair.0 } else { &pair.1 };
                    self.physical(expr, plan.schema())
                })
                .collect::<Result<Vec<_>>>()
        };
        let (left_keys, right_keys) = (keys(&join.left, 0)?, keys(&join.right, 1)?);
        let column =
            |expr: &Arc<dyn PhysicalExpr>| expr.downcast_ref::<Column>().map(Column::index);
        let Some((left_time, right_time)) = left_keys
            .iter()
            .zip(&right_keys)
            .filter_map(|(l, r)| Some((column(l)?, column(r)?)))
            .find(|(l, r)| left.watermarks.contains(l) && right.watermarks.contains(r))
        else {
            self.truncate(mark);
            return Err(WeirError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "a join is supported in a streaming query (a materialized view, or a SELECT \
                 that reads a stream) only when its condition equates event-time columns of \
                 both sides, such as window_start of windows over streams with watermarks (a window join)",
            )
            .with_hint(
                "Join windows: ... FROM tumble(a, ts, INTERVAL '10' SECOND) AS x JOIN \
                 tumble(b, ts, INTERVAL '10' SECOND) AS y ON x.window_start = y.window_start AND ...",
            ));
        };
        let closing = [
            left.closes_on == Some(left_time),
            right.closes_on == Some(right_time),
        ];
        let (left, right) = if closing == [true, true] {
            (left, right)
        } else {
            self.truncate(mark);
            self.join_inputs(join, closing)?
        };
        if left.session.is_some() || right.session.is_some() {
            return Err(session_not_aggregated());
        }
        // The rest of the condition sees the columns of both sides.
        let pairs = join.left.schema().join(join.right.schema())?;
        let filter = join
            .filter
            .as_ref()
            .map(|f| self.physical(f, &pairs))
            .transpose()?;
        let schema: SchemaRef = Arc::new(join.schema.as_arrow().clone());
        let sides = [
            JoinSide {
                schema: left.schema.clone(),
                keys: left_keys.clone(),
                time: left_time,
            },
            JoinSide {
                schema: right.schema.clone(),
                keys: right_keys.clone(),
                time: right_time,
            },
        ];
        let nulls_equal = join.null_equality == NullEquality::NullEqualsNull;
        let node = self.add_keyed(
            || {
                Ok(Box::new(WindowJoin::new(
                    kind,
                    sides.clone(),
                    filter.clone(),
                    nulls_equal,
                    schema.clone(),
                )?) as Box<dyn Operator>)
            },
            vec![left_keys.clone(), right_keys.clone()],
            vec![left.source, right.source],
        )?;
        self.windowed = true;
        let times = WindowJoin::output_time_columns(kind, &sides);
        Ok(Lowered {
            source: node,
            schema,
            watermarks: times.iter().copied().collect(),
            append_only: true,
            session: None,
            closes_on: times.first().copied(),
        })
    }

    /// Lowers both sides of a join, each with its windowed aggregations
    /// emitting on window close when `closing` says so.
    fn join_inputs(&mut self, join: &Join, closing: [bool; 2]) -> Result<(Lowered, Lowered)> {
        let mut side = |plan: &LogicalPlan, closing: bool| {
            let saved = self.emit_on_window_close;
            self.emit_on_window_close |= closing;
            let lowered = self.lower(plan);
            self.emit_on_window_close = saved;
            lowered
        };
        let left = side(&join.left, closing[0])?;
        let right = side(&join.right, closing[1])?;
        Ok((left, right))
    }

    /// Forgets the nodes and sources planned since `mark`.
    fn truncate(&mut self, mark: (usize, usize)) {
        self.nodes.truncate(mark.0);
        self.sources.truncate(mark.1);
        self.planned
            .retain(|_, lowered| matches!(lowered.source, Source::Node(id) if id < mark.0));
    }

    fn physical(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(self.ctx.create_physical_expr(expr.clone(), schema)?)
    }
}

impl StreamPlan {
    /// The operator graph, one line per operator, as `EXPLAIN` shows it.
    pub fn explain(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.nodes.len() + 1);
        for (id, node) in self.nodes.iter().enumerate().rev() {
            let inputs: Vec<String> = node
                .inputs
                .iter()
                .map(|i| match i {
                    Source::Node(n) => format!("#{n}"),
                    Source::Relation(r) => format!("{} {}", r.kind_name(), r.name()),
                })
                .collect();
            let Some(operator) = node.subtasks.first() else {
                continue;
            };
            let describe = operator.describe();
            let mut line = format!("#{id} {}", operator.name());
            if !describe.is_empty() {
                line.push_str(&format!(" {describe}"));
            }
            line.push_str(&format!(" (parallelism {}", node.subtasks.len()));
            if !node.keys.is_empty() {
                let keys: Vec<String> = node
                    .keys
                    .iter()
                    .map(|keys| {
                        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                        format!("[{}]", keys.join(", "))
                    })
                    .collect();
                line.push_str(&format!(", hash shuffle on {}", keys.join(" / ")));
            }
            line.push_str(&format!(") <- {}", inputs.join(", ")));
            lines.push(line);
        }
        lines
    }

    /// Starts the job, delivering to `sink`, then subscribes it to its
    /// sources (each starting with its current content). The tasks run before
    /// the subscriptions are taken, so that a source's writers never wait on
    /// a job that cannot read yet. The caller holds the barrier lock (at
    /// `epoch`), so that no barrier reaches some sources and not others.
    ///
    /// Every source is subscribed under its write lock, all held at once, and
    /// the write-ahead log position read then is returned: the job sees
    /// exactly the logged writes from that position on (see `write_log`).
    /// With `restore`, the operators get back the states a checkpoint kept,
    /// and the job subscribes to its sources without their content (it is
    /// in the states already).
    pub async fn start(
        self,
        sink: Outputs,
        epoch: u64,
        wal: &Wal,
        restore: Option<Vec<weir_runtime::OperatorState>>,
    ) -> Result<(weir_runtime::Job, u64)> {
        let mut graph = JobGraph::default();
        let mut sources = Vec::new();
        for node in self.nodes {
            let inputs = node
                .inputs
                .into_iter()
                .map(|input| match input {
                    Source::Node(id) => Input::Node(id),
                    Source::Relation(relation) => {
                        let label = format!("{} {}", relation.kind_name(), relation.name());
                        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
                        sources.push((relation, sender));
                        Input::Source(label, receiver)
                    }
                })
                .collect();
            graph.add_parallel(node.subtasks, node.keys, inputs);
        }
        let content = restore.is_none();
        if let Some(states) = restore {
            graph.restore(states)?;
        }
        let job = graph.spawn(sink, epoch);
        let position = subscribe_all(sources, wal, content).await?;
        Ok((job, position))
    }
}

/// The write lock of a relation, held while jobs subscribe to it.
enum WriteLock<'a> {
    Table(TableWriter<'a>),
    Stream {
        _ingest: tokio::sync::MutexGuard<'a, ()>,
    },
    /// A materialized view: its changes come from its own job.
    None,
}

/// Takes the write locks of every source (in OID order, as `DROP` does),
/// reads the log position, and subscribes each sender to its relation (with
/// `content`, starting with the relation's rows).
async fn subscribe_all(
    sources: Vec<(Relation, mpsc::Sender<Message>)>,
    wal: &Wal,
    content: bool,
) -> Result<u64> {
    let mut relations: Vec<Relation> = sources.iter().map(|(r, _)| r.clone()).collect();
    relations.sort_by_key(Relation::oid);
    relations.dedup_by_key(|r| r.oid());
    let mut locks: HashMap<u32, WriteLock<'_>> = HashMap::new();
    for relation in &relations {
        let lock = match relation {
            Relation::Table(table) => WriteLock::Table(table.data.writer().await),
            Relation::Stream(stream) => WriteLock::Stream {
                _ingest: stream.ingest.lock().await,
            },
            Relation::MaterializedView(_) | Relation::View(_) => WriteLock::None,
        };
        locks.insert(relation.oid(), lock);
    }
    let position = wal.position();
    for (relation, sender) in sources {
        let lock = locks.get(&relation.oid()).unwrap_or(&WriteLock::None);
        subscribe(&relation, sender, lock, content).await?;
    }
    Ok(position)
}

/// Subscribes `sender` to a relation's changelog, starting with its
/// watermark and (with `content`) its rows; the caller holds the relation's
/// write lock.
async fn subscribe(
    relation: &Relation,
    sender: mpsc::Sender<Message>,
    lock: &WriteLock<'_>,
    content: bool,
) -> Result<()> {
    match (relation, lock) {
        (Relation::Table(table), WriteLock::Table(writer)) => {
            let rows = if content {
                writer.snapshot()
            } else {
                Arc::from(Vec::new())
            };
            let mut backfill: Vec<Message> = rows
                .iter()
                .map(|b| Message::Chunk(Chunk::inserts(b.clone())))
                .collect();
            if let Some(watermark) = table.event_time.as_ref().and_then(|e| e.current()) {
                backfill.push(Message::Watermark(watermark));
            }
            table.feed.subscribe_with(sender, backfill).await;
        }
        (Relation::Stream(stream), WriteLock::Stream { .. }) => {
            let backfill = stream
                .event_time
                .as_ref()
                .and_then(|e| e.current())
                .map(Message::Watermark)
                .into_iter()
                .collect();
            stream.feed.subscribe_with(sender, backfill).await;
        }
        (Relation::MaterializedView(view), _) => view.sink.subscribe(sender, content).await?,
        (relation, _) => {
            return Err(WeirError::internal(format!(
                "{} \"{}\" cannot be subscribed to",
                relation.kind_name(),
                relation.name()
            )));
        }
    }
    Ok(())
}
