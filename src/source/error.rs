//! Why the consumer stopped abnormally.

use crate::types::Part;

/// Why the consumer stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot create the Kafka consumer: {0} (check kafka.brokers and kafka.properties)")]
    Create(rdkafka::error::KafkaError),
    #[error("cannot subscribe to topics {topic}: {source}")]
    Subscribe {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create librdkafka's message queue (out of memory?)")]
    Queue,
    #[error("writer {0} stopped unexpectedly; see the log above for its panic")]
    WriterGone(usize),
    #[error("{0}; check that MySQL is reachable and the offsets table writable, then start again")]
    Claim(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error(
        "topic {topic} partition {partition}: librdkafka could not go on reading at offset \
         {offset} (an offset Kafka no longer has; a negative one: the group's offset could not \
         be looked up) and stopped the partition; nothing after what is durable was \
         committed. Start the sink again: kafka.on_out_of_range (now \"{policy}\") decides \
         where the partition goes on"
    )]
    OutOfRangeWhileRunning {
        topic: String,
        partition: i32,
        offset: i64,
        policy: &'static str,
    },
    #[error(
        "cannot record the offset reset of partitions {partitions:?} in Kafka: {source}; \
         nothing of them was written, start again"
    )]
    ResetNotRecorded {
        partitions: Vec<Part>,
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "cannot rewind partition {partition} to offset {offset} after pausing: {source}; \
         stopping so that nothing after it is committed (a restart reads it again)"
    )]
    Seek {
        partition: Part,
        offset: i64,
        source: rdkafka::error::KafkaError,
    },
}
