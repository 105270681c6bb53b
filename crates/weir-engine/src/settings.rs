//! Session settings: what `SET`, `SHOW` and `RESET` read and write.
//!
//! The names and defaults follow Postgres, so that drivers and psql find what
//! they expect (`TimeZone`, `DateStyle`, `extra_float_digits`, ...). Names are
//! case-insensitive; each setting has one canonical spelling, used by `SHOW`
//! and in `ParameterStatus` messages. Settings marked *reported* are sent to
//! the client whenever they change, as Postgres does.
//!
//! An output style Weir cannot produce (`DateStyle = 'German'`) is refused
//! rather than silently ignored. Some settings are accepted for clients'
//! sake and have no effect yet: `lock_timeout`,
//! `idle_in_transaction_session_timeout`, `client_min_messages`, and the
//! transaction isolation and read-only settings.

use std::collections::BTreeMap;
use std::str::FromStr;

use datafusion::arrow::array::timezone::Tz;

use crate::error::{Result, WeirError, sqlstate};

/// The Postgres version Weir presents itself as.
pub const SERVER_VERSION: &str = "15.0";
pub const SERVER_VERSION_NUM: &str = "150000";

/// How a setting's value is checked and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any text.
    Text,
    /// `on`/`off` (and the other spellings Postgres accepts).
    Bool,
    /// An integer in a range.
    Int(i64, i64),
    /// A time zone name or offset.
    TimeZone,
    /// Only `ISO` output.
    DateStyle,
    /// Only `postgres` output.
    IntervalStyle,
    /// Only UTF8.
    Encoding,
    /// `hex` or `escape`.
    ByteaOutput,
    /// A duration such as `5s` or `1000` (milliseconds).
    Duration,
    /// `on`, `off`, or Postgres' replication levels (`local`,
    /// `remote_write`, `remote_apply`), which mean `on` for one server.
    SynchronousCommit,
    /// Cannot be changed.
    ReadOnly,
}

struct Definition {
    name: &'static str,
    default: &'static str,
    kind: Kind,
    reported: bool,
    description: &'static str,
}

const fn def(
    name: &'static str,
    default: &'static str,
    kind: Kind,
    reported: bool,
    description: &'static str,
) -> Definition {
    Definition {
        name,
        default,
        kind,
        reported,
        description,
    }
}

/// Every setting Weir knows, with its default.
const DEFINITIONS: &[Definition] = &[
    def(
        "application_name",
        "",
        Kind::Text,
        true,
        "Sets the application name to be reported in statistics and logs.",
    ),
    def(
        "bytea_output",
        "hex",
        Kind::ByteaOutput,
        false,
        "Sets the output format for bytea.",
    ),
    def(
        "client_encoding",
        "UTF8",
        Kind::Encoding,
        true,
        "Sets the client's character set encoding.",
    ),
    def(
        "client_min_messages",
        "notice",
        Kind::Text,
        false,
        "Sets the message levels that are sent to the client.",
    ),
    def(
        "DateStyle",
        "ISO, MDY",
        Kind::DateStyle,
        true,
        "Sets the display format for date and time values.",
    ),
    def(
        "default_transaction_isolation",
        "read committed",
        Kind::Text,
        false,
        "Sets the transaction isolation level of each new transaction.",
    ),
    def(
        "default_transaction_read_only",
        "off",
        Kind::Bool,
        true,
        "Sets the default read-only status of new transactions.",
    ),
    def(
        "extra_float_digits",
        "1",
        Kind::Int(-15, 3),
        false,
        "Sets the number of digits displayed for floating-point values.",
    ),
    def(
        "idle_in_transaction_session_timeout",
        "0",
        Kind::Duration,
        false,
        "Sets the maximum allowed idle time between queries, when in a transaction.",
    ),
    def(
        "in_hot_standby",
        "off",
        Kind::ReadOnly,
        true,
        "Shows whether hot standby is currently active.",
    ),
    def(
        "integer_datetimes",
        "on",
        Kind::ReadOnly,
        true,
        "Shows whether datetimes are integer based.",
    ),
    def(
        "IntervalStyle",
        "postgres",
        Kind::IntervalStyle,
        true,
        "Sets the display format for interval values.",
    ),
    def(
        "is_superuser",
        "on",
        Kind::ReadOnly,
        true,
        "Shows whether the current user is a superuser.",
    ),
    def(
        "lc_messages",
        "C.UTF-8",
        Kind::Text,
        false,
        "Sets the language in which messages are displayed.",
    ),
    def(
        "lock_timeout",
        "0",
        Kind::Duration,
        false,
        "Sets the maximum allowed duration of any wait for a lock.",
    ),
    def(
        "max_client_lag_rows",
        "1000000",
        Kind::Int(1, i64::MAX),
        false,
        "Sets how many rows of a continuous query, SUBSCRIBE or continuous COPY may wait for a slow client before the query is stopped with an error.",
    ),
    def(
        "max_identifier_length",
        "63",
        Kind::ReadOnly,
        false,
        "Shows the maximum identifier length.",
    ),
    def(
        "implicit_flush",
        "off",
        Kind::Bool,
        false,
        "Makes each INSERT, UPDATE and DELETE wait until the materialized views reflect it.",
    ),
    def(
        "search_path",
        "\"$user\", public",
        Kind::Text,
        false,
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    def(
        "server_encoding",
        "UTF8",
        Kind::ReadOnly,
        true,
        "Shows the server (database) character set encoding.",
    ),
    def(
        "server_version",
        SERVER_VERSION,
        Kind::ReadOnly,
        true,
        "Shows the server version.",
    ),
    def(
        "server_version_num",
        SERVER_VERSION_NUM,
        Kind::ReadOnly,
        false,
        "Shows the server version as an integer.",
    ),
    def(
        "session_authorization",
        "weir",
        Kind::ReadOnly,
        true,
        "Sets the session user name.",
    ),
    def(
        "standard_conforming_strings",
        "on",
        Kind::ReadOnly,
        true,
        "Causes '...' strings to treat backslashes literally.",
    ),
    def(
        "statement_timeout",
        "0",
        Kind::Duration,
        false,
        "Sets the maximum allowed duration of any statement.",
    ),
    def(
        "streaming_parallelism",
        CORES,
        Kind::Int(1, 1024),
        false,
        "Sets the number of parallel subtasks of each keyed operator of new materialized views (default: the number of cores).",
    ),
    def(
        "synchronous_commit",
        "on",
        Kind::SynchronousCommit,
        false,
        "Sets the current transaction's synchronization level.",
    ),
    def(
        "TimeZone",
        "UTC",
        Kind::TimeZone,
        true,
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    def(
        "transaction_isolation",
        "read committed",
        Kind::Text,
        false,
        "Sets the current transaction's isolation level.",
    ),
    def(
        "transaction_read_only",
        "off",
        Kind::Bool,
        false,
        "Sets the current transaction's read-only status.",
    ),
];

/// The default of a setting that is the number of cores of the machine.
const CORES: &str = "<cores>";

impl Definition {
    fn default_value(&self) -> String {
        if self.default == CORES {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .to_string()
        } else {
            self.default.to_string()
        }
    }
}

/// Other names of settings: RisingWave's, for its users' scripts.
const ALIASES: &[(&str, &str)] = &[("rw_implicit_flush", "implicit_flush")];

fn definition(name: &str) -> Option<&'static Definition> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map_or(name, |(_, canonical)| canonical);
    DEFINITIONS
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

/// The settings of one session.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<&'static str, String>,
    /// Custom `prefix.name` settings, which Postgres accepts for extensions.
    custom: BTreeMap<String, String>,
}

/// One row of `SHOW ALL`.
pub struct SettingRow {
    pub name: String,
    pub setting: String,
    pub description: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            values: DEFINITIONS
                .iter()
                .map(|d| (d.name, d.default_value()))
                .collect(),
            custom: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// Settings for a new session of `user`, with the startup parameters the
    /// client sent (a client may set any setting at startup). Unknown or invalid
    /// startup parameters are ignored, as Postgres does for most of them.
    pub fn for_session(user: &str, startup: &[(String, String)]) -> Self {
        let mut settings = Settings::default();
        settings
            .values
            .insert("session_authorization", user.to_string());
        for (name, value) in startup {
            if matches!(
                name.as_str(),
                "user" | "database" | "options" | "replication"
            ) {
                continue;
            }
            if let Err(e) = settings.set(name, value) {
                tracing::debug!(%name, %value, error = %e, "ignoring startup parameter");
            }
        }
        settings
    }

    /// The canonical name of a setting, if Weir knows it.
    pub fn canonical_name(name: &str) -> Option<&'static str> {
        definition(name).map(|d| d.name)
    }

    /// `SHOW name`.
    pub fn get(&self, name: &str) -> Result<String> {
        if let Some(d) = definition(name) {
            return Ok(self.values.get(d.name).cloned().unwrap_or_default());
        }
        self.custom
            .get(&name.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| unrecognized(name))
    }

    /// `SET name = value`. Returns the canonical name and normalised value when
    /// the setting is one the client must be told about (ParameterStatus).
    pub fn set(&mut self, name: &str, value: &str) -> Result<Option<(&'static str, String)>> {
        let Some(d) = definition(name) else {
            if name.contains('.') {
                self.custom
                    .insert(name.to_ascii_lowercase(), value.to_string());
                return Ok(None);
            }
            return Err(unrecognized(name));
        };
        let value = normalise(d, value)?;
        self.values.insert(d.name, value.clone());
        Ok(d.reported.then_some((d.name, value)))
    }

    /// `RESET name` / `SET name TO DEFAULT`.
    pub fn reset(&mut self, name: &str) -> Result<Option<(&'static str, String)>> {
        let Some(d) = definition(name) else {
            if self.custom.remove(&name.to_ascii_lowercase()).is_some() || name.contains('.') {
                return Ok(None);
            }
            return Err(unrecognized(name));
        };
        if d.kind == Kind::ReadOnly {
            return Err(read_only(d.name));
        }
        self.values.insert(d.name, d.default_value());
        Ok(d.reported.then(|| (d.name, d.default_value())))
    }

    /// `RESET ALL`: every changeable setting back to its default. Returns the
    /// reported settings that changed.
    pub fn reset_all(&mut self) -> Vec<(&'static str, String)> {
        let mut changed = Vec::new();
        for d in DEFINITIONS.iter().filter(|d| d.kind != Kind::ReadOnly) {
            let default = d.default_value();
            let old = self.values.insert(d.name, default.clone());
            if d.reported && old.as_deref() != Some(default.as_str()) {
                changed.push((d.name, default));
            }
        }
        self.custom.clear();
        changed
    }

    /// The settings sent to the client at startup (ParameterStatus).
    pub fn reported(&self) -> Vec<(&'static str, String)> {
        DEFINITIONS
            .iter()
            .filter(|d| d.reported)
            .map(|d| (d.name, self.values.get(d.name).cloned().unwrap_or_default()))
            .collect()
    }

    /// `SHOW ALL`.
    pub fn all(&self) -> Vec<SettingRow> {
        let mut rows: Vec<SettingRow> = DEFINITIONS
            .iter()
            .map(|d| SettingRow {
                name: d.name.to_string(),
                setting: self.values.get(d.name).cloned().unwrap_or_default(),
                description: d.description.to_string(),
            })
            .collect();
        rows.extend(self.custom.iter().map(|(name, value)| SettingRow {
            name: name.clone(),
            setting: value.clone(),
            description: String::new(),
        }));
        rows.sort_by_key(|r| r.name.to_ascii_lowercase());
        rows
    }

    pub fn time_zone(&self) -> String {
        self.values
            .get("TimeZone")
            .cloned()
            .unwrap_or_else(|| "UTC".into())
    }

    pub fn extra_float_digits(&self) -> i32 {
        self.values
            .get("extra_float_digits")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    /// `synchronous_commit`: writes wait until the log holds them on disk.
    pub fn synchronous_commit(&self) -> bool {
        self.values
            .get("synchronous_commit")
            .is_none_or(|v| v != "off")
    }

    /// `implicit_flush`: writes wait for the materialized views.
    pub fn implicit_flush(&self) -> bool {
        self.values.get("implicit_flush").is_some_and(|v| v == "on")
    }

    /// `streaming_parallelism`: subtasks of keyed operators of new views.
    pub fn streaming_parallelism(&self) -> usize {
        self.values
            .get("streaming_parallelism")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    /// `max_client_lag_rows`: rows a continuous result may queue for its
    /// client.
    pub fn max_client_lag_rows(&self) -> usize {
        self.values
            .get("max_client_lag_rows")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    pub fn bytea_hex(&self) -> bool {
        self.values.get("bytea_output").is_none_or(|v| v == "hex")
    }

    /// `statement_timeout`, when set.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let ms = parse_duration_ms(self.values.get("statement_timeout")?).ok()?;
        (ms > 0).then(|| std::time::Duration::from_millis(ms as u64))
    }
}

fn unrecognized(name: &str) -> WeirError {
    WeirError::new(
        sqlstate::UNDEFINED_OBJECT,
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

fn read_only(name: &str) -> WeirError {
    WeirError::new(
        sqlstate::INVALID_PARAMETER_VALUE,
        format!("parameter \"{name}\" cannot be changed"),
    )
}

fn invalid(name: &str, value: &str) -> WeirError {
    WeirError::new(
        sqlstate::INVALID_PARAMETER_VALUE,
        format!("invalid value for parameter \"{name}\": \"{value}\""),
    )
}

fn normalise(d: &Definition, value: &str) -> Result<String> {
    let trimmed = value.trim();
    match d.kind {
        Kind::Text => Ok(value.to_string()),
        Kind::ReadOnly => {
            // Postgres lets clients "set" a read-only parameter to its current
            // value (some drivers do); anything else is an error.
            if trimmed.eq_ignore_ascii_case(d.default) {
                Ok(d.default.to_string())
            } else {
                Err(read_only(d.name))
            }
        }
        Kind::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" | "t" | "y" => Ok("on".into()),
            "off" | "false" | "no" | "0" | "f" | "n" => Ok("off".into()),
            _ => Err(WeirError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("parameter \"{}\" requires a Boolean value", d.name),
            )),
        },
        Kind::Int(lo, hi) => match trimmed.parse::<i64>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n.to_string()),
            Ok(n) => Err(WeirError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!(
                    "{n} is outside the valid range for parameter \"{}\" ({lo} .. {hi})",
                    d.name
                ),
            )),
            Err(_) => Err(WeirError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("invalid value for parameter \"{}\": \"{value}\"", d.name),
            )),
        },
        Kind::TimeZone => normalise_time_zone(trimmed).ok_or_else(|| invalid(d.name, value)),
        Kind::DateStyle => {
            let parts: Vec<String> = trimmed
                .split(',')
                .map(|p| p.trim().to_ascii_uppercase())
                .filter(|p| !p.is_empty())
                .collect();
            let mut order = "MDY";
            for part in &parts {
                match part.as_str() {
                    "ISO" => {}
                    "MDY" | "US" | "NONEURO" | "NONEUROPEAN" => order = "MDY",
                    "DMY" | "EURO" | "EUROPEAN" => order = "DMY",
                    "YMD" => order = "YMD",
                    "DEFAULT" => {}
                    "SQL" | "POSTGRES" | "GERMAN" => {
                        return Err(WeirError::new(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            format!("DateStyle \"{part}\" is not supported"),
                        )
                        .with_hint(
                            "Weir writes dates in ISO format only: SET DateStyle = 'ISO'.",
                        ));
                    }
                    _ => return Err(invalid(d.name, value)),
                }
            }
            Ok(format!("ISO, {order}"))
        }
        Kind::IntervalStyle => {
            if trimmed.eq_ignore_ascii_case("postgres") {
                Ok("postgres".into())
            } else if ["sql_standard", "iso_8601", "postgres_verbose"]
                .iter()
                .any(|s| trimmed.eq_ignore_ascii_case(s))
            {
                Err(WeirError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("IntervalStyle \"{trimmed}\" is not supported"),
                )
                .with_hint("Weir writes intervals in the postgres style only."))
            } else {
                Err(invalid(d.name, value))
            }
        }
        Kind::Encoding => {
            let upper = trimmed.to_ascii_uppercase().replace(['-', '_'], "");
            if upper == "UTF8" || upper == "UNICODE" {
                Ok("UTF8".into())
            } else {
                Err(WeirError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("conversion between {trimmed} and UTF8 is not supported"),
                ))
            }
        }
        Kind::SynchronousCommit => match trimmed.to_ascii_lowercase().as_str() {
            level @ ("local" | "remote_write" | "remote_apply") => Ok(level.into()),
            "on" | "true" | "yes" | "1" => Ok("on".into()),
            "off" | "false" | "no" | "0" => Ok("off".into()),
            _ => Err(invalid(d.name, value)),
        },
        Kind::ByteaOutput => match trimmed.to_ascii_lowercase().as_str() {
            "hex" => Ok("hex".into()),
            "escape" => Ok("escape".into()),
            _ => Err(invalid(d.name, value)),
        },
        Kind::Duration => parse_duration_ms(trimmed)
            .map(|ms| ms.to_string())
            .map_err(|_| invalid(d.name, value)),
    }
}

/// A time zone name as Weir keeps it, or `None` when it is not one.
pub fn normalise_time_zone(tz: &str) -> Option<String> {
    let tz = tz.trim().trim_matches('\'');
    if tz.eq_ignore_ascii_case("utc")
        || tz.eq_ignore_ascii_case("z")
        || tz.eq_ignore_ascii_case("zulu")
    {
        return Some("UTC".into());
    }
    if tz.eq_ignore_ascii_case("gmt") {
        return Some("GMT".into());
    }
    if tz.eq_ignore_ascii_case("local") || tz.eq_ignore_ascii_case("default") {
        return Some("UTC".into());
    }
    // An hour offset (`SET TIME ZONE -8`) means that many hours from UTC.
    if let Ok(hours) = tz.parse::<i32>() {
        if !(-15..=15).contains(&hours) {
            return None;
        }
        let sign = if hours < 0 { '-' } else { '+' };
        return Some(format!("{sign}{:02}:00", hours.abs()));
    }
    Tz::from_str(tz).ok().map(|_| tz.to_string())
}

/// `5s`, `100ms`, `2min`, `1h` or a bare number of milliseconds.
fn parse_duration_ms(v: &str) -> std::result::Result<i64, ()> {
    let v = v.trim().trim_matches('\'').trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: i64 = number.parse().map_err(|_| ())?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(()),
    };
    // Postgres keeps durations in an int of milliseconds.
    n.checked_mul(factor)
        .filter(|ms| (0..=i64::from(i32::MAX)).contains(ms))
        .ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_canonical() {
        let mut s = Settings::default();
        assert_eq!(s.get("timezone").expect("TimeZone"), "UTC");
        let reported = s.set("TIMEZONE", "Europe/Paris").expect("set");
        assert_eq!(reported, Some(("TimeZone", "Europe/Paris".to_string())));
        assert_eq!(s.get("TimeZone").expect("TimeZone"), "Europe/Paris");
        assert_eq!(s.set("extra_float_digits", "3").expect("set"), None);
        assert_eq!(s.extra_float_digits(), 3);
    }

    #[test]
    fn invalid_values_are_refused() {
        let mut s = Settings::default();
        assert_eq!(
            s.set("TimeZone", "Mars/Base").expect_err("tz").code,
            sqlstate::INVALID_PARAMETER_VALUE
        );
        assert_eq!(
            s.set("extra_float_digits", "9").expect_err("range").code,
            sqlstate::INVALID_PARAMETER_VALUE
        );
        assert_eq!(
            s.set("no_such_thing", "1").expect_err("unknown").code,
            sqlstate::UNDEFINED_OBJECT
        );
        assert_eq!(
            s.set("DateStyle", "German").expect_err("style").code,
            sqlstate::FEATURE_NOT_SUPPORTED
        );
        assert_eq!(
            s.set("server_version", "9.6").expect_err("read only").code,
            sqlstate::INVALID_PARAMETER_VALUE
        );
        // Custom settings with a prefix are accepted, as in Postgres.
        s.set("myapp.tenant", "42").expect("custom");
        assert_eq!(s.get("myapp.tenant").expect("custom"), "42");
    }

    #[test]
    fn date_style_is_normalised() {
        let mut s = Settings::default();
        s.set("DateStyle", "iso, dmy").expect("set");
        assert_eq!(s.get("datestyle").expect("get"), "ISO, DMY");
    }

    #[test]
    fn time_zone_offsets() {
        assert_eq!(normalise_time_zone("-8").as_deref(), Some("-08:00"));
        assert_eq!(normalise_time_zone("+05:30").as_deref(), Some("+05:30"));
        assert_eq!(normalise_time_zone("utc").as_deref(), Some("UTC"));
        assert_eq!(
            normalise_time_zone("America/New_York").as_deref(),
            Some("America/New_York")
        );
    }
}
