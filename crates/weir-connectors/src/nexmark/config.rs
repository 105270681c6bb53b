//! The knobs of the Nexmark generator, with the defaults of the Nexmark
//! benchmark (Flink's `NexmarkConfiguration`), and their reading from the
//! `nexmark.*` options of a source.

/// The default start of event time: 2015-07-15T00:00:00Z, in ms since the epoch.
pub const DEFAULT_BASE_TIME_MS: i64 = 1_436_918_400_000;

/// The highest accepted `nexmark.event_rate`: event time advances in whole
/// microseconds per event, so past a million events per second it would stop.
pub const MAX_EVENT_RATE: u64 = 1_000_000;

/// The options [`NexmarkConfig::from_options`] reads, with what they mean.
/// `nexmark.table` is accepted but read by the caller, not here.
const OPTIONS: &[(&str, &str)] = &[
    ("nexmark.event_rate", "events per second of event time"),
    (
        "nexmark.max_events",
        "events before the stream ends; 0 for no end",
    ),
    ("nexmark.seed", "seed of the random choices"),
    (
        "nexmark.first_event",
        "number of the first event generated, to resume a run; 0 from the start",
    ),
    (
        "nexmark.base_time",
        "event time of event 0, in ms since the epoch",
    ),
    ("nexmark.table", "person, auction or bid"),
    (
        "nexmark.throughput",
        "events generated per second of wall-clock time; 0 for as fast as possible; \
         by default the event rate, so that event time follows the clock",
    ),
];

/// Why a Nexmark option or table name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NexmarkError {
    /// A `nexmark.*` option that does not exist; `known` lists those that do.
    #[error("unknown option \"{key}\"; the nexmark options are {known}")]
    UnknownOption { key: String, known: String },
    /// An option whose value is not one it accepts.
    #[error("invalid value \"{value}\" for option \"{key}\": {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    /// A table name other than person, auction or bid.
    #[error("unknown nexmark table \"{name}\"; the tables are person, auction and bid")]
    UnknownTable { name: String },
}

/// The generator's configuration. The defaults are the Nexmark benchmark's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexmarkConfig {
    /// Events per second of event time (Flink's `firstEventRate`).
    pub event_rate: u64,
    /// Events before the stream ends; `None` for an endless stream.
    pub max_events: Option<u64>,
    /// Seed of the random choices: the same seed gives the same events.
    pub seed: u64,
    /// Events generated per second of wall-clock time: `None` for the event
    /// rate (event time follows the clock), `Some(0)` for as fast as possible.
    pub throughput: Option<u64>,
    /// Event time of event 0, in ms since the epoch.
    pub base_time_ms: i64,
    /// The number of the first event a source generates (a run resumed
    /// there gives the events of an uninterrupted one from there on).
    pub first_event: u64,
    /// People among whom sellers and bidders are picked: the most recent ones.
    pub num_active_people: u64,
    /// Auctions among which bids are placed: the most recent ones.
    pub num_in_flight_auctions: u64,
    /// One bid in `hot_auction_ratio` goes to any in-flight auction; the others
    /// go to the "hot" auction of the latest hundred.
    pub hot_auction_ratio: u64,
    /// One auction in `hot_seller_ratio` is sold by any active person; the
    /// others by the "hot" seller of the latest hundred people.
    pub hot_seller_ratio: u64,
    /// One bid in `hot_bidder_ratio` is made by any active person; the others
    /// by the "hot" bidder of the latest hundred people.
    pub hot_bidder_ratio: u64,
    /// People among every `person + auction + bid` proportion events.
    pub person_proportion: u64,
    /// Auctions among every `person + auction + bid` proportion events.
    pub auction_proportion: u64,
    /// Bids among every `person + auction + bid` proportion events.
    pub bid_proportion: u64,
    /// Average size of a person in bytes; `extra` pads it to that.
    pub avg_person_byte_size: u64,
    /// Average size of an auction in bytes; `extra` pads it to that.
    pub avg_auction_byte_size: u64,
    /// Average size of a bid in bytes; `extra` pads it to that.
    pub avg_bid_byte_size: u64,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig {
            event_rate: 10_000,
            max_events: None,
            seed: 0,
            throughput: None,
            base_time_ms: DEFAULT_BASE_TIME_MS,
            first_event: 0,
            num_active_people: 1000,
            num_in_flight_auctions: 100,
            hot_auction_ratio: 2,
            hot_seller_ratio: 4,
            hot_bidder_ratio: 4,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            avg_person_byte_size: 200,
            avg_auction_byte_size: 500,
            avg_bid_byte_size: 100,
        }
    }
}

impl NexmarkConfig {
    /// The configuration given by a source's options: the defaults, changed by
    /// the `nexmark.*` options among `options` (other options are left to the
    /// caller). An unknown `nexmark.*` option or a bad value is an error.
    pub fn from_options(options: &[(String, String)]) -> Result<Self, NexmarkError> {
        let mut config = NexmarkConfig::default();
        for (key, value) in options {
            if !key.starts_with("nexmark.") {
                continue;
            }
            match key.as_str() {
                "nexmark.event_rate" => {
                    let rate = parse_u64(key, value)?;
                    if rate == 0 || rate > MAX_EVENT_RATE {
                        return Err(invalid(
                            key,
                            value,
                            format!("the event rate must be between 1 and {MAX_EVENT_RATE}"),
                        ));
                    }
                    config.event_rate = rate;
                }
                // As in Flink, 0 events means no end.
                "nexmark.max_events" => {
                    let max = parse_u64(key, value)?;
                    config.max_events = (max > 0).then_some(max);
                }
                "nexmark.seed" => config.seed = parse_u64(key, value)?,
                "nexmark.first_event" => config.first_event = parse_u64(key, value)?,
                "nexmark.base_time" => {
                    config.base_time_ms = value.trim().parse::<i64>().map_err(|_| {
                        invalid(key, value, "expected a time in ms since the epoch".into())
                    })?;
                }
                "nexmark.throughput" => config.throughput = Some(parse_u64(key, value)?),
                "nexmark.table" => {}
                _ => {
                    let known: Vec<String> = OPTIONS
                        .iter()
                        .map(|(name, what)| format!("{name} ({what})"))
                        .collect();
                    return Err(NexmarkError::UnknownOption {
                        key: key.clone(),
                        known: known.join(", "),
                    });
                }
            }
        }
        Ok(config)
    }

    /// Events to generate per second of wall-clock time; `None` for as fast
    /// as possible.
    pub fn events_per_second(&self) -> Option<u64> {
        match self.throughput {
            None => Some(self.event_rate),
            Some(0) => None,
            Some(n) => Some(n),
        }
    }
}

fn parse_u64(key: &str, value: &str) -> Result<u64, NexmarkError> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| invalid(key, value, "expected a non-negative integer".into()))
}

fn invalid(key: &str, value: &str, reason: String) -> NexmarkError {
    NexmarkError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_the_benchmarks() {
        let config = NexmarkConfig::from_options(&[]).expect("no options");
        assert_eq!(config, NexmarkConfig::default());
        assert_eq!(config.event_rate, 10_000);
        assert_eq!(config.max_events, None);
        assert_eq!(config.base_time_ms, 1_436_918_400_000);
        assert_eq!(
            (
                config.person_proportion,
                config.auction_proportion,
                config.bid_proportion
            ),
            (1, 3, 46)
        );
        assert_eq!(
            (
                config.hot_auction_ratio,
                config.hot_seller_ratio,
                config.hot_bidder_ratio
            ),
            (2, 4, 4)
        );
    }

    #[test]
    fn options_are_read() {
        let config = NexmarkConfig::from_options(&options(&[
            ("nexmark.event_rate", "500"),
            ("nexmark.max_events", "1000"),
            ("nexmark.seed", " 42 "),
            ("nexmark.base_time", "-5"),
            ("nexmark.table", "bid"),
            ("connector", "nexmark"),
        ]))
        .expect("valid options");
        assert_eq!(config.event_rate, 500);
        assert_eq!(config.max_events, Some(1000));
        assert_eq!(config.seed, 42);
        assert_eq!(config.base_time_ms, -5);
        let endless = NexmarkConfig::from_options(&options(&[("nexmark.max_events", "0")]))
            .expect("valid options");
        assert_eq!(endless.max_events, None);
    }

    #[test]
    fn unknown_option_names_the_key_and_the_known_ones() {
        let err = NexmarkConfig::from_options(&options(&[("nexmark.rate", "5")]))
            .expect_err("unknown key");
        let NexmarkError::UnknownOption { key, known } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(key, "nexmark.rate");
        for (name, _) in OPTIONS {
            assert!(known.contains(name), "{known} lacks {name}");
        }
        assert!(err.to_string().contains("\"nexmark.rate\""), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key_and_the_value() {
        for (key, value) in [
            ("nexmark.event_rate", "fast"),
            ("nexmark.event_rate", "0"),
            ("nexmark.event_rate", "1000001"),
            ("nexmark.max_events", "-1"),
            ("nexmark.seed", "1.5"),
            ("nexmark.base_time", "yesterday"),
        ] {
            let err =
                NexmarkConfig::from_options(&options(&[(key, value)])).expect_err("invalid value");
            let NexmarkError::InvalidValue {
                key: k, value: v, ..
            } = &err
            else {
                panic!("unexpected error {err:?}");
            };
            assert_eq!((k.as_str(), v.as_str()), (key, value));
            let message = err.to_string();
            assert!(
                message.contains(key) && message.contains(value),
                "{message}"
            );
        }
    }
}
