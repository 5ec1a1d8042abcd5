//! Rebalance callbacks: what happens when partitions come and go.
//!
//! librdkafka runs these inside `poll`, on the consumer thread. On
//! assignment each partition is claimed in MySQL (see [`super::claim`]) and
//! attached to the batch queue before fetching starts (see
//! [`super::fetch`]); in exactly-once mode it starts at the next offset
//! MySQL holds. On revocation the writers get a bounded time to finish what
//! they hold of the lost partitions, what is durable is committed, and the
//! partitions are forgotten: acknowledgements that arrive later are
//! ignored, since another member may already own them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::cell::RefCell;

use super::claim::Claimer;
use super::fetch::FetchQueue;
use super::log_id::{log_id, LogId};
use super::out_of_range::{decide, held_offset, log_ranges, LogRange, Reset, Side, Start};
use super::parts::{nothing_in_writers, partitions_of, release, topics_of};
use super::SourceError;
use crate::config::AutoOffsetReset;
use crate::fence::{Claimed, Settled};
use crate::metrics::Metrics;
use crate::offsets::OffsetTracker;
use std::collections::HashMap;

use crate::types::{Ack, Coord, Part, Topic};

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
    pub(super) claimer: Arc<Claimer>,
    /// Whether fetching is paused: partitions assigned meanwhile are paused
    /// as they are assigned, rather than fetched and rewound over and over.
    pub(super) fetch_paused: AtomicBool,
    /// Set once the drain is over: the revocation that closing the consumer
    /// brings has nothing left to wait for (the drain already waited for
    /// the writers as long as the shutdown allows).
    pub(super) drained: AtomicBool,
}

impl SinkContext {
    /// Waits (bounded) until the partitions have nothing in flight.
    fn wait_idle(&self, parts: &[Part]) {
        if self.drained.load(Ordering::SeqCst) {
            return;
        }
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

impl SinkContext {
    /// Claims the partitions, gives each its start (see
    /// [`super::out_of_range`]) and attaches them to the batch queue.
    /// Returns `None` if they must not be read (the claim failed, or an
    /// offset is out of range under `on_out_of_range = "fail"`; the reason
    /// is the claimer's failure), else the offsets to commit to Kafka once
    /// assigned.
    fn prepare_assignment(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Option<Commits> {
        let parts = partitions_of(tpl);
        // What Kafka says, before the claim: the group's offsets and each
        // log's range. Either may be unknown (a lookup that failed): a
        // partition then starts at what the sink holds, and librdkafka
        // reports an offset out of range as an error.
        let committed = match consumer.committed_offsets(tpl.clone(), COMMITTED_LOOKUP) {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!("cannot read the group's committed offsets ({e}); starting at MySQL's");
                None
            }
        };
        // Per partition: `None` where unknown (the lookup failed, or its
        // entry carries an error), else the committed offset if any.
        let kafka_lookup = |p: Part| -> Option<Option<i64>> {
            let e = committed
                .as_ref()?
                .find_partition(p.topic.name(), p.partition)?;
            e.error().ok()?;
            Some(match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
        };
        let kafka_next = |p: Part| kafka_lookup(p).flatten();
        // Per topic of the assignment: its partitions' log ranges, and the
        // ids of its log.
        let mut ranges: HashMap<Part, LogRange> = HashMap::new();
        let mut logs: HashMap<Topic, LogId> = HashMap::new();
        for topic in topics_of(&parts) {
            let numbers: Vec<i32> = parts
                .iter()
                .filter(|p| p.topic == topic)
                .map(|p| p.partition)
                .collect();
            for (n, range) in log_ranges(consumer, topic.name(), &numbers) {
                ranges.insert(Part::new(topic, n), range);
            }
            if self.claimer.marks() {
                logs.insert(topic, log_id(consumer, topic.name(), COMMITTED_LOOKUP));
            }
        }
        let no_log = LogId::default();
        let exactly_once = self.claimer.exactly_once();
        let starting = self.claimer.starting();
        // (partition, start, whether Kafka must confirm it before reading)
        type Decided = (Part, Option<Start>, bool);
        let decided: RefCell<Vec<Decided>> = RefCell::new(Vec::new());
        // Decided under the claim's lock, from the rows it read: a reset is
        // written in the claim's transaction, and kept pending there until
        // Kafka has it too, so that a Kafka offset from before it (a commit
        // that failed, a crash in between) is never taken for progress.
        let settle = |claimed: &[Claimed]| {
            let mut d = decided.borrow_mut();
            // An earlier attempt of this claim whose commit reached MySQL
            // although its answer did not: its resets are the rows' pending
            // starts now, and must still be reported as resets.
            let earlier: Vec<(Part, Reset)> = d
                .drain(..)
                .filter_map(|(p, start, _)| match start {
                    Some(Start::Reset(r)) => Some((p, r)),
                    _ => None,
                })
                .collect();
            let mut settled = Settled::default();
            for c in claimed {
                let p = c.standing.part;
                let (topic, n) = (p.topic.name(), p.partition);
                let log = logs.get(&p.topic).unwrap_or(&no_log);
                let kafka = kafka_next(p);
                let held = held_offset(exactly_once, kafka, c.standing.next_offset, c.reset_to);
                let stored = c.log_id.as_deref().map(LogId::decode).unwrap_or_default();
                let replaced = stored.differs(log);
                if stored.topic.is_some() && log.topic.is_none() {
                    log::warn!(
                        "topic {topic} partition {n}: cannot learn the topic's id now, so a \
                         recreated topic is told from the old one only by the cluster id and \
                         the offsets' range this time"
                    );
                }
                if !exactly_once
                    && held.is_none()
                    && kafka_lookup(p) == Some(None)
                    && c.log_id.is_some()
                    && !replaced
                    && starting.fresh == AutoOffsetReset::Latest
                {
                    // Read before on this log, yet no offset in Kafka: the
                    // group's offsets expired (offsets.retention.minutes)
                    // or were deleted. Starting at the end passes over
                    // whatever came meanwhile.
                    log::warn!(
                        "topic {topic} partition {n}: the group has no committed offset, though \
                         it read this partition before (expired or deleted offsets?); starting \
                         at the end as auto_offset_reset = \"latest\" says, past anything \
                         produced meanwhile"
                    );
                }
                let start = if kafka_lookup(p).is_none() && held.is_none() {
                    // Nothing known: librdkafka looks up the group's offset.
                    None
                } else {
                    Some(decide(
                        topic,
                        n,
                        held,
                        ranges.get(&p).copied(),
                        replaced,
                        starting.on_out_of_range,
                        starting.fresh,
                    ))
                };
                let start = match start {
                    Some(Start::At(o)) if c.reset_to == Some(o) => earlier
                        .iter()
                        .find(|(q, r)| *q == p && r.to == o)
                        .map_or(Some(Start::At(o)), |(_, r)| Some(Start::Reset(*r))),
                    other => other,
                };
                let pending = match &start {
                    Some(Start::Reset(r)) => Some(r.to),
                    Some(Start::At(o)) if c.reset_to.is_some() => Some(*o),
                    Some(Start::At(_)) | Some(Start::Fresh(_)) => None,
                    Some(Start::Refuse(_)) | None => c.reset_to,
                };
                // Both modes: the next offset is what a later exactly-once
                // run starts from.
                if let Some(Start::Reset(r)) = &start {
                    settled.next.push(Coord::new(p, r.to));
                }
                // The offsets belong to this log from now on, unless the
                // partition is not started (refused, or nothing known).
                let started = !matches!(start, Some(Start::Refuse(_)) | None);
                // What was checked, and nothing else: an id unknown now is
                // not carried over from the row (it may be the old log's).
                let id = if started {
                    log.encode()
                } else {
                    c.log_id.clone()
                };
                settled.marks.push((p, pending, id));
                // A next offset left by an exactly-once run says nothing of
                // where an at-least-once run goes on; kept, a later
                // exactly-once run would trust it under the new ids.
                if started && !exactly_once && c.standing.next_offset.is_some() {
                    settled.clear_next.push(p);
                }
                let confirm = pending.is_some() && started;
                d.push((p, start, confirm));
            }
            settled
        };
        self.claimer.claim(&parts, &self.metrics, &settle)?;
        let mut commits = Commits::default();
        for (part, start, confirm) in decided.take() {
            let kafka = kafka_next(part);
            let (topic, partition) = (part.topic.name(), part.partition);
            let offset = match start {
                None => continue,
                Some(Start::Refuse(e)) => {
                    log::error!("{e}");
                    self.claimer.fail(SourceError::OutOfRange(e.to_string()));
                    return None;
                }
                Some(Start::Fresh(AutoOffsetReset::Earliest)) => Offset::Beginning,
                Some(Start::Fresh(AutoOffsetReset::Latest)) => Offset::End,
                Some(Start::At(o)) => {
                    // Kafka's offset (what lag tools read) catches up with
                    // where the partition starts; a pending start must be
                    // confirmed there, even backwards.
                    if confirm {
                        commits.add(part, o);
                        commits.resets.push(part);
                    } else if kafka.is_none_or(|k| k < o) {
                        commits.add(part, o);
                    }
                    self.claimer.started_at(part, o);
                    Offset::Offset(o)
                }
                Some(Start::Reset(r)) => {
                    log::warn!(
                        "topic {topic} partition {partition}: offset {} is {} ({}..{}); \
                         kafka.on_out_of_range = \"{}\": going on at {}, {} \
                         message(s) never to be written",
                        r.from,
                        match r.side {
                            Side::BelowStart => "below the start of the log Kafka has",
                            Side::BeyondEnd => "beyond the end of the log Kafka has",
                            Side::Replaced =>
                                "of another log than the one Kafka has now \
                                               (its cluster or topic id changed)",
                        },
                        ranges.get(&part).map_or(-1, |g| g.low),
                        ranges.get(&part).map_or(-1, |g| g.high),
                        starting.on_out_of_range.as_str(),
                        r.to,
                        r.lost,
                    );
                    self.metrics.reset(r.side.label(), r.lost);
                    commits.add(part, r.to);
                    commits.resets.push(part);
                    self.claimer.started_at(part, r.to);
                    Offset::Offset(r.to)
                }
            };
            if let Err(e) = tpl.set_partition_offset(topic, partition, offset) {
                self.claimer.fail(SourceError::Claim(format!(
                    "cannot start partition {part} at {offset:?}: {e}"
                )));
                return None;
            }
        }
        // Before librdkafka starts fetching them (see super::fetch).
        if let Some(queue) = self.fetch.get().and_then(Weak::upgrade) {
            for e in tpl.elements() {
                if !queue.attach(e.topic(), e.partition()) {
                    log::warn!(
                        "cannot route partition {}/{} to the batch queue; reading it one message at a time",
                        e.topic(),
                        e.partition()
                    );
                }
            }
        }
        Some(commits)
    }

    /// Lets the writers finish what they hold of the lost partitions, then
    /// commits what is durable and forgets them.
    fn release_revoked(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let parts = partitions_of(tpl);
        self.wait_idle(&parts);
        let released = release(&mut lock(&self.tracker), &parts);
        self.claimer.forget(&parts);
        self.metrics.assigned_partitions.dec_by(parts.len() as i64);
        self.metrics.forget_partitions(&parts);
        log::info!("partitions revoked: {parts:?}");
        if released.is_empty() {
            return;
        }
        let mut commit = TopicPartitionList::new();
        for c in released {
            let _ = commit.add_partition_offset(
                c.part.topic.name(),
                c.partition(),
                Offset::Offset(c.offset),
            );
        }
        match consumer.commit(&commit, CommitMode::Sync) {
            Ok(()) => Metrics::add(&self.metrics.commits, 1),
            Err(e) => {
                Metrics::add(&self.metrics.commit_failures, 1);
                log::warn!("commit of revoked partitions failed: {e}; they will be re-read by their next owner");
            }
        }
    }
}

impl ConsumerContext for SinkContext {
    // The whole rebalance, not only its pre- and post-hooks: an assignment
    // must be claimed in MySQL, and in exactly-once mode be given MySQL's
    // offsets, before librdkafka is told about it.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let Some(commits) = self.prepare_assignment(consumer, tpl) else {
                    // The consumer loop stops on the claim's failure; nothing
                    // of these partitions is read meanwhile.
                    return;
                };
                log::info!("partitions assigned: {:?}", partitions_of(tpl));
                Metrics::add(&self.metrics.assignments, 1);
                self.metrics.assigned_partitions.inc_by(tpl.count() as i64);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if assigned.is_ok() && self.fetch_paused.load(Ordering::SeqCst) {
                    if let Err(e) = consumer.pause(tpl) {
                        log::warn!("cannot pause newly assigned partitions: {e}");
                    }
                }
                self.claimer.pending(&commits.resets);
                if assigned.is_ok() && commits.list.count() > 0 {
                    match consumer.commit(&commits.list, CommitMode::Sync) {
                        Ok(()) => {
                            Metrics::add(&self.metrics.commits, 1);
                            if !commits.resets.is_empty() {
                                self.claimer.confirmed(&commits.resets);
                            }
                        }
                        // A reset must be in Kafka before anything of it is
                        // read: a start after this one would otherwise see
                        // the old offset again, and in a log grown past it
                        // since, take it for a valid one.
                        Err(source) if !commits.resets.is_empty() => {
                            self.claimer.fail(SourceError::ResetNotRecorded {
                                partitions: commits.resets,
                                source,
                            })
                        }
                        Err(e) => log::warn!(
                            "cannot bring the group's offsets in Kafka up to MySQL's ({e}); \
                             lag tools show these partitions behind until the next commit"
                        ),
                    }
                }
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.release_revoked(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                log::warn!("rebalance error: {:?}", other);
                return;
            }
        };
        if let Err(e) = result {
            log::error!("librdkafka refused the rebalance: {e}");
        }
    }
}

/// Bound on reading the group's committed offsets during an assignment.
const COMMITTED_LOOKUP: Duration = Duration::from_secs(10);

/// Offsets to commit once an assignment is made: where Kafka's offset is
/// behind the partition's start, and where the start is a reset.
#[derive(Default)]
pub(super) struct Commits {
    list: TopicPartitionList,
    /// The partitions whose start is a reset: their commit must succeed.
    resets: Vec<Part>,
}

impl Commits {
    fn add(&mut self, part: Part, offset: i64) {
        let _ = self.list.add_partition_offset(
            part.topic.name(),
            part.partition,
            Offset::Offset(offset),
        );
    }
}
