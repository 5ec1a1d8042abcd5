//! Writer threads: rows in, multi-row upserts out, acknowledgements back.
//!
//! Each writer owns one channel and one batch. A batch is written when it is
//! full or when its oldest row has waited `flush_interval`, whichever comes
//! first. A failed batch is retried with capped exponential backoff (with
//! jitter, so writers do not hammer a recovering server in lockstep) and the
//! writer takes nothing new meanwhile: rows of one key always go to the same
//! writer, so holding the line is what keeps versions of a key in order.
//! Only after a batch is durable are its offsets acknowledged to the consumer.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mysql::prelude::Queryable;

use crate::db::Pool;
use crate::decode::Row;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sql::{AsRow, BuildError, UpsertBuilder};

/// A row with the Kafka coordinates it came from.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub partition: i32,
    pub offset: i64,
    pub row: Row,
}

impl AsRow for Envelope {
    fn as_row(&self) -> &Row {
        &self.row
    }
}

/// Offsets made durable by one batch, sent back to the consumer.
pub type Ack = Vec<(i32, i64)>;

/// Why a batch was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no MySQL connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("MySQL rejected the batch: {0}")]
    Mysql(#[from] mysql::Error),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Where a writer sends its batches; MySQL in production, something cheaper
/// in benchmarks of the pipeline itself.
pub trait BatchSink: Send {
    fn write(&mut self, rows: &[Envelope]) -> Result<(), WriteError>;
}

/// Writes batches as multi-row upserts over a pooled connection.
pub struct MysqlSink {
    pool: Pool,
    builder: UpsertBuilder,
    budget: usize,
}

impl MysqlSink {
    pub fn new(pool: Pool, builder: UpsertBuilder, statement_budget: usize) -> MysqlSink {
        MysqlSink {
            pool,
            builder,
            budget: statement_budget,
        }
    }
}

impl BatchSink for MysqlSink {
    fn write(&mut self, rows: &[Envelope]) -> Result<(), WriteError> {
        let mut conn = self.pool.get()?;
        let mut start = 0;
        // Usually one statement; more only when the batch would exceed
        // max_allowed_packet. Each is atomic on its own and all are
        // idempotent, so a retry after a partial success is harmless.
        while start < rows.len() {
            let (n, sql) = self.builder.build(&rows[start..], self.budget)?;
            conn.query_drop(sql)?;
            start += n;
        }
        Ok(())
    }
}

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
    pub rx: Receiver<Envelope>,
    pub acks: Sender<Ack>,
    pub sink: S,
    pub settings: WriterSettings,
    pub shutdown: Shutdown,
    pub metrics: std::sync::Arc<Metrics>,
}

impl<S: BatchSink> Writer<S> {
    /// Runs until the channel is closed and drained.
    pub fn run(mut self) {
        let mut batch: Vec<Envelope> = Vec::with_capacity(self.settings.batch_size);
        let mut deadline: Option<Instant> = None;
        loop {
            let received = match deadline {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(d) => self.rx.recv_deadline(d),
            };
            match received {
                Ok(env) => {
                    if batch.is_empty() {
                        deadline = Some(Instant::now() + self.settings.flush_interval);
                    }
                    batch.push(env);
                    // Take what is already queued without a deadline check per row.
                    while batch.len() < self.settings.batch_size {
                        match self.rx.try_recv() {
                            Ok(env) => batch.push(env),
                            Err(_) => break,
                        }
                    }
                    if batch.len() >= self.settings.batch_size {
                        self.flush(&mut batch);
                        deadline = None;
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

    fn flush(&mut self, batch: &mut Vec<Envelope>) {
        if batch.is_empty() {
            return;
        }
        let mut backoff = Backoff::new(
            self.settings.retry_initial,
            self.settings.retry_max,
            self.id as u64,
        );
        loop {
            match self.sink.write(batch) {
                Ok(()) => {
                    Metrics::add(&self.metrics.rows_written, batch.len() as u64);
                    Metrics::add(&self.metrics.batches, 1);
                    let ack: Ack = batch.iter().map(|e| (e.partition, e.offset)).collect();
                    // The consumer outlives the writers; if it is gone the
                    // process is exiting and the offsets stay uncommitted.
                    let _ = self.acks.send(ack);
                    break;
                }
                Err(e) => {
                    if self.shutdown.drain_expired(self.settings.shutdown_timeout) {
                        log::error!(
                            "writer {}: giving up a batch of {} rows at shutdown: {e}; \
                             its offsets stay uncommitted and will be read again",
                            self.id,
                            batch.len()
                        );
                        break;
                    }
                    Metrics::add(&self.metrics.retries, 1);
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

/// Capped exponential backoff with "equal jitter": half the delay is fixed,
/// the other half random, so retries spread out but never collapse to zero.
pub struct Backoff {
    next: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        Backoff {
            next: initial,
            max,
            rng: (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos) | 1,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: plenty for jitter, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let base = self.next;
        let half = base / 2;
        let jitter = half.mul_f64((self.rng % 1_000_000) as f64 / 1_000_000.0);
        self.next = (base * 2).min(self.max);
        half + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Num;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<Vec<i64>>>>,
        fail_first: Arc<Mutex<u32>>,
    }

    impl BatchSink for Recorder {
        fn write(&mut self, rows: &[Envelope]) -> Result<(), WriteError> {
            let mut fail = self.fail_first.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(WriteError::Build(BuildError::RowTooLarge {
                    needed: 1,
                    limit: 0,
                }));
            }
            self.batches
                .lock()
                .unwrap()
                .push(rows.iter().map(|e| e.offset).collect());
            Ok(())
        }
    }

    fn env(offset: i64) -> Envelope {
        Envelope {
            partition: 0,
            offset,
            row: Row {
                id: format!("id-{offset}"),
                order_id: "o".into(),
                quantity: Num::Int(1),
                unit_price: Num::Int(0),
                total_value: Num::Int(0),
                processed_at: None,
            },
        }
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

    fn spawn(
        sink: Recorder,
        s: WriterSettings,
    ) -> (Sender<Envelope>, Receiver<Ack>, std::thread::JoinHandle<()>) {
        let (tx, rx) = crossbeam_channel::bounded(10_000);
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        let w = Writer {
            id: 0,
            rx,
            acks: ack_tx,
            sink,
            settings: s,
            shutdown: Shutdown::new(),
            metrics: Arc::new(Metrics::default()),
        };
        let h = std::thread::spawn(move || w.run());
        (tx, ack_rx, h)
    }

    #[test]
    fn full_batches_and_a_final_partial_one_in_order() {
        let rec = Recorder::default();
        // A flush interval far longer than the test: only size and close flush.
        let (tx, acks, h) = spawn(rec.clone(), settings(4, 600_000));
        for o in 0..10 {
            tx.send(env(o)).unwrap();
        }
        drop(tx);
        h.join().unwrap();
        let batches = rec.batches.lock().unwrap().clone();
        let flat: Vec<i64> = batches.iter().flatten().copied().collect();
        assert_eq!(flat, (0..10).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.len() <= 4));
        let acked: Vec<i64> = acks.try_iter().flatten().map(|(_, o)| o).collect();
        assert_eq!(acked, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn partial_batch_flushes_after_the_interval() {
        let rec = Recorder::default();
        let (tx, acks, h) = spawn(rec.clone(), settings(1000, 20));
        tx.send(env(1)).unwrap();
        tx.send(env(2)).unwrap();
        // The channel stays open: only the interval can flush this batch.
        let ack = acks.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(ack, vec![(0, 1), (0, 2)]);
        drop(tx);
        h.join().unwrap();
    }

    #[test]
    fn failed_batch_is_retried_and_acked_once() {
        let rec = Recorder::default();
        *rec.fail_first.lock().unwrap() = 3;
        let (tx, acks, h) = spawn(rec.clone(), settings(2, 600_000));
        tx.send(env(0)).unwrap();
        tx.send(env(1)).unwrap();
        drop(tx);
        h.join().unwrap();
        assert_eq!(rec.batches.lock().unwrap().clone(), vec![vec![0, 1]]);
        assert_eq!(acks.try_iter().count(), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 1);
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400));
        assert!(d.iter().all(|x| *x <= Duration::from_millis(1000)));
    }
}
