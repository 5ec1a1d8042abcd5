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

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::metrics::Metrics;
use crate::route::Inbox;
use crate::shutdown::Shutdown;
use crate::types::{Ack, Chunk, Envelope};
use isolate::Transient;
use retry::Backoff;

pub(crate) mod dlq;
mod error;
mod isolate;
mod mysql_sink;
mod retry;

pub use self::dlq::DlqTarget;
pub(crate) use self::dlq::TopicDlq;
pub(crate) use self::error::WriteError;
pub use self::mysql_sink::{BatchSink, MysqlSink};

/// The writer's batching and retry settings.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub shutdown_timeout: Duration,
}

pub struct Writer<S> {
    pub id: usize,
    pub rx: Inbox,
    pub acks: Sender<Ack>,
    pub sink: S,
    pub settings: WriterSettings,
    pub shutdown: Shutdown,
    pub metrics: Arc<Metrics>,
}

impl<S: BatchSink> Writer<S> {
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
                    started = true;
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
        }
    }

    /// Adds a chunk's rows to the batch, writing it each time it is full;
    /// the flush deadline runs from when the batch got its first row.
    fn take(&mut self, batch: &mut Vec<Envelope>, chunk: Chunk, deadline: &mut Option<Instant>) {
        if batch.is_empty() && !chunk.is_empty() {
            *deadline = Some(Instant::now() + self.settings.flush_interval);
        }
        for env in chunk {
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
        if batch.is_empty() {
            return;
        }
        let mut backoff = Backoff::new(
            self.settings.retry_initial,
            self.settings.retry_max,
            self.id as u64,
        );
        let mut dead: Vec<(usize, String)> = Vec::new();
        let started = Instant::now();
        loop {
            dead.clear();
            let result = self
                .apply(batch, &mut dead)
                .and_then(|applied| self.store_dead(batch, &dead).map(|()| applied));
            match result {
                Ok(applied) => {
                    Metrics::add(&self.metrics.rows_written, applied.upserts);
                    Metrics::add(&self.metrics.rows_deleted, applied.deletes);
                    Metrics::add(&self.metrics.dead_lettered, dead.len() as u64);
                    self.metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    let ack: Ack = batch.iter().map(|e| e.coord).collect();
                    // The consumer outlives the writers; if it is gone the
                    // process is exiting and the offsets stay uncommitted.
                    let _ = self.acks.send(ack);
                    break;
                }
                Err(Transient(e)) => {
                    if self.shutdown.drain_expired(self.settings.shutdown_timeout) {
                        log::error!(
                            "writer {}: giving up a batch of {} rows at shutdown: {e}; \
                             its offsets stay uncommitted and will be read again",
                            self.id,
                            batch.len()
                        );
                        break;
                    }
                    self.metrics.retry("transient");
                    let delay = backoff.next_delay();
                    log::warn!(
                        "writer {}: batch of {} rows failed: {e}; retrying in {} ms",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Num, Row};
    use crate::route;
    use crate::sql::BuildError;
    use crate::types::{Coord, DeadLetter, Op};
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// Records what it is asked to write; refuses rows whose id is in `bad`
    /// (a data error) and fails the first `transient` calls.
    #[derive(Clone, Default)]
    struct Recorder {
        written: Arc<Mutex<Vec<i64>>>,
        dead: Arc<Mutex<Vec<(i64, String)>>>,
        bad: Arc<HashSet<i64>>,
        transient: Arc<Mutex<u32>>,
        calls: Arc<Mutex<u32>>,
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

    impl BatchSink for Recorder {
        fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError> {
            *self.calls.lock().unwrap() += 1;
            let mut t = self.transient.lock().unwrap();
            if *t > 0 {
                *t -= 1;
                return Err(transient_error());
            }
            if items.iter().any(|e| self.bad.contains(&e.coord.offset)) {
                return Err(data_error());
            }
            self.written
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
        let w = Writer {
            id: 0,
            rx,
            acks: ack_tx,
            sink,
            settings: s,
            shutdown: Shutdown::new(),
            metrics: metrics.clone(),
        };
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
        assert_eq!(ack, vec![Coord::new(0, 1), Coord::new(0, 2)]);
        drop(tx);
        h.join().unwrap();
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
        assert_eq!(acks, vec![vec![Coord::new(0, 0), Coord::new(0, 1)]]);
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
}
