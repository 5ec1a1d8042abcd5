//! The Prometheus registry over [`Metrics`]: names and help texts of
//! everything `/metrics` exports.

use prometheus_client::registry::Registry;

use super::Metrics;

impl Metrics {
    /// A registry exposing these metrics (sharing their storage): the
    /// sink's under `kafka_mysql_sink_`, the process's under the usual
    /// `process_` names.
    pub fn registry(&self) -> Registry {
        let mut root = Registry::default();
        root.register(
            "process_cpu_seconds",
            "User and system CPU time spent in seconds",
            self.process_cpu_seconds.clone(),
        );
        root.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            self.process_resident_bytes.clone(),
        );
        let r = root.sub_registry_with_prefix("kafka_mysql_sink");
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
        r.register(
            "rows_not_found",
            "Update-mode rows whose key matched no row, by table",
            self.rows_not_found.clone(),
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
            "plan_rebuilds",
            "Times the tables were described and the plans compiled again after a table changed under the sink",
            self.plan_rebuilds.clone(),
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
            "ready",
            "1 while the consumer runs and MySQL answers (what /readyz reports)",
            self.ready.clone(),
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
            "write_duration_seconds",
            "Time of one batch transaction from its first statement to its commit or rollback",
            self.write_seconds.clone(),
        );
        r.register(
            "event_lag_seconds",
            "Time from a message's Kafka timestamp to when it was made durable",
            self.event_lag_seconds.clone(),
        );
        r.register(
            "newest_durable_timestamp_seconds",
            "Kafka timestamp of the newest message made durable, per partition",
            self.newest_durable_timestamp.clone(),
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
        r.register("writers", "Writer threads started", self.writers.clone());
        root
    }
}
