//! Checking each message a client sends before pgwire decodes it.
//!
//! pgwire 0.41 decodes a message by reading its fields from the buffer,
//! not from the message's length: a `Parse`, `Bind`, `Execute`, `Close` or
//! `Describe` whose body is shorter than the counts and lengths inside it
//! claim makes its decoder read past it (and panic when the bytes are not
//! there yet, which ends the connection's task without a word to the
//! client), and a body longer than its fields leaves bytes that are then
//! read as the next message. So the bytes from the client pass through a
//! [`Guard`] that follows the message framing (the untyped startup
//! messages, then typed ones) and checks, as the bytes arrive and without
//! buffering them, that the fields of each message fill its body exactly.
//! A message that does not is a read error; the connection loop answers it
//! with `FATAL 08P01` and closes the connection, as Postgres does.
//!
//! The loop itself is pgwire's (`process_socket`), with the guard put
//! between the socket and pgwire's codec.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use pgwire::api::PgWireServerHandlers;
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

/// What pgwire allows for the startup phase.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest startup-phase message (pgwire's and Postgres' limit).
const MAX_STARTUP_LENGTH: usize = 10_000;

/// The codes of the untyped messages (after their length).
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// One step of a message's structure.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// A NUL-terminated string.
    Str,
    /// `n` bytes.
    Fixed(usize),
    /// An unsigned 16-bit count, then that many of the fields given.
    Count16(&'static [Field]),
    /// A signed 32-bit length, then that many bytes (-1: none).
    Bytes32,
    /// Name and value strings, until an empty name.
    Pairs,
}

/// What follows a non-empty name in [`Field::Pairs`].
const PAIRS_AFTER_NAME: &[Field] = &[Field::Str, Field::Pairs];

/// The fields pgwire reads of a typed message, by its type byte, which must
/// fill its body exactly; `None` for messages read by their length (or
/// refused by pgwire itself).
fn structure(kind: u8) -> Option<&'static [Field]> {
    use Field::*;
    Some(match kind {
        // Query, CopyFail: a string.
        b'Q' | b'f' => &[Str],
        // Parse: statement name, query, parameter types.
        b'P' => &[Str, Str, Count16(&[Fixed(4)])],
        // Bind: portal, statement, parameter formats, parameter values,
        // result formats.
        b'B' => &[
            Str,
            Str,
            Count16(&[Fixed(2)]),
            Count16(&[Bytes32]),
            Count16(&[Fixed(2)]),
        ],
        // Execute: portal, row limit.
        b'E' => &[Str, Fixed(4)],
        // Close, Describe: what is closed or described, and its name.
        b'C' | b'D' => &[Fixed(1), Str],
        // Sync, Flush, Terminate, CopyDone: nothing.
        b'S' | b'H' | b'X' | b'c' => &[],
        // CopyData and the password family are read by their length.
        _ => return None,
    })
}

/// A field being read, across reads.
#[derive(Debug, Clone, Copy)]
enum Partial {
    /// Between fields.
    Idle,
    /// In a string, before its NUL.
    InStr,
    /// In the name of a [`Field::Pairs`], empty so far or not.
    InName { empty: bool },
    /// Skipping so many more bytes.
    Skip(usize),
    /// Reading a big-endian integer of `width` bytes, `have` so far.
    Int {
        value: i64,
        have: usize,
        width: usize,
        then: IntUse,
    },
}

#[derive(Debug, Clone, Copy)]
enum IntUse {
    Count(&'static [Field]),
    Length,
}

/// Where in a message's structure the scan is: a stack of (fields,
/// position, repetitions left after this one).
#[derive(Debug, Default)]
struct Scan {
    stack: Vec<(&'static [Field], usize, u32)>,
    partial: Option<Partial>,
    /// The fields must fill the body: no byte may follow them.
    exact: bool,
}

impl Scan {
    /// A scan of a body with these fields (`None`: any body).
    fn new(fields: Option<&'static [Field]>) -> Scan {
        let stack = match fields {
            Some(fields) if !fields.is_empty() => vec![(fields, 0, 0)],
            _ => Vec::new(),
        };
        Scan {
            stack,
            partial: None,
            exact: fields.is_some(),
        }
    }

    /// Whether every field has been read.
    fn done(&mut self) -> bool {
        if !matches!(self.partial, None | Some(Partial::Idle)) {
            return false;
        }
        loop {
            match self.stack.last_mut() {
                None => return true,
                Some((fields, position, repeats)) if *position >= fields.len() => {
                    if *repeats > 0 {
                        *repeats -= 1;
                        *position = 0;
                        return false;
                    }
                    self.stack.pop();
                }
                Some(_) => return false,
            }
        }
    }

    /// The next field to read, moving along the stack.
    fn next_field(&mut self) -> Option<Field> {
        loop {
            let (fields, position, repeats) = self.stack.last_mut()?;
            if *position < fields.len() {
                let field = fields[*position];
                *position += 1;
                return Some(field);
            }
            if *repeats > 0 {
                *repeats -= 1;
                *position = 0;
                continue;
            }
            self.stack.pop();
        }
    }

    /// Consumes bytes of the body; returns how many were used (all of
    /// them, unless the structure is complete first) or an error.
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, &'static str> {
        let mut used = 0;
        while used < bytes.len() {
            let partial = match self.partial.take() {
                Some(Partial::Idle) | None => match self.next_field() {
                    None => return Ok(used),
                    Some(Field::Str) => Partial::InStr,
                    Some(Field::Pairs) => Partial::InName { empty: true },
                    Some(Field::Fixed(n)) => Partial::Skip(n),
                    Some(Field::Count16(of)) => Partial::Int {
                        value: 0,
                        have: 0,
                        width: 2,
                        then: IntUse::Count(of),
                    },
                    Some(Field::Bytes32) => Partial::Int {
                        value: 0,
                        have: 0,
                        width: 4,
                        then: IntUse::Length,
                    },
                },
                Some(partial) => partial,
            };
            let rest = &bytes[used..];
            self.partial = Some(match partial {
                Partial::Idle => Partial::Idle,
                Partial::InStr => match rest.iter().position(|b| *b == 0) {
                    Some(nul) => {
                        used += nul + 1;
                        Partial::Idle
                    }
                    None => {
                        used = bytes.len();
                        Partial::InStr
                    }
                },
                Partial::InName { empty } => match rest.iter().position(|b| *b == 0) {
                    Some(nul) => {
                        used += nul + 1;
                        if empty && nul == 0 {
                            // The empty name that ends the pairs.
                        } else {
                            self.stack.push((PAIRS_AFTER_NAME, 0, 0));
                        }
                        Partial::Idle
                    }
                    None => {
                        used = bytes.len();
                        Partial::InName {
                            empty: empty && rest.is_empty(),
                        }
                    }
                },
                Partial::Skip(n) => {
                    let take = n.min(rest.len());
                    used += take;
                    if take == n {
                        Partial::Idle
                    } else {
                        Partial::Skip(n - take)
                    }
                }
                Partial::Int {
                    mut value,
                    mut have,
                    width,
                    then,
                } => {
                    while have < width && used < bytes.len() {
                        value = (value << 8) | i64::from(bytes[used]);
                        have += 1;
                        used += 1;
                    }
                    if have < width {
                        Partial::Int {
                            value,
                            have,
                            width,
                            then,
                        }
                    } else {
                        match then {
                            IntUse::Count(of) => {
                                if value > 0 && !of.is_empty() {
                                    self.stack.push((of, 0, (value - 1) as u32));
                                }
                                Partial::Idle
                            }
                            IntUse::Length => {
                                let length = value as u32 as i32;
                                match length {
                                    -1 => Partial::Idle,
                                    n if n < -1 => return Err("a negative value length"),
                                    n => Partial::Skip(n as usize),
                                }
                            }
                        }
                    }
                }
            });
        }
        Ok(used)
    }
}

/// Where the guard is in the client's byte stream.
#[derive(Debug)]
enum Position {
    /// Reading an untyped message's length and code (startup phase).
    UntypedHeader { header: [u8; 8], have: usize },
    /// Reading a typed message's type and length.
    TypedHeader { header: [u8; 5], have: usize },
    /// In a message's body.
    Body {
        left: usize,
        scan: Scan,
        /// The message is the startup message: typed messages follow.
        then_typed: bool,
    },
}

/// Follows the framing of a client's messages and checks their structure.
#[derive(Debug)]
pub(crate) struct Checker {
    position: Position,
}

impl Checker {
    /// At the start of a connection (after any TLS negotiation).
    pub(crate) fn new() -> Checker {
        Checker {
            position: Position::UntypedHeader {
                header: [0; 8],
                have: 0,
            },
        }
    }

    /// Checks the next bytes from the client.
    pub(crate) fn check(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            match &mut self.position {
                Position::UntypedHeader { header, have } => {
                    let take = (8 - *have).min(bytes.len());
                    header[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if *have == 8 {
                        let length =
                            i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                        let code = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                        self.position = untyped_body(length, code)?;
                    }
                }
                Position::TypedHeader { header, have } => {
                    let take = (5 - *have).min(bytes.len());
                    header[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if *have == 5 {
                        let kind = header[0];
                        let length =
                            i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                        if length < 4 {
                            return Err(format!(
                                "invalid message length {length} of a message of type '{}'",
                                kind.escape_ascii()
                            ));
                        }
                        self.position = Position::Body {
                            left: length as usize - 4,
                            scan: Scan::new(structure(kind)),
                            then_typed: true,
                        };
                        self.finish_body_if_empty()?;
                    }
                }
                Position::Body { left, scan, .. } => {
                    let take = (*left).min(bytes.len());
                    let (body, rest) = bytes.split_at(take);
                    let used = if scan.done() {
                        0
                    } else {
                        scan.feed(body)
                            .map_err(|e| format!("invalid message format: {e}"))?
                    };
                    if scan.exact && used < body.len() {
                        return Err(
                            "invalid message format: the message is longer than its contents"
                                .into(),
                        );
                    }
                    *left -= take;
                    bytes = rest;
                    self.finish_body_if_empty()?;
                }
            }
        }
        Ok(())
    }

    /// At the end of a body: its structure must be complete.
    fn finish_body_if_empty(&mut self) -> Result<(), String> {
        let Position::Body {
            left: 0,
            scan,
            then_typed,
        } = &mut self.position
        else {
            return Ok(());
        };
        if !scan.done() {
            return Err("invalid message format: the message is shorter than its contents".into());
        }
        self.position = if *then_typed {
            Position::TypedHeader {
                header: [0; 5],
                have: 0,
            }
        } else {
            Position::UntypedHeader {
                header: [0; 8],
                have: 0,
            }
        };
        Ok(())
    }
}

/// The body of an untyped message of `length` with `code`.
fn untyped_body(length: i32, code: i32) -> Result<Position, String> {
    if length < 8 || length as usize > MAX_STARTUP_LENGTH {
        return Err(format!("invalid length of startup packet: {length}"));
    }
    let left = length as usize - 8;
    let fits = match code {
        SSL_REQUEST | GSSENC_REQUEST => left == 0,
        CANCEL_REQUEST => left >= 8,
        _ => true,
    };
    if !fits {
        return Err(format!("invalid length of startup packet: {length}"));
    }
    // After the startup message proper, typed messages follow; after a
    // request (SSL, GSS), another untyped message.
    let then_typed = !matches!(code, SSL_REQUEST | GSSENC_REQUEST);
    // A startup message's parameters, which pgwire reads up to the empty
    // name that ends them, must end the message.
    let fields: Option<&'static [Field]> = match code {
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => None,
        _ => Some(&[Field::Pairs]),
    };
    let position = Position::Body {
        left,
        scan: Scan::new(fields),
        then_typed,
    };
    Ok(position)
}

/// The client's side of a connection, checked by a [`Checker`].
pub(crate) struct Guard<S> {
    inner: S,
    checker: Checker,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                match this.checker.check(new) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one connection: pgwire's `process_socket`, with the client's
/// bytes checked by a [`Guard`].
pub(crate) async fn serve<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: Arc<H>,
) -> io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let offers_tls = tls.is_some();
    let negotiated = tokio::select! {
        () = &mut startup_timeout => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    // A client that starts TLS directly when there is none: nothing to say.
    let Some(framed) = negotiated else {
        return Ok(());
    };
    let parts = framed.into_parts();
    // Bytes that came in plain text behind an SSLRequest that TLS then
    // answered could have been put there by anyone on the way: refused, as
    // Postgres does.
    let unencrypted_after_ssl = offers_tls
        && matches!(parts.io, pgwire::tokio::server::MaybeTls::Tls(_))
        && !parts.read_buf.is_empty();
    let mut checker = Checker::new();
    let already_read = checker.check(&parts.read_buf);
    let mut guarded = FramedParts::new(
        Guard {
            inner: parts.io,
            checker,
        },
        parts.codec,
    );
    guarded.read_buf = parts.read_buf;
    guarded.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(guarded);
    if unencrypted_after_ssl {
        return refuse(
            &mut socket,
            "received unencrypted data after SSL request".into(),
        )
        .await;
    }
    if let Err(e) = already_read {
        return refuse(&mut socket, e).await;
    }

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        use pgwire::api::ClientInfo;
        use pgwire::api::PgWireConnectionState as State;
        let in_startup = matches!(
            socket.state(),
            State::AwaitingStartup | State::AuthenticationInProgress
        );
        let message = if in_startup {
            tokio::select! {
                () = &mut startup_timeout => None,
                message = socket.next() => message,
            }
        } else {
            socket.next().await
        };
        let message = match message {
            None => break,
            Some(Ok(message)) => message,
            Some(Err(PgWireError::IoError(e))) if e.kind() == io::ErrorKind::InvalidData => {
                return refuse(&mut socket, e.to_string()).await;
            }
            // The connection broke.
            Some(Err(PgWireError::IoError(_))) => break,
            // pgwire refused the message itself (too large, unknown type).
            Some(Err(e)) => {
                return end_with(&mut socket, ErrorInfo::from(e)).await;
            }
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended_query = match socket.state() {
            State::CopyInProgress(is_extended_query) => is_extended_query,
            _ => message.is_extended_query(),
        };
        if let Err(mut e) = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            use pgwire::api::ErrorHandler;
            errors.on_error(&socket, &mut e);
            let info = ErrorInfo::from(e);
            if info.is_fatal() {
                // A wrong password, too many connections, an unknown
                // database: the connection ends here, the client's side
                // too (it does not keep its slot).
                return end_with(&mut socket, info).await;
            }
            process_error(
                &mut socket,
                PgWireError::UserError(Box::new(info)),
                is_extended_query,
            )
            .await?;
        }
    }
    Ok(())
}

/// Answers a malformed message with `FATAL 08P01` and ends the connection.
async fn refuse<S, ST>(
    socket: &mut Framed<S, pgwire::tokio::server::PgWireMessageServerCodec<ST>>,
    reason: String,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    end_with(
        socket,
        ErrorInfo::new("FATAL".into(), "08P01".into(), reason),
    )
    .await
}

/// Sends a fatal error and ends the connection (as Postgres does, with no
/// `ReadyForQuery` after it).
async fn end_with<S, ST>(
    socket: &mut Framed<S, pgwire::tokio::server::PgWireMessageServerCodec<ST>>,
    error: ErrorInfo,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    use futures::SinkExt;
    let _ = socket
        .send(pgwire::messages::PgWireBackendMessage::ErrorResponse(
            error.into(),
        ))
        .await;
    let _ = socket.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend(((body.len() + 4) as i32).to_be_bytes());
        out.extend(body);
        out
    }

    fn startup() -> Vec<u8> {
        let body = b"\0\x03\0\0user\0weir\0\0";
        let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    /// Feeds the bytes one at a time and all at once: the same verdict.
    fn verdict(bytes: &[u8]) -> Result<(), String> {
        let mut whole = Checker::new();
        let at_once = whole.check(bytes);
        let mut single = Checker::new();
        let one_by_one = bytes
            .iter()
            .try_for_each(|b| single.check(std::slice::from_ref(b)));
        assert_eq!(at_once.is_ok(), one_by_one.is_ok(), "{bytes:?}");
        at_once
    }

    #[test]
    fn well_formed_messages_pass() {
        let mut bytes = startup();
        bytes.extend(typed(b'Q', b"SELECT 1\0"));
        bytes.extend(typed(b'P', b"s\0SELECT $1\0\0\x01\0\0\0\x17"));
        let mut bind = b"\0s\0\0\x01\0\x01\0\x02".to_vec();
        bind.extend(4i32.to_be_bytes());
        bind.extend(b"\0\0\0\x07");
        bind.extend((-1i32).to_be_bytes());
        bind.extend(b"\0\0");
        bytes.extend(typed(b'B', &bind));
        bytes.extend(typed(b'E', b"\0\0\0\0\0"));
        bytes.extend(typed(b'D', b"Ss\0"));
        bytes.extend(typed(b'S', b""));
        assert_eq!(verdict(&bytes), Ok(()));
    }

    #[test]
    fn messages_shorter_than_their_contents_are_refused() {
        for (kind, body) in [
            (b'P', &b"s\0SELECT 1\0\0\x02\0\0\0\x17"[..]),
            (b'P', &b"s\0SELECT 1"[..]),
            (b'B', &b"\0s\0\0\x01"[..]),
            (b'B', &b"\0s\0\0\0\0\x01\0\0\0\x10abc"[..]),
            (b'B', &b"\0s\0\0\0\0\x01\xff\xff\xff\xfe"[..]),
            (b'E', &b"\0\0\0"[..]),
            (b'C', &b""[..]),
            (b'D', &b"S"[..]),
            // Longer than its fields: the rest would be read as messages.
            (b'Q', &b"SELECT 1\0P\0\0\0\x04"[..]),
            (b'E', &b"\0\0\0\0\0\0"[..]),
            (b'S', &b"\0"[..]),
        ] {
            let mut bytes = startup();
            bytes.extend(typed(kind, body));
            assert!(verdict(&bytes).is_err(), "{} {body:?}", kind as char);
        }
        let mut short = startup();
        short.extend([b'd', 0, 0, 0, 2]);
        assert!(verdict(&short).is_err(), "a length under 4");
        assert!(
            verdict(&[0, 0, 0, 4, 0, 3, 0, 0]).is_err(),
            "a startup length under 8"
        );
        assert!(
            verdict(&[0, 0, 0x7f, 0xff, 0, 3, 0, 0]).is_err(),
            "a startup too long"
        );
        let untyped = |body: &[u8]| {
            let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
            out.extend(body);
            out
        };
        assert!(
            verdict(&untyped(b"\0\x03\0\0user\0weir\0x")).is_err(),
            "parameters not ended"
        );
        assert!(
            verdict(&untyped(b"\0\x03\0\0user\0\0\0x\0")).is_err(),
            "bytes after the parameters"
        );
        assert_eq!(verdict(&untyped(b"\0\x03\0\0user\0\0\0")), Ok(()));
    }

    #[test]
    fn requests_before_the_startup_stay_untyped() {
        let mut bytes = 8i32.to_be_bytes().to_vec();
        bytes.extend(SSL_REQUEST.to_be_bytes());
        bytes.extend(startup());
        bytes.extend(typed(b'Q', b"SELECT 1\0"));
        assert_eq!(verdict(&bytes), Ok(()));
    }
}
