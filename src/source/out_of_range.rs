//! Where a partition starts when the offset the sink would resume from is
//! one that Kafka no longer has.
//!
//! librdkafka, left to itself, resets such a partition with
//! `auto.offset.reset` and only logs it: a recreated topic (offsets start
//! again at 0) was skipped up to MySQL's old next offset, and a retention
//! gap vanished without a trace. So the consumer runs with
//! `auto.offset.reset=error`, is given an explicit start for every
//! partition it is assigned, and this module decides that start from the
//! offset the sink holds and the log's range: inside it, resume; outside
//! it, do what `kafka.on_out_of_range` says, and say what it cost.
//! `auto_offset_reset` keeps meaning only "a group with no offset".

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{AutoOffsetReset, OnOutOfRange};

/// Where a partition stands, in words, for `offsets show`.
pub(crate) fn verdict(
    topic: &str,
    partition: i32,
    held: Option<i64>,
    range: Option<LogRange>,
    replaced: bool,
    fresh: AutoOffsetReset,
) -> String {
    match decide(
        topic,
        partition,
        held,
        range,
        replaced,
        OnOutOfRange::Fail,
        fresh,
    ) {
        Start::At(_) if range.is_none() => "log range unknown".into(),
        Start::At(_) => "ok".into(),
        Start::Fresh(f) => format!("no offset: starts at {}", f.as_str()),
        Start::Refuse(e) => match e.side {
            Side::BelowStart => format!(
                "BELOW THE LOG'S START: {} message(s) deleted unread",
                e.range.low - e.offset
            ),
            Side::BeyondEnd => "BEYOND THE LOG'S END: topic recreated or group moved?".into(),
            Side::Replaced => "OF ANOTHER LOG: the cluster or topic id changed".into(),
        },
        Start::Reset(_) => "ok".into(),
    }
}

/// Bound on one offsets lookup.
const LOOKUP: Duration = Duration::from_secs(10);

/// A partition's log as Kafka has it: the first offset it holds and the
/// high watermark (the next offset to be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogRange {
    pub(crate) low: i64,
    pub(crate) high: i64,
}

/// On which side of the log an offset fell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Below the log's start: retention deleted messages that were never read.
    BelowStart,
    /// Beyond the log's end: the topic was recreated, or the group's
    /// offsets come from another cluster.
    BeyondEnd,
    /// Of another log altogether: the cluster's or the topic's id is not
    /// the one the offsets were written under (recreated, or another
    /// cluster), whatever the offset.
    Replaced,
}

impl Side {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Side::BelowStart => "below_start",
            Side::BeyondEnd => "beyond_end",
            Side::Replaced => "replaced",
        }
    }
}

/// An offset Kafka does not have, for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutOfRange {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The offset the sink would resume from.
    pub(crate) offset: i64,
    pub(crate) range: LogRange,
    pub(crate) side: Side,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let OutOfRange {
            topic,
            partition,
            offset,
            range,
            side,
        } = self;
        let why = match side {
            Side::BelowStart => format!(
                "below the log's start: {} message(s) were deleted by retention before the \
                 sink read them",
                range.low - offset
            ),
            Side::BeyondEnd => "beyond the log's end: the topic was recreated, or the group's \
                                offsets come from another cluster"
                .to_string(),
            Side::Replaced => "of another log: the cluster or topic id is not the one the \
                               sink's offsets were written under (the topic was recreated, or \
                               the group's offsets come from another cluster)"
                .to_string(),
        };
        let place = match side {
            Side::Replaced => "does not belong to the log Kafka has",
            Side::BelowStart | Side::BeyondEnd => "is outside the log Kafka has",
        };
        write!(
            f,
            "topic {topic} partition {partition}: the sink's offset {offset} {place} ({}..{}), \
             {why}. Nothing of the partition was written. To go on, run \
             `kafka-mysql-sink offsets reset --to earliest --partition {partition}` (or `--to \
             latest`, an offset, or `current` for offsets moved along with the group) with the \
             same configuration, or set kafka.on_out_of_range = \"earliest\" or \"latest\"",
            range.low, range.high
        )
    }
}

/// A start the sink chose instead of an offset Kafka does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reset {
    pub(crate) partition: i32,
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) side: Side,
    /// Messages never to be written: those deleted below the log's start,
    /// and, when resetting to the end, those passed over in the log.
    pub(crate) lost: u64,
}

/// Where one assigned partition starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// At this offset, which the sink held (in range, or the range unknown:
    /// librdkafka then reports an offset out of range as an error).
    At(i64),
    /// No offset anywhere: where `auto_offset_reset` says.
    Fresh(AutoOffsetReset),
    /// Somewhere else than the offset held, which Kafka does not have.
    Reset(Reset),
    /// Nowhere: `on_out_of_range = "fail"`.
    Refuse(OutOfRange),
}

/// The offset the sink resumes a partition from, by what the stores hold:
/// in exactly-once mode MySQL's next offset, or Kafka's committed offset
/// where that is further on (below either everything is durable, and an
/// at-least-once run in between moves only Kafka's); in at-least-once mode
/// Kafka's. A start decided at an earlier claim that Kafka never confirmed
/// (`pending`) overrules Kafka's offset, which is then the one from before
/// that decision.
pub(crate) fn held_offset(
    exactly_once: bool,
    kafka: Option<i64>,
    mysql: Option<i64>,
    pending: Option<i64>,
) -> Option<i64> {
    match (pending, exactly_once) {
        (Some(p), true) => mysql.max(Some(p)),
        (Some(p), false) => Some(p),
        (None, true) => kafka.max(mysql),
        (None, false) => kafka,
    }
}

/// The start of `partition`, which the sink would resume at `held` (none:
/// the group has no offset), in a log of `range` (none: unknown);
/// `replaced` when the offsets were written under another log's ids.
pub(crate) fn decide(
    topic: &str,
    partition: i32,
    held: Option<i64>,
    range: Option<LogRange>,
    replaced: bool,
    policy: OnOutOfRange,
    fresh: AutoOffsetReset,
) -> Start {
    let Some(offset) = held else {
        return Start::Fresh(fresh);
    };
    let usable = range.filter(|r| r.low >= 0 && r.high >= r.low);
    let Some(range) = usable else {
        if replaced {
            // Another log, and no range to go on from: never resume there.
            return Start::Refuse(OutOfRange {
                topic: topic.to_owned(),
                partition,
                offset,
                range: LogRange { low: -1, high: -1 },
                side: Side::Replaced,
            });
        }
        return Start::At(offset);
    };
    let side = if replaced {
        Side::Replaced
    } else if offset < range.low {
        Side::BelowStart
    } else if offset > range.high {
        Side::BeyondEnd
    } else {
        return Start::At(offset);
    };
    let deleted = match side {
        Side::BelowStart => (range.low - offset) as u64,
        Side::BeyondEnd | Side::Replaced => 0,
    };
    let (to, lost) = match policy {
        OnOutOfRange::Fail => {
            return Start::Refuse(OutOfRange {
                topic: topic.to_owned(),
                partition,
                offset,
                range,
                side,
            })
        }
        OnOutOfRange::Earliest => (range.low, deleted),
        OnOutOfRange::Latest => (range.high, deleted + (range.high - range.low) as u64),
    };
    Start::Reset(Reset {
        partition,
        from: offset,
        to,
        side,
        lost,
    })
}

/// The partitions' logs as Kafka has them, in two requests for all of them
/// (the earliest and the latest offsets); partitions whose lookup failed
/// are missing.
pub(crate) fn log_ranges<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    parts: &[i32],
) -> HashMap<i32, LogRange> {
    let ask = |which: Offset| -> HashMap<i32, i64> {
        let mut tpl = TopicPartitionList::new();
        for &p in parts {
            // The "timestamp" -2 asks for the log's start, -1 for its end.
            let _ = tpl.add_partition_offset(topic, p, which);
        }
        match consumer.offsets_for_times(tpl, LOOKUP) {
            Ok(got) => got
                .elements()
                .iter()
                .filter(|e| e.error().is_ok())
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                log::warn!("cannot look up the log range of topic {topic} ({e})");
                HashMap::new()
            }
        }
    };
    if parts.is_empty() {
        return HashMap::new();
    }
    let low = ask(Offset::Beginning);
    let high = ask(Offset::End);
    low.into_iter()
        .filter_map(|(p, low)| high.get(&p).map(|&high| (p, LogRange { low, high })))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Option<LogRange> = Some(LogRange {
        low: 100,
        high: 250,
    });

    fn at(held: Option<i64>, range: Option<LogRange>, policy: OnOutOfRange) -> Start {
        decide(
            "t",
            3,
            held,
            range,
            false,
            policy,
            AutoOffsetReset::Earliest,
        )
    }

    #[test]
    fn an_offset_inside_the_log_or_at_its_end_is_resumed() {
        for o in [100, 180, 250] {
            assert_eq!(at(Some(o), R, OnOutOfRange::Fail), Start::At(o));
        }
        // Unknown or unusable ranges: resume, librdkafka reports the rest.
        assert_eq!(at(Some(7), None, OnOutOfRange::Fail), Start::At(7));
        let bad = Some(LogRange { low: -1, high: -1 });
        assert_eq!(at(Some(7), bad, OnOutOfRange::Fail), Start::At(7));
    }

    #[test]
    fn a_group_without_offsets_starts_where_auto_offset_reset_says() {
        assert_eq!(
            decide(
                "t",
                0,
                None,
                R,
                false,
                OnOutOfRange::Fail,
                AutoOffsetReset::Latest
            ),
            Start::Fresh(AutoOffsetReset::Latest)
        );
    }

    #[test]
    fn fail_refuses_both_sides_naming_what_resolves_it() {
        let Start::Refuse(below) = at(Some(40), R, OnOutOfRange::Fail) else {
            panic!("below the start must be refused");
        };
        assert_eq!(below.side, Side::BelowStart);
        let text = below.to_string();
        assert!(text.contains("partition 3"), "{text}");
        assert!(text.contains("offset 40"), "{text}");
        assert!(text.contains("100..250"), "{text}");
        assert!(text.contains("60 message(s)"), "{text}");
        assert!(
            text.contains("offsets reset --to earliest --partition 3"),
            "{text}"
        );
        let Start::Refuse(beyond) = at(Some(740), R, OnOutOfRange::Fail) else {
            panic!("beyond the end must be refused");
        };
        assert_eq!(beyond.side, Side::BeyondEnd);
        assert!(beyond.to_string().contains("recreated"));
    }

    #[test]
    fn offsets_of_another_log_are_out_of_range_wherever_they_point() {
        let other = |held, range, policy| {
            decide(
                "t",
                3,
                Some(held),
                range,
                true,
                policy,
                AutoOffsetReset::Earliest,
            )
        };
        let Start::Refuse(e) = other(180, R, OnOutOfRange::Fail) else {
            panic!("inside the range, but of another log");
        };
        assert_eq!(e.side, Side::Replaced);
        assert!(e.to_string().contains("id"));
        let Start::Reset(r) = other(180, R, OnOutOfRange::Earliest) else {
            panic!("earliest resets");
        };
        assert_eq!((r.to, r.lost, r.side), (100, 0, Side::Replaced));
        let Start::Reset(r) = other(180, R, OnOutOfRange::Latest) else {
            panic!("latest resets");
        };
        assert_eq!((r.to, r.lost), (250, 150));
        // No range to reset into: refused whatever the policy.
        assert!(matches!(
            other(180, None, OnOutOfRange::Earliest),
            Start::Refuse(_)
        ));
    }

    #[test]
    fn a_pending_start_overrules_kafka_until_confirmed() {
        // Exactly-once: MySQL's, or Kafka's where further on.
        assert_eq!(held_offset(true, Some(9), Some(5), None), Some(9));
        assert_eq!(held_offset(true, None, Some(5), None), Some(5));
        // A reset back to 0 that Kafka never took: Kafka's 740 is stale.
        assert_eq!(held_offset(true, Some(740), Some(0), Some(0)), Some(0));
        assert_eq!(held_offset(true, Some(740), Some(30), Some(0)), Some(30));
        // At-least-once: Kafka's, unless a start is pending.
        assert_eq!(held_offset(false, Some(9), Some(500), None), Some(9));
        assert_eq!(held_offset(false, Some(740), None, Some(0)), Some(0));
        assert_eq!(held_offset(false, None, None, None), None);
    }

    #[test]
    fn resets_count_what_is_never_written() {
        let reset = |held, policy| match at(Some(held), R, policy) {
            Start::Reset(r) => (r.to, r.lost, r.side),
            other => panic!("{other:?}"),
        };
        // Retention gap: the deleted messages, plus the log when skipping it.
        assert_eq!(
            reset(40, OnOutOfRange::Earliest),
            (100, 60, Side::BelowStart)
        );
        assert_eq!(
            reset(40, OnOutOfRange::Latest),
            (250, 210, Side::BelowStart)
        );
        // Recreated topic: from its start nothing is lost; from its end, the log.
        assert_eq!(
            reset(740, OnOutOfRange::Earliest),
            (100, 0, Side::BeyondEnd)
        );
        assert_eq!(
            reset(740, OnOutOfRange::Latest),
            (250, 150, Side::BeyondEnd)
        );
    }
}
