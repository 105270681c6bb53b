//! The Prometheus endpoint: a minimal HTTP/1.1 server that answers
//! `GET /metrics` with the connection counts and the engine's metrics
//! (`weir_engine::metrics`) in the text exposition format. One request per
//! connection, then it closes. Another path gets 404, another method 405,
//! a request line that cannot be read 400; a request head larger than
//! 8 KiB gets 431, and one not complete within 5 seconds is cut off.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use weir_engine::Engine;
use weir_engine::metrics::{family, sample};

use crate::connection::Gate;

/// The time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The time a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request head read.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Requests answered at once; past it, new connections are closed.
const MAX_CONCURRENT: usize = 16;

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// What the metrics are read from.
struct Sources {
    engine: Arc<Engine>,
    gate: Arc<Gate>,
}

/// Answers scrapes on `listener` until the task is dropped: the engine's
/// metrics and the connections `gate` counts (see [`crate::Server::gate`]).
pub async fn serve_metrics(listener: TcpListener, engine: Arc<Engine>, gate: Arc<Gate>) {
    let sources = Arc::new(Sources { engine, gate });
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // too many at once: closed unanswered
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            answer(socket, &sources).await;
            drop(slot);
        });
    }
}

/// A request head read from a client.
enum Head {
    /// The bytes before the empty line that ends it.
    Complete(Vec<u8>),
    TooLarge,
    /// The client went away (or failed) before the end of the head.
    Closed,
}

/// Reads one request and answers it.
async fn answer(mut socket: TcpStream, sources: &Sources) {
    let response = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut socket)).await {
        Ok(Head::Complete(head)) => respond(&head, sources),
        Ok(Head::TooLarge) => Response::text("431 Request Header Fields Too Large"),
        Ok(Head::Closed) | Err(_) => return,
    };
    let bytes = response.into_bytes();
    if let Ok(Ok(())) = tokio::time::timeout(WRITE_TIMEOUT, send(&mut socket, &bytes)).await {
        // What the client sent beyond the head is read before closing: a
        // close with unread bytes would reset the connection, and the
        // client could lose the response.
        let _ = tokio::time::timeout(Duration::from_secs(1), drain(&mut socket)).await;
    }
}

async fn read_head(socket: &mut TcpStream) -> Head {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(n) => n,
        };
        head.extend_from_slice(&buf[..n]);
        match end_of_head(&head) {
            Some(end) if end <= MAX_HEAD_BYTES => {
                head.truncate(end);
                return Head::Complete(head);
            }
            Some(_) => return Head::TooLarge,
            None if head.len() >= MAX_HEAD_BYTES => return Head::TooLarge,
            None => {}
        }
    }
}

/// Where the empty line that ends a head starts (`\r\n\r\n`, or a bare
/// `\n\n`).
fn end_of_head(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn send(socket: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    socket.write_all(bytes).await?;
    socket.shutdown().await
}

/// Reads and drops what the client still sends (up to 64 KiB), until it
/// closes.
async fn drain(socket: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let mut left = 64 * 1024usize;
    while left > 0 {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The response to a request head.
fn respond(head: &[u8], sources: &Sources) -> Response {
    let head = String::from_utf8_lossy(head);
    let line = head.lines().find(|l| !l.is_empty()).unwrap_or("");
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text("400 Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text("400 Bad Request");
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Response {
            status: "200 OK",
            content_type: METRICS_TYPE,
            body: render(sources),
            head_only: method == "HEAD",
            allow: false,
        },
        (_, "/metrics") => Response {
            allow: true,
            ..Response::text("405 Method Not Allowed")
        },
        _ => Response::text("404 Not Found"),
    }
}

/// Every metric: the server's connections, then the engine's.
fn render(sources: &Sources) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let open = "weir_connections";
    family(
        &mut out,
        open,
        "gauge",
        "Client connections open (authenticated or authenticating).",
    );
    sample(&mut out, open, &[], sources.gate.open_connections());
    let max = "weir_max_connections";
    family(
        &mut out,
        max,
        "gauge",
        "Connections open at once past which new ones are refused.",
    );
    sample(&mut out, max, &[], sources.gate.max_connections());
    sources.engine.render_metrics(&mut out);
    out
}

/// An HTTP response; the connection closes after it.
struct Response {
    /// Code and reason, `200 OK`.
    status: &'static str,
    content_type: &'static str,
    body: String,
    /// A `HEAD` request: the headers only.
    head_only: bool,
    /// Whether to list the methods allowed (for 405).
    allow: bool,
}

impl Response {
    /// A response whose body is its status line.
    fn text(status: &'static str) -> Response {
        Response {
            status,
            content_type: TEXT_TYPE,
            body: format!("{status}\n"),
            head_only: false,
            allow: false,
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        if !self.head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_first_empty_line() {
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(20));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn a_response_says_its_length_and_closes() {
        let bytes = Response::text("404 Not Found").into_bytes();
        let text = String::from_utf8(bytes).expect("utf-8");
        assert_eq!(
            text,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 14\r\nConnection: close\r\n\r\n404 Not Found\n"
        );
    }
}
