//! Handing a record to librdkafka's producer, waiting while its local queue
//! is full.
//!
//! `send` fails at once with `QueueFull` when more records are queued than
//! `queue.buffering.max.messages` allows; serving delivery reports (`poll`)
//! is what makes room. The dead-letter topic, the demo and the benchmarks
//! all produce in bursts larger than that queue.

use std::time::Duration;

use rdkafka::error::KafkaResult;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, Partitioner, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

/// Sends `record`, serving delivery reports while the local queue is full;
/// any other error is returned.
pub fn send<'a, C, Part, K, P>(
    producer: &BaseProducer<C, Part>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
) -> KafkaResult<()>
where
    Part: Partitioner,
    C: ProducerContext<Part>,
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
