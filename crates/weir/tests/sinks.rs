//! Sinks: a query's results written to files, made visible when the
//! checkpoint that produced them commits. Each row once, across restarts and
//! `kill -9`; the files equal the batch queries over the same rows and the
//! output of a run that never stopped.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::process::{Process, Setup};
use support::s3::S3Server;
use support::{TestServer, sorted_rows};
use tokio_postgres::Client;

async fn run(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e} {:?}", e.as_db_error().map(|d| d.message())));
}

async fn error_code(client: &Client, sql: &str) -> (String, String) {
    let error = client.batch_execute(sql).await.expect_err(sql);
    let db = error.as_db_error().expect("a database error");
    (db.code().code().to_string(), db.message().to_string())
}

/// Where sinks write: a local directory, or a bucket of an S3 server.
enum Files<'a> {
    Dir(PathBuf),
    Bucket {
        s3: &'a S3Server,
        bucket: &'static str,
        prefix: &'static str,
    },
}

impl Files<'_> {
    /// The sink's `path` option.
    fn path(&self) -> String {
        match self {
            Files::Dir(dir) => dir.display().to_string(),
            Files::Bucket { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// The contents of the visible files of sink `name`, oldest first.
    fn texts(&self, name: &str) -> Vec<String> {
        match self {
            Files::Dir(dir) => visible_files(dir, name)
                .iter()
                .map(|file| std::fs::read_to_string(file).expect("read"))
                .collect(),
            Files::Bucket { s3, bucket, prefix } => {
                let start = format!("{prefix}/{name}-");
                let mut keys: Vec<String> = s3
                    .keys(bucket)
                    .into_iter()
                    .filter(|k| k.starts_with(&start))
                    .collect();
                keys.sort();
                keys.iter().map(|key| s3.get(bucket, key)).collect()
            }
        }
    }
}

/// The visible files of sink `name` in `dir`, oldest first.
fn visible_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").path())
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&format!("{name}-")))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The CSV data lines of a sink's files (headers dropped), sorted.
fn csv_rows(files: &Files, name: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for text in files.texts(name) {
        let mut lines = text.lines();
        let header = lines.next().expect("a header line");
        assert!(!header.is_empty());
        rows.extend(lines.map(|l| l.replace(',', " | ")));
    }
    rows.sort();
    rows
}

/// The JSON objects of a sink's files, in order.
fn json_rows(files: &Files, name: &str) -> Vec<BTreeMap<String, String>> {
    let mut rows = Vec::new();
    for text in files.texts(name) {
        for line in text.lines() {
            // Flat objects of numbers and strings: {"a":1,"b":"x"}.
            let inner = line
                .trim()
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("not a JSON object: {line}"));
            let mut row = BTreeMap::new();
            for pair in inner.split(',') {
                let (key, value) = pair.split_once(':').expect("key:value");
                row.insert(
                    key.trim_matches('"').to_string(),
                    value.trim_matches('"').to_string(),
                );
            }
            rows.push(row);
        }
    }
    rows
}

/// Applies a sink's changes (`op` insert / delete; rows without `op` are
/// inserts) in order: the rows it describes now, as `a | b` text over
/// `columns`, sorted.
fn replay_changes(rows: &[BTreeMap<String, String>], columns: &[&str]) -> Vec<String> {
    let mut live: BTreeMap<String, i64> = BTreeMap::new();
    for row in rows {
        let text = columns
            .iter()
            .map(|c| row.get(*c).cloned().unwrap_or_else(|| "NULL".into()))
            .collect::<Vec<_>>()
            .join(" | ");
        let count = live.entry(text.clone()).or_default();
        match row.get("op").map(String::as_str) {
            None | Some("insert") => *count += 1,
            Some("delete") => {
                assert!(*count > 0, "a delete of a row not written: {text}");
                *count -= 1;
            }
            other => panic!("op is {other:?}"),
        }
    }
    let mut out = Vec::new();
    for (text, count) in live {
        out.extend(std::iter::repeat_n(text, count as usize));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sinks_write_each_row_once_when_checkpoints_commit() {
    let out = tempfile::tempdir().expect("output directory");
    let dir = out.path().display().to_string();
    let mut server = TestServer::start().await;
    let client = server.connect("weir").await;
    run(
        &client,
        &format!(
            "CREATE STREAM clicks (user_id int, page text);
             CREATE TABLE clicks_log (user_id int, page text);
             CREATE MATERIALIZED VIEW per_page AS
                 SELECT page, count(*) AS n FROM clicks GROUP BY page;
             CREATE SINK raw AS SELECT user_id, page FROM clicks WHERE user_id > 0
                 WITH (connector = 'file', path = '{dir}/raw', format = 'csv');
             CREATE SINK pages FROM per_page WITH (connector = 'file', path = '{dir}/pages');
             CREATE SINK nowhere FROM per_page WITH (connector = 'blackhole');"
        ),
    )
    .await;
    let write = |round: i64| {
        let mut sql = String::new();
        for i in 0..25 {
            let values = format!("({}, 'page{}')", round * 100 + i, (i + round) % 4);
            sql.push_str(&format!(
                "INSERT INTO clicks VALUES {values}; INSERT INTO clicks_log VALUES {values};"
            ));
        }
        sql
    };
    run(&client, &write(0)).await;
    run(&client, "FLUSH").await;
    assert!(
        visible_files(&out.path().join("raw"), "raw").is_empty(),
        "nothing is visible before a checkpoint commits"
    );
    run(&client, "CHECKPOINT").await;
    let raw = csv_rows(&Files::Dir(out.path().join("raw")), "raw");
    assert_eq!(raw.len(), 24, "user 0 is filtered out: {raw:?}");
    run(&client, &write(1)).await;
    run(&client, "CHECKPOINT").await;
    drop(client);

    // Rows written after the last checkpoint come again after a restart,
    // once.
    let client = server.connect("weir").await;
    run(&client, &write(2)).await;
    run(&client, "FLUSH").await;
    drop(client);
    server.restart().await;
    let client = server.connect("weir").await;
    run(&client, &write(3)).await;
    run(&client, "CHECKPOINT").await;

    // The files equal the batch queries over the same rows.
    assert_eq!(
        csv_rows(&Files::Dir(out.path().join("raw")), "raw"),
        sorted_rows(
            &client,
            "SELECT user_id, page FROM clicks_log WHERE user_id > 0"
        )
        .await
    );
    let changes = json_rows(&Files::Dir(out.path().join("pages")), "pages");
    assert!(changes.iter().any(|r| r["op"] == "delete"), "updates");
    assert_eq!(
        replay_changes(&changes, &["page", "n"]),
        sorted_rows(
            &client,
            "SELECT page, count(*) FROM clicks_log GROUP BY page"
        )
        .await
    );
    let listed = sorted_rows(
        &client,
        "SELECT name, connector, format, status FROM weir_catalog.sinks",
    )
    .await;
    assert_eq!(
        listed,
        vec![
            "nowhere | blackhole | NULL | running",
            "pages | file | jsonl | running",
            "raw | file | csv | running"
        ]
    );

    // Errors say what is wrong.
    assert_eq!(
        error_code(
            &client,
            "CREATE SINK s FROM per_page WITH (connector = 'kafka')"
        )
        .await
        .0,
        "22023"
    );
    let (code, message) = error_code(
        &client,
        "CREATE SINK s FROM per_page WITH (connector = 'file')",
    )
    .await;
    assert_eq!(code, "22023");
    assert!(message.contains("path"), "{message}");
    let (code, message) = error_code(
        &client,
        &format!("CREATE SINK s FROM per_page WITH (connector = 'file', path = '{dir}/s', format = 'xml')"),
    )
    .await;
    assert_eq!(code, "22023");
    assert!(message.contains("xml"), "{message}");
    assert_eq!(
        error_code(
            &client,
            "CREATE SINK s FROM nope WITH (connector = 'blackhole')"
        )
        .await
        .0,
        "42P01"
    );
    let (code, message) = error_code(&client, "DROP MATERIALIZED VIEW per_page").await;
    assert_eq!(code, "2BP01");
    assert!(message.contains("per_page"), "{message}");
    assert_eq!(error_code(&client, "DROP SINK nope").await.0, "42704");
    assert_eq!(error_code(&client, "DROP SINK per_page").await.0, "42809");

    // Dropped: the job stops, the files stay.
    run(&client, "DROP SINK raw").await;
    let before = csv_rows(&Files::Dir(out.path().join("raw")), "raw");
    run(&client, &write(4)).await;
    run(&client, "CHECKPOINT").await;
    assert_eq!(csv_rows(&Files::Dir(out.path().join("raw")), "raw"), before);
    assert_eq!(
        sorted_rows(&client, "SELECT name FROM weir_catalog.sinks").await,
        vec!["nowhere", "pages"]
    );
    run(&client, "DROP MATERIALIZED VIEW per_page CASCADE").await;
    assert!(
        sorted_rows(&client, "SELECT name FROM weir_catalog.sinks")
            .await
            .is_empty()
    );
}

const NEXMARK_SOURCE: &str = "
    CREATE SOURCE bid (auction bigint, bidder bigint, price bigint, date_time timestamp,
                       WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
        WITH (connector = 'nexmark', nexmark.table = 'bid',
              nexmark.max_events = '40000', nexmark.throughput = '5000',
              nexmark.event_rate = '2000');";

const NEXMARK_VIEWS: &str = "
    CREATE MATERIALIZED VIEW per_window AS
        SELECT window_start, count(*) AS bids, max(price) AS top
        FROM tumble(bids_seen, date_time, INTERVAL '1' SECOND)
        GROUP BY window_start EMIT ON WINDOW CLOSE;
    CREATE MATERIALIZED VIEW per_auction AS
        SELECT auction, count(*) AS n, sum(price) AS total FROM bids_seen GROUP BY auction;";

/// The source and its one reader, `bids_seen` (the source starts with its
/// first reader: anything created later over the source itself would miss
/// what came before, a different amount in each run), then the views and
/// sinks over it, which start with its content.
fn nexmark_setup(out: &Files) -> String {
    let dir = out.path();
    format!(
        "{NEXMARK_SOURCE}
         CREATE MATERIALIZED VIEW bids_seen AS SELECT auction, bidder, price, date_time FROM bid;
         CREATE SINK bids FROM bids_seen
             WITH (connector = 'file', path = '{dir}', format = 'csv');
         {NEXMARK_VIEWS}
         CREATE SINK windows FROM per_window
             WITH (connector = 'file', path = '{dir}', format = 'jsonl');
         CREATE SINK auctions FROM per_auction
             WITH (connector = 'file', path = '{dir}', format = 'jsonl');"
    )
}

/// Whether every job has finished (the bounded source ended).
async fn all_finished(client: &Client) -> bool {
    let statuses = sorted_rows(client, "SELECT status FROM weir_catalog.jobs").await;
    !statuses.is_empty() && statuses.iter().all(|s| s == "finished")
}

/// The views and the sinks' files, once the source has ended.
async fn final_output(client: &Client, out: &Files<'_>) -> Vec<Vec<String>> {
    for _ in 0..600 {
        if all_finished(client).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(all_finished(client).await, "the jobs finish");
    // The sinks' last rows are staged and committed by a checkpoint.
    run(client, "CHECKPOINT").await;
    vec![
        sorted_rows(client, "SELECT * FROM per_window").await,
        sorted_rows(client, "SELECT * FROM per_auction").await,
        replay_changes(&json_rows(out, "windows"), &["window_start", "bids", "top"]),
        replay_changes(&json_rows(out, "auctions"), &["auction", "n", "total"]),
        csv_rows(out, "bids"),
    ]
}

/// The crash test: a Nexmark job with a windowed aggregate, an updating
/// aggregate and file sinks, the server killed (SIGKILL) five times while it
/// runs; once the input has ended, the views and the sinks' files equal
/// those of a run that never stopped: no row missing, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_sinks_survive_kill_9_exactly_once() {
    let out = tempfile::tempdir().expect("output");
    crash_test(Files::Dir(out.path().to_path_buf()), None).await;
}

/// The same with the checkpoints and the sinks' files in S3 (a real
/// S3-compatible server on loopback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_sinks_in_s3_survive_kill_9_exactly_once() {
    let s3 = S3Server::start();
    s3.create_bucket("weir-state");
    s3.create_bucket("weir-sinks");
    let files = Files::Bucket {
        s3: &s3,
        bucket: "weir-sinks",
        prefix: "crash",
    };
    crash_test(files, Some(&s3)).await;
    let keys = s3.keys("weir-state");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("crash/checkpoints/") && k.ends_with("manifest.json")),
        "checkpoints in the bucket: {keys:?}"
    );
}

/// Runs the Nexmark job once without a stop (files in a local directory),
/// then with five kills (files in `out`; with `s3`, the checkpoints in its
/// bucket `weir-state`), and compares.
async fn crash_test(out: Files<'_>, s3: Option<&S3Server>) {
    let expected = {
        let dir = tempfile::tempdir().expect("output");
        let files = Files::Dir(dir.path().to_path_buf());
        let server = TestServer::start().await;
        let client = server.connect("weir").await;
        run(&client, &nexmark_setup(&files)).await;
        final_output(&client, &files).await
    };
    let sizes: Vec<usize> = expected.iter().map(Vec::len).collect();
    assert!(
        sizes.iter().all(|n| *n > 0),
        "every output has rows: {sizes:?}"
    );
    assert_eq!(expected[0].len(), expected[2].len());

    let data = tempfile::tempdir().expect("data directory");
    let setup = Setup {
        data_dir: data.path().to_path_buf(),
        state_url: s3.map(|_| "s3://weir-state/crash".to_string()),
        env: s3.map(S3Server::env).unwrap_or_default(),
    };
    let mut server = Process::start(&setup);
    let client = server.connect().await;
    run(&client, &nexmark_setup(&out)).await;
    drop(client);
    for delay in [700u64, 450, 1100, 300, 850] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill_9();
        server = Process::start(&setup);
    }
    let client = server.connect().await;
    let restored = sorted_rows(
        &client,
        "SELECT epoch FROM weir_catalog.checkpoints WHERE status = 'restored'",
    )
    .await;
    assert_eq!(
        restored.len(),
        1,
        "the last start resumed from a checkpoint"
    );
    let got = final_output(&client, &out).await;
    let names = ["per_window", "per_auction", "windows", "auctions", "bids"];
    for ((name, got), expected) in names.iter().zip(&got).zip(&expected) {
        assert_eq!(
            got.len(),
            expected.len(),
            "{name}: {} rows, uninterrupted {}",
            got.len(),
            expected.len()
        );
        assert_eq!(got, expected, "{name}");
    }
    if s3.is_some() {
        // A bucket that is not there is refused when the sink is created.
        let (code, message) = error_code(
            &client,
            "CREATE SINK lost FROM per_auction \
             WITH (connector = 'file', path = 's3://no-such-bucket/out')",
        )
        .await;
        assert_eq!(code, "58030", "{message}");
        assert!(message.contains("no-such-bucket"), "{message}");
    }
}
