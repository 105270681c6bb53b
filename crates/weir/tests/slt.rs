//! Runs every `sql-tests/**/*.slt` file against a fresh in-process server,
//! through the Postgres wire protocol (tokio-postgres, simple protocol).
//!
//! Each file gets its own server and data directory. Values are compared in
//! Postgres' text format, exactly as a client receives them; NULL is `NULL`
//! and an empty string `(empty)`, as in the stock sqllogictest engines.
//!
//! Besides SQL, a statement may be the harness directive
//! `-- weir-test: restart`, which restarts the server on the same data
//! directory (all connections of the file reconnect).
//!
//! The files under `sql-tests/postgres/` must give exactly PostgreSQL's
//! results: a second test runs them against a real PostgreSQL 15.
//!
//! `SLT_FILTER=substring` runs only the files whose path contains it.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use tokio::sync::Mutex;
use tokio_postgres::SimpleQueryMessage;

use support::postgres::PostgresServer;
use support::{TestServer, repo_root};

const RESTART: &str = "-- weir-test: restart";

/// An error as the tests match it: `<SQLSTATE>: <message>`.
#[derive(Debug)]
struct DbError {
    code: Option<String>,
    text: String,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => DbError {
                code: Some(db.code().code().to_string()),
                text: format!("{}: {}", db.code().code(), db.message()),
            },
            None => DbError {
                code: None,
                text: e.to_string(),
            },
        }
    }
}

/// What a test file runs against.
#[derive(Clone)]
enum Target {
    /// A Weir server of its own; it can be restarted.
    Weir(Arc<Mutex<TestServer>>),
    /// A database of its own in a shared PostgreSQL server.
    Postgres(Arc<PostgresServer>, String),
}

impl Target {
    async fn connect(&self) -> tokio_postgres::Client {
        match self {
            Target::Weir(server) => server.lock().await.connect("weir").await,
            Target::Postgres(server, database) => server.connect(database).await,
        }
    }
}

/// One connection of a test file.
struct Connection {
    target: Target,
    /// Restarts of the server this client has seen; a stale client reconnects.
    generation: Arc<std::sync::atomic::AtomicUsize>,
    seen: usize,
    client: tokio_postgres::Client,
}

impl Connection {
    async fn open(
        target: Target,
        generation: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<Connection, DbError> {
        let seen = generation.load(std::sync::atomic::Ordering::SeqCst);
        let client = target.connect().await;
        Ok(Connection {
            target,
            generation,
            seen,
            client,
        })
    }

    async fn reconnect_if_restarted(&mut self) {
        let current = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        if current != self.seen {
            self.client = self.target.connect().await;
            self.seen = current;
        }
    }
}

#[async_trait]
impl AsyncDB for Connection {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        if sql.trim() == RESTART {
            let Target::Weir(server) = &self.target else {
                return Err(DbError {
                    code: None,
                    text: "only a Weir server can be restarted".into(),
                });
            };
            server.lock().await.restart().await;
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.reconnect_if_restarted().await;
            return Ok(DBOutput::StatementComplete(0));
        }
        self.reconnect_if_restarted().await;
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(description) => {
                    columns = Some(description.len())
                }
                SimpleQueryMessage::Row(row) => {
                    rows.push(
                        (0..row.len())
                            .map(|i| match row.get(i) {
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                                None => "NULL".to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        match columns {
            Some(n) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(count)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "weir"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }

    async fn run_command(command: std::process::Command) -> std::io::Result<std::process::Output> {
        tokio::process::Command::from(command).output().await
    }

    fn error_sql_state(err: &DbError) -> Option<String> {
        err.code.clone()
    }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

async fn run_file(path: PathBuf, target: Target) -> Result<(), String> {
    let label = match &target {
        Target::Weir(_) => "weir",
        Target::Postgres(..) => "postgres",
    };
    let generation = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut runner = Runner::new(move || Connection::open(target.clone(), generation.clone()));
    runner.add_label(label);
    runner.with_hash_threshold(0);
    let result = tokio::time::timeout(Duration::from_secs(300), runner.run_file_async(&path)).await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{}: timed out after 300 s", path.display())),
    }
}

fn files_under(dir: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    slt_files(&repo_root().join(dir), &mut files);
    files.sort();
    if let Ok(filter) = std::env::var("SLT_FILTER") {
        files.retain(|f| f.to_string_lossy().contains(&filter));
    }
    files
}

/// Every file, each against a fresh Weir server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_tests_on_weir() {
    let files = files_under("sql-tests");
    assert!(
        !files.is_empty() || std::env::var("SLT_FILTER").is_ok(),
        "no .slt files under sql-tests/"
    );
    let mut tasks = Vec::new();
    for file in &files {
        let target = Target::Weir(Arc::new(Mutex::new(TestServer::start().await)));
        tasks.push((file.clone(), tokio::spawn(run_file(file.clone(), target))));
    }
    report(&files, tasks).await;
}

/// The files of `sql-tests/postgres/` against a real PostgreSQL: Weir's
/// expected results there are PostgreSQL's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_files_match_postgresql() {
    let files = files_under("sql-tests/postgres");
    if files.is_empty() {
        return;
    }
    let server = Arc::new(
        tokio::task::spawn_blocking(PostgresServer::start)
            .await
            .expect("start PostgreSQL"),
    );
    let admin = server.connect("postgres").await;
    let mut tasks = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let database = format!("slt_{i}");
        admin
            .simple_query(&format!("CREATE DATABASE {database}"))
            .await
            .expect("create a database");
        let target = Target::Postgres(server.clone(), database);
        tasks.push((file.clone(), tokio::spawn(run_file(file.clone(), target))));
    }
    report(&files, tasks).await;
}

async fn report(
    files: &[PathBuf],
    tasks: Vec<(PathBuf, tokio::task::JoinHandle<Result<(), String>>)>,
) {
    let mut failures = Vec::new();
    for (file, task) in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("{}: the runner panicked: {e}", file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
