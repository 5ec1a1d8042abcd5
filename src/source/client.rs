//! The librdkafka settings of the sink's consumer.

use rdkafka::config::ClientConfig;

use crate::config::KafkaConfig;

/// librdkafka settings the sink changes from librdkafka's defaults, which
/// `[kafka.properties]` can still override.
///
/// - `fetch.queue.backoff.ms`: once its prefetch queue is full, librdkafka
///   waits this long before fetching again (a second by default), so during
///   a backfill the queue ran down and refilled in bursts. Refilling as soon
///   as there is room made MySQL spend less CPU per row, and the sink go
///   faster, by the medians of both A/B runs of `make bench-e2e`
///   (docs/performance.md), with more memory held in the queue;
/// - `queued.max.messages.kbytes` bounds that memory. Every partition is
///   forwarded to one queue (see `fetch`), so the bound is for all of them
///   together: ~80,000 messages of a few hundred bytes, or a handful at the
///   largest payload the sink accepts, which librdkafka refills as they go.
pub(crate) const PREFETCH_DEFAULTS: [(&str, &str); 2] = [
    ("fetch.queue.backoff.ms", "10"),
    ("queued.max.messages.kbytes", "16384"),
];

/// The librdkafka settings for the sink's consumer.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("client.id", "kafka-mysql-sink")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // Never reset by librdkafka: every assigned partition is given its
        // start (see out_of_range), and an offset that falls out of the log
        // while running is reported as an error instead of skipped past.
        .set("auto.offset.reset", "error");
    for (k, v) in PREFETCH_DEFAULTS {
        c.set(k, v);
    }
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_defaults_apply_unless_the_properties_say_otherwise() {
        let mut cfg = KafkaConfig::default();
        let c = client_config(&cfg);
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));
        cfg.properties
            .insert("fetch.queue.backoff.ms".into(), "500".into());
        let c = client_config(&cfg);
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("500"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));
    }
}
