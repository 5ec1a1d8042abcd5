//! Rebalance callbacks: what happens when partitions come and go.
//!
//! librdkafka runs these inside `poll`, on the consumer thread. On
//! assignment each partition is attached to the batch queue before fetching
//! starts (see [`super::fetch`]). On revocation the writers get a bounded
//! time to finish what they hold of the lost partitions, what is durable is
//! committed, and the partitions are forgotten: acknowledgements that arrive
//! later are ignored, since another member may already own them.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::fetch::FetchQueue;
use crate::metrics::Metrics;
use crate::offsets::OffsetTracker;
use crate::types::{Ack, Coord};

/// The tracker, shared between the consumer loop and its callbacks. Both run
/// on the consumer thread, so the mutex is never contended; it exists
/// because the callbacks reach the tracker through the consumer's context.
pub(super) type Tracker = Arc<Mutex<OffsetTracker>>;

pub(super) fn lock(t: &Tracker) -> MutexGuard<'_, OffsetTracker> {
    // A panic while holding the lock cannot leave the tracker half-updated in
    // a way that commits too much (each method is a single step), so keep going.
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Messages the consumer read but could not hand to writers yet, sorted: a
/// revocation does not wait for them, since they will never be written here.
pub(super) type Held = Arc<Mutex<Vec<Coord>>>;

/// Callbacks from librdkafka, run inside `poll`.
pub(crate) struct SinkContext {
    pub(super) tracker: Tracker,
    pub(super) metrics: Arc<Metrics>,
    /// Writers' acknowledgements, drained here while a revocation waits for
    /// the revoked partitions' in-flight rows.
    pub(super) acks: Receiver<Ack>,
    pub(super) revoke_timeout: Duration,
    pub(super) held: Held,
    /// Where assigned partitions' messages go; weak, because the queue keeps
    /// the consumer (and so this context) alive, not the other way round.
    pub(super) fetch: OnceLock<Weak<FetchQueue<SinkContext>>>,
}

/// Whether every offset of `parts` still in flight is one that is only held
/// (read, never handed to a writer): then nothing of them is being written.
pub(super) fn nothing_in_writers(t: &OffsetTracker, held: &[Coord], parts: &[i32]) -> bool {
    parts.iter().all(|&p| {
        t.unfinished(p)
            .all(|o| held.binary_search(&Coord::new(p, o)).is_ok())
    })
}

/// What to commit for partitions being revoked: their done prefix, where it
/// is ahead of what Kafka last confirmed. Forgets the partitions.
pub(super) fn release(t: &mut OffsetTracker, parts: &[i32]) -> Vec<Coord> {
    let mut out = Vec::new();
    for &p in parts {
        let committed = t.committed(p);
        if let Some(off) = t.remove(p) {
            if committed.is_none_or(|c| off > c) {
                out.push(Coord::new(p, off));
            }
        }
    }
    out
}

impl SinkContext {
    /// Waits (bounded) until the partitions have nothing in flight.
    fn wait_idle(&self, parts: &[i32]) {
        let deadline = Instant::now() + self.revoke_timeout;
        loop {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if nothing_in_writers(&lock(&self.tracker), &held, parts) {
                return;
            }
            if Instant::now() >= deadline {
                log::warn!(
                    "revoked partitions {parts:?} still have rows in flight after {} ms; \
                     committing what is durable, the rest will be re-read by the next owner",
                    self.revoke_timeout.as_millis()
                );
                return;
            }
            match self.acks.recv_timeout(Duration::from_millis(50)) {
                Ok(ack) => lock(&self.tracker).complete_all(ack),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = partitions_of(tpl);
                self.wait_idle(&parts);
                let released = release(&mut lock(&self.tracker), &parts);
                log::info!("partitions revoked: {parts:?}");
                let Some(topic) = tpl.elements().first().map(|e| e.topic().to_owned()) else {
                    return;
                };
                if released.is_empty() {
                    return;
                }
                let mut commit = TopicPartitionList::new();
                for c in released {
                    let _ =
                        commit.add_partition_offset(&topic, c.partition, Offset::Offset(c.offset));
                }
                match consumer.commit(&commit, CommitMode::Sync) {
                    Ok(()) => Metrics::add(&self.metrics.commits, 1),
                    Err(e) => {
                        Metrics::add(&self.metrics.commit_failures, 1);
                        log::warn!("commit of revoked partitions failed: {e}; they will be re-read by their next owner");
                    }
                }
            }
            Rebalance::Assign(tpl) => {
                // Before librdkafka starts fetching them (see super::fetch).
                if let Some(queue) = self.fetch.get().and_then(Weak::upgrade) {
                    for e in tpl.elements() {
                        if !queue.attach(e.topic(), e.partition()) {
                            log::warn!(
                                "cannot route partition {} to the batch queue; reading it one message at a time",
                                e.partition()
                            );
                        }
                    }
                }
                log::info!("partitions assigned: {:?}", partitions_of(tpl));
            }
            Rebalance::Error(e) => log::warn!("rebalance error: {e}"),
        }
    }
}

pub(super) fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_waits_only_for_rows_that_writers_have() {
        let mut t = OffsetTracker::new();
        for o in 0..4 {
            t.register(Coord::new(0, o));
        }
        t.register(Coord::new(1, 0));
        // Offsets 2 and 3 were read but never handed over.
        let held = vec![Coord::new(0, 2), Coord::new(0, 3)];
        assert!(!nothing_in_writers(&t, &held, &[0]));
        t.complete(Coord::new(0, 0));
        assert!(!nothing_in_writers(&t, &held, &[0]));
        t.complete(Coord::new(0, 1));
        assert!(nothing_in_writers(&t, &held, &[0]));
        // Partition 1 is not among the revoked ones.
        assert!(!nothing_in_writers(&t, &held, &[0, 1]));
    }

    #[test]
    fn releasing_commits_only_progress_past_the_confirmed_offset() {
        let mut t = OffsetTracker::new();
        for p in 0..3 {
            t.register(Coord::new(p, 10));
            t.register(Coord::new(p, 11));
        }
        t.complete(Coord::new(0, 10));
        t.complete(Coord::new(1, 10));
        t.confirm_commit(1, 11);
        // 0: done up to 11, unconfirmed; 1: already confirmed; 2: nothing done.
        assert_eq!(release(&mut t, &[0, 1, 2]), vec![Coord::new(0, 11)]);
        assert!(t.is_idle(0) && t.is_idle(1) && t.is_idle(2));
        assert!(!t.complete(Coord::new(0, 11)), "forgotten after release");
    }
}
