//! A grammar-based random SQL generator, in the manner of sqlsmith. An
//! in-process server holds tables of the common types (with primary keys,
//! NOT NULL and edge values), a view, a stream with a watermark and
//! materialized views over both. A sweep of edge-case expressions runs first,
//! then random statements, most of them from the template tables below:
//! queries (expressions, casts, functions, aggregates, window functions,
//! joins, subqueries, CTEs, set operations, window table functions), writes
//! with good and bad values, DDL, settings, transactions, cursors, `EXPLAIN`,
//! catalog reads and malformed text.
//!
//! Whatever the statement, the server must not panic, drop the session or
//! hang; every failure must be an error with a SQLSTATE, none of them XX000
//! (an internal error); other sessions must keep working.
//!
//! The run is deterministic: the seed is printed at the start and
//! `WEIR_SQL_FUZZ_SEED` replays it; `WEIR_SQL_FUZZ_STATEMENTS` sets how many
//! random statements run, and `WEIR_SQL_FUZZ_VERBOSE=1` prints each one.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use support::TestServer;
use tokio_postgres::{Client, NoTls};

/// The seed when `WEIR_SQL_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5745_4952_0000_0001;
/// Random statements when `WEIR_SQL_FUZZ_STATEMENTS` is not set.
const DEFAULT_STATEMENTS: u64 = 1200;
/// How long one statement may take; longer counts as a hang.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// A new connection and the bystander are checked every this many statements.
const LIVENESS_EVERY: usize = 100;
/// Random rows of each table at the start, besides its edge rows.
const SETUP_ROWS: usize = 16;
/// Percentage of statements generated in chaos mode, whose values and
/// expressions are picked to fail (bad casts, division by zero, wrong types).
const CHAOS_PERCENT: usize = 20;
/// Whether an internal error (XX000) fails the test; they are listed either way.
const FAIL_ON_INTERNAL_ERRORS: bool = true;

// ---------------------------------------------------------------------------
// Panics, wherever they happen in the process (server tasks included).

static PANICS: AtomicUsize = AtomicUsize::new(0);
static FIRST_PANIC: Mutex<Option<String>> = Mutex::new(None);
/// What the test was doing, for the panic hook to report.
static CURRENT_STATEMENT: Mutex<String> = Mutex::new(String::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts every panic and keeps the first one's message with the statement
/// that was running; the previous hook still prints it.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if PANICS.fetch_add(1, Ordering::SeqCst) == 0 {
            let statement = lock(&CURRENT_STATEMENT).clone();
            let thread = std::thread::current();
            let thread = thread.name().unwrap_or("unnamed");
            let message = format!("{info}\n  (thread {thread}) while the test ran: {statement}");
            *lock(&FIRST_PANIC) = Some(message);
        }
        previous(info);
    }));
}

fn set_current(what: &str) {
    *lock(&CURRENT_STATEMENT) = what.to_string();
}

// ---------------------------------------------------------------------------
// Templates. In a template, `$` and a letter stand for a generated part
// (`Generator::expand`): the letter of a kind (`KindInfo::code`) an
// expression of that kind; `k` one of the template's own kind, `l` a literal
// of it, `q` a divisor of it (kept from zero unless in chaos mode), `T` its
// SQL type; `a` one of any kind; `o` one of an ordered kind, the same for
// each `o`, and `c` a literal of that kind; `N` a number; `h` a column of
// `{from}` or `{table}`, the same for each `h`, and `H` an expression of its
// kind; `G` a column or expression to group or sort by; `A` an aggregate;
// `O` a window function; `S` a scalar subquery, `E` an `EXISTS` and `I` an
// `IN` test; `P` an edge case (`PROBES`); `r` a small integer; `Z` a window
// size; `C` an `EMIT` clause or nothing; `Q` a query; `M` the query of a
// materialized view; `F` a relation the statements create, `W` a name for a
// new one (in chaos mode sometimes taken or invalid; not for `OR REPLACE`),
// `X` a stream; `Y` a column type; `B` a bad column definition; `J` the
// event time of a new row of the stream. Other `$`s stay (`$1`, `$$`). A
// template that starts with `!` is for chaos mode only.

#[rustfmt::skip]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind { Int, Float, Numeric, Text, Bool, Date, Time, Timestamp, TimestampTz, Interval, Bytea }

/// A kind, its letter in templates, its SQL type, how often it is picked when
/// any will do, valid literal texts and expressions giving it.
struct KindInfo {
    kind: Kind,
    code: char,
    sql_type: &'static str,
    weight: u32,
    values: &'static [&'static str],
    templates: &'static [&'static str],
}

/// Texts that do not convert to most kinds, for chaos mode.
#[rustfmt::skip]
const BAD_TEXTS: &[&str] = &[
    "abc", "", "1e999", "2147483648", "123456789012.5", "2024-02-30", "25:00:00", "1 fortnight",
    "\\xZZ", "maybe", "2024-01-01 00:00:00+25", "this text is longer than eight characters",
];

/// In the order of `Kind`.
#[rustfmt::skip]
const KINDS: &[KindInfo] = &[
    KindInfo { kind: Kind::Int, code: 'i', sql_type: "int", weight: 6,
        values: &["0", "1", "-1", "2", "7", "42", "100", "2147483647", "-2147483648"],
        templates: &[
            "($i + $i)", "($i - $i)", "($i * $i)", "($i / $q)", "($i % $q)", "abs($i)", "(- $i)",
            "length($t)", "strpos($t, $t)", "CAST($f AS int)", "CAST($n AS bigint)", "($i & $i)",
            "CAST(EXTRACT(doy FROM $s) AS int)", "CASE $i WHEN $l THEN $i ELSE $i END",
            "!CAST($t AS int)", "!CAST($f AS smallint)",
        ] },
    KindInfo { kind: Kind::Float, code: 'f', sql_type: "double precision", weight: 3,
        values: &["0", "1.5", "-0.25", "3.14159", "1e10", "-1e-5", "0.1"],
        templates: &[
            "sqrt(abs($N))", "ln(abs($N) + 1)", "round($f)", "round($f, $r)", "floor($f)",
            "sin($f)", "power($f, 2)", "($f + $f)", "($f * $f)", "($f / $q)", "CAST($N AS real)",
            "CAST($N AS double precision)", "EXTRACT(epoch FROM $s)", "EXTRACT(hour FROM $z)",
            "random()", "!sqrt($N)", "!ln($N)", "!exp($f)", "!power($f, -1)",
        ] },
    KindInfo { kind: Kind::Numeric, code: 'n', sql_type: "numeric(10,2)", weight: 2,
        values: &["0", "0.01", "12.34", "-5.50", "99999999.99", "-99999999.99"],
        templates: &[
            "($n + $n)", "($n - $n)", "($n * $i)", "($n / $q)", "round($n, 2)", "abs($n)",
            "CAST($i AS numeric(10,2))", "CAST($f AS decimal(20,6))", "!CAST($f AS numeric(5,1))",
        ] },
    KindInfo { kind: Kind::Text, code: 't', sql_type: "text", weight: 5,
        values: &["", "a", "abc", "it's", "Hello World", "ünïcödé ✓", " pad ", "%_", "a,b", "\\"],
        templates: &[
            "upper($t)", "lower($t)", "initcap($t)", "reverse($t)", "trim($t)", "md5($t)",
            "substr($t, $r)", "substring($t FROM $r FOR $r)", "concat($a, $a)", "($t || $t)",
            "($t || $a)", "replace($t, 'a', 'xy')", "left($t, $r)", "right($t, -$r)",
            "repeat($t, $r)", "lpad($t, 6, '*')", "split_part($t, ',', 2)", "CAST($a AS text)",
            "regexp_replace($t, '[aeiou]', '-', 'g')", "to_hex($i)", "!split_part($t, ',', 0)",
        ] },
    KindInfo { kind: Kind::Bool, code: 'b', sql_type: "boolean", weight: 3,
        values: &["true", "false"],
        templates: &[
            "($o = $o)", "($o <> $o)", "($o < $o)", "($o >= $o)", "($b AND $b)", "($b OR $b)",
            "(NOT $b)", "($a IS NULL)", "($a IS NOT NULL)", "($b IS NOT TRUE)", "($b IS UNKNOWN)",
            "($o BETWEEN $o AND $o)", "($o NOT IN ($c, $c))", "($t LIKE 'a%')", "($t ILIKE '%%')",
            "($o IS DISTINCT FROM $o)", "$E", "$I", "!($o = $a)", "!($a > $a)",
        ] },
    KindInfo { kind: Kind::Date, code: 'd', sql_type: "date", weight: 1,
        values: &["2024-01-01", "1970-01-01", "2000-02-29", "0001-01-01", "9999-12-31"],
        templates: &[
            "CURRENT_DATE", "CAST($s AS date)", "CAST(date_trunc('month', $s) AS date)",
            "($d + $r)", "make_date(2020 + $r, 1 + $r, 1 + $r)", "CAST(($d + $v) AS date)",
            "!make_date(2024, 13 + $r, 1)",
        ] },
    KindInfo { kind: Kind::Time, code: 'm', sql_type: "time", weight: 1,
        values: &["00:00:00", "10:00:00", "23:59:59.999999"],
        templates: &["CAST($s AS time)", "($m + $v)", "COALESCE($m, TIME '12:00:00')"] },
    KindInfo { kind: Kind::Timestamp, code: 's', sql_type: "timestamp", weight: 2,
        values: &["2024-01-01 00:00:00", "2024-06-15 12:34:56.789", "1999-12-31 23:59:59.999999"],
        templates: &[
            "($s + $v)", "($s - $v)", "date_trunc('hour', $s)", "date_trunc('week', $s)",
            "CAST($d AS timestamp)", "date_bin(INTERVAL '15 minutes', $s, TIMESTAMP '2000-01-01')",
            "CAST($z AS timestamp)", "to_timestamp($i)", "($z AT TIME ZONE 'UTC')",
        ] },
    KindInfo { kind: Kind::TimestampTz, code: 'z', sql_type: "timestamptz", weight: 1,
        values: &["2024-01-01 00:00:00+00", "2024-03-10 02:30:00-05"],
        templates: &["now()", "($z + $v)", "date_trunc('day', $z)", "CAST($s AS timestamptz)"] },
    KindInfo { kind: Kind::Interval, code: 'v', sql_type: "interval", weight: 1,
        values: &["1 day", "02:00:00", "-3 hours", "1 year 2 months", "1 day 02:03:04.5", "P1DT2H"],
        templates: &["($v + $v)", "($s - $s)", "($v * $r)", "(- $v)", "INTERVAL '$r hours'"] },
    KindInfo { kind: Kind::Bytea, code: 'y', sql_type: "bytea", weight: 1,
        values: &["\\x0102", "\\x", "\\xdeadbeef"],
        templates: &["decode('00ff', 'hex')", "sha256($t)", "CAST($t AS bytea)", "($y || $y)"] },
];

impl Kind {
    fn info(self) -> &'static KindInfo {
        &KINDS[self as usize]
    }
}

/// Expressions of any kind (`$k`), and in chaos mode of the wrong one.
#[rustfmt::skip]
const GENERIC: &[&str] =
    &["CASE WHEN $b THEN $k ELSE $k END", "COALESCE($k, $k)", "NULLIF($k, $k)", "($k)::$T", "$S"];
const CHAOS_EXPRESSIONS: &[&str] = &["$P", "$a"];
#[rustfmt::skip]
const AGGREGATES: &[&str] = &[
    "count(*)", "count(*)", "count($a)", "count(DISTINCT $o)", "sum($N)", "avg($N)", "min($o)",
    "max($o)", "string_agg($t, ',')", "string_agg($t, '' ORDER BY $t)", "bool_and($b)",
    "stddev($N)", "count(*) FILTER (WHERE $b)", "sum(DISTINCT $i)", "!array_agg($a)", "!avg($t)",
];
#[rustfmt::skip]
const WINDOW_FUNCTIONS: &[&str] = &[
    "row_number()", "rank()", "dense_rank()", "ntile(3)", "lag($a)", "lead($a, 2)", "sum($N)",
    "first_value($a)", "nth_value($a, 2)", "percent_rank()", "!ntile(0)", "!lag($a, -1)",
];
#[rustfmt::skip]
const SIZES: &[&str] = &[
    "INTERVAL '1' SECOND", "INTERVAL '10' MINUTE", "INTERVAL '1' DAY", "!INTERVAL '1' MONTH",
    "!INTERVAL '0' SECOND", "!INTERVAL '-1' HOUR", "!1",
];
const NUMBERS: &[Kind] = &[Kind::Int, Kind::Float, Kind::Numeric];
#[rustfmt::skip]
const JOINS: &[&str] = &["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN", "CROSS JOIN", ","];

/// Queries over `{from}`, one to three relations.
#[rustfmt::skip]
const QUERIES: &[&str] = &[
    "SELECT $a FROM {from}", "SELECT $a, $a AS x1 FROM {from} WHERE $b",
    "SELECT $a AS x0, $a, $a FROM {from} WHERE $b ORDER BY 1 LIMIT $r",
    "SELECT * FROM {from} WHERE $b LIMIT 5", "SELECT DISTINCT $o, $o FROM {from} ORDER BY 1, 2",
    "SELECT $h, $a FROM {from} ORDER BY $h DESC NULLS LAST LIMIT 10 OFFSET $r",
    "SELECT $P, $h FROM {from} LIMIT 5", "SELECT $A FROM {from} WHERE $b",
    "SELECT $A, $A AS x1 FROM {from}", "SELECT $h, $A FROM {from} GROUP BY $h",
    "SELECT $h, $A, $A FROM {from} WHERE $b GROUP BY $h HAVING count(*) > 1 ORDER BY 2 DESC",
    "SELECT $G, $G, $A FROM {from} GROUP BY 1, 2 HAVING min($N) < max($N) ORDER BY 3 LIMIT $r",
    "SELECT $a, $O OVER (ORDER BY $G) FROM {from}",
    "SELECT $O OVER (), $O OVER (PARTITION BY $G) FROM {from}",
    "SELECT $O OVER (PARTITION BY $G ORDER BY $G ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) \
     FROM {from}",
    "SELECT $h, $O OVER w FROM {from} WINDOW w AS (ORDER BY $h RANGE UNBOUNDED PRECEDING)",
    "SELECT $h FROM {from} UNION SELECT $h FROM {from} ORDER BY 1",
    "SELECT $o, $o FROM {from} EXCEPT SELECT $o, $o FROM {from}",
    "SELECT $o FROM {from} INTERSECT ALL SELECT $c",
    "WITH w AS (SELECT $h, $a FROM {from} WHERE $b) SELECT * FROM w LIMIT 10",
    "SELECT count(*), max(d.x0) FROM (SELECT $o AS x0 FROM {from}) AS d",
    "!SELECT $h, $A, $a FROM {from} GROUP BY $h", "!SELECT $a FROM {from} ORDER BY 9",
    "!SELECT $a FROM {from} LIMIT -1", "!SELECT DISTINCT $o FROM {from} ORDER BY $a",
    "!SELECT $a FROM {from} UNION SELECT $a, $a",
    "!SELECT $O OVER (ORDER BY $h RANGE BETWEEN 1 PRECEDING AND CURRENT ROW) FROM {from}",
];

/// Queries without a `FROM` to generate, window table functions over tables
/// and materialized views among them.
#[rustfmt::skip]
const LITERAL_QUERIES: &[&str] = &[
    "SELECT $a", "SELECT $a, $a, $a", "SELECT $a AS x0, $P", "VALUES ($o, $t), ($o, NULL)",
    "SELECT * FROM (VALUES ($o, $t), ($o, $t)) AS v(c0, c1) ORDER BY 1", "!VALUES ($o), ($a)",
    "SELECT window_start, count(*) FROM tumble(t2, happened, $Z) GROUP BY 1 LIMIT 20",
    "SELECT window_start, max(n) FROM tumble(mv1, window_start, $Z, INTERVAL '5' SECOND) \
     GROUP BY 1",
    "SELECT window_end, count(*) FROM hop(t2, seen, INTERVAL '6' HOUR, INTERVAL '1' DAY) \
     GROUP BY 1",
    "SELECT window_start, count(*) FROM session(t2, happened, INTERVAL '1' HOUR) GROUP BY 1",
    "SELECT * FROM TABLE(TUMBLE(TABLE t2, DESCRIPTOR(happened), $Z)) LIMIT 5",
    "!SELECT * FROM hop(t2, happened, INTERVAL '2' HOUR, INTERVAL '1' HOUR)",
    "!SELECT * FROM tumble(t2, note, $Z)", "!SELECT * FROM tumble(nosuch, ts, $Z)",
];

// ---------------------------------------------------------------------------
// The schema the generator knows.

/// A column: its name, its type (one of `COLUMN_TYPES`), whether it may be
/// NULL.
type Column = (&'static str, &'static str, bool);

fn kind_of(sql_type: &str) -> Kind {
    let found = COLUMN_TYPES.iter().find(|(name, _)| *name == sql_type);
    found.expect("a type of COLUMN_TYPES").1
}

/// A relation queries read in batch (never the stream, whose reads are
/// continuous queries that do not end), with its primary key's columns. The
/// first column of a table is an integer, given the row's number at setup.
struct Relation {
    name: &'static str,
    key: &'static [&'static str],
    columns: &'static [Column],
}

/// The first `TABLE_COUNT` relations are the tables, which take writes.
#[rustfmt::skip]
const RELATIONS: &[Relation] = &[
    Relation { name: "t1", key: &["id"], columns: &[
        ("id", "int", false), ("a", "int", true), ("b", "bigint", true), ("c", "smallint", true),
        ("name", "text", false), ("code", "varchar(8)", true), ("flag", "boolean", true),
        ("price", "numeric(10,2)", true), ("r", "real", true), ("d", "double precision", true),
    ] },
    Relation { name: "t2", key: &["id"], columns: &[
        ("id", "bigint", false), ("t1_id", "int", true), ("born", "date", true),
        ("happened", "timestamp", true), ("seen", "timestamptz", true), ("span", "interval", true),
        ("note", "text", true), ("payload", "bytea", true),
    ] },
    Relation { name: "t3", key: &[], columns: &[
        ("k", "int", false), ("v", "text", true), ("x", "real", true), ("tm", "time", true),
    ] },
    Relation { name: "t4", key: &["g", "h"], columns: &[
        ("g", "int", false), ("h", "varchar(8)", false), ("val", "bigint", false),
    ] },
    Relation { name: "v1", key: &[], columns: &[("id", "int", false), ("name", "text", false)] },
    Relation { name: "mv1", key: &[],
        columns: &[("window_start", "timestamp", true), ("n", "bigint", true)] },
    Relation { name: "mv2", key: &[], columns: &[("a", "int", true), ("n", "bigint", true)] },
];
const TABLE_COUNT: usize = 4;

/// The stream `s`: only written, and read by materialized views.
#[rustfmt::skip]
const STREAM_COLUMNS: &[Column] =
    &[("k", "int", true), ("v", "bigint", true), ("ts", "timestamp", true)];

/// The schema, matching `RELATIONS` and `STREAM_COLUMNS`.
#[rustfmt::skip]
const SCHEMA: &[&str] = &[
    "SET TimeZone = 'UTC'", "SET synchronous_commit = off",
    "CREATE TABLE t1 (id int PRIMARY KEY, a int, b bigint, c smallint, name text NOT NULL, \
     code varchar(8), flag boolean, price numeric(10,2), r real, d double precision)",
    "CREATE TABLE t2 (id bigint PRIMARY KEY, t1_id int, born date, happened timestamp, \
     seen timestamptz, span interval, note text, payload bytea)",
    "CREATE TABLE t3 (k int NOT NULL, v text DEFAULT 'dflt', x real, tm time)",
    "CREATE TABLE t4 (g int, h varchar(8), val bigint NOT NULL, PRIMARY KEY (g, h))",
    "CREATE VIEW v1 AS SELECT id, name FROM t1 WHERE flag IS NOT FALSE",
    "CREATE STREAM s (k int, v bigint, ts timestamp, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)",
    "CREATE MATERIALIZED VIEW mv1 AS SELECT window_start, count(*) AS n \
     FROM tumble(s, ts, INTERVAL '10' SECOND) GROUP BY window_start",
    "CREATE MATERIALIZED VIEW mv2 AS SELECT a, count(*) AS n FROM t1 GROUP BY a",
];

/// Edge rows of each table, inserted with random ones at the start. Only
/// plainly valid values: numeric literals are decimals, whose exponent must
/// stay within about ±38 (`PROBES` has bigger ones).
#[rustfmt::skip]
const EDGE_ROWS: [&[&str]; TABLE_COUNT] = [
    &["(0, 0, 0, 0, '', '', false, 0, 0, 0)", "(-1, -1, -1, -1, 'it''s', 'a''b', true, -1, -1, -1)",
      "(2147483647, 2147483647, 1000000000000, 32767, 'max', '12345678', NULL, 99999999.99, \
       1e20, 1e-5)",
      "(-2147483648, -2147483648, NULL, -32768, 'min', NULL, NULL, -99999999.99, NULL, -1e20)"],
    &["(0, 0, '2024-01-01', '2024-01-01 00:00:00', '2024-01-01 00:00:00+00', '1 day', '', '\\x')",
      "(9223372036854775807, 2147483647, '0001-01-01', '1900-01-01 00:00:00', \
       '1999-12-31 23:00:00-02', '1 year 2 months 3 days 04:05:06.789', 'it''s', '\\xdeadbeef')",
      "(-2, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"],
    &["(0, '', 0, '00:00:00')", "(-1, NULL, -1.5, '23:59:59.999999')", "(-2, 'dup', 2.5, NULL)",
      "(-2, 'dup', 2.5, NULL)", "(2147483647, 'it''s', 1e20, NULL)"],
    &["(0, '', 9223372036854775807)", "(-1, 'it''s', -1)", "(0, 'x', 0)"],
];

/// Types of created columns (and of those above), with their kinds.
#[rustfmt::skip]
const COLUMN_TYPES: &[(&str, Kind)] = &[
    ("int", Kind::Int), ("bigint", Kind::Int), ("smallint", Kind::Int), ("serial", Kind::Int),
    ("real", Kind::Float), ("double precision", Kind::Float), ("numeric(10,2)", Kind::Numeric),
    ("numeric", Kind::Numeric), ("text", Kind::Text), ("varchar(8)", Kind::Text),
    ("boolean", Kind::Bool), ("bytea", Kind::Bytea), ("date", Kind::Date), ("time", Kind::Time),
    ("timestamp", Kind::Timestamp), ("timestamptz", Kind::TimestampTz),
    ("interval", Kind::Interval),
];

// ---------------------------------------------------------------------------
// Statements.

/// Expressions at the edges: overflow, division by zero, bad input, out of
/// range arguments, type confusion. Each runs once as `SELECT <probe>` before
/// the random statements; they also appear inside random ones.
#[rustfmt::skip]
const PROBES: &[&str] = &[
    "1 / 0", "1.0 / 0", "sqrt(-1)", "ln(0)", "'abc'::int", "'NaN'::double precision",
    "2147483647::int + 1", "(-2147483648)::int / -1", "(-9223372036854775807 - 1) % -1",
    "32767::smallint + 1::smallint", "1e300", "-1e-300 * 1e30", "CAST(1e300 AS double precision)",
    "INTERVAL '1 day' * 1e300", "CAST(123456789.123 AS numeric(10,2))", "CAST(1 AS numeric(39,2))",
    "chr(0)", "power(10, 400)", "round(1.5, 1000)", "date_trunc('eon', now())", "to_timestamp(1e9)",
    "TIMESTAMP '9999-12-31 23:59:59' + INTERVAL '1000 years'", "make_date(2024, 2, 30)",
    "INTERVAL '2147483647 days' + INTERVAL '1 day'", "regexp_replace('a', '(', 'b')",
    "date_bin(INTERVAL '0 minutes', TIMESTAMP '2024-01-01 00:00:00')", "GREATEST(1, 'a')",
    "(SELECT a FROM t1)", "TIME '10:00:00' + TIME '11:00:00'", "1 IN (SELECT 'a')",
    "substr('\u{1F600}x', 2, 1)",
];

/// Reads of the catalog, the materialized views and the settings.
#[rustfmt::skip]
const CATALOG: &[&str] = &[
    "SELECT name, status, error, kind FROM weir_catalog.jobs ORDER BY name",
    "SELECT * FROM weir_catalog.sources", "SELECT * FROM weir_catalog.sinks",
    "SELECT job, count(*), sum(rows_in) FROM weir_catalog.operators GROUP BY job",
    "SELECT relation, row, watermark FROM weir_catalog.late_rows ORDER BY arrived_at DESC",
    "SELECT epoch, status, detail FROM weir_catalog.checkpoints", "SELECT * FROM weir_catalog.no",
    "SELECT sum(n), min(window_start) FROM mv1", "SELECT * FROM mv2 AS m JOIN t1 ON t1.a = m.a",
    "SELECT relname, relkind FROM pg_catalog.pg_class ORDER BY relname",
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 't1'",
    "SHOW ALL", "SHOW TimeZone", "SHOW no_such_setting", "SHOW TABLES LIKE 't%'", "SHOW VIEWS",
    "SHOW STREAMS", "SHOW MATERIALIZED VIEWS", "SHOW DATABASES",
];

/// Updates and deletes of `{table}`, whose first column is `{key}`.
#[rustfmt::skip]
const WRITES: &[&str] = &[
    "UPDATE {table} SET $h = $H WHERE {key} = $r", "UPDATE {table} SET $h = $H WHERE $b",
    "UPDATE {table} SET $h = $H", "UPDATE {table} SET {key} = $r + 20 WHERE {key} = $r",
    "UPDATE {table} SET $h = $H, $h = NULL WHERE {key} % 3 = 0", "DELETE FROM {table} WHERE $b",
    "DELETE FROM {table} WHERE {key} = $r + 20", "DELETE FROM {table} WHERE {key} % 5 = $r",
];

/// Writes that fail.
#[rustfmt::skip]
const BAD_WRITES: &[&str] = &[
    "INSERT INTO v1 VALUES (1, 'x')", "INSERT INTO mv1 VALUES (TIMESTAMP '2024-01-01', 1)",
    "INSERT INTO nosuch VALUES (1)", "INSERT INTO t1 (id, id) VALUES (1, 2)", "DELETE FROM s",
    "INSERT INTO t1 (id, name) VALUES (NULL, 'x')", "INSERT INTO t3 DEFAULT VALUES",
    "INSERT INTO t1 (id, name, a) VALUES (9, '', 'a')", "INSERT INTO s VALUES (1, 2)",
    "INSERT INTO t1 (id, name) VALUES (7, 'a'), (7, 'b')", "UPDATE t1 SET a = name",
    "INSERT INTO t1 (id, name) VALUES (99, 'x') RETURNING *", "UPDATE mv1 SET n = 0",
    "UPDATE s SET v = 1", "UPDATE t1 SET name = NULL WHERE id = -1",
    "UPDATE t1 SET a = t2.t1_id FROM t2 WHERE t1.id = t2.id",
];

/// DDL: relations and streams come and go; misdirected drops and unsupported
/// objects are refused.
#[rustfmt::skip]
const DDL: &[&str] = &[
    "CREATE TABLE $W (c0 $Y PRIMARY KEY, c1 $Y)", "CREATE TABLE $W (c0 $Y, c1 $Y NOT NULL)",
    "CREATE TABLE IF NOT EXISTS $W (c0 $Y DEFAULT $l, c1 $Y, c2 $Y)", "CREATE TABLE $W AS $Q",
    "CREATE TABLE $W (c0 $Y, ts timestamp, WATERMARK FOR ts AS ts) APPEND ONLY",
    "CREATE VIEW $W AS $Q", "CREATE OR REPLACE VIEW $F AS $Q", "CREATE VIEW $W (v0) AS SELECT $a",
    "CREATE MATERIALIZED VIEW $W AS $M", "CREATE MATERIALIZED VIEW IF NOT EXISTS $W AS $M",
    "CREATE MATERIALIZED VIEW $W AS $M", "CREATE MATERIALIZED VIEW $W AS $M",
    "CREATE STREAM $X (k int, v text, ts timestamp, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)",
    "CREATE SOURCE IF NOT EXISTS $X (k int, ts timestamp, WATERMARK FOR ts AS ts) \
     WITH (idle_timeout = '1s')",
    "DROP TABLE IF EXISTS $F", "DROP TABLE $F, $F CASCADE", "DROP VIEW IF EXISTS $F",
    "DROP MATERIALIZED VIEW IF EXISTS $F CASCADE", "DROP MATERIALIZED VIEW $F RESTRICT",
    "DROP STREAM IF EXISTS $X", "DROP SOURCE $X RESTRICT", "TRUNCATE $F", "SELECT * FROM $F",
    "INSERT INTO $F SELECT * FROM $F LIMIT 3", "INSERT INTO $F VALUES ($a, $a)",
    "DELETE FROM $F WHERE c0 IS NULL", "!CREATE TABLE $W (c0 $Y, $B)",
    "!CREATE VIEW $W (v0, v1) AS SELECT $a", "!CREATE OR REPLACE MATERIALIZED VIEW $F AS $M",
    "!CREATE STREAM $X (k int, PRIMARY KEY (k))", "!CREATE STREAM $X (v int, WATERMARK FOR v AS v)",
    "!CREATE STREAM $X (k int) WITH (connector = 'kafka')", "!CREATE STREAM $X (k int) WITH (x=1)",
    "DROP VIEW t1", "DROP TABLE s", "DROP MATERIALIZED VIEW v1", "DROP STREAM t2", "DROP TABLE t1",
    "TRUNCATE mv1", "CREATE DATABASE IF NOT EXISTS fuzzdb", "DROP DATABASE IF EXISTS fuzzdb",
    "ALTER TABLE fz0 ADD COLUMN extra int", "CREATE INDEX fz_idx ON t1 (a)",
    "CREATE SINK IF NOT EXISTS fz_sink FROM t1 WITH (connector = 'blackhole')",
    "CREATE SINK IF NOT EXISTS fz_sink2 AS SELECT k, v FROM s WITH (connector = 'blackhole')",
    "DROP SINK IF EXISTS fz_sink, fz_sink2", "CREATE SINK fz_x FROM t1 WITH (connector = 'kafka')",
    "CREATE TABLE IF NOT EXISTS fz_wm (id int, ts timestamp, WATERMARK FOR ts AS ts) APPEND ONLY",
    "INSERT INTO fz_wm VALUES (1, TIMESTAMP '2024-01-01'), (2, TIMESTAMP '2023-01-01')",
    "UPDATE fz_wm SET id = 3", "CREATE MATERIALIZED VIEW fz_j AS SELECT 1 FROM t1 JOIN t2 ON true",
];

/// Queries of materialized views: over the stream (whose columns are then
/// the expressions' scope), or over `{from}`, one relation; some refused.
#[rustfmt::skip]
const MV_QUERIES: &[&str] = &[
    "SELECT k, count(*) AS n, sum(v) AS total FROM s GROUP BY k",
    "SELECT window_start, k, max(v) AS top FROM tumble(s, ts, $Z) GROUP BY window_start, k$C",
    "SELECT window_start, window_end, count(*) AS n, avg(v) AS mean \
     FROM hop(s, ts, INTERVAL '1' SECOND, INTERVAL '5' SECOND) GROUP BY window_start, window_end$C",
    "SELECT k, window_start, window_end, count(*) AS n \
     FROM session(s, ts, INTERVAL '3' SECOND, k) GROUP BY k, window_start, window_end$C",
    "SELECT k, v FROM s WHERE v > 0 UNION ALL SELECT k, v FROM s WHERE v <= 0",
    "SELECT window_start, sum(n) AS n FROM mv1 GROUP BY window_start$C",
    "SELECT k, $i AS x, ts FROM s WHERE $b", "SELECT $h, $A AS x FROM {from} GROUP BY $h",
    "SELECT $A AS x, $A AS y FROM {from} WHERE $b", "SELECT $a AS x FROM {from} WHERE $b", "$Q",
    "!SELECT count(*) FROM s EMIT ON WINDOW CLOSE", "!SELECT * FROM t1 ORDER BY id",
    "!SELECT * FROM tumble(s, v, INTERVAL '1' SECOND)", "!SELECT DISTINCT ON (k) k, v FROM s",
    "!SELECT k FROM s WHERE k IN (SELECT a FROM t1)",
];

/// `EXPLAIN`, cursors, prepared statements, `FLUSH`, `CHECKPOINT`, odd queries.
#[rustfmt::skip]
const MISC: &[&str] = &[
    "EXPLAIN $Q", "EXPLAIN VERBOSE $Q", "EXPLAIN ANALYZE $Q", "EXPLAIN (FORMAT JSON) SELECT 1",
    "EXPLAIN CREATE MATERIALIZED VIEW fz_explained AS $M", "DECLARE fz_c CURSOR FOR $Q",
    "DECLARE fz_c NO SCROLL CURSOR WITH HOLD FOR $Q", "DECLARE fz_c SCROLL CURSOR FOR SELECT 1",
    "FETCH 2 FROM fz_c", "FETCH ALL FROM fz_c", "FETCH BACKWARD 1 FROM fz_c", "FETCH 1 FROM no",
    "FETCH 2 FROM fz_c WITH (timeout = '10ms')", "CLOSE fz_c", "CLOSE ALL", "EXECUTE fz_p('x')",
    "PREPARE fz_p AS SELECT $1::int + 1", "EXECUTE fz_p(41)", "DEALLOCATE ALL", "FLUSH", "FLUSH",
    "CHECKPOINT", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < $r) \
     TABLE r",
    "SELECT * FROM generate_series(1, 10, 0)", "SELECT * FROM t1 NATURAL JOIN v1 LIMIT 3",
    "SELECT DISTINCT ON (a) a, id FROM t1 ORDER BY a, id", "SELECT * FROM t1 FOR UPDATE",
    "SELECT a, b, count(*) FROM t1 GROUP BY GROUPING SETS ((a), (b))",
    "SELECT E'\\n', $$dollar$$, U&'\\0041'", "SELECT '{\"a\":1}'::json", "TABLE mv1",
];

/// Session settings: values taken and refused. Not `synchronous_commit`,
/// which setup turns off to keep the run fast.
#[rustfmt::skip]
const SETS: &[&str] = &[
    "SET TimeZone = 'Europe/Paris'", "SET TIME ZONE '+05:30'", "RESET TimeZone",
    "SET TimeZone = 'Nowhere'", "SET DateStyle = 'ISO, MDY'", "SET DateStyle = 'German'",
    "SET IntervalStyle = iso_8601", "SET bytea_output = escape", "SET bytea_output TO hex",
    "SET extra_float_digits = 3", "SET extra_float_digits = 4", "SET client_encoding = 'LATIN1'",
    "SET application_name = 'it''s'", "SET SESSION statement_timeout = '30s'",
    "SET statement_timeout = 'forever'", "SET implicit_flush = off", "SET implicit_flush = true",
    "SET max_client_lag_rows = -5", "SET streaming_parallelism = 3", "SET streaming_parallelism=0",
    "RESET streaming_parallelism", "SET LOCAL lock_timeout = '1s'", "SET server_version = '16.0'",
    "SET no_such_setting = 1", "SET fuzz.knob = 42", "SELECT current_setting('nope')",
];

/// Rows for the stream: event times (`$J`) mostly moving forward, sometimes
/// late (behind the watermark), sometimes NULL.
#[rustfmt::skip]
const STREAM_INSERTS: &[&str] = &[
    "INSERT INTO s VALUES ($r, $i, $J)", "INSERT INTO s (ts, k) VALUES ($J, $r)",
    "INSERT INTO s VALUES ($r, $i, $J), ($r, $i, $J), (NULL, $i, $J)",
    "INSERT INTO s VALUES ($r, $i, $J), (1, 1, $J - INTERVAL '30' SECOND), (2, 2, NULL)",
    "!INSERT INTO s VALUES ($r, 'x', $J)", "!INSERT INTO s VALUES (1, 9223372036854775807 + 1, $J)",
];

/// Broken statements of well-known shapes.
#[rustfmt::skip]
const BROKEN: &[&str] = &[
    "SELECT", "SELECT * FROM WHERE", "INSERT INTO t1 VALUES (", "SELECT 'unterminated",
    "SELECT $$dollar", "SELECT /* unterminated comment", "", ";;", "-- only a comment",
    "SELECT 1;; SELECT 'x'::int", "SELECT E'\\u00'", "SELECT U&'\\0000'", "SELECT 1e", "SELECT $1",
    "WITH x AS (SELECT 1)", "SELECT CAST(1 AS nosuchtype)", "SELECT INTERVAL '1' FORTNIGHT",
    "VALUES (1), (1, 2)", "SÉLECT 1", "SELECT '\u{FEFF}1'", "SELECT * FROM tumble(t2)",
    "SELECT ((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))", "SELECT (((1)) + 2",
];

/// Words and punctuation for token soup: no `BEGIN`/`COMMIT` (the test tracks
/// transaction blocks), no destructive verbs, not the stream's name.
const SOUP: &str = "SELECT FROM WHERE GROUP BY ORDER HAVING JOIN ON AS INSERT INTO VALUES UPDATE \
    SET CREATE TABLE VIEW MATERIALIZED STREAM WITH UNION ALL CASE WHEN THEN ELSE END NULL NOT AND \
    IN EXISTS CAST LIMIT OVER PARTITION INTERVAL WATERMARK EMIT tumble count t1 t2 mv1 id a ts * \
    ( ) , ; . = <> + - / % || :: 'x' '' 1 0 -1 3.5 1e309 $1 \"q\" [ ] @ # ? \\ $$ E'\\n' ARRAY int";

/// Transaction statements that open a block, end one, or do neither.
#[rustfmt::skip]
const TRANSACTIONS: [(Effect, &[&str]); 3] = [
    (Effect::Begin, &["BEGIN", "BEGIN", "START TRANSACTION", "BEGIN ISOLATION LEVEL SERIALIZABLE"]),
    (Effect::End, &["COMMIT", "COMMIT", "END", "ROLLBACK", "ABORT", "COMMIT AND NO CHAIN"]),
    (Effect::None, &["SAVEPOINT sp", "RELEASE SAVEPOINT sp", "ROLLBACK TO SAVEPOINT sp"]),
];

/// Relations and streams the statements create and drop (never reading a
/// stream: a query that does not end), taken or invalid names, bad columns.
const FUZZ_NAMES: &[&str] = &["fz0", "fz1", "fz2", "public.fz3", "\"Fz Four\""];
const FUZZ_STREAMS: &[&str] = &["fzs0", "fzs1"];
#[rustfmt::skip]
const BAD_NAMES: &[&str] = &["select", "1abc", "t1", "mv1", "s", "weir_catalog.jobs", "nosuch.fz"];
#[rustfmt::skip]
const BAD_DEFINITIONS: &[&str] = &[
    "c0 int", "bad json", "bad numeric(40,2)", "u int UNIQUE", "ch int CHECK (ch > 0)",
    "fk int REFERENCES t1 (id)", "PRIMARY KEY (c0), PRIMARY KEY (c0)", "WATERMARK FOR c0 AS c0",
];

/// How often each kind of statement is generated, and its templates (none
/// for those generated in code).
#[rustfmt::skip]
const SHAPES: &[(u32, (&str, &[&str]))] = &[
    (31, ("select", &["$Q"])), (3, ("probe", &["SELECT $P"])), (6, ("catalog", CATALOG)),
    (13, ("insert", &[])), (10, ("write", WRITES)), (3, ("bad write", BAD_WRITES)),
    (5, ("stream", STREAM_INSERTS)), (9, ("ddl", DDL)), (4, ("set", SETS)), (8, ("misc", MISC)),
    (3, ("transaction", &[])), (3, ("malformed", &[])), (2, ("broken", BROKEN)),
];

// ---------------------------------------------------------------------------
// The generator.

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The event time `second` seconds after 2024-01-01.
fn at_second(second: i64) -> String {
    format!("TIMESTAMP '2024-01-01 00:00:00' + INTERVAL '{second} seconds'")
}

/// The columns a query can refer to, as written (`r0.id`), with their kinds.
type Scope = Vec<(String, Kind)>;

fn scope_of(columns: &[Column], qualifier: Option<&str>) -> Scope {
    let prefix = qualifier.map(|q| format!("{q}.")).unwrap_or_default();
    columns
        .iter()
        .map(|(name, sql_type, _)| (format!("{prefix}{name}"), kind_of(sql_type)))
        .collect()
}

/// What a statement does to the transaction block: opens one (once it
/// succeeds), ends one (even if it fails), or neither.
#[derive(Clone, Copy)]
enum Effect {
    None,
    Begin,
    End,
}

/// A statement: what kind it is (for the summary), its effect, its text.
type Statement = (&'static str, Effect, String);

#[derive(Default)]
struct Generator {
    /// The state of splitmix64, so that a seed replays a run.
    rng: u64,
    /// The statement being generated picks values and expressions that fail.
    chaos: bool,
    /// Relation aliases used so far in the statement (`r0`, `r1`, ...).
    aliases: usize,
    /// Event time of the stream's latest row, in seconds after 2024-01-01.
    stream_second: i64,
}

impl Generator {
    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "a choice among no items");
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }

    /// A number in `low..=high`.
    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as usize) as i64
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn word<T: Copy>(&mut self, words: &[T]) -> T {
        words[self.below(words.len())]
    }

    fn weighted<T: Copy>(&mut self, choices: &[(u32, T)]) -> T {
        let mut roll = self.below(choices.iter().map(|c| c.0 as usize).sum()) as u32;
        for &(weight, choice) in choices {
            if roll < weight {
                return choice;
            }
            roll -= weight;
        }
        unreachable!("the roll is below the total weight")
    }

    /// A kind, weighted; `ordered`: one that is compared and sorted.
    fn kind(&mut self, ordered: bool) -> Kind {
        let kinds: Vec<(u32, Kind)> = (KINDS.iter())
            .filter(|info| !ordered || info.kind != Kind::Bytea)
            .map(|info| (info.weight, info.kind))
            .collect();
        self.weighted(&kinds)
    }

    /// A template of `templates`, skipping the chaos ones unless in chaos mode.
    fn template(&mut self, templates: &[&'static str]) -> &'static str {
        let chaos = self.chaos;
        let usable =
            |t: &&'static str| t.strip_prefix('!').map_or(Some(*t), |t| chaos.then_some(t));
        let usable: Vec<&'static str> = templates.iter().filter_map(usable).collect();
        self.word(&usable)
    }

    /// The schema and its first rows.
    fn setup(&mut self) -> Vec<String> {
        let mut statements: Vec<String> = SCHEMA.iter().map(|sql| sql.to_string()).collect();
        for (table, relation) in RELATIONS[..TABLE_COUNT].iter().enumerate() {
            let mut rows: Vec<String> = EDGE_ROWS[table].iter().map(|r| r.to_string()).collect();
            let columns: Vec<&Column> = relation.columns.iter().skip(1).collect();
            for number in 1..=SETUP_ROWS {
                let row = self.row(relation, &columns);
                rows.push(format!("({number}, {}", &row[1..]));
            }
            let (name, rows) = (relation.name, rows.join(", "));
            statements.push(format!("INSERT INTO {name} VALUES {rows}"));
        }
        let stream = "INSERT INTO s VALUES (0, 1, $J), (1, 2, $J), (2, 3, $J), (0, 4, $J)";
        statements.push(self.expand(stream, Kind::Int, &Scope::new(), 0));
        statements.push("FLUSH".to_string());
        statements
    }

    /// The next random statement. `in_block`: a transaction block is open.
    fn statement(&mut self, in_block: bool) -> Statement {
        self.chaos = self.chance(CHAOS_PERCENT);
        self.aliases = 0;
        let (mut category, templates) = self.weighted(SHAPES);
        if in_block && self.chance(20) {
            category = "transaction";
        }
        let sql = match category {
            "insert" => self.insert(),
            "malformed" => self.malformed(),
            "transaction" => {
                let (effect, list) = match self.below(10) {
                    0 => TRANSACTIONS[2],
                    n => TRANSACTIONS[usize::from(in_block || n == 1)],
                };
                return (category, effect, self.word(list).to_string());
            }
            _ => {
                // A template of a write refers to a table and its columns.
                let template = self.template(templates);
                let table = &RELATIONS[self.below(TABLE_COUNT)];
                let mut scope = Scope::new();
                if template.contains("{table}") {
                    scope = scope_of(table.columns, None);
                }
                let sql = self.expand(template, Kind::Int, &scope, 2);
                sql.replace("{table}", table.name)
                    .replace("{key}", table.columns[0].0)
            }
        };
        (category, Effect::None, sql)
    }

    // -- Values and expressions.

    /// A valid literal of `kind`: cast when `typed` (in an expression), else
    /// left for an assignment to convert.
    fn value(&mut self, kind: Kind, typed: bool) -> String {
        if kind == Kind::Int && self.chance(70) {
            return self.range(-20, 100).to_string();
        }
        let text = self.word(kind.info().values);
        match kind {
            Kind::Int | Kind::Float | Kind::Bool => text.to_string(),
            Kind::Text => quote(text),
            _ if typed => format!("CAST({} AS {})", quote(text), kind.info().sql_type),
            _ => quote(text),
        }
    }

    /// A value for a column (of the primary key if `key`: mostly new): NULL
    /// where allowed, and in chaos mode sometimes NULL where not, or text
    /// that does not convert.
    fn column_literal(&mut self, column: &Column, key: bool) -> String {
        let (chaos, (_, sql_type, nullable)) = (self.chaos, *column);
        let kind = kind_of(sql_type);
        match self.below(100) {
            0..=9 if key && chaos => "NULL".to_string(),
            _ if key && kind == Kind::Text => format!("'k{}'", self.range(0, 60)),
            0..=9 if key => self.range(-1, 25).to_string(),
            _ if key => self.range(26, 1_000_000).to_string(),
            0..=4 if chaos && !nullable => "NULL".to_string(),
            5..=11 if chaos => quote(self.word(BAD_TEXTS)),
            12..=21 if nullable => "NULL".to_string(),
            _ => match sql_type {
                "smallint" => self.range(-100, 100).to_string(),
                "varchar(8)" => quote(self.word(&["", "a", "it's", "12345678", "é"])),
                _ => self.value(kind, false),
            },
        }
    }

    fn leaf(&mut self, kind: Kind, scope: &Scope) -> String {
        let columns: Vec<&(String, Kind)> = scope.iter().filter(|c| c.1 == kind).collect();
        if !columns.is_empty() && self.chance(75) {
            return columns[self.below(columns.len())].0.clone();
        }
        let info = kind.info();
        match self.below(20) {
            0 => "NULL".to_string(),
            1 | 2 if self.chaos => {
                format!("CAST({} AS {})", quote(self.word(BAD_TEXTS)), info.sql_type)
            }
            _ => self.value(kind, true),
        }
    }

    /// An expression of `kind` over `scope`, nested at most `depth` deep.
    fn expr(&mut self, kind: Kind, scope: &Scope, depth: u32) -> String {
        if depth == 0 || self.chance(25) {
            return self.leaf(kind, scope);
        }
        let templates = match self.below(100) {
            0..=7 if self.chaos => CHAOS_EXPRESSIONS,
            0..=11 => GENERIC,
            _ => kind.info().templates,
        };
        let template = self.template(templates);
        self.expand(template, kind, scope, depth - 1)
    }

    /// `template` with its parts generated (see "Templates"): the template
    /// is of `kind`, and its expressions are over `scope`, at most `d` deep.
    fn expand(&mut self, template: &str, kind: Kind, scope: &Scope, d: u32) -> String {
        let shared = self.kind(true);
        let (column, column_kind) = match scope.is_empty() {
            true => (self.value(shared, true), shared),
            false => scope[self.below(scope.len())].clone(),
        };
        let mut out = String::new();
        let mut chars = template.chars().peekable();
        while let Some(ch) = chars.next() {
            let Some(code) = chars.next_if(|c| ch == '$' && c.is_ascii_alphabetic()) else {
                out.push(ch);
                out.extend(chars.next_if(|&c| ch == '$' && c == '$'));
                continue;
            };
            let part = match code {
                'k' => self.expr(kind, scope, d),
                'l' => self.value(kind, true),
                'q' if !self.chaos => format!("NULLIF({}, 0)", self.expr(kind, scope, d)),
                'q' if self.chance(30) => "0".to_string(),
                'q' => self.expr(kind, scope, d),
                'G' if !scope.is_empty() && self.chance(75) => {
                    scope[self.below(scope.len())].0.clone()
                }
                'a' | 'N' | 'G' | 'o' => {
                    let sub = match code {
                        'a' => self.kind(false),
                        'N' => self.word(NUMBERS),
                        'G' => self.kind(true),
                        _ => shared,
                    };
                    self.expr(sub, scope, d)
                }
                'c' => self.value(shared, true),
                'h' => column.clone(),
                'H' => self.expr(column_kind, scope, d),
                'A' | 'O' => {
                    let function = self.template(if code == 'A' {
                        AGGREGATES
                    } else {
                        WINDOW_FUNCTIONS
                    });
                    self.expand(function, kind, scope, 1)
                }
                'S' | 'E' | 'I' => self.subquery(code, kind, scope, d),
                'P' => format!("({})", self.word(PROBES)),
                'T' => kind.info().sql_type.to_string(),
                'r' => self.range(0, 6).to_string(),
                'Z' => self.template(SIZES).to_string(),
                'C' => self.word(&["", "", " EMIT ON WINDOW CLOSE"]).to_string(),
                'Q' => {
                    let depth = 1 + self.below(3) as u32;
                    self.select(depth)
                }
                'M' => self.mv_query(),
                'F' => self.word(FUZZ_NAMES).to_string(),
                'W' if self.chaos && self.chance(40) => self.word(BAD_NAMES).to_string(),
                'W' => self.word(FUZZ_NAMES).to_string(),
                'X' => self.word(FUZZ_STREAMS).to_string(),
                'J' => {
                    self.stream_second += self.range(0, 2);
                    at_second(self.stream_second)
                }
                'Y' => self.word(COLUMN_TYPES).0.to_string(),
                'B' => self.word(BAD_DEFINITIONS).to_string(),
                other => match KINDS.iter().find(|info| info.code == other) {
                    Some(info) => self.expr(info.kind, scope, d),
                    None => panic!("unknown ${other} in the template {template}"),
                },
            };
            out.push_str(&part);
        }
        out
    }

    /// A subquery over one relation, sometimes correlated: for `'S'` one
    /// value of `kind`, for `'E'` an `EXISTS` test, for `'I'` an `IN` test.
    fn subquery(&mut self, code: char, kind: Kind, outer: &Scope, d: u32) -> String {
        if d == 0 {
            return self.leaf(if code == 'S' { kind } else { Kind::Bool }, outer);
        }
        let (from, mut scope) = self.single_relation();
        if self.chance(30) {
            scope.extend(outer.iter().cloned());
        }
        let filter = self.where_clause(&scope, d - 1, 50);
        let not = self.word(&["", "NOT "]);
        match code {
            'E' => format!("({not}EXISTS (SELECT 1 FROM {from}{filter}))"),
            'I' => {
                let kind = self.kind(true);
                let needle = self.expr(kind, outer, d - 1);
                let value = self.expr(kind, &scope, d - 1);
                let extra = if self.chaos { ", 1" } else { "" };
                format!("({needle} {not}IN (SELECT {value}{extra} FROM {from}{filter}))")
            }
            // In chaos mode, perhaps more than one row.
            _ if self.chaos => format!("(SELECT {} FROM {from})", self.expr(kind, &scope, d - 1)),
            _ => {
                let function = match kind {
                    Kind::Bool => "bool_or",
                    Kind::Int | Kind::Float | Kind::Numeric if self.chance(30) => "sum",
                    _ => self.word(&["min", "max"]),
                };
                let value = self.expr(kind, &scope, 1);
                format!("(SELECT {function}({value}) FROM {from}{filter})")
            }
        }
    }

    fn where_clause(&mut self, scope: &Scope, depth: u32, percent: usize) -> String {
        if !self.chance(percent) {
            return String::new();
        }
        format!(" WHERE {}", self.expr(Kind::Bool, scope, depth.max(1)))
    }

    // -- Queries and statements.

    /// One relation with a fresh alias, and its columns.
    fn single_relation(&mut self) -> (String, Scope) {
        let relation = &RELATIONS[self.below(RELATIONS.len())];
        self.aliases += 1;
        let alias = format!("r{}", self.aliases - 1);
        let scope = scope_of(relation.columns, Some(&alias));
        (format!("{} AS {alias}", relation.name), scope)
    }

    /// A random query, `depth` bounding the nesting of its expressions.
    fn select(&mut self, depth: u32) -> String {
        if self.chance(20) {
            let template = self.template(LITERAL_QUERIES);
            return self.expand(template, Kind::Int, &Scope::new(), depth);
        }
        // A `FROM` of one to three relations; three join on equality only,
        // to keep the row counts small.
        let (mut from, mut scope) = self.single_relation();
        let joins = self.weighted(&[(11, 0), (8, 1), (1, 2)]);
        for _ in 0..joins {
            let (right, right_scope) = self.single_relation();
            let mut pairs = Vec::new();
            for (l, kind) in scope.iter().filter(|c| c.1 != Kind::Bool) {
                let same = right_scope.iter().filter(|r| r.1 == *kind);
                pairs.extend(same.map(|r| format!("{l} = {}", r.0)));
            }
            scope.extend(right_scope);
            let join = self.word(&JOINS[..if joins == 2 { 2 } else { JOINS.len() }]);
            let condition = match pairs.is_empty() {
                false if joins == 2 || self.chance(80) => pairs[self.below(pairs.len())].clone(),
                _ if joins == 2 => "false".to_string(),
                _ => self.expr(Kind::Bool, &scope, 1),
            };
            from = match join {
                "CROSS JOIN" | "," => format!("{from} {join} {right}"),
                _ => format!("{from} {join} {right} ON {condition}"),
            };
        }
        let template = self.template(QUERIES);
        let query = self.expand(template, Kind::Int, &scope, depth);
        query.replace("{from}", &from)
    }

    /// The query of a materialized view (see `MV_QUERIES`).
    fn mv_query(&mut self) -> String {
        let template = self.template(MV_QUERIES);
        let (from, mut scope) = self.single_relation();
        if !template.contains("{from}") {
            scope = scope_of(STREAM_COLUMNS, None);
        }
        let query = self.expand(template, Kind::Int, &scope, 2);
        query.replace("{from}", &from)
    }

    /// A row of values for `columns` of `relation`; in chaos mode, sometimes
    /// one too many.
    fn row(&mut self, relation: &Relation, columns: &[&Column]) -> String {
        let mut values = Vec::new();
        for column in columns {
            values.push(self.column_literal(column, relation.key.contains(&column.0)));
        }
        if self.chaos && self.chance(20) {
            values.push("1".to_string());
        }
        format!("({})", values.join(", "))
    }

    /// An `INSERT` into a table, of all its columns or of the required ones,
    /// named.
    fn insert(&mut self) -> String {
        let (relation, named) = (&RELATIONS[self.below(TABLE_COUNT)], self.chance(30));
        let mut columns: Vec<&Column> = relation.columns.iter().collect();
        let mut names = String::new();
        if named {
            columns.retain(|column| !column.2);
            let list: Vec<&str> = columns.iter().map(|column| column.0).collect();
            names = format!(" ({})", list.join(", "));
        }
        let mut rows = Vec::new();
        for _ in 0..1 + self.below(3) {
            rows.push(self.row(relation, &columns));
        }
        let (name, rows) = (relation.name, rows.join(", "));
        format!("INSERT INTO {name}{names} VALUES {rows}")
    }

    /// Token soup, or a query cut short.
    fn malformed(&mut self) -> String {
        if self.chance(50) {
            let soup: Vec<&str> = SOUP.split_whitespace().collect();
            let words: Vec<&str> = (0..1 + self.below(12)).map(|_| self.word(&soup)).collect();
            return words.join(" ");
        }
        let query = self.select(1);
        let cuts: Vec<usize> = query.char_indices().map(|(i, _)| i).skip(1).collect();
        match cuts.is_empty() {
            true => query,
            false => query[..self.word(&cuts)].to_string(),
        }
    }
}

// ---------------------------------------------------------------------------
// Running statements.

/// What the test knows of the fuzzed session, and what it saw.
#[derive(Default)]
struct Session {
    /// A transaction block is open, as far as the test knows.
    in_block: bool,
    verbose: bool,
    /// Statements run, and succeeded; errors by SQLSTATE; per category,
    /// statements that succeeded and failed.
    run: usize,
    ok: usize,
    codes: BTreeMap<String, usize>,
    categories: BTreeMap<&'static str, (usize, usize)>,
    /// Statements that failed with XX000, with the message.
    internal: Vec<String>,
    /// Why the run could not go on: a hang, a dropped session, an error
    /// without SQLSTATE, a failed liveness check.
    fatal: Option<String>,
}

/// An error as the server gave it: severity, SQLSTATE and message (the
/// `Display` of a `tokio_postgres::Error` is only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => error.to_string(),
    }
}

impl Session {
    fn fatal(&mut self, reason: String) {
        self.fatal = Some(reason);
    }

    /// Runs `statement`. On a failure that ends the run, `fatal` says why.
    async fn run(&mut self, client: &Client, number: usize, statement: &Statement) {
        let (category, effect, sql) = (statement.0, statement.1, &statement.2);
        set_current(&format!("#{number}: {sql}"));
        if self.verbose {
            eprintln!("sql_fuzz #{number} [{category}]: {sql}");
        }
        let result = tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query(sql)).await;
        self.run += 1;
        let counts = self.categories.entry(category).or_default();
        let error = match result {
            Err(_) => return self.fatal(format!("#{number} did not finish in time: {sql}")),
            Ok(Err(error)) => error,
            Ok(Ok(_)) => {
                counts.0 += 1;
                self.ok += 1;
                match effect {
                    Effect::Begin => self.in_block = true,
                    Effect::End => self.in_block = false,
                    Effect::None => {}
                }
                return;
            }
        };
        counts.1 += 1;
        let Some(db) = error.as_db_error() else {
            let reason = format!("#{number} failed without SQLSTATE: {error}\n  {sql}");
            return self.fatal(reason);
        };
        let code = db.code().code();
        if self.verbose {
            eprintln!("  -> {code}: {}", db.message());
        }
        if matches!(db.severity(), "FATAL" | "PANIC") {
            let reason = describe(&error);
            return self.fatal(format!("#{number} ended the session: {reason}\n  {sql}"));
        }
        if code == "XX000" {
            let failure = format!("#{number}: {sql}\n      {}", db.message());
            self.internal.push(failure);
        }
        *self.codes.entry(code.to_string()).or_default() += 1;
        if self.in_block || code == "25P02" {
            // End the transaction block the failed statement left failed.
            set_current(&format!("ROLLBACK after #{number}"));
            let rollback = tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query("ROLLBACK"));
            let answer = rollback.await;
            self.in_block = false;
            match answer {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.fatal(format!("ROLLBACK after #{number}: {}", describe(&e))),
                Err(_) => self.fatal(format!("ROLLBACK after #{number} did not finish")),
            }
        }
        if matches!(effect, Effect::End) {
            self.in_block = false;
        }
    }

    fn print(&self, seed: u64, elapsed: Duration) {
        let (ok, run, seconds) = (self.ok, self.run, elapsed.as_secs_f64());
        eprintln!("sql_fuzz (seed {seed}): {ok} of {run} statements succeeded in {seconds:.1} s");
        for (category, (ok, failed)) in &self.categories {
            eprintln!("  {category:<12} {ok:>5} succeeded {failed:>5} failed");
        }
        eprintln!("  errors by SQLSTATE: {:?}", self.codes);
        let internal = self.internal.join("\n    ");
        if !internal.is_empty() {
            eprintln!("  internal errors (XX000):\n    {internal}");
        }
    }
}

/// A new connection is accepted and answers, and so does the bystander
/// session opened at the start, which then trims the tables back to their
/// first rows (those of setup, and a few more).
async fn check_liveness(server: &TestServer, bystander: &Client) -> Result<(), String> {
    let config = server.conn_str("weir");
    let connect = tokio_postgres::connect(&config, NoTls);
    let (fresh, connection) = tokio::time::timeout(STATEMENT_TIMEOUT, connect)
        .await
        .map_err(|_| "a new connection was not accepted in time".to_string())?
        .map_err(|e| format!("a new connection was refused: {}", describe(&e)))?;
    tokio::spawn(connection);
    let mut checks = vec![(&fresh, "SELECT 1".to_string())];
    for relation in &RELATIONS[..TABLE_COUNT] {
        let (name, first) = (relation.name, relation.columns[0].0);
        let trim = format!("DELETE FROM {name} WHERE {first} > 20 AND {first} < 2000000000");
        checks.push((bystander, trim));
    }
    for (client, sql) in checks {
        match tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query(&sql)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("{sql}: {}", describe(&e))),
            Err(_) => return Err(format!("{sql}: no answer in time")),
        }
    }
    Ok(())
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let number = value.trim().parse();
    Some(number.unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_statements_never_panic_and_fail_with_sqlstates() {
    install_panic_hook();
    let seed = env_number("WEIR_SQL_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let statements = env_number("WEIR_SQL_FUZZ_STATEMENTS").unwrap_or(DEFAULT_STATEMENTS) as usize;
    let verbose = std::env::var_os("WEIR_SQL_FUZZ_VERBOSE").is_some();
    let replay = format!("WEIR_SQL_FUZZ_SEED={seed} WEIR_SQL_FUZZ_STATEMENTS={statements}");
    let probes = PROBES.len();
    eprintln!("sql_fuzz: {statements} statements after {probes} probes (replay with {replay})");

    let server = TestServer::start().await;
    let client = server.connect("weir").await;
    let bystander = server.connect("weir").await;
    let mut generator = Generator {
        rng: seed,
        ..Generator::default()
    };
    for sql in generator.setup() {
        set_current(&format!("setup: {sql}"));
        if let Err(e) = client.batch_execute(&sql).await {
            panic!("a setup statement failed with {}\n  {sql}", describe(&e));
        }
    }

    let started = Instant::now();
    let mut session = Session {
        verbose,
        ..Session::default()
    };
    for (number, probe) in PROBES.iter().enumerate() {
        let probe = ("probe sweep", Effect::None, format!("SELECT {probe}"));
        session.run(&client, number, &probe).await;
    }
    for index in 0..=statements {
        if session.fatal.is_some() {
            break;
        }
        if index.is_multiple_of(LIVENESS_EVERY) || index == statements {
            set_current(&format!("liveness check after {index} random statements"));
            if let Err(problem) = check_liveness(&server, &bystander).await {
                session.fatal = Some(format!("liveness check at {index}: {problem}"));
                break;
            }
        }
        if index == statements {
            break;
        }
        let statement = generator.statement(session.in_block);
        session.run(&client, probes + index, &statement).await;
    }
    session.print(seed, started.elapsed());
    set_current("after the run");

    let mut problems: Vec<String> = session.fatal.iter().cloned().collect();
    let panics = PANICS.load(Ordering::SeqCst);
    if panics > 0 {
        let first = lock(&FIRST_PANIC).clone().unwrap_or_default();
        problems.push(format!("{panics} panic(s); the first:\n{first}"));
    }
    let internal = session.internal.join("\n  ");
    if FAIL_ON_INTERNAL_ERRORS && !internal.is_empty() {
        problems.push(format!("XX000 (internal error) failures:\n  {internal}"));
    }
    let (ok, run) = (session.ok, session.run);
    if ok * 10 < run * 3 {
        problems.push(format!("only {ok} of {run} statements succeeded (< 30 %)"));
    }
    if session.codes.is_empty() {
        problems.push("no statement failed: the generator does not exercise errors".to_string());
    }
    let problems = problems.join("\n\n");
    assert!(problems.is_empty(), "sql_fuzz ({replay}):\n\n{problems}");
}
