//! The `weir` binary as a separate process on a data directory, so that a
//! test can kill it (SIGKILL) and start it again.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tokio_postgres::{Client, NoTls};

/// How the server is started: its data directory, and where its
/// checkpoints go (`--state-url` and the environment to reach it).
pub struct Setup {
    pub data_dir: PathBuf,
    pub state_url: Option<String>,
    pub env: Vec<(&'static str, String)>,
}

/// The server as a separate process, so that it can be killed.
pub struct Process {
    child: Child,
    pub port: u16,
}

impl Process {
    pub fn start(setup: &Setup) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&setup.data_dir)
            // Checkpoints come and go while the server is killed, some of
            // them cut short.
            .args(["--checkpoint-interval", "300ms"])
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(url) = &setup.state_url {
            command.args(["--state-url", url]);
        }
        let mut child = command.spawn().expect("start the weir binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .expect("read the server's log");
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split(',').next().expect("address");
                let port = addr.rsplit(':').next().expect("port");
                break port.parse().expect("a port number");
            }
        };
        // Keep draining the log so that the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Process { child, port }
    }

    pub async fn connect(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=weir dbname=weir", self.port),
            NoTls,
        )
        .await
        .expect("connect");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory so far, in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status.lines().find_map(|line| {
            let kib = line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
            kib.trim().parse::<u64>().ok().map(|k| k * 1024)
        })
    }

    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL the server");
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
