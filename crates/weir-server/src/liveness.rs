//! Noticing a client that went away while its statement waits for rows (a
//! continuous query, a `SUBSCRIBE`, a continuous `COPY` with nothing new).
//!
//! While a statement runs, nobody reads the client's socket, so a closed
//! connection shows only when something is written to it: the first write
//! after the peer closed is answered with a reset, the next one fails. So
//! while no row comes, the server re-reports an unchanged parameter
//! (`ParameterStatus server_version`, which a client accepts at any time
//! and which changes nothing) every [`PROBE_INTERVAL`]; a failed write stops
//! the statement, and with it the query's job and state, within two
//! intervals.

use std::fmt::Debug;
use std::time::Duration;

use futures::{Sink, SinkExt};
use pgwire::error::PgWireError;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;
use weir_engine::settings::SERVER_VERSION;

/// How long a statement waits for rows before probing its client.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Awaits `next`, probing the client every [`PROBE_INTERVAL`] meanwhile.
/// `next` must be cancel-safe (it is polled again after each probe).
pub(crate) async fn wait_probing<C, T>(
    client: &mut C,
    next: impl Future<Output = T>,
) -> Result<T, PgWireError>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut next = std::pin::pin!(next);
    loop {
        match tokio::time::timeout(PROBE_INTERVAL, next.as_mut()).await {
            Ok(value) => return Ok(value),
            Err(_) => {
                client
                    .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                        "server_version".to_string(),
                        SERVER_VERSION.to_string(),
                    )))
                    .await?;
            }
        }
    }
}
