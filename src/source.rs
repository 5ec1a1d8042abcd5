//! The consumer thread: reads Kafka, hands rows to writers, commits offsets.
//!
//! One thread owns the `BaseConsumer`. Between polls it takes writers'
//! acknowledgements, marks their offsets done in the tracker, and commits the
//! done prefix of each partition every `commit_interval`. Rebalance callbacks
//! run inside `poll` on this same thread, so the tracker's mutex is never
//! contended; it exists because those callbacks reach the tracker through the
//! consumer's context.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::decode::Decoder;
use crate::metrics::{Metrics, StatsLine};
use crate::offsets::OffsetTracker;
use crate::route::{RouteError, Router};
use crate::shutdown::Shutdown;
use crate::write::{Ack, Envelope};

/// Why the consumer stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot create the Kafka consumer: {0} (check kafka.brokers and kafka.properties)")]
    Create(rdkafka::error::KafkaError),
    #[error("cannot subscribe to topic {topic}: {source}")]
    Subscribe {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("writer {0} stopped unexpectedly; see the log above for its panic")]
    WriterGone(usize),
}

type Tracker = Arc<Mutex<OffsetTracker>>;

fn lock(t: &Tracker) -> MutexGuard<'_, OffsetTracker> {
    // A panic while holding the lock cannot leave the tracker half-updated in
    // a way that commits too much (each method is a single step), so keep going.
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Callbacks from librdkafka, run inside `poll`.
pub struct SinkContext {
    tracker: Tracker,
    metrics: Arc<Metrics>,
}

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // Commit what is durable for the partitions we lose, then
                // forget them: acknowledgements that arrive later for them are
                // ignored, since another member may already own them.
                let mut commit = TopicPartitionList::new();
                {
                    let mut t = lock(&self.tracker);
                    for e in tpl.elements() {
                        let p = e.partition();
                        let committed = t.committed(p);
                        if let Some(off) = t.remove(p) {
                            if committed.is_none_or(|c| off > c) {
                                let _ =
                                    commit.add_partition_offset(e.topic(), p, Offset::Offset(off));
                            }
                        }
                    }
                }
                log::info!("partitions revoked: {:?}", partitions_of(tpl));
                if commit.count() > 0 {
                    match consumer.commit(&commit, CommitMode::Sync) {
                        Ok(()) => Metrics::add(&self.metrics.commits, 1),
                        Err(e) => {
                            Metrics::add(&self.metrics.commit_failures, 1);
                            log::warn!("commit of revoked partitions failed: {e}; they will be re-read by their next owner");
                        }
                    }
                }
            }
            Rebalance::Assign(tpl) => {
                log::info!("partitions assigned: {:?}", partitions_of(tpl));
            }
            Rebalance::Error(e) => log::warn!("rebalance error: {e}"),
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// Settings the consumer loop needs beyond the Kafka client's.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub topic: String,
    pub commit_interval: Duration,
    pub stats_interval_ms: u64,
    /// Stop once every assigned partition is committed up to the high
    /// watermark it had when first seen.
    pub until_caught_up: bool,
}

pub struct Source {
    consumer: BaseConsumer<SinkContext>,
    tracker: Tracker,
    metrics: Arc<Metrics>,
    settings: SourceSettings,
    /// Per partition: the high watermark to reach in until-caught-up mode,
    /// and whether the group had already committed that far.
    targets: HashMap<i32, (i64, bool)>,
}

/// The librdkafka settings for the sink's consumer.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("client.id", "kafka-mysql-sink")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", &cfg.auto_offset_reset);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

impl Source {
    pub fn new(
        cfg: &KafkaConfig,
        metrics: Arc<Metrics>,
        stats_interval_ms: u64,
        until_caught_up: bool,
    ) -> Result<Source, SourceError> {
        let tracker: Tracker = Arc::new(Mutex::new(OffsetTracker::new()));
        let context = SinkContext {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
        };
        let consumer: BaseConsumer<SinkContext> = client_config(cfg)
            .create_with_context(context)
            .map_err(SourceError::Create)?;
        consumer
            .subscribe(&[&cfg.topic])
            .map_err(|source| SourceError::Subscribe {
                topic: cfg.topic.clone(),
                source,
            })?;
        Ok(Source {
            consumer,
            tracker,
            metrics,
            settings: SourceSettings {
                topic: cfg.topic.clone(),
                commit_interval: Duration::from_millis(cfg.commit_interval_ms),
                stats_interval_ms,
                until_caught_up,
            },
            targets: HashMap::new(),
        })
    }

    /// Consumes until shutdown is requested (or, in until-caught-up mode, the
    /// backlog is done), then drains the writers and commits. `router` is
    /// consumed: dropping it closes the writers' channels, which is how they
    /// learn to flush and stop.
    pub fn run(
        &mut self,
        router: Router,
        acks: Receiver<Ack>,
        shutdown: &Shutdown,
    ) -> Result<(), SourceError> {
        let result = self.consume(&router, &acks, shutdown);
        shutdown.start_drain();
        drop(router);
        self.drain(&acks);
        result
    }

    fn consume(
        &mut self,
        router: &Router,
        acks: &Receiver<Ack>,
        shutdown: &Shutdown,
    ) -> Result<(), SourceError> {
        let mut decoder = Decoder::new();
        let mut stats = StatsLine::new(self.settings.stats_interval_ms);
        let mut last_commit = Instant::now();
        while !shutdown.is_requested() {
            self.take_acks(acks);
            if last_commit.elapsed() >= self.settings.commit_interval {
                self.commit();
                last_commit = Instant::now();
                stats.tick(&self.metrics, lock(&self.tracker).in_flight());
                if self.settings.until_caught_up && self.caught_up() {
                    log::info!("caught up with the backlog; stopping");
                    shutdown.request();
                    break;
                }
            }
            let msg = match self.consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(e)) => {
                    log::warn!("Kafka consumer error: {e}");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            Metrics::add(&self.metrics.consumed, 1);
            let (partition, offset) = (msg.partition(), msg.offset());
            lock(&self.tracker).register(partition, offset);
            let row = match decoder.decode(msg.payload().unwrap_or_default()) {
                Ok(row) => row,
                Err(e) => {
                    log::warn!(
                        "skipping message at {}/{partition}@{offset}: {e}",
                        self.settings.topic
                    );
                    Metrics::add(&self.metrics.skipped, 1);
                    lock(&self.tracker).complete(partition, offset);
                    continue;
                }
            };
            drop(msg);
            let mut env = Envelope {
                partition,
                offset,
                row,
            };
            // Back-pressure: wait for room, but keep acknowledging and
            // committing while we wait so finished work is not held back.
            loop {
                match router.route(env, Duration::from_millis(50)) {
                    Ok(()) => break,
                    Err(RouteError::WriterGone(w)) => return Err(SourceError::WriterGone(w)),
                    Err(RouteError::Full(back)) => {
                        env = back;
                        self.take_acks(acks);
                        if last_commit.elapsed() >= self.settings.commit_interval {
                            self.commit();
                            last_commit = Instant::now();
                            stats.tick(&self.metrics, lock(&self.tracker).in_flight());
                        }
                        if shutdown.is_requested() {
                            // Registered but never written: it stays in
                            // flight, so nothing at or after it is committed.
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn take_acks(&self, acks: &Receiver<Ack>) {
        while let Ok(ack) = acks.try_recv() {
            let mut t = lock(&self.tracker);
            for (p, o) in ack {
                t.complete(p, o);
            }
        }
    }

    /// Waits for the writers to flush and exit (the ack channel closes when
    /// the last one does), serving Kafka callbacks meanwhile, then commits
    /// synchronously.
    fn drain(&mut self, acks: &Receiver<Ack>) {
        // Nothing more is routed; pausing keeps poll() from fetching.
        if let Ok(assignment) = self.consumer.assignment() {
            let _ = self.consumer.pause(&assignment);
        }
        log::info!("draining: waiting for writers to flush");
        let mut last_commit = Instant::now();
        loop {
            match acks.recv_timeout(Duration::from_millis(100)) {
                Ok(ack) => {
                    let mut t = lock(&self.tracker);
                    for (p, o) in ack {
                        t.complete(p, o);
                    }
                }
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
        for attempt in 1..=5 {
            if self.commit() {
                break;
            }
            log::warn!("final offset commit failed (attempt {attempt}/5); retrying");
            std::thread::sleep(Duration::from_millis(200 * attempt));
        }
        log::info!("drained; final offsets committed");
    }

    /// Commits every partition whose done prefix moved past what Kafka last
    /// confirmed; returns whether that succeeded (or there was nothing to do).
    ///
    /// Synchronous on purpose: librdkafka reports the outcome of an async
    /// commit only through a commit callback that rdkafka's event API does not
    /// register, so an async commit could fail unseen. One round trip per
    /// commit interval is cheap next to that, and a failure is simply
    /// retried at the next interval with offsets that only ever grow.
    fn commit(&self) -> bool {
        let candidates = lock(&self.tracker).commit_candidates();
        if candidates.is_empty() {
            return true;
        }
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in &candidates {
            let _ = tpl.add_partition_offset(&self.settings.topic, p, Offset::Offset(o));
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                Metrics::add(&self.metrics.commits, 1);
                let mut t = lock(&self.tracker);
                for (p, o) in candidates {
                    t.confirm_commit(p, o);
                }
                true
            }
            Err(e) => {
                Metrics::add(&self.metrics.commit_failures, 1);
                log::warn!("offset commit failed: {e}; it will be retried");
                false
            }
        }
    }

    /// Whether every assigned partition is committed up to its target.
    fn caught_up(&mut self) -> bool {
        let assignment = match self.consumer.assignment() {
            Ok(a) if a.count() > 0 => a,
            _ => return false,
        };
        let parts = partitions_of(&assignment);
        let unknown: Vec<i32> = parts
            .iter()
            .copied()
            .filter(|p| !self.targets.contains_key(p))
            .collect();
        if !unknown.is_empty() {
            let committed = match self.consumer.committed(Duration::from_secs(10)) {
                Ok(c) => c,
                Err(_) => return false,
            };
            for p in unknown {
                let Ok((low, high)) = self.consumer.fetch_watermarks(
                    &self.settings.topic,
                    p,
                    Duration::from_secs(10),
                ) else {
                    return false;
                };
                let already = low == high
                    || committed
                        .find_partition(&self.settings.topic, p)
                        .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= high));
                self.targets.insert(p, (high, already));
            }
        }
        let t = lock(&self.tracker);
        parts.iter().all(|p| {
            let (high, already) = self.targets[p];
            (already && t.is_idle(*p)) || t.committed(*p).is_some_and(|c| c >= high)
        })
    }
}
