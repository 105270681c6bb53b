//! What Nexmark generates: the three tables (people, auctions and bids) and
//! one event of each kind, as Flink's Nexmark `Person`, `Auction` and `Bid`.

use std::fmt;

use super::config::NexmarkError;

/// One of the three Nexmark streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NexmarkTable {
    Person,
    Auction,
    Bid,
}

impl NexmarkTable {
    /// The three tables, in the order their events come in a group.
    pub const ALL: [NexmarkTable; 3] = [
        NexmarkTable::Person,
        NexmarkTable::Auction,
        NexmarkTable::Bid,
    ];

    /// The table called `name`: person, auction or bid, in any case.
    pub fn from_name(name: &str) -> Result<Self, NexmarkError> {
        let name = name.trim();
        NexmarkTable::ALL
            .into_iter()
            .find(|table| table.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| NexmarkError::UnknownTable {
                name: name.to_owned(),
            })
    }

    /// The table's name, in lower case.
    pub fn name(self) -> &'static str {
        match self {
            NexmarkTable::Person => "person",
            NexmarkTable::Auction => "auction",
            NexmarkTable::Bid => "bid",
        }
    }
}

impl fmt::Display for NexmarkTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A new person: a user who will sell or bid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub email_address: String,
    pub credit_card: String,
    pub city: String,
    pub state: String,
    /// Event time, in ms since the epoch.
    pub date_time_ms: i64,
    /// Filler bringing the person to its average size.
    pub extra: String,
}

/// A new auction, open from `date_time_ms` until `expires_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auction {
    pub id: i64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: i64,
    pub reserve: i64,
    /// Event time, in ms since the epoch.
    pub date_time_ms: i64,
    pub expires_ms: i64,
    /// The person who sells.
    pub seller: i64,
    pub category: i64,
    /// Filler bringing the auction to its average size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bid {
    pub auction: i64,
    /// The person who bids.
    pub bidder: i64,
    pub price: i64,
    pub channel: String,
    pub url: String,
    /// Event time, in ms since the epoch.
    pub date_time_ms: i64,
    /// Filler bringing the bid to its average size.
    pub extra: String,
}

/// One event of the Nexmark stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NexmarkEvent {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

impl NexmarkEvent {
    /// The table the event belongs to.
    pub fn table(&self) -> NexmarkTable {
        match self {
            NexmarkEvent::Person(_) => NexmarkTable::Person,
            NexmarkEvent::Auction(_) => NexmarkTable::Auction,
            NexmarkEvent::Bid(_) => NexmarkTable::Bid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_named_in_any_case() {
        assert_eq!(NexmarkTable::from_name("person"), Ok(NexmarkTable::Person));
        assert_eq!(
            NexmarkTable::from_name("AUCTION"),
            Ok(NexmarkTable::Auction)
        );
        assert_eq!(NexmarkTable::from_name("Bid"), Ok(NexmarkTable::Bid));
        assert_eq!(
            NexmarkTable::from_name("bids"),
            Err(NexmarkError::UnknownTable {
                name: "bids".into()
            })
        );
        for table in NexmarkTable::ALL {
            assert_eq!(NexmarkTable::from_name(&table.to_string()), Ok(table));
        }
    }
}
