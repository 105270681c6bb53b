//! The load test: many sessions at once against one server, mixing writes
//! to a table and a stream, batch queries, `FLUSH`, and continuous queries
//! over the stream, for a fixed time.
//!
//! Every statement must succeed; at the end the server's content must add
//! up (the table holds every row acknowledged, the materialized view over
//! the stream counts every event acknowledged). It reports statements per
//! second and latency percentiles per kind of statement. `weir-bench load`
//! runs it against a `weir` server it starts (and measures that server's
//! peak memory); a short run is part of the test suite
//! (`crates/weir/tests/load.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// What the sessions work on (a fresh server is expected).
pub const SETUP: &str = "
    CREATE TABLE load_kv (k bigint PRIMARY KEY, v bigint, at timestamp);
    CREATE STREAM load_events (k bigint, v bigint, ts timestamp,
        WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE);
    CREATE MATERIALIZED VIEW load_totals AS
        SELECT k % 10 AS g, count(*) AS n, sum(v) AS s FROM load_events GROUP BY k % 10;
";

/// The kinds of statement a session runs, by the session's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `INSERT` of 10 rows into the table, then 10 into the stream.
    Insert,
    /// Batch `SELECT`s: a lookup by key, an aggregate over the table, the
    /// materialized view.
    Select,
    /// `FLUSH`: waits until the view has applied every earlier write.
    Flush,
    /// A continuous `SELECT ... LIMIT 10` over the stream.
    Continuous,
}

impl Kind {
    fn of_session(i: usize) -> Kind {
        match i % 10 {
            0..=3 => Kind::Insert,
            4..=6 => Kind::Select,
            7 => Kind::Flush,
            _ => Kind::Continuous,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Insert => "insert (table + stream)",
            Kind::Select => "batch select",
            Kind::Flush => "flush",
            Kind::Continuous => "continuous select, limit 10",
        }
    }
}

/// Latencies of one kind of statement.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The latency below which `p` percent of the statements ran.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len());
        sorted[index - 1]
    }
}

/// What a load run saw.
#[derive(Debug)]
pub struct Report {
    pub sessions: usize,
    pub elapsed: Duration,
    pub latencies: BTreeMap<Kind, Latencies>,
    /// Errors, with the statement that got them.
    pub errors: Vec<String>,
    /// Rows acknowledged into the table and into the stream.
    pub rows_acknowledged: u64,
    /// Whether the server's content added up at the end (and if not, why).
    pub consistent: Result<(), String>,
}

impl Report {
    pub fn statements(&self) -> usize {
        self.latencies.values().map(Latencies::count).sum()
    }

    pub fn statements_per_second(&self) -> f64 {
        self.statements() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency percentile over every statement.
    pub fn overall(&self, p: f64) -> Duration {
        let all = Latencies(self.latencies.values().flat_map(|l| l.0.clone()).collect());
        all.percentile(p)
    }
}

async fn connect(addr: SocketAddr) -> Result<Client, String> {
    let conn = format!(
        "host={} port={} user=weir dbname=weir",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn, NoTls)
        .await
        .map_err(|e| describe("connect", &e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn describe(sql: &str, e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{sql}: {} {}", db.code().code(), db.message()),
        None => format!("{sql}: {e}"),
    }
}

/// Keys handed to inserting sessions, unique across the run.
struct Keys(AtomicU64);

impl Keys {
    fn next_ten(&self) -> u64 {
        self.0.fetch_add(10, Ordering::Relaxed)
    }
}

/// One session's loop until `deadline`.
async fn session(
    addr: SocketAddr,
    number: usize,
    deadline: Instant,
    keys: Arc<Keys>,
) -> (Kind, Latencies, Vec<String>, u64) {
    let kind = Kind::of_session(number);
    let mut latencies = Latencies::default();
    let mut errors = Vec::new();
    let mut acknowledged = 0u64;
    let client = match connect(addr).await {
        Ok(client) => client,
        Err(e) => return (kind, latencies, vec![e], 0),
    };
    let lookup = match client.prepare("SELECT v FROM load_kv WHERE k = $1").await {
        Ok(statement) => statement,
        Err(e) => return (kind, latencies, vec![describe("PREPARE", &e)], 0),
    };
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let started = Instant::now();
        let result: Result<(), String> = match kind {
            Kind::Insert => {
                let first = keys.next_ten();
                let values: Vec<String> = (first..first + 10)
                    .map(|k| format!("({k}, {}, now()::timestamp)", k % 97))
                    .collect();
                let values = values.join(", ");
                let sql = format!(
                    "INSERT INTO load_kv VALUES {values}; INSERT INTO load_events VALUES {values};"
                );
                match client.batch_execute(&sql).await {
                    Ok(()) => {
                        acknowledged += 10;
                        Ok(())
                    }
                    Err(e) => Err(describe("INSERT", &e)),
                }
            }
            Kind::Select => {
                let sql = match round % 3 {
                    0 => "SELECT count(*), sum(v) FROM load_kv",
                    1 => "SELECT g, n, s FROM load_totals ORDER BY g",
                    _ => "",
                };
                if sql.is_empty() {
                    let key = (round * 7919) as i64 % 1000;
                    client
                        .query(&lookup, &[&key])
                        .await
                        .map(|_| ())
                        .map_err(|e| describe("lookup", &e))
                } else {
                    client
                        .simple_query(sql)
                        .await
                        .map(|_| ())
                        .map_err(|e| describe(sql, &e))
                }
            }
            Kind::Flush => client
                .batch_execute("FLUSH")
                .await
                .map_err(|e| describe("FLUSH", &e)),
            Kind::Continuous => {
                let sql = "SELECT k, v FROM load_events WHERE v % 2 = 0 LIMIT 10";
                // Rows come as writers write; past the deadline nobody
                // writes, so give up then (not an error of the server).
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left + Duration::from_secs(5), client.simple_query(sql))
                    .await
                {
                    Ok(Ok(messages)) => {
                        let rows = messages
                            .iter()
                            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                            .count();
                        if rows == 10 {
                            Ok(())
                        } else {
                            Err(format!("{sql}: {rows} rows, not 10"))
                        }
                    }
                    Ok(Err(e)) => Err(describe(sql, &e)),
                    Err(_) if Instant::now() >= deadline => break,
                    Err(_) => Err(format!("{sql}: no 10 rows within the run")),
                }
            }
        };
        match result {
            Ok(()) => latencies.0.push(started.elapsed()),
            Err(e) => {
                errors.push(e);
                // A session whose statements fail would only repeat it.
                if errors.len() >= 3 {
                    break;
                }
            }
        }
    }
    (kind, latencies, errors, acknowledged)
}

/// Runs `sessions` sessions against the server at `addr` for `duration`.
pub async fn run(addr: SocketAddr, sessions: usize, duration: Duration) -> Report {
    let mut report = Report {
        sessions,
        elapsed: Duration::ZERO,
        latencies: BTreeMap::new(),
        errors: Vec::new(),
        rows_acknowledged: 0,
        consistent: Err("not checked".into()),
    };
    let admin = match connect(addr).await {
        Ok(client) => client,
        Err(e) => {
            report.errors.push(e);
            report.consistent = Err("no connection".into());
            return report;
        }
    };
    if let Err(e) = admin.batch_execute(SETUP).await {
        report.errors.push(describe("setup", &e));
        report.consistent = Err("no setup".into());
        return report;
    }
    let keys = Arc::new(Keys(AtomicU64::new(1_000_000)));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..sessions)
        .map(|i| tokio::spawn(session(addr, i, deadline, keys.clone())))
        .collect();
    for task in tasks {
        match task.await {
            Ok((kind, latencies, errors, acknowledged)) => {
                report
                    .latencies
                    .entry(kind)
                    .or_default()
                    .0
                    .extend(latencies.0);
                report.errors.extend(errors);
                report.rows_acknowledged += acknowledged;
            }
            Err(e) => report.errors.push(format!("a session task failed: {e}")),
        }
    }
    report.elapsed = started.elapsed();
    report.consistent = check(&admin, report.rows_acknowledged).await;
    report
}

/// The table holds every acknowledged row, and the view counts every
/// acknowledged event, once every write has been applied.
async fn check(admin: &Client, acknowledged: u64) -> Result<(), String> {
    let number = |messages: Vec<SimpleQueryMessage>| -> Option<u64> {
        messages.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
    };
    admin
        .batch_execute("FLUSH")
        .await
        .map_err(|e| describe("FLUSH", &e))?;
    let in_table = admin
        .simple_query("SELECT count(*) FROM load_kv")
        .await
        .map_err(|e| describe("count", &e))
        .map(number)?;
    let in_view = admin
        .simple_query("SELECT sum(n) FROM load_totals")
        .await
        .map_err(|e| describe("sum", &e))
        .map(number)?;
    if in_table != Some(acknowledged) {
        return Err(format!(
            "the table holds {in_table:?} load rows, {acknowledged} were acknowledged"
        ));
    }
    if in_view != Some(acknowledged) {
        return Err(format!(
            "the view counts {in_view:?} events, {acknowledged} were acknowledged"
        ));
    }
    Ok(())
}
