//! Weir's server: the Postgres wire protocol in front of the engine.
//!
//! - [`connection`]: startup, the session of a connection, cancellation;
//! - [`auth`]: users and passwords (SCRAM-SHA-256), TLS;
//! - [`query`]: the simple and extended query protocols;
//! - [`rows`]: result descriptions and row streams;
//! - `copy`: `COPY ... TO STDOUT` (CopyOutResponse, CopyData, CopyDone);
//! - `framing`: each client message checked before pgwire decodes it;
//! - `liveness`: noticing a client gone while its statement waits for rows;
//! - [`encode`]: Arrow values in Postgres' text and binary formats;
//! - [`params`]: bind parameters;
//! - [`errors`]: engine errors as Postgres error messages;
//! - [`metrics`]: the Prometheus endpoint (`GET /metrics` over HTTP).

pub mod auth;
pub mod connection;
mod copy;
pub mod encode;
pub mod errors;
mod framing;
mod liveness;
pub mod metrics;
pub mod params;
pub mod query;
pub mod rows;

use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::api::auth::StartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::PgWireError;
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use weir_engine::Engine;

use crate::auth::{Tls, Users};
pub use crate::connection::DEFAULT_MAX_CONNECTIONS;
use crate::connection::{Gate, SessionCell, Startup};
use crate::query::QueryHandler;

/// The handlers pgwire calls for every connection.
struct Handlers {
    query: Arc<QueryHandler>,
    gate: Arc<Gate>,
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

    /// Called once per connection: each has its own startup (its SCRAM
    /// exchange).
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup::new(self.gate.clone()))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(FailTransactionBlock)
    }
}

/// How a server admits clients.
pub struct ServerOptions {
    /// Past this many open connections, new ones are refused (53300).
    pub max_connections: usize,
    /// Users who must prove their password (SCRAM-SHA-256); `None`: anyone
    /// who reaches the port gets in, as any user.
    pub users: Option<Users>,
    /// TLS for clients that ask for it (`sslmode=require`).
    pub tls: Option<Tls>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            users: None,
            tls: None,
        }
    }
}

/// A Weir server listening for Postgres clients.
pub struct Server {
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
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
        let options = ServerOptions {
            max_connections,
            ..ServerOptions::default()
        };
        Server::bind_with_options(engine, addr, options).await
    }

    /// Binds `addr` for the engine, admitting clients as `options` say.
    pub async fn bind_with_options(
        engine: Arc<Engine>,
        addr: SocketAddr,
        options: ServerOptions,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let connections = Arc::new(ConnectionManager::new());
        let scram = options.users.map(|users| {
            let mut scram = ScramAuth::new(Arc::new(users));
            if let Some(tls) = &options.tls
                && let Err(e) = scram.configure_certificate(&tls.certificate_pem)
            {
                tracing::warn!(
                    error = %e,
                    "SCRAM channel binding is off: the certificate's signature algorithm is not one it supports"
                );
            }
            scram
        });
        let handlers = Arc::new(Handlers {
            query: Arc::new(QueryHandler::default()),
            gate: Arc::new(Gate::new(
                engine,
                connections.clone(),
                options.max_connections,
                scram,
            )),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        });
        Ok(Server {
            listener,
            handlers,
            tls: options.tls.map(|tls| tls.acceptor),
        })
    }

    /// The address the server listens on (with the port chosen when binding
    /// port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What every connection's startup shares, with the connections open
    /// (for [`metrics::serve_metrics`]).
    pub fn gate(&self) -> Arc<Gate> {
        self.handlers.gate.clone()
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
            let tls = self.tls.clone();
            tokio::spawn(async move {
                if let Err(e) = framing::serve(socket, tls, handlers).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }
}
