//! The batch oracle: a materialized view, after its input has ended and the
//! watermark has passed, holds what DataFusion computes in batch for the
//! equivalent SQL over the same rows.
//!
//! Each case pairs a streaming query (over a stream with event time, fed
//! by INSERTs in random batches, out of order within the watermark's bound)
//! with a batch query over a plain table holding the same rows, in which
//! windows are spelled with ordinary SQL (`date_bin`, a join for hopping
//! windows, `lag` and running sums for sessions), so that the window kernels
//! are checked too. Window joins (Nexmark q5, q7 and q8 in small) are
//! compared over the windows closed. Every case runs over
//! several random inputs. Updating aggregates are checked the same way over
//! a table that receives random inserts, updates and deletes.

mod support;

use support::{TestServer, sorted_rows};
use tokio_postgres::Client;

/// A small deterministic generator (xorshift), so that failures replay.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn run(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Bound of out-of-order arrival, in seconds; the watermark lags this much.
const BOUND_SECONDS: u64 = 5;

/// Random events `(k, v, second)`: one every two seconds, each up to four
/// seconds late, so never behind the watermark; some values NULL.
fn events(random: &mut Random, count: u64) -> Vec<(u64, Option<i64>, u64)> {
    (0..count)
        .map(|i| {
            let k = random.below(4);
            let v = match random.below(10) {
                0 => None,
                _ => Some(random.below(100) as i64 - 30),
            };
            (k, v, i * 2 + random.below(BOUND_SECONDS))
        })
        .collect()
}

fn values(events: &[(u64, Option<i64>, u64)]) -> String {
    events
        .iter()
        .map(|(k, v, s)| {
            let v = v.map_or("NULL".to_string(), |v| v.to_string());
            format!("({k}, {v}, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL '{s} seconds')")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A windowed case: the view's query over stream `s`, and the batch query
/// over table `t`. `eowc`: the view emits on window close, so only windows
/// the final watermark has closed are compared (`window_end` is an output):
/// those whose end is `<=` the watermark (fixed windows), or `<` it
/// (sessions, which a row at the watermark could still extend).
struct Case {
    name: &'static str,
    streaming: &'static str,
    batch: &'static str,
    eowc: Option<&'static str>,
}

/// Sessions spelled with window functions: a row starts a new session when
/// it comes more than GAP after the previous row of its partition.
const SESSION_BATCH: &str = "(SELECT *, min(ts) OVER (PARTITION BY PARTITION_KEYS sid) AS window_start, \
     max(ts) OVER (PARTITION BY PARTITION_KEYS sid) + INTERVAL 'GAP' AS window_end FROM \
     (SELECT *, sum(new) OVER (PARTITION BY PARTITION_KEYS 1 ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid FROM \
      (SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY PARTITION_KEYS 1 ORDER BY ts) <= INTERVAL 'GAP' \
       THEN 0 ELSE 1 END AS new FROM t) a) b)";

const TUMBLE_BATCH: &str = "(SELECT *, date_bin(INTERVAL '10 seconds', ts, TIMESTAMP '1970-01-01') AS window_start, \
     date_bin(INTERVAL '10 seconds', ts, TIMESTAMP '1970-01-01') + INTERVAL '10 seconds' AS window_end FROM t)";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "tumble aggregates",
            streaming: "SELECT k, window_start, window_end, count(*) AS n, count(v) AS nv, sum(v) AS total, \
                        min(v) AS low, max(v) AS high, avg(v) AS mean \
                        FROM tumble(s, ts, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end",
            batch: "SELECT k, window_start, window_end, count(*), count(v), sum(v), min(v), max(v), avg(v) \
                    FROM TUMBLE_BATCH GROUP BY k, window_start, window_end",
            eowc: None,
        },
        Case {
            name: "tumble aggregates, emitted on window close",
            streaming: "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS total, max(v) AS high \
                        FROM tumble(s, ts, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end \
                        EMIT ON WINDOW CLOSE",
            batch: "SELECT k, window_start, window_end, count(*), sum(v), max(v) \
                    FROM TUMBLE_BATCH GROUP BY k, window_start, window_end",
            eowc: Some("<="),
        },
        Case {
            name: "hop with count distinct",
            streaming: "SELECT window_start, window_end, count(DISTINCT k) AS keys, count(*) AS n \
                        FROM hop(s, ts, INTERVAL '5' SECOND, INTERVAL '15' SECOND) GROUP BY window_start, window_end",
            batch: "SELECT window_start, window_end, count(DISTINCT k), count(*) FROM \
                    (SELECT t.k, date_bin(INTERVAL '5 seconds', t.ts, TIMESTAMP '1970-01-01') - o.back AS window_start, \
                            date_bin(INTERVAL '5 seconds', t.ts, TIMESTAMP '1970-01-01') - o.back + INTERVAL '15 seconds' AS window_end \
                     FROM t CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '5 seconds'), (INTERVAL '10 seconds')) AS o(back)) w \
                    GROUP BY window_start, window_end",
            eowc: None,
        },
        Case {
            name: "hop emitted on window close, Flink syntax",
            streaming: "SELECT window_start, window_end, sum(v) AS total \
                        FROM TABLE(HOP(TABLE s, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) \
                        GROUP BY window_start, window_end EMIT ON WINDOW CLOSE",
            batch: "SELECT window_start, window_end, sum(v) FROM \
                    (SELECT t.v, date_bin(INTERVAL '5 seconds', t.ts, TIMESTAMP '1970-01-01') - o.back AS window_start, \
                            date_bin(INTERVAL '5 seconds', t.ts, TIMESTAMP '1970-01-01') - o.back + INTERVAL '10 seconds' AS window_end \
                     FROM t CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '5 seconds')) AS o(back)) w \
                    GROUP BY window_start, window_end",
            eowc: Some("<="),
        },
        Case {
            name: "filter, expressions and HAVING",
            streaming: "SELECT k % 2 AS parity, window_start, count(*) AS n, sum(v * 2 + 1) AS weighted \
                        FROM tumble(s, ts, INTERVAL '20' SECOND) WHERE v IS NOT NULL AND v > -10 \
                        GROUP BY k % 2, window_start HAVING count(*) > 1",
            batch: "SELECT k % 2, window_start, count(*), sum(v * 2 + 1) FROM \
                    (SELECT *, date_bin(INTERVAL '20 seconds', ts, TIMESTAMP '1970-01-01') AS window_start FROM t) w \
                    WHERE v IS NOT NULL AND v > -10 GROUP BY k % 2, window_start HAVING count(*) > 1",
            eowc: None,
        },
        Case {
            name: "UNION ALL of two windowed aggregates",
            streaming: "SELECT 'small' AS kind, window_start, count(*) AS n FROM tumble(s, ts, INTERVAL '10' SECOND) \
                        WHERE v < 20 GROUP BY window_start \
                        UNION ALL \
                        SELECT 'big', window_start, count(*) FROM tumble(s, ts, INTERVAL '30' SECOND) \
                        WHERE v >= 20 GROUP BY window_start",
            batch: "SELECT 'small', window_start, count(*) FROM TUMBLE_BATCH WHERE v < 20 GROUP BY window_start \
                    UNION ALL \
                    SELECT 'big', window_start, count(*) FROM \
                    (SELECT *, date_bin(INTERVAL '30 seconds', ts, TIMESTAMP '1970-01-01') AS window_start FROM t) w \
                    WHERE v >= 20 GROUP BY window_start",
            eowc: None,
        },
        Case {
            name: "sessions per key",
            streaming: "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS total, max(v) AS high \
                        FROM session(s, ts, INTERVAL '7' SECOND) GROUP BY k, window_start, window_end",
            batch: "SELECT k, window_start, window_end, count(*), sum(v), max(v) \
                    FROM SESSION_BATCH(k,7 seconds) GROUP BY k, window_start, window_end",
            eowc: None,
        },
        Case {
            name: "sessions per key emitted on window close, Flink syntax",
            streaming: "SELECT window_start, k, window_end, count(DISTINCT v) AS values, avg(v) AS mean \
                        FROM TABLE(SESSION(TABLE s PARTITION BY k, DESCRIPTOR(ts), INTERVAL '9' SECOND)) \
                        GROUP BY k, window_start, window_end EMIT ON WINDOW CLOSE",
            batch: "SELECT window_start, k, window_end, count(DISTINCT v), avg(v) \
                    FROM SESSION_BATCH(k,9 seconds) GROUP BY k, window_start, window_end",
            eowc: Some("<"),
        },
        Case {
            name: "sessions over all rows",
            streaming: "SELECT window_start, window_end, count(*) AS n, min(v) AS low \
                        FROM session(s, ts, INTERVAL '3' SECOND) GROUP BY window_start, window_end",
            batch: "SELECT window_start, window_end, count(*), min(v) \
                    FROM SESSION_BATCH(,3 seconds) GROUP BY window_start, window_end",
            eowc: None,
        },
        Case {
            name: "window join of an aggregate with its maximum per window (Nexmark q5)",
            streaming: "SELECT a.k, a.window_start, a.window_end, a.n FROM \
                        (SELECT k, window_start, window_end, count(*) AS n FROM tumble(s, ts, INTERVAL '10' SECOND) \
                         GROUP BY k, window_start, window_end) AS a \
                        JOIN (SELECT window_start, max(n) AS top FROM \
                              (SELECT k, window_start, count(*) AS n FROM tumble(s, ts, INTERVAL '10' SECOND) \
                               GROUP BY k, window_start) AS c GROUP BY window_start) AS m \
                        ON a.window_start = m.window_start AND a.n >= m.top",
            batch: "SELECT a.k, a.window_start, a.window_end, a.n FROM \
                    (SELECT k, window_start, window_end, count(*) AS n FROM TUMBLE_BATCH AS w \
                     GROUP BY k, window_start, window_end) AS a \
                    JOIN (SELECT window_start, max(n) AS top FROM \
                          (SELECT k, window_start, count(*) AS n FROM TUMBLE_BATCH AS w GROUP BY k, window_start) AS c \
                          GROUP BY window_start) AS m \
                    ON a.window_start = m.window_start AND a.n >= m.top",
            eowc: Some("<="),
        },
        Case {
            name: "window join of rows with their window's maximum (Nexmark q7)",
            streaming: "SELECT b.k, b.v, b.ts, b.window_end FROM tumble(s, ts, INTERVAL '10' SECOND) AS b \
                        JOIN (SELECT window_start, max(v) AS top FROM tumble(s, ts, INTERVAL '10' SECOND) \
                              GROUP BY window_start) AS m \
                        ON b.window_start = m.window_start AND b.v = m.top",
            batch: "SELECT b.k, b.v, b.ts, b.window_end FROM TUMBLE_BATCH AS b \
                    JOIN (SELECT window_start, max(v) AS top FROM TUMBLE_BATCH AS w GROUP BY window_start) AS m \
                    ON b.window_start = m.window_start AND b.v = m.top",
            eowc: Some("<="),
        },
        Case {
            name: "left window join on a key and the window (Nexmark q8)",
            streaming: "SELECT x.k, x.window_start, x.window_end, x.n, y.total FROM \
                        (SELECT k, window_start, window_end, count(*) AS n FROM tumble(s, ts, INTERVAL '10' SECOND) \
                         GROUP BY k, window_start, window_end) AS x \
                        LEFT JOIN (SELECT k, window_end, sum(v) AS total FROM tumble(s, ts, INTERVAL '10' SECOND) \
                                   WHERE v > 20 GROUP BY k, window_end) AS y \
                        ON x.k = y.k AND x.window_end = y.window_end",
            batch: "SELECT x.k, x.window_start, x.window_end, x.n, y.total FROM \
                    (SELECT k, window_start, window_end, count(*) AS n FROM TUMBLE_BATCH AS w \
                     GROUP BY k, window_start, window_end) AS x \
                    LEFT JOIN (SELECT k, window_end, sum(v) AS total FROM TUMBLE_BATCH AS w \
                               WHERE v > 20 GROUP BY k, window_end) AS y \
                    ON x.k = y.k AND x.window_end = y.window_end",
            eowc: Some("<="),
        },
        Case {
            name: "projection without aggregation",
            streaming: "SELECT k, v, ts + INTERVAL '1' HOUR AS later, upper('k' || k) AS label FROM s WHERE k <> 1",
            batch: "SELECT k, v, ts + INTERVAL '1' HOUR, upper('k' || k) FROM t WHERE k <> 1",
            eowc: None,
        },
    ]
}

/// Expands `SESSION_BATCH(keys,gap)` into the sessions of `t`.
fn session_batch(sql: &str) -> String {
    let Some(at) = sql.find("SESSION_BATCH(") else {
        return sql.to_string();
    };
    let args_at = at + "SESSION_BATCH(".len();
    let close = args_at + sql[args_at..].find(')').expect("SESSION_BATCH(keys,gap)");
    let (keys, gap) = sql[args_at..close]
        .split_once(',')
        .expect("SESSION_BATCH(keys,gap)");
    let keys = if keys.is_empty() {
        String::new()
    } else {
        format!("{keys}, ")
    };
    let expanded = SESSION_BATCH
        .replace("PARTITION_KEYS ", &keys)
        .replace("GAP", gap);
    format!("{}{expanded}{}", &sql[..at], &sql[close + 1..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_views_match_batch_results() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    for seed in 1..=4u64 {
        let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ seed);
        let input = events(&mut random, 150);
        // Keyed operators with 1, 2 or 3 subtasks give the same results.
        run(
            &client,
            &format!("SET streaming_parallelism = {}", 1 + seed % 3),
        )
        .await;
        run(
            &client,
            &format!(
                "CREATE STREAM s (k int, v bigint, ts timestamp, \
                 WATERMARK FOR ts AS ts - INTERVAL '{BOUND_SECONDS}' SECOND); \
                 CREATE TABLE t (k int, v bigint, ts timestamp)"
            ),
        )
        .await;
        let cases = cases();
        for (i, case) in cases.iter().enumerate() {
            run(
                &client,
                &format!("CREATE MATERIALIZED VIEW v{i} AS {}", case.streaming),
            )
            .await;
        }
        // Also a view over a view: the per-window totals of the first one.
        run(
            &client,
            "CREATE MATERIALIZED VIEW totals AS SELECT window_start, sum(n) AS n FROM v0 GROUP BY window_start",
        )
        .await;
        // The same rows into the stream, in random batches, and into the table.
        let mut at = 0;
        while at < input.len() {
            let size = (1 + random.below(20) as usize).min(input.len() - at);
            let batch = values(&input[at..at + size]);
            run(
                &client,
                &format!("INSERT INTO s VALUES {batch}; INSERT INTO t VALUES {batch}"),
            )
            .await;
            at += size;
        }
        run(&client, "FLUSH").await;
        let watermark = sorted_rows(
            &client,
            "SELECT watermark::timestamp FROM weir_catalog.sources WHERE name = 's'",
        )
        .await;
        let watermark = watermark
            .first()
            .expect("the stream has a watermark")
            .clone();
        for (i, case) in cases.iter().enumerate() {
            let batch = session_batch(&case.batch.replace("TUMBLE_BATCH", TUMBLE_BATCH));
            let batch = match case.eowc {
                Some(closed) => format!(
                    "SELECT * FROM ({batch}) b WHERE window_end {closed} TIMESTAMP '{watermark}'"
                ),
                None => batch,
            };
            let expected = sorted_rows(&client, &batch).await;
            let actual = sorted_rows(&client, &format!("SELECT * FROM v{i}")).await;
            assert!(
                !expected.is_empty(),
                "{}: the oracle has no rows",
                case.name
            );
            assert_eq!(actual, expected, "{} (seed {seed})", case.name);
        }
        let expected = sorted_rows(
            &client,
            &format!("SELECT window_start, count(*) FROM {TUMBLE_BATCH} w GROUP BY window_start"),
        )
        .await;
        let actual = sorted_rows(&client, "SELECT * FROM totals").await;
        assert_eq!(actual, expected, "view over a view (seed {seed})");
        run(&client, "DROP STREAM s CASCADE; DROP TABLE t").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_views_match_batch_results() {
    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let queries = [
        "SELECT k, count(*) AS n, sum(v) AS total, min(v) AS low, max(v) AS high, count(DISTINCT v) AS distinct_v \
         FROM acc GROUP BY k",
        "SELECT count(*) AS n, sum(v) AS total, max(v) AS high FROM acc",
        "SELECT k, sum(v) AS total FROM acc WHERE v > 0 GROUP BY k HAVING sum(v) > 50",
        "SELECT id, k, v * 10 AS v10 FROM acc WHERE k <> 2",
    ];
    for seed in 1..=4u64 {
        let mut random = Random(0xD1B5_4A32_D192_ED03 ^ seed);
        run(
            &client,
            &format!("SET streaming_parallelism = {}", 1 + seed % 3),
        )
        .await;
        run(
            &client,
            "CREATE TABLE acc (id int PRIMARY KEY, k int, v int)",
        )
        .await;
        // Some rows before the views exist (backfill), the rest after.
        let mut next_id = 0;
        for _ in 0..20 {
            run(
                &client,
                &format!(
                    "INSERT INTO acc VALUES ({next_id}, {}, {})",
                    random.below(4),
                    random.below(100)
                ),
            )
            .await;
            next_id += 1;
        }
        for (i, query) in queries.iter().enumerate() {
            run(
                &client,
                &format!("CREATE MATERIALIZED VIEW u{i} AS {query}"),
            )
            .await;
        }
        for _ in 0..120 {
            let id = random.below(next_id.max(1) as u64);
            let statement = match random.below(6) {
                0..=2 => {
                    next_id += 1;
                    format!(
                        "INSERT INTO acc VALUES ({}, {}, {})",
                        next_id - 1,
                        random.below(4),
                        random.below(100)
                    )
                }
                3 => format!(
                    "UPDATE acc SET v = {} WHERE id = {id}",
                    random.below(100) as i64 - 20
                ),
                4 => format!("UPDATE acc SET k = {} WHERE id = {id}", random.below(4)),
                _ => format!("DELETE FROM acc WHERE id = {id} OR id = {}", id + 7),
            };
            run(&client, &statement).await;
        }
        run(&client, "FLUSH").await;
        for (i, query) in queries.iter().enumerate() {
            let expected = sorted_rows(&client, query).await;
            let actual = sorted_rows(&client, &format!("SELECT * FROM u{i}")).await;
            assert_eq!(actual, expected, "{query} (seed {seed})");
        }
        run(&client, "DROP TABLE acc CASCADE").await;
    }
}
