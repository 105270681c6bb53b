//! Statements over the wire: the simple protocol (`Query`) and the extended
//! protocol (`Parse` / `Bind` / `Describe` / `Execute`).
//!
//! Weir drives the response itself instead of handing pgwire a finished
//! result, for three reasons: rows are sent as the query produces them (and
//! flushed whenever the query has nothing ready, so a slow or endless result
//! reaches the client row by row); a `CancelRequest` or `statement_timeout`
//! interrupts a statement at any point, including while its rows stream; and
//! the transaction status in `ReadyForQuery` follows the session's own.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Execute, PortalSuspended, Sync as SyncMessage, TARGET_TYPE_BYTE_PORTAL,
};
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse, ReadyForQuery};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use std::collections::HashMap;
use weir_engine::{CommandTag, Output, Prepared, Session, WeirError, sqlstate};

use crate::connection::{SessionCell, cancel_signal, session_of, transaction_status};
use crate::copy::send_copy_out;
use crate::errors::{error_info, notice_info, user_error};
use crate::liveness::wait_probing;
use crate::params;
use crate::rows::{RowStream, binary_columns, field_infos, row_description};
use weir_engine::text_format::OutputFormat;

/// Why a statement stopped: an error to report, or the connection failed.
pub(crate) enum Stop {
    Statement(WeirError),
    Wire(PgWireError),
}

impl From<WeirError> for Stop {
    fn from(e: WeirError) -> Self {
        Stop::Statement(e)
    }
}

impl From<PgWireError> for Stop {
    fn from(e: PgWireError) -> Self {
        Stop::Wire(e)
    }
}

/// Handles both query protocols for every connection.
#[derive(Debug, Default)]
pub struct QueryHandler {
    parser: Arc<StatementParser>,
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let cell = session_of(client)?;
        let mut session = cell.0.lock().await;
        let result = run_simple(client, &mut session, &query.query).await;
        let status = transaction_status(session.transaction_state());
        drop(session);
        result?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // `on_query` handles queries; pgwire only calls this from its default.
        Err(user_error(WeirError::internal("do_query is not used")))
    }
}

/// Runs the statements of a simple query, sending their results. Stops at the
/// first failing statement, as Postgres does.
async fn run_simple<C>(client: &mut C, session: &mut Session, sql: &str) -> PgWireResult<()>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let statements = match session.parse(sql) {
        Ok(statements) => statements,
        Err(e) => {
            session.statement_failed();
            return send_error(client, &e).await;
        }
    };
    if statements.is_empty() {
        client
            .feed(PgWireBackendMessage::EmptyQueryResponse(
                EmptyQueryResponse::new(),
            ))
            .await?;
        return Ok(());
    }
    // One cancel signal for the whole query string: a cancel between two
    // statements stops the next one.
    let mut cancel = std::pin::pin!(cancel_signal(client).await);
    for statement in statements {
        let timeout = session.settings().statement_timeout();
        let step = async {
            let output = session.run(statement).await?;
            send_session_messages(client, session).await?;
            match output {
                Output::Command(tag) => send_command_complete(client, tag).await?,
                Output::Rows(rows) => {
                    let format = OutputFormat::from_settings(&session.settings());
                    let command = rows.command;
                    client
                        .feed(PgWireBackendMessage::RowDescription(row_description(
                            &rows.schema,
                        )))
                        .await
                        .map_err(|e| Stop::Wire(e.into()))?;
                    let columns = rows.schema.fields().len();
                    let mut stream = RowStream::new(rows.batches, vec![false; columns], format);
                    let (sent, _) = send_rows(client, &mut stream, 0).await?;
                    send_command_complete(client, CommandTag::rows(command, sent)).await?;
                }
                Output::CopyOut(copy) => {
                    let format = OutputFormat::from_settings(&session.settings());
                    let sent = send_copy_out(client, copy, format).await?;
                    send_command_complete(client, CommandTag::with_rows("COPY", sent as u64))
                        .await?;
                }
            }
            Ok::<(), Stop>(())
        };
        match interruptible(step, cancel.as_mut(), timeout).await {
            Ok(()) => {}
            Err(Stop::Statement(e)) => {
                session.statement_failed();
                send_session_messages(client, session).await?;
                return send_error(client, &e).await;
            }
            Err(Stop::Wire(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Runs a statement future until it ends, is cancelled, or times out.
async fn interruptible<T>(
    work: impl Future<Output = Result<T, Stop>>,
    cancel: impl Future<Output = ()>,
    timeout: Option<Duration>,
) -> Result<T, Stop> {
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = work => result,
        () = cancel => Err(Stop::Statement(WeirError::canceled())),
        () = deadline => Err(Stop::Statement(WeirError::new(
            sqlstate::QUERY_CANCELED,
            "canceling statement due to statement timeout",
        ))),
    }
}

/// Sends up to `limit` rows (all when 0), flushing whenever the query has no
/// row ready. Returns how many were sent and whether the limit stopped it.
async fn send_rows<C>(
    client: &mut C,
    rows: &mut RowStream,
    limit: usize,
) -> Result<(usize, bool), Stop>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut sent = 0;
    loop {
        if limit > 0 && sent == limit {
            return Ok((sent, true));
        }
        let next = if rows.has_pending() {
            rows.next().await?
        } else {
            client.flush().await.map_err(PgWireError::from)?;
            wait_probing(client, rows.next()).await??
        };
        match next {
            Some(row) => {
                feed_row(client, row).await?;
                sent += 1;
            }
            None => return Ok((sent, false)),
        }
    }
}

async fn feed_row<C>(client: &mut C, row: DataRow) -> Result<(), Stop>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client
        .feed(PgWireBackendMessage::DataRow(row))
        .await
        .map_err(|e| Stop::Wire(e.into()))
}

async fn send_command_complete<C>(client: &mut C, tag: CommandTag) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client
        .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
            tag.to_string(),
        )))
        .await?;
    Ok(())
}

async fn send_error<C>(client: &mut C, e: &WeirError) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client
        .feed(PgWireBackendMessage::ErrorResponse(error_info(e).into()))
        .await?;
    Ok(())
}

/// Sends the notices and changed settings a statement produced.
async fn send_session_messages<C>(client: &mut C, session: &mut Session) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in session.take_notices() {
        client
            .feed(PgWireBackendMessage::NoticeResponse(
                notice_info(&notice).into(),
            ))
            .await?;
    }
    for (name, value) in session.take_reported() {
        client
            .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name.to_string(),
                value,
            )))
            .await?;
    }
    Ok(())
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Arc<Prepared>;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name.to_owned())),
        };
        client.set_state(PgWireConnectionState::QueryInProgress);
        let cell: Arc<SessionCell> = session_of(client)?;
        let mut session = cell.0.lock().await;
        let limit = usize::try_from(message.max_rows).unwrap_or(0);
        let result = execute_portal(client, &mut session, &portal, limit).await;
        let status = transaction_status(session.transaction_state());
        drop(session);
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        match result {
            Ok(()) => Ok(()),
            Err(Stop::Statement(e)) => Err(user_error(e)),
            Err(Stop::Wire(e)) => Err(e),
        }
    }

    async fn on_sync<C>(&self, client: &mut C, _message: SyncMessage) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Sync ends the unnamed portal, and the rows it still had.
        suspended_portals(client).remove(DEFAULT_NAME);
        client.portal_store().rm_portal(DEFAULT_NAME);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                client.transaction_status(),
            )))
            .await?;
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.target_type == TARGET_TYPE_BYTE_PORTAL {
            suspended_portals(client).remove(name);
            client.portal_store().rm_portal(name);
        } else {
            client.portal_store().rm_statement(name);
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        _portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // `on_execute` handles execution; pgwire only calls this from its default.
        Err(user_error(WeirError::internal("do_query is not used")))
    }
}

/// Portals whose rows were stopped by an `Execute` row limit, by portal name.
#[derive(Default)]
struct SuspendedPortals(std::sync::Mutex<HashMap<String, Suspended>>);

/// The rest of a portal's rows.
struct Suspended {
    /// The portal they belong to: a new `Bind` of the same name is another.
    portal: Arc<Portal<Arc<Prepared>>>,
    rows: RowStream,
    command: &'static str,
}

/// The suspended portals of a connection.
fn suspended_portals<C: ClientInfo>(client: &C) -> Arc<SuspendedPortals> {
    client
        .session_extensions()
        .get_or_insert_with(SuspendedPortals::default)
}

impl SuspendedPortals {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Suspended>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, name: &str) {
        self.map().remove(name);
    }

    /// The suspended rows of this very portal.
    fn take(&self, portal: &Arc<Portal<Arc<Prepared>>>) -> Option<Suspended> {
        let mut map = self.map();
        match map.remove(&portal.name) {
            Some(s) if Arc::ptr_eq(&s.portal, portal) => Some(s),
            _ => None,
        }
    }

    fn put(&self, suspended: Suspended) {
        self.map().insert(suspended.portal.name.clone(), suspended);
    }
}

/// Executes a portal, or continues one suspended by a row limit.
async fn execute_portal<C>(
    client: &mut C,
    session: &mut Session,
    portal: &Arc<Portal<Arc<Prepared>>>,
    limit: usize,
) -> Result<(), Stop>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let suspended = suspended_portals(client);
    let cancel = cancel_signal(client).await;
    let timeout = session.settings().statement_timeout();
    // A portal runs its statement once; later Executes continue its rows.
    let first_run = {
        let mut state = portal.state.lock().await;
        let initial = matches!(*state, PortalExecutionState::Initial);
        *state = PortalExecutionState::Finished;
        initial
    };
    let outcome = if let Some(mut rest) = suspended.take(portal) {
        let step = async {
            let (sent, more) = send_rows(client, &mut rest.rows, limit).await?;
            finish_portal_rows(client, rest.command, sent, more).await?;
            Ok(more.then_some(rest))
        };
        interruptible(step, cancel, timeout).await
    } else if !first_run {
        send_command_complete(client, CommandTag::rows("SELECT", 0)).await?;
        Ok(None)
    } else {
        let result_format = portal.result_column_format.clone();
        let step = async {
            let values = params::decode(portal)?;
            let output = session.execute(&portal.statement.statement, values).await?;
            send_session_messages(client, session).await?;
            match output {
                Output::Command(tag) => {
                    send_command_complete(client, tag).await?;
                    Ok(None)
                }
                Output::CopyOut(copy) => {
                    let format = OutputFormat::from_settings(&session.settings());
                    let sent = send_copy_out(client, copy, format).await?;
                    send_command_complete(client, CommandTag::with_rows("COPY", sent as u64))
                        .await?;
                    Ok(None)
                }
                Output::Rows(rows) => {
                    let binary = binary_columns(&rows.schema, &result_format);
                    let format = OutputFormat::from_settings(&session.settings());
                    let mut stream = RowStream::new(rows.batches, binary, format);
                    let (sent, more) = send_rows(client, &mut stream, limit).await?;
                    finish_portal_rows(client, rows.command, sent, more).await?;
                    Ok(more.then(|| Suspended {
                        portal: portal.clone(),
                        rows: stream,
                        command: rows.command,
                    }))
                }
            }
        };
        interruptible(step, cancel, timeout).await
    };
    match outcome {
        Ok(Some(rest)) => suspended.put(rest),
        Ok(None) => {}
        Err(e) => {
            session.statement_failed();
            return Err(e);
        }
    }
    Ok(())
}

/// Ends an `Execute` that sent rows: `PortalSuspended` when the row limit
/// stopped it, else the command tag.
async fn finish_portal_rows<C>(
    client: &mut C,
    command: &str,
    sent: usize,
    more: bool,
) -> Result<(), Stop>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if more {
        client
            .send(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()))
            .await
            .map_err(|e| Stop::Wire(e.into()))?;
    } else {
        send_command_complete(client, CommandTag::rows(command, sent)).await?;
    }
    Ok(())
}

/// Plans statements at `Parse`, so that `Describe` can report parameter and
/// result types.
#[derive(Debug, Default)]
pub struct StatementParser;

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let cell = session_of(client)?;
        let mut session = cell.0.lock().await;
        let mut statements = session.parse(sql).map_err(user_error)?;
        if statements.len() > 1 {
            return Err(user_error(WeirError::new(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let prepared = session.prepare(statement).await.map_err(user_error)?;
        Ok(Some(Arc::new(prepared)))
    }

    fn get_parameter_types(&self, prepared: &Self::Statement) -> PgWireResult<Vec<Type>> {
        params::parameter_types(prepared).map_err(user_error)
    }

    fn get_result_schema(
        &self,
        prepared: &Self::Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match prepared.output_schema() {
            Some(schema) => {
                let binary = binary_columns(&schema, format.unwrap_or(&Format::UnifiedText));
                field_infos(&schema, &binary)
            }
            None => Vec::new(),
        })
    }
}
