//! `SUBSCRIBE` over real pgwire (tokio-postgres, simple and extended
//! protocol): the current rows first, then every change; the changes
//! replayed equal the batch query over the same rows at every step (the
//! oracle); `snapshot = false` sends changes only; a cursor over a
//! `SUBSCRIBE`; cancel stops it and the session goes on.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use support::{TestServer, sorted_rows};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The rows a changelog describes, after applying `changes` (`a | b | op`).
fn apply(live: &mut BTreeMap<String, i64>, change: &str) {
    let (row, op) = change.rsplit_once(" | ").expect("an op column");
    let count = live.entry(row.to_string()).or_default();
    match op {
        "insert" => *count += 1,
        "delete" => {
            assert!(*count > 0, "a delete of a row not there: {row}");
            *count -= 1;
        }
        other => panic!("op {other}"),
    }
    if *count == 0 {
        live.remove(row);
    }
}

fn rows_of(live: &BTreeMap<String, i64>) -> Vec<String> {
    live.iter()
        .flat_map(|(row, n)| std::iter::repeat_n(row.clone(), *n as usize))
        .collect()
}

/// Reads rows of a simple-protocol stream as `a | b | ...` until `done`
/// holds of what was read, or the deadline passes.
async fn read_until(
    stream: &mut (
             impl futures::Stream<Item = Result<SimpleQueryMessage, tokio_postgres::Error>> + Unpin
         ),
    live: &mut BTreeMap<String, i64>,
    done: impl Fn(&BTreeMap<String, i64>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(live) {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("rows did not come; have {live:?}"))
            .expect("the subscription goes on")
            .expect("a message");
        if let SimpleQueryMessage::Row(row) = message {
            let values: Vec<&str> = (0..row.len())
                .map(|i| row.get(i).unwrap_or("NULL"))
                .collect();
            apply(live, &values.join(" | "));
        }
    }
}

async fn oracle(client: &Client) -> Vec<String> {
    sorted_rows(
        client,
        "SELECT k % 3, count(*), sum(v) FROM t GROUP BY k % 3",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_sends_the_rows_then_every_change() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    writer
        .batch_execute(
            "CREATE TABLE t (k int PRIMARY KEY, v int);
             INSERT INTO t SELECT value, value * 10 FROM generate_series(1, 20);
             CREATE MATERIALIZED VIEW totals AS
                 SELECT k % 3 AS g, count(*) AS n, sum(v) AS s FROM t GROUP BY k % 3;
             FLUSH;",
        )
        .await
        .expect("setup");

    let reader = server.connect("weir").await;
    let cancel = reader.cancel_token();
    let mut subscription = Box::pin(
        reader
            .simple_query_raw("SUBSCRIBE TO totals")
            .await
            .expect("subscribe"),
    );
    // The snapshot: the view's rows, each an insert.
    let mut live = BTreeMap::new();
    let expected = oracle(&writer).await;
    read_until(&mut subscription, &mut live, |l| rows_of(l) == expected).await;

    // Then every change; after each round, the rows the changes describe
    // are the batch query's over the table.
    for round in 0..4 {
        writer
            .batch_execute(&format!(
                "INSERT INTO t VALUES ({}, {round}), ({}, 7);
                 UPDATE t SET v = v + 1 WHERE k % 4 = {round};
                 DELETE FROM t WHERE k = {};",
                100 + round,
                200 + round,
                round * 3 + 2
            ))
            .await
            .expect("write");
        let expected = oracle(&writer).await;
        read_until(&mut subscription, &mut live, |l| rows_of(l) == expected).await;
    }

    // A cursor over a SUBSCRIBE: FETCH gets the snapshot, then a change.
    writer
        .batch_execute("DECLARE c CURSOR FOR SUBSCRIBE totals WITH (snapshot = true)")
        .await
        .expect("declare");
    let fetched = sorted_rows(&writer, "FETCH 3 FROM c").await;
    let mut expected: Vec<String> = oracle(&writer)
        .await
        .into_iter()
        .map(|r| format!("{r} | insert"))
        .collect();
    expected.sort();
    assert_eq!(fetched, expected);
    assert!(
        sorted_rows(&writer, "FETCH 1 FROM c WITH (timeout = '300ms')")
            .await
            .is_empty(),
        "no change, no row"
    );
    writer
        .batch_execute("CLOSE c")
        .await
        .expect("close the cursor");

    // Cancel ends the subscription; the session goes on.
    cancel.cancel_query(NoTls).await.expect("cancel");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match subscription.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e.code().map(|c| c.code().to_string()),
                None => return None,
            }
        }
    })
    .await
    .expect("the subscription ends after the cancel");
    assert_eq!(end.as_deref(), Some("57014"));
    assert_eq!(
        sorted_rows(&reader, "SELECT count(*) FROM totals").await,
        ["3"]
    );
}

/// `snapshot = false`: no rows until something changes; over the extended
/// protocol with typed values; a query over a table; errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_without_snapshot_sends_changes_only() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    writer
        .batch_execute(
            "CREATE TABLE t (k int PRIMARY KEY, v int);
             INSERT INTO t VALUES (1, 10), (2, 20), (3, 30);",
        )
        .await
        .expect("setup");
    let reader = server.connect("weir").await;
    let rows = reader
        .query_raw(
            "SUBSCRIBE (SELECT (v % 20)::int AS r, count(*) AS n FROM t GROUP BY v % 20) \
             WITH (snapshot = false)",
            std::iter::empty::<i32>(),
        )
        .await
        .expect("subscribe");
    let mut rows = Box::pin(rows);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rows.next())
            .await
            .is_err(),
        "nothing comes before a change"
    );
    writer
        .batch_execute("INSERT INTO t VALUES (4, 40)")
        .await
        .expect("insert");
    // Group 0 (20 and 40) goes from 1 row to 2: the old row out, the new in.
    let mut changes = Vec::new();
    while changes.len() < 2 {
        let row = tokio::time::timeout(Duration::from_secs(10), rows.next())
            .await
            .expect("a change comes")
            .expect("a row")
            .expect("no error");
        let r: i32 = row.get("r");
        let n: i64 = row.get("n");
        let op: String = row.get("op");
        changes.push(format!("{r} | {n} | {op}"));
    }
    assert_eq!(changes, ["0 | 1 | delete", "0 | 2 | insert"]);

    let code = |sql: &'static str| async {
        writer
            .batch_execute(sql)
            .await
            .expect_err(sql)
            .code()
            .map(|c| c.code().to_string())
    };
    assert_eq!(code("SUBSCRIBE nope").await.as_deref(), Some("42P01"));
    assert_eq!(
        code("SUBSCRIBE t WITH (snapshot = maybe)").await.as_deref(),
        Some("42601")
    );
}

/// Running subscriptions and continuous queries are jobs in
/// `weir_catalog.jobs`; a client that vanishes (its connection dropped
/// without a word, as when its process is killed) is noticed while nothing
/// is sent to it, and its job is gone within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_clients_jobs_are_freed() {
    let server = TestServer::start().await;
    let admin = server.connect("weir").await;
    admin
        .batch_execute(
            "CREATE TABLE t (k int PRIMARY KEY, v int);
             INSERT INTO t VALUES (1, 1), (2, 2);
             CREATE MATERIALIZED VIEW totals AS SELECT k % 2 AS g, sum(v) AS s FROM t GROUP BY k % 2;
             CREATE STREAM s (k int);",
        )
        .await
        .expect("setup");
    let queries = "SELECT kind, status, user_name FROM weir_catalog.jobs \
                   WHERE kind IN ('subscribe', 'continuous query')";
    for (sql, kind) in [
        ("SUBSCRIBE totals", "subscribe"),
        ("SELECT k FROM s WHERE k > 0", "continuous query"),
    ] {
        let (client, connection) = tokio_postgres::connect(&server.conn_str("weir"), NoTls)
            .await
            .expect("connect");
        let connection = tokio::spawn(connection);
        let mut stream = Box::pin(client.simple_query_raw(sql).await.expect(sql));
        // The row description has come: the job runs.
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the query answers")
            .expect("a message")
            .expect("no error");
        assert!(matches!(first, SimpleQueryMessage::RowDescription(_)));
        assert_eq!(
            sorted_rows(&admin, queries).await,
            [format!("{kind} | running | weir")]
        );
        // The client vanishes: its socket closes, nothing more is said.
        connection.abort();
        drop(stream);
        drop(client);
        let started = std::time::Instant::now();
        while !sorted_rows(&admin, queries).await.is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{sql}: the job is still listed after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "{sql}: freed {:?} after the client vanished",
            started.elapsed()
        );
    }
    // The view and the stream go on.
    admin
        .batch_execute("INSERT INTO t VALUES (3, 3); FLUSH;")
        .await
        .expect("write");
    assert_eq!(
        sorted_rows(&admin, "SELECT g, s FROM totals").await,
        ["0 | 2", "1 | 4"]
    );
}

/// Error code of a failed statement.
fn code_of(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// A subscriber that reads nothing never stalls the view it reads: the
/// writes and the `FLUSH`es that wait for the view go on, and once the
/// subscriber is more than `max_client_lag_rows` behind, its subscription
/// is stopped with error 53400 and its job freed; its session goes on.
/// Both through a cursor never fetched and a plain `SUBSCRIBE` whose client
/// stops reading its socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_cut_off_and_never_stalls_the_view() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    writer
        .batch_execute(
            "CREATE TABLE t (k int PRIMARY KEY, pad text);
             CREATE MATERIALIZED VIEW rows_of_t AS SELECT k, pad FROM t WHERE k >= 0;",
        )
        .await
        .expect("setup");

    let by_cursor = server.connect("weir").await;
    by_cursor
        .batch_execute(
            "SET max_client_lag_rows = 1000;
             DECLARE c CURSOR FOR SUBSCRIBE rows_of_t WITH (snapshot = false)",
        )
        .await
        .expect("declare");
    let by_socket = server.connect("weir").await;
    by_socket
        .batch_execute("SET max_client_lag_rows = 1000")
        .await
        .expect("set");
    let mut unread = Box::pin(
        by_socket
            .simple_query_raw("SUBSCRIBE rows_of_t WITH (snapshot = false)")
            .await
            .expect("subscribe"),
    );
    let subscriptions = "SELECT count(*) FROM weir_catalog.jobs WHERE kind = 'subscribe'";
    let started = std::time::Instant::now();
    while sorted_rows(&writer, subscriptions).await != ["2"] {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the subscriptions did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 200 statements of 100 rows of 1 kB: far more than the channels
    // between the view and a job hold, and than the sockets buffer. Each
    // FLUSH waits for the view; a stalled view would hold it up.
    for round in 0..200 {
        let write = format!(
            "INSERT INTO t SELECT value, repeat('x', 1000) FROM generate_series({}, {});",
            round * 100,
            round * 100 + 99
        );
        writer.batch_execute(&write).await.expect("insert");
        tokio::time::timeout(Duration::from_secs(20), writer.batch_execute("FLUSH"))
            .await
            .unwrap_or_else(|_| panic!("FLUSH after round {round} waited 20 s: the view stalled"))
            .expect("flush");
    }
    assert_eq!(
        sorted_rows(&writer, "SELECT count(*) FROM rows_of_t").await,
        ["20000"]
    );

    // Both subscriptions were stopped: their jobs are gone.
    let started = std::time::Instant::now();
    while sorted_rows(&writer, subscriptions).await != ["0"] {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the slow subscribers' jobs are still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The cursor's next FETCH says why; the session goes on.
    let error = by_cursor
        .simple_query("FETCH 10 FROM c")
        .await
        .expect_err("the subscription was stopped");
    assert_eq!(code_of(&error).as_deref(), Some("53400"), "{error}");
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("more than 1000 rows behind")),
        "{message:?}"
    );
    assert_eq!(sorted_rows(&by_cursor, "SELECT 1").await, ["1"]);

    // The socket reader gets the rows sent before the cut, then the error.
    let mut rows = 0;
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match unread.next().await {
                Some(Ok(SimpleQueryMessage::Row(_))) => rows += 1,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return code_of(&e),
                None => return None,
            }
        }
    })
    .await
    .expect("the subscription ends");
    assert_eq!(end.as_deref(), Some("53400"));
    assert!(
        rows < 20000,
        "all {rows} rows came: the bound did not apply"
    );
    assert_eq!(sorted_rows(&by_socket, "SELECT 1").await, ["1"]);
}

/// Fifty clients run continuous queries over one stream at once, half over
/// the simple protocol, half over the extended one: every one of them gets
/// all its rows, equal to the batch query over the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_readers_all_make_progress() {
    const READERS: usize = 50;
    const ROWS: usize = 300;
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    writer
        .batch_execute("CREATE STREAM s (k int, v int); CREATE TABLE t (k int, v int);")
        .await
        .expect("setup");
    let mut readers = Vec::new();
    for i in 0..READERS {
        let client = server.connect("weir").await;
        let sql = format!(
            "SELECT k, v + {i} AS w FROM s WHERE k % 2 = {} LIMIT {}",
            i % 2,
            ROWS / 2
        );
        readers.push(tokio::spawn(async move {
            let mut rows: Vec<String> = if i % 2 == 0 {
                client
                    .simple_query(&sql)
                    .await
                    .expect("continuous query")
                    .into_iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(r) => Some(format!(
                            "{} | {}",
                            r.get(0).unwrap_or("NULL"),
                            r.get(1).unwrap_or("NULL")
                        )),
                        _ => None,
                    })
                    .collect()
            } else {
                client
                    .query(&sql, &[])
                    .await
                    .expect("continuous query")
                    .into_iter()
                    .map(|r| format!("{} | {}", r.get::<_, i32>(0), r.get::<_, i64>(1)))
                    .collect()
            };
            rows.sort();
            (i, sql, rows)
        }));
    }
    // Every query is running before the first row is written.
    let started = std::time::Instant::now();
    while sorted_rows(
        &writer,
        "SELECT count(*) FROM weir_catalog.jobs WHERE kind = 'continuous query'",
    )
    .await
        != [READERS.to_string()]
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the readers did not all start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for chunk in 0..(ROWS / 30) {
        let values: Vec<String> = (chunk * 30..chunk * 30 + 30)
            .map(|k| format!("({k}, {})", k * 7 % 101))
            .collect();
        let values = values.join(", ");
        writer
            .batch_execute(&format!(
                "INSERT INTO s VALUES {values}; INSERT INTO t VALUES {values};"
            ))
            .await
            .expect("insert");
    }
    for reader in readers {
        let (i, sql, rows) = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("every reader gets its rows within a minute")
            .expect("reader");
        let batch_sql = sql.replace("FROM s", "FROM t");
        assert_eq!(rows, sorted_rows(&writer, &batch_sql).await, "reader {i}");
        assert_eq!(rows.len(), ROWS / 2, "reader {i}");
    }
}
