//! The Nexmark event generator: the rows of one table, event after event, as
//! Arrow record batches.
//!
//! The rules are those of the Nexmark generator of the Flink benchmark
//! (`NexmarkGenerator`, `GeneratorConfig`, `PersonGenerator`,
//! `AuctionGenerator`, `BidGenerator`, `PriceGenerator`, `StringsGenerator`),
//! which Beam's Nexmark shares, with one generator and no out-of-order events:
//!
//! - Events are numbered 0, 1, 2, ...; of every 50 (person + auction + bid
//!   proportions, 1 + 3 + 46), the first is a person, the next 3 auctions and
//!   the other 46 bids.
//! - Event time: `base_time + n * inter_event_delay_us / 1000` ms, with
//!   `inter_event_delay_us` the rate's period in whole microseconds.
//! - Ids: person and auction ids are consecutive from 1000, taken from the
//!   event number (`lastBase0PersonId`, `lastBase0AuctionId`).
//! - Sellers: with probability `1 - 1/hot_seller_ratio` the first person of the
//!   latest hundred (the hot seller), else any of the `num_active_people`
//!   latest people or up to 10 people not yet created (`nextBase0PersonId`,
//!   `PERSON_ID_LEAD`).
//! - Bids: with probability `1 - 1/hot_auction_ratio` on the first auction of
//!   the latest hundred, else on any of the `num_in_flight_auctions` latest
//!   auctions or up to 10 not yet created (`nextBase0AuctionId`,
//!   `AUCTION_ID_LEAD`); bidders as sellers, but the hot bidder is the second
//!   person of the latest hundred (so that it is not the hot seller).
//!   So, as in Nexmark, a seller, bidder or auction may be up to 10 ids ahead
//!   of the last one created: the "events swapped in time" of the benchmark.
//! - Prices: `round(10^(u * 6) * 100)` for a uniform `u` in [0, 1); an
//!   auction's reserve is its initial bid plus another price.
//! - An auction expires after `1 + uniform(2 * horizon)` ms, where the horizon
//!   is the event time until `num_in_flight_auctions` more auctions are created;
//!   its category is one of 5 from 10; its item name is a `nextString` of at
//!   most 20 characters, its description of at most 100.
//! - People: name from 11 first and 9 last names; email `nextString(7)@
//!   nextString(5).com`; credit card four groups of 4 digits; city from 10 US
//!   cities and state from 6 US states (independently, as in Nexmark).
//! - Bids: one in 2 on a hot channel (Google, Facebook, Baidu, Apple, each with
//!   its fixed URL), else on one of 10 000 channels `channel-<n>`, each with
//!   its fixed URL.
//! - `extra` pads each event to its average byte size, within ±20% of the
//!   missing bytes (`nextExtra`).
//!
//! Where this generator differs from Flink's, or where its rule is unsure:
//!
//! - Randomness: Flink draws an event's values from `java.util.Random` seeded
//!   with the event number; here from a SplitMix64 keyed by (seed, event
//!   number). Rules and distributions are the same, the values are not: the
//!   exact rows of a Flink run are not reproduced, and Java's skewed
//!   `nextLong % n` for bounds past 2^31 is not either.
//! - Rate: the period is Beam's `RateUnit.PER_SECOND.rateToPeriodUs`, i.e.
//!   `(1_000_000 + rate / 2) / rate` µs. I believe Flink's copy rounds the same
//!   way, but am not sure; it equals `1_000_000 / rate` whenever the rate
//!   divides a million (the default 10 000 does).
//! - Channel URLs: I recall that 9 channels in 10 get `&channel_id=<n>` (n the
//!   channel number with its 32 bits reversed, absolute value) appended to a
//!   random base URL; the share (9 in 10 vs 1 in 10) is unsure. Flink's four
//!   hot URLs are random per process; here they are fixed.
//! - `nextExactString` (the filler) draws 13 letters from one 64-bit number
//!   where Java draws 6 from a 32-bit one (and its `%` of a negative number
//!   gives characters below 'a', which is not reproduced).
//! - Out-of-order event groups, several generators and rate shapes (Flink's
//!   `outOfOrderGroupSize`, `numEventGenerators`, `rateShape`) are not
//!   implemented: events come in order at a constant rate.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::config::NexmarkConfig;
use super::model::{Auction, Bid, NexmarkEvent, NexmarkTable, Person};

/// The first person's id.
const FIRST_PERSON_ID: i64 = 1000;
/// The first auction's id.
const FIRST_AUCTION_ID: i64 = 1000;
/// The first category's id.
const FIRST_CATEGORY_ID: i64 = 10;
/// Categories of auctions.
const NUM_CATEGORIES: u64 = 5;
/// How far ahead of the last person a seller or bidder may be.
const PERSON_ID_LEAD: i64 = 10;
/// How far ahead of the last auction a bid's auction may be.
const AUCTION_ID_LEAD: i64 = 10;
/// People and auctions come in batches of this many, the first of each
/// (second, for bidders) being "hot" (Flink's `HOT_*_RATIO` constants).
const HOT_BATCH: i64 = 100;
/// One bid in this many is on a channel other than the hot ones.
const HOT_CHANNELS_RATIO: u64 = 2;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// Channels other than the hot ones.
const CHANNELS_NUMBER: u64 = 10_000;
/// The shortest `nextString`.
const MIN_STRING_LENGTH: u64 = 3;

const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// Seeds of the fixed channel URLs (which do not depend on the config's seed,
/// as in Flink).
const HOT_URL_SEED: u64 = 0x4E45_584D_4152_4B01;
const CHANNEL_URL_SEED: u64 = 0x4E45_584D_4152_4B02;

/// Builders are sized for at most this many rows up front; more still fit.
const MAX_ROWS_HINT: u64 = 1 << 20;
/// And string builders for at most this many bytes.
const MAX_BYTES_HINT: usize = 1 << 28;

/// Generates the rows of one Nexmark table, from an event number on.
///
/// Every event is generated from the configuration and its number alone, so
/// a generator started at event `n` gives the rows a generator started at 0
/// gives from event `n`, and the events of other tables are skipped without
/// being generated.
#[derive(Debug, Clone)]
pub struct NexmarkGenerator {
    config: NexmarkConfig,
    rules: Rules,
    table: NexmarkTable,
    schema: SchemaRef,
    next_event: u64,
}

impl NexmarkGenerator {
    /// Generates the rows of `table`, starting at event number `first_event`.
    ///
    /// A configuration with zeros (a zero rate, proportions or ratios, which
    /// [`NexmarkConfig::from_options`] never gives) does not make the
    /// generator panic: zeros are taken as ones where they would divide.
    pub fn new(config: NexmarkConfig, table: NexmarkTable, first_event: u64) -> Self {
        NexmarkGenerator {
            rules: Rules::new(&config),
            config,
            table,
            schema: Self::schema(table),
            next_event: first_event,
        }
    }

    /// The full Arrow schema of a table (snake_case column names).
    pub fn schema(table: NexmarkTable) -> SchemaRef {
        let bigint = |name: &str| Field::new(name, DataType::Int64, false);
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        let timestamp = |name: &str| {
            Field::new(
                name,
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            )
        };
        let fields = match table {
            NexmarkTable::Person => vec![
                bigint("id"),
                text("name"),
                text("email_address"),
                text("credit_card"),
                text("city"),
                text("state"),
                timestamp("date_time"),
                text("extra"),
            ],
            NexmarkTable::Auction => vec![
                bigint("id"),
                text("item_name"),
                text("description"),
                bigint("initial_bid"),
                bigint("reserve"),
                timestamp("date_time"),
                timestamp("expires"),
                bigint("seller"),
                bigint("category"),
                text("extra"),
            ],
            NexmarkTable::Bid => vec![
                bigint("auction"),
                bigint("bidder"),
                bigint("price"),
                text("channel"),
                text("url"),
                timestamp("date_time"),
                text("extra"),
            ],
        };
        Arc::new(Schema::new(fields))
    }

    /// The rows of this table among the next `events` events (events of other
    /// kinds are skipped cheaply, without generating them). Returns None once
    /// `max_events` events were consumed. The batch may have no rows (a few
    /// events may hold none of this table).
    pub fn next_batch(&mut self, events: u64) -> Option<RecordBatch> {
        let start = self.next_event;
        let end = match self.config.max_events {
            Some(max) if start >= max => return None,
            Some(max) => start.saturating_add(events).min(max),
            None => start.saturating_add(events),
        };
        self.next_event = end;
        let columns = match self.table {
            NexmarkTable::Person => self.person_columns(start, end),
            NexmarkTable::Auction => self.auction_columns(start, end),
            NexmarkTable::Bid => self.bid_columns(start, end),
        };
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .expect("the columns are built to the table's schema");
        Some(batch)
    }

    /// The number of the next event to consume: the offset to resume from.
    pub fn next_event(&self) -> u64 {
        self.next_event
    }

    /// Event time (ms since epoch) of an event number.
    pub fn event_time_ms(&self, event: u64) -> i64 {
        self.rules.time_ms(event)
    }

    /// The table this generator gives the rows of.
    pub fn table(&self) -> NexmarkTable {
        self.table
    }

    /// The configuration.
    pub fn config(&self) -> &NexmarkConfig {
        &self.config
    }

    /// The table an event number belongs to.
    pub fn event_table(&self, event: u64) -> NexmarkTable {
        self.rules.table_of(event)
    }

    /// Event number `event`, whatever its table: the same values as in the
    /// batches of its table.
    pub fn event(&self, event: u64) -> NexmarkEvent {
        let mut rng = self.rules.rng(event);
        match self.rules.table_of(event) {
            NexmarkTable::Person => {
                let mut person = Person::default();
                self.rules.fill_person(event, &mut rng, &mut person);
                NexmarkEvent::Person(person)
            }
            NexmarkTable::Auction => {
                let mut auction = Auction::default();
                self.rules.fill_auction(event, &mut rng, &mut auction);
                NexmarkEvent::Auction(auction)
            }
            NexmarkTable::Bid => {
                let mut bid = Bid::default();
                self.rules.fill_bid(event, &mut rng, &mut bid);
                NexmarkEvent::Bid(bid)
            }
        }
    }

    fn person_columns(&self, start: u64, end: u64) -> Vec<ArrayRef> {
        let rows = self.rules.rows_hint(NexmarkTable::Person, start, end);
        let extra_bytes = self.rules.extra_hint(self.rules.avg_person_byte_size);
        let mut id = Int64Builder::with_capacity(rows);
        let mut name = StringBuilder::with_capacity(rows, bytes_hint(rows, 16));
        let mut email_address = StringBuilder::with_capacity(rows, bytes_hint(rows, 16));
        let mut credit_card = StringBuilder::with_capacity(rows, bytes_hint(rows, 19));
        let mut city = StringBuilder::with_capacity(rows, bytes_hint(rows, 13));
        let mut state = StringBuilder::with_capacity(rows, bytes_hint(rows, 2));
        let mut date_time = TimestampMicrosecondBuilder::with_capacity(rows);
        let mut extra = StringBuilder::with_capacity(rows, bytes_hint(rows, extra_bytes));
        let mut person = Person::default();
        self.rules
            .for_each_event(NexmarkTable::Person, start, end, |event| {
                let mut rng = self.rules.rng(event);
                self.rules.fill_person(event, &mut rng, &mut person);
                id.append_value(person.id);
                name.append_value(person.name.as_str());
                email_address.append_value(person.email_address.as_str());
                credit_card.append_value(person.credit_card.as_str());
                city.append_value(person.city.as_str());
                state.append_value(person.state.as_str());
                date_time.append_value(micros(person.date_time_ms));
                extra.append_value(person.extra.as_str());
            });
        vec![
            Arc::new(id.finish()),
            Arc::new(name.finish()),
            Arc::new(email_address.finish()),
            Arc::new(credit_card.finish()),
            Arc::new(city.finish()),
            Arc::new(state.finish()),
            Arc::new(date_time.finish()),
            Arc::new(extra.finish()),
        ]
    }

    fn auction_columns(&self, start: u64, end: u64) -> Vec<ArrayRef> {
        let rows = self.rules.rows_hint(NexmarkTable::Auction, start, end);
        let extra_bytes = self.rules.extra_hint(self.rules.avg_auction_byte_size);
        let mut id = Int64Builder::with_capacity(rows);
        let mut item_name = StringBuilder::with_capacity(rows, bytes_hint(rows, 12));
        let mut description = StringBuilder::with_capacity(rows, bytes_hint(rows, 52));
        let mut initial_bid = Int64Builder::with_capacity(rows);
        let mut reserve = Int64Builder::with_capacity(rows);
        let mut date_time = TimestampMicrosecondBuilder::with_capacity(rows);
        let mut expires = TimestampMicrosecondBuilder::with_capacity(rows);
        let mut seller = Int64Builder::with_capacity(rows);
        let mut category = Int64Builder::with_capacity(rows);
        let mut extra = StringBuilder::with_capacity(rows, bytes_hint(rows, extra_bytes));
        let mut auction = Auction::default();
        self.rules
            .for_each_event(NexmarkTable::Auction, start, end, |event| {
                let mut rng = self.rules.rng(event);
                self.rules.fill_auction(event, &mut rng, &mut auction);
                id.append_value(auction.id);
                item_name.append_value(auction.item_name.as_str());
                description.append_value(auction.description.as_str());
                initial_bid.append_value(auction.initial_bid);
                reserve.append_value(auction.reserve);
                date_time.append_value(micros(auction.date_time_ms));
                expires.append_value(micros(auction.expires_ms));
                seller.append_value(auction.seller);
                category.append_value(auction.category);
                extra.append_value(auction.extra.as_str());
            });
        vec![
            Arc::new(id.finish()),
            Arc::new(item_name.finish()),
            Arc::new(description.finish()),
            Arc::new(initial_bid.finish()),
            Arc::new(reserve.finish()),
            Arc::new(date_time.finish()),
            Arc::new(expires.finish()),
            Arc::new(seller.finish()),
            Arc::new(category.finish()),
            Arc::new(extra.finish()),
        ]
    }

    fn bid_columns(&self, start: u64, end: u64) -> Vec<ArrayRef> {
        let rows = self.rules.rows_hint(NexmarkTable::Bid, start, end);
        let extra_bytes = self.rules.extra_hint(self.rules.avg_bid_byte_size);
        let mut auction = Int64Builder::with_capacity(rows);
        let mut bidder = Int64Builder::with_capacity(rows);
        let mut price = Int64Builder::with_capacity(rows);
        let mut channel = StringBuilder::with_capacity(rows, bytes_hint(rows, 10));
        let mut url = StringBuilder::with_capacity(rows, bytes_hint(rows, 64));
        let mut date_time = TimestampMicrosecondBuilder::with_capacity(rows);
        let mut extra = StringBuilder::with_capacity(rows, bytes_hint(rows, extra_bytes));
        let mut bid = Bid::default();
        self.rules
            .for_each_event(NexmarkTable::Bid, start, end, |event| {
                let mut rng = self.rules.rng(event);
                self.rules.fill_bid(event, &mut rng, &mut bid);
                auction.append_value(bid.auction);
                bidder.append_value(bid.bidder);
                price.append_value(bid.price);
                channel.append_value(bid.channel.as_str());
                url.append_value(bid.url.as_str());
                date_time.append_value(micros(bid.date_time_ms));
                extra.append_value(bid.extra.as_str());
            });
        vec![
            Arc::new(auction.finish()),
            Arc::new(bidder.finish()),
            Arc::new(price.finish()),
            Arc::new(channel.finish()),
            Arc::new(url.finish()),
            Arc::new(date_time.finish()),
            Arc::new(extra.finish()),
        ]
    }
}

/// An event time in ms as the microseconds of an Arrow timestamp.
fn micros(ms: i64) -> i64 {
    ms.saturating_mul(1000)
}

/// Bytes to reserve for `rows` strings of about `per_row` bytes.
fn bytes_hint(rows: usize, per_row: usize) -> usize {
    rows.saturating_mul(per_row).min(MAX_BYTES_HINT)
}

/// An event number as the signed number Nexmark's id arithmetic uses.
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The configuration in the form the rules use: signed where ids are computed,
/// and with zeros that would divide taken as ones.
#[derive(Debug, Clone)]
struct Rules {
    seed: u64,
    base_time_ms: i64,
    /// Event time between two events, in µs (Flink's `interEventDelayUs`).
    inter_event_delay_us: u64,
    /// Events in a group: the sum of the proportions, at least 1.
    group: u64,
    /// People, then auctions, at the start of every group.
    person_proportion: u64,
    auction_proportion: u64,
    num_active_people: i64,
    num_in_flight_auctions: i64,
    hot_auction_ratio: u64,
    hot_seller_ratio: u64,
    hot_bidder_ratio: u64,
    /// Events until `num_in_flight_auctions` more auctions are created.
    events_for_auctions: u64,
    avg_person_byte_size: i64,
    avg_auction_byte_size: i64,
    avg_bid_byte_size: i64,
}

impl Rules {
    fn new(config: &NexmarkConfig) -> Self {
        let rate = config.event_rate.max(1);
        let group = config
            .person_proportion
            .saturating_add(config.auction_proportion)
            .saturating_add(config.bid_proportion)
            .max(1);
        let person_proportion = config.person_proportion.min(group);
        let auction_proportion = config.auction_proportion.min(group - person_proportion);
        Rules {
            seed: config.seed,
            base_time_ms: config.base_time_ms,
            // Beam's `RateUnit.PER_SECOND.rateToPeriodUs`: rounded to the µs.
            inter_event_delay_us: (1_000_000 + rate / 2) / rate,
            group,
            person_proportion,
            auction_proportion,
            num_active_people: signed(config.num_active_people),
            num_in_flight_auctions: signed(config.num_in_flight_auctions),
            hot_auction_ratio: config.hot_auction_ratio.max(1),
            hot_seller_ratio: config.hot_seller_ratio.max(1),
            hot_bidder_ratio: config.hot_bidder_ratio.max(1),
            events_for_auctions: config.num_in_flight_auctions.saturating_mul(group)
                / auction_proportion.max(1),
            avg_person_byte_size: signed(config.avg_person_byte_size),
            avg_auction_byte_size: signed(config.avg_auction_byte_size),
            avg_bid_byte_size: signed(config.avg_bid_byte_size),
        }
    }

    /// The random numbers of one event, from the seed and its number alone.
    fn rng(&self, event: u64) -> EventRng {
        EventRng::new(self.seed, event)
    }

    /// Event time of an event, in ms since the epoch.
    fn time_ms(&self, event: u64) -> i64 {
        let offset_ms = match event.checked_mul(self.inter_event_delay_us) {
            Some(us) => us / 1000,
            None => {
                let ms = u128::from(event) * u128::from(self.inter_event_delay_us) / 1000;
                u64::try_from(ms).unwrap_or(u64::MAX)
            }
        };
        self.base_time_ms.saturating_add(signed(offset_ms))
    }

    /// The offsets, within a group, of the events of `table`: `[from, to)`.
    fn offsets(&self, table: NexmarkTable) -> (u64, u64) {
        let auctions_from = self.person_proportion;
        let bids_from = self.person_proportion + self.auction_proportion;
        match table {
            NexmarkTable::Person => (0, auctions_from),
            NexmarkTable::Auction => (auctions_from, bids_from),
            NexmarkTable::Bid => (bids_from, self.group),
        }
    }

    fn table_of(&self, event: u64) -> NexmarkTable {
        let offset = event % self.group;
        if offset < self.person_proportion {
            NexmarkTable::Person
        } else if offset < self.person_proportion + self.auction_proportion {
            NexmarkTable::Auction
        } else {
            NexmarkTable::Bid
        }
    }

    /// Events of `table` among events `0..n`.
    fn count_before(&self, table: NexmarkTable, n: u64) -> u64 {
        let (from, to) = self.offsets(table);
        (n / self.group) * (to - from) + (n % self.group).max(from).min(to) - from
    }

    /// Rows to size the builders for: the events of `table` in `start..end`.
    fn rows_hint(&self, table: NexmarkTable, start: u64, end: u64) -> usize {
        let rows = self.count_before(table, end) - self.count_before(table, start);
        usize::try_from(rows.min(MAX_ROWS_HINT)).unwrap_or(0)
    }

    /// Bytes to reserve per `extra`, for an average event size.
    fn extra_hint(&self, avg_byte_size: i64) -> usize {
        usize::try_from(avg_byte_size).unwrap_or(0).min(1 << 16)
    }

    /// Calls `f` with each event of `table` in `start..end`, in order, going
    /// from group to group.
    fn for_each_event(&self, table: NexmarkTable, start: u64, end: u64, mut f: impl FnMut(u64)) {
        let (from, to) = self.offsets(table);
        if from == to {
            return;
        }
        let mut group_start = start - start % self.group;
        while group_start < end {
            let first = group_start.saturating_add(from).max(start);
            let last = group_start.saturating_add(to).min(end);
            for event in first..last {
                f(event);
            }
            match group_start.checked_add(self.group) {
                Some(next) => group_start = next,
                None => break,
            }
        }
    }

    /// The 0-based id of the last person created at or before `event`
    /// (Flink's `lastBase0PersonId`); -1 before any.
    fn last_base0_person_id(&self, event: u64) -> i64 {
        let event = signed(event);
        let group = signed(self.group);
        let people = signed(self.person_proportion);
        let epoch = event / group;
        let mut offset = event % group;
        if offset >= people {
            // An auction or a bid: the last person of this group.
            offset = people - 1;
        }
        epoch * people + offset
    }

    /// The 0-based id of the last auction created at or before `event`
    /// (Flink's `lastBase0AuctionId`); -1 before any.
    fn last_base0_auction_id(&self, event: u64) -> i64 {
        let event = signed(event);
        let group = signed(self.group);
        let people = signed(self.person_proportion);
        let auctions = signed(self.auction_proportion);
        let mut epoch = event / group;
        let mut offset = event % group;
        if offset < people {
            // A person: the last auction of the previous group.
            epoch -= 1;
            offset = auctions - 1;
        } else if offset >= people.saturating_add(auctions) {
            // A bid: the last auction of this group.
            offset = auctions - 1;
        } else {
            offset -= people;
        }
        epoch * auctions + offset
    }

    /// A 0-based person id among the active people and a few not yet created
    /// (Flink's `nextBase0PersonId`).
    fn next_base0_person_id(&self, event: u64, rng: &mut EventRng) -> i64 {
        let num_people = self.last_base0_person_id(event) + 1;
        let active = num_people.min(self.num_active_people);
        num_people - active + rng.below_i64(active.saturating_add(PERSON_ID_LEAD))
    }

    /// A 0-based auction id among those in flight and a few not yet created
    /// (Flink's `nextBase0AuctionId`).
    fn next_base0_auction_id(&self, event: u64, rng: &mut EventRng) -> i64 {
        let max = self.last_base0_auction_id(event);
        let min = max.saturating_sub(self.num_in_flight_auctions).max(0);
        min + rng.below_i64((max - min + 1).saturating_add(AUCTION_ID_LEAD))
    }

    /// How long the auction of `event` lasts, in ms (Flink's
    /// `nextAuctionLengthMs`): on average, until `num_in_flight_auctions` more
    /// auctions are created.
    fn auction_length_ms(&self, event: u64, date_time_ms: i64, rng: &mut EventRng) -> i64 {
        let future_auction_ms = self.time_ms(event.saturating_add(self.events_for_auctions));
        let horizon_ms = future_auction_ms.saturating_sub(date_time_ms);
        1 + rng.below_i64(horizon_ms.saturating_mul(2).max(1))
    }

    /// Flink's `PersonGenerator.nextPerson`, into `person`'s buffers.
    fn fill_person(&self, event: u64, rng: &mut EventRng, person: &mut Person) {
        person.id = self.last_base0_person_id(event) + FIRST_PERSON_ID;

        person.name.clear();
        person.name.push_str(pick(rng, &FIRST_NAMES));
        person.name.push(' ');
        person.name.push_str(pick(rng, &LAST_NAMES));

        person.email_address.clear();
        push_string(rng, 7, ' ', &mut person.email_address);
        person.email_address.push('@');
        push_string(rng, 5, ' ', &mut person.email_address);
        person.email_address.push_str(".com");

        person.credit_card.clear();
        for group in 0..4 {
            if group > 0 {
                person.credit_card.push(' ');
            }
            push_four_digits(rng.below(10_000), &mut person.credit_card);
        }

        person.city.clear();
        person.city.push_str(pick(rng, &US_CITIES));
        person.state.clear();
        person.state.push_str(pick(rng, &US_STATES));
        person.date_time_ms = self.time_ms(event);

        let size = 8
            + person.name.len()
            + person.email_address.len()
            + person.credit_card.len()
            + person.city.len()
            + person.state.len();
        person.extra.clear();
        push_extra(rng, size, self.avg_person_byte_size, &mut person.extra);
    }

    /// Flink's `AuctionGenerator.nextAuction`, into `auction`'s buffers.
    fn fill_auction(&self, event: u64, rng: &mut EventRng, auction: &mut Auction) {
        auction.id = self.last_base0_auction_id(event) + FIRST_AUCTION_ID;

        // P(hot seller) = 1 - 1/hot_seller_ratio; the hot seller is the first
        // person of the latest hundred.
        let seller = if rng.below(self.hot_seller_ratio) > 0 {
            (self.last_base0_person_id(event) / HOT_BATCH) * HOT_BATCH
        } else {
            self.next_base0_person_id(event, rng)
        };
        auction.seller = seller + FIRST_PERSON_ID;

        auction.category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES) as i64;
        auction.initial_bid = next_price(rng);
        auction.date_time_ms = self.time_ms(event);
        auction.expires_ms = auction.date_time_ms.saturating_add(self.auction_length_ms(
            event,
            auction.date_time_ms,
            rng,
        ));

        auction.item_name.clear();
        push_string(rng, 20, ' ', &mut auction.item_name);
        auction.description.clear();
        push_string(rng, 100, ' ', &mut auction.description);
        auction.reserve = auction.initial_bid.saturating_add(next_price(rng));

        let size = 8 + auction.item_name.len() + auction.description.len() + 8 * 5;
        auction.extra.clear();
        push_extra(rng, size, self.avg_auction_byte_size, &mut auction.extra);
    }

    /// Flink's `BidGenerator.nextBid`, into `bid`'s buffers.
    fn fill_bid(&self, event: u64, rng: &mut EventRng, bid: &mut Bid) {
        // P(hot auction) = 1 - 1/hot_auction_ratio; the hot auction is the
        // first of the latest hundred.
        let auction = if rng.below(self.hot_auction_ratio) > 0 {
            (self.last_base0_auction_id(event) / HOT_BATCH) * HOT_BATCH
        } else {
            self.next_base0_auction_id(event, rng)
        };
        bid.auction = auction + FIRST_AUCTION_ID;

        // P(hot bidder) = 1 - 1/hot_bidder_ratio; the hot bidder is the second
        // person of the latest hundred, so as not to be the hot seller.
        let bidder = if rng.below(self.hot_bidder_ratio) > 0 {
            (self.last_base0_person_id(event) / HOT_BATCH) * HOT_BATCH + 1
        } else {
            self.next_base0_person_id(event, rng)
        };
        bid.bidder = bidder + FIRST_PERSON_ID;

        bid.price = next_price(rng);

        let channels = channels();
        let (channel, url) = if rng.below(HOT_CHANNELS_RATIO) > 0 {
            let hot = rng.below(HOT_CHANNELS.len() as u64) as usize;
            (HOT_CHANNELS[hot], channels.hot_urls[hot].as_str())
        } else {
            let (name, url) = &channels.others[rng.below(CHANNELS_NUMBER) as usize];
            (name.as_str(), url.as_str())
        };
        bid.channel.clear();
        bid.channel.push_str(channel);
        bid.url.clear();
        bid.url.push_str(url);
        bid.date_time_ms = self.time_ms(event);

        bid.extra.clear();
        push_extra(rng, 8 * 4, self.avg_bid_byte_size, &mut bid.extra);
    }
}

/// The bid channels and their URLs: Flink's `HOT_URLS` and `ChannelCache`.
struct Channels {
    /// The URL of each of [`HOT_CHANNELS`].
    hot_urls: [String; 4],
    /// Channel `n`'s name (`channel-<n>`) and URL, for `n` below
    /// [`CHANNELS_NUMBER`].
    others: Vec<(String, String)>,
}

/// The channels, built on first use (about a megabyte).
fn channels() -> &'static Channels {
    static CHANNELS: OnceLock<Channels> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        let hot_urls = std::array::from_fn(|hot| {
            let mut url = String::new();
            push_base_url(&mut EventRng::new(HOT_URL_SEED, hot as u64), &mut url);
            url
        });
        let others = (0..CHANNELS_NUMBER)
            .map(|number| {
                let mut rng = EventRng::new(CHANNEL_URL_SEED, number);
                let mut url = String::new();
                push_base_url(&mut rng, &mut url);
                // Unsure: the share of channels with a channel_id (9 in 10 here).
                if rng.below(10) > 0 {
                    // Java's Math.abs(Integer.reverse(n)); n is below 10 000.
                    let id = (number as i32).reverse_bits().wrapping_abs();
                    url.push_str("&channel_id=");
                    url.push_str(&id.to_string());
                }
                (format!("channel-{number}"), url)
            })
            .collect();
        Channels { hot_urls, others }
    })
}

/// Flink's `getBaseUrl`: `https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1`.
fn push_base_url(rng: &mut EventRng, out: &mut String) {
    out.push_str("https://www.nexmark.com/");
    for _ in 0..3 {
        push_string(rng, 5, '_', out);
        out.push('/');
    }
    out.push_str("item.htm?query=1");
}

/// One of `items`, uniformly.
fn pick<'a>(rng: &mut EventRng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

/// Flink's `PriceGenerator.nextPrice`: log-uniform from 1.00 to 1 000 000.00,
/// in cents.
fn next_price(rng: &mut EventRng) -> i64 {
    (10.0_f64.powf(rng.next_f64() * 6.0) * 100.0).round() as i64
}

/// `n` (below 10 000) as four digits, as Java's `%04d`.
fn push_four_digits(n: u64, out: &mut String) {
    for divisor in [1000, 100, 10, 1] {
        out.push(char::from(b'0' + ((n / divisor) % 10) as u8));
    }
}

/// The letter `i` of the alphabet, `i` below 26.
fn letter(i: u64) -> char {
    char::from(b'a' + i as u8)
}

/// Flink's `nextString`: 3 to `max_length - 1` characters, each a letter or,
/// one time in 13, `special`; trimmed of spaces as Java's `String.trim`.
fn push_string(rng: &mut EventRng, max_length: u64, special: char, out: &mut String) {
    let length = MIN_STRING_LENGTH + rng.below(max_length.saturating_sub(MIN_STRING_LENGTH));
    let start = out.len();
    for _ in 0..length {
        // Two draws from one number: the high half picks special or letter,
        // the low half the letter.
        let x = rng.next_u64();
        if ((x >> 32) * 13) >> 32 == 0 {
            out.push(special);
        } else {
            out.push(letter(((x & 0xFFFF_FFFF) * 26) >> 32));
        }
    }
    if special == ' ' {
        let end = out.trim_end_matches(' ').len().max(start);
        out.truncate(end);
        let leading = out[start..].len() - out[start..].trim_start_matches(' ').len();
        if leading > 0 {
            out.replace_range(start..start + leading, "");
        }
    }
}

/// Flink's `nextExactString`: `length` random letters.
fn push_exact_string(rng: &mut EventRng, length: usize, out: &mut String) {
    out.reserve(length);
    let mut left = length;
    while left > 0 {
        // 26^13 < 2^64: 13 letters from one number.
        let mut x = rng.next_u64();
        let n = left.min(13);
        for _ in 0..n {
            out.push(letter(x % 26));
            x /= 26;
        }
        left -= n;
    }
}

/// Flink's `nextExtra`: letters bringing an event of `current_size` bytes to
/// `desired_average_size` on average, within ±20% of the bytes missing.
fn push_extra(
    rng: &mut EventRng,
    current_size: usize,
    desired_average_size: i64,
    out: &mut String,
) {
    let current_size = i64::try_from(current_size).unwrap_or(i64::MAX);
    if current_size > desired_average_size {
        return;
    }
    let missing = desired_average_size - current_size;
    let delta = (missing as f64 * 0.2).round() as i64;
    let min_size = missing - delta;
    let size = if delta == 0 {
        min_size
    } else {
        min_size + rng.below_i64(delta.saturating_mul(2))
    };
    push_exact_string(rng, usize::try_from(size).unwrap_or(0), out);
}

/// The random numbers of one event: SplitMix64 (Steele, Lea and Flood),
/// started from a hash of the seed and the event number, so that any event
/// can be generated on its own.
#[derive(Debug, Clone)]
struct EventRng {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (a strong 64-bit mixer).
fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl EventRng {
    fn new(seed: u64, event: u64) -> Self {
        EventRng {
            state: mix64(seed ^ mix64(event.wrapping_add(GOLDEN_GAMMA))),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, n)` (Lemire's multiply-shift; its bias, below n/2^64,
    /// does not matter here); 0 when `n` is 0.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, n)`, for a positive `n`; 0 otherwise.
    fn below_i64(&mut self, n: i64) -> i64 {
        match u64::try_from(n) {
            // Below n, which fits in an i64.
            Ok(n) => self.below(n) as i64,
            Err(_) => 0,
        }
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1_u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::{AsArray, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    use super::*;

    fn generate(
        config: &NexmarkConfig,
        table: NexmarkTable,
        first: u64,
        events: u64,
    ) -> RecordBatch {
        NexmarkGenerator::new(config.clone(), table, first)
            .next_batch(events)
            .expect("the stream has not ended")
    }

    fn ints<'a>(batch: &'a RecordBatch, name: &str) -> &'a Int64Array {
        batch
            .column_by_name(name)
            .expect("column exists")
            .as_primitive::<Int64Type>()
    }

    fn times<'a>(batch: &'a RecordBatch, name: &str) -> &'a TimestampMicrosecondArray {
        batch
            .column_by_name(name)
            .expect("column exists")
            .as_primitive::<TimestampMicrosecondType>()
    }

    fn strings<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
        batch
            .column_by_name(name)
            .expect("column exists")
            .as_string::<i32>()
    }

    fn events_of(generator: &NexmarkGenerator, events: std::ops::Range<u64>) -> Vec<NexmarkEvent> {
        events.map(|event| generator.event(event)).collect()
    }

    #[test]
    fn one_person_three_auctions_and_46_bids_in_every_50_events() {
        let config = NexmarkConfig::default();
        let rows: Vec<usize> = NexmarkTable::ALL
            .iter()
            .map(|&table| generate(&config, table, 0, 5000).num_rows())
            .collect();
        assert_eq!(rows, [100, 300, 4600]);

        let generator = NexmarkGenerator::new(config.clone(), NexmarkTable::Bid, 0);
        for event in 0..200 {
            let expected = match event % 50 {
                0 => NexmarkTable::Person,
                1..=3 => NexmarkTable::Auction,
                _ => NexmarkTable::Bid,
            };
            assert_eq!(generator.event_table(event), expected, "event {event}");
            assert_eq!(generator.event(event).table(), expected, "event {event}");
        }

        // Ids are consecutive from 1000.
        let people = generate(&config, NexmarkTable::Person, 0, 5000);
        assert_eq!(
            ints(&people, "id").values().to_vec(),
            (1000..1100).collect::<Vec<i64>>()
        );
        let auctions = generate(&config, NexmarkTable::Auction, 0, 5000);
        assert_eq!(
            ints(&auctions, "id").values().to_vec(),
            (1000..1300).collect::<Vec<i64>>()
        );

        // Starting inside a group: events 3..13 hold one auction (3) and 9 bids.
        assert_eq!(
            generate(&config, NexmarkTable::Auction, 3, 10).num_rows(),
            1
        );
        assert_eq!(generate(&config, NexmarkTable::Bid, 3, 10).num_rows(), 9);
        assert_eq!(generate(&config, NexmarkTable::Person, 49, 2).num_rows(), 1);
        assert_eq!(
            generate(&config, NexmarkTable::Person, 51, 49).num_rows(),
            0
        );
        assert_eq!(
            ints(&generate(&config, NexmarkTable::Person, 49, 2), "id").value(0),
            1001
        );
    }

    #[test]
    fn schemas_name_the_columns() {
        let names = |table| -> Vec<String> {
            NexmarkGenerator::schema(table)
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        };
        assert_eq!(
            names(NexmarkTable::Person),
            [
                "id",
                "name",
                "email_address",
                "credit_card",
                "city",
                "state",
                "date_time",
                "extra"
            ]
        );
        assert_eq!(
            names(NexmarkTable::Auction),
            [
                "id",
                "item_name",
                "description",
                "initial_bid",
                "reserve",
                "date_time",
                "expires",
                "seller",
                "category",
                "extra"
            ]
        );
        assert_eq!(
            names(NexmarkTable::Bid),
            [
                "auction",
                "bidder",
                "price",
                "channel",
                "url",
                "date_time",
                "extra"
            ]
        );
        let schema = NexmarkGenerator::schema(NexmarkTable::Bid);
        let date_time = schema
            .field_with_name("date_time")
            .expect("date_time column");
        assert_eq!(
            date_time.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert!(schema.fields().iter().all(|f| !f.is_nullable()));
        for table in NexmarkTable::ALL {
            let batch = generate(&NexmarkConfig::default(), table, 0, 100);
            assert_eq!(batch.schema(), NexmarkGenerator::schema(table));
        }
    }

    #[test]
    fn same_seed_same_rows_other_seed_other_rows() {
        let config = NexmarkConfig::default();
        let other_seed = NexmarkConfig {
            seed: 7,
            ..NexmarkConfig::default()
        };
        for table in NexmarkTable::ALL {
            let first = generate(&config, table, 0, 3000);
            let again = generate(&config, table, 0, 3000);
            assert_eq!(first, again, "{table}");
            let other = generate(&other_seed, table, 0, 3000);
            assert_eq!(first.num_rows(), other.num_rows(), "{table}");
            assert_ne!(first, other, "{table}");
        }
        // Ids come from event numbers, not from the seed; the rest does.
        let people = generate(&config, NexmarkTable::Person, 0, 3000);
        let other_people = generate(&other_seed, NexmarkTable::Person, 0, 3000);
        assert_eq!(ints(&people, "id"), ints(&other_people, "id"));
        assert_ne!(
            strings(&people, "email_address"),
            strings(&other_people, "email_address")
        );
    }

    #[test]
    fn batches_hold_the_events() {
        let config = NexmarkConfig::default();
        let generator = NexmarkGenerator::new(config.clone(), NexmarkTable::Bid, 0);
        let events = events_of(&generator, 0..500);
        let bids: Vec<&Bid> = events
            .iter()
            .filter_map(|event| match event {
                NexmarkEvent::Bid(bid) => Some(bid),
                _ => None,
            })
            .collect();
        let batch = generate(&config, NexmarkTable::Bid, 0, 500);
        assert_eq!(batch.num_rows(), bids.len());
        for (row, bid) in bids.iter().enumerate() {
            assert_eq!(ints(&batch, "auction").value(row), bid.auction);
            assert_eq!(ints(&batch, "bidder").value(row), bid.bidder);
            assert_eq!(ints(&batch, "price").value(row), bid.price);
            assert_eq!(strings(&batch, "channel").value(row), bid.channel);
            assert_eq!(strings(&batch, "url").value(row), bid.url);
            assert_eq!(
                times(&batch, "date_time").value(row),
                bid.date_time_ms * 1000
            );
            assert_eq!(strings(&batch, "extra").value(row), bid.extra);
        }
        let auctions: Vec<&Auction> = events
            .iter()
            .filter_map(|event| match event {
                NexmarkEvent::Auction(auction) => Some(auction),
                _ => None,
            })
            .collect();
        let batch = generate(&config, NexmarkTable::Auction, 0, 500);
        assert_eq!(batch.num_rows(), auctions.len());
        for (row, auction) in auctions.iter().enumerate() {
            assert_eq!(ints(&batch, "id").value(row), auction.id);
            assert_eq!(ints(&batch, "seller").value(row), auction.seller);
            assert_eq!(strings(&batch, "item_name").value(row), auction.item_name);
            assert_eq!(
                times(&batch, "expires").value(row),
                auction.expires_ms * 1000
            );
        }
    }

    #[test]
    fn resuming_gives_the_same_rows() {
        let config = NexmarkConfig::default();
        for table in NexmarkTable::ALL {
            let whole = generate(&config, table, 0, 2000);
            for split in [1000, 1003, 1049] {
                let mut generator = NexmarkGenerator::new(config.clone(), table, 0);
                let first = generator.next_batch(split).expect("first part");
                assert_eq!(generator.next_event(), split);
                let second = generator.next_batch(2000 - split).expect("second part");
                assert_eq!(generator.next_event(), 2000);
                assert_eq!(
                    first.num_rows() + second.num_rows(),
                    whole.num_rows(),
                    "{table}"
                );
                assert_eq!(
                    whole.slice(0, first.num_rows()),
                    first,
                    "{table} at {split}"
                );
                assert_eq!(
                    whole.slice(first.num_rows(), second.num_rows()),
                    second,
                    "{table} at {split}"
                );
                let resumed = generate(&config, table, split, 2000 - split);
                assert_eq!(resumed, second, "{table} resumed at {split}");
            }
        }
    }

    #[test]
    fn ids_refer_to_people_and_auctions_as_nexmark_does() {
        let generator = NexmarkGenerator::new(NexmarkConfig::default(), NexmarkTable::Bid, 0);
        let mut last_person = FIRST_PERSON_ID - 1;
        let mut last_auction = FIRST_AUCTION_ID - 1;
        let (mut auctions, mut existing_sellers, mut hot_sellers) = (0_u32, 0_u32, 0_u32);
        let (mut bids, mut existing_auctions, mut hot_auctions, mut hot_bidders) =
            (0_u32, 0_u32, 0_u32, 0_u32);
        for event in 0..60_000 {
            // The ids that may be picked: among the 1000 latest people (and
            // 100 latest auctions), or up to 10 not yet created.
            let people = last_person - FIRST_PERSON_ID + 1;
            let first_active_person = FIRST_PERSON_ID + (people - 1000).max(0);
            let active_people = first_active_person..=last_person + PERSON_ID_LEAD;
            let hot_person = FIRST_PERSON_ID + (people - 1) / HOT_BATCH * HOT_BATCH;
            match generator.event(event) {
                NexmarkEvent::Person(person) => {
                    assert_eq!(person.id, last_person + 1);
                    last_person = person.id;
                }
                NexmarkEvent::Auction(auction) => {
                    assert_eq!(auction.id, last_auction + 1);
                    last_auction = auction.id;
                    assert!(
                        active_people.contains(&auction.seller),
                        "event {event}: {auction:?}"
                    );
                    auctions += 1;
                    existing_sellers += u32::from(auction.seller <= last_person);
                    hot_sellers += u32::from(auction.seller == hot_person);
                }
                NexmarkEvent::Bid(bid) => {
                    let in_flight =
                        (last_auction - 100).max(FIRST_AUCTION_ID)..=last_auction + AUCTION_ID_LEAD;
                    assert!(in_flight.contains(&bid.auction), "event {event}: {bid:?}");
                    assert!(
                        active_people.contains(&bid.bidder),
                        "event {event}: {bid:?}"
                    );
                    let hot_auction = FIRST_AUCTION_ID
                        + (last_auction - FIRST_AUCTION_ID) / HOT_BATCH * HOT_BATCH;
                    bids += 1;
                    existing_auctions += u32::from(bid.auction <= last_auction);
                    hot_auctions += u32::from(bid.auction == hot_auction);
                    hot_bidders += u32::from(bid.bidder == hot_person + 1);
                }
            }
        }
        assert_eq!(last_person, FIRST_PERSON_ID + 1199);
        assert_eq!(last_auction, FIRST_AUCTION_ID + 3599);
        // Most references are to ids already created; the others are the
        // up-to-10-ahead leads of Nexmark.
        assert!(
            existing_sellers * 100 >= auctions * 95,
            "{existing_sellers} of {auctions}"
        );
        assert!(
            existing_auctions * 100 >= bids * 90,
            "{existing_auctions} of {bids}"
        );
        // Hot picks: 1 - 1/2 of auctions, 1 - 1/4 of sellers and bidders (plus
        // the few random picks that land on them).
        let share = |n: u32, of: u32| f64::from(n) / f64::from(of);
        assert!(
            (0.48..0.56).contains(&share(hot_auctions, bids)),
            "{hot_auctions} of {bids}"
        );
        assert!(
            (0.72..0.80).contains(&share(hot_sellers, auctions)),
            "{hot_sellers}"
        );
        assert!(
            (0.72..0.80).contains(&share(hot_bidders, bids)),
            "{hot_bidders} of {bids}"
        );
    }

    #[test]
    fn values_follow_the_nexmark_rules() {
        let config = NexmarkConfig::default();
        let people = generate(&config, NexmarkTable::Person, 0, 20_000);
        for row in 0..people.num_rows() {
            let name = strings(&people, "name").value(row);
            let (first, last) = name.split_once(' ').expect("first and last name");
            assert!(
                FIRST_NAMES.contains(&first) && LAST_NAMES.contains(&last),
                "{name}"
            );
            let email = strings(&people, "email_address").value(row);
            let (user, domain) = email.split_once('@').expect("an email address");
            // Trimmed of spaces, a 3- to 6-letter string may even be empty.
            assert!(user.len() <= 6 && domain.ends_with(".com"), "{email}");
            let card = strings(&people, "credit_card").value(row);
            let groups: Vec<&str> = card.split(' ').collect();
            assert_eq!(groups.len(), 4, "{card}");
            assert!(
                groups
                    .iter()
                    .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit()))
            );
            let city = strings(&people, "city").value(row);
            let state = strings(&people, "state").value(row);
            assert!(US_CITIES.contains(&city) && US_STATES.contains(&state));
            let size = 8 + name.len() + email.len() + card.len() + city.len() + state.len();
            let missing = 200 - size as i64;
            let delta = (missing as f64 * 0.2).round() as i64;
            let extra = strings(&people, "extra").value(row);
            assert!((missing - delta..missing + delta).contains(&(extra.len() as i64)));
            assert!(extra.bytes().all(|b| b.is_ascii_lowercase()));
        }

        let auctions = generate(&config, NexmarkTable::Auction, 0, 20_000);
        for row in 0..auctions.num_rows() {
            assert!((10..15).contains(&ints(&auctions, "category").value(row)));
            let initial_bid = ints(&auctions, "initial_bid").value(row);
            let reserve = ints(&auctions, "reserve").value(row);
            assert!((100..=100_000_000).contains(&initial_bid), "{initial_bid}");
            assert!((initial_bid + 100..=initial_bid + 100_000_000).contains(&reserve));
            // At 10 000 events/s, 100 auctions take 1666 events, about 166 ms.
            let length_us =
                times(&auctions, "expires").value(row) - times(&auctions, "date_time").value(row);
            assert!((1000..=334_000).contains(&length_us), "{length_us}");
            for (column, max) in [("item_name", 19), ("description", 99)] {
                let text = strings(&auctions, column).value(row);
                assert!(text.len() <= max, "{column} {text:?}");
                assert_eq!(text.trim(), text);
            }
        }

        let bids = generate(&config, NexmarkTable::Bid, 0, 20_000);
        let mut hot = 0_u32;
        let mut urls: HashMap<&str, &str> = HashMap::new();
        for row in 0..bids.num_rows() {
            assert!((100..=100_000_000).contains(&ints(&bids, "price").value(row)));
            // A bid is 32 bytes before its extra: 68 bytes more, ±14.
            assert!((54..82).contains(&strings(&bids, "extra").value(row).len()));
            let channel = strings(&bids, "channel").value(row);
            let url = strings(&bids, "url").value(row);
            assert!(url.starts_with("https://www.nexmark.com/"), "{url}");
            assert!(url.contains("/item.htm?query=1"), "{url}");
            if HOT_CHANNELS.contains(&channel) {
                hot += 1;
                assert!(url.ends_with("/item.htm?query=1"), "{url}");
            } else {
                let number = channel
                    .strip_prefix("channel-")
                    .expect("a channel-<n> name");
                let number: u32 = number.parse().expect("a channel number");
                assert!(number < 10_000);
            }
            // A channel always has the same URL.
            assert_eq!(*urls.entry(channel).or_insert(url), url, "{channel}");
        }
        let share = f64::from(hot) / bids.num_rows() as f64;
        assert!((0.47..0.53).contains(&share), "{share}");
    }

    #[test]
    fn event_time_advances_by_the_rate() {
        let base = NexmarkConfig::default().base_time_ms;
        let at = |event_rate: u64| {
            NexmarkGenerator::new(
                NexmarkConfig {
                    event_rate,
                    ..NexmarkConfig::default()
                },
                NexmarkTable::Person,
                0,
            )
        };
        let per_ms = at(1000);
        for event in [0, 1, 2, 1234, 1_000_000] {
            assert_eq!(per_ms.event_time_ms(event), base + event as i64);
        }
        let default = at(10_000);
        assert_eq!(default.event_time_ms(9), base);
        assert_eq!(default.event_time_ms(10), base + 1);
        assert_eq!(default.event_time_ms(25_000), base + 2500);
        assert_eq!(at(4).event_time_ms(3), base + 750);
        // Whole microseconds between events: 333 333 at 3 events/s.
        assert_eq!(at(3).event_time_ms(3), base + 999);

        let people = per_ms.clone().next_batch(200).expect("rows");
        let expected: Vec<i64> = [0, 50, 100, 150]
            .iter()
            .map(|ms| (base + ms) * 1000)
            .collect();
        assert_eq!(times(&people, "date_time").values().to_vec(), expected);
        let mut bid_generator =
            NexmarkGenerator::new(per_ms.config().clone(), NexmarkTable::Bid, 0);
        let bids = bid_generator.next_batch(100).expect("rows");
        let expected: Vec<i64> = (0..100)
            .filter(|event| event % 50 >= 4)
            .map(|event| (base + event) * 1000)
            .collect();
        assert_eq!(times(&bids, "date_time").values().to_vec(), expected);
    }

    #[test]
    fn max_events_ends_the_stream() {
        let config = NexmarkConfig {
            max_events: Some(120),
            ..NexmarkConfig::default()
        };
        let mut generator = NexmarkGenerator::new(config.clone(), NexmarkTable::Bid, 0);
        assert_eq!(
            generator.next_batch(100).expect("events 0..100").num_rows(),
            92
        );
        assert_eq!(generator.next_event(), 100);
        // Events 100..120: bids 104..120.
        assert_eq!(
            generator
                .next_batch(100)
                .expect("events 100..120")
                .num_rows(),
            16
        );
        assert_eq!(generator.next_event(), 120);
        assert_eq!(generator.next_batch(100), None);
        assert_eq!(generator.next_batch(0), None);
        assert_eq!(generator.next_event(), 120);

        let mut past_the_end = NexmarkGenerator::new(config, NexmarkTable::Person, 500);
        assert_eq!(past_the_end.next_batch(10), None);

        let mut endless = NexmarkGenerator::new(NexmarkConfig::default(), NexmarkTable::Bid, 0);
        assert_eq!(endless.next_batch(0).expect("an empty batch").num_rows(), 0);
        assert_eq!(endless.next_batch(50).expect("a batch").num_rows(), 46);
    }

    #[test]
    fn degenerate_configs_do_not_panic() {
        let config = NexmarkConfig {
            event_rate: 0,
            person_proportion: 0,
            auction_proportion: 0,
            bid_proportion: 0,
            hot_auction_ratio: 0,
            hot_seller_ratio: 0,
            hot_bidder_ratio: 0,
            num_active_people: 0,
            num_in_flight_auctions: 0,
            ..NexmarkConfig::default()
        };
        // With no proportions, every event is a bid.
        let batch = generate(&config, NexmarkTable::Bid, 0, 100);
        assert_eq!(batch.num_rows(), 100);
        assert_eq!(
            generate(&config, NexmarkTable::Person, 0, 100).num_rows(),
            0
        );
        let no_bids = NexmarkConfig {
            bid_proportion: 0,
            ..NexmarkConfig::default()
        };
        assert_eq!(
            generate(&no_bids, NexmarkTable::Auction, 0, 40).num_rows(),
            30
        );
        assert_eq!(generate(&no_bids, NexmarkTable::Bid, 0, 40).num_rows(), 0);
    }
}
