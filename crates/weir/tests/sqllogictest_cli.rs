//! The stock sqllogictest CLI (`sqllogictest-bin`, as users install it) runs
//! part of Weir's suite against a Weir server, with both of its Postgres
//! engines (simple and extended protocol) and with `-j`, which creates and
//! drops a database per file.

mod support;

use std::process::Command;

use support::{TestServer, repo_root, require_program};

/// Files whose values read the same through both engines (the extended
/// engine prints floats and timestamps its own way, on any server).
const FILES: &[&str] = &[
    "sql-tests/postgres/ddl.slt",
    "sql-tests/postgres/dml.slt",
    "sql-tests/postgres/errors.slt",
    "sql-tests/postgres/queries.slt",
    "sql-tests/postgres/session.slt",
];

async fn run_cli(engine: &'static str) {
    let cli = require_program("sqllogictest");
    let server = TestServer::start().await;
    let port = server.addr().port();
    let root = repo_root();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(cli)
            .current_dir(&root)
            .args([
                "--engine",
                engine,
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .args(["-u", "weir", "-d", "weir", "-j", "2", "--color", "never"])
            .args(FILES)
            .output()
            .expect("run sqllogictest")
    })
    .await
    .expect("sqllogictest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sqllogictest --engine {engine} failed\n{stdout}\n{stderr}"
    );
    // It ran every file, each in a database of its own that it then dropped.
    for file in FILES {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with(file) && line.contains("[OK]")),
            "{file} did not pass:\n{stdout}"
        );
    }
    let client = server.connect("weir").await;
    let databases = client
        .query("SELECT datname FROM pg_database", &[])
        .await
        .expect("list databases");
    let names: Vec<String> = databases.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["weir"], "the per-file databases were dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_cli_simple_protocol() {
    run_cli("postgres").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_cli_extended_protocol() {
    run_cli("postgres-extended").await;
}
