//! The dead-letter destination: where messages go that cannot become rows.
//!
//! A dead letter is durable before its offset counts as done, exactly like a
//! row: the writer that found it stores it (and retries while the
//! destination is unavailable) before acknowledging its batch.
//!
//! - `table`: a row in `<table>_dlq` next to the target table, unique on the
//!   message's Kafka coordinates, so a redelivered message is stored once.
//! - `topic`: the raw message re-published to a Kafka topic, with the error
//!   and the source coordinates as headers (a redelivered message may appear
//!   twice there: Kafka has no upsert).
//! - `skip`: logged and counted, the original Python sink's behaviour.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::error::WriteError;
use crate::config::Config;
use crate::types::DeadLetter;

/// Where dead letters go.
#[derive(Clone)]
pub enum DlqTarget {
    /// Rows in this (already quoted, qualified) table.
    Table(String),
    /// Messages on a Kafka topic.
    Topic(Arc<TopicDlq>),
    /// Logged and counted only.
    Skip,
}

impl std::fmt::Debug for DlqTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DlqTarget::Table(t) => write!(f, "table {t}"),
            DlqTarget::Topic(t) => write!(f, "topic {}", t.topic),
            DlqTarget::Skip => f.write_str("skip"),
        }
    }
}

/// Counts failed deliveries, so a flush can tell whether all of its
/// messages arrived.
#[derive(Default)]
pub(crate) struct DeliveryCounter {
    failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            log::warn!("dead letter not delivered: {e}");
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// librdkafka's default `message.max.bytes`.
const LIBRDKAFKA_DEFAULT_MESSAGE_MAX: usize = 1_000_000;

/// Room for a dead letter's key (up to the table's 1 KiB), its headers
/// (the error and the source coordinates) and the record framing.
const MESSAGE_OVERHEAD: usize = 64 * 1024;

/// Publishes dead letters to a Kafka topic and waits until they are acked.
pub struct TopicDlq {
    pub topic: String,
    timeout: Duration,
    // Writers dead-letter rarely; one producer behind a lock is plenty, and
    // the lock makes "these letters were all delivered" easy to tell.
    producer: Mutex<BaseProducer<DeliveryCounter>>,
}

impl TopicDlq {
    /// A producer for `topic` that accepts every payload the sink accepts.
    pub fn new(config: &Config, topic: &str) -> Result<TopicDlq, String> {
        let kafka = &config.kafka;
        let timeout = config.mysql.timeout;
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &kafka.brokers)
            .set("client.id", "kafka-mysql-sink-dlq")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout.as_millis().to_string());
        // The same security settings as the consumer; consumer-only ones
        // are left out so librdkafka does not warn about each of them.
        for (k, v) in &kafka.properties {
            if is_shared_property(k) {
                cfg.set(k, v);
            }
        }
        // A dead letter carries its message whole (up to max_payload_bytes)
        // plus key and headers; librdkafka's default limit is about 1 MB.
        let needed = config.sink.max_payload_bytes + MESSAGE_OVERHEAD;
        if needed > LIBRDKAFKA_DEFAULT_MESSAGE_MAX {
            cfg.set("message.max.bytes", needed.to_string());
        }
        for (k, v) in &config.dead_letter.properties {
            cfg.set(k, v);
        }
        let producer = cfg
            .create_with_context(DeliveryCounter::default())
            .map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
        Ok(TopicDlq {
            topic: topic.to_string(),
            timeout,
            producer: Mutex::new(producer),
        })
    }

    pub fn send(&self, letters: &[DeadLetter<'_>]) -> Result<(), WriteError> {
        let producer = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let before = producer.context().failed.load(Ordering::SeqCst);
        for l in letters {
            let partition = l.env.coord.partition().to_string();
            let offset = l.env.coord.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "dlq.error",
                    value: Some(l.error.as_str()),
                })
                .insert(Header {
                    key: "dlq.source.topic",
                    value: Some(l.env.coord.part.topic.name()),
                })
                .insert(Header {
                    key: "dlq.source.partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "dlq.source.offset",
                    value: Some(offset.as_str()),
                });
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&self.topic).headers(headers);
            if let Some(k) = l.env.raw_key() {
                record = record.key(k);
            }
            if let Some(p) = l.env.raw_payload() {
                record = record.payload(p);
            }
            crate::produce::send(&producer, record)
                .map_err(|e| WriteError::Kafka(e.to_string()))?;
        }
        producer
            .flush(self.timeout)
            .map_err(|e| WriteError::Kafka(format!("dead letters not acknowledged: {e}")))?;
        let failed = producer.context().failed.load(Ordering::SeqCst) - before;
        if failed > 0 {
            return Err(WriteError::Kafka(format!(
                "{failed} dead letter(s) not delivered to {}",
                self.topic
            )));
        }
        Ok(())
    }
}

/// librdkafka properties that concern the connection (security, timeouts)
/// rather than consuming.
fn is_shared_property(name: &str) -> bool {
    [
        "security.",
        "sasl.",
        "ssl.",
        "socket.",
        "client.",
        "broker.",
        "metadata.",
        "reconnect.",
        "debug",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}
