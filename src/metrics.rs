//! Counters shared by the consumer and the writers.
//!
//! Plain relaxed atomics: they are read for the stats line and the run
//! summary, never used to make decisions that need ordering.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages read from Kafka.
    pub consumed: AtomicU64,
    /// Rows durable in MySQL (a row updated twice counts twice).
    pub rows_written: AtomicU64,
    /// Statements that succeeded.
    pub batches: AtomicU64,
    /// Statements attempted (more than `batches` when rows are isolated).
    pub statements: AtomicU64,
    /// Rows deleted by tombstones.
    pub rows_deleted: AtomicU64,
    /// Messages stored in (or, in skip mode, logged to) the dead-letter destination.
    pub dead_lettered: AtomicU64,
    /// Messages passed over without a write: undecodable ones in skip mode,
    /// and tombstones when deletes are off.
    pub skipped: AtomicU64,
    /// Failed statement attempts that were retried.
    pub retries: AtomicU64,
    /// Offset commits Kafka confirmed.
    pub commits: AtomicU64,
    /// Offset commits Kafka refused (they are retried).
    pub commit_failures: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            consumed: Metrics::get(&self.consumed),
            rows_written: Metrics::get(&self.rows_written),
            batches: Metrics::get(&self.batches),
            statements: Metrics::get(&self.statements),
            rows_deleted: Metrics::get(&self.rows_deleted),
            dead_lettered: Metrics::get(&self.dead_lettered),
            skipped: Metrics::get(&self.skipped),
            retries: Metrics::get(&self.retries),
            commits: Metrics::get(&self.commits),
            commit_failures: Metrics::get(&self.commit_failures),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub consumed: u64,
    pub rows_written: u64,
    pub batches: u64,
    pub statements: u64,
    pub rows_deleted: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub retries: u64,
    pub commits: u64,
    pub commit_failures: u64,
}

/// Logs a stats line at a fixed interval, with the rate since the last one.
pub struct StatsLine {
    interval: Option<Duration>,
    last_at: Instant,
    last: Snapshot,
}

impl StatsLine {
    pub fn new(interval_ms: u64) -> StatsLine {
        StatsLine {
            interval: (interval_ms > 0).then(|| Duration::from_millis(interval_ms)),
            last_at: Instant::now(),
            last: Snapshot::default(),
        }
    }

    pub fn tick(&mut self, metrics: &Metrics, in_flight: usize) {
        let Some(interval) = self.interval else {
            return;
        };
        let elapsed = self.last_at.elapsed();
        if elapsed < interval {
            return;
        }
        let now = metrics.snapshot();
        let rate = (now.rows_written - self.last.rows_written) as f64 / elapsed.as_secs_f64();
        log::info!(
            "stats: rows_written={} rows/s={:.0} consumed={} skipped={} dead_lettered={} batches={} retries={} in_flight={} commits={}",
            now.rows_written,
            rate,
            now.consumed,
            now.skipped,
            now.dead_lettered,
            now.batches,
            now.retries,
            in_flight,
            now.commits,
        );
        self.last = now;
        self.last_at = Instant::now();
    }
}
