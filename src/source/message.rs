//! A Kafka message, as the sink sees it, and what it asks of the table.

use super::fetch::Fetched;
use super::{Source, SourceSettings};
use crate::decode::Decoder;
use crate::types::{Coord, Op, Part, Topic};

/// The parts of a Kafka message the sink uses.
pub(super) struct Msg<'a> {
    pub(super) coord: Coord,
    pub(super) key: Option<&'a [u8]>,
    pub(super) payload: Option<&'a [u8]>,
    /// See `Envelope::timestamp_ms`.
    pub(super) timestamp_ms: i64,
}

/// The topic of the messages read last, so that a run of one topic's
/// messages costs a comparison of names each, not a lookup.
#[derive(Default)]
pub(super) struct TopicCache(Option<Topic>);

impl TopicCache {
    pub(super) fn topic(&mut self, name: &str) -> Topic {
        match self.0 {
            Some(t) if t.name() == name => t,
            _ => *self.0.insert(Topic::named(name)),
        }
    }
}

/// A message copied out of rdkafka's `poll`, whose borrow of the consumer
/// would otherwise last through the hand-over.
pub(super) struct OwnedMsg {
    coord: Coord,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    timestamp_ms: i64,
}

impl OwnedMsg {
    pub(super) fn as_msg(&self) -> Msg<'_> {
        Msg {
            coord: self.coord,
            key: self.key.as_deref(),
            payload: self.payload.as_deref(),
            timestamp_ms: self.timestamp_ms,
        }
    }

    pub(super) fn coord(&self) -> Coord {
        self.coord
    }
}

/// What a message asks for: an upsert, a delete (tombstone) or a reject.
pub(super) fn to_op(
    settings: &SourceSettings,
    decoder: &mut Decoder,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Op {
    let Some(payload) = payload else {
        return match key.map(std::str::from_utf8) {
            Some(Ok(id)) if !id.is_empty() => Op::Delete(id.to_owned()),
            _ => Op::Reject("tombstone without a UTF-8 key to delete by".into()),
        };
    };
    if payload.len() > settings.max_payload_bytes {
        return Op::Reject(format!(
            "payload of {} bytes exceeds sink.max_payload_bytes ({}); stored truncated",
            payload.len(),
            settings.max_payload_bytes
        ));
    }
    let row = if settings.keep_raw {
        decoder.decode_keeping(key, payload)
    } else {
        decoder.decode(payload)
    };
    match row {
        Ok(row) => Op::Upsert(row),
        Err(e) => Op::Reject(e.to_string()),
    }
}

impl Source {
    /// A fetched message, or `None` (after a warning) for the fetch errors
    /// librdkafka reports in place of one, whose offsets are noted (they
    /// move the partition's position; see `FetchErrors`).
    pub(super) fn message<'b>(&mut self, m: Fetched<'b>) -> Option<Msg<'b>> {
        let topic = self.topics.topic(m.topic_name());
        let coord = Coord::new(Part::new(topic, m.partition()), m.offset());
        if let Some(e) = m.error() {
            if e == rdkafka::error::RDKafkaErrorCode::AutoOffsetReset {
                self.fell_out_of_range(topic.name(), m.partition(), m.offset());
                return None;
            }
            log::warn!(
                topic = topic.name(),
                partition = m.partition(),
                offset = m.offset();
                "Kafka consumer error on {}: {e}",
                coord.part
            );
            self.fetch_errors.saw(coord, true);
            return None;
        }
        if !self.fetch_errors.is_empty() {
            self.fetch_errors.saw(coord, false);
        }
        Some(Msg {
            coord,
            key: m.key(),
            payload: m.payload(),
            timestamp_ms: m.timestamp_ms(),
        })
    }

    /// librdkafka found `offset` of `partition` missing from the log while
    /// reading it (retention overtook the sink, the log was truncated, or,
    /// with a negative offset, the group had none and its lookup at
    /// assignment had failed) and stopped fetching the partition, which no
    /// seek restarts. The run stops, nothing past what is durable
    /// committed: the next start gives the partition its start at
    /// assignment, where `on_out_of_range` decides in the claim's
    /// transaction with nothing of it in flight.
    fn fell_out_of_range(&mut self, topic: &str, partition: i32, offset: i64) {
        if self.out_of_range.is_none() {
            self.out_of_range = Some(super::SourceError::OutOfRangeWhileRunning {
                topic: topic.to_owned(),
                partition,
                offset,
                policy: self.claimer.starting().on_out_of_range.as_str(),
            });
        }
    }

    /// Serves one event from the consumer queue (rebalances run their
    /// callbacks in here). Returns a copy of the message if the event was
    /// one: a partition that is not attached to the batch queue.
    pub(super) fn serve_events(&mut self) -> Option<OwnedMsg> {
        match self.consumer.poll(std::time::Duration::ZERO)? {
            Ok(m) => {
                use rdkafka::message::Message;
                let part = Part::new(self.topics.topic(m.topic()), m.partition());
                // Correct, only slower; said once per partition.
                if self.unbatched.insert(part) {
                    crate::metrics::Metrics::add(&self.metrics.unbatched_partitions, 1);
                    log::warn!(
                        "partition {part} is delivered outside the batch queue; \
                         reading it one message at a time"
                    );
                }
                Some(OwnedMsg {
                    coord: Coord::new(part, m.offset()),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    timestamp_ms: m
                        .timestamp()
                        .to_millis()
                        .unwrap_or(crate::types::NO_TIMESTAMP),
                })
            }
            Err(e) => {
                // Without its partition (rdkafka's poll keeps only the
                // code): stop all the same, the next start decides.
                if let rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::error::RDKafkaErrorCode::AutoOffsetReset,
                ) = e
                {
                    self.fell_out_of_range("", -1, -1);
                }
                log::warn!("Kafka consumer error: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(keep_raw: bool) -> SourceSettings {
        SourceSettings {
            commit_interval: Duration::from_secs(1),
            stats_interval: Duration::ZERO,
            until_caught_up: false,
            keep_raw,
            reject_to_writers: keep_raw,
            delete_on_tombstone: true,
            max_payload_bytes: 200,
            pause_after: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(1),
            starts_at_end: false,
        }
    }

    const ORDER: &[u8] = br#"{"id":"a","order_id":"o","quantity":1,"unit_price":2.5,"total_value":2.5,"processed_at":1}"#;

    #[test]
    fn a_message_becomes_an_upsert_a_delete_or_a_reject() {
        let mut d = Decoder::new();
        let s = settings(false);
        let Op::Upsert(row) = to_op(&s, &mut d, None, Some(ORDER)) else {
            panic!("an order is an upsert");
        };
        assert_eq!(row.id(), "a");
        assert_eq!(to_op(&s, &mut d, Some(b"k"), None), Op::Delete("k".into()));
        for key in [None, Some(&b""[..]), Some(&b"\xff"[..])] {
            assert!(
                matches!(to_op(&s, &mut d, key, None), Op::Reject(_)),
                "{key:?}"
            );
        }
        assert!(matches!(to_op(&s, &mut d, None, Some(b"{")), Op::Reject(_)));
    }

    #[test]
    fn an_oversized_payload_is_rejected_unparsed() {
        let mut d = Decoder::new();
        let big = [b' '; 201];
        let Op::Reject(reason) = to_op(&settings(false), &mut d, None, Some(&big)) else {
            panic!("oversized payloads are rejects");
        };
        assert!(reason.contains("201 bytes"), "{reason}");
    }

    #[test]
    fn kept_raw_messages_travel_in_the_row() {
        let mut d = Decoder::new();
        let Op::Upsert(row) = to_op(&settings(true), &mut d, Some(b"key"), Some(ORDER)) else {
            panic!("an order is an upsert");
        };
        assert_eq!(
            (row.raw_key(), row.raw_payload()),
            (Some(&b"key"[..]), Some(ORDER))
        );
    }
}
