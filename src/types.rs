//! The types every stage shares, and nothing else.
//!
//! They sit below the stages (source, route, write, offsets) so that each
//! stage imports them and no stage imports another for its vocabulary: the
//! consumer makes [`Envelope`]s, the router moves them in [`Chunk`]s, writers
//! turn them into statements and send [`Ack`]s back, the tracker counts
//! [`Coord`]s.

use std::fmt;

use crate::decode::{PlanRow, Row};

/// Where a message sits in the topic: its partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Coord {
    pub partition: i32,
    pub offset: i64,
}

impl Coord {
    pub fn new(partition: i32, offset: i64) -> Coord {
        Coord { partition, offset }
    }
}

impl fmt::Display for Coord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.partition, self.offset)
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
    /// A plain upsert with no raw message attached.
    pub fn upsert(partition: i32, offset: i64, row: Row) -> Envelope {
        Envelope {
            coord: Coord::new(partition, offset),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut v = vec![Coord::new(1, 0), Coord::new(0, 5), Coord::new(0, 2)];
        v.sort();
        assert_eq!(
            v,
            vec![Coord::new(0, 2), Coord::new(0, 5), Coord::new(1, 0)]
        );
    }
}
