//! Back-pressure: what the consumer does while writers are behind.
//!
//! A full writer channel first blocks the consumer (the normal state of a
//! backfill, where MySQL is the slower side). Only when that outlasts
//! [`pause_after`] is fetching paused, so the consumer can keep calling
//! `poll` and stay in its group however long MySQL is away. Messages
//! librdkafka had already fetched are rewound to, so nothing is skipped.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::Offset;

use super::message::Msg;
use super::rebalance::lock;
use super::{Handover, Source, SourceError, READ_BATCH};
use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::route::RouteError;
use crate::types::{Coord, Part};

/// How long to wait on full writer channels before pausing fetching.
///
/// A full channel is the normal state of a backfill (MySQL is the slower
/// side), so it must not pause at once: librdkafka purges a partition's
/// prefetched messages when it is paused and fetches them again on resume,
/// and pausing on every full channel measured at half the throughput.
/// Blocking is only a problem when it outlasts `max.poll.interval.ms`, after
/// which the group evicts the consumer; a quarter of that, capped at five
/// seconds, leaves ample margin while still riding out ordinary slow batches.
pub(crate) fn pause_after(cfg: &KafkaConfig) -> Duration {
    let max_poll_ms = max_poll_interval(cfg).as_millis() as u64;
    Duration::from_millis((max_poll_ms / 4).clamp(100, 5_000))
}

/// librdkafka's `max.poll.interval.ms` as configured (300 s by default).
pub(crate) fn max_poll_interval(cfg: &KafkaConfig) -> Duration {
    let ms = cfg
        .properties
        .get("max.poll.interval.ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(300_000);
    Duration::from_millis(ms)
}

/// Where each partition must be rewound to: the lowest offset among
/// messages that surfaced after fetching was paused and were not taken.
fn rewind_targets(surfaced: impl IntoIterator<Item = Coord>) -> Vec<Coord> {
    let mut out: Vec<Coord> = Vec::new();
    for c in surfaced {
        match out.iter_mut().find(|r| r.part == c.part) {
            Some(r) => r.offset = r.offset.min(c.offset),
            None => out.push(c),
        }
    }
    out
}

/// Seek attempts before a rewind that keeps failing ends the run.
const REWIND_ATTEMPTS: u32 = 5;

/// How a rewind ended.
#[derive(Debug, PartialEq)]
enum Seek<E> {
    Done,
    /// The partition was revoked meanwhile: its next owner reads it.
    NotOurs,
    /// Every attempt failed: reading on would skip the messages it meant
    /// to go back to.
    Failed(E),
}

/// Runs `seek` up to `attempts` times, calling `wait` between attempts,
/// unless the partition stops being `ours`.
fn retry_seek<E: std::fmt::Display>(
    attempts: u32,
    mut seek: impl FnMut() -> Result<(), E>,
    ours: impl Fn() -> bool,
    mut wait: impl FnMut(u32, &E),
) -> Seek<E> {
    let mut attempt = 1;
    loop {
        let e = match seek() {
            Ok(()) => return Seek::Done,
            Err(e) => e,
        };
        if !ours() {
            return Seek::NotOurs;
        }
        if attempt >= attempts {
            return Seek::Failed(e);
        }
        wait(attempt, &e);
        attempt += 1;
    }
}

impl Source {
    /// Hands writer `w`'s staged chunk over, waiting for room: taking
    /// acknowledgements and committing meanwhile. Past `pause_after`
    /// fetching is paused and poll() keeps being called. `rest` are the
    /// messages of this read not staged yet. Returns false if shutdown was
    /// requested meanwhile; sets `polled` if poll() ran.
    pub(super) fn send_chunk(
        &mut self,
        w: usize,
        rest: &[Msg<'_>],
        cx: &mut Handover<'_>,
        polled: &mut bool,
    ) -> Result<bool, SourceError> {
        let mut blocked_since: Option<Instant> = None;
        loop {
            match cx.router.send(w, Duration::from_millis(50)) {
                Ok(()) => return Ok(true),
                // A writer that gave its batch up for a changed table asked
                // for the stop and left: a stop, not a failure.
                Err(RouteError::WriterGone(_)) if cx.shutdown.is_requested() => return Ok(false),
                Err(RouteError::WriterGone(w)) => return Err(SourceError::WriterGone(w)),
                Err(RouteError::Full) => {}
            }
            let since = *blocked_since.get_or_insert_with(Instant::now);
            let stalled = since.elapsed() >= self.settings.pause_after;
            if stalled && !self.paused {
                self.set_paused(true);
            }
            self.take_acks(cx.acks);
            if cx.last_commit.elapsed() >= self.settings.commit_interval {
                self.commit();
                cx.last_commit = Instant::now();
                self.report(&mut cx.stats, cx.router);
            }
            if cx.shutdown.is_requested() {
                return Ok(false);
            }
            if !stalled {
                continue;
            }
            // Everything read and not handed over yet: a revocation in
            // poll() does not wait for these, they will never be written here.
            let mut held: Vec<Coord> = cx
                .router
                .staged()
                .map(|e| e.coord)
                .chain(rest.iter().map(|m| m.coord))
                .collect();
            held.sort_unstable();
            *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held;
            let served = self.poll_while_paused();
            *polled = true;
            self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
            // Rows of partitions revoked meanwhile are for their new owner
            // to read again from the committed offset.
            let t = lock(&self.tracker);
            cx.router.retain_staged(|e| t.is_tracked(e.coord));
            drop(t);
            served?;
        }
    }

    /// Pauses or resumes fetching for every assigned partition.
    pub(super) fn set_paused(&mut self, pause: bool) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let result = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        match result {
            Ok(()) => {
                self.paused = pause;
                // Partitions assigned from now on start paused too.
                self.consumer
                    .context()
                    .fetch_paused
                    .store(pause, std::sync::atomic::Ordering::SeqCst);
                if pause {
                    Metrics::add(&self.metrics.fetch_pauses, 1);
                }
                // An outage that comes and goes can pause and resume often;
                // say so once a minute at most unless debugging.
                let loud = self
                    .last_pause_log
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
                let level = if loud {
                    log::Level::Info
                } else {
                    log::Level::Debug
                };
                if pause {
                    log::log!(level, "writers are behind; fetching paused");
                    if loud {
                        self.last_pause_log = Some(Instant::now());
                    }
                } else {
                    log::log!(level, "writers caught up; fetching resumed");
                }
            }
            Err(e) => log::warn!(
                "cannot {} fetching: {e}",
                if pause { "pause" } else { "resume" }
            ),
        }
    }

    /// Serves rebalances and the poll-interval deadline while fetching is
    /// paused. A message fetched before the pause took effect is not lost:
    /// its partition is rewound to it, so it is fetched again on resume. A
    /// rewind that cannot be made ends the run: reading on would skip those
    /// messages, and committing later offsets would lose them.
    fn poll_while_paused(&mut self) -> Result<(), SourceError> {
        let before = self.consumer.assignment().map(|a| a.count()).unwrap_or(0);
        let stray = self.serve_events().map(|m| m.coord());
        let mut late = self.fetch.batch(READ_BATCH);
        self.fetch.read(&mut late, Duration::ZERO);
        let surfaced: Vec<Coord> = late
            .iter()
            .filter(|m| m.error().is_none())
            .map(|m| {
                let topic = self.topics.topic(m.topic_name());
                Coord::new(Part::new(topic, m.partition()), m.offset())
            })
            .collect();
        drop(late);
        for c in rewind_targets(stray.into_iter().chain(surfaced)) {
            self.rewind(c)?;
        }
        // A rebalance hands out partitions unpaused; the rebalance callback
        // pauses them, and this catches any it could not.
        let after = self.consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if self.paused && after != before {
            self.set_paused(true);
        }
        Ok(())
    }

    /// Seeks `c`'s partition back to `c.offset`, retrying a few times.
    fn rewind(&mut self, c: Coord) -> Result<(), SourceError> {
        let outcome = retry_seek(
            REWIND_ATTEMPTS,
            || {
                self.consumer.seek(
                    c.part.topic.name(),
                    c.partition(),
                    Offset::Offset(c.offset),
                    Duration::from_secs(5),
                )
            },
            || self.assigned(c.part),
            |attempt, e| {
                log::warn!(
                    "cannot rewind partition {} to {} (attempt {attempt}/{REWIND_ATTEMPTS}): {e}; retrying",
                    c.part,
                    c.offset
                );
                std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
            },
        );
        match outcome {
            Seek::Done => {
                Metrics::add(&self.metrics.rewinds, 1);
                Ok(())
            }
            Seek::NotOurs => Ok(()),
            Seek::Failed(source) => Err(SourceError::Seek {
                partition: c.part,
                offset: c.offset,
                source,
            }),
        }
    }

    /// Whether `partition` is in the current assignment (assumed so when
    /// the assignment cannot be read).
    fn assigned(&self, part: Part) -> bool {
        self.consumer
            .assignment()
            .map(|a| {
                a.find_partition(part.topic.name(), part.partition)
                    .is_some()
            })
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::at;

    fn with_max_poll(v: Option<&str>) -> KafkaConfig {
        let mut cfg = KafkaConfig::default();
        if let Some(v) = v {
            cfg.properties
                .insert("max.poll.interval.ms".into(), v.into());
        }
        cfg
    }

    #[test]
    fn pausing_waits_a_quarter_of_the_poll_interval_at_most_five_seconds() {
        let ms = |v| pause_after(&with_max_poll(v)).as_millis();
        // librdkafka's default of 300 s.
        assert_eq!(ms(None), 5_000);
        assert_eq!(ms(Some("10000")), 2_500);
        assert_eq!(ms(Some("200")), 100);
        assert_eq!(ms(Some("not a number")), 5_000);
    }

    #[test]
    fn a_rewind_that_keeps_failing_ends_the_run_and_one_that_recovers_does_not() {
        let mut calls = 0;
        let failing = retry_seek(
            5,
            || {
                calls += 1;
                Err::<(), _>("broker away")
            },
            || true,
            |_, _| {},
        );
        assert_eq!(failing, Seek::Failed("broker away"));
        assert_eq!(calls, 5, "every attempt made");

        let mut left = 2;
        let recovers = retry_seek(
            5,
            || {
                if left == 0 {
                    return Ok(());
                }
                left -= 1;
                Err("not yet")
            },
            || true,
            |_, _| {},
        );
        assert_eq!(recovers, Seek::Done);

        let revoked = retry_seek(5, || Err::<(), _>("unknown partition"), || false, |_, _| {});
        assert_eq!(revoked, Seek::NotOurs);
    }

    #[test]
    fn each_partition_rewinds_to_its_lowest_surfaced_offset() {
        let got = rewind_targets([at(1, 7), at(0, 5), at(1, 3), at(0, 9)]);
        assert_eq!(got, vec![at(1, 3), at(0, 5)]);
        assert!(rewind_targets([]).is_empty());
    }
}
