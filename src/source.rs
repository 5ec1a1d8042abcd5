//! The consumer thread: reads Kafka, hands rows to writers, commits offsets.
//!
//! One thread owns the `BaseConsumer`. It reads messages in batches (see
//! [`crate::fetch`]), stages each batch's rows for their writers and sends
//! them in chunks ([`crate::route`]). Between reads it takes writers'
//! acknowledgements, marks their offsets done in the tracker, and commits the
//! done prefix of each partition every `commit_interval`. Rebalance callbacks
//! run inside `poll` on this same thread, so the tracker's mutex is never
//! contended; it exists because those callbacks reach the tracker through the
//! consumer's context.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::{Config, KafkaConfig};
use crate::decode::Decoder;
use crate::fetch::{Batch, FetchQueue, Fetched};
use crate::metrics::{Metrics, PartitionLabel};
use crate::offsets::OffsetTracker;
use crate::progress::Reporter;
use crate::route::{RouteError, Router};
use crate::shutdown::Shutdown;
use crate::write::{Ack, Envelope, Op, Raw};

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
    #[error("cannot create librdkafka's message queue (out of memory?)")]
    Queue,
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
    /// Writers' acknowledgements, drained here while a revocation waits for
    /// the revoked partitions' in-flight rows.
    acks: Receiver<Ack>,
    revoke_timeout: Duration,
    /// Messages the consumer read but could not hand to writers yet, sorted:
    /// a revocation does not wait for them, since they will never be
    /// written here.
    held: Held,
    /// Where assigned partitions' messages go (see [`crate::fetch`]); weak,
    /// because the queue must be destroyed before the consumer that owns
    /// this context.
    fetch: OnceLock<Weak<FetchQueue>>,
}

type Held = Arc<Mutex<Vec<(i32, i64)>>>;

impl SinkContext {
    /// Waits (bounded) until the partitions have nothing in flight.
    fn wait_idle(&self, parts: &[i32]) {
        let deadline = Instant::now() + self.revoke_timeout;
        loop {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
            {
                let t = lock(&self.tracker);
                let idle = parts
                    .iter()
                    .all(|&p| t.unfinished(p).all(|o| held.binary_search(&(p, o)).is_ok()));
                if idle {
                    return;
                }
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
                // Let the writers finish what they hold of the partitions we
                // lose, commit what is durable, then forget them:
                // acknowledgements that arrive later are ignored, since
                // another member may already own those partitions.
                self.wait_idle(&partitions_of(tpl));
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
                self.metrics.assigned_partitions.dec_by(tpl.count() as i64);
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
                // Before librdkafka starts fetching them (see crate::fetch).
                if let Some(queue) = self.fetch.get().and_then(Weak::upgrade) {
                    for e in tpl.elements() {
                        if !queue.attach(consumer, e.topic(), e.partition()) {
                            log::warn!(
                                "cannot route partition {} to the batch queue; reading it one message at a time",
                                e.partition()
                            );
                        }
                    }
                }
                log::info!("partitions assigned: {:?}", partitions_of(tpl));
                Metrics::add(&self.metrics.assignments, 1);
                self.metrics.assigned_partitions.inc_by(tpl.count() as i64);
            }
            Rebalance::Error(e) => log::warn!("rebalance error: {e}"),
        }
    }
}

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
    /// Keep each message's key and payload for the dead-letter table.
    pub keep_raw: bool,
    /// Undecodable messages go to the writers (for the dead-letter table)
    /// instead of being skipped here.
    pub reject_to_writers: bool,
    pub delete_on_tombstone: bool,
    pub max_payload_bytes: usize,
    /// How long the consumer waits on a full writer channel before it
    /// pauses fetching (see [`pause_after`]).
    pub pause_after: Duration,
}

/// How long to wait on full writer channels before pausing fetching.
///
/// A full channel is the normal state of a backfill (MySQL is the slower
/// side), so it must not pause at once: librdkafka purges a partition's
/// prefetched messages when it is paused and fetches them again on resume,
/// and pausing on every full channel measured at half the throughput.
/// Blocking is only a problem when it outlasts `max.poll.interval.ms`, after
/// which the group evicts the consumer; a quarter of that, capped at five
/// seconds, leaves ample margin while still riding out ordinary slow batches.
pub fn pause_after(cfg: &KafkaConfig) -> Duration {
    let max_poll_ms = cfg
        .properties
        .get("max.poll.interval.ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(300_000);
    Duration::from_millis((max_poll_ms / 4).clamp(100, 5_000))
}

/// Messages taken from librdkafka per read; a batch is registered in the
/// tracker under one lock and handed over before the next read.
const READ_BATCH: usize = 256;

/// The parts of a Kafka message the sink uses.
struct Msg<'a> {
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
}

/// A message copied out of rdkafka's `poll`, whose borrow of the consumer
/// would otherwise last through the hand-over.
struct OwnedMsg {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

impl OwnedMsg {
    fn as_msg(&self) -> Msg<'_> {
        Msg {
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref(),
            payload: self.payload.as_deref(),
        }
    }
}

/// What the hand-over of a batch needs besides the source itself.
struct Handover<'r> {
    decoder: Decoder,
    stats: Reporter,
    last_commit: Instant,
    router: &'r mut Router,
    acks: &'r Receiver<Ack>,
    shutdown: &'r Shutdown,
}

pub struct Source {
    /// Declared before `consumer`, so it is destroyed first, as librdkafka
    /// requires of application queues.
    fetch: Arc<FetchQueue>,
    consumer: BaseConsumer<SinkContext>,
    tracker: Tracker,
    acks: Receiver<Ack>,
    held: Held,
    /// Whether fetching is paused because the writers are behind.
    paused: bool,
    /// The progress bar, when stderr is a terminal.
    bar: Option<indicatif::ProgressBar>,
    /// Per partition, the committed offset when it was assigned (-1 for
    /// none): where its lag is counted from until a message of it has been
    /// read, and whether until-caught-up had anything to do there.
    start_offsets: HashMap<i32, i64>,
    first_message_at: Option<Instant>,
    last_pause_log: Option<Instant>,
    metrics: Arc<Metrics>,
    settings: SourceSettings,
    /// Per partition: the high watermark to reach in until-caught-up mode,
    /// and whether the group had already committed that far.
    targets: HashMap<i32, (i64, bool)>,
    /// Partitions seen delivering through `poll` (see [`crate::fetch`]).
    unbatched: std::collections::HashSet<i32>,
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
        config: &Config,
        metrics: Arc<Metrics>,
        acks: Receiver<Ack>,
        until_caught_up: bool,
        bar: Option<indicatif::ProgressBar>,
    ) -> Result<Source, SourceError> {
        let cfg = &config.kafka;
        let dlq_keeps = config.dlq_table().is_some() || config.dlq_topic().is_some();
        let tracker: Tracker = Arc::new(Mutex::new(OffsetTracker::new()));
        let held: Held = Arc::new(Mutex::new(Vec::new()));
        let context = SinkContext {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            acks: acks.clone(),
            revoke_timeout: Duration::from_millis(cfg.revoke_timeout_ms),
            held: held.clone(),
            fetch: OnceLock::new(),
        };
        let consumer: BaseConsumer<SinkContext> = client_config(cfg)
            .create_with_context(context)
            .map_err(SourceError::Create)?;
        let fetch = Arc::new(FetchQueue::new(&consumer).ok_or(SourceError::Queue)?);
        let _ = consumer.context().fetch.set(Arc::downgrade(&fetch));
        consumer
            .subscribe(&[&cfg.topic])
            .map_err(|source| SourceError::Subscribe {
                topic: cfg.topic.clone(),
                source,
            })?;
        Ok(Source {
            fetch,
            consumer,
            tracker,
            acks,
            held,
            paused: false,
            bar,
            start_offsets: HashMap::new(),
            first_message_at: None,
            last_pause_log: None,
            metrics,
            settings: SourceSettings {
                topic: cfg.topic.clone(),
                commit_interval: Duration::from_millis(cfg.commit_interval_ms),
                stats_interval_ms: config.sink.stats_interval_ms,
                until_caught_up,
                keep_raw: dlq_keeps,
                reject_to_writers: dlq_keeps,
                delete_on_tombstone: config.sink.delete_on_tombstone,
                max_payload_bytes: config.sink.max_payload_bytes,
                pause_after: pause_after(cfg),
            },
            targets: HashMap::new(),
            unbatched: Default::default(),
        })
    }

    /// Consumes until shutdown is requested (or, in until-caught-up mode, the
    /// backlog is done), then drains the writers and commits. `router` is
    /// consumed: dropping it closes the writers' channels, which is how they
    /// learn to flush and stop.
    /// Returns how long rows were moving: from the first message read to
    /// the end of the drain (zero when nothing was read), which is the time
    /// that throughput should be measured over.
    pub fn run(&mut self, router: Router, shutdown: &Shutdown) -> Result<Duration, SourceError> {
        let acks = self.acks.clone();
        let mut router = router;
        let result = self.consume(&mut router, &acks, shutdown);
        shutdown.start_drain();
        drop(router);
        self.drain(&acks);
        let active = self
            .first_message_at
            .map(|t| t.elapsed())
            .unwrap_or_default();
        result.map(|()| active)
    }

    fn consume(
        &mut self,
        router: &mut Router,
        acks: &Receiver<Ack>,
        shutdown: &Shutdown,
    ) -> Result<(), SourceError> {
        // Fetching resumes once the channels are half empty again, so a
        // pause is not undone by the very next row.
        let resume_below = router.capacity() / 2;
        let mut cx = Handover {
            decoder: Decoder::new(),
            stats: Reporter::new(self.settings.stats_interval_ms, self.bar.take()),
            last_commit: Instant::now(),
            router,
            acks,
            shutdown,
        };
        let mut batch = Batch::with_capacity(READ_BATCH);
        let mut finishing = false;
        while !shutdown.is_requested() {
            self.take_acks(acks);
            if self.paused && cx.router.queued() <= resume_below {
                self.set_paused(false);
            }
            if finishing || cx.last_commit.elapsed() >= self.settings.commit_interval {
                self.commit();
                cx.last_commit = Instant::now();
                self.report(&mut cx.stats, cx.router);
                if self.settings.until_caught_up && self.caught_up() {
                    log::info!("caught up with the backlog; stopping");
                    shutdown.request();
                    break;
                }
            }
            finishing = false;
            // Rebalances and errors; and, should a partition have failed to
            // attach to the batch queue, its messages.
            let stray = self.serve_events();
            let msgs: Vec<Msg<'_>> = match &stray {
                Some(m) => vec![m.as_msg()],
                None => {
                    self.fetch.read(&mut batch, Duration::from_millis(100));
                    batch.iter().filter_map(|m| self.message(m)).collect()
                }
            };
            if msgs.is_empty() {
                // A backfill that has read and written everything commits
                // and checks for the end now, rather than at the next commit
                // interval.
                finishing = self.settings.until_caught_up
                    && lock(&self.tracker).in_flight() == 0
                    && cx.last_commit.elapsed() >= Duration::from_millis(20);
                continue;
            }
            if !self.hand_over(&msgs, &mut cx)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A fetched message, or `None` (after a warning) for the fetch errors
    /// librdkafka reports in place of one.
    fn message<'b>(&self, m: Fetched<'b>) -> Option<Msg<'b>> {
        if let Some(e) = m.error() {
            log::warn!(
                "Kafka consumer error on {}/{}: {e}",
                self.settings.topic,
                m.partition()
            );
            return None;
        }
        Some(Msg {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload: m.payload(),
        })
    }

    /// Serves one event from the consumer queue (rebalances run their
    /// callbacks in here). Returns a copy of the message if the event was
    /// one: a partition that is not attached to the batch queue.
    fn serve_events(&mut self) -> Option<OwnedMsg> {
        match self.consumer.poll(Duration::ZERO)? {
            Ok(m) => {
                let partition = m.partition();
                // Correct, only slower; said once per partition, since the
                // tests look for it to catch a partition left unattached.
                if self.unbatched.insert(partition) {
                    Metrics::add(&self.metrics.unbatched_partitions, 1);
                    log::warn!(
                        "partition {partition} is delivered outside the batch queue; \
                         reading it one message at a time"
                    );
                }
                Some(OwnedMsg {
                    partition,
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                })
            }
            Err(e) => {
                log::warn!("Kafka consumer error: {e}");
                None
            }
        }
    }

    /// Registers the messages in the tracker, decodes them and hands them to
    /// their writers. Returns false if shutdown was requested while waiting
    /// for room: what was not handed over stays registered and in flight,
    /// so nothing at or after it is committed.
    fn hand_over(&mut self, msgs: &[Msg<'_>], cx: &mut Handover<'_>) -> Result<bool, SourceError> {
        Metrics::add(&self.metrics.consumed, msgs.len() as u64);
        if self.first_message_at.is_none() {
            self.first_message_at = Some(Instant::now());
        }
        {
            let mut t = lock(&self.tracker);
            for m in msgs {
                t.register(m.partition, m.offset);
            }
        }
        // Whether `poll` ran since the messages were registered: a
        // revocation in there forgets the revoked partitions' offsets, and
        // their messages must not be written here any more.
        let mut polled = false;
        // The broker thread wrote the payloads on another core; their loads
        // are started a few messages ahead (see decode::prefetch).
        const AHEAD: usize = 4;
        for m in msgs.iter().take(AHEAD) {
            crate::decode::prefetch(m.payload.unwrap_or_default());
        }
        for (i, m) in msgs.iter().enumerate() {
            if let Some(ahead) = msgs.get(i + AHEAD) {
                crate::decode::prefetch(ahead.payload.unwrap_or_default());
            }
            let (partition, offset) = (m.partition, m.offset);
            if polled && !lock(&self.tracker).is_tracked(partition, offset) {
                continue;
            }
            let tombstone = m.payload.is_none();
            let op = self.to_op(&mut cx.decoder, m.key, m.payload);
            let skip = match &op {
                _ if tombstone && !self.settings.delete_on_tombstone => {
                    log::debug!(
                        "skipping tombstone at {}/{partition}@{offset}",
                        self.settings.topic
                    );
                    true
                }
                Op::Reject(reason) if !self.settings.reject_to_writers => {
                    log::warn!(
                        "skipping message at {}/{partition}@{offset}: {reason}",
                        self.settings.topic
                    );
                    true
                }
                _ => false,
            };
            if skip {
                Metrics::add(&self.metrics.skipped, 1);
                lock(&self.tracker).complete(partition, offset);
                continue;
            }
            // An upsert's row keeps its message itself (see decode::Row).
            let raw = if self.settings.keep_raw && !matches!(op, Op::Upsert(_)) {
                let limit = self.settings.max_payload_bytes;
                // An oversized payload is kept only up to the limit.
                Raw::new(m.key, m.payload.map(|p| &p[..p.len().min(limit)]))
            } else {
                Raw::default()
            };
            let env = Envelope {
                partition,
                offset,
                op,
                raw,
            };
            if let Some(w) = cx.router.stage(env) {
                if !self.send_chunk(w, &msgs[i + 1..], cx, &mut polled)? {
                    return Ok(false);
                }
            }
        }
        // The rest of every writer's chunk, so that no row waits for the
        // next read.
        while let Some(w) = cx.router.next_staged() {
            if !self.send_chunk(w, &[], cx, &mut polled)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Hands writer `w`'s staged chunk over, waiting for room: taking
    /// acknowledgements and committing meanwhile. Past `pause_after`
    /// fetching is paused and poll() keeps being called, so the consumer
    /// stays in its group however long MySQL is away. `rest` are the
    /// messages of this read not staged yet. Returns false if shutdown was
    /// requested meanwhile; sets `polled` if poll() ran.
    fn send_chunk(
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
            let mut held: Vec<(i32, i64)> = cx
                .router
                .staged()
                .map(|e| (e.partition, e.offset))
                .chain(rest.iter().map(|m| (m.partition, m.offset)))
                .collect();
            held.sort_unstable();
            *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held;
            self.poll_while_paused();
            *polled = true;
            self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
            // Rows of partitions revoked meanwhile are for their new owner
            // to read again from the committed offset.
            let t = lock(&self.tracker);
            cx.router
                .retain_staged(|e| t.is_tracked(e.partition, e.offset));
        }
    }

    /// Updates the gauges and the progress report.
    fn report(&mut self, stats: &mut Reporter, router: &Router) {
        self.metrics.channel_depth.set(router.queued() as i64);
        let in_flight = lock(&self.tracker).in_flight();
        let lag = self.lag();
        stats.tick(&self.metrics, in_flight, || lag);
    }

    /// Consumer lag per assigned partition: high watermark (as last seen by
    /// the fetcher, no round trip) less the next offset to read. Also sets
    /// the per-partition gauges.
    fn lag(&mut self) -> Vec<(i32, i64)> {
        let Ok(assignment) = self.consumer.assignment() else {
            return Vec::new();
        };
        let position = self.consumer.position().ok();
        let parts = partitions_of(&assignment);
        self.learn_start_offsets(&parts);
        let t = lock(&self.tracker);
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            let Some((low, high)) = cached_watermarks(&self.consumer, &self.settings.topic, p)
            else {
                continue;
            };
            if high < 0 {
                continue;
            }
            let next = position
                .as_ref()
                .and_then(|pos| pos.find_partition(&self.settings.topic, p))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .or_else(|| self.start_offsets.get(&p).copied().filter(|o| *o >= 0))
                .unwrap_or(low.max(0));
            let lag = (high - next).max(0);
            out.push((p, lag));
            let label = PartitionLabel { partition: p };
            self.metrics.consumer_lag.get_or_create(&label).set(lag);
            if let Some(c) = t.committed(p) {
                self.metrics.committed_offset.get_or_create(&label).set(c);
            }
        }
        out
    }

    /// Pauses or resumes fetching for every assigned partition.
    fn set_paused(&mut self, pause: bool) {
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
    /// its partition is rewound to it, so it is fetched again on resume.
    fn poll_while_paused(&mut self) {
        let before = self.consumer.assignment().map(|a| a.count()).unwrap_or(0);
        let mut rewind: Vec<(i32, i64)> = Vec::new();
        if let Some(m) = self.serve_events() {
            rewind.push((m.partition, m.offset));
        }
        let mut late = Batch::with_capacity(READ_BATCH);
        self.fetch.read(&mut late, Duration::ZERO);
        for m in late.iter().filter(|m| m.error().is_none()) {
            match rewind.iter_mut().find(|(p, _)| *p == m.partition()) {
                Some((_, o)) => *o = (*o).min(m.offset()),
                None => rewind.push((m.partition(), m.offset())),
            }
        }
        drop(late);
        for (p, o) in rewind {
            if let Err(e) = self.consumer.seek(
                &self.settings.topic,
                p,
                Offset::Offset(o),
                Duration::from_secs(5),
            ) {
                log::warn!("cannot rewind partition {p} to {o} while paused: {e}");
            }
        }
        // A rebalance hands out partitions unpaused; pause them too.
        let after = self.consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if self.paused && after != before {
            self.set_paused(true);
        }
    }

    /// What a message asks for: an upsert, a delete (tombstone) or a reject.
    fn to_op(&self, decoder: &mut Decoder, key: Option<&[u8]>, payload: Option<&[u8]>) -> Op {
        let Some(payload) = payload else {
            return match key.map(std::str::from_utf8) {
                Some(Ok(id)) if !id.is_empty() => Op::Delete(id.to_owned()),
                _ => Op::Reject("tombstone without a UTF-8 key to delete by".into()),
            };
        };
        if payload.len() > self.settings.max_payload_bytes {
            return Op::Reject(format!(
                "payload of {} bytes exceeds sink.max_payload_bytes ({}); stored truncated",
                payload.len(),
                self.settings.max_payload_bytes
            ));
        }
        let row = if self.settings.keep_raw {
            decoder.decode_keeping(key, payload)
        } else {
            decoder.decode(payload)
        };
        match row {
            Ok(row) => Op::Upsert(row),
            Err(e) => Op::Reject(e.to_string()),
        }
    }

    fn take_acks(&self, acks: &Receiver<Ack>) {
        while let Ok(ack) = acks.try_recv() {
            lock(&self.tracker).complete_all(ack);
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
        self.metrics.draining.set(1);
        let mut last_commit = Instant::now();
        loop {
            match acks.recv_timeout(Duration::from_millis(100)) {
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

    /// Records the group's committed offset (-1 for none) of each partition
    /// not seen before: where its lag counts from, and whether the backlog
    /// was already done when it was assigned. One round trip for all of
    /// them; returns whether every partition in `parts` is known.
    fn learn_start_offsets(&mut self, parts: &[i32]) -> bool {
        let unknown: Vec<i32> = parts
            .iter()
            .copied()
            .filter(|p| !self.start_offsets.contains_key(p))
            .collect();
        if unknown.is_empty() {
            return true;
        }
        let Ok(committed) = self.consumer.committed(Duration::from_secs(10)) else {
            return false;
        };
        for p in unknown {
            let start = match committed
                .find_partition(&self.settings.topic, p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            };
            self.start_offsets.insert(p, start);
        }
        true
    }

    /// Whether every assigned partition is committed up to its target.
    fn caught_up(&mut self) -> bool {
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
                    .fetch_watermarks(&self.settings.topic, p, Duration::from_secs(10))
            else {
                return false;
            };
            let already = low == high || self.start_offsets[&p] >= high;
            self.targets.insert(p, (high, already));
        }
        let t = lock(&self.tracker);
        parts.iter().all(|p| {
            let (high, already) = self.targets[p];
            (already && t.is_idle(*p)) || t.committed(*p).is_some_and(|c| c >= high)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
