//! The Prometheus endpoint over real TCP: `GET /metrics` on an in-process
//! server shows a view's operators' rows (as `weir_catalog.operators` has
//! them), checkpoints, connections, sessions, watermark lags and late rows;
//! other paths and methods, garbage and oversized requests get HTTP errors,
//! and the endpoint keeps answering.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;
use weir_engine::{Engine, EngineConfig};
use weir_server::Server;
use weir_server::metrics::serve_metrics;

/// The families every scrape declares.
const FAMILIES: [&str; 18] = [
    "weir_connections",
    "weir_max_connections",
    "weir_sessions",
    "weir_job_info",
    "weir_job_state_bytes",
    "weir_operator_rows_in_total",
    "weir_operator_rows_out_total",
    "weir_operator_state_bytes",
    "weir_operator_watermark_lag_seconds",
    "weir_source_watermark_lag_seconds",
    "weir_source_late_rows_total",
    "weir_source_rejected_records_total",
    "weir_sink_rows_written_total",
    "weir_checkpoints_total",
    "weir_checkpoint_duration_seconds",
    "weir_checkpoint_last_duration_seconds",
    "weir_checkpoint_last_bytes_written",
    "weir_checkpoint_state_bytes",
];

/// A server with its metrics endpoint, both on loopback ports.
struct Running {
    pg: SocketAddr,
    metrics: SocketAddr,
    _data_dir: tempfile::TempDir,
}

async fn start() -> Running {
    let data_dir = tempfile::tempdir().expect("data directory");
    let engine = Engine::open(EngineConfig::new(data_dir.path()))
        .await
        .expect("open the engine");
    let server = Server::bind(engine.clone(), "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind the Postgres port");
    let pg = server.local_addr().expect("address");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the metrics port");
    let metrics = listener.local_addr().expect("address");
    tokio::spawn(serve_metrics(listener, engine, server.gate()));
    tokio::spawn(server.run());
    Running {
        pg,
        metrics,
        _data_dir: data_dir,
    }
}

async fn connect(addr: SocketAddr) -> tokio_postgres::Client {
    let conn = format!(
        "host={} port={} user=weir dbname=weir",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn, NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Sends `request` as is and reads the response until the server closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr)
        .await
        .expect("connect to the metrics port");
    socket.write_all(request).await.expect("send the request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut response))
        .await
        .expect("an answer within 10 s")
        .expect("read the answer");
    String::from_utf8(response).expect("an answer in UTF-8")
}

/// An HTTP response: status code, headers (names in lower case), body.
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

fn parse_reply(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("a header");
            (name.to_ascii_lowercase(), value.to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// One sample of a scrape.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed.
struct Scrape(Vec<Sample>);

impl Scrape {
    /// The samples of `name` that have all of `labels`.
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample of `name` with `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.matching(name, labels);
        assert_eq!(found.len(), 1, "one sample {name} {labels:?}: {found:?}");
        found[0].value
    }
}

/// Reads the text format, checking that every family is declared once,
/// before its samples.
fn parse_metrics(text: &str) -> Scrape {
    let mut declared: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a name and a type");
            let new = declared.insert(name.to_string(), kind.to_string());
            assert!(new.is_none(), "{name} declared twice");
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("a name");
            assert!(helped.insert(name.to_string()), "{name} has two HELP lines");
        } else if !line.is_empty() {
            let sample = parse_sample(line);
            let family = ["_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let base = sample.name.strip_suffix(suffix)?;
                    (declared.get(base).map(String::as_str) == Some("summary")).then_some(base)
                })
                .unwrap_or(&sample.name);
            assert!(declared.contains_key(family), "{line}: no TYPE before");
            samples.push(sample);
        }
    }
    let undocumented: Vec<_> = declared.keys().filter(|n| !helped.contains(*n)).collect();
    assert!(undocumented.is_empty(), "no HELP: {undocumented:?}");
    Scrape(samples)
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("a series and a value");
    let value: f64 = value
        .parse()
        .unwrap_or_else(|e| panic!("{line}: value: {e}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let inside = rest.strip_suffix('}').expect("a closing brace");
            (name, parse_labels(inside))
        }
        None => (series, BTreeMap::new()),
    };
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// `a="x",b="y \"quoted\""`, with the format's escapes.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "{text}");
        let mut value = String::new();
        loop {
            match chars.next().expect("a closing quote") {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("a lone backslash in {text}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        match chars.next() {
            Some(',') | None => {}
            Some(c) => panic!("{c:?} after a label value in {text}"),
        }
    }
}

/// `GET /metrics`, parsed.
async fn scrape(addr: SocketAddr) -> Scrape {
    parse_metrics(&scrape_text(addr).await)
}

/// The body of `GET /metrics`, checked for its status and headers.
async fn scrape_text(addr: SocketAddr) -> String {
    let reply = parse_reply(&exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        reply.headers.get("content-length"),
        Some(&reply.body.len().to_string())
    );
    assert_eq!(
        reply.headers.get("connection").map(String::as_str),
        Some("close")
    );
    reply.body
}

/// Seconds from 2024-01-01 00:01:20 UTC to now.
fn seconds_since_watermark() -> f64 {
    let watermark = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:01:20Z")
        .expect("a timestamp")
        .timestamp();
    (chrono::Utc::now().timestamp() - watermark) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_operators_checkpoints_connections_and_late_rows() {
    let server = start().await;
    let client = connect(server.pg).await;
    for sql in [
        "SET streaming_parallelism = 1",
        "CREATE TABLE t (k int, v int)",
        "CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n, sum(v) AS total FROM t GROUP BY k",
        "INSERT INTO t VALUES (1, 10), (2, 20), (1, 30), (3, 40), (2, 50)",
        "CREATE STREAM readings (sensor text, ts timestamp, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)",
        "CREATE MATERIALIZED VIEW per_minute AS SELECT sensor, window_start, count(*) AS n \
         FROM tumble(readings, ts, INTERVAL '1' MINUTE) GROUP BY sensor, window_start",
        // The watermark goes to 00:01:20: the next row is late.
        "INSERT INTO readings VALUES ('a', '2024-01-01 00:00:30'), ('a', '2024-01-01 00:01:30')",
        "INSERT INTO readings VALUES ('a', '2024-01-01 00:00:50')",
        "FLUSH",
        "CHECKPOINT",
    ] {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let text = scrape_text(server.metrics).await;
    for family in FAMILIES {
        assert!(
            text.contains(&format!("\n# TYPE {family} ")),
            "{family} is declared"
        );
    }
    let m = parse_metrics(&text);

    // Each operator of the view, as weir_catalog.operators has it; the
    // first one read the 5 rows inserted.
    let weir = ("database", "weir");
    let operators = client
        .query(
            "SELECT id, operator, rows_in, rows_out FROM weir_catalog.operators WHERE job = 'per_k' ORDER BY id",
            &[],
        )
        .await
        .expect("operators");
    assert!(!operators.is_empty());
    for row in &operators {
        let id = row.get::<_, i64>(0).to_string();
        let operator: String = row.get(1);
        let labels = [weir, ("job", "per_k"), ("id", id.as_str())];
        let rows_in = m.value("weir_operator_rows_in_total", &labels);
        let rows_out = m.value("weir_operator_rows_out_total", &labels);
        assert_eq!(rows_in, row.get::<_, i64>(2) as f64, "{operator} rows in");
        assert_eq!(rows_out, row.get::<_, i64>(3) as f64, "{operator} rows out");
        let named = [
            weir,
            ("job", "per_k"),
            ("id", id.as_str()),
            ("operator", operator.as_str()),
        ];
        assert_eq!(m.matching("weir_operator_state_bytes", &named).len(), 1);
    }
    assert_eq!(
        m.matching("weir_operator_rows_in_total", &[weir, ("job", "per_k")])
            .len(),
        operators.len()
    );
    assert_eq!(
        m.value(
            "weir_operator_rows_in_total",
            &[weir, ("job", "per_k"), ("id", "0")]
        ),
        5.0
    );
    let rows_in: f64 = m
        .matching("weir_operator_rows_in_total", &[weir, ("job", "per_k")])
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(rows_in >= 5.0, "{rows_in}");

    // The jobs.
    let view = [weir, ("job", "per_k"), ("kind", "materialized view")];
    let running = [weir, ("job", "per_k"), ("status", "running")];
    assert_eq!(m.value("weir_job_info", &running), 1.0);
    let state: i64 = client
        .query_one(
            "SELECT state_bytes FROM weir_catalog.jobs WHERE name = 'per_k'",
            &[],
        )
        .await
        .expect("job state")
        .get(0);
    assert!(state > 0, "a grouping keeps state");
    assert_eq!(m.value("weir_job_state_bytes", &view), state as f64);
    assert_eq!(m.matching("weir_job_info", &[weir]).len(), 2);

    // The checkpoint taken, as weir_catalog.checkpoints has it.
    let checkpoint = client
        .query_one(
            "SELECT bytes_written, state_bytes FROM weir_catalog.checkpoints WHERE status = 'committed'",
            &[],
        )
        .await
        .expect("the checkpoint");
    let (written, kept): (i64, i64) = (checkpoint.get(0), checkpoint.get(1));
    assert!(kept > 0);
    assert_eq!(
        m.value("weir_checkpoints_total", &[("status", "committed")]),
        1.0
    );
    assert_eq!(
        m.value("weir_checkpoints_total", &[("status", "failed")]),
        0.0
    );
    assert_eq!(m.value("weir_checkpoint_duration_seconds_count", &[]), 1.0);
    let took = m.value("weir_checkpoint_duration_seconds_sum", &[]);
    assert!(took > 0.0 && took < 60.0, "{took}");
    assert_eq!(m.value("weir_checkpoint_last_duration_seconds", &[]), took);
    assert_eq!(
        m.value("weir_checkpoint_last_bytes_written", &[]),
        written as f64
    );
    assert_eq!(m.value("weir_checkpoint_state_bytes", &[]), kept as f64);

    // The late row, and how far the watermark (00:01:20) is behind now.
    let readings = [weir, ("relation", "readings"), ("kind", "stream")];
    assert_eq!(m.value("weir_source_late_rows_total", &readings), 1.0);
    assert_eq!(
        m.value("weir_source_rejected_records_total", &readings),
        0.0
    );
    let lag = m.value("weir_source_watermark_lag_seconds", &readings);
    let expected = seconds_since_watermark();
    assert!(
        (lag - expected).abs() < 120.0,
        "lag {lag}, expected about {expected}"
    );
    let windows = [weir, ("job", "per_minute"), ("operator", "AssignWindows")];
    let operator_lag = m.value("weir_operator_watermark_lag_seconds", &windows);
    assert!(
        (operator_lag - expected).abs() < 120.0,
        "operator lag {operator_lag}, expected about {expected}"
    );
    // A table without event time has neither late rows nor a lag.
    let table = [weir, ("relation", "t")];
    assert!(m.matching("weir_source_late_rows_total", &table).is_empty());
    assert!(
        m.matching("weir_source_watermark_lag_seconds", &table)
            .is_empty()
    );
    assert!(
        m.matching("weir_operator_watermark_lag_seconds", &[("job", "per_k")])
            .is_empty()
    );

    // Connections and sessions: one client, then two, then one again.
    assert_eq!(m.value("weir_connections", &[]), 1.0);
    assert_eq!(m.value("weir_max_connections", &[]), 100.0);
    assert_eq!(m.value("weir_sessions", &[weir]), 1.0);
    let second = connect(server.pg).await;
    let m = scrape(server.metrics).await;
    assert_eq!(m.value("weir_connections", &[]), 2.0);
    assert_eq!(m.value("weir_sessions", &[weir]), 2.0);
    drop(second);
    let mut open = (0.0, 0.0);
    for _ in 0..100 {
        let m = scrape(server.metrics).await;
        open = (
            m.value("weir_connections", &[]),
            m.value("weir_sessions", &[weir]),
        );
        if open == (1.0, 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        open,
        (1.0, 1.0),
        "the second client's connection and session end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_get_http_errors_and_the_endpoint_keeps_answering() {
    let server = start().await;
    let addr = server.metrics;
    let status = |text: &str| parse_reply(text).status;

    assert_eq!(
        status(&exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await),
        404
    );
    assert_eq!(
        status(&exchange(addr, b"GET /metricsx HTTP/1.1\r\n\r\n").await),
        404
    );
    let post =
        parse_reply(&exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await);
    assert_eq!(post.status, 405);
    assert_eq!(
        post.headers.get("allow").map(String::as_str),
        Some("GET, HEAD")
    );
    // HEAD: the headers of GET, without the body.
    let head = parse_reply(&exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let length: usize = head.headers["content-length"].parse().expect("a length");
    assert!(length > 100, "{length}");
    // A query string is not part of the path.
    assert_eq!(
        status(&exchange(addr, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n").await),
        200
    );

    // Garbage, another protocol, a head too large: errors, no crash.
    assert_eq!(
        status(&exchange(addr, b"\x00\x01\xffgarbage\r\n\r\n").await),
        400
    );
    assert_eq!(
        status(&exchange(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await),
        400
    );
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.resize(16 * 1024, b'a');
    assert_eq!(status(&exchange(addr, &huge).await), 431);

    // A client that sends half a head and leaves, and one that sends
    // nothing and stays: others are answered meanwhile.
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /met").await.expect("send");
    drop(half);
    let silent = TcpStream::connect(addr).await.expect("connect");
    let m = scrape(addr).await;
    assert_eq!(m.value("weir_connections", &[]), 0.0);
    assert_eq!(
        m.value("weir_checkpoints_total", &[("status", "committed")]),
        0.0
    );
    drop(silent);
    let client = connect(server.pg).await;
    client.batch_execute("SELECT 1").await.expect("query");
    assert_eq!(scrape(addr).await.value("weir_connections", &[]), 1.0);
}
