//! Records a source cannot read (bad JSON, a value of the wrong type, a
//! short CSV line) and the stream's `on_error` option: `dead_letter` (the
//! default) keeps each one, where it was and why in
//! `weir_catalog.dead_letters`, across a restart; `skip` counts them; `fail`
//! stops the jobs reading the stream with the error, after the rows before
//! the record. In every case the good records arrive whole and the server
//! and other sessions go on.

mod support;

use std::time::{Duration, Instant};

use support::TestServer;
use tokio_postgres::Client;

/// Good records 1..=6 (amounts 10, 20, ... 60) with three bad ones between.
const JSON_LINES: &str = r#"{"id": 1, "amount": 10}
{"id": 2, "amount": 20}
{"id": 3, "amount": "lots"}
{"id": 4, "amount": 40}
{"id": 5, "amount
{"id": 6, "amount": 60}
"#;

const CSV_LINES: &str = "id,amount\n7,70\n8\n9,90\n";

async fn number(client: &Client, sql: &str) -> i64 {
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get::<_, Option<i64>>(0).unwrap_or(0)
}

/// Waits until `sql` (one bigint) reaches `n`, or 30 s; returns the last value.
async fn wait_for(client: &Client, sql: &str, n: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        client.batch_execute("FLUSH").await.expect("flush");
        let seen = number(client, sql).await;
        if seen >= n || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A directory with a JSON-lines file and a CSV file... the stream reads
/// one format, so each test makes the directory of the format it needs.
fn files(format: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    match format {
        "json" => std::fs::write(dir.path().join("a.jsonl"), JSON_LINES),
        _ => std::fs::write(dir.path().join("a.csv"), CSV_LINES),
    }
    .expect("write");
    dir
}

async fn create(client: &Client, dir: &tempfile::TempDir, format: &str, on_error: Option<&str>) {
    let on_error = on_error
        .map(|o| format!(", on_error = '{o}'"))
        .unwrap_or_default();
    client
        .batch_execute(&format!(
            "CREATE STREAM payments (id int, amount int) \
             WITH (connector = 'file', path = '{}', format = '{format}', mode = 'tail'{on_error}); \
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(amount) AS total FROM payments",
            dir.path().display()
        ))
        .await
        .expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_every_bad_record_across_a_restart() {
    let mut server = TestServer::start().await;
    let client = server.connect("weir").await;
    let dir = files("json");
    create(&client, &dir, "json", None).await;
    assert_eq!(wait_for(&client, "SELECT n FROM totals", 4).await, 4);
    assert_eq!(number(&client, "SELECT total FROM totals").await, 130);
    let letters = |client: Client| async move {
        let rows = client
            .query(
                "SELECT stream, source, line, record, error FROM weir_catalog.dead_letters ORDER BY source, line",
                &[],
            )
            .await
            .expect("dead letters");
        let letters: Vec<(String, String, i64, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        (client, letters)
    };
    let (client, found) = letters(client).await;
    let file = dir.path().join("a.jsonl").display().to_string();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "payments");
    assert_eq!(found[0].1, file);
    assert_eq!(found[0].2, 3);
    assert_eq!(found[0].3, r#"{"id": 3, "amount": "lots"}"#);
    assert!(!found[0].4.is_empty());
    assert_eq!(found[1].2, 5);
    assert_eq!(found[1].3, r#"{"id": 5, "amount"#);
    assert_eq!(
        number(
            &client,
            "SELECT rejected_records FROM weir_catalog.sources WHERE name = 'payments'"
        )
        .await,
        2
    );

    // The dead letters are in the checkpoint: after a restart they are
    // still there, once each, and the view goes on from where it was.
    client
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    drop(client);
    server.restart().await;
    let client = server.connect("weir").await;
    let (client, again) = letters(client).await;
    assert_eq!(again, found, "the dead letters survive the restart");
    let more = dir.path().join("b.jsonl");
    std::fs::write(&more, "{\"id\": 10, \"amount\": 100}\nnot json\n").expect("write");
    assert_eq!(wait_for(&client, "SELECT n FROM totals", 5).await, 5);
    assert_eq!(number(&client, "SELECT total FROM totals").await, 230);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = client;
    loop {
        let (back, now) = letters(client).await;
        client = back;
        if now.len() == 3 || Instant::now() > deadline {
            assert_eq!(now.len(), 3, "{now:?}");
            assert_eq!(now[2].1, more.display().to_string());
            assert_eq!(now[2].2, 2);
            assert_eq!(now[2].3, "not json");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        number(&client, "SELECT count(*) FROM weir_catalog.dead_letters").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_counts_bad_records_and_keeps_none() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let dir = files("csv");
    create(&client, &dir, "csv", Some("skip")).await;
    assert_eq!(wait_for(&client, "SELECT n FROM totals", 2).await, 2);
    assert_eq!(number(&client, "SELECT total FROM totals").await, 160);
    let rejected = "SELECT rejected_records FROM weir_catalog.sources WHERE name = 'payments'";
    assert_eq!(
        number(&client, rejected).await,
        1,
        "the short line is counted"
    );
    assert_eq!(
        number(&client, "SELECT count(*) FROM weir_catalog.dead_letters").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_stops_the_jobs_at_the_first_bad_record() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let dir = files("json");
    create(&client, &dir, "json", Some("fail")).await;
    // The view's job fails, with the record's place and the error.
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        let row = client
            .query_opt(
                "SELECT status, error FROM weir_catalog.jobs WHERE name = 'totals'",
                &[],
            )
            .await
            .expect("jobs");
        if let Some(row) = row
            && row.get::<_, String>(0) == "failed"
        {
            break row.get::<_, Option<String>>(1).unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "the job did not fail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("a.jsonl, line 3"), "{error}");
    assert!(error.contains("on_error = 'fail'"), "{error}");
    // The rows before the bad record got through, none after it.
    assert_eq!(number(&client, "SELECT n FROM totals").await, 2);
    assert_eq!(number(&client, "SELECT total FROM totals").await, 30);
    assert_eq!(
        number(&client, "SELECT count(*) FROM weir_catalog.dead_letters").await,
        0
    );
    // A continuous query over the failed stream gets the error too.
    let continuous = client.simple_query("SELECT * FROM payments").await;
    let error = continuous.err().and_then(|e| e.as_db_error().cloned());
    assert!(
        error.is_some_and(|e| e.message().contains("line 3")),
        "a continuous query reports the failure"
    );
    // The server and other sessions go on.
    let other = server.connect("weir").await;
    assert_eq!(number(&other, "SELECT 41 + 1").await, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_values_are_checked() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let error = client
        .batch_execute(
            "CREATE STREAM s (id int) WITH (connector = 'file', path = '/tmp/x.csv', on_error = 'ignore')",
        )
        .await
        .err()
        .and_then(|e| e.as_db_error().cloned())
        .expect("refused");
    assert_eq!(error.code().code(), "22023");
    assert!(error.message().contains("'fail', 'skip' or 'dead_letter'"));
}
