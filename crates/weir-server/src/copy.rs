//! `COPY ... TO STDOUT` on the wire: `CopyOutResponse`, then one `CopyData`
//! per line (the header line first, when asked for), then `CopyDone`. What
//! was sent is flushed whenever the query has no rows ready, so a
//! continuous `COPY` over a stream reaches the client row by row.

use std::fmt::Debug;

use futures::{Sink, SinkExt, StreamExt};
use pgwire::error::PgWireError;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use weir_engine::text_format::OutputFormat;
use weir_engine::{CopyOut, WeirError};

use crate::liveness::wait_probing;
use crate::query::Stop;

async fn feed<C>(client: &mut C, message: PgWireBackendMessage) -> Result<(), Stop>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client.feed(message).await.map_err(|e| Stop::Wire(e.into()))
}

/// Sends the rows of a `COPY ... TO STDOUT`; returns how many were sent.
pub(crate) async fn send_copy_out<C>(
    client: &mut C,
    copy: CopyOut,
    text: OutputFormat,
) -> Result<usize, Stop>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let columns = copy.rows.schema.fields().len();
    let columns_i16 = i16::try_from(columns)
        .map_err(|_| Stop::Statement(WeirError::not_supported("COPY of over 32767 columns")))?;
    feed(
        client,
        PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            0,
            columns_i16,
            vec![0; columns],
        )),
    )
    .await?;
    if copy.format.header {
        let line = copy.format.header_line(&copy.rows.schema);
        feed(
            client,
            PgWireBackendMessage::CopyData(CopyData::new(line.into())),
        )
        .await?;
    }
    let mut batches = copy.rows.batches;
    let mut sent = 0;
    loop {
        client.flush().await.map_err(|e| Stop::Wire(e.into()))?;
        let Some(batch) = wait_probing(client, batches.next()).await? else {
            break;
        };
        let batch = batch.map_err(WeirError::from)?;
        for line in copy.format.lines(&batch, &text)? {
            feed(
                client,
                PgWireBackendMessage::CopyData(CopyData::new(line.into())),
            )
            .await?;
            sent += 1;
        }
    }
    feed(client, PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    Ok(sent)
}
