//! Durable writes: the `weir` binary is killed with SIGKILL while clients
//! write, and started again on the same data directory. Every acknowledged
//! write must be back, no write twice, and the materialized views must equal
//! the same queries run in batch over the rows that are back. Once with
//! checkpoints in the data directory, once in a real S3-compatible server.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use support::process::{Process, Setup};
use support::s3::S3Server;
use support::sorted_rows;
use tokio_postgres::Client;

/// What a writer knows: the rows acknowledged, and the statement that was
/// running when the server died (applied or not: it was never acknowledged).
#[derive(Default)]
struct TableModel {
    rows: BTreeMap<i64, i64>,
    in_flight: Option<Write>,
}

#[derive(Clone, Copy, Debug)]
enum Write {
    Insert(i64, i64),
    Update(i64),
    Delete(i64),
}

impl TableModel {
    fn apply(rows: &mut BTreeMap<i64, i64>, write: Write) {
        match write {
            Write::Insert(id, v) => {
                rows.insert(id, v);
            }
            Write::Update(id) => {
                if let Some(v) = rows.get_mut(&id) {
                    *v *= 10;
                }
            }
            Write::Delete(id) => {
                rows.remove(&id);
            }
        }
    }

    /// The contents the table may have now.
    fn possible(&self) -> Vec<BTreeMap<i64, i64>> {
        let mut with = self.rows.clone();
        if let Some(write) = self.in_flight {
            Self::apply(&mut with, write);
            vec![self.rows.clone(), with]
        } else {
            vec![self.rows.clone()]
        }
    }

    /// Takes the content found after the restart as the truth.
    fn settle(&mut self, found: BTreeMap<i64, i64>) {
        self.rows = found;
        self.in_flight = None;
    }
}

/// Writes to the table until the server dies.
async fn write_table(client: Client, model: &mut TableModel, next_id: &mut i64) {
    loop {
        let id = *next_id;
        let write = if id % 7 == 0 && model.rows.contains_key(&(id - 3)) {
            Write::Update(id - 3)
        } else if id % 11 == 0 && model.rows.contains_key(&(id - 5)) {
            Write::Delete(id - 5)
        } else {
            Write::Insert(id, id)
        };
        model.in_flight = Some(write);
        *next_id += 1;
        let result = match write {
            Write::Insert(id, v) => {
                client
                    .execute("INSERT INTO acct VALUES ($1, $2)", &[&id, &v])
                    .await
            }
            Write::Update(id) => {
                client
                    .execute("UPDATE acct SET v = v * 10 WHERE id = $1", &[&id])
                    .await
            }
            Write::Delete(id) => {
                client
                    .execute("DELETE FROM acct WHERE id = $1", &[&id])
                    .await
            }
        };
        if result.is_err() {
            return; // the server died: the write may or may not be in
        }
        TableModel::apply(&mut model.rows, write);
        model.in_flight = None;
    }
}

/// Writes events to the stream until the server dies; returns the event
/// numbers acknowledged and the one in flight.
async fn write_stream(client: Client, next: &mut i64, acked: &mut Vec<i64>) -> Option<i64> {
    loop {
        let n = *next;
        let k = (n % 5) as i32;
        let result = client
            .execute("INSERT INTO events VALUES ($1, $2)", &[&k, &n])
            .await;
        *next += 1;
        if result.is_err() {
            return Some(n);
        }
        acked.push(n);
    }
}

async fn table_rows(client: &Client) -> BTreeMap<i64, i64> {
    client
        .query("SELECT id, v FROM acct", &[])
        .await
        .expect("read acct")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("data directory");
    let setup = Setup {
        data_dir: dir.path().to_path_buf(),
        state_url: None,
        env: Vec::new(),
    };
    let restored = kill_9_rounds(&setup).await;
    assert!(restored > 0, "some restart resumed from a checkpoint");
    assert!(
        dir.path().join("checkpoints").is_dir(),
        "checkpoints are in the data directory by default"
    );
}

/// The same with checkpoints in a real S3-compatible server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_with_state_in_s3() {
    let s3 = S3Server::start();
    s3.create_bucket("weir-state");
    let dir = tempfile::tempdir().expect("data directory");
    let setup = Setup {
        data_dir: dir.path().to_path_buf(),
        state_url: Some("s3://weir-state/instance-1".into()),
        env: s3.env(),
    };
    let restored = kill_9_rounds(&setup).await;
    assert!(restored > 0, "some restart resumed from a checkpoint in S3");
    assert!(
        !dir.path().join("checkpoints").exists(),
        "no checkpoint went to the data directory"
    );
    let keys = s3.keys("weir-state");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("instance-1/checkpoints/") && k.ends_with("/manifest.json")),
        "committed checkpoints are in the bucket under the prefix: {keys:?}"
    );
}

/// A bucket that does not exist: the server says so and exits, at once.
#[test]
fn a_missing_bucket_stops_the_start_with_a_clear_error() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("data directory");
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--state-url", "s3://no-such-bucket/weir"])
        .envs(s3.env())
        .env("NO_COLOR", "1")
        .output()
        .expect("run the weir binary");
    assert!(!output.status.success(), "the server must not start");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        log.contains("cannot use the checkpoint storage s3://no-such-bucket/weir")
            && log.contains("NoSuchBucket"),
        "{log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the error comes without retrying for long"
    );
}

/// Clients write to a table and a stream while the server is killed five
/// times; after each restart the acknowledged writes are back, once. Returns
/// how many checkpoints the last server lists as restored.
async fn kill_9_rounds(setup: &Setup) -> usize {
    let mut server = Process::start(setup);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE acct (id bigint PRIMARY KEY, v bigint);
             CREATE STREAM events (k int, n bigint);
             CREATE MATERIALIZED VIEW event_rows AS SELECT k, n FROM events;
             CREATE MATERIALIZED VIEW event_totals AS
               SELECT k, count(*) AS c, sum(n) AS s FROM events GROUP BY k;
             CREATE MATERIALIZED VIEW acct_totals AS SELECT count(*) AS c, sum(v) AS s FROM acct;",
        )
        .await
        .expect("create the objects");
    drop(client);

    let mut model = TableModel::default();
    let mut next_id = 1;
    let mut next_event = 1;
    let mut acked_events = Vec::new();
    let mut maybe_events = Vec::new();
    // Kill at moments that differ between rounds.
    let delays = [350u64, 120, 800, 230, 500];
    for delay in delays {
        let table_client = server.connect().await;
        let stream_client = server.connect().await;
        let killer = async {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        };
        let table_writer = write_table(table_client, &mut model, &mut next_id);
        let stream_writer = write_stream(stream_client, &mut next_event, &mut acked_events);
        let (_, _, in_flight) = tokio::join!(
            async {
                killer.await;
                server.kill_9();
            },
            table_writer,
            stream_writer
        );
        maybe_events.extend(in_flight);
        server = Process::start(setup);
        let client = server.connect().await;

        let found = table_rows(&client).await;
        assert!(
            model.possible().contains(&found),
            "after kill -9 #{delay}: acct holds {} rows, expected {} acknowledged (in flight: {:?})",
            found.len(),
            model.rows.len(),
            model.in_flight
        );
        model.settle(found);

        client.batch_execute("FLUSH").await.expect("flush");
        let landed: Vec<i64> = client
            .query("SELECT n FROM event_rows ORDER BY n", &[])
            .await
            .expect("read event_rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut expected = acked_events.clone();
        for n in &landed {
            if !acked_events.contains(n) {
                assert!(
                    maybe_events.contains(n),
                    "event {n} is back but was never written"
                );
                expected.push(*n);
            }
        }
        expected.sort();
        assert_eq!(landed, expected, "every acknowledged event once, no other");
        acked_events = expected;
        maybe_events.clear();
    }
    assert!(model.rows.len() > 10, "the table writer made progress");
    assert!(acked_events.len() > 10, "the stream writer made progress");

    // The views equal the same queries in batch over the rows that are back.
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        sorted_rows(&client, "SELECT k, c, s FROM event_totals").await,
        sorted_rows(
            &client,
            "SELECT k, count(*), sum(n) FROM event_rows GROUP BY k"
        )
        .await
    );
    assert_eq!(
        sorted_rows(&client, "SELECT c, s FROM acct_totals").await,
        sorted_rows(&client, "SELECT count(*), sum(v) FROM acct").await
    );
    sorted_rows(
        &client,
        "SELECT epoch FROM weir_catalog.checkpoints WHERE status = 'restored'",
    )
    .await
    .len()
}
