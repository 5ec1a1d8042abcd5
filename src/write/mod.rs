//! Writer threads: rows in, multi-row upserts out, acknowledgements back.
//!
//! Each writer owns one channel and one batch. A batch is written when it is
//! full or when its oldest row has waited `flush_interval`, whichever comes
//! first. Rows of one key always go to the same writer, which keeps the line:
//! a batch that fails transiently is retried (see [`retry`]) and the
//! writer takes nothing new meanwhile, so versions of a key stay in order.
//!
//! A batch that fails on its data is split in halves, recursively, until the
//! rows MySQL refuses are found: every other row is written, each refused row
//! goes to the dead-letter destination with the server's error, and the cost
//! of one bad row in a batch of n is about 2·log2(n) extra statements.
//! Only after all of that is durable are the batch's offsets acknowledged to
//! the consumer.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{Metrics, COMMITTED, ROLLED_BACK};
use crate::route::Inbox;
use crate::shutdown::Shutdown;
use crate::types::{Ack, Chunk, Coord, Envelope};
use retry::{Backoff, UNKNOWN_ERROR_ATTEMPTS};

mod attempt;
mod by_plan;
pub(crate) mod dlq;
mod error;
mod isolate;
mod mysql_sink;
mod retry;
mod target_sink;

pub use self::dlq::DlqTarget;
pub(crate) use self::dlq::TopicDlq;
pub use self::error::WriteError;
pub use self::mysql_sink::{BatchSink, Claim, MysqlSink};
pub(crate) use self::target_sink::TargetSink;

/// The writer's batching and retry settings.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// The target table's name, as metrics label it.
    pub table: String,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub shutdown_timeout: Duration,
}

pub struct Writer<S> {
    id: usize,
    rx: Inbox,
    acks: Sender<Ack>,
    sink: S,
    settings: WriterSettings,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    /// `write_duration_seconds` of this writer's table, by outcome.
    committed_seconds: Histogram,
    rolled_back_seconds: Histogram,
    /// Claims this writer found superseded (and said so once).
    fenced: HashSet<Claim>,
    /// Set once a batch was given up at the end of a drain: nothing after
    /// it may be written (a later batch of the same partitions would commit
    /// offsets, or versions, past the rows given up).
    abandoned: bool,
}

impl<S: BatchSink> Writer<S> {
    pub fn new(
        id: usize,
        rx: Inbox,
        acks: Sender<Ack>,
        sink: S,
        settings: WriterSettings,
        shutdown: Shutdown,
        metrics: Arc<Metrics>,
    ) -> Writer<S> {
        Writer {
            id,
            rx,
            acks,
            sink,
            committed_seconds: metrics.write_histogram(&settings.table, COMMITTED),
            rolled_back_seconds: metrics.write_histogram(&settings.table, ROLLED_BACK),
            settings,
            shutdown,
            metrics,
            fenced: HashSet::new(),
            abandoned: false,
        }
    }

    /// Runs until the channel is closed and drained.
    pub fn run(mut self) {
        let mut batch: Vec<Envelope> = Vec::with_capacity(self.settings.batch_size);
        let mut deadline: Option<Instant> = None;
        // Waiting counts from the first row on: before it, the consumer is
        // still joining its group, which says nothing about the pipeline.
        let mut started = false;
        loop {
            let waiting = Instant::now();
            let received = self.rx.recv(deadline);
            if started {
                self.metrics
                    .writer_idle_seconds
                    .inc_by(waiting.elapsed().as_secs_f64());
            }
            match received {
                Ok(chunk) => {
                    started |= !chunk.is_empty();
                    self.take(&mut batch, chunk, &mut deadline);
                    // Take what is already queued without a deadline check.
                    while batch.len() < self.settings.batch_size {
                        match self.rx.try_recv() {
                            Some(chunk) => self.take(&mut batch, chunk, &mut deadline),
                            None => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.flush(&mut batch);
                    deadline = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush(&mut batch);
                    log::debug!("writer {} finished", self.id);
                    return;
                }
            }
            if self.abandoned {
                log::warn!(
                    "writer {}: stopping after a batch given up at shutdown; \
                     the rows it still holds stay uncommitted and are read again",
                    self.id
                );
                return;
            }
        }
    }

    /// Adds a chunk's rows to the batch, writing it each time it is full;
    /// the flush deadline runs from when the batch got its first row. An
    /// empty chunk writes the batch at once.
    fn take(&mut self, batch: &mut Vec<Envelope>, chunk: Chunk, deadline: &mut Option<Instant>) {
        if chunk.is_empty() {
            // Nothing more is coming for now (see Router::flush_all).
            self.flush(batch);
            *deadline = None;
            return;
        }
        if batch.is_empty() {
            *deadline = Some(Instant::now() + self.settings.flush_interval);
        }
        for env in chunk {
            if self.abandoned {
                return;
            }
            batch.push(env);
            if batch.len() >= self.settings.batch_size {
                self.flush(batch);
                *deadline = None;
            }
        }
        if !batch.is_empty() && deadline.is_none() {
            *deadline = Some(Instant::now() + self.settings.flush_interval);
        }
    }

    fn flush(&mut self, batch: &mut Vec<Envelope>) {
        if batch.is_empty() || self.abandoned {
            batch.clear();
            return;
        }
        let mut backoff = Backoff::new(
            self.settings.retry_initial,
            self.settings.retry_max,
            self.id as u64,
        );
        let mut dead: Vec<(usize, String)> = Vec::new();
        let started = Instant::now();
        // Consecutive attempts that failed on an error the classifier does
        // not know; past the limit it is isolated like a data error.
        let mut unknown_failures = 0;
        // Rows an earlier attempt committed although its answer was lost.
        let mut settled: Vec<Coord> = Vec::new();
        loop {
            dead.clear();
            let unknown_is_data = unknown_failures >= UNKNOWN_ERROR_ATTEMPTS;
            match self.attempt(batch, &mut settled, unknown_is_data, &mut dead) {
                Ok(outcome) => {
                    let mut not_found = 0;
                    for (table, n) in self.sink.take_not_found() {
                        self.metrics.rows_not_found(&table, n);
                        not_found += n;
                    }
                    Metrics::add(
                        &self.metrics.rows_written,
                        outcome.applied.upserts.saturating_sub(not_found),
                    );
                    Metrics::add(&self.metrics.rows_deleted, outcome.applied.deletes);
                    Metrics::add(&self.metrics.dead_lettered, outcome.dead as u64);
                    self.metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    // Rows an earlier attempt committed were durable before.
                    self.metrics.record_durable(
                        now_ms(),
                        batch.iter().map(|e| (e.coord.part, e.timestamp_ms)),
                    );
                    settled.extend(batch.iter().map(|e| e.coord));
                    // The consumer outlives the writers; if it is gone the
                    // process is exiting and the offsets stay uncommitted.
                    let _ = self.acks.send(settled);
                    break;
                }
                Err(t) if t.schema && !self.shutdown.replans_exhausted() => {
                    // Read again, planned against the table as it is now,
                    // in the next round: given up, never acknowledged, and
                    // nothing after it written here (see `abandoned`).
                    if !self.shutdown.replan_requested() {
                        log::warn!(
                            table = self.settings.table.as_str();
                            "writer {}: the table changed under the sink ({t}); describing \
                             the tables and compiling the plans again",
                            self.id
                        );
                    }
                    self.shutdown.request_replan();
                    self.abandoned = true;
                    break;
                }
                Err(t) => {
                    if self.shutdown.drain_expired(self.settings.shutdown_timeout) {
                        log::error!(
                            table = self.settings.table.as_str();
                            "writer {}: giving up a batch of {} rows at shutdown: {t}; \
                             its offsets stay uncommitted and will be read again",
                            self.id,
                            batch.len()
                        );
                        self.abandoned = true;
                        break;
                    }
                    if t.unknown || t.schema {
                        unknown_failures += 1;
                        self.metrics.retry("unknown");
                        if unknown_failures == UNKNOWN_ERROR_ATTEMPTS {
                            Metrics::add(&self.metrics.unknown_errors_as_data, 1);
                            log::warn!(
                                table = self.settings.table.as_str();
                                "writer {}: a batch of {} rows failed {unknown_failures} times \
                                 with an error not known to pass ({t}); rows the server keeps \
                                 refusing go to the dead-letter destination (an error opening or \
                                 committing the transaction is no row's, and is retried on)",
                                self.id,
                                batch.len()
                            );
                        }
                    } else {
                        unknown_failures = 0;
                        self.metrics.retry("transient");
                    }
                    let delay = backoff.next_delay();
                    log::warn!(
                        table = self.settings.table.as_str();
                        "writer {}: batch of {} rows failed: {t}; retrying in {} ms",
                        self.id,
                        batch.len(),
                        delay.as_millis()
                    );
                    self.sleep_unless_expired(delay);
                }
            }
        }
        batch.clear();
    }

    /// Sleeps in short steps so an expiring shutdown is noticed promptly.
    fn sleep_unless_expired(&self, delay: Duration) {
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if self.shutdown.drain_expired(self.settings.shutdown_timeout) {
                return;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }
}

/// Milliseconds since the epoch, as Kafka timestamps count them.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Num, Row};
    use crate::fence::Standing;
    use crate::route;
    use crate::sql::BuildError;
    use crate::types::testing::unnamed as p;
    use crate::types::{Coord, DeadLetter, Op, Part};
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// Records what it is asked to write, transaction by transaction:
    /// writes are kept once committed and forgotten on rollback. Refuses
    /// rows whose offset is in `bad` (a data error) or in `signal` (an error
    /// the classifier does not know), fails the first `transient` calls,
    /// and answers `begin` as if partitions in `lost` were claimed by
    /// another owner and as if `next` held exactly-once next offsets.
    #[derive(Clone, Default)]
    struct Recorder {
        written: Arc<Mutex<Vec<i64>>>,
        pending: Arc<Mutex<Vec<i64>>>,
        dead: Arc<Mutex<Vec<(i64, String)>>>,
        bad: Arc<HashSet<i64>>,
        signal: Arc<HashSet<i64>>,
        lost: Arc<HashSet<Part>>,
        next: Arc<Vec<(Part, i64)>>,
        transient: Arc<Mutex<u32>>,
        calls: Arc<Mutex<u32>>,
        commits: Arc<Mutex<Vec<Vec<Coord>>>>,
        rollbacks: Arc<Mutex<u32>>,
        /// Per write: the targets of its items.
        targets: Arc<Mutex<Vec<Vec<u16>>>>,
    }

    fn data_error() -> WriteError {
        WriteError::Build(BuildError::RowTooLarge {
            needed: 1,
            limit: 0,
        })
    }

    fn transient_error() -> WriteError {
        WriteError::Mysql(::mysql::Error::IoError(std::io::Error::other("gone away")))
    }

    fn signal_error() -> WriteError {
        WriteError::Mysql(::mysql::Error::MySqlError(::mysql::MySqlError {
            state: "45000".into(),
            message: "refused by a trigger".into(),
            code: 1644,
        }))
    }

    impl BatchSink for Recorder {
        fn begin(&mut self, claims: &[Claim]) -> Result<Vec<Standing>, WriteError> {
            Ok(claims
                .iter()
                .filter(|c| !self.lost.contains(&c.part))
                .map(|c| Standing {
                    part: c.part,
                    generation: c.generation,
                    next_offset: self
                        .next
                        .iter()
                        .find(|(q, _)| *q == c.part)
                        .map(|(_, n)| *n),
                })
                .collect())
        }
        fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError> {
            *self.calls.lock().unwrap() += 1;
            self.targets
                .lock()
                .unwrap()
                .push(items.iter().map(|e| e.target).collect());
            let mut t = self.transient.lock().unwrap();
            if *t > 0 {
                *t -= 1;
                return Err(transient_error());
            }
            if items.iter().any(|e| self.bad.contains(&e.coord.offset)) {
                return Err(data_error());
            }
            if items.iter().any(|e| self.signal.contains(&e.coord.offset)) {
                return Err(signal_error());
            }
            self.pending
                .lock()
                .unwrap()
                .extend(items.iter().map(|e| e.coord.offset));
            Ok(())
        }
        fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), WriteError> {
            self.dead.lock().unwrap().extend(
                letters
                    .iter()
                    .map(|l| (l.env.coord.offset, l.error.clone())),
            );
            Ok(())
        }
        fn commit(&mut self, next: &[Coord]) -> Result<(), WriteError> {
            let pending = std::mem::take(&mut *self.pending.lock().unwrap());
            self.written.lock().unwrap().extend(pending);
            self.commits.lock().unwrap().push(next.to_vec());
            Ok(())
        }
        fn rollback(&mut self) {
            self.pending.lock().unwrap().clear();
            *self.rollbacks.lock().unwrap() += 1;
        }
    }

    fn env(offset: i64) -> Envelope {
        Envelope::upsert(
            0,
            offset,
            Row::new(
                &format!("id-{offset}"),
                "o",
                Num::Int(1),
                Num::Int(0),
                Num::Int(0),
                None,
            ),
        )
    }

    fn settings(batch_size: usize, flush_ms: u64) -> WriterSettings {
        WriterSettings {
            table: "orders".into(),
            batch_size,
            flush_interval: Duration::from_millis(flush_ms),
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(4),
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// A writer over `sink`, the sender that feeds it (`chunks` deep), and
    /// where its acknowledgements and metrics go.
    fn writer(
        sink: Recorder,
        s: WriterSettings,
        chunks: usize,
    ) -> (
        Writer<Recorder>,
        crossbeam_channel::Sender<Chunk>,
        crossbeam_channel::Receiver<Ack>,
        Arc<Metrics>,
    ) {
        let (tx, rx) = route::inbox(chunks);
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        let metrics = Arc::new(Metrics::default());
        let w = Writer::new(0, rx, ack_tx, sink, s, Shutdown::new(), metrics.clone());
        (w, tx, ack_rx, metrics)
    }

    fn run(sink: Recorder, s: WriterSettings, items: Vec<Envelope>) -> (Vec<Ack>, Arc<Metrics>) {
        let (w, tx, ack_rx, metrics) = writer(sink, s, 100_000);
        // Chunks of 1 to 7 rows, so that they straddle batch boundaries.
        let mut items = items.into_iter().peekable();
        let mut size = 0;
        while items.peek().is_some() {
            size = size % 7 + 1;
            tx.send(items.by_ref().take(size).collect()).unwrap();
        }
        drop(tx);
        w.run();
        (ack_rx.try_iter().collect(), metrics)
    }

    #[test]
    fn full_batches_and_a_final_partial_one_in_order() {
        let rec = Recorder::default();
        let (acks, _) = run(
            rec.clone(),
            settings(4, 600_000),
            (0..10).map(env).collect(),
        );
        assert_eq!(*rec.written.lock().unwrap(), (0..10).collect::<Vec<_>>());
        assert!(acks.iter().all(|a| a.len() <= 4));
        let acked: Vec<i64> = acks.into_iter().flatten().map(|c| c.offset).collect();
        assert_eq!(acked, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn partial_batch_flushes_after_the_interval() {
        let (w, tx, ack_rx, _) = writer(Recorder::default(), settings(1000, 20), 10);
        let h = std::thread::spawn(move || w.run());
        tx.send(vec![env(1)]).unwrap();
        tx.send(vec![env(2)]).unwrap();
        // The channel stays open: only the interval can flush this batch.
        let ack = ack_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(ack, vec![Coord::new(p(0), 1), Coord::new(p(0), 2)]);
        drop(tx);
        h.join().unwrap();
    }

    #[test]
    fn an_empty_chunk_writes_the_partial_batch_at_once() {
        // A flush interval no test waits out: only the empty chunk (the
        // router's "nothing more is coming") can write these rows.
        let (w, tx, ack_rx, _) = writer(Recorder::default(), settings(1000, 600_000), 10);
        let h = std::thread::spawn(move || w.run());
        tx.send(vec![env(1), env(2)]).unwrap();
        tx.send(Vec::new()).unwrap();
        let ack = ack_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(ack, vec![Coord::new(p(0), 1), Coord::new(p(0), 2)]);
        // Rows after it batch as before; an empty chunk with none held
        // writes nothing.
        tx.send(Vec::new()).unwrap();
        tx.send(vec![env(3)]).unwrap();
        drop(tx);
        h.join().unwrap();
        let acks: Vec<Ack> = ack_rx.try_iter().collect();
        assert_eq!(acks, vec![vec![Coord::new(p(0), 3)]]);
    }

    #[test]
    fn waiting_for_rows_counts_from_the_first_row_on() {
        let (w, tx, ack_rx, metrics) = writer(Recorder::default(), settings(1, 600_000), 10);
        let h = std::thread::spawn(move || w.run());
        // Before the first row: a consumer joining its group, not counted.
        std::thread::sleep(Duration::from_millis(1000));
        tx.send(vec![env(1)]).unwrap();
        ack_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        // Between rows: the writer waiting for its source, counted.
        std::thread::sleep(Duration::from_millis(100));
        tx.send(vec![env(2)]).unwrap();
        ack_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        drop(tx);
        h.join().unwrap();
        let idle = metrics.writer_idle_seconds.get();
        assert!(idle >= 0.1, "{idle}");
        // Counting the second before the first row would make it over 1.1 s;
        // the 0.1 s wait after it stays far below 1 s on any machine.
        assert!(idle < 1.0, "{idle}");
    }

    #[test]
    fn transient_failures_are_retried_and_acked_once() {
        let rec = Recorder::default();
        *rec.transient.lock().unwrap() = 3;
        let (acks, m) = run(rec.clone(), settings(2, 600_000), vec![env(0), env(1)]);
        assert_eq!(*rec.written.lock().unwrap(), vec![0, 1]);
        assert_eq!(acks, vec![vec![Coord::new(p(0), 0), Coord::new(p(0), 1)]]);
        assert_eq!(m.snapshot().retries, 3);
        assert!(rec.dead.lock().unwrap().is_empty());
    }

    #[test]
    fn bad_rows_are_isolated_in_about_log2_statements() {
        let bad: HashSet<i64> = [137].into_iter().collect();
        let rec = Recorder {
            bad: Arc::new(bad),
            ..Default::default()
        };
        let (acks, m) = run(
            rec.clone(),
            settings(1000, 600_000),
            (0..1000).map(env).collect(),
        );
        let written = rec.written.lock().unwrap().clone();
        assert_eq!(written, (0..1000).filter(|&o| o != 137).collect::<Vec<_>>());
        let dead = rec.dead.lock().unwrap().clone();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].0, 137);
        // the first attempt, then two halves per level down to one row
        let calls = *rec.calls.lock().unwrap();
        assert!(calls <= 1 + 2 * 10, "{calls} statements");
        assert_eq!(acks.into_iter().flatten().count(), 1000);
        let s = m.snapshot();
        assert_eq!((s.rows_written, s.dead_lettered), (999, 1));
    }

    #[test]
    fn several_bad_rows_and_rejects_keep_order() {
        let bad: HashSet<i64> = [0, 5, 6, 99].into_iter().collect();
        let rec = Recorder {
            bad: Arc::new(bad),
            ..Default::default()
        };
        let mut items: Vec<Envelope> = (0..100).map(env).collect();
        items[50].op = Op::Reject("not json".into());
        let (_, m) = run(rec.clone(), settings(100, 600_000), items);
        let written = rec.written.lock().unwrap().clone();
        let want: Vec<i64> = (0..100)
            .filter(|o| ![0, 5, 6, 99, 50].contains(o))
            .collect();
        assert_eq!(written, want);
        let mut dead: Vec<i64> = rec.dead.lock().unwrap().iter().map(|d| d.0).collect();
        dead.sort();
        assert_eq!(dead, vec![0, 5, 6, 50, 99]);
        assert_eq!(m.snapshot().dead_lettered, 5);
    }

    #[test]
    fn each_write_holds_rows_of_one_target() {
        let rec = Recorder::default();
        let items: Vec<Envelope> = [0u16, 0, 1, 1, 1, 0, 2]
            .iter()
            .enumerate()
            .map(|(o, &t)| {
                let mut e = env(o as i64);
                e.target = t;
                e
            })
            .collect();
        run(rec.clone(), settings(100, 600_000), items);
        assert_eq!(
            *rec.targets.lock().unwrap(),
            vec![vec![0, 0], vec![1, 1, 1], vec![0], vec![2]]
        );
        assert_eq!(*rec.written.lock().unwrap(), (0..7).collect::<Vec<_>>());
    }

    fn env_in(partition: i32, offset: i64) -> Envelope {
        let mut e = env(offset);
        e.coord.part = p(partition);
        e.generation = 1;
        e
    }

    #[test]
    fn rows_of_a_partition_claimed_elsewhere_are_dropped_and_never_acked() {
        let rec = Recorder {
            lost: Arc::new([p(1)].into_iter().collect()),
            ..Default::default()
        };
        let items: Vec<Envelope> = (0..20).map(|o| env_in((o % 2) as i32, o)).collect();
        let (acks, m) = run(rec.clone(), settings(20, 600_000), items);
        let evens: Vec<i64> = (0..20).filter(|o| o % 2 == 0).collect();
        assert_eq!(*rec.written.lock().unwrap(), evens);
        let acked: Vec<Coord> = acks.into_iter().flatten().collect();
        assert!(acked.iter().all(|c| c.partition() == 0), "{acked:?}");
        assert_eq!(acked.len(), 10);
        assert_eq!(m.snapshot().fenced_rows, 10);
        // Only partition 0's next offset is recorded.
        assert_eq!(
            *rec.commits.lock().unwrap(),
            vec![vec![Coord::new(p(0), 19)]]
        );
    }

    #[test]
    fn rows_an_earlier_commit_wrote_are_acked_without_being_written_again() {
        let rec = Recorder {
            next: Arc::new(vec![(p(0), 5)]),
            ..Default::default()
        };
        let items: Vec<Envelope> = (0..10).map(|o| env_in(0, o)).collect();
        let (acks, _) = run(rec.clone(), settings(10, 600_000), items);
        assert_eq!(*rec.written.lock().unwrap(), (5..10).collect::<Vec<_>>());
        let mut acked: Vec<i64> = acks.into_iter().flatten().map(|c| c.offset).collect();
        acked.sort();
        assert_eq!(acked, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_attempt_is_rolled_back_and_retried_whole() {
        let rec = Recorder::default();
        *rec.transient.lock().unwrap() = 2;
        let (acks, _) = run(rec.clone(), settings(4, 600_000), (0..4).map(env).collect());
        assert_eq!(*rec.rollbacks.lock().unwrap(), 2);
        assert_eq!(*rec.written.lock().unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(acks.len(), 1);
    }

    #[test]
    fn an_error_nobody_knows_stalls_only_for_a_bounded_number_of_attempts() {
        let rec = Recorder {
            signal: Arc::new([3].into_iter().collect()),
            ..Default::default()
        };
        let (acks, m) = run(rec.clone(), settings(8, 600_000), (0..8).map(env).collect());
        let dead: Vec<i64> = rec.dead.lock().unwrap().iter().map(|d| d.0).collect();
        assert_eq!(dead, vec![3]);
        assert_eq!(
            *rec.written.lock().unwrap(),
            vec![0, 1, 2, 4, 5, 6, 7],
            "every other row is written"
        );
        assert_eq!(acks.into_iter().flatten().count(), 8);
        let s = m.snapshot();
        assert_eq!(s.unknown_errors_as_data, 1);
        assert_eq!(s.dead_lettered, 1);
        assert_eq!(*rec.rollbacks.lock().unwrap(), UNKNOWN_ERROR_ATTEMPTS);
    }

    #[test]
    fn nothing_is_written_after_a_batch_given_up_at_shutdown() {
        let rec = Recorder::default();
        *rec.transient.lock().unwrap() = 1;
        let mut s = settings(2, 600_000);
        s.shutdown_timeout = Duration::ZERO;
        let (w, tx, ack_rx, _) = writer(rec.clone(), s, 100);
        w.shutdown.start_drain();
        tx.send((0..4).map(env).collect()).unwrap();
        drop(tx);
        w.run();
        // The first batch failed and was given up; the second, of the same
        // partition, would commit past it.
        assert!(rec.written.lock().unwrap().is_empty());
        assert!(ack_rx.try_iter().next().is_none());
    }
}
