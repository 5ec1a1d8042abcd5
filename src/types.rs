//! The types every stage shares, and nothing else.
//!
//! They sit below the stages (source, route, write, offsets) so that each
//! stage imports them and no stage imports another for its vocabulary: the
//! consumer makes [`Envelope`]s, the router moves them in [`Chunk`]s, writers
//! turn them into statements and send [`Ack`]s back, the tracker counts
//! [`Coord`]s.

use std::fmt;

use crate::decode::{PlanRow, Row};

/// A topic, by a number that stands for its name.
///
/// Messages, offsets and claims name their topic on every step of the data
/// path, so the name is interned once (the first time the process meets it)
/// and a copyable number travels instead. Names are never forgotten: a
/// process meets few topics, even under a pattern subscription. Topics
/// compare by name, so that every instance orders them alike (offsets rows
/// are locked in that order).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic(u32);

static TOPIC_NAMES: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());

impl Topic {
    /// The topic called `name`.
    pub fn named(name: &str) -> Topic {
        let find = |names: &[&'static str]| names.iter().position(|n| *n == name);
        let read = TOPIC_NAMES.read().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = find(&read) {
            return Topic(i as u32);
        }
        drop(read);
        let mut names = TOPIC_NAMES.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = find(&names) {
            return Topic(i as u32);
        }
        // Leaked on purpose: interned names live as long as the process.
        names.push(Box::leak(name.to_owned().into_boxed_str()));
        Topic((names.len() - 1) as u32)
    }

    /// The topic's number in this process: small, dense, in the order
    /// topics were first met.
    pub(crate) fn index(self) -> u32 {
        self.0
    }

    /// The topic's name.
    pub fn name(self) -> &'static str {
        let names = TOPIC_NAMES.read().unwrap_or_else(|e| e.into_inner());
        names.get(self.0 as usize).copied().unwrap_or_default()
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Topic) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Topic {
    fn cmp(&self, other: &Topic) -> std::cmp::Ordering {
        if self.0 == other.0 {
            return std::cmp::Ordering::Equal;
        }
        self.name().cmp(other.name())
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name())
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One partition of one topic: what offsets, claims and commits are kept by.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Part {
    pub topic: Topic,
    pub partition: i32,
}

impl Part {
    pub fn new(topic: Topic, partition: i32) -> Part {
        Part { topic, partition }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where a message sits: its topic's partition and its offset there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Coord {
    pub part: Part,
    pub offset: i64,
}

impl Coord {
    pub fn new(part: Part, offset: i64) -> Coord {
        Coord { part, offset }
    }

    /// Its partition's number within its topic.
    pub fn partition(&self) -> i32 {
        self.part.partition
    }
}

impl fmt::Display for Coord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.part, self.offset)
    }
}

/// What a message asks of the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert or update the row.
    Upsert(Row),
    /// A tombstone: delete the row with this `id`.
    Delete(String),
    /// The message is not an order; it goes to the dead-letter destination
    /// with this reason.
    Reject(String),
    /// A route's row, written as its target's mode says (upsert, insert or
    /// update).
    Plan(PlanRow),
    /// A route's tombstone: delete the row whose key cells these are.
    PlanDelete(PlanRow),
}

/// A message's key and payload as they arrived, kept for the dead-letter
/// destination. Both live in one allocation (see [`Row`] for why that
/// matters); the default holds neither and allocates nothing, which is what
/// messages carry when dead letters are only logged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Raw {
    bytes: Box<[u8]>,
    key_len: Option<usize>,
    has_payload: bool,
}

impl Raw {
    pub fn new(key: Option<&[u8]>, payload: Option<&[u8]>) -> Raw {
        let (k, p) = (key.unwrap_or_default(), payload.unwrap_or_default());
        let mut bytes = Vec::with_capacity(k.len() + p.len());
        bytes.extend_from_slice(k);
        bytes.extend_from_slice(p);
        Raw {
            bytes: bytes.into_boxed_slice(),
            key_len: key.map(<[u8]>::len),
            has_payload: payload.is_some(),
        }
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.key_len.map(|n| &self.bytes[..n])
    }

    pub fn payload(&self) -> Option<&[u8]> {
        let start = self.key_len.unwrap_or(0);
        self.has_payload.then(|| &self.bytes[start..])
    }
}

/// A message on its way to MySQL, with the Kafka coordinates it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub coord: Coord,
    /// The generation of its partition's claim when it was read (see
    /// `fence`): it may only be written while that claim is current.
    pub generation: u64,
    /// The Kafka message's timestamp, in milliseconds since the epoch, or
    /// [`NO_TIMESTAMP`]: carried to the writer, which measures how far
    /// behind the message is once it is durable.
    pub timestamp_ms: i64,
    /// The route target (index into `crate::targets::RouteTargets`) of the message;
    /// 0 and unused on the orders path.
    pub target: u16,
    pub op: Op,
    pub raw: Raw,
}

/// `Envelope::timestamp_ms` of a message Kafka gave no timestamp.
pub(crate) const NO_TIMESTAMP: i64 = -1;

impl Envelope {
    /// A plain upsert with no raw message attached, of partition
    /// `partition` of a topic with no name (for writers fed without a
    /// consumer: benchmarks and tests).
    pub fn upsert(partition: i32, offset: i64, row: Row) -> Envelope {
        Envelope {
            coord: Coord::new(Part::new(Topic::named(""), partition), offset),
            generation: 0,
            timestamp_ms: NO_TIMESTAMP,
            target: 0,
            op: Op::Upsert(row),
            raw: Raw::default(),
        }
    }

    /// The message's key as it arrived, where it was kept: upserts keep it in
    /// their row (one allocation for both), other messages in `raw`.
    pub fn raw_key(&self) -> Option<&[u8]> {
        match &self.op {
            Op::Upsert(row) if row.raw_payload().is_some() => row.raw_key(),
            Op::Plan(row) if row.raw_payload().is_some() => row.raw_key(),
            _ => self.raw.key(),
        }
    }

    /// The message's payload as it arrived, where it was kept.
    pub fn raw_payload(&self) -> Option<&[u8]> {
        match &self.op {
            Op::Upsert(row) if row.raw_payload().is_some() => row.raw_payload(),
            Op::Plan(row) if row.raw_payload().is_some() => row.raw_payload(),
            _ => self.raw.payload(),
        }
    }
}

/// Rows handed from the consumer to a writer in one channel operation.
pub(crate) type Chunk = Vec<Envelope>;

/// Offsets made durable by one batch, sent back to the consumer.
pub(crate) type Ack = Vec<Coord>;

/// A message that could not be written, and why.
pub struct DeadLetter<'a> {
    pub env: &'a Envelope,
    pub error: String,
}

/// Partitions and coordinates for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Coord, Part, Topic};

    /// Partition `partition` of topic `t`.
    pub(crate) fn p(partition: i32) -> Part {
        Part::new(Topic::named("t"), partition)
    }

    /// Offset `offset` of partition `partition` of topic `t`.
    pub(crate) fn at(partition: i32, offset: i64) -> Coord {
        Coord::new(p(partition), offset)
    }

    /// Partition `partition` of the topic `Envelope::upsert` puts rows in.
    pub(crate) fn unnamed(partition: i32) -> Part {
        Part::new(Topic::named(""), partition)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::at;
    use super::*;

    #[test]
    fn topics_are_interned_and_order_by_name() {
        let (b, a) = (Topic::named("orders-b"), Topic::named("orders-a"));
        assert_eq!(Topic::named("orders-b"), b);
        assert_ne!(a, b);
        assert_eq!((a.name(), b.name()), ("orders-a", "orders-b"));
        assert!(a < b, "by name, not by the order they were met");
        let mut coords = [
            Coord::new(Part::new(b, 0), 1),
            Coord::new(Part::new(a, 3), 9),
            Coord::new(Part::new(a, 1), 2),
        ];
        coords.sort();
        assert_eq!(
            coords.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["orders-a/1@2", "orders-a/3@9", "orders-b/0@1"]
        );
    }

    #[test]
    fn raw_message_parts_round_trip() {
        for (key, payload) in [
            (Some(&b"k1"[..]), Some(&b"{\"id\":1}"[..])),
            (None, Some(&b"p"[..])),
            (Some(&b"k"[..]), None),
            (Some(&b""[..]), Some(&b""[..])),
            (None, None),
        ] {
            let raw = Raw::new(key, payload);
            assert_eq!((raw.key(), raw.payload()), (key, payload));
        }
        assert_eq!(
            (Raw::default().key(), Raw::default().payload()),
            (None, None)
        );
    }

    #[test]
    fn coordinates_order_by_partition_then_offset() {
        let mut v = vec![at(1, 0), at(0, 5), at(0, 2)];
        v.sort();
        assert_eq!(v, vec![at(0, 2), at(0, 5), at(1, 0)]);
    }
}
