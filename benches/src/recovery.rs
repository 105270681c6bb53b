//! The recovery benchmark: how long a restart takes with a large state.
//!
//! One child process (`recovery-step build`) opens an engine on a data
//! directory, creates a table with a primary key and a materialized view
//! grouping it, fills the table (`INSERT ... SELECT FROM generate_series`,
//! in chunks), takes a checkpoint (whole: the first one), changes a few rows
//! and takes another (incremental), and exits without a final checkpoint, as
//! a killed server would. A second one (`recovery-step recover`) opens an
//! engine on the same directory: the time `Engine::open` takes is the
//! recovery time (catalog, the newest checkpoint's files read back, tables
//! and views filled, the aggregation's groups restored, the log after the
//! checkpoint replayed), after which it serves queries. It then reads the
//! same figures of the table and the view as the first process did, and the
//! two must agree.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use datafusion::arrow::array::{Array, Int64Array};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use weir_engine::{Engine, EngineConfig, Output, Session};

use crate::process;

/// What the table and the view hold: compared before and after the restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    pub table_rows: i64,
    pub table_id_sum: i64,
    pub view_groups: i64,
    pub view_count_sum: i64,
    pub view_bytes_sum: i64,
}

/// One checkpoint as `weir_catalog.checkpoints` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointFigures {
    pub duration_ms: i64,
    pub bytes_written: i64,
    pub state_bytes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub rows: u64,
    pub fill_seconds: f64,
    pub full: CheckpointFigures,
    pub incremental: CheckpointFigures,
    pub peak_rss_bytes: u64,
    pub content: Content,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recovered {
    pub open_seconds: f64,
    pub peak_rss_bytes: u64,
    pub content: Content,
}

fn describe(e: weir_engine::WeirError) -> String {
    format!("{}: {}", e.code, e.message)
}

async fn execute(session: &mut Session, sql: &str) -> Result<Vec<Vec<i64>>, String> {
    let mut statements = session.parse(sql).map_err(describe)?;
    let Some(statement) = statements.pop() else {
        return Err(format!("no statement in {sql}"));
    };
    let Output::Rows(mut rows) = session.run(statement).await.map_err(describe)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    while let Some(batch) = rows.batches.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            let mut values = Vec::new();
            for column in batch.columns() {
                let ints = column
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| format!("{sql}: a column is not bigint"))?;
                values.push(if ints.is_null(row) {
                    0
                } else {
                    ints.value(row)
                });
            }
            out.push(values);
        }
    }
    Ok(out)
}

async fn one_row(session: &mut Session, sql: &str) -> Result<Vec<i64>, String> {
    execute(session, sql)
        .await?
        .pop()
        .ok_or_else(|| format!("{sql} returned no row"))
}

async fn content(session: &mut Session) -> Result<Content, String> {
    let table = one_row(session, "SELECT count(*), sum(id) FROM t").await?;
    let view = one_row(
        session,
        "SELECT count(*), sum(n)::bigint, sum(bytes)::bigint FROM totals",
    )
    .await?;
    Ok(Content {
        table_rows: table[0],
        table_id_sum: table[1],
        view_groups: view[0],
        view_count_sum: view[1],
        view_bytes_sum: view[2],
    })
}

async fn last_checkpoint(session: &mut Session) -> Result<CheckpointFigures, String> {
    let row = one_row(
        session,
        "SELECT duration_ms::bigint, bytes_written::bigint, state_bytes::bigint \
         FROM weir_catalog.checkpoints WHERE status = 'committed' ORDER BY epoch DESC LIMIT 1",
    )
    .await?;
    Ok(CheckpointFigures {
        duration_ms: row[0],
        bytes_written: row[1],
        state_bytes: row[2],
    })
}

/// Rows inserted per statement while filling the table.
const CHUNK: u64 = 250_000;

/// Fills a fresh data directory with `rows` rows of about 200 bytes and a
/// view of `groups` groups over them; checkpoints; exits.
pub async fn build(dir: &Path, rows: u64, groups: u64) -> Result<Built, String> {
    let engine = Engine::open(EngineConfig::new(dir))
        .await
        .map_err(describe)?;
    let mut session = engine.connect("weir", "weir", &[]).map_err(describe)?;
    execute(
        &mut session,
        "CREATE TABLE t (id bigint PRIMARY KEY, payload text)",
    )
    .await?;
    execute(
        &mut session,
        &format!(
            "CREATE MATERIALIZED VIEW totals AS SELECT id % {groups} AS k, count(*) AS n, \
             sum(length(payload)) AS bytes FROM t GROUP BY id % {groups}"
        ),
    )
    .await?;
    let started = Instant::now();
    let mut next = 1;
    while next <= rows {
        let last = (next + CHUNK - 1).min(rows);
        execute(
            &mut session,
            &format!(
                "INSERT INTO t SELECT value, repeat('p', 180) || value \
                 FROM generate_series({next}, {last})"
            ),
        )
        .await?;
        next = last + 1;
    }
    execute(&mut session, "FLUSH").await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    execute(&mut session, "CHECKPOINT").await?;
    let full = last_checkpoint(&mut session).await?;
    execute(
        &mut session,
        "UPDATE t SET payload = 'changed' WHERE id <= 100",
    )
    .await?;
    execute(&mut session, "FLUSH").await?;
    execute(&mut session, "CHECKPOINT").await?;
    let incremental = last_checkpoint(&mut session).await?;
    let content = content(&mut session).await?;
    Ok(Built {
        rows,
        fill_seconds,
        full,
        incremental,
        peak_rss_bytes: process::peak_rss_bytes(),
        content,
    })
}

/// Opens the engine on what `build` left; times it.
pub async fn recover(dir: &Path) -> Result<Recovered, String> {
    process::reset_peak_rss();
    let started = Instant::now();
    let engine = Engine::open(EngineConfig::new(dir))
        .await
        .map_err(describe)?;
    let open_seconds = started.elapsed().as_secs_f64();
    let mut session = engine.connect("weir", "weir", &[]).map_err(describe)?;
    let content = content(&mut session).await?;
    Ok(Recovered {
        open_seconds,
        peak_rss_bytes: process::peak_rss_bytes(),
        content,
    })
}

/// Runs one step in a child process; parses the JSON line it prints.
fn step<T: for<'de> Deserialize<'de>>(
    step: &str,
    dir: &Path,
    rows: u64,
    groups: u64,
) -> Result<T, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let output = Command::new(exe)
        .args(["recovery-step", step, "--data-dir"])
        .arg(dir)
        .args(["--rows", &rows.to_string(), "--groups", &groups.to_string()])
        .output()
        .map_err(|e| format!("running the {step} step: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|_| {
        format!(
            "the {step} step failed ({}): {line} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn mib(bytes: i64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The benchmark: build, recover, print a Markdown table.
pub fn run(rows: u64, groups: u64, data_dir: Option<PathBuf>) -> Result<(), String> {
    let temp;
    let dir = match data_dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir().map_err(|e| format!("a data directory: {e}"))?;
            temp.path().to_path_buf()
        }
    };
    println!("machine: {}", process::machine());
    println!("commit: {}", crate::report::commit());
    println!(
        "state: table t of {rows} rows (id bigint primary key, payload text of ~190 bytes), \
         view totals of {groups} groups (count, sum) over it; data dir {}",
        dir.display()
    );
    println!();
    eprintln!("filling and checkpointing...");
    let built: Built = step("build", &dir, rows, groups)?;
    eprintln!("recovering...");
    let recovered: Recovered = step("recover", &dir, rows, groups)?;
    println!(
        "| state (checkpoint files) | fill | full checkpoint | incremental checkpoint (100 rows updated) | recovery (open) | peak RSS (recovery) | content after = before |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} s | {:.1} s, {} written | {} ms, {} KiB written | {:.1} s | {} | {} |",
        mib(built.full.state_bytes),
        built.fill_seconds,
        built.full.duration_ms as f64 / 1000.0,
        mib(built.full.bytes_written),
        built.incremental.duration_ms,
        built.incremental.bytes_written / 1024,
        recovered.open_seconds,
        mib(recovered.peak_rss_bytes as i64),
        if recovered.content == built.content {
            "yes"
        } else {
            "NO"
        },
    );
    if recovered.content != built.content {
        return Err(format!(
            "the state after recovery differs: before {:?}, after {:?}",
            built.content, recovered.content
        ));
    }
    Ok(())
}
