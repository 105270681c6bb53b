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

/// With `\set FETCH_COUNT`, psql reads a continuous query through a cursor
/// and prints its rows as they come, before the query ends (it never does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_prints_continuous_rows_as_they_come() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    let server = TestServer::start().await;
    let writer = server.connect("weir").await;
    writer
        .batch_execute("CREATE STREAM s (k int, v text)")
        .await
        .expect("create the stream");
    let mut child = Command::new(require_program("psql"))
        .args(["-X", "-h", "127.0.0.1", "-p"])
        .arg(server.addr().port().to_string())
        .args(["-U", "weir", "-d", "weir"])
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start psql");
    let mut stdin = child.stdin.take().expect("psql's stdin");
    writeln!(stdin, "\\set FETCH_COUNT 2").expect("write");
    writeln!(stdin, "SELECT k, v FROM s WHERE k > 0;").expect("write");
    stdin.flush().expect("flush");
    // psql's lines, read as it prints them.
    let stdout = child.stdout.take().expect("psql's stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Rows go only to a query already reading the stream: insert until
    // psql has printed the first two.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut k = 1;
    while seen.len() < 2 && tokio::time::Instant::now() < deadline {
        writer
            .batch_execute(&format!(
                "INSERT INTO s VALUES ({k}, 'row{k}'), (-1, 'skipped')"
            ))
            .await
            .expect("insert");
        k += 1;
        if let Ok(Some(line)) =
            tokio::time::timeout(std::time::Duration::from_millis(300), lines.recv()).await
            && line.contains("| row")
        {
            seen.push(line);
        }
        while let Ok(line) = lines.try_recv() {
            if line.contains("| row") {
                seen.push(line);
            }
        }
    }
    // psql is still running the query: it printed rows before any end.
    assert!(
        child.try_wait().expect("psql status").is_none(),
        "psql ended"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.len() >= 2, "psql printed {seen:?}");
    // Consecutive rows of the stream, each with its own value.
    let parse = |line: &str| -> (i32, String) {
        let mut parts = line.split('|').map(str::trim);
        let k = parts.next().and_then(|k| k.parse().ok()).expect("k");
        (k, parts.next().expect("v").to_string())
    };
    let (first, first_v) = parse(&seen[0]);
    let (second, second_v) = parse(&seen[1]);
    assert_eq!(second, first + 1);
    assert_eq!(first_v, format!("row{first}"));
    assert_eq!(second_v, format!("row{second}"));
}
