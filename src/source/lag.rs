//! How far behind the consumer is: lag gauges, the progress report, and
//! whether an `--until-caught-up` run is done.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Offset;

use super::parts::partitions_of;
use super::rebalance::{lock, SinkContext};
use super::Source;
use crate::metrics::PartitionLabel;
use crate::offsets::OffsetTracker;
use crate::progress::Reporter;
use crate::route::Router;
use crate::types::{Coord, Part, Topic};

use super::message::Msg;

/// Bound on a metadata round trip (committed offsets, watermarks).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The partition's watermarks as the fetcher last saw them, without a round
/// trip to the broker (rdkafka exposes only the round-trip variant, so this
/// calls librdkafka directly).
fn cached_watermarks(
    consumer: &BaseConsumer<SinkContext>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for as long as `consumer` lives,
    // `topic` is a NUL-terminated string that outlives the call, and librdkafka
    // only writes the two out-parameters, which are valid i64s.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
        .then_some((low, high))
}

/// How long a fetch error keeps its partition's position in doubt when
/// neither a later message nor a later position settles it: long enough
/// for librdkafka to fetch the offset again (it backs off half a second
/// after an error), short enough that a transaction marker at the error's
/// offset, which is never delivered, holds a backfill's end back only so
/// long.
const FETCH_ERROR_DOUBT: Duration = Duration::from_secs(60);

/// Partitions whose position may be ahead of what was delivered.
///
/// librdkafka reports a fetch error as a message at the fetch position,
/// and its batch read moves the partition's position past that offset as
/// it does for a message, although the record there was not delivered (it
/// is fetched again). Until a message at or after that offset arrives, or
/// the position moves further, the position says nothing about having
/// read that far: an until-caught-up run trusting it would stop with that
/// record unread (not lost, since it is not committed, but the backfill
/// would not be done).
#[derive(Debug, Default)]
pub(super) struct FetchErrors(HashMap<Part, (i64, Instant)>);

impl FetchErrors {
    /// What a read returned at `coord`, in the order it returned it: a
    /// fetch error (a negative offset has no position) or a message.
    /// Order matters: an error after a message is not settled by it.
    pub(super) fn saw(&mut self, coord: Coord, error: bool) {
        if error {
            if coord.offset >= 0 {
                let now = Instant::now();
                let e = self.0.entry(coord.part).or_insert((coord.offset, now));
                *e = (e.0.min(coord.offset), now);
            }
        } else if let Some(&(offset, _)) = self.0.get(&coord.part) {
            if coord.offset >= offset {
                self.0.remove(&coord.part);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `position` as evidence of having read up to `high`: `None` while an
    /// error below `high` is unsettled (one at or past it hides nothing).
    fn trusted(
        &mut self,
        partition: Part,
        position: Option<i64>,
        high: i64,
        doubt: Duration,
    ) -> Option<i64> {
        let Some(&(offset, at)) = self.0.get(&partition) else {
            return position;
        };
        if offset >= high || position.is_some_and(|p| p > offset + 1) {
            self.0.remove(&partition);
            return position;
        }
        if at.elapsed() >= doubt {
            // A transaction marker there is never delivered; an error
            // reported once and never again (an authorization failure that
            // lasts) would leave the record unread, uncommitted for the
            // next run.
            log::warn!(
                "partition {partition}: a fetch error at offset {offset} was never followed \
                 by a message there; taking the position ({position:?}) as read after {doubt:?}"
            );
            self.0.remove(&partition);
            return position;
        }
        None
    }
}

/// What until-caught-up aims for in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    /// The high watermark when the partition was first seen.
    pub(super) high: i64,
    /// Whether the group had already committed that far (or the partition
    /// was empty): nothing to do there.
    pub(super) already: bool,
    /// Whether messages past `high` may be left for the next run. Not when
    /// nothing was committed and a group without offsets starts at the
    /// end: the next run would start past them too.
    pub(super) leave_past: bool,
}

/// Drops the messages at or past their partition's target where they may
/// be left for the next run: see [`Target::leave_past`], or once this run
/// has committed something there (`committed`), which the next run starts
/// from. Handed over, they would be in flight whenever the topic is busy,
/// and a backfill of a topic still being written to would end only at a
/// moment when nothing was.
pub(super) fn drop_past_targets(
    targets: &HashMap<Part, Target>,
    committed: impl Fn(Part) -> bool,
    msgs: &mut Vec<Msg<'_>>,
) {
    if targets.is_empty() {
        return;
    }
    // Messages come in runs of one partition: one lookup a run.
    let mut run: Option<(Part, i64)> = None;
    msgs.retain(|m| {
        let p = m.coord.part;
        let end = match run {
            Some((q, end)) if q == p => end,
            _ => {
                let end = targets
                    .get(&p)
                    .filter(|t| t.leave_past || committed(p))
                    .map_or(i64::MAX, |t| t.high);
                run = Some((p, end));
                end
            }
        };
        m.coord.offset < end
    });
}

/// Whether one partition has reached its target: the consumer's position
/// (the next offset it will read) has reached the noted high watermark and
/// nothing of it is in flight; or it had nothing to do and has nothing in
/// flight.
///
/// Not "committed up to the watermark": on a transactional topic the last
/// offset is a commit marker, and on a compacted one the last records may
/// be gone; neither is ever delivered, so nothing can be committed past
/// them, while the position does move past them.
pub(super) fn reached(
    t: &OffsetTracker,
    partition: Part,
    target: Target,
    position: Option<i64>,
) -> bool {
    t.is_idle(partition)
        && (target.already
            || position.is_some_and(|p| p >= target.high)
            || t.committed(partition).is_some_and(|c| c >= target.high))
}

impl Source {
    /// Updates the gauges and the progress report.
    pub(super) fn report(&mut self, stats: &mut Reporter, router: &Router) {
        self.metrics.channel_depth.set(router.queued() as i64);
        let in_flight = lock(&self.tracker).in_flight();
        let lag = self.lag();
        stats.tick(&self.metrics, in_flight, || lag);
    }

    /// Consumer lag per assigned partition: high watermark (as last seen by
    /// the fetcher, no round trip) less the next offset to read. Also sets
    /// the per-partition gauges.
    fn lag(&mut self) -> Vec<(Part, i64)> {
        let Ok(assignment) = self.consumer.assignment() else {
            return Vec::new();
        };
        let position = self.consumer.position().ok();
        let parts = partitions_of(&assignment);
        self.learn_start_offsets(&parts);
        let t = lock(&self.tracker);
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            let Some((low, high)) = cached_watermarks(&self.consumer, p.topic.name(), p.partition)
            else {
                continue;
            };
            if high < 0 {
                continue;
            }
            let next = position
                .as_ref()
                .and_then(|pos| pos.find_partition(p.topic.name(), p.partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .or_else(|| self.start_offsets.get(&p).copied().filter(|o| *o >= 0))
                .unwrap_or(low.max(0));
            let lag = (high - next).max(0);
            out.push((p, lag));
            let label = PartitionLabel::of(p);
            self.metrics.consumer_lag.get_or_create(&label).set(lag);
            // What MySQL holds: exactly-once, the durable prefix (what the
            // next offset in MySQL says); at-least-once, what Kafka
            // confirmed. Before either, where the partition started.
            let durable = if self.claimer.exactly_once() {
                t.durable(p)
            } else {
                t.committed(p)
            }
            .or_else(|| self.claimer.start(p))
            .or_else(|| self.start_offsets.get(&p).copied().filter(|o| *o >= 0))
            .unwrap_or(low.max(0));
            self.metrics
                .durable_lag
                .get_or_create(&label)
                .set((high - durable).max(0));
            if let Some(c) = t.committed(p) {
                self.metrics.committed_offset.get_or_create(&label).set(c);
            }
        }
        out
    }

    /// Records the group's committed offset (-1 for none) of each partition
    /// not seen before: where its lag counts from, and whether the backlog
    /// was already done when it was assigned. One round trip for all of
    /// them; returns whether every partition in `parts` is known.
    fn learn_start_offsets(&mut self, parts: &[Part]) -> bool {
        let unknown: Vec<Part> = parts
            .iter()
            .copied()
            .filter(|p| !self.start_offsets.contains_key(p))
            .collect();
        if unknown.is_empty() {
            return true;
        }
        let Ok(committed) = self.consumer.committed(LOOKUP_TIMEOUT) else {
            return false;
        };
        for p in unknown {
            let start = match committed
                .find_partition(p.topic.name(), p.partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            };
            self.start_offsets.insert(p, start);
        }
        true
    }

    /// Whether every assigned partition has been read up to its target:
    /// what [`caught_up`](Self::caught_up) waits for, less the writes still
    /// in flight. From then on no row arrives for the writers' partial
    /// batches, so they can be written at once. False while any target is
    /// unknown (they are learned at the first commit).
    pub(super) fn read_to_targets(&mut self) -> bool {
        // The positions of the assigned partitions: one list, looked at
        // once per partition.
        let Ok(positions) = self.consumer.position() else {
            return false;
        };
        let elements = positions.elements();
        !elements.is_empty()
            && elements.iter().all(|e| {
                let p = Part::new(Topic::named(e.topic()), e.partition());
                let position = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                self.targets.get(&p).is_some_and(|t| {
                    t.already
                        || self
                            .fetch_errors
                            .trusted(p, position, t.high, FETCH_ERROR_DOUBT)
                            .is_some_and(|o| o >= t.high)
                })
            })
    }

    /// Whether every assigned partition is committed up to its target.
    pub(super) fn caught_up(&mut self) -> bool {
        let assignment = match self.consumer.assignment() {
            Ok(a) if a.count() > 0 => a,
            _ => return false,
        };
        let parts = partitions_of(&assignment);
        if !self.learn_start_offsets(&parts) {
            return false;
        }
        for &p in &parts {
            if self.targets.contains_key(&p) {
                continue;
            }
            let Ok((low, high)) =
                self.consumer
                    .fetch_watermarks(p.topic.name(), p.partition, LOOKUP_TIMEOUT)
            else {
                return false;
            };
            // Nothing to do there: an empty partition, or one whose start
            // (the group's committed offset, MySQL's next offset in
            // exactly-once mode, or the end for a group new to a topic read
            // from its latest offset) is already at its end. No message
            // arrives to move the position then.
            let start = self.claimer.start(p).unwrap_or(self.start_offsets[&p]);
            let already =
                low == high || start >= high || (start < 0 && self.settings.starts_at_end);
            let leave_past = !(start < 0 && self.settings.starts_at_end);
            self.targets.insert(
                p,
                Target {
                    high,
                    already,
                    leave_past,
                },
            );
        }
        let positions = self.consumer.position().ok();
        let mut position_of = |p: Part| {
            let position = positions
                .as_ref()
                .and_then(|tpl| tpl.find_partition(p.topic.name(), p.partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            let high = self.targets[&p].high;
            self.fetch_errors
                .trusted(p, position, high, FETCH_ERROR_DOUBT)
        };
        let t = lock(&self.tracker);
        parts
            .iter()
            .all(|p| reached(&t, *p, self.targets[p], position_of(*p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::{at, p};

    #[test]
    fn a_position_moved_by_a_fetch_error_is_not_trusted_until_settled() {
        let long = Duration::from_secs(3600);
        let (error, message) = (true, false);
        let mut e = FetchErrors::default();
        assert_eq!(e.trusted(p(0), Some(9), 10, long), Some(9));
        // An error at 9 moved the position to 10: record 9 is not read.
        e.saw(at(0, 9), error);
        e.saw(at(1, -1), error);
        assert_eq!(e.trusted(p(0), Some(10), 10, long), None);
        assert_eq!(e.trusted(p(1), Some(10), 10, long), Some(10), "no offset");
        e.saw(at(0, 8), message);
        assert_eq!(
            e.trusted(p(0), Some(10), 10, long),
            None,
            "an earlier record"
        );
        e.saw(at(0, 9), message);
        assert_eq!(e.trusted(p(0), Some(10), 10, long), Some(10));
        // One read, in its order: an error, records after it, another
        // error. The second is not settled by the records before it.
        for (offset, kind) in [
            (5, error),
            (5, message),
            (6, message),
            (7, message),
            (8, message),
            (9, error),
        ] {
            e.saw(at(0, offset), kind);
        }
        assert_eq!(e.trusted(p(0), Some(10), 10, long), None);
        // Settled by a position further on, or by time (a transaction
        // marker at 9 is never delivered); and an error at or past the
        // target hides nothing below it.
        assert_eq!(e.trusted(p(0), Some(11), 10, long), Some(11));
        e.saw(at(0, 9), error);
        assert_eq!(e.trusted(p(0), Some(10), 10, Duration::ZERO), Some(10));
        e.saw(at(0, 10), error);
        assert_eq!(e.trusted(p(0), Some(11), 10, long), Some(11));
        assert!(e.is_empty());
    }

    #[test]
    fn messages_past_a_target_are_dropped_unless_the_next_run_would_skip_them() {
        let target = |high, leave_past| Target {
            high,
            already: false,
            leave_past,
        };
        let targets: HashMap<Part, Target> = [(p(0), target(3, true)), (p(1), target(1, false))]
            .into_iter()
            .collect();
        let coords = [
            (0, 1),
            (0, 2),
            (0, 3),
            (0, 4),
            (1, 0),
            (1, 5),
            (2, 9),
            (0, 2),
            (0, 7),
        ];
        let mut msgs: Vec<Msg<'_>> = coords
            .iter()
            .map(|&(p, o)| Msg {
                coord: at(p, o),
                key: None,
                payload: None,
                timestamp_ms: crate::types::NO_TIMESTAMP,
                headers: super::super::message::Headers::Owned(&[]),
            })
            .collect();
        let kept = |msgs: &[Msg<'_>]| -> Vec<(i32, i64)> {
            msgs.iter()
                .map(|m| (m.coord.partition(), m.coord.offset))
                .collect()
        };
        let mut later: Vec<Msg<'_>> = msgs
            .iter()
            .map(|m| Msg {
                coord: m.coord,
                key: None,
                payload: None,
                timestamp_ms: crate::types::NO_TIMESTAMP,
                headers: super::super::message::Headers::Owned(&[]),
            })
            .collect();
        drop_past_targets(&targets, |_| false, &mut msgs);
        // Partition 0 is cut at 3, in a read that straddles it and in a
        // later run of it; partition 1 is kept whole (nothing committed, a
        // group that starts at the end); partition 2 has no target yet.
        assert_eq!(
            kept(&msgs),
            [(0, 1), (0, 2), (1, 0), (1, 5), (2, 9), (0, 2)]
        );
        // Once this run committed something in partition 1, the next run
        // starts there: what is past its target can wait for it.
        drop_past_targets(&targets, |q| q == p(1), &mut later);
        assert_eq!(kept(&later), [(0, 1), (0, 2), (1, 0), (2, 9), (0, 2)]);
    }

    #[test]
    fn a_partition_is_done_when_its_position_reached_the_watermark_and_nothing_is_in_flight() {
        let mut t = OffsetTracker::new();
        let target = Target {
            high: 3,
            already: false,
            leave_past: true,
        };
        assert!(!reached(&t, p(0), target, None), "nothing read yet");
        assert!(!reached(&t, p(0), target, Some(2)), "one more to read");
        for o in 0..3 {
            t.register(at(0, o));
        }
        assert!(!reached(&t, p(0), target, Some(3)), "read, not yet durable");
        for o in 0..3 {
            t.complete(at(0, o));
        }
        assert!(reached(&t, p(0), target, Some(3)));
    }

    #[test]
    fn a_transaction_marker_at_the_end_is_never_waited_for() {
        // Offsets 0 and 1 are records, 2 the commit marker of their
        // transaction: the high watermark is 3, yet only 0 and 1 are ever
        // delivered, so nothing can be committed past 2.
        let mut t = OffsetTracker::new();
        let target = Target {
            high: 3,
            already: false,
            leave_past: true,
        };
        for o in 0..2 {
            t.register(at(0, o));
            t.complete(at(0, o));
        }
        t.confirm_commit(p(0), 2);
        assert!(!reached(&t, p(0), target, Some(2)));
        // The consumer's position moves past the marker.
        assert!(reached(&t, p(0), target, Some(3)));
    }

    #[test]
    fn a_partition_with_nothing_to_do_is_done_once_idle() {
        let mut t = OffsetTracker::new();
        let target = Target {
            high: 10,
            already: true,
            leave_past: true,
        };
        assert!(reached(&t, p(0), target, None));
        t.register(at(0, 10));
        assert!(
            !reached(&t, p(0), target, Some(11)),
            "a message after the target is in flight"
        );
        t.complete(at(0, 10));
        assert!(reached(&t, p(0), target, None));
    }
}
