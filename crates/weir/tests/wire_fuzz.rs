//! A fuzzer over the Postgres wire, run as a test with a bounded budget:
//! connections that send random bytes, malformed, truncated and oversized
//! startup and query messages, random message types and lengths after a
//! good startup. The server must not panic, must answer each bad
//! connection with an error or close it, and must keep serving a session
//! opened before (a bystander) and new ones, unchanged.
//!
//! `WEIR_WIRE_FUZZ_SEED` and `WEIR_WIRE_FUZZ_CONNECTIONS` replay or lengthen
//! a run.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{TestServer, sorted_rows};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// splitmix64: small, fast, and the same sequence for the same seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Up to `max - 1` random bytes.
    fn noise(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max);
        self.bytes(len)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const PROTOCOL_3: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// A length-prefixed message without a type byte (startup family).
fn untyped(code: i32, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as i32).to_be_bytes().to_vec();
    out.extend(code.to_be_bytes());
    out.extend(body);
    out
}

fn startup_body(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in pairs {
        body.extend(k.as_bytes());
        body.push(0);
        body.extend(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    body
}

fn good_startup() -> Vec<u8> {
    untyped(
        PROTOCOL_3,
        &startup_body(&[("user", "weir"), ("database", "weir")]),
    )
}

/// A typed message whose length field is `length` (the right one is
/// `body.len() + 4`).
fn typed(kind: u8, length: i64, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend((length as i32).to_be_bytes());
    out.extend(body);
    out
}

/// Bodies that look like what the message type carries, with random parts.
fn plausible_body(random: &mut Random, kind: u8) -> Vec<u8> {
    let text = |random: &mut Random| -> Vec<u8> {
        let words = [
            "SELECT 1",
            "SELECT $1::int",
            "BEGIN",
            "COMMIT",
            "SELECT * FROM t",
            "INSERT INTO t VALUES (1)",
            "SELECT repeat('x', 100000)",
            "",
            "SELEC",
            "\u{0}",
            "SELECT '\u{fffd}'",
        ];
        let mut t = random.pick(&words).as_bytes().to_vec();
        if random.chance(30) {
            t.extend(random.noise(20));
        }
        t
    };
    let mut body = Vec::new();
    match kind {
        b'Q' => {
            body.extend(text(random));
            if random.chance(80) {
                body.push(0);
            }
        }
        b'P' => {
            body.extend(random.noise(4));
            body.push(0);
            body.extend(text(random));
            body.push(0);
            let count = *random.pick(&[0u16, 1, 2, 0xffff, 0x7fff]);
            body.extend(count.to_be_bytes());
            for _ in 0..random.below(3) {
                body.extend((random.next() as u32).to_be_bytes());
            }
        }
        b'B' => {
            body.push(0); // portal
            body.push(0); // statement
            let formats = *random.pick(&[0u16, 1, 3, 0xffff]);
            body.extend(formats.to_be_bytes());
            for _ in 0..random.below(3) {
                body.extend((random.below(3) as u16).to_be_bytes());
            }
            let params = *random.pick(&[0u16, 1, 2, 0xffff]);
            body.extend(params.to_be_bytes());
            for _ in 0..random.below(3) {
                let len = *random.pick(&[-1i32, 0, 4, 1_000_000, i32::MAX, -7]);
                body.extend(len.to_be_bytes());
                body.extend(random.noise(8));
            }
            body.extend(random.noise(6));
        }
        b'D' | b'C' => {
            body.push(*random.pick(b"SPX"));
            body.extend(random.noise(4));
            if random.chance(70) {
                body.push(0);
            }
        }
        b'E' => {
            body.push(0);
            body.extend((random.next() as i32).to_be_bytes());
        }
        b'F' => {
            body.extend((random.next() as u32).to_be_bytes());
            body.extend(random.noise(16));
        }
        _ => body.extend(random.noise(64)),
    }
    body
}

/// What one fuzzing connection sends.
fn script(random: &mut Random) -> Vec<u8> {
    let mut out = Vec::new();
    match random.below(8) {
        // Noise from the first byte.
        0 => out.extend(random.noise(600)),
        // A startup with a wrong protocol, a wrong length, or broken pairs.
        1 => {
            let code = *random.pick(&[
                PROTOCOL_3,
                0x0002_0000,
                0x0003_0001,
                0x0003_0002,
                0x0004_0000,
                -1,
                0,
            ]);
            let mut body = if random.chance(50) {
                startup_body(&[("user", "weir")])
            } else {
                random.noise(100)
            };
            if random.chance(30) {
                body.pop(); // no final NUL
            }
            let mut message = untyped(code, &body);
            if random.chance(40) {
                let length = *random.pick(&[0i32, 3, 7, 8, 9, 10_001, i32::MAX, -5]);
                message[..4].copy_from_slice(&length.to_be_bytes());
            }
            out.extend(message);
        }
        // SSL / GSS / cancel requests, in any order, with garbage after.
        2 => {
            for _ in 0..=random.below(3) {
                match random.below(3) {
                    0 => out.extend(untyped(SSL_REQUEST, &[])),
                    1 => out.extend(untyped(GSSENC_REQUEST, &[])),
                    _ => out.extend(untyped(CANCEL_REQUEST, &random.bytes(8))),
                }
            }
            out.extend(random.noise(40));
        }
        // A startup message for a user or database that is not there, or
        // with parameters that are not valid settings.
        3 => {
            let choices: [&[(&str, &str)]; 6] = [
                &[("user", "weir"), ("database", "nope")],
                &[("database", "weir")],
                &[("user", ""), ("database", "")],
                &[("user", "weir"), ("DateStyle", "Martian")],
                &[("user", "weir"), ("options", "-c statement_timeout=-1")],
                &[("user", "weir"), ("replication", "true")],
            ];
            let pairs = *random.pick(&choices);
            out.extend(untyped(PROTOCOL_3, &startup_body(pairs)));
            out.extend(typed(b'Q', 13, b"SELECT 1\0"));
        }
        // After a good startup: random typed messages with right, wrong or
        // huge lengths, sometimes cut short.
        _ => {
            out.extend(good_startup());
            for _ in 0..=random.below(6) {
                let kind = if random.chance(80) {
                    *random.pick(b"QPBEDSHCXFdcfp")
                } else {
                    random.next() as u8
                };
                let body = plausible_body(random, kind);
                let right = body.len() as i64 + 4;
                let length = match random.below(10) {
                    0 => *random.pick(&[0i64, 1, 3, -1, i64::from(i32::MAX), 0x4000_0000]),
                    1 => right + 1 + random.below(100) as i64,
                    2 => (right - 1 - random.below(3) as i64).max(0),
                    _ => right,
                };
                out.extend(typed(kind, length, &body));
            }
            if random.chance(30) {
                let cut = random.below(out.len());
                out.truncate(cut.max(1));
            }
        }
    }
    out
}

/// How a fuzzing connection ended.
#[derive(Debug, Default, Clone, Copy)]
struct Ending {
    /// The server closed the connection.
    closed: bool,
    /// It said why first: an error about the message (08P01).
    protocol_error: bool,
}

/// Sends a script, reads what comes back until the server closes or goes
/// quiet.
async fn run_script(addr: std::net::SocketAddr, bytes: &[u8]) -> Ending {
    let Ok(mut socket) = TcpStream::connect(addr).await else {
        panic!("the server stopped accepting connections");
    };
    // The server may close before reading everything: not an error here.
    let _ = socket.write_all(bytes).await;
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_millis(250), socket.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            // Waiting for more of a message it was promised: fine, we leave.
            Err(_) => break false,
        }
    };
    Ending {
        closed,
        protocol_error: received.windows(6).any(|w| w == b"C08P01"),
    }
}

/// Connections run at once.
const AT_ONCE: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_malformed_protocol_messages_never_hurt_the_server() {
    // Any panic of the server fails the test (the connection's task would
    // end without a word to the client).
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    let first_panic: Arc<Mutex<Option<String>>> = Arc::default();
    {
        let first_panic = first_panic.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            let backtrace = std::backtrace::Backtrace::force_capture();
            let mut first = first_panic.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| format!("{info}\n{backtrace}"));
            drop(first);
            previous(info);
        }));
    }
    let seed: u64 = std::env::var("WEIR_WIRE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5745_4952);
    let connections: usize = std::env::var("WEIR_WIRE_FUZZ_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1600);
    eprintln!("wire fuzz: seed {seed}, {connections} connections");

    let server = TestServer::start().await;
    let bystander = server.connect("weir").await;
    bystander
        .batch_execute(
            "CREATE TABLE t (k int PRIMARY KEY, v text);
             INSERT INTO t VALUES (1, 'one'), (2, 'two');",
        )
        .await
        .expect("setup");

    let mut random = Random(seed);
    let (mut closed, mut protocol_errors) = (0, 0);
    for round in 0..connections.div_ceil(AT_ONCE) {
        // Several at a time, so that bad connections overlap.
        let scripts: Vec<Vec<u8>> = (0..AT_ONCE).map(|_| script(&mut random)).collect();
        let runs = scripts.iter().map(|bytes| run_script(server.addr(), bytes));
        for ending in futures::future::join_all(runs).await {
            closed += usize::from(ending.closed);
            protocol_errors += usize::from(ending.protocol_error);
        }
        if round % 10 == 9 {
            assert_eq!(
                sorted_rows(&bystander, "SELECT k, v FROM t").await,
                ["1 | one", "2 | two"],
                "the bystander session after {} connections",
                (round + 1) * AT_ONCE
            );
        }
        if PANICS.load(Ordering::SeqCst) > 0 {
            // Taken out of the lock first: the failing assertion panics too,
            // and the hook takes the lock.
            let message = first_panic.lock().unwrap_or_else(|p| p.into_inner()).take();
            let sent: Vec<String> = scripts.iter().map(|s| format!("{s:02x?}")).collect();
            panic!(
                "a panic in round {round}: {}\nthe round's connections sent:\n{}",
                message.unwrap_or_default(),
                sent.join("\n")
            );
        }
    }
    let total = connections.div_ceil(AT_ONCE) * AT_ONCE;
    eprintln!(
        "wire fuzz: {closed} of {total} connections closed by the server, \
         {protocol_errors} of them after an error naming the bad message (08P01)"
    );
    // Most bad connections are answered by a close (the rest waited for the
    // rest of a message they were promised, and were left by the client);
    // malformed messages get 08P01 first.
    assert!(closed > total / 2, "only {closed} closed by the server");
    assert!(
        protocol_errors > 0,
        "no connection was told its message was bad"
    );

    // Both the old session and a new one work, and see the same rows.
    let fresh = server.connect("weir").await;
    assert_eq!(
        sorted_rows(&fresh, "SELECT k, v FROM t").await,
        ["1 | one", "2 | two"]
    );
    bystander
        .batch_execute("INSERT INTO t VALUES (3, 'three')")
        .await
        .expect("the bystander writes");
    assert_eq!(sorted_rows(&fresh, "SELECT count(*) FROM t").await, ["3"]);
}
