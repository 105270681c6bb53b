//! Weir's server: the Postgres wire protocol in front of the engine.
//!
//! - [`connection`]: startup, the session of a connection, cancellation;
//! - [`query`]: the simple and extended query protocols;
//! - [`rows`]: result descriptions and row streams;
//! - `copy`: `COPY ... TO STDOUT` (CopyOutResponse, CopyData, CopyDone);
//! - `liveness`: noticing a client gone while its statement waits for rows;
//! - [`encode`]: Arrow values in Postgres' text and binary formats;
//! - [`params`]: bind parameters;
//! - [`errors`]: engine errors as Postgres error messages.

pub mod connection;
mod copy;
pub mod encode;
pub mod errors;
mod liveness;
pub mod params;
pub mod query;
pub mod rows;

use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::PgWireError;
use tokio::net::TcpListener;
use weir_engine::Engine;

pub use crate::connection::DEFAULT_MAX_CONNECTIONS;
use crate::connection::{SessionCell, Startup};
use crate::query::QueryHandler;

/// The handlers pgwire calls for every connection.
struct Handlers {
    query: Arc<QueryHandler>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

/// Errors pgwire reports itself (in `Parse`, `Bind`, `Describe`, `Execute`)
/// fail the session's transaction block, as any error does in Postgres.
struct FailTransactionBlock;

impl ErrorHandler for FailTransactionBlock {
    fn on_error<C>(&self, client: &C, _error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let Some(cell) = client.session_extensions().get::<SessionCell>()
            && let Ok(mut session) = cell.0.try_lock()
        {
            session.statement_failed();
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(FailTransactionBlock)
    }
}

/// A Weir server listening for Postgres clients.
pub struct Server {
    listener: TcpListener,
    handlers: Arc<Handlers>,
}

impl Server {
    /// Binds `addr` for the engine, with the default `max_connections`.
    pub async fn bind(engine: Arc<Engine>, addr: SocketAddr) -> std::io::Result<Server> {
        Server::bind_with(engine, addr, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Binds `addr` for the engine; past `max_connections` open connections,
    /// new ones are refused.
    pub async fn bind_with(
        engine: Arc<Engine>,
        addr: SocketAddr,
        max_connections: usize,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let connections = Arc::new(ConnectionManager::new());
        let handlers = Arc::new(Handlers {
            query: Arc::new(QueryHandler::default()),
            startup: Arc::new(Startup::new(engine, connections.clone(), max_connections)),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        });
        Ok(Server { listener, handlers })
    }

    /// The address the server listens on (with the port chosen when binding
    /// port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the task is dropped; each connection runs in
    /// its own task.
    pub async fn run(self) {
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let handlers = self.handlers.clone();
            tokio::spawn(async move {
                if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }
}
