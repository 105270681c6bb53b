//! Prometheus metrics of the engine, in the text exposition format (0.0.4):
//! every database's sessions, jobs, operators, sources and sinks, and the
//! checkpoints taken since the start. They are computed at each scrape
//! from the same rows as the `weir_catalog` system tables; nothing is
//! counted twice. `weir-server` serves them over HTTP, with its connection
//! counts written by [`family`] and [`sample`] too.

use std::fmt::{Display, Write as _};

use datafusion::common::ScalarValue;
use weir_runtime::NodeInfo;

use crate::checkpoint::CheckpointCounts;
use crate::database::Database;
use crate::engine::Engine;
use crate::system_catalog::{
    JobRow, OperatorRow, SinkRow, SourceRow, job_rows, operator_rows, sink_rows, source_rows,
    status_name,
};

/// Writes the `# HELP` and `# TYPE` lines of a metric family (`kind`:
/// `counter`, `gauge`, `summary`...).
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    let _ = writeln!(out, "\n# TYPE {name} {kind}");
}

/// Writes one sample, `name{label="value",...} value`, with the label
/// values escaped.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, text)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(text, out);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the exposition format writes it: backslash, double
/// quote and newline escaped.
fn escape_label_value(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// What one database reports.
struct Gathered {
    database: String,
    sessions: usize,
    jobs: Vec<JobRow>,
    operators: Vec<OperatorRow>,
    sources: Vec<SourceRow>,
    sinks: Vec<SinkRow>,
}

impl Engine {
    /// Writes every metric of the engine in Prometheus' text format, each
    /// family once with its `# HELP` and `# TYPE` lines.
    pub fn render_metrics(&self, out: &mut String) {
        let now = chrono::Utc::now().timestamp_micros();
        let all: Vec<Gathered> = self
            .databases()
            .list()
            .iter()
            .map(|db| self.gather(db))
            .collect();
        render_sessions(out, &all);
        render_jobs(out, &all);
        render_operators(out, &all, now);
        render_sources(out, &all, now);
        render_sinks(out, &all);
        render_checkpoints(out, self.checkpoints().counts());
    }

    fn gather(&self, db: &Database) -> Gathered {
        Gathered {
            database: db.name.clone(),
            sessions: self.open_sessions(db.oid),
            jobs: job_rows(db),
            operators: operator_rows(db),
            sources: source_rows(db),
            sinks: sink_rows(db),
        }
    }
}

fn render_sessions(out: &mut String, all: &[Gathered]) {
    family(
        out,
        "weir_sessions",
        "gauge",
        "Sessions open on a database.",
    );
    for g in all {
        sample(
            out,
            "weir_sessions",
            &[("database", g.database.as_str())],
            g.sessions,
        );
    }
}

fn render_jobs(out: &mut String, all: &[Gathered]) {
    let info = "weir_job_info";
    family(
        out,
        info,
        "gauge",
        "A job (materialized view, sink, continuous query or subscription), with its status; always 1.",
    );
    for g in all {
        for job in &g.jobs {
            let status = status_name(&job.status);
            let labels = [
                ("database", g.database.as_str()),
                ("job", job.name.as_str()),
                ("kind", job.kind),
                ("status", status),
            ];
            sample(out, info, &labels, 1);
        }
    }
    let bytes = "weir_job_state_bytes";
    family(
        out,
        bytes,
        "gauge",
        "The state of a job's operators, in bytes.",
    );
    for g in all {
        for job in &g.jobs {
            let labels = [
                ("database", g.database.as_str()),
                ("job", job.name.as_str()),
                ("kind", job.kind),
            ];
            sample(out, bytes, &labels, job.state_bytes);
        }
    }
}

fn render_operators(out: &mut String, all: &[Gathered], now: i64) {
    per_operator(
        out,
        all,
        ("weir_operator_rows_in_total", "counter"),
        "Rows an operator of a materialized view's job took in, over its subtasks.",
        |node| Some(node.rows_in()),
    );
    per_operator(
        out,
        all,
        ("weir_operator_rows_out_total", "counter"),
        "Rows an operator of a materialized view's job passed on, over its subtasks.",
        |node| Some(node.rows_out()),
    );
    per_operator(
        out,
        all,
        ("weir_operator_state_bytes", "gauge"),
        "The state an operator of a materialized view's job keeps, in bytes.",
        |node| Some(node.state_bytes()),
    );
    per_operator(
        out,
        all,
        ("weir_operator_watermark_lag_seconds", "gauge"),
        "How far an operator's watermark is behind the current time (timestamp watermarks only).",
        |node| {
            let watermark = timestamp_micros(&node.watermark()?)?;
            Some(lag_seconds(now, watermark))
        },
    );
}

/// A family with one sample per operator that has a value.
fn per_operator<V: Display>(
    out: &mut String,
    all: &[Gathered],
    (name, kind): (&str, &str),
    help: &str,
    value: impl Fn(&NodeInfo) -> Option<V>,
) {
    family(out, name, kind, help);
    for g in all {
        for row in &g.operators {
            let Some(value) = value(&row.node) else {
                continue;
            };
            let id = row.node.id.to_string();
            let labels = [
                ("database", g.database.as_str()),
                ("job", row.job.as_str()),
                ("operator", row.node.name),
                ("id", id.as_str()),
            ];
            sample(out, name, &labels, value);
        }
    }
}

/// A timestamp watermark in microseconds since the epoch (one without a
/// time zone taken as UTC); `None` for other types.
fn timestamp_micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        _ => None,
    }
}

/// Seconds from a watermark to now (negative when it is ahead).
fn lag_seconds(now_micros: i64, watermark_micros: i64) -> f64 {
    now_micros.saturating_sub(watermark_micros) as f64 / 1e6
}

fn render_sources(out: &mut String, all: &[Gathered], now: i64) {
    per_source(
        out,
        all,
        ("weir_source_watermark_lag_seconds", "gauge"),
        "How far a table's or stream's watermark is behind the current time.",
        |s| s.watermark_micros.map(|w| lag_seconds(now, w)),
    );
    per_source(
        out,
        all,
        ("weir_source_late_rows_total", "counter"),
        "Rows that arrived behind the watermark of a table or stream with event time.",
        |s| s.event_time_column.as_ref().map(|_| s.late_rows),
    );
    per_source(
        out,
        all,
        ("weir_source_rejected_records_total", "counter"),
        "Records a stream's connector could not read.",
        |s| (s.kind == "stream").then_some(s.rejected_records),
    );
    per_source(
        out,
        all,
        ("weir_source_dead_letters", "gauge"),
        "Dead letters a stream keeps (records its connector could not read, with on_error = 'dead_letter').",
        |s| (s.kind == "stream").then_some(s.dead_letters),
    );
}

/// A family with one sample per table or stream that has a value.
fn per_source<V: Display>(
    out: &mut String,
    all: &[Gathered],
    (name, kind): (&str, &str),
    help: &str,
    value: impl Fn(&SourceRow) -> Option<V>,
) {
    family(out, name, kind, help);
    for g in all {
        for source in &g.sources {
            let Some(value) = value(source) else {
                continue;
            };
            let labels = [
                ("database", g.database.as_str()),
                ("relation", source.name.as_str()),
                ("kind", source.kind),
            ];
            sample(out, name, &labels, value);
        }
    }
}

fn render_sinks(out: &mut String, all: &[Gathered]) {
    let name = "weir_sink_rows_written_total";
    family(
        out,
        name,
        "counter",
        "Rows a sink wrote since the server started.",
    );
    for g in all {
        for sink in &g.sinks {
            let labels = [
                ("database", g.database.as_str()),
                ("sink", sink.name.as_str()),
                ("connector", sink.connector.as_deref().unwrap_or("")),
            ];
            sample(out, name, &labels, sink.rows_written);
        }
    }
}

fn render_checkpoints(out: &mut String, counts: CheckpointCounts) {
    let total = "weir_checkpoints_total";
    family(
        out,
        total,
        "counter",
        "Checkpoints taken since the server started, by outcome.",
    );
    sample(out, total, &[("status", "committed")], counts.committed);
    sample(out, total, &[("status", "failed")], counts.failed);
    let duration = "weir_checkpoint_duration_seconds";
    family(
        out,
        duration,
        "summary",
        "The time checkpoints took, committed or failed.",
    );
    let taken = counts.committed + counts.failed;
    sample(
        out,
        "weir_checkpoint_duration_seconds_sum",
        &[],
        counts.duration_seconds_sum,
    );
    sample(out, "weir_checkpoint_duration_seconds_count", &[], taken);
    gauge_once(
        out,
        (
            "weir_checkpoint_last_duration_seconds",
            "The time the last checkpoint took.",
        ),
        (taken > 0).then_some(counts.last_duration_seconds),
    );
    let committed = counts.committed > 0;
    gauge_once(
        out,
        (
            "weir_checkpoint_last_bytes_written",
            "What the last committed checkpoint wrote, in bytes.",
        ),
        committed.then_some(counts.last_bytes_written),
    );
    gauge_once(
        out,
        (
            "weir_checkpoint_state_bytes",
            "The size of every file the last committed checkpoint uses, in bytes.",
        ),
        committed.then_some(counts.last_state_bytes),
    );
}

/// A gauge family of one sample without labels, written once there is a
/// value.
fn gauge_once<V: Display>(out: &mut String, (name, help): (&str, &str), value: Option<V>) {
    family(out, name, "gauge", help);
    if let Some(value) = value {
        sample(out, name, &[], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\\y\"z\nw"), ("b", "ok")], 3);
        assert_eq!(out, "m{a=\"x\\\\y\\\"z\\nw\",b=\"ok\"} 3\n");
    }

    #[test]
    fn a_family_has_help_and_type() {
        let mut out = String::new();
        family(&mut out, "m_total", "counter", "Things\nand \\ more.");
        assert_eq!(
            out,
            "# HELP m_total Things\\nand \\\\ more.\n# TYPE m_total counter\n"
        );
    }

    #[test]
    fn only_timestamps_have_a_lag() {
        let micros = ScalarValue::TimestampMicrosecond(Some(1_000_000), None);
        assert_eq!(timestamp_micros(&micros), Some(1_000_000));
        let seconds = ScalarValue::TimestampSecond(Some(2), Some("UTC".into()));
        assert_eq!(timestamp_micros(&seconds), Some(2_000_000));
        assert_eq!(timestamp_micros(&ScalarValue::Int64(Some(5))), None);
        assert_eq!(lag_seconds(3_500_000, 1_000_000), 2.5);
    }
}
