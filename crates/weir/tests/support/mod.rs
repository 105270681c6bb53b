//! Test support: an in-process Weir server on a loopback port with its own
//! data directory, and Postgres clients connected to it.

#![allow(dead_code)] // each test binary uses part of this module

pub mod postgres;
pub mod process;
pub mod s3;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;
use weir_engine::{Engine, EngineConfig};
use weir_server::Server;

/// A server running in this process.
pub struct TestServer {
    data_dir: tempfile::TempDir,
    addr: SocketAddr,
    task: JoinHandle<()>,
    engine: Arc<Engine>,
    max_connections: usize,
    configure: fn(&mut EngineConfig),
}

impl TestServer {
    /// A server with a fresh, empty data directory.
    pub async fn start() -> TestServer {
        TestServer::start_with_max_connections(weir_server::DEFAULT_MAX_CONNECTIONS).await
    }

    /// A server that accepts `max_connections` connections at once.
    pub async fn start_with_max_connections(max_connections: usize) -> TestServer {
        TestServer::launch_new(max_connections, |_| {}).await
    }

    /// A server whose engine settings `configure` changes (at every restart
    /// too).
    pub async fn start_with(configure: fn(&mut EngineConfig)) -> TestServer {
        TestServer::launch_new(weir_server::DEFAULT_MAX_CONNECTIONS, configure).await
    }

    async fn launch_new(max_connections: usize, configure: fn(&mut EngineConfig)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("create a data directory");
        let (engine, addr, task) = launch(data_dir.path(), max_connections, configure).await;
        TestServer {
            data_dir,
            addr,
            task,
            engine,
            max_connections,
            configure,
        }
    }

    /// Stops the server, keeping its data directory.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.engine.close();
    }

    /// Stops the server and starts a new one on the same data directory, as a
    /// restart of the process would. The port changes.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (engine, addr, task) =
            launch(self.data_dir.path(), self.max_connections, self.configure).await;
        self.engine = engine;
        self.addr = addr;
        self.task = task;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// A libpq-style connection string for `database`.
    pub fn conn_str(&self, database: &str) -> String {
        format!(
            "host={} port={} user=weir dbname={database}",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// A tokio-postgres client on `database`.
    pub async fn connect(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.conn_str(database), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn launch(
    dir: &Path,
    max_connections: usize,
    configure: fn(&mut EngineConfig),
) -> (Arc<Engine>, SocketAddr, JoinHandle<()>) {
    let mut config = EngineConfig::new(dir);
    configure(&mut config);
    let engine = Engine::open(config)
        .await
        .unwrap_or_else(|e| panic!("open engine in {}: {e}", dir.display()));
    let server = Server::bind_with(
        engine.clone(),
        "127.0.0.1:0".parse().expect("address"),
        max_connections,
    )
    .await
    .expect("bind a loopback port");
    let addr = server.local_addr().expect("local address");
    let task = tokio::spawn(server.run());
    (engine, addr, task)
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/weir is two levels down")
        .to_path_buf()
}

/// The path of a program the tests need, or a failure that says how to get it.
pub fn require_program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: run the tests with `cargo xtask test`, which installs it"
        )
    })
}

/// Rows of a query, as text (columns joined by ` | `), sorted.
pub async fn sorted_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| match e.as_db_error() {
            Some(db) => panic!("{sql}: {db}"),
            None => panic!("{sql}: {e}"),
        });
    let mut rows: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            _ => None,
        })
        .collect();
    rows.sort();
    rows
}
