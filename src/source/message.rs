//! A Kafka message, as the sink sees it, and what it asks of the table.

use super::fetch::Fetched;
use super::{Source, SourceSettings};
use crate::config::Source as FieldSource;
use crate::decode::{DecodeError, Decoder, Meta, PlanDecoder, RowError};
use crate::plan::Feed;
use crate::targets::RouteTargets;
use crate::types::{Coord, Op, Part, Topic};

/// The parts of a Kafka message the sink uses.
pub(super) struct Msg<'a> {
    pub(super) coord: Coord,
    pub(super) key: Option<&'a [u8]>,
    pub(super) payload: Option<&'a [u8]>,
    /// See `Envelope::timestamp_ms`.
    pub(super) timestamp_ms: i64,
    pub(super) headers: Headers<'a>,
}

/// Where a message's Kafka headers are, read only for routes that map one.
#[derive(Clone, Copy)]
pub(super) enum Headers<'a> {
    /// In librdkafka's message, parsed when asked for.
    Fetched(Fetched<'a>),
    /// Copied out of `poll`.
    Owned(&'a [(String, Option<Vec<u8>>)]),
}

impl<'a> Headers<'a> {
    /// Appends the headers, in order, to `out`.
    pub(super) fn read(self, out: &mut Vec<(&'a str, Option<&'a [u8]>)>) {
        match self {
            Headers::Fetched(m) => m.headers(out),
            Headers::Owned(h) => out.extend(h.iter().map(|(n, v)| (n.as_str(), v.as_deref()))),
        }
    }
}

/// The topic of the messages read last, so that a run of one topic's
/// messages costs a comparison of names each, not a lookup.
#[derive(Default)]
pub(super) struct TopicCache(Option<(&'static str, Topic)>);

impl TopicCache {
    pub(super) fn topic(&mut self, name: &str) -> Topic {
        match self.0 {
            Some((n, t)) if n == name => t,
            _ => {
                let t = Topic::named(name);
                self.0 = Some((t.name(), t));
                t
            }
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
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl OwnedMsg {
    pub(super) fn as_msg(&self) -> Msg<'_> {
        Msg {
            coord: self.coord,
            key: self.key.as_deref(),
            payload: self.payload.as_deref(),
            timestamp_ms: self.timestamp_ms,
            headers: Headers::Owned(&self.headers),
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
        return oversized(payload, settings);
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

/// The consumer's decoders of the route targets' plans, by target; none
/// on the orders path.
pub(super) struct PlanDecoders {
    decoders: Vec<PlanDecoder>,
    deletes: Vec<bool>,
    /// Per target, whether its plan feeds a column from a Kafka header.
    headers: Vec<bool>,
    topics: Vec<String>,
}

impl PlanDecoders {
    pub(super) fn new(targets: &RouteTargets) -> PlanDecoders {
        PlanDecoders {
            decoders: targets.iter().map(|t| PlanDecoder::new(&t.plan)).collect(),
            deletes: targets.iter().map(|t| t.delete_on_tombstone).collect(),
            headers: targets
                .iter()
                .map(|t| {
                    t.plan.columns.iter().any(|c| {
                        matches!(
                            &c.feed,
                            Feed::From {
                                source: FieldSource::Header(_),
                                ..
                            }
                        )
                    })
                })
                .collect(),
            topics: targets.iter().map(|t| t.topic.clone()).collect(),
        }
    }

    /// The target of `topic`'s messages; `None` on the orders path.
    pub(super) fn target_of(&self, topic: &str) -> Option<u16> {
        self.topics
            .iter()
            .position(|t| t == topic)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// Whether the run has routes (then a topic none of them takes is no
    /// order topic either).
    pub(super) fn routed(&self) -> bool {
        !self.decoders.is_empty()
    }

    /// Whether target `t`'s tombstones delete.
    pub(super) fn deletes(&self, t: u16) -> bool {
        self.deletes.get(usize::from(t)).copied().unwrap_or(false)
    }

    /// What a message of target `t` asks for: a row, a delete by key
    /// (tombstone), or a reject naming field, column, value and what the
    /// column takes.
    pub(super) fn op_of(&mut self, settings: &SourceSettings, t: u16, m: &Msg<'_>) -> Op {
        let Some(decoder) = self.decoders.get_mut(usize::from(t)) else {
            return Op::Reject(format!("no route takes topic {}", m.coord.part.topic));
        };
        // Parsed only for a plan that reads them.
        let mut headers = Vec::new();
        if self.headers.get(usize::from(t)).copied().unwrap_or(false) {
            m.headers.read(&mut headers);
        }
        let meta = Meta {
            topic: m.coord.part.topic.name(),
            partition: m.coord.partition(),
            offset: m.coord.offset,
            timestamp: (m.timestamp_ms >= 0).then_some(m.timestamp_ms),
            key: m.key,
            headers: &headers,
        };
        let Some(payload) = m.payload else {
            return match decoder.tombstone(&meta) {
                Ok(row) => Op::PlanDelete(row),
                Err(e) => Op::Reject(e.to_string()),
            };
        };
        if payload.len() > settings.max_payload_bytes {
            return oversized(payload, settings);
        }
        match decoder.decode(payload, &meta, settings.keep_raw) {
            Ok(row) => Op::Plan(row),
            // Not "not a valid order": a route's messages are no orders.
            Err(RowError::Payload(DecodeError::Invalid(e))) => {
                Op::Reject(format!("not valid JSON: {e}"))
            }
            Err(e) => Op::Reject(e.to_string()),
        }
    }
}

fn oversized(payload: &[u8], settings: &SourceSettings) -> Op {
    Op::Reject(format!(
        "payload of {} bytes exceeds sink.max_payload_bytes ({}); stored truncated",
        payload.len(),
        settings.max_payload_bytes
    ))
}

impl Source {
    /// Decodes messages by these route targets' plans instead of as orders.
    pub(crate) fn with_routes(mut self, routes: RouteTargets) -> Source {
        self.routes = routes;
        self
    }

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
            headers: Headers::Fetched(m),
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
                use rdkafka::message::Headers as _;
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(OwnedMsg {
                    headers,
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
