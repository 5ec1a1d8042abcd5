//! Counters and gauges, shared by the consumer, the writers and the
//! Prometheus endpoint.
//!
//! The prometheus-client types are the storage (each is an atomic behind an
//! `Arc`), so the run summary, the progress line and `/metrics` all read the
//! same numbers.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: i32,
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
    /// Offset commits Kafka confirmed.
    pub commits: Counter,
    /// Offset commits Kafka refused (they are retried).
    pub commit_failures: Counter,
    /// Seconds from a batch's first write attempt to its acknowledgement.
    pub batch_seconds: Histogram,
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
    /// Seconds the writers spent waiting for rows (each from its first row
    /// on), summed over writers. A large share of writers × elapsed time
    /// means the source limits the sink; close to zero, MySQL does.
    pub writer_idle_seconds: Counter<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            consumed: Counter::default(),
            rows_written: Counter::default(),
            batches: Counter::default(),
            statements: Counter::default(),
            rows_deleted: Counter::default(),
            dead_lettered: Counter::default(),
            skipped: Counter::default(),
            retries: Family::default(),
            fetch_pauses: Counter::default(),
            rewinds: Counter::default(),
            unbatched_partitions: Counter::default(),
            claims: Counter::default(),
            fenced_rows: Counter::default(),
            unknown_errors_as_data: Counter::default(),
            assignments: Counter::default(),
            assigned_partitions: Gauge::default(),
            draining: Gauge::default(),
            commits: Counter::default(),
            commit_failures: Counter::default(),
            // 1 ms to ~65 s.
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            committed_offset: Family::default(),
            consumer_lag: Family::default(),
            durable_lag: Family::default(),
            offset_resets: Family::default(),
            offsets_lost: Family::default(),
            channel_depth: Gauge::default(),
            pool_in_use: Gauge::default(),
            writer_idle_seconds: Counter::default(),
        }
    }
}

impl Metrics {
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    pub fn retry(&self, class: &'static str) {
        self.retries.get_or_create(&ClassLabel { class }).inc();
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
        ["below_start", "beyond_end", "replaced"]
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

    /// A registry exposing these metrics (sharing their storage).
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("kafka_mysql_sink");
        r.register(
            "messages_consumed",
            "Messages read from Kafka",
            self.consumed.clone(),
        );
        r.register(
            "rows_written",
            "Rows upserted into MySQL",
            self.rows_written.clone(),
        );
        r.register(
            "rows_deleted",
            "Rows deleted by tombstones",
            self.rows_deleted.clone(),
        );
        r.register("batches", "Statements that succeeded", self.batches.clone());
        r.register(
            "statements",
            "Statements attempted",
            self.statements.clone(),
        );
        r.register(
            "skipped",
            "Messages skipped without a write",
            self.skipped.clone(),
        );
        r.register(
            "dead_lettered",
            "Messages sent to the dead-letter destination",
            self.dead_lettered.clone(),
        );
        r.register(
            "retries",
            "Failed statements by error class",
            self.retries.clone(),
        );
        r.register(
            "fetch_pauses",
            "Times fetching was paused because the writers stayed behind",
            self.fetch_pauses.clone(),
        );
        r.register(
            "rewinds",
            "Partitions rewound to a message fetched after fetching was paused",
            self.rewinds.clone(),
        );
        r.register(
            "unknown_errors_as_data",
            "Batches whose unknown server error was taken for a data error after repeated attempts",
            self.unknown_errors_as_data.clone(),
        );
        r.register(
            "claims",
            "Partitions claimed in the offsets table",
            self.claims.clone(),
        );
        r.register(
            "fenced_rows",
            "Rows dropped because another claim of their partition came after they were read",
            self.fenced_rows.clone(),
        );
        r.register(
            "unbatched_partitions",
            "Partitions read one message at a time, outside the batch queue",
            self.unbatched_partitions.clone(),
        );
        r.register(
            "assignments",
            "Rebalances that assigned partitions to this member",
            self.assignments.clone(),
        );
        r.register(
            "assigned_partitions",
            "Partitions this member holds",
            self.assigned_partitions.clone(),
        );
        r.register(
            "draining",
            "1 once shutdown was requested and the drain runs",
            self.draining.clone(),
        );
        r.register(
            "commits",
            "Offset commits confirmed by Kafka",
            self.commits.clone(),
        );
        r.register(
            "commit_failures",
            "Offset commits refused by Kafka (retried)",
            self.commit_failures.clone(),
        );
        r.register(
            "batch_duration_seconds",
            "Time from a batch's first write attempt to its acknowledgement",
            self.batch_seconds.clone(),
        );
        r.register(
            "committed_offset",
            "Last offset committed to Kafka, per partition",
            self.committed_offset.clone(),
        );
        r.register(
            "consumer_lag",
            "Messages between the read position and the high watermark, per partition",
            self.consumer_lag.clone(),
        );
        r.register(
            "durable_lag",
            "Messages between what is durable in MySQL (exactly-once: MySQL's next offset; \
             at-least-once: Kafka's committed offset) and the high watermark, per partition",
            self.durable_lag.clone(),
        );
        r.register(
            "offset_resets",
            "Partitions started elsewhere than the offset the sink held, which Kafka no longer had",
            self.offset_resets.clone(),
        );
        r.register(
            "offsets_lost",
            "Messages never to be written because of offset resets",
            self.offsets_lost.clone(),
        );
        r.register(
            "channel_depth",
            "Rows queued for the writers",
            self.channel_depth.clone(),
        );
        r.register(
            "writer_idle_seconds",
            "Seconds writers spent waiting for rows, summed over writers",
            self.writer_idle_seconds.clone(),
        );
        r.register(
            "pool_connections_in_use",
            "MySQL connections checked out of the pool",
            self.pool_in_use.clone(),
        );
        r
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

/// What the process itself used, for the summary line and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessUsage {
    /// User plus system CPU seconds.
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the kernel (socket reads and
    /// writes, page faults): tells whether a change should aim at our code
    /// or at the number of system calls.
    pub system_seconds: f64,
    /// Peak resident memory (VmHWM) in MiB.
    pub peak_rss_mib: f64,
    /// Minor page faults: pages the kernel had to map (and clear) for the
    /// process, a cost that shows in `system_seconds` and not in profiles
    /// of our code.
    pub page_faults: u64,
    /// Times a thread of the process gave up its core to wait (for a
    /// socket, a channel, a lock) and was woken again. On a machine it
    /// shares with MySQL, each wake-up can take a core from MySQL and
    /// leave its caches cold.
    pub waits: u64,
    /// Times a thread of the process was preempted.
    pub preemptions: u64,
}

impl ProcessUsage {
    /// Reads the figures (Linux; zero elsewhere).
    pub fn read() -> ProcessUsage {
        // VmHWM rather than getrusage's ru_maxrss: the latter also counts the
        // parent's memory between fork and exec.
        let peak_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of /proc/self/stat, in clock
        // ticks; the command name (field 2) may hold spaces, so count from
        // the closing parenthesis.
        // minflt is field 10.
        let (user, system, faults) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let faults = f.get(7)?.parse::<u64>().ok()?;
                let user = f.get(11)?.parse::<f64>().ok()?;
                let system = f.get(12)?.parse::<f64>().ok()?;
                Some((user / 100.0, system / 100.0, faults))
            })
            .unwrap_or((0.0, 0.0, 0));
        // Summed over every thread, as only getrusage does (/proc/self/status
        // counts the main thread's alone).
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is writable memory of the right type, which
        // getrusage fills in when it returns 0; zeroed, it is a valid
        // rusage either way.
        let usage = unsafe {
            libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
            usage.assume_init()
        };
        ProcessUsage {
            cpu_seconds: user + system,
            system_seconds: system,
            page_faults: faults,
            peak_rss_mib: peak_kib / 1024.0,
            waits: usage.ru_nvcsw.max(0) as u64,
            preemptions: usage.ru_nivcsw.max(0) as u64,
        }
    }
}
