//! The real `psql` against Weir: meta commands, a query and an error print
//! what they print against PostgreSQL 15 (the same script runs on both and
//! the outputs are compared).

mod support;

use std::path::Path;
use std::process::Command;

use support::postgres::PostgresServer;
use support::{TestServer, require_program};

const SCRIPT: &str = r#"
SET TimeZone = 'UTC';
CREATE TABLE t (id int PRIMARY KEY, name varchar(10), price numeric(10,2), ts timestamptz);
CREATE TABLE plain (a bigint, b text NOT NULL);
CREATE VIEW v AS SELECT id, name FROM t;
INSERT INTO t VALUES (1, 'a', 1.5, '2022-01-01 10:00:00+00'), (2, NULL, 20, NULL);
\dt
\d
\dv
\dn
\d t
\d plain
\d v
SELECT * FROM t ORDER BY id;
SELECT count(*), sum(price) FROM t;
"#;

/// Runs a script through `psql -f`, one command at a time as a user types
/// them; returns what psql printed (stdout, then stderr).
fn psql(psql: &Path, port: u16, db: &str, script: &str) -> String {
    let file = tempfile::NamedTempFile::new().expect("script file");
    std::fs::write(file.path(), script).expect("write the script");
    let output = Command::new(psql)
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "weir",
            "-d",
            db,
        ])
        .args(["-v", "ON_ERROR_STOP=0", "-f"])
        .arg(file.path())
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_prints_what_it_prints_against_postgresql() {
    let psql_bin = require_program("psql");
    let weir = TestServer::start().await;
    let postgres = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("start PostgreSQL");
    // On PostgreSQL, the same user and database names as Weir's defaults.
    let admin = postgres.connect("postgres").await;
    for statement in [
        "CREATE ROLE weir SUPERUSER LOGIN",
        "CREATE DATABASE weir OWNER weir",
    ] {
        admin
            .batch_execute(statement)
            .await
            .expect("create the weir role and database");
    }

    let weir_port = weir.addr().port();
    let weir_out = tokio::task::spawn_blocking({
        let psql_bin = psql_bin.clone();
        move || psql(&psql_bin, weir_port, "weir", SCRIPT)
    })
    .await
    .expect("psql on Weir");
    let pg_port = postgres.port;
    let pg_out = tokio::task::spawn_blocking({
        let psql_bin = psql_bin.clone();
        move || psql(&psql_bin, pg_port, "weir", SCRIPT)
    })
    .await
    .expect("psql on PostgreSQL");
    assert_eq!(
        weir_out, pg_out,
        "psql output differs\n--- Weir ---\n{weir_out}\n--- PostgreSQL ---\n{pg_out}"
    );
    // The comparison is only worth something if the script did its work.
    assert!(
        weir_out.contains("\"t_pkey\" PRIMARY KEY, btree (id)"),
        "{weir_out}"
    );
    assert!(weir_out.contains("character varying(10)"), "{weir_out}");
    assert!(weir_out.contains("2022-01-01 10:00:00+00"), "{weir_out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_shows_errors_and_databases() {
    let psql_bin = require_program("psql");
    let weir = TestServer::start().await;
    let port = weir.addr().port();
    let out = tokio::task::spawn_blocking(move || {
        let error = psql(&psql_bin, port, "weir", "SELEC 1;");
        let missing = psql(&psql_bin, port, "weir", "SELECT * FROM nope;");
        let databases = psql(&psql_bin, port, "weir", "\\l");
        let unknown_db = psql(&psql_bin, port, "nope", "SELECT 1;");
        (error, missing, databases, unknown_db)
    })
    .await
    .expect("psql");
    let (error, missing, databases, unknown_db) = out;
    assert!(
        error.contains("ERROR:  syntax error at or near \"SELEC\"\nLINE 1: SELEC 1;\n        ^"),
        "{error}"
    );
    assert!(
        missing.contains("ERROR:  relation \"nope\" does not exist\n"),
        "{missing}"
    );
    assert!(databases.contains("List of databases"), "{databases}");
    assert!(
        databases.contains(" weir | weir  | UTF8     | C.UTF-8 | C.UTF-8 |"),
        "{databases}"
    );
    assert!(
        unknown_db.contains("FATAL:  database \"nope\" does not exist"),
        "{unknown_db}"
    );
}
