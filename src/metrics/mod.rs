//! Counters and gauges, shared by the consumer, the writers and the
//! Prometheus endpoint.
//!
//! The prometheus-client types are the storage (each is an atomic behind an
//! `Arc`), so the run summary, the progress line and `/metrics` all read the
//! same numbers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::Part;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

mod batch_histogram;
mod process;
mod registry;

pub use batch_histogram::BatchHistogram;
pub use process::ProcessUsage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: i32,
}

impl PartitionLabel {
    pub fn of(part: Part) -> PartitionLabel {
        PartitionLabel {
            topic: part.topic.name().to_owned(),
            partition: part.partition,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    /// `transient` (the batch is retried) or `data` (the batch is split).
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabel {
    /// `below_start` (retention deleted unread messages), `beyond_end` (the
    /// topic was recreated, or the group moved) or `replaced` (the log's
    /// cluster or topic id changed).
    pub side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    /// The target table, as configured (`mysql.table`).
    pub table: String,
    /// `committed` or `rolled_back`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    /// A route's target table.
    pub table: String,
}

/// A batch transaction that committed.
pub const COMMITTED: &str = "committed";
/// A batch transaction that failed and was rolled back (it is retried).
pub const ROLLED_BACK: &str = "rolled_back";

fn write_histogram() -> Histogram {
    // 1 ms to ~65 s, as batch_duration_seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The values of [`SideLabel`].
const SIDES: [&str; 3] = ["below_start", "beyond_end", "replaced"];

#[derive(Debug)]
pub struct Metrics {
    /// Messages read from Kafka.
    pub consumed: Counter,
    /// Rows durable in MySQL (a row updated twice counts twice).
    pub rows_written: Counter,
    /// Statements that succeeded.
    pub batches: Counter,
    /// Statements attempted (more than `batches` when rows are isolated).
    pub statements: Counter,
    /// Rows deleted by tombstones.
    pub rows_deleted: Counter,
    /// Update-mode rows whose key matched no row of their table.
    pub rows_not_found: Family<TableLabel, Counter>,
    /// Messages stored in (or, in skip mode, logged to) the dead-letter destination.
    pub dead_lettered: Counter,
    /// Messages passed over without a write: undecodable ones in skip mode,
    /// and tombstones when deletes are off.
    pub skipped: Counter,
    /// Failed statements, by error class.
    pub retries: Family<ClassLabel, Counter>,
    /// Times fetching was paused because the writers stayed behind for
    /// longer than the pause threshold (a MySQL outage, say).
    pub fetch_pauses: Counter,
    /// Partitions rewound to a message fetched after fetching was paused
    /// (it is fetched again on resume).
    pub rewinds: Counter,
    /// Batches that kept failing on a server error the classifier does not
    /// know, until their failing rows were isolated as data errors.
    pub unknown_errors_as_data: Counter,
    /// Rounds ended because a table changed under the sink (a column or the
    /// table gone, a column added that needs a value): each was followed
    /// by one that described the tables and compiled the plans again.
    pub plan_rebuilds: Counter,
    /// Partitions whose messages arrived outside the batch queue (correct,
    /// only slower; a partition the rebalance callback could not attach).
    pub unbatched_partitions: Counter,
    /// Partitions claimed in the offsets table (a new generation each).
    pub claims: Counter,
    /// Rows dropped because their partition had been claimed by another
    /// owner (or again by this one) since they were read.
    pub fenced_rows: Counter,
    /// Rebalances that assigned partitions to this member (an empty
    /// assignment counts too).
    pub assignments: Counter,
    /// Partitions this member holds.
    pub assigned_partitions: Gauge,
    /// 1 once shutdown was requested and the drain runs.
    pub draining: Gauge,
    /// 1 while `/readyz` would answer 200 (checked every few seconds).
    pub ready: Gauge,
    /// Offset commits Kafka confirmed.
    pub commits: Counter,
    /// Offset commits Kafka refused (they are retried).
    pub commit_failures: Counter,
    /// Seconds from a batch's first write attempt to its acknowledgement.
    pub batch_seconds: Histogram,
    /// Seconds of one batch transaction, from its first statement to its
    /// commit or rollback.
    pub write_seconds: Family<WriteLabel, Histogram>,
    /// Per message made durable (written or dead-lettered by a writer):
    /// seconds from its Kafka timestamp to the commit.
    pub event_lag_seconds: BatchHistogram,
    /// Per partition, the Kafka timestamp (seconds since the epoch) of the
    /// newest message made durable: `time() - this` is how far MySQL is
    /// behind while there is lag.
    pub newest_durable_timestamp: Family<PartitionLabel, Gauge<f64, AtomicU64>>,
    pub committed_offset: Family<PartitionLabel, Gauge>,
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Messages between what is durable (MySQL's next offset in
    /// exactly-once, Kafka's committed offset in at-least-once) and the
    /// high watermark: unlike `consumer_lag`, it stays up while reads go on
    /// and writes do not land.
    pub durable_lag: Family<PartitionLabel, Gauge>,
    /// Partitions started elsewhere than the offset the sink held, which
    /// Kafka no longer had (`kafka.on_out_of_range`).
    pub offset_resets: Family<SideLabel, Counter>,
    /// Messages those resets leave unwritten for good.
    pub offsets_lost: Family<SideLabel, Counter>,
    /// Rows queued in the writers' channels.
    pub channel_depth: Gauge,
    /// MySQL connections checked out of the pool.
    pub pool_in_use: Gauge,
    /// Writer threads started (`sink.writers`): with `writer_idle_seconds`,
    /// how many are busy.
    pub writers: Gauge,
    /// The process's CPU seconds and resident memory, read at each scrape
    /// (`process_cpu_seconds_total`, `process_resident_memory_bytes`).
    pub process_cpu_seconds: Counter<f64, AtomicU64>,
    pub process_resident_bytes: Gauge,
    /// Seconds the writers spent waiting for rows (each from its first row
    /// on), summed over writers. A large share of writers × elapsed time
    /// means the source limits the sink; close to zero, MySQL does.
    pub writer_idle_seconds: Counter<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            consumed: Counter::default(),
            rows_written: Counter::default(),
            batches: Counter::default(),
            statements: Counter::default(),
            rows_deleted: Counter::default(),
            rows_not_found: Family::default(),
            dead_lettered: Counter::default(),
            skipped: Counter::default(),
            retries: Family::default(),
            fetch_pauses: Counter::default(),
            rewinds: Counter::default(),
            unbatched_partitions: Counter::default(),
            claims: Counter::default(),
            fenced_rows: Counter::default(),
            unknown_errors_as_data: Counter::default(),
            plan_rebuilds: Counter::default(),
            assignments: Counter::default(),
            assigned_partitions: Gauge::default(),
            draining: Gauge::default(),
            ready: Gauge::default(),
            commits: Counter::default(),
            commit_failures: Counter::default(),
            // 1 ms to ~65 s.
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            write_seconds: Family::new_with_constructor(write_histogram),
            // 10 ms to ~1.5 h: a live stream to a long backfill.
            event_lag_seconds: BatchHistogram::new(exponential_buckets(0.01, 2.0, 20)),
            newest_durable_timestamp: Family::default(),
            committed_offset: Family::default(),
            consumer_lag: Family::default(),
            durable_lag: Family::default(),
            offset_resets: Family::default(),
            offsets_lost: Family::default(),
            channel_depth: Gauge::default(),
            pool_in_use: Gauge::default(),
            writers: Gauge::default(),
            process_cpu_seconds: Counter::default(),
            process_resident_bytes: Gauge::default(),
            writer_idle_seconds: Counter::default(),
        };
        // Every side from the start, at 0: a reset after the first scrape
        // then shows as an increase, and dashboards find the series.
        for side in SIDES {
            let _ = m.offset_resets.get_or_create(&SideLabel { side });
            let _ = m.offsets_lost.get_or_create(&SideLabel { side });
        }
        m
    }
}

impl Metrics {
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// Counts `n` update-mode rows of `table` that found no row.
    pub fn rows_not_found(&self, table: &str, n: u64) {
        self.rows_not_found
            .get_or_create(&TableLabel {
                table: table.to_owned(),
            })
            .inc_by(n);
    }

    pub fn retry(&self, class: &'static str) {
        self.retries.get_or_create(&ClassLabel { class }).inc();
    }

    /// The histogram of `table`'s batch transactions that ended in
    /// `outcome`, to keep (it shares its storage with the family).
    pub fn write_histogram(&self, table: &str, outcome: &'static str) -> Histogram {
        self.write_seconds
            .get_or_create(&WriteLabel {
                table: table.to_owned(),
                outcome,
            })
            .clone()
    }

    /// Records messages just made durable, given as (partition, Kafka
    /// timestamp in ms) with negative timestamps for none: each one's event
    /// lag at `now_ms`, and each partition's newest timestamp. Runs of one
    /// partition (the usual batch) update its gauge once.
    pub fn record_durable(&self, now_ms: i64, stamps: impl IntoIterator<Item = (Part, i64)>) {
        let mut newest: Option<(Part, i64)> = None;
        let lags = stamps
            .into_iter()
            .filter(|&(_, ts)| ts >= 0)
            .map(|(partition, ts)| {
                match &mut newest {
                    Some((p, n)) if *p == partition => *n = (*n).max(ts),
                    _ => {
                        if let Some((p, n)) = newest {
                            self.raise_newest(p, n);
                        }
                        newest = Some((partition, ts));
                    }
                }
                // A clock behind the producer's is no lag.
                (now_ms - ts).max(0) as f64 / 1e3
            });
        self.event_lag_seconds.observe_all(lags);
        if let Some((p, n)) = newest {
            self.raise_newest(p, n);
        }
    }

    /// Drops the per-partition series of partitions this member no longer
    /// holds: left behind, their last lag would read as work waiting here
    /// (and hold up the stalled alert) long after another member took them.
    pub fn forget_partitions(&self, partitions: &[Part]) {
        for &part in partitions {
            let label = PartitionLabel::of(part);
            self.consumer_lag.remove(&label);
            self.durable_lag.remove(&label);
            self.committed_offset.remove(&label);
            self.newest_durable_timestamp.remove(&label);
        }
    }

    /// Moves a partition's newest durable timestamp forward, never back:
    /// at-least-once writers of one partition finish in any order.
    fn raise_newest(&self, part: Part, ts_ms: i64) {
        let gauge = self
            .newest_durable_timestamp
            .get_or_create(&PartitionLabel::of(part));
        // The gauge holds an f64's bits; for non-negative values those
        // order as the values do, so an integer max is the float max.
        gauge
            .inner()
            .fetch_max((ts_ms as f64 / 1e3).to_bits(), Ordering::Relaxed);
    }

    fn retries_of(&self, class: &'static str) -> u64 {
        self.retries.get_or_create(&ClassLabel { class }).get()
    }

    /// Counts a reset of one partition that leaves `lost` messages unwritten.
    pub fn reset(&self, side: &'static str, lost: u64) {
        let label = SideLabel { side };
        self.offset_resets.get_or_create(&label).inc();
        self.offsets_lost.get_or_create(&label).inc_by(lost);
    }

    fn sum_over_sides(family: &Family<SideLabel, Counter>) -> u64 {
        SIDES
            .into_iter()
            .map(|side| family.get_or_create(&SideLabel { side }).get())
            .sum()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            consumed: self.consumed.get(),
            rows_written: self.rows_written.get(),
            batches: self.batches.get(),
            statements: self.statements.get(),
            rows_deleted: self.rows_deleted.get(),
            dead_lettered: self.dead_lettered.get(),
            skipped: self.skipped.get(),
            retries: self.retries_of("transient"),
            fetch_pauses: self.fetch_pauses.get(),
            commits: self.commits.get(),
            commit_failures: self.commit_failures.get(),
            writer_idle_ms: (self.writer_idle_seconds.get() * 1e3) as u64,
            claims: self.claims.get(),
            fenced_rows: self.fenced_rows.get(),
            unknown_errors_as_data: self.unknown_errors_as_data.get(),
            unbatched_partitions: self.unbatched_partitions.get(),
            offset_resets: Self::sum_over_sides(&self.offset_resets),
            offsets_lost: Self::sum_over_sides(&self.offsets_lost),
        }
    }

    /// Brings the process figures up to date (before a scrape).
    pub fn refresh_process(&self) {
        let usage = ProcessUsage::read();
        // A counter that is only ever set: the kernel does the counting.
        self.process_cpu_seconds
            .inner()
            .store(usage.cpu_seconds.to_bits(), Ordering::Relaxed);
        self.process_resident_bytes
            .set(i64::try_from(usage.resident_bytes).unwrap_or(i64::MAX));
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
    /// Transient failures that were retried.
    pub retries: u64,
    pub fetch_pauses: u64,
    pub commits: u64,
    pub commit_failures: u64,
    /// `writer_idle_seconds`, in milliseconds.
    pub writer_idle_ms: u64,
    pub claims: u64,
    pub fenced_rows: u64,
    pub unknown_errors_as_data: u64,
    pub unbatched_partitions: u64,
    /// Partitions reset because Kafka no longer had their offset.
    pub offset_resets: u64,
    /// Messages those resets leave unwritten.
    pub offsets_lost: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::p;

    #[test]
    fn durable_messages_give_lags_and_each_partitions_newest_timestamp() {
        let m = Metrics::default();
        m.record_durable(
            10_000,
            [(p(0), 9_000), (p(0), 7_000), (p(1), 4_000), (p(0), -1)],
        );
        // An older batch finishing later leaves the newest where it was.
        m.record_durable(11_000, [(p(0), 8_000), (p(1), 6_000)]);
        let newest = |q| {
            m.newest_durable_timestamp
                .get_or_create(&PartitionLabel::of(p(q)))
                .get()
        };
        assert_eq!((newest(0), newest(1)), (9.0, 6.0));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry()).unwrap();
        // 1 + 3 + 6 + 3 + 5 seconds over five timestamped messages.
        assert!(
            text.contains("kafka_mysql_sink_event_lag_seconds_sum 18.0"),
            "{text}"
        );
        assert!(text.contains("kafka_mysql_sink_event_lag_seconds_count 5"));
    }

    #[test]
    fn a_partition_let_go_leaves_no_series_behind() {
        let m = Metrics::default();
        for q in [0, 1] {
            let label = PartitionLabel::of(p(q));
            m.consumer_lag.get_or_create(&label).set(5);
            m.committed_offset.get_or_create(&label).set(9);
        }
        m.record_durable(10_000, [(p(0), 9_000), (p(1), 9_000)]);
        m.forget_partitions(&[p(1)]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry()).unwrap();
        assert!(
            text.contains("consumer_lag{topic=\"t\",partition=\"0\"} 5"),
            "{text}"
        );
        assert!(!text.contains("partition=\"1\""), "{text}");
    }

    #[test]
    fn write_durations_are_labelled_by_table_and_outcome() {
        let m = Metrics::default();
        m.write_histogram("orders", COMMITTED).observe(0.5);
        m.write_histogram("orders", ROLLED_BACK).observe(0.25);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry()).unwrap();
        for want in [
            "kafka_mysql_sink_write_duration_seconds_sum{table=\"orders\",outcome=\"committed\"} 0.5",
            "kafka_mysql_sink_write_duration_seconds_count{table=\"orders\",outcome=\"rolled_back\"} 1",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }
}
