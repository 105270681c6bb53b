//! The load test's short run (the long one is `weir-bench load`, see
//! docs/benchmarks.md): 100 sessions against the `weir` binary for a few
//! seconds, mixing inserts into a table and a stream, batch selects,
//! `FLUSH` and continuous selects. No statement may fail, the table and the
//! materialized view must add up to what was acknowledged, and the server's
//! memory stays under a bound.

mod support;

use std::time::Duration;

use support::process::{Process, Setup};

/// The server's peak resident memory may not pass this (debug build).
const MEMORY_BOUND: u64 = 1 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sessions_of_mixed_statements() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Process::start(&Setup {
        data_dir: dir.path().to_path_buf(),
        state_url: None,
        // The sessions and the one that checks the content.
        env: vec![("WEIR_MAX_CONNECTIONS", "200".to_string())],
    });
    let addr = format!("127.0.0.1:{}", server.port)
        .parse()
        .expect("address");
    let report = weir_bench::load::run(addr, 100, Duration::from_secs(8)).await;
    let peak = server.peak_rss().expect("the server's memory");
    eprintln!(
        "load: {} statements, {:.0}/s, p99 {:?}, rows {}, server peak RSS {} MiB",
        report.statements(),
        report.statements_per_second(),
        report.overall(99.0),
        report.rows_acknowledged,
        peak >> 20
    );
    assert!(report.errors.is_empty(), "errors: {:#?}", report.errors);
    assert_eq!(report.consistent, Ok(()));
    for (kind, latencies) in &report.latencies {
        assert!(latencies.count() > 0, "no {} ran", kind.name());
    }
    assert!(report.rows_acknowledged > 0);
    assert!(peak < MEMORY_BOUND, "the server took {} MiB", peak >> 20);
}
