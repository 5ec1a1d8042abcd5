//! The consumer thread: reads Kafka, hands rows to writers, commits offsets.
//!
//! One thread owns the `BaseConsumer`. It reads messages in batches
//! ([`fetch`]), turns each into an operation ([`message`]), stages the rows
//! for their writers and sends them in chunks ([`crate::route`]). Between
//! reads it takes writers' acknowledgements and commits the done prefix of
//! each partition every `commit_interval` ([`commit`]). When writers fall
//! behind it waits, then pauses fetching ([`backpressure`]); rebalances are
//! served inside `poll`, on this same thread ([`rebalance`]); [`lag`] keeps
//! the gauges and decides when an until-caught-up run is done.

mod backpressure;
mod claim;
mod client;
mod commit;
mod error;
mod fetch;
mod lag;
mod log_id;
mod message;
mod out_of_range;
mod parts;
mod rebalance;
mod watch;

pub(crate) use error::SourceError;
pub(crate) use watch::TopicWatch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::{AutoOffsetReset, Config};
use crate::db;
use crate::decode::Decoder;
use crate::fence::FenceSpec;
use crate::metrics::Metrics;
use crate::offsets::OffsetTracker;
use crate::progress::Reporter;
use crate::route::{RouteError, Router};
use crate::shutdown::Shutdown;
use crate::types::{Ack, Envelope, Op, Part, Raw, Topic};
use claim::{Claimer, Starting};
use fetch::FetchQueue;
use lag::{FetchErrors, Target};
use message::{Msg, PlanDecoders, TopicCache};
use rebalance::{lock, Held, SinkContext, Tracker};

pub(crate) use backpressure::{max_poll_interval, pause_after};
pub use client::client_config;
pub(crate) use log_id::{log_id, LogId};
pub(crate) use out_of_range::{
    decide as decide_start, held_offset, log_ranges, verdict as out_of_range_verdict, LogRange,
    Start,
};

/// Settings the consumer loop needs beyond the Kafka client's.
#[derive(Debug, Clone)]
pub(crate) struct SourceSettings {
    pub(crate) commit_interval: Duration,
    pub(crate) stats_interval: Duration,
    /// Stop once every assigned partition is committed up to the high
    /// watermark it had when first seen.
    pub(crate) until_caught_up: bool,
    /// Keep each message's key and payload for the dead-letter destination.
    pub(crate) keep_raw: bool,
    /// Undecodable messages go to the writers (for the dead-letter
    /// destination) instead of being skipped here.
    pub(crate) reject_to_writers: bool,
    pub(crate) delete_on_tombstone: bool,
    pub(crate) max_payload_bytes: usize,
    /// How long the consumer waits on a full writer channel before it
    /// pauses fetching (see [`pause_after`]).
    pub(crate) pause_after: Duration,
    /// How long the drain after a stop may take in all.
    pub(crate) shutdown_timeout: Duration,
    /// Whether a group without a committed offset starts at the end.
    pub(crate) starts_at_end: bool,
}

/// Messages taken from librdkafka per read; a batch is registered in the
/// tracker under one lock and handed over before the next read.
const READ_BATCH: usize = 256;

/// What the hand-over of a batch needs besides the source itself.
struct Handover<'r> {
    decoder: Decoder,
    plans: PlanDecoders,
    stats: Reporter,
    last_commit: Instant,
    router: &'r mut Router,
    acks: &'r Receiver<Ack>,
    shutdown: &'r Shutdown,
}

pub(crate) struct Source {
    /// The batch queue; it holds the consumer, so the client outlives it.
    fetch: Arc<FetchQueue<SinkContext>>,
    consumer: Arc<BaseConsumer<SinkContext>>,
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
    start_offsets: HashMap<Part, i64>,
    first_message_at: Option<Instant>,
    last_pause_log: Option<Instant>,
    metrics: Arc<Metrics>,
    settings: SourceSettings,
    /// Per partition, what until-caught-up mode must reach.
    targets: HashMap<Part, Target>,
    /// Fetch errors that moved a partition's position ahead of delivery.
    fetch_errors: FetchErrors,
    /// Partitions seen delivering through `poll` (see [`fetch`]).
    unbatched: HashSet<Part>,
    /// The topic of the messages read last.
    topics: TopicCache,
    claimer: Arc<Claimer>,
    /// A partition whose offset fell out of the log while it was read.
    out_of_range: Option<SourceError>,
    /// The route targets whose plans decode messages (none: orders).
    routes: crate::targets::RouteTargets,
    /// New topics for the routes' patterns, looked for between reads.
    watch: Option<watch::TopicWatch>,
    /// Set when the run stopped for new topics (see [`watch`]).
    new_topics: bool,
}

impl Source {
    pub(crate) fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        acks: Receiver<Ack>,
        until_caught_up: bool,
        bar: Option<indicatif::ProgressBar>,
        marks: bool,
        topics: &[String],
    ) -> Result<Source, SourceError> {
        let cfg = &config.kafka;
        let dlq_keeps = config.dlq_table().is_some() || config.dlq_topic().is_some();
        let tracker: Tracker = Arc::new(Mutex::new(OffsetTracker::new()));
        let held: Held = Arc::new(Mutex::new(Vec::new()));
        // A claim may wait for a previous owner's transaction; it must end
        // well within the poll interval, which a rebalance callback counts
        // against.
        let claimer = Arc::new(Claimer::new(
            FenceSpec {
                marks,
                ..FenceSpec::new(config)
            },
            mysql::Opts::from(db::opts(&config.mysql)),
            max_poll_interval(cfg) / 2,
            Starting {
                on_out_of_range: cfg.on_out_of_range,
                fresh: cfg.auto_offset_reset,
            },
        ));
        let context = SinkContext {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            acks: acks.clone(),
            revoke_timeout: cfg.revoke_timeout,
            held: held.clone(),
            fetch: OnceLock::new(),
            claimer: claimer.clone(),
            fetch_paused: AtomicBool::new(false),
            drained: AtomicBool::new(false),
        };
        let consumer: Arc<BaseConsumer<SinkContext>> = Arc::new(
            client_config(cfg)
                .create_with_context(context)
                .map_err(SourceError::Create)?,
        );
        let fetch = Arc::new(FetchQueue::new(consumer.clone()).ok_or(SourceError::Queue)?);
        let _ = consumer.context().fetch.set(Arc::downgrade(&fetch));
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|source| SourceError::Subscribe {
                topic: topics.join(", "),
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
                commit_interval: cfg.commit_interval,
                stats_interval: config.sink.stats_interval,
                until_caught_up,
                keep_raw: dlq_keeps,
                reject_to_writers: dlq_keeps,
                delete_on_tombstone: config.sink.delete_on_tombstone,
                max_payload_bytes: config.sink.max_payload_bytes,
                pause_after: pause_after(cfg),
                shutdown_timeout: config.sink.shutdown_timeout,
                starts_at_end: cfg.auto_offset_reset == AutoOffsetReset::Latest,
            },
            targets: HashMap::new(),
            fetch_errors: FetchErrors::default(),
            unbatched: HashSet::new(),
            topics: TopicCache::default(),
            claimer,
            out_of_range: None,
            routes: Default::default(),
            watch: None,
            new_topics: false,
        })
    }

    /// Looks for new topics of the routes' patterns, and stops the run
    /// (drained, as on a signal) when one appears.
    pub(crate) fn with_topic_watch(mut self, watch: Option<watch::TopicWatch>) -> Source {
        self.watch = watch;
        self
    }

    /// Whether the run stopped for new topics: the pipeline starts the next
    /// round with them.
    pub(crate) fn stopped_for_new_topics(&self) -> bool {
        self.new_topics
    }

    /// Consumes until shutdown is requested (or, in until-caught-up mode, the
    /// backlog is done), then drains the writers and commits. `router` is
    /// consumed: dropping it closes the writers' channels, which is how they
    /// learn to flush and stop.
    /// Returns how long rows were moving: from the first message read to
    /// the end of the drain (zero when nothing was read), which is the time
    /// that throughput should be measured over.
    pub(crate) fn run(
        &mut self,
        router: Router,
        shutdown: &Shutdown,
    ) -> Result<Duration, SourceError> {
        let acks = self.acks.clone();
        let mut router = router;
        let result = self.consume(&mut router, &acks, shutdown);
        shutdown.start_drain();
        drop(router);
        self.drain(&acks, shutdown);
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
            plans: PlanDecoders::new(&self.routes),
            stats: Reporter::new(self.settings.stats_interval, self.bar.take()),
            last_commit: Instant::now(),
            router,
            acks,
            shutdown,
        };
        let mut batch = self.fetch.batch(READ_BATCH);
        let mut finishing = false;
        // Until caught up: the assignment (by the count of assignments)
        // whose end the writers were told of, so that they write their
        // partial batches at once; and when that end was last looked for
        // (it asks librdkafka for every position). Told once: rows that
        // arrive after it batch as usual.
        let mut end_told: Option<u64> = None;
        let mut end_checked: Option<Instant> = None;
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
                let new = match &mut self.watch {
                    Some(w) => w.new_topics(&self.consumer),
                    None => Vec::new(),
                };
                if !new.is_empty() {
                    log::info!(
                        "new topics {new:?} match the routes' patterns: draining, then reading \
                         them too"
                    );
                    self.new_topics = true;
                    shutdown.request();
                    break;
                }
            }
            finishing = false;
            // Rebalances and errors; and, should a partition have failed to
            // attach to the batch queue, its messages.
            let stray = self.serve_events();
            if let Some(e) = self.claimer.take_failure() {
                return Err(e);
            }
            if let Some(e) = self.out_of_range.take() {
                return Err(e);
            }
            // Once the writers were told, their acknowledgements are what
            // the loop waits for, not messages.
            let assignment = self.metrics.assignments.get();
            let told = end_told == Some(assignment);
            let wait = Duration::from_millis(if told { 5 } else { 100 });
            let mut msgs: Vec<Msg<'_>> = match &stray {
                Some(m) => {
                    if !self.fetch_errors.is_empty() {
                        self.fetch_errors.saw(m.coord(), false);
                    }
                    vec![m.as_msg()]
                }
                None => {
                    self.fetch.read(&mut batch, wait);
                    batch.iter().filter_map(|m| self.message(m)).collect()
                }
            };
            if self.settings.until_caught_up && !self.targets.is_empty() {
                let t = lock(&self.tracker);
                lag::drop_past_targets(&self.targets, |p| t.committed(p).is_some(), &mut msgs);
            }
            let short = msgs.len() < READ_BATCH;
            if msgs.is_empty() {
                // A backfill that has read and written everything commits
                // and checks for the end now, rather than at the next commit
                // interval.
                finishing = self.settings.until_caught_up
                    && lock(&self.tracker).in_flight() == 0
                    && cx.last_commit.elapsed() >= Duration::from_millis(20);
            } else if !self.hand_over(&msgs, &mut cx)? {
                return Ok(());
            }
            let check_end = self.settings.until_caught_up
                && short
                && !told
                && end_checked.is_none_or(|t| t.elapsed() >= Duration::from_millis(10));
            if check_end {
                end_checked = Some(Instant::now());
                let told_now = self.read_to_targets()
                    && match cx.router.flush_all() {
                        Ok(told) => told,
                        Err(RouteError::WriterGone(_)) if shutdown.is_requested() => return Ok(()),
                        Err(RouteError::WriterGone(w)) => return Err(SourceError::WriterGone(w)),
                        Err(RouteError::Full) => false,
                    };
                if told_now {
                    end_told = Some(assignment);
                }
            }
        }
        Ok(())
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
                t.register(m.coord);
            }
        }
        // Whether `poll` ran since the messages were registered: a
        // revocation in there forgets the revoked partitions' offsets, and
        // their messages must not be written here any more.
        let mut polled = false;
        // The generation of the partition of the message before; messages
        // of a read come in runs of one partition.
        let mut claimed: Option<(Part, u64)> = None;
        // The target of the topic of the message before, for the same
        // reason: `None` on the orders path.
        let mut routed: Option<(Topic, Option<u16>)> = None;
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
            let coord = m.coord;
            if polled && !lock(&self.tracker).is_tracked(coord) {
                continue;
            }
            let tombstone = m.payload.is_none();
            let topic = coord.part.topic;
            let target = match routed {
                Some((t, target)) if t == topic => target,
                _ => {
                    let target = cx.plans.target_of(topic.name());
                    routed = Some((topic, target));
                    target
                }
            };
            let deletes = target.map_or(self.settings.delete_on_tombstone, |t| cx.plans.deletes(t));
            let op = match target {
                Some(t) => cx.plans.op_of(&self.settings, t, m),
                // Routes read it, yet none takes it: never the orders path.
                None if cx.plans.routed() => Op::Reject(format!("no route takes topic {topic}")),
                None => message::to_op(&self.settings, &mut cx.decoder, m.key, m.payload),
            };
            let skip = match &op {
                _ if tombstone && !deletes => {
                    log::debug!("skipping tombstone at {coord}");
                    true
                }
                Op::Reject(reason) if !self.settings.reject_to_writers => {
                    log::warn!(
                        topic = coord.part.topic.name(),
                        partition = coord.partition(),
                        offset = coord.offset;
                        "skipping message at {coord}: {reason}"
                    );
                    true
                }
                _ => false,
            };
            if skip {
                Metrics::add(&self.metrics.skipped, 1);
                lock(&self.tracker).complete(coord);
                continue;
            }
            // An upsert's row keeps its message itself (see decode::Row).
            let raw = if self.settings.keep_raw && !matches!(op, Op::Upsert(_) | Op::Plan(_)) {
                let limit = self.settings.max_payload_bytes;
                // An oversized payload is kept only up to the limit.
                Raw::new(m.key, m.payload.map(|p| &p[..p.len().min(limit)]))
            } else {
                Raw::default()
            };
            let generation = match claimed {
                Some((p, g)) if p == coord.part && !polled => g,
                _ => {
                    let g = self.claimer.generation(coord.part);
                    claimed = Some((coord.part, g));
                    g
                }
            };
            let env = Envelope {
                coord,
                generation,
                timestamp_ms: m.timestamp_ms,
                target: target.unwrap_or(0),
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
}
