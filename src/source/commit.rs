//! Offsets to Kafka: taking writers' acknowledgements, committing the
//! durable prefix, and the final drain.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::rebalance::lock;
use super::Source;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::types::{Ack, Part};

/// Final commit attempts at the end of a drain.
const FINAL_COMMIT_ATTEMPTS: u64 = 5;

impl Source {
    pub(super) fn take_acks(&self, acks: &Receiver<Ack>) {
        while let Ok(ack) = acks.try_recv() {
            lock(&self.tracker).complete_all(ack);
        }
    }

    /// Waits for the writers to flush and exit (the ack channel closes when
    /// the last one does), serving Kafka callbacks meanwhile, then commits
    /// synchronously. Bounded by `shutdown_timeout`: writers still stuck
    /// past it (a server that drops packets) are left behind, and what they
    /// hold stays uncommitted.
    pub(super) fn drain(&mut self, acks: &Receiver<Ack>, shutdown: &Shutdown) {
        // Nothing more is routed; pausing keeps poll() from fetching.
        self.consumer
            .context()
            .fetch_paused
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(assignment) = self.consumer.assignment() {
            let _ = self.consumer.pause(&assignment);
        }
        log::info!("draining: waiting for writers to flush");
        self.metrics.draining.set(1);
        let mut last_commit = Instant::now();
        let timeout = self.settings.shutdown_timeout;
        loop {
            let left = shutdown.drain_left(timeout).unwrap_or(timeout);
            if left.is_zero() {
                log::warn!(
                    "writers did not finish within sink.shutdown_timeout_ms ({} ms); \
                     what they still hold stays uncommitted and is read again next start",
                    timeout.as_millis()
                );
                break;
            }
            match acks.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(ack) => lock(&self.tracker).complete_all(ack),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Some(Ok(_)) = self.consumer.poll(Duration::ZERO) {
                // Paused: a message prefetched before the pause may still
                // surface. It was not registered, so it is simply read again
                // next time.
            }
            if last_commit.elapsed() >= self.settings.commit_interval {
                self.commit();
                last_commit = Instant::now();
            }
        }
        // Acknowledgements that made it in before the deadline.
        self.take_acks(acks);
        // Closing the consumer revokes everything; the drain already waited
        // for the writers as long as the shutdown allows.
        self.consumer
            .context()
            .drained
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for attempt in 1..=FINAL_COMMIT_ATTEMPTS {
            if self.commit() {
                log::info!("drained; final offsets committed");
                return;
            }
            if attempt < FINAL_COMMIT_ATTEMPTS {
                log::warn!(
                    "final offset commit failed (attempt {attempt}/{FINAL_COMMIT_ATTEMPTS}); retrying"
                );
                std::thread::sleep(Duration::from_millis(200 * attempt));
            }
        }
        log::warn!(
            "final offset commit failed; the next start reads from the last committed offsets"
        );
    }

    /// Commits every partition whose done prefix moved past what Kafka last
    /// confirmed; returns whether that succeeded (or there was nothing to do).
    ///
    /// Synchronous on purpose: librdkafka reports the outcome of an async
    /// commit only through a commit callback that rdkafka's event API does not
    /// register, so an async commit could fail unseen. One round trip per
    /// commit interval is cheap next to that, and a failure is simply
    /// retried at the next interval with offsets that only ever grow.
    pub(super) fn commit(&self) -> bool {
        let candidates = lock(&self.tracker).commit_candidates();
        if candidates.is_empty() {
            return true;
        }
        let mut tpl = TopicPartitionList::new();
        for c in &candidates {
            let _ = tpl.add_partition_offset(
                c.part.topic.name(),
                c.partition(),
                Offset::Offset(c.offset),
            );
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                Metrics::add(&self.metrics.commits, 1);
                let mut t = lock(&self.tracker);
                for c in &candidates {
                    t.confirm_commit(c.part, c.offset);
                }
                drop(t);
                // Kafka now holds offsets from after any pending start (see
                // rebalance): one whose clearing failed at assignment goes.
                let parts: Vec<Part> = candidates.iter().map(|c| c.part).collect();
                self.claimer.confirm_if_pending(&parts);
                true
            }
            Err(e) => {
                Metrics::add(&self.metrics.commit_failures, 1);
                log::warn!("offset commit failed: {e}; it will be retried");
                false
            }
        }
    }
}
