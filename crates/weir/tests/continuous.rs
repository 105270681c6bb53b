//! Continuous queries over the wire: a SELECT that reads a stream sends its
//! rows as they are produced, ends at its LIMIT, carries `op` when its
//! results update, and stops on cancel with the session still usable.

mod support;

use std::time::Duration;

use futures::{StreamExt, pin_mut};
use support::TestServer;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn run(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The data rows of a simple query, as text.
fn rows(messages: Vec<SimpleQueryMessage>) -> Vec<Vec<String>> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Waits until a continuous query has subscribed to its stream: rows inserted
/// before would not reach it.
async fn until_subscribed(reader: &tokio::task::JoinHandle<impl Sized>) {
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!reader.is_finished(), "the continuous query ended early");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_on_a_stream_ends_at_its_limit_with_the_batch_result() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    run(
        &writer,
        "CREATE STREAM s (k int, v int); CREATE TABLE t (k int, v int)",
    )
    .await;
    let reader = server.connect("weir").await;
    let query = tokio::spawn(async move {
        reader
            .simple_query("SELECT k, v * 10 AS v10 FROM s WHERE v > 0 LIMIT 3")
            .await
    });
    until_subscribed(&query).await;
    for (k, v) in [(1, -1), (2, 5), (3, 6), (4, 0), (5, 7), (6, 8)] {
        run(
            &writer,
            &format!("INSERT INTO s VALUES ({k}, {v}); INSERT INTO t VALUES ({k}, {v})"),
        )
        .await;
    }
    let streamed = tokio::time::timeout(Duration::from_secs(30), query)
        .await
        .expect("the LIMIT ends the query")
        .expect("join")
        .expect("query");
    // The same rows as the batch query over a table holding the same rows,
    // in arrival order (k grows with it).
    let expected = rows(
        writer
            .simple_query("SELECT k, v * 10 AS v10 FROM t WHERE v > 0 ORDER BY k LIMIT 3")
            .await
            .expect("batch query"),
    );
    assert_eq!(rows(streamed), expected);
    assert_eq!(expected.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_arrive_while_the_query_runs_and_cancel_stops_it() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    run(&writer, "CREATE STREAM s (k int, v int)").await;
    let reader = server.connect("weir").await;
    let cancel = reader.cancel_token();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let query = tokio::spawn(async move {
        let stream = reader
            .query_raw("SELECT k, v FROM s", std::iter::empty::<i32>())
            .await
            .expect("start the query");
        pin_mut!(stream);
        let first = stream.next().await.expect("a row").expect("no error");
        let _ = first_tx.send((first.get::<_, i32>(0), first.get::<_, i32>(1)));
        // The query goes on until cancelled.
        let end = loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        };
        let code = match end {
            Some(Err(e)) => e.code().map(|c| c.code().to_string()),
            _ => None,
        };
        let after = reader
            .query_one("SELECT 1 + 1", &[])
            .await
            .expect("session usable");
        (code, after.get::<_, i64>(0))
    });
    until_subscribed(&query).await;
    run(&writer, "INSERT INTO s VALUES (7, 70)").await;
    // The first row comes while the query is still running.
    let first = tokio::time::timeout(Duration::from_secs(10), first_rx)
        .await
        .expect("the first row arrives before the query ends")
        .expect("first row");
    assert_eq!(first, (7, 70));
    assert!(!query.is_finished());
    cancel.cancel_query(NoTls).await.expect("send the cancel");
    let (code, after) = tokio::time::timeout(Duration::from_secs(5), query)
        .await
        .expect("the cancel stops the query")
        .expect("join");
    assert_eq!(code.as_deref(), Some("57014"));
    assert_eq!(after, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_results_carry_op() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    run(&writer, "CREATE STREAM s (k int, v int)").await;
    let reader = server.connect("weir").await;
    let query = tokio::spawn(async move {
        reader
            .simple_query("SELECT k, count(*) AS n, sum(v) AS total FROM s GROUP BY k LIMIT 4")
            .await
    });
    until_subscribed(&query).await;
    run(&writer, "INSERT INTO s VALUES (1, 10)").await;
    run(&writer, "INSERT INTO s VALUES (1, 5)").await;
    run(&writer, "INSERT INTO s VALUES (2, 1)").await;
    let streamed = tokio::time::timeout(Duration::from_secs(30), query)
        .await
        .expect("the LIMIT ends the query")
        .expect("join")
        .expect("query");
    let expected: Vec<Vec<String>> = [
        ["1", "1", "10", "insert"],
        ["1", "1", "10", "delete"],
        ["1", "2", "15", "insert"],
        ["2", "1", "1", "insert"],
    ]
    .iter()
    .map(|r| r.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(rows(streamed), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_over_a_stream_fetches_rows_as_they_come() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    run(&writer, "CREATE STREAM s (k int, v int)").await;
    let reader = server.connect("weir").await;
    // Outside a transaction block, too (Postgres would refuse it).
    run(
        &reader,
        "DECLARE c NO SCROLL CURSOR FOR SELECT k, v + 1 AS w FROM s",
    )
    .await;
    let fetch = tokio::spawn(async move {
        let first = reader.simple_query("FETCH 2 FROM c").await;
        let second = reader.simple_query("FETCH FORWARD 1 FROM c").await;
        reader.batch_execute("CLOSE c").await.expect("close");
        (first, second)
    });
    until_subscribed(&fetch).await;
    run(&writer, "INSERT INTO s VALUES (1, 10)").await;
    // FETCH 2 waits for its second row.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fetch.is_finished(), "FETCH 2 returned with one row");
    run(&writer, "INSERT INTO s VALUES (2, 20), (3, 30)").await;
    let (first, second) = tokio::time::timeout(Duration::from_secs(30), fetch)
        .await
        .expect("the fetches return")
        .expect("join");
    assert_eq!(
        rows(first.expect("first fetch")),
        vec![
            vec!["1".to_string(), "11".to_string()],
            vec!["2".to_string(), "21".to_string()]
        ]
    );
    assert_eq!(
        rows(second.expect("second fetch")),
        vec![vec!["3".to_string(), "31".to_string()]]
    );
}

/// A bounded source ends: a continuous query over it completes by itself
/// with every row, and a view over it finishes (FLUSH returns, the jobs
/// table says `finished`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_source_ends_its_queries_and_views() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    run(
        &client,
        "CREATE SOURCE bid (auction bigint, price bigint, date_time timestamp) \
         WITH (connector = 'nexmark', nexmark.table = 'bid', nexmark.max_events = '2000', \
               nexmark.throughput = '0'); \
         CREATE SOURCE bid2 (auction bigint, price bigint, date_time timestamp) \
         WITH (connector = 'nexmark', nexmark.table = 'bid', nexmark.max_events = '2000', \
               nexmark.throughput = '0')",
    )
    .await;
    let all = tokio::time::timeout(
        Duration::from_secs(60),
        client.simple_query("SELECT auction, price FROM bid"),
    )
    .await
    .expect("the query ends with its source")
    .expect("select");
    // 46 in every 50 Nexmark events are bids.
    assert_eq!(rows(all).len(), 1840);

    run(
        &client,
        "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(price) AS total FROM bid2",
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = client
            .query_one(
                "SELECT status FROM weir_catalog.jobs WHERE name = 'totals'",
                &[],
            )
            .await
            .expect("jobs")
            .get::<_, String>(0);
        if status != "running" || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, "finished");
    run(&client, "FLUSH").await;
    let n: i64 = client
        .query_one("SELECT n FROM totals", &[])
        .await
        .expect("totals")
        .get(0);
    assert_eq!(n, 1840);
}

/// `FETCH n ... WITH (timeout = ...)` returns the rows that came when the
/// timeout passes (none, or fewer than n); a bad timeout is a syntax error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_with_a_timeout_returns_the_rows_that_came() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    run(&writer, "CREATE STREAM s (k int, v int)").await;
    let reader = server.connect("weir").await;
    run(&reader, "BEGIN; DECLARE c CURSOR FOR SELECT k, v FROM s").await;
    // The cursor's job reads the stream from DECLARE on.
    let started = std::time::Instant::now();
    let none = reader
        .simple_query("FETCH 5 FROM c WITH (timeout = '300ms')")
        .await
        .expect("fetch");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(rows(none).is_empty());
    run(&writer, "INSERT INTO s VALUES (1, 10), (2, 20)").await;
    let started = std::time::Instant::now();
    let two = reader
        .simple_query("FETCH 5 FROM c WITH (timeout = '1s')")
        .await
        .expect("fetch");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited for more"
    );
    assert_eq!(
        rows(two),
        vec![
            vec!["1".to_string(), "10".to_string()],
            vec!["2".to_string(), "20".to_string()]
        ]
    );
    // Enough rows: no wait for the timeout.
    run(&writer, "INSERT INTO s VALUES (3, 30)").await;
    let started = std::time::Instant::now();
    let one = reader
        .simple_query("FETCH NEXT FROM c WITH (timeout = '30s')")
        .await
        .expect("fetch");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(rows(one), vec![vec!["3".to_string(), "30".to_string()]]);
    let error = reader
        .simple_query("FETCH 1 FROM c WITH (timeout = 'soon')")
        .await
        .expect_err("a bad timeout");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::SYNTAX_ERROR)
    );
    run(&reader, "ROLLBACK").await;
}

/// A plain view over a stream is read continuously too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_on_a_view_of_a_stream_is_continuous() {
    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    run(
        &writer,
        "CREATE STREAM s (k int, v int); \
         CREATE VIEW positive AS SELECT k, v * 2 AS v2 FROM s WHERE v > 0",
    )
    .await;
    let reader = server.connect("weir").await;
    let query = tokio::spawn(async move {
        reader
            .simple_query("SELECT k, v2 FROM positive LIMIT 2")
            .await
    });
    until_subscribed(&query).await;
    run(
        &writer,
        "INSERT INTO s VALUES (1, -5), (2, 5), (3, 0), (4, 7)",
    )
    .await;
    let result = tokio::time::timeout(Duration::from_secs(30), query)
        .await
        .expect("the query ends at its LIMIT")
        .expect("join")
        .expect("select");
    assert_eq!(
        rows(result),
        vec![
            vec!["2".to_string(), "10".to_string()],
            vec!["4".to_string(), "14".to_string()]
        ]
    );
}
