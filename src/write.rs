//! Writer threads: rows in, multi-row upserts out, acknowledgements back.
//!
//! Each writer owns one channel and one batch. A batch is written when it is
//! full or when its oldest row has waited `flush_interval`, whichever comes
//! first. Rows of one key always go to the same writer, which keeps the line:
//! a batch that fails transiently is retried (see [`crate::retry`]) and the
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
use mysql::prelude::Queryable;

use crate::db::{Pool, PooledConn};
use crate::decode::Row;
use crate::dlq::{self, DlqTarget};
use crate::metrics::Metrics;
use crate::retry::{classify, Backoff, ErrorClass};
use crate::route::{self, Inbox};
use crate::shutdown::Shutdown;
use crate::sql::{self, AsRow, BuildError, UpsertBuilder};

/// What a message asks of the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert or update the row.
    Upsert(Row),
    /// A tombstone: delete the row with this `id`.
    Delete(String),
    /// The message is not an order; it goes to the dead-letter destination
    /// with this reason.
    Reject(String),
}

/// A message's key and payload as they arrived, kept for the dead-letter
/// destination. Both live in one allocation (see [`Row`] for why that
/// matters); the default holds neither and allocates nothing, which is what
/// messages carry when dead letters are only logged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Raw {
    bytes: Box<[u8]>,
    key_len: Option<usize>,
    has_payload: bool,
}

impl Raw {
    pub fn new(key: Option<&[u8]>, payload: Option<&[u8]>) -> Raw {
        let (k, p) = (key.unwrap_or_default(), payload.unwrap_or_default());
        let mut bytes = Vec::with_capacity(k.len() + p.len());
        bytes.extend_from_slice(k);
        bytes.extend_from_slice(p);
        Raw {
            bytes: bytes.into_boxed_slice(),
            key_len: key.map(<[u8]>::len),
            has_payload: payload.is_some(),
        }
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.key_len.map(|n| &self.bytes[..n])
    }

    pub fn payload(&self) -> Option<&[u8]> {
        let start = self.key_len.unwrap_or(0);
        self.has_payload.then(|| &self.bytes[start..])
    }
}

/// A message on its way to MySQL, with the Kafka coordinates it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub partition: i32,
    pub offset: i64,
    pub op: Op,
    pub raw: Raw,
}

impl Envelope {
    /// A plain upsert with no raw message attached.
    pub fn upsert(partition: i32, offset: i64, row: Row) -> Envelope {
        Envelope {
            partition,
            offset,
            op: Op::Upsert(row),
            raw: Raw::default(),
        }
    }

    /// The message's key as it arrived, where it was kept: upserts keep it in
    /// their row (one allocation for both), other messages in `raw`.
    pub fn raw_key(&self) -> Option<&[u8]> {
        match &self.op {
            Op::Upsert(row) if row.raw_payload().is_some() => row.raw_key(),
            _ => self.raw.key(),
        }
    }

    /// The message's payload as it arrived, where it was kept.
    pub fn raw_payload(&self) -> Option<&[u8]> {
        match &self.op {
            Op::Upsert(row) if row.raw_payload().is_some() => row.raw_payload(),
            _ => self.raw.payload(),
        }
    }

    /// The writer this message belongs to: by `id` for upserts and deletes,
    /// so versions of a key stay in order; by position for rejects, which
    /// have no usable key.
    pub fn writer(&self, writers: usize) -> usize {
        match &self.op {
            Op::Upsert(row) => route::writer_for(row.id(), writers),
            Op::Delete(id) => route::writer_for(id, writers),
            Op::Reject(_) => (self.offset.unsigned_abs() % writers as u64) as usize,
        }
    }
}

/// Rows handed from the consumer to a writer in one channel operation.
pub type Chunk = Vec<Envelope>;

/// Offsets made durable by one batch, sent back to the consumer.
pub type Ack = Vec<(i32, i64)>;

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no MySQL connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("MySQL refused the statement: {0}")]
    Mysql(#[from] mysql::Error),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("Kafka: {0}")]
    Kafka(String),
}

/// A message that could not be written, and why.
pub struct DeadLetter<'a> {
    pub env: &'a Envelope,
    pub error: String,
}

/// Where a writer sends its work; MySQL in production, something cheaper in
/// benchmarks of the pipeline itself.
pub trait BatchSink: Send {
    /// Applies `items`, which are all upserts or all deletes, in order.
    fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError>;
    /// Stores messages that cannot be written. Must be idempotent.
    fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), WriteError>;
}

/// How long a writer keeps an idle connection before handing it back, well
/// under any server's `wait_timeout`.
const CONN_IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Writes batches as multi-row upserts over a pooled connection.
///
/// The connection is kept from one batch to the next instead of being
/// checked out per batch: r2d2_mysql pings a connection every time it goes
/// back to the pool, which cost a round trip per batch. It is handed back
/// after a driver or network error (so a broken one is replaced) and after
/// sitting idle for a minute (see [`MysqlSink::with_idle_limit`]).
pub struct MysqlSink {
    pool: Pool,
    conn: Option<(PooledConn, Instant)>,
    idle_limit: Duration,
    builder: UpsertBuilder,
    table: String,
    budget: usize,
    topic: String,
    dlq: DlqTarget,
    buf: String,
}

impl MysqlSink {
    pub fn new(
        pool: Pool,
        builder: UpsertBuilder,
        table: String,
        statement_budget: usize,
        topic: String,
        dlq: DlqTarget,
    ) -> MysqlSink {
        MysqlSink {
            pool,
            conn: None,
            idle_limit: CONN_IDLE_LIMIT,
            builder,
            table,
            budget: statement_budget,
            topic,
            dlq,
            buf: String::new(),
        }
    }

    /// Hands an idle connection back after `limit` instead of a minute.
    pub fn with_idle_limit(mut self, limit: Duration) -> MysqlSink {
        self.idle_limit = limit;
        self
    }

    /// Runs `statements` on the writer's connection, checking one out first
    /// if it has none (or let its connection idle too long).
    fn with_conn<T>(
        &mut self,
        statements: impl FnOnce(&mut Self, &mut PooledConn) -> Result<T, WriteError>,
    ) -> Result<T, WriteError> {
        // An idle-expired connection goes back to the pool (which pings it
        // and drops it if the server closed it) before another is taken, so
        // a pool no larger than the writer count is never short by one.
        let kept = match self.conn.take() {
            Some((c, used)) if used.elapsed() < self.idle_limit => Some(c),
            _ => None,
        };
        let mut conn = match kept {
            Some(c) => c,
            None => self.pool.get()?,
        };
        let result = statements(self, &mut conn);
        let keep = match &result {
            Ok(_) => true,
            // The server answered, so the connection works, unless the
            // answer was that it is shutting down (1053) or killed it (1927).
            Err(WriteError::Mysql(mysql::Error::MySqlError(e))) => !matches!(e.code, 1053 | 1927),
            _ => false,
        };
        if keep {
            self.conn = Some((conn, Instant::now()));
        }
        // Otherwise it goes back to the pool, which drops it if it is broken.
        result
    }

    fn delete(&mut self, ids: &[&str]) -> Result<(), WriteError> {
        self.with_conn(|this, conn| this.delete_on(conn, ids))
    }

    fn delete_on(&mut self, conn: &mut PooledConn, ids: &[&str]) -> Result<(), WriteError> {
        let mut start = 0;
        while start < ids.len() {
            self.buf.clear();
            self.buf.push_str("DELETE FROM ");
            self.buf.push_str(&self.table);
            self.buf.push_str(" WHERE `id` IN (");
            let mut n = 0;
            for id in &ids[start..] {
                let mark = self.buf.len();
                if n > 0 {
                    self.buf.push(',');
                }
                sql::push_str_literal(&mut self.buf, id);
                if self.buf.len() + 1 > self.budget && n > 0 {
                    self.buf.truncate(mark);
                    break;
                }
                n += 1;
            }
            self.buf.push(')');
            conn.query_drop(&self.buf)?;
            start += n;
        }
        Ok(())
    }
}

impl AsRow for Envelope {
    fn as_row(&self) -> Option<&Row> {
        match &self.op {
            Op::Upsert(row) => Some(row),
            _ => None,
        }
    }
}

impl BatchSink for MysqlSink {
    fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError> {
        if items.iter().all(|e| e.as_row().is_none()) {
            let ids: Vec<&str> = items
                .iter()
                .filter_map(|e| match &e.op {
                    Op::Delete(id) => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            return self.delete(&ids);
        }
        self.with_conn(|this, conn| {
            let mut start = 0;
            // Usually one statement; more only when the batch would exceed
            // max_allowed_packet. Each is atomic on its own and all are
            // idempotent, so a retry after a partial success is harmless.
            while start < items.len() {
                let (n, sql) = this.builder.build(&items[start..], this.budget)?;
                conn.query_drop(sql)?;
                start += n;
            }
            Ok(())
        })
    }

    fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), WriteError> {
        let table = match &self.dlq {
            DlqTarget::Skip => {
                for l in letters {
                    log::warn!(
                        "skipping message {}/{}@{}: {}",
                        self.topic,
                        l.env.partition,
                        l.env.offset,
                        l.error
                    );
                }
                return Ok(());
            }
            DlqTarget::Table(t) => t.clone(),
            DlqTarget::Topic(t) => return t.send(letters),
        };
        self.with_conn(|this, conn| {
            for chunk in letters.chunks(100) {
                this.buf.clear();
                dlq::push_table_insert(&mut this.buf, &table, &this.topic, chunk);
                conn.query_drop(&this.buf)?;
            }
            Ok(())
        })
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
    pub rx: Inbox,
    pub acks: Sender<Ack>,
    pub sink: S,
    pub settings: WriterSettings,
    pub shutdown: Shutdown,
    pub metrics: Arc<Metrics>,
}

/// A failure that should be retried as a whole.
struct Transient(WriteError);

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
                    let ack: Ack = batch.iter().map(|e| (e.partition, e.offset)).collect();
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

    /// Applies the batch in order: runs of upserts and runs of deletes as
    /// statements, rejects straight to `dead`. Data errors are isolated;
    /// a transient error aborts the attempt (the whole batch is retried,
    /// which is safe because every statement is idempotent).
    fn apply(
        &mut self,
        batch: &[Envelope],
        dead: &mut Vec<(usize, String)>,
    ) -> Result<Applied, Transient> {
        let mut applied = Applied::default();
        let mut i = 0;
        while i < batch.len() {
            let kind = std::mem::discriminant(&batch[i].op);
            let j = i + batch[i..]
                .iter()
                .take_while(|e| std::mem::discriminant(&e.op) == kind)
                .count();
            match &batch[i].op {
                Op::Reject(reason) => {
                    for (k, e) in batch[i..j].iter().enumerate() {
                        let reason = match &e.op {
                            Op::Reject(r) => r.clone(),
                            _ => reason.clone(),
                        };
                        dead.push((i + k, reason));
                    }
                }
                Op::Upsert(_) => {
                    let before = dead.len();
                    self.isolate(&batch[i..j], i, dead)?;
                    applied.upserts += (j - i - (dead.len() - before)) as u64;
                }
                Op::Delete(_) => {
                    let before = dead.len();
                    self.isolate(&batch[i..j], i, dead)?;
                    applied.deletes += (j - i - (dead.len() - before)) as u64;
                }
            }
            i = j;
        }
        Ok(applied)
    }

    fn isolate(
        &mut self,
        items: &[Envelope],
        base: usize,
        dead: &mut Vec<(usize, String)>,
    ) -> Result<(), Transient> {
        Metrics::add(&self.metrics.statements, 1);
        match self.sink.write(items) {
            Ok(()) => {
                Metrics::add(&self.metrics.batches, 1);
                Ok(())
            }
            Err(e) => match classify(&e) {
                ErrorClass::Transient => Err(Transient(e)),
                ErrorClass::Data if items.len() == 1 => {
                    self.metrics.retry("data");
                    dead.push((base, e.to_string()));
                    Ok(())
                }
                ErrorClass::Data => {
                    self.metrics.retry("data");
                    let mid = items.len() / 2;
                    self.isolate(&items[..mid], base, dead)?;
                    self.isolate(&items[mid..], base + mid, dead)
                }
            },
        }
    }

    fn store_dead(
        &mut self,
        batch: &[Envelope],
        dead: &[(usize, String)],
    ) -> Result<(), Transient> {
        if dead.is_empty() {
            return Ok(());
        }
        let letters: Vec<DeadLetter<'_>> = dead
            .iter()
            .map(|(i, error)| DeadLetter {
                env: &batch[*i],
                error: error.clone(),
            })
            .collect();
        match self.sink.dead_letter(&letters) {
            Ok(()) => Ok(()),
            Err(e) if classify(&e) == ErrorClass::Transient => Err(Transient(e)),
            Err(e) => {
                // The dead-letter table itself refused them: nothing better
                // is left than the log, which keeps every coordinate.
                for l in &letters {
                    log::error!(
                        "dead letter {}@{} could not be stored ({e}); it was: {}",
                        l.env.partition,
                        l.env.offset,
                        l.error
                    );
                }
                Ok(())
            }
        }
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

#[derive(Default)]
struct Applied {
    upserts: u64,
    deletes: u64,
}

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Num;
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
        WriteError::Mysql(mysql::Error::IoError(std::io::Error::other("gone away")))
    }

    impl BatchSink for Recorder {
        fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError> {
            *self.calls.lock().unwrap() += 1;
            let mut t = self.transient.lock().unwrap();
            if *t > 0 {
                *t -= 1;
                return Err(transient_error());
            }
            if items.iter().any(|e| self.bad.contains(&e.offset)) {
                return Err(data_error());
            }
            self.written
                .lock()
                .unwrap()
                .extend(items.iter().map(|e| e.offset));
            Ok(())
        }
        fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), WriteError> {
            self.dead
                .lock()
                .unwrap()
                .extend(letters.iter().map(|l| (l.env.offset, l.error.clone())));
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
    fn raw_message_parts_round_trip() {
        for (key, payload) in [
            (Some(&b"k1"[..]), Some(&b"{\"id\":1}"[..])),
            (None, Some(&b"p"[..])),
            (Some(&b"k"[..]), None),
            (Some(&b""[..]), Some(&b""[..])),
            (None, None),
        ] {
            let raw = Raw::new(key, payload);
            assert_eq!((raw.key(), raw.payload()), (key, payload));
        }
        assert_eq!(
            (Raw::default().key(), Raw::default().payload()),
            (None, None)
        );
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
        let acked: Vec<i64> = acks.into_iter().flatten().map(|(_, o)| o).collect();
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
        assert_eq!(ack, vec![(0, 1), (0, 2)]);
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
        assert_eq!(acks, vec![vec![(0, 0), (0, 1)]]);
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
