//! Streaming behaviour that .slt files cannot express: a connector feeding a
//! view over time, and the state of a long windowed run staying bounded.

mod support;

use std::time::{Duration, Instant};

use support::TestServer;
use tokio_postgres::Client;

async fn number(client: &Client, sql: &str) -> i64 {
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get::<_, Option<i64>>(0).unwrap_or(0)
}

/// A bounded Nexmark source, generated as fast as possible, fills a windowed
/// view with every bid of its events: 46 in every 50 events are bids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_source_feeds_a_windowed_view() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    client
        .batch_execute(
            "CREATE SOURCE bid (auction bigint, bidder bigint, price bigint, date_time timestamp, \
               WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
             WITH (connector = 'nexmark', nexmark.table = 'bid', nexmark.max_events = '5000', \
                   nexmark.throughput = '0', nexmark.event_rate = '1000'); \
             CREATE MATERIALIZED VIEW per_second AS \
               SELECT window_start, count(*) AS bids, max(price) AS top \
               FROM tumble(bid, date_time, INTERVAL '1' SECOND) GROUP BY window_start",
        )
        .await
        .expect("create the source and the view");
    let deadline = Instant::now() + Duration::from_secs(60);
    let total = loop {
        client.batch_execute("FLUSH").await.expect("flush");
        let total = number(&client, "SELECT sum(bids)::bigint FROM per_second").await;
        if total >= 4600 || Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(total, 4600, "bids among the first 5000 events");
    // 1000 events per second of event time: 5 seconds, from 2015-07-15.
    let windows = number(&client, "SELECT count(*) FROM per_second").await;
    assert_eq!(windows, 5);
    let first = client
        .query_one("SELECT min(window_start)::text FROM per_second", &[])
        .await
        .expect("first window");
    assert_eq!(first.get::<_, String>(0), "2015-07-15 00:00:00");
    // The source's watermark followed the rows.
    let watermark = client
        .query_one(
            "SELECT watermark::timestamp::text FROM weir_catalog.sources WHERE name = 'bid'",
            &[],
        )
        .await
        .expect("watermark");
    assert!(
        watermark
            .get::<_, Option<String>>(0)
            .is_some_and(|w| w.starts_with("2015-07-15 00:00:0")),
        "watermark {:?}",
        watermark.get::<_, Option<String>>(0)
    );
}

/// When a bounded source ends, windows still open are final: a view with
/// EMIT ON WINDOW CLOSE shows them, and a window join (Nexmark q7: the bids
/// at each window's highest price) joins them. Both equal the same SQL run
/// once over the bids seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_a_bounded_source_closes_its_windows() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let top_bids = "SELECT b.window_start, b.auction, b.price \
         FROM tumble(bids_seen, date_time, INTERVAL '1' SECOND) AS b \
         JOIN (SELECT window_start, max(price) AS top \
               FROM tumble(bids_seen, date_time, INTERVAL '1' SECOND) GROUP BY window_start) AS m \
         ON b.window_start = m.window_start AND b.price = m.top";
    let per_second = "SELECT window_start, count(*) AS bids \
         FROM tumble(bids_seen, date_time, INTERVAL '1' SECOND) GROUP BY window_start";
    client
        .batch_execute(&format!(
            "CREATE SOURCE bid (auction bigint, bidder bigint, price bigint, date_time timestamp, \
               WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
             WITH (connector = 'nexmark', nexmark.table = 'bid', nexmark.max_events = '5000', \
                   nexmark.throughput = '20000', nexmark.event_rate = '1000'); \
             CREATE MATERIALIZED VIEW bids_seen AS SELECT auction, price, date_time FROM bid; \
             CREATE MATERIALIZED VIEW closed AS {per_second} EMIT ON WINDOW CLOSE; \
             CREATE MATERIALIZED VIEW top_bids AS {top_bids}"
        ))
        .await
        .expect("create the source and the views");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = number(
            &client,
            "SELECT count(*) FROM weir_catalog.jobs WHERE status <> 'finished'",
        )
        .await;
        if running == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the jobs did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        number(&client, "SELECT count(*) FROM bids_seen").await,
        4600
    );
    // The watermark trails by 4 s: most of the 5 windows closed only at the end.
    let closed = support::sorted_rows(&client, "SELECT * FROM closed").await;
    assert_eq!(closed.len(), 5, "{closed:?}");
    assert_eq!(closed, support::sorted_rows(&client, per_second).await);
    let joined = support::sorted_rows(&client, "SELECT * FROM top_bids").await;
    assert!(
        joined.len() >= 5,
        "a top bid per window at least: {joined:?}"
    );
    assert_eq!(joined, support::sorted_rows(&client, top_bids).await);
}

/// A datagen sequence reaches the view whole: from the first row the view
/// saw, every later id once, up to the end of the sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagen_sequence_arrives_whole() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    client
        .batch_execute(
            "CREATE STREAM seq (id bigint, at timestamptz) \
             WITH (connector = 'datagen', datagen.rows_per_second = '2000', \
                   fields.id.kind = 'sequence', fields.id.start = '1', fields.id.end = '3000'); \
             CREATE MATERIALIZED VIEW seen AS \
               SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS first, max(id) AS last, \
                      max(at) - min(at) AS spread FROM seq",
        )
        .await
        .expect("create");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        client.batch_execute("FLUSH").await.expect("flush");
        if number(&client, "SELECT last FROM seen").await == 3000 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = client
        .query_one(
            "SELECT n, ids, first, last, spread >= INTERVAL '1' SECOND FROM seen",
            &[],
        )
        .await
        .expect("seen");
    let (n, ids, first, last): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(last, 3000, "the sequence ends at 3000");
    assert!(
        first < 1000,
        "the view saw the start of the run, from {first}"
    );
    assert_eq!(
        (n, ids),
        (last - first + 1, last - first + 1),
        "no gap, no duplicate"
    );
    // 3000 rows at 2000 per second take more than a second of wall-clock time.
    assert!(row.get::<_, bool>(4), "rows are paced");
}

/// A tailed directory of CSV files: records appended later and files added
/// later reach the view; a malformed record is skipped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_tails_a_directory() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let dir = tempfile::tempdir().expect("dir");
    let first = dir.path().join("a.csv");
    std::fs::write(
        &first,
        "id,amount,at\n1,10,2024-01-01 00:00:01\n2,oops,2024-01-01 00:00:02\n",
    )
    .expect("write");
    client
        .batch_execute(&format!(
            "CREATE SOURCE payments (id int, amount numeric(10,2), at timestamp, \
               WATERMARK FOR at AS at - INTERVAL '1' SECOND) \
             WITH (connector = 'file', path = '{}', format = 'csv', mode = 'tail'); \
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(amount) AS total FROM payments",
            dir.path().display()
        ))
        .await
        .expect("create");
    let wait_for = |n: i64| {
        let client = &client;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                client.batch_execute("FLUSH").await.expect("flush");
                let seen = number(client, "SELECT n FROM totals").await;
                if seen >= n || Instant::now() > deadline {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // The source starts reading when the view subscribes: the view sees the
    // first file whole. Then append to it, and add a second file.
    use std::io::Write;
    let mut append = std::fs::OpenOptions::new()
        .append(true)
        .open(&first)
        .expect("open");
    append
        .write_all(b"3,30,2024-01-01 00:00:03\n")
        .expect("append");
    std::fs::write(
        dir.path().join("b.csv"),
        "id,amount,at\n4,40.50,2024-01-01 00:00:04\n",
    )
    .expect("write");
    let seen = wait_for(3).await;
    assert_eq!(seen, 3, "appended and new records arrive");
    let total = client
        .query_one("SELECT total::text FROM totals", &[])
        .await
        .expect("total");
    let total: String = total.get(0);
    assert_eq!(total, "80.50");
    let rejected = number(
        &client,
        "SELECT rejected_records FROM weir_catalog.sources WHERE name = 'payments'",
    )
    .await;
    assert_eq!(rejected, 1, "the malformed record is counted");
}

/// A source paced in wall-clock time keeps producing: the view grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_source_keeps_the_view_growing() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    client
        .batch_execute(
            "CREATE SOURCE person (id bigint, name text, date_time timestamp) \
             WITH (connector = 'nexmark', nexmark.table = 'person', nexmark.event_rate = '2000'); \
             CREATE MATERIALIZED VIEW people AS SELECT count(*) AS n FROM person",
        )
        .await
        .expect("create the source and the view");
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.batch_execute("FLUSH").await.expect("flush");
    let before = number(&client, "SELECT n FROM people").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.batch_execute("FLUSH").await.expect("flush");
    let after = number(&client, "SELECT n FROM people").await;
    assert!(before > 0, "people after half a second: {before}");
    assert!(after > before, "the view grows: {before} then {after}");
    // Dropping the source stops it (and needs CASCADE for the view).
    let refused = client.batch_execute("DROP SOURCE person").await;
    assert_eq!(
        refused.err().and_then(|e| e.code().cloned()),
        Some(tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST)
    );
    client
        .batch_execute("DROP SOURCE person CASCADE")
        .await
        .expect("drop");
}

/// A long run of a windowed view emitting on window close keeps state for
/// the open windows only: the state size does not grow with the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_close_frees_state() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    client
        .batch_execute(
            "CREATE STREAM s (k int, ts timestamp, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND); \
             CREATE MATERIALIZED VIEW per_key AS \
               SELECT k, window_start, window_end, count(*) AS n \
               FROM tumble(s, ts, INTERVAL '1' SECOND) GROUP BY k, window_start, window_end \
               EMIT ON WINDOW CLOSE",
        )
        .await
        .expect("create");
    let state = "SELECT sum(state_bytes)::bigint FROM weir_catalog.operators WHERE job = 'per_key'";
    let mut sizes = Vec::new();
    let seconds = 60;
    for second in 0..seconds {
        // 100 keys in every second.
        let rows: Vec<String> = (0..100)
            .map(|k| {
                format!(
                    "({k}, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL '{second} seconds' + INTERVAL '{} milliseconds')",
                    k * 7
                )
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO s VALUES {}; FLUSH", rows.join(", ")))
            .await
            .expect("insert");
        sizes.push(number(&client, state).await);
    }
    let closed = number(&client, "SELECT count(*) FROM per_key").await;
    // The watermark trails by a second: all but the last two windows closed.
    assert_eq!(closed, 100 * (seconds - 2));
    let early = sizes[5];
    let late = *sizes.last().expect("sizes");
    let peak = *sizes.iter().max().expect("sizes");
    assert!(early > 0, "state is measured: {sizes:?}");
    assert!(
        late <= early * 2 && peak <= early * 3,
        "state grows with the run: after 5 s {early} bytes, at the end {late}, peak {peak}"
    );
}

/// A Nexmark source resumed at an event offset gives the rows of an
/// uninterrupted one from that event on: the same bids, none before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_resumes_from_an_event_offset() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let source = |name: &str, first: u64| {
        format!(
            "CREATE SOURCE {name} (auction bigint, bidder bigint, price bigint, date_time timestamp, extra text) \
             WITH (connector = 'nexmark', nexmark.table = 'bid', nexmark.max_events = '3000', \
                   nexmark.throughput = '0', nexmark.seed = '7', nexmark.first_event = '{first}'); \
             CREATE MATERIALIZED VIEW {name}_rows AS SELECT * FROM {name};"
        )
    };
    client
        .batch_execute(&format!(
            "{}{}",
            source("whole", 0),
            source("resumed", 1000)
        ))
        .await
        .expect("create the sources and views");
    // Events 0..3000 hold 2760 bids; events 1000..3000, 1840.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        client.batch_execute("FLUSH").await.expect("flush");
        let whole = number(&client, "SELECT count(*) FROM whole_rows").await;
        let resumed = number(&client, "SELECT count(*) FROM resumed_rows").await;
        if (whole, resumed) == (2760, 1840) || Instant::now() > deadline {
            assert_eq!((whole, resumed), (2760, 1840), "bids of each source");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Event 1000 happens 100 ms after event 0 (10 000 events per second).
    let from_1000 = "SELECT * FROM whole_rows WHERE date_time >= TIMESTAMP '2015-07-15 00:00:00.1'";
    for (a, b) in [
        (from_1000, "SELECT * FROM resumed_rows"),
        ("SELECT * FROM resumed_rows", from_1000),
    ] {
        let missing = number(
            &client,
            &format!("SELECT count(*) FROM ({a} EXCEPT ALL {b}) d"),
        )
        .await;
        assert_eq!(missing, 0, "{a} EXCEPT ALL {b}");
    }
}
