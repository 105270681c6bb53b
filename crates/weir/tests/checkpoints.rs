//! Checkpoints: a restart resumes from the last checkpoint (tables' rows,
//! views' rows and operator state, connectors' positions) and replays only
//! the log after it; the results equal those of a run that never stopped and
//! the batch queries over the same rows. A damaged checkpoint is detected and
//! the previous one used. The log before the oldest checkpoint kept is cut.

mod support;

use std::time::Duration;

use support::{TestServer, sorted_rows};
use tokio_postgres::Client;

async fn run(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e} {:?}", e.as_db_error().map(|d| d.message())));
}

/// `(epoch, status)` of every checkpoint listed, in order.
async fn checkpoints(client: &Client) -> Vec<(i64, String)> {
    client
        .query(
            "SELECT epoch, status FROM weir_catalog.checkpoints ORDER BY epoch",
            &[],
        )
        .await
        .expect("read the checkpoints table")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

const SCHEMA: &str = "
    CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance bigint);
    CREATE STREAM clicks (user_id int, page text, ts timestamp,
                          WATERMARK FOR ts AS ts - INTERVAL '1 second');
    CREATE MATERIALIZED VIEW per_owner AS
        SELECT owner, count(*) AS n, sum(balance) AS total, min(balance) AS low
        FROM accounts GROUP BY owner;
    CREATE MATERIALIZED VIEW per_page AS
        SELECT page, count(*) AS n, max(user_id) AS top FROM clicks GROUP BY page;
    CREATE MATERIALIZED VIEW per_window AS
        SELECT window_start, page, count(*) AS n, avg(user_id) AS mean
        FROM TUMBLE(clicks, ts, INTERVAL '10 seconds')
        GROUP BY window_start, page EMIT ON WINDOW CLOSE;
    CREATE MATERIALIZED VIEW per_session AS
        SELECT window_start, window_end, user_id, count(*) AS n
        FROM session(clicks, ts, INTERVAL '5 seconds', user_id)
        GROUP BY window_start, window_end, user_id;
";

/// The tables, streams and views of [`SCHEMA`], and `clicks_log`, the
/// table the oracle reads the clicks from.
async fn create_schema(client: &Client) {
    run(client, SCHEMA).await;
    run(
        client,
        "CREATE TABLE clicks_log (user_id int, page text, ts timestamp)",
    )
    .await;
}

/// Writes round `round`: accounts inserted, updated and deleted, and clicks
/// in event-time order (the same rows are inserted into `clicks_log`, a
/// table the oracle reads).
async fn write_round(client: &Client, round: i64) {
    let base = round * 100;
    let mut sql = String::new();
    for i in 0..20 {
        let id = base + i;
        sql.push_str(&format!(
            "INSERT INTO accounts VALUES ({id}, 'owner{}', {});",
            i % 4,
            (id * 37) % 1000
        ));
    }
    sql.push_str(&format!(
        "UPDATE accounts SET balance = balance + 5 WHERE id % 3 = 0 AND id >= {base};
         DELETE FROM accounts WHERE id % 7 = 0 AND id >= {base};"
    ));
    for i in 0..30 {
        let second = round * 40 + i;
        let values = format!(
            "({}, 'page{}', TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{second} seconds')",
            (i * 13 + round) % 9,
            i % 3
        );
        sql.push_str(&format!(
            "INSERT INTO clicks VALUES {values}; INSERT INTO clicks_log VALUES {values};"
        ));
    }
    run(client, &sql).await;
}

/// The views equal the batch queries over the same rows.
async fn check_oracle(client: &Client) {
    run(client, "FLUSH").await;
    let pairs = [
        (
            "SELECT * FROM per_owner",
            "SELECT owner, count(*), sum(balance), min(balance) FROM accounts GROUP BY owner",
        ),
        (
            "SELECT * FROM per_page",
            "SELECT page, count(*), max(user_id) FROM clicks_log GROUP BY page",
        ),
        (
            "SELECT * FROM per_window",
            // Closed windows only: the watermark is the last ts - 1 s.
            "SELECT window_start, page, count(*), avg(user_id)
             FROM TUMBLE(clicks_log, ts, INTERVAL '10 seconds')
             WHERE window_end <= (SELECT max(ts) - INTERVAL '1 second' FROM clicks_log)
             GROUP BY window_start, page",
        ),
        (
            "SELECT * FROM per_session",
            "SELECT window_start, window_end, user_id, count(*)
             FROM session(clicks_log, ts, INTERVAL '5 seconds', user_id)
             GROUP BY window_start, window_end, user_id",
        ),
    ];
    for (view, batch) in pairs {
        let got = sorted_rows(client, view).await;
        assert!(!got.is_empty(), "{view} is empty");
        assert_eq!(got, sorted_rows(client, batch).await, "{view}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_checkpoint_with_the_same_results() {
    let mut server = TestServer::start().await;
    let client = server.connect("weir").await;
    create_schema(&client).await;
    write_round(&client, 0).await;
    write_round(&client, 1).await;
    run(&client, "CHECKPOINT").await;
    let taken = checkpoints(&client).await;
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].1, "committed");
    // Written after the checkpoint: replayed from the log.
    write_round(&client, 2).await;
    check_oracle(&client).await;
    let before: Vec<Vec<String>> = {
        let mut all = Vec::new();
        for view in ["per_owner", "per_page", "per_window", "per_session"] {
            all.push(sorted_rows(&client, &format!("SELECT * FROM {view}")).await);
        }
        all
    };
    drop(client);

    server.restart().await;
    let client = server.connect("weir").await;
    // The stream's rows from before the checkpoint are not in the log
    // replay (it starts at the checkpoint): the views have them from the
    // restored state.
    let listed = checkpoints(&client).await;
    assert_eq!(listed, vec![(taken[0].0, "restored".to_string())]);
    for (view, rows) in ["per_owner", "per_page", "per_window", "per_session"]
        .iter()
        .zip(&before)
    {
        assert_eq!(
            &sorted_rows(&client, &format!("SELECT * FROM {view}")).await,
            rows,
            "{view} after the restart"
        );
    }
    // And they go on from there.
    write_round(&client, 3).await;
    check_oracle(&client).await;
    run(&client, "CHECKPOINT").await;
    write_round(&client, 4).await;
    server.restart().await;
    let client = server.connect("weir").await;
    write_round(&client, 5).await;
    check_oracle(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_checkpoint_is_reported_and_the_previous_one_used() {
    let mut server = TestServer::start().await;
    let client = server.connect("weir").await;
    create_schema(&client).await;
    write_round(&client, 0).await;
    run(&client, "CHECKPOINT").await;
    write_round(&client, 1).await;
    run(&client, "CHECKPOINT").await;
    write_round(&client, 2).await;
    let taken = checkpoints(&client).await;
    assert_eq!(taken.len(), 2, "{taken:?}");
    drop(client);

    // Truncate one file of the newest checkpoint.
    let newest = server
        .data_dir()
        .join(format!("checkpoints/{:020}", taken[1].0));
    let file = std::fs::read_dir(&newest)
        .expect("the checkpoint's directory")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "arrow"))
        .expect("a file of the checkpoint");
    let bytes = std::fs::read(&file).expect("read");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate");

    server.restart().await;
    let client = server.connect("weir").await;
    let listed = checkpoints(&client).await;
    assert_eq!(
        listed,
        vec![
            (taken[0].0, "restored".to_string()),
            (taken[1].0, "damaged".to_string())
        ]
    );
    let detail: String = client
        .query_one(
            "SELECT detail FROM weir_catalog.checkpoints WHERE status = 'damaged'",
            &[],
        )
        .await
        .expect("detail")
        .get(0);
    assert!(detail.contains("bytes, the manifest says"), "{detail}");
    check_oracle(&client).await;
}

/// A view over a Nexmark stream: checkpointed mid-way, restarted, its
/// connector resumes from its position; the result equals an uninterrupted
/// run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_resumes_from_its_checkpointed_position() {
    const SETUP: &str = "
        CREATE STREAM bids (auction bigint, bidder bigint, price bigint, date_time timestamp)
            WITH (connector = 'nexmark', nexmark.table = 'bid',
                                 nexmark.max_events = '6000', nexmark.throughput = '3000');
        CREATE MATERIALIZED VIEW per_auction AS
            SELECT auction, count(*) AS n, sum(price) AS total FROM bids GROUP BY auction;";
    async fn finished(client: &Client) -> bool {
        client
            .query(
                "SELECT status FROM weir_catalog.jobs WHERE name = 'per_auction'",
                &[],
            )
            .await
            .expect("jobs")
            .iter()
            .all(|r| r.get::<_, String>(0) == "finished")
    }
    async fn wait_finished(client: &Client) {
        for _ in 0..300 {
            if finished(client).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the job did not finish");
    }

    let uninterrupted = TestServer::start().await;
    let client = uninterrupted.connect("weir").await;
    run(&client, SETUP).await;
    wait_finished(&client).await;
    let expected = sorted_rows(&client, "SELECT * FROM per_auction").await;
    let count = sorted_rows(&client, "SELECT sum(n) FROM per_auction").await;
    assert!(!expected.is_empty());

    let mut server = TestServer::start().await;
    let client = server.connect("weir").await;
    run(&client, SETUP).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    run(&client, "CHECKPOINT").await;
    let partial = sorted_rows(&client, "SELECT sum(n) FROM per_auction").await;
    assert!(
        !finished(&client).await,
        "checkpointed after the end: {partial:?}"
    );
    drop(client);
    server.restart().await;
    let client = server.connect("weir").await;
    wait_finished(&client).await;
    assert_eq!(
        sorted_rows(&client, "SELECT sum(n) FROM per_auction").await,
        count
    );
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM per_auction").await,
        expected
    );
}

/// The write-ahead log's segments before the oldest checkpoint kept are
/// deleted; a restart replays the rest and gets the same results; and when
/// every checkpoint that the remaining log needs is gone, the start is
/// refused instead of coming back with missing rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_cut_after_checkpoints() {
    fn small_segments(config: &mut weir_engine::EngineConfig) {
        config.wal_segment_bytes = 4096;
    }
    let segments = |dir: &std::path::Path| -> Vec<u64> {
        let mut firsts: Vec<u64> = std::fs::read_dir(dir.join("wal"))
            .expect("the log's directory")
            .filter_map(|e| {
                let name = e.expect("entry").file_name().into_string().ok()?;
                name.strip_prefix("wal-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        firsts.sort();
        firsts
    };
    let mut server = TestServer::start_with(small_segments).await;
    let client = server.connect("weir").await;
    create_schema(&client).await;
    write_round(&client, 0).await;
    let before = segments(server.data_dir());
    assert!(before.len() > 3, "small segments: {before:?}");
    assert_eq!(before[0], 0);
    for round in 1..6 {
        write_round(&client, round).await;
        run(&client, "CHECKPOINT").await;
    }
    write_round(&client, 6).await;
    // The oldest checkpoint kept (of 3) was taken after round 3: nothing
    // written in round 0 is left in the log.
    let after = segments(server.data_dir());
    assert!(
        after[0] > *before.last().expect("a segment"),
        "segments before the oldest kept checkpoint are deleted: {before:?} -> {after:?}"
    );
    check_oracle(&client).await;
    drop(client);

    server.restart().await;
    let client = server.connect("weir").await;
    check_oracle(&client).await;
    write_round(&client, 7).await;
    check_oracle(&client).await;
    drop(client);

    // Without the checkpoints, the log that is left is not enough.
    server.stop().await;
    std::fs::remove_dir_all(server.data_dir().join("checkpoints")).expect("remove checkpoints");
    let error = weir_engine::Engine::open(weir_engine::EngineConfig::new(server.data_dir()))
        .await
        .expect_err("a start without the records the log no longer has");
    assert!(
        error.message.contains("records from LSN 0 on are needed"),
        "{}",
        error.message
    );
}

/// `(bytes_written, state_bytes)` of checkpoint `epoch`.
async fn checkpoint_bytes(client: &Client, epoch: i64) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT bytes_written, state_bytes FROM weir_catalog.checkpoints \
             WHERE epoch = $1 AND status = 'committed'",
            &[&epoch],
        )
        .await
        .expect("the checkpoint's row");
    (row.get(0), row.get(1))
}

/// The epoch of a new checkpoint.
async fn take_checkpoint(client: &Client) -> i64 {
    run(client, "CHECKPOINT").await;
    client
        .query_one("SELECT max(epoch) FROM weir_catalog.checkpoints", &[])
        .await
        .expect("epoch")
        .get(0)
}

/// Checkpoint cost follows what changed, not the size of the state: after
/// a full checkpoint of a large table and an aggregation over it, a few
/// changed keys write a small fraction of it, and nothing changed writes
/// nothing. The state put back together from the full copy and the change
/// files (compacted past a chain length) equals what it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_writes_only_what_changed() {
    const GROUPED: &str =
        "SELECT g, count(*) AS n, sum(v) AS total, min(v) AS low FROM big GROUP BY g";
    let mut server = TestServer::start().await;
    let client = server.connect("weir").await;
    run(
        &client,
        &format!(
            "CREATE TABLE big (id int PRIMARY KEY, g int, v bigint);
             INSERT INTO big SELECT i, i % 20000, i FROM generate_series(1, 100000) AS s(i);
             CREATE MATERIALIZED VIEW per_g AS {GROUPED};"
        ),
    )
    .await;
    let first = take_checkpoint(&client).await;
    let (written, total) = checkpoint_bytes(&client, first).await;
    assert_eq!(written, total, "the first checkpoint is whole");
    assert!(total > 1_000_000, "a large state: {total} bytes");

    let unchanged = take_checkpoint(&client).await;
    assert_eq!(
        checkpoint_bytes(&client, unchanged).await,
        (0, total),
        "nothing changed, nothing written"
    );

    run(&client, "UPDATE big SET v = v + 1 WHERE id <= 10").await;
    let few = take_checkpoint(&client).await;
    let (written, state) = checkpoint_bytes(&client, few).await;
    assert!(
        written > 0 && written * 50 < state,
        "10 changed rows of 100000 wrote {written} of {state} bytes"
    );

    // Enough small changes to make chains long: they get compacted.
    for round in 0..12 {
        run(
            &client,
            &format!(
                "UPDATE big SET v = v * 2 WHERE id % 1000 = {round};
                 DELETE FROM big WHERE id = {};
                 INSERT INTO big VALUES ({}, {round}, {round});",
                round * 7 + 1,
                200_000 + round
            ),
        )
        .await;
        take_checkpoint(&client).await;
    }
    let manifest_files = {
        let newest: i64 = client
            .query_one("SELECT max(epoch) FROM weir_catalog.checkpoints", &[])
            .await
            .expect("epoch")
            .get(0);
        let path = server
            .data_dir()
            .join(format!("checkpoints/{newest:020}/manifest.json"));
        // Every file entry has a name; nothing else in it does.
        std::fs::read_to_string(&path)
            .expect("the manifest")
            .matches("\"name\":")
            .count()
    };
    // A table, a view's rows and its aggregation's subtasks (at most 2 on
    // this machine's default parallelism, up to the core count): each a full
    // copy and at most 8 change files.
    let states = 2 + std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        manifest_files <= states * 9,
        "chains are compacted: {manifest_files} files for {states} states"
    );
    run(&client, "FLUSH").await;
    let before = sorted_rows(&client, "SELECT * FROM per_g").await;
    assert_eq!(before, sorted_rows(&client, GROUPED).await);
    let table_before = sorted_rows(&client, "SELECT * FROM big").await;
    drop(client);

    server.restart().await;
    let client = server.connect("weir").await;
    assert_eq!(sorted_rows(&client, "SELECT * FROM per_g").await, before);
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM big").await,
        table_before
    );
    run(&client, "UPDATE big SET v = 0 WHERE id <= 100").await;
    run(&client, "FLUSH").await;
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM per_g").await,
        sorted_rows(&client, GROUPED).await
    );
    // The first checkpoint after a start is whole again.
    let after = take_checkpoint(&client).await;
    let (written, total) = checkpoint_bytes(&client, after).await;
    assert_eq!(written, total);
}
