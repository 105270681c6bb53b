//! `weir-bench load`: starts a `weir` server (the release binary next to
//! this one) on a loopback port with a fresh data directory, runs the load
//! test against it, and prints statements per second, latencies and the
//! server's peak memory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir_bench::load::{self, Report};

use crate::report;

/// The server, stopped when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `weir` binary: given, or beside this program.
fn weir_binary(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return Ok(path);
    }
    let me = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let beside = me.with_file_name("weir");
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!(
            "no weir binary at {}: build it with `cargo build --release -p weir`, or pass --weir",
            beside.display()
        ))
    }
}

fn start(
    binary: &PathBuf,
    data_dir: &std::path::Path,
) -> Result<(ServerProcess, SocketAddr), String> {
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ])
        .args(["--max-connections", "10000", "--data-dir"])
        .arg(data_dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {}: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let server = ServerProcess(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or("the server exited before listening")?
            .map_err(|e| format!("read the server's log: {e}"))?;
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split(',').next().unwrap_or_default();
            break addr
                .parse::<SocketAddr>()
                .map_err(|e| format!("the server's address {addr}: {e}"))?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((server, addr))
}

/// Peak resident memory of a process, from `/proc/<pid>/status`.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let kib = line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
        kib.trim().parse::<u64>().ok().map(|k| k * 1024)
    })
}

pub fn run(sessions: usize, duration: Duration, weir: Option<PathBuf>) -> Result<(), String> {
    let binary = weir_binary(weir)?;
    let data_dir = tempfile::tempdir().map_err(|e| format!("a data directory: {e}"))?;
    let (server, addr) = start(&binary, data_dir.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("a tokio runtime: {e}"))?;
    let result = runtime.block_on(load::run(addr, sessions, duration));
    let peak = peak_rss(server.0.id());
    print(&result, peak);
    if !result.errors.is_empty() {
        return Err(format!("{} statements failed", result.errors.len()));
    }
    result.consistent.clone()
}

fn print(report_: &Report, server_peak_rss: Option<u64>) {
    println!("machine: {}", crate::process::machine());
    println!("commit: {}", report::commit());
    println!(
        "{} sessions for {:.1} s: {} statements, {:.0} statements/s, p50 {:.1} ms, p99 {:.1} ms; server peak RSS {}",
        report_.sessions,
        report_.elapsed.as_secs_f64(),
        report_.statements(),
        report_.statements_per_second(),
        report_.overall(50.0).as_secs_f64() * 1000.0,
        report_.overall(99.0).as_secs_f64() * 1000.0,
        server_peak_rss.map_or("unknown".to_string(), |b| format!("{} MiB", b >> 20)),
    );
    println!();
    println!("| statement | count | per second | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for (kind, latencies) in &report_.latencies {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} |",
            kind.name(),
            latencies.count(),
            latencies.count() as f64 / report_.elapsed.as_secs_f64().max(1e-9),
            latencies.percentile(50.0).as_secs_f64() * 1000.0,
            latencies.percentile(99.0).as_secs_f64() * 1000.0,
        );
    }
    println!();
    println!(
        "rows acknowledged: {}; content checked: {}",
        report_.rows_acknowledged,
        match &report_.consistent {
            Ok(()) => "table and view add up".to_string(),
            Err(e) => format!("WRONG: {e}"),
        }
    );
    for error in report_.errors.iter().take(20) {
        println!("error: {error}");
    }
}
