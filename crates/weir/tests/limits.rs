//! Limits that keep one client from taking the server down: the per-query
//! memory limit turns a query too large for it into error 53200 (or, for
//! sorts and aggregations, a spill to disk with the right answer), and the
//! session and the server go on.

mod support;

use support::{TestServer, sorted_rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_memory_limit_fails_with_53200_and_the_server_goes_on() {
    let server = TestServer::start_with(|config| config.query_memory_limit = Some(8 << 20)).await;
    let client = server.connect("weir").await;

    // A hash join's build side cannot spill: 2 million keys do not fit in
    // 8 MiB.
    let error = client
        .simple_query(
            "SELECT count(*) FROM generate_series(1, 2000000) a(x) \
             JOIN generate_series(1, 2000000) b(y) ON x = y",
        )
        .await
        .expect_err("over the memory limit");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53200", "{db:?}");
    assert!(
        db.hint()
            .is_some_and(|h| h.contains("--query-memory-limit")),
        "{db:?}"
    );

    // An aggregation with more groups than fit, and a sort larger than the
    // limit, spill to disk and are right.
    assert_eq!(
        sorted_rows(
            &client,
            "SELECT count(*), sum(n) FROM (SELECT x % 400000 AS g, count(*) AS n \
             FROM generate_series(1, 800000) s(x) GROUP BY x % 400000) t"
        )
        .await,
        ["400000 | 800000"]
    );
    assert_eq!(
        sorted_rows(
            &client,
            "SELECT sum(y) FROM (SELECT lag(x) OVER (ORDER BY x DESC) AS y \
             FROM generate_series(1, 1000000) s(x)) t"
        )
        .await,
        [(1_000_000i64 * 1_000_001 / 2 - 1).to_string()]
    );

    // The session and other sessions go on.
    assert_eq!(sorted_rows(&client, "SELECT 40 + 2").await, ["42"]);
    let other = server.connect("weir").await;
    assert_eq!(
        sorted_rows(&other, "SELECT count(*) FROM generate_series(1, 1000)").await,
        ["1000"]
    );
}
