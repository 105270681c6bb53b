//! A client connection: its startup, its session, and cancellation.
//!
//! At startup the connection opens an engine session on the requested
//! database (a missing database ends the connection with `FATAL 3D000`, as in
//! Postgres), reports the session's settings, and registers a backend key so
//! that a `CancelRequest` from another socket can interrupt its statements.
//! Past `max_connections` open connections, a new one is refused with
//! `FATAL 53300`, as Postgres does.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, ConnectionManager, PgWireConnectionState,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use weir_engine::{Engine, Session, TransactionState, WeirError, sqlstate};

use crate::errors::fatal_error;

/// The engine session of a connection, kept in pgwire's session extensions.
pub struct SessionCell(pub tokio::sync::Mutex<Session>);

/// The session of a connected client.
pub fn session_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<SessionCell>> {
    client
        .session_extensions()
        .get::<SessionCell>()
        .ok_or_else(|| {
            fatal_error(WeirError::new(
                sqlstate::PROTOCOL_VIOLATION,
                "the connection has no session: startup did not complete",
            ))
        })
}

/// The transaction status a session reports in `ReadyForQuery`.
pub fn transaction_status(state: TransactionState) -> TransactionStatus {
    match state {
        TransactionState::Idle => TransactionStatus::Idle,
        TransactionState::InBlock => TransactionStatus::Transaction,
        TransactionState::Failed => TransactionStatus::Error,
    }
}

/// Resolves when a `CancelRequest` for the connection's current statement
/// arrives.
pub async fn cancel_signal<C: ClientInfo>(client: &C) -> impl Future<Output = ()> + use<C> {
    let receiver = match client.session_extensions().get::<Arc<ConnectionHandle>>() {
        Some(handle) => Some(handle.start_query().await),
        None => None,
    };
    async move {
        match receiver {
            Some(rx) => {
                if rx.await.is_err() {
                    // The connection's handle went away: never cancelled.
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// The default of `max_connections`, Postgres' default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;

/// One of the `max_connections` places, held by a connection's session
/// extensions while it is open.
struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    /// A place, if one is free.
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<ConnectionSlot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| ConnectionSlot(open.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Startup without password: opens the session and reports its settings.
pub struct Startup {
    engine: Arc<Engine>,
    connections: Arc<ConnectionManager>,
    keys: RandomPidSecretKeyGenerator,
    open: Arc<AtomicUsize>,
    max_connections: usize,
}

impl Startup {
    pub fn new(
        engine: Arc<Engine>,
        connections: Arc<ConnectionManager>,
        max_connections: usize,
    ) -> Self {
        Startup {
            engine,
            connections,
            keys: RandomPidSecretKeyGenerator::default(),
            open: Arc::new(AtomicUsize::new(0)),
            max_connections,
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        let slot = ConnectionSlot::take(&self.open, self.max_connections).ok_or_else(|| {
            fatal_error(WeirError::new(
                sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            ))
        })?;
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        let user = startup
            .parameters
            .get("user")
            .cloned()
            .unwrap_or_else(|| self.engine.config().superuser.clone());
        let database = startup
            .parameters
            .get("database")
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| user.clone());
        let parameters: Vec<(String, String)> = startup
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let session = self
            .engine
            .connect(&database, &user, &parameters)
            .map_err(fatal_error)?;
        tracing::debug!(%user, %database, peer = %client.socket_addr(), "session opened");

        let (pid, secret) = self.keys.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        let (handle, guard) = self.connections.register(pid, secret.clone());
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert::<ConnectionGuard>(guard);
        client.session_extensions().insert::<ConnectionSlot>(slot);
        let reported = session.settings().reported();
        client
            .session_extensions()
            .insert(SessionCell(tokio::sync::Mutex::new(session)));

        client
            .feed(PgWireBackendMessage::Authentication(Authentication::Ok))
            .await?;
        for (name, value) in reported {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_string(),
                    value,
                )))
                .await?;
        }
        client
            .feed(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
                pid, secret,
            )))
            .await?;
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                TransactionStatus::Idle,
            )))
            .await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}
