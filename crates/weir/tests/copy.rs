//! `COPY ... TO STDOUT` over real pgwire: the bytes equal what PostgreSQL 15
//! sends for the same table and statement (text and CSV, options); over a
//! stream, rows reach a tokio-postgres client and psql on a terminal as they
//! come, each delivered once and equal to the batch query over the same
//! rows; cancel stops it and the session goes on.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use support::postgres::PostgresServer;
use support::{TestServer, require_program, sorted_rows};
use tokio_postgres::{Client, NoTls};

async fn copy_text(client: &Client, sql: &str) -> String {
    let stream = client
        .copy_out(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let bytes = stream
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .expect("copy data");
    String::from_utf8(bytes).expect("utf-8")
}

const SETUP: &str = "
    CREATE TABLE t (k int, v text, price numeric(10,2), at timestamp, ok boolean);
    INSERT INTO t VALUES
        (1, 'plain', 12.50, '2024-01-01 00:00:00', true),
        (2, NULL, NULL, NULL, NULL),
        (3, E'tab\\there, new\\nline \\\\ back', 0.10, '2024-01-02 03:04:05.25', false),
        (4, 'comma, \"quoted\"', -3, '1999-12-31 23:59:59', true),
        (5, '', 7, '2024-02-29 12:00:00', false);";

const STATEMENTS: &[&str] = &[
    "COPY (SELECT * FROM t ORDER BY k) TO STDOUT",
    "COPY (SELECT k, v FROM t ORDER BY k) TO STDOUT WITH (FORMAT csv, HEADER)",
    "COPY (SELECT * FROM t ORDER BY k) TO STDOUT WITH CSV HEADER",
    "COPY (SELECT k, v, at FROM t ORDER BY k) TO STDOUT (FORMAT text, DELIMITER '|', NULL 'nil')",
    "COPY (SELECT v, k FROM t ORDER BY k) TO STDOUT (FORMAT csv, QUOTE '''', ESCAPE '\\', NULL 'NULL')",
    "COPY (SELECT k, k * 2 AS doubled FROM t WHERE k > 2 ORDER BY k) TO STDOUT (HEADER true)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_sends_what_postgresql_sends() {
    let postgres = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("start PostgreSQL");
    let server = TestServer::start().await;
    let weir = server.connect("weir").await;
    let pg = postgres.connect("postgres").await;
    weir.batch_execute(SETUP).await.expect("setup in Weir");
    pg.batch_execute(SETUP).await.expect("setup in PostgreSQL");
    for sql in STATEMENTS {
        let expected = copy_text(&pg, sql).await;
        assert!(!expected.is_empty(), "{sql}");
        assert_eq!(copy_text(&weir, sql).await, expected, "{sql}");
    }
    // COPY of a whole table (rows in no set order: compared sorted).
    let lines = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let sql = "COPY t (k, v) TO STDOUT";
    assert_eq!(
        lines(copy_text(&weir, sql).await),
        lines(copy_text(&pg, sql).await)
    );

    // Errors: the codes Postgres uses.
    for (sql, code) in [
        ("COPY t FROM STDIN", "0A000"),
        ("COPY t TO '/tmp/weir-copy-out'", "0A000"),
        ("COPY t TO STDOUT (FORMAT xml)", "22023"),
        ("COPY t TO STDOUT (FORMAT binary)", "0A000"),
        ("COPY t TO STDOUT (FORMAT csv, FORMAT text)", "42601"),
        ("COPY nope TO STDOUT", "42P01"),
    ] {
        let error = weir
            .copy_out(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} succeeded"));
        let code_of = error.code().map(|c| c.code().to_string());
        assert_eq!(code_of.as_deref(), Some(code), "{sql}: {error}");
    }
    // The session is still usable.
    assert_eq!(sorted_rows(&weir, "SELECT count(*) FROM t").await, ["5"]);
}

/// Over a stream, COPY is continuous: rows arrive as they are inserted,
/// before any end; they equal the batch query over the same rows; cancel
/// stops it within a second and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_copy_streams_rows_and_stops_on_cancel() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    writer
        .batch_execute(
            "CREATE STREAM s (k int, v text);
             CREATE TABLE s_log (k int, v text);",
        )
        .await
        .expect("setup");
    let reader = server.connect("weir").await;
    let cancel = reader.cancel_token();
    let stream = reader
        .copy_out("COPY (SELECT k, v FROM s WHERE k % 2 = 0) TO STDOUT (FORMAT csv)")
        .await
        .expect("copy out");
    let mut stream = Box::pin(stream);
    let mut received = String::new();
    let mut k = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received.lines().count() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows came: {received}"
        );
        let values = format!("({k}, 'v{k}'), ({}, 'v{}')", k + 1, k + 1);
        writer
            .batch_execute(&format!(
                "INSERT INTO s VALUES {values}; INSERT INTO s_log VALUES {values};"
            ))
            .await
            .expect("insert");
        k += 2;
        while let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        {
            let chunk = chunk.expect("copy data");
            received.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }
    // Whatever else was inserted comes too: stop inserting, drain.
    while let Ok(Some(chunk)) =
        tokio::time::timeout(Duration::from_millis(500), stream.next()).await
    {
        received.push_str(std::str::from_utf8(&chunk.expect("copy data")).expect("utf-8"));
    }
    let mut got: Vec<String> = received.lines().map(|l| l.replace(',', " | ")).collect();
    got.sort();
    let expected = sorted_rows(&writer, "SELECT k, v FROM s_log WHERE k % 2 = 0").await;
    assert_eq!(got, expected, "each row once, as the batch query has it");

    let started = std::time::Instant::now();
    cancel.cancel_query(NoTls).await.expect("send the cancel");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await
    .expect("the COPY ends after the cancel");
    let error = end.expect("the COPY ends with an error");
    assert_eq!(
        error.code().map(|c| c.code()),
        Some("57014"),
        "canceled: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sorted_rows(&reader, "SELECT 1").await, ["1"]);
}

/// psql on a terminal prints a continuous COPY's rows as they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_prints_a_continuous_copy_as_rows_come() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    writer
        .batch_execute("CREATE STREAM s (k int, v text)")
        .await
        .expect("create the stream");
    let psql = require_program("psql");
    // `script` gives psql a pseudo-terminal: its output is line-buffered, as
    // a user sees it, instead of buffered whole for a pipe.
    let command = format!(
        "{} -X -h 127.0.0.1 -p {} -U weir -d weir -c \"COPY (SELECT k, v FROM s) TO STDOUT\"",
        psql.display(),
        server.addr().port()
    );
    let mut child = Command::new(require_program("script"))
        .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start psql under script");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx
                .send(line.trim_end_matches('\r').to_string())
                .is_err()
            {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut k = 1;
    while seen.len() < 3 && tokio::time::Instant::now() < deadline {
        writer
            .batch_execute(&format!("INSERT INTO s VALUES ({k}, 'row{k}')"))
            .await
            .expect("insert");
        k += 1;
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(300), lines.recv()).await
            && line.contains("\trow")
        {
            seen.push(line);
        }
    }
    assert!(
        child.try_wait().expect("psql status").is_none(),
        "psql is still running the COPY"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.len() >= 3, "psql printed {seen:?}");
    for line in &seen {
        let (k, v) = line.split_once('\t').expect("k<TAB>v");
        assert_eq!(v, format!("row{k}"), "{line}");
    }
}
