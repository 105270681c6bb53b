//! Authentication and TLS over real pgwire: SCRAM-SHA-256 passwords with
//! tokio-postgres (a wrong password and an unknown user both get Postgres'
//! `28P01`, an unknown database `3D000` only after the password), the real
//! `psql` over TLS with `sslmode=require` and channel binding, and the
//! `weir` binary refusing to listen beyond loopback without passwords.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use support::require_program;
use tokio_postgres::NoTls;
use weir_engine::{Engine, EngineConfig};
use weir_server::auth::{Tls, Users};
use weir_server::{Server, ServerOptions};

/// A server on a loopback port with users `weir` / `alice`, and TLS when
/// given a certificate and key.
async fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> SocketAddr {
    let engine = Engine::open(EngineConfig::new(dir.join("data")))
        .await
        .expect("open the engine");
    let users = Users::new([
        ("weir".to_string(), "s3cret".to_string()),
        ("alice".to_string(), "wonder:land".to_string()),
    ]);
    let tls = tls.map(|(cert, key)| Tls::load(cert, key).expect("load the certificate"));
    let options = ServerOptions {
        users: Some(users),
        tls,
        ..ServerOptions::default()
    };
    let server = Server::bind_with_options(engine, "127.0.0.1:0".parse().expect("addr"), options)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("address");
    tokio::spawn(server.run());
    addr
}

/// Connects as `user` with `password`; the error's SQLSTATE and message when
/// refused.
async fn login(
    addr: SocketAddr,
    user: &str,
    password: &str,
    database: &str,
) -> Result<tokio_postgres::Client, (String, String)> {
    let conn = format!(
        "host={} port={} user={user} password='{password}' dbname={database}",
        addr.ip(),
        addr.port()
    );
    match tokio_postgres::connect(&conn, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Err(e) => {
            let db = e.as_db_error().expect("a server error");
            Err((db.code().code().to_string(), db.message().to_string()))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_checked_by_scram_with_postgres_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let addr = start(dir.path(), None).await;

    let alice = login(addr, "alice", "wonder:land", "weir")
        .await
        .expect("the right password lets alice in");
    let row = alice
        .query_one("SELECT current_user, 40 + 2", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "alice");
    assert_eq!(row.get::<_, i64>(1), 42);

    let refused = |user: &str| {
        (
            "28P01".to_string(),
            format!("password authentication failed for user \"{user}\""),
        )
    };
    assert_eq!(
        login(addr, "alice", "wonderland", "weir").await.err(),
        Some(refused("alice")),
        "a wrong password"
    );
    assert_eq!(
        login(addr, "mallory", "wonder:land", "weir").await.err(),
        Some(refused("mallory")),
        "an unknown user is told the same as a wrong password"
    );
    assert_eq!(
        login(addr, "mallory", "x", "nope").await.err(),
        Some(refused("mallory")),
        "whether a database exists is not told before the password"
    );
    let Err((code, message)) = login(addr, "weir", "s3cret", "nope").await else {
        panic!("a database that does not exist was accepted");
    };
    assert_eq!(code, "3D000");
    assert_eq!(message, "database \"nope\" does not exist");

    // Sessions already open are not disturbed by the refused ones.
    let row = alice
        .query_one("SELECT 1::int", &[])
        .await
        .expect("still here");
    assert_eq!(row.get::<_, i32>(0), 1);
}

/// Runs psql with `conninfo`, the password from the environment; returns
/// (success, stdout + stderr).
fn psql(conninfo: &str, password: &str, script: &str) -> (bool, String) {
    let psql = require_program("psql");
    let output = Command::new(psql)
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
            "-c",
            script,
        ])
        .env("PGPASSWORD", password)
        .env_remove("PGSSLMODE")
        .output()
        .expect("run psql");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_over_tls_with_channel_binding() {
    let openssl = require_program("openssl");
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let status = Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(status.status.success(), "openssl: {status:?}");
    let addr = start(dir.path(), Some((&cert, &key))).await;
    let base = format!("host=127.0.0.1 port={} user=alice dbname=weir", addr.port());

    // TLS required, the server's certificate checked against itself as the
    // root, and SCRAM bound to the TLS channel.
    let conninfo = format!(
        "{base} sslmode=verify-ca sslrootcert={} channel_binding=require",
        cert.display()
    );
    let (ok, out) = psql(&conninfo, "wonder:land", "\\conninfo");
    assert!(ok, "{out}");
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");
    let (ok, out) = psql(&conninfo, "wonder:land", "SELECT current_user");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "alice");

    // A wrong password over TLS: the same refusal as in plain text.
    let (ok, out) = psql(&conninfo, "nope", "SELECT 1");
    assert!(!ok);
    assert!(
        out.contains("password authentication failed for user \"alice\""),
        "{out}"
    );

    // Channel binding cannot be had without TLS: psql refuses rather than
    // send the password's proof over an unbound channel.
    let (ok, out) = psql(
        &format!("{base} sslmode=disable channel_binding=require"),
        "wonder:land",
        "SELECT 1",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("channel binding"), "{out}");

    // Plain connections still work, with the password.
    let (ok, out) = psql(
        &format!("{base} sslmode=disable"),
        "wonder:land",
        "SELECT 7",
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "7");
}

/// The `weir` binary with `args`; (exit success, its log).
fn weir(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start weir");
    // A server that starts keeps running: stop it after a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("output");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (log.contains("listening on"), log)
}

#[test]
fn listening_beyond_loopback_needs_passwords_or_insecure() {
    let (listening, log) = weir(&["--listen", "0.0.0.0:0"], &[]);
    assert!(!listening, "{log}");
    assert!(
        log.contains("refusing to listen on 0.0.0.0:0 without passwords"),
        "{log}"
    );
    let (listening, log) = weir(&["--listen", "0.0.0.0:0", "--insecure"], &[]);
    assert!(listening, "{log}");
    let (listening, log) = weir(&["--listen", "0.0.0.0:0"], &[("WEIR_PASSWORD", "pw")]);
    assert!(listening, "{log}");
    assert!(
        log.contains("SCRAM-SHA-256 passwords for 1 user(s)"),
        "{log}"
    );
    // A users file that is not one.
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), "alice\n").expect("write");
    let path = file.path().to_str().expect("utf-8 path");
    let (listening, log) = weir(&["--users-file", path], &[]);
    assert!(!listening, "{log}");
    assert!(log.contains("line 1: expected name:password"), "{log}");
    // On loopback without passwords, as the README's first command does.
    let (listening, log) = weir(&["--listen", "127.0.0.1:0"], &[]);
    assert!(listening, "{log}");
}
