//! A client connection: its startup, its session, and cancellation.
//!
//! At startup, past `max_connections` open connections, a new one is refused
//! with `FATAL 53300`, as Postgres does. With users configured the client
//! then proves its password by SCRAM-SHA-256 (see [`crate::auth`]); a wrong
//! password or an unknown user ends the connection with `FATAL 28P01`. The
//! connection then opens an engine session on the requested database (a
//! missing database ends it with `FATAL 3D000`: only after the password, so
//! that which databases exist is not told to strangers), reports the
//! session's settings, and registers a backend key so that a
//! `CancelRequest` from another socket can interrupt its statements.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::{SASLState, SCRAM_SHA_256_METHOD, SCRAM_SHA_256_PLUS_METHOD};
use pgwire::api::auth::{
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, ConnectionManager, METADATA_DATABASE,
    METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, ParameterStatus, PasswordMessageFamily,
};
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

/// What every connection's startup shares: the engine, the connections
/// open, and how clients authenticate.
pub struct Gate {
    engine: Arc<Engine>,
    connections: Arc<ConnectionManager>,
    keys: RandomPidSecretKeyGenerator,
    open: Arc<AtomicUsize>,
    max_connections: usize,
    /// SCRAM-SHA-256 over the configured users; `None`: no password asked.
    scram: Option<ScramAuth>,
}

impl Gate {
    pub fn new(
        engine: Arc<Engine>,
        connections: Arc<ConnectionManager>,
        max_connections: usize,
        scram: Option<ScramAuth>,
    ) -> Self {
        Gate {
            engine,
            connections,
            keys: RandomPidSecretKeyGenerator::default(),
            open: Arc::new(AtomicUsize::new(0)),
            max_connections,
            scram,
        }
    }

    /// Connections open now (authenticated or authenticating).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

/// One connection's startup: the `max_connections` check, then (with users
/// configured) a SCRAM-SHA-256 exchange, then the session is opened on the
/// requested database and its settings reported.
pub struct Startup {
    gate: Arc<Gate>,
    /// Where this connection's SCRAM exchange stands.
    sasl: tokio::sync::Mutex<SASLState>,
}

impl Startup {
    pub fn new(gate: Arc<Gate>) -> Self {
        Startup {
            gate,
            sasl: tokio::sync::Mutex::new(SASLState::Initial),
        }
    }

    /// The startup message's user (the superuser when it names none).
    fn user<C: ClientInfo>(&self, client: &C) -> String {
        client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_else(|| self.gate.engine.config().superuser.clone())
    }

    /// A SCRAM message of the exchange started at startup.
    async fn authenticate<C>(
        &self,
        client: &mut C,
        scram: &ScramAuth,
        message: PasswordMessageFamily,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut state = self.sasl.lock().await;
        let message = if let SASLState::Initial = *state {
            // pgwire reads the response's length without a bound check.
            if let PasswordMessageFamily::Raw(body) = &message
                && !is_sasl_initial_response(body)
            {
                return Err(fatal_error(WeirError::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    "malformed SASLInitialResponse message",
                )));
            }
            let initial = message.into_sasl_initial_response()?;
            let offered = initial.auth_method == SCRAM_SHA_256_METHOD
                || (initial.auth_method == SCRAM_SHA_256_PLUS_METHOD && offers_plus(client, scram));
            if !offered {
                return Err(fatal_error(WeirError::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!(
                        "client selected an invalid SASL authentication mechanism: {}",
                        initial.auth_method
                    ),
                )));
            }
            // The client's channel-binding flag must agree with the
            // mechanism, and a client that could bind (`y`) must not be
            // talked out of it when the server offered binding: someone on
            // the way may have removed SCRAM-SHA-256-PLUS from the offer.
            let plus = initial.auth_method == SCRAM_SHA_256_PLUS_METHOD;
            let flag = initial.data.as_deref().and_then(|d| d.first().copied());
            let consistent = match flag {
                Some(b'p') => plus,
                Some(b'n') => !plus,
                Some(b'y') => !plus && !offers_plus(client, scram),
                _ => false,
            };
            if !consistent {
                return Err(fatal_error(WeirError::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    "SCRAM channel binding negotiation error",
                )));
            }
            *state = SASLState::ScramClientFirstReceived;
            PasswordMessageFamily::SASLInitialResponse(initial)
        } else {
            PasswordMessageFamily::SASLResponse(message.into_sasl_response()?)
        };
        let user = self.user(client);
        let (reply, next) = scram
            .process_scram_message(client, message, &state)
            .await
            .map_err(|e| match e {
                PgWireError::InvalidPassword(_) => password_failed(&user),
                other => other,
            })?;
        *state = next;
        if matches!(*state, SASLState::Finished) {
            client
                .feed(PgWireBackendMessage::Authentication(reply))
                .await?;
            self.open_session(client).await
        } else {
            client
                .send(PgWireBackendMessage::Authentication(reply))
                .await?;
            Ok(())
        }
    }

    /// Opens the session of an admitted client and reports its settings:
    /// the end of a startup.
    async fn open_session<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = self.user(client);
        let database = client
            .metadata()
            .get(METADATA_DATABASE)
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| user.clone());
        let parameters: Vec<(String, String)> = client
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let session = self
            .gate
            .engine
            .connect(&database, &user, &parameters)
            .map_err(fatal_error)?;
        tracing::debug!(%user, %database, peer = %client.socket_addr(), "session opened");

        let (pid, secret) = self.gate.keys.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        let (handle, guard) = self.gate.connections.register(pid, secret.clone());
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert::<ConnectionGuard>(guard);
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

/// Whether a body is a SASLInitialResponse: a mechanism name, then a
/// length (-1 for none) and that many bytes.
fn is_sasl_initial_response(body: &[u8]) -> bool {
    let Some(nul) = body.iter().position(|b| *b == 0) else {
        return false;
    };
    let rest = &body[nul + 1..];
    let Some(length) = rest.get(..4) else {
        return false;
    };
    let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
    length == -1 || (length >= 0 && length as usize <= rest.len() - 4)
}

/// Whether the server offers SCRAM with channel binding: only over TLS, and
/// only when the certificate allows it.
fn offers_plus<C: ClientInfo>(client: &C, scram: &ScramAuth) -> bool {
    client.is_secure() && scram.supports_channel_binding()
}

/// Postgres' answer to a wrong password and to a user that does not exist
/// alike.
fn password_failed(user: &str) -> PgWireError {
    fatal_error(WeirError::new(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    ))
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
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                let slot = ConnectionSlot::take(&self.gate.open, self.gate.max_connections)
                    .ok_or_else(|| {
                        fatal_error(WeirError::new(
                            sqlstate::TOO_MANY_CONNECTIONS,
                            "sorry, too many clients already",
                        ))
                    })?;
                // Held for as long as the connection, authenticating included.
                client.session_extensions().insert::<ConnectionSlot>(slot);
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                let user = self.user(client);
                client
                    .metadata_mut()
                    .insert(METADATA_USER.to_string(), user);
                match &self.gate.scram {
                    None => self.open_session(client).await,
                    Some(scram) => {
                        let mut mechanisms = vec![SCRAM_SHA_256_METHOD.to_string()];
                        if offers_plus(client, scram) {
                            mechanisms.push(SCRAM_SHA_256_PLUS_METHOD.to_string());
                        }
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                                mechanisms,
                            )))
                            .await?;
                        Ok(())
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(message)
                if matches!(
                    client.state(),
                    PgWireConnectionState::AuthenticationInProgress
                ) =>
            {
                match &self.gate.scram {
                    Some(scram) => self.authenticate(client, scram, message).await,
                    None => Err(unexpected_password()),
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(_) => Err(unexpected_password()),
            _ => Ok(()),
        }
    }
}

fn unexpected_password() -> PgWireError {
    fatal_error(WeirError::new(
        sqlstate::PROTOCOL_VIOLATION,
        "unexpected password message",
    ))
}

#[cfg(test)]
mod tests {
    use super::is_sasl_initial_response;

    #[test]
    fn sasl_initial_responses_are_checked_before_decoding() {
        let mut good = b"SCRAM-SHA-256\0".to_vec();
        good.extend(3i32.to_be_bytes());
        good.extend(b"n,,");
        assert!(is_sasl_initial_response(&good));
        let mut none = b"SCRAM-SHA-256\0".to_vec();
        none.extend((-1i32).to_be_bytes());
        assert!(is_sasl_initial_response(&none));
        let mut long = b"SCRAM-SHA-256\0".to_vec();
        long.extend(30i32.to_be_bytes());
        long.extend(b"n,,");
        assert!(!is_sasl_initial_response(&long));
        assert!(!is_sasl_initial_response(b"SCRAM-SHA-256"));
        assert!(!is_sasl_initial_response(b"SCRAM\0\0\0"));
    }
}
