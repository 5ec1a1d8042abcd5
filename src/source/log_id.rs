//! Which log a partition's offsets belong to: the cluster's id and the
//! topic's id (KIP-516, one incarnation of a topic).
//!
//! Offsets alone tell a recreated topic (or the same name on another
//! cluster) from the old one only while the new log is shorter than the
//! sink's offset: once it has grown past, the old offset looks valid and
//! everything below it would be skipped. Both ids change with the log, so
//! the offsets table keeps the ids its offsets were written under, and a
//! claim that finds others knows the offsets are not this log's. rdkafka has
//! no call for the topic id, so this asks librdkafka's DescribeTopics
//! directly; that needs the cluster's controller, which not every cluster
//! names (librdkafka's mock cluster does not), and then only the cluster id
//! is compared.

use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

/// The ids of a log; either may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogId {
    pub(crate) cluster: Option<String>,
    pub(crate) topic: Option<String>,
}

impl LogId {
    /// As stored: the two ids separated by a space (neither base64 nor a
    /// cluster id holds one), an unknown one empty; `None` when both are.
    pub(crate) fn encode(&self) -> Option<String> {
        if self.cluster.is_none() && self.topic.is_none() {
            return None;
        }
        Some(format!(
            "{} {}",
            self.cluster.as_deref().unwrap_or(""),
            self.topic.as_deref().unwrap_or("")
        ))
    }

    pub(crate) fn decode(text: &str) -> LogId {
        let (cluster, topic) = text.split_once(' ').unwrap_or((text, ""));
        let part = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        LogId {
            cluster: part(cluster),
            topic: part(topic),
        }
    }

    /// Whether the two name different logs: an id known on both sides and
    /// not the same.
    pub(crate) fn differs(&self, other: &LogId) -> bool {
        let differ =
            |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a != b);
        differ(&self.cluster, &other.cluster) || differ(&self.topic, &other.topic)
    }
}

/// The ids of `topic`'s log, as far as they can be learned.
pub(crate) fn log_id<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> LogId {
    let cluster = consumer.client().fetch_cluster_id(timeout);
    let topic = if has_controller(consumer, timeout) {
        topic_id(consumer, topic, timeout)
    } else {
        None
    };
    LogId { cluster, topic }
}

/// Whether the cluster names a controller among its brokers (which
/// DescribeTopics waits for, up to its whole timeout, when there is none).
fn has_controller<C: ConsumerContext>(consumer: &BaseConsumer<C>, timeout: Duration) -> bool {
    let Ok(metadata) = consumer.fetch_metadata(None, timeout) else {
        return false;
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the client pointer is valid while `consumer` lives.
    let controller = unsafe { rd::rd_kafka_controllerid(consumer.client().native_ptr(), ms) };
    metadata.brokers().iter().any(|b| b.id() == controller)
}

/// The id librdkafka gives a topic whose broker reports none (all zero).
const NO_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// `topic`'s id as base64 (as Kafka's tools print it), or `None` when it
/// cannot be learned (an old broker, a lookup that failed or timed out).
fn topic_id<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Option<String> {
    let name = CString::new(topic).ok()?;
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is valid while `consumer` lives (all of this call).
    // Every object created here is destroyed here, once, after its last
    // use: the collection (which copies the names), the queue, the event
    // (which owns the result and the descriptions read from it, and so the
    // strings copied out before it goes). librdkafka accepts null options.
    unsafe {
        let mut names = [name.as_ptr()];
        let topics = rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        if topics.is_null() {
            return None;
        }
        let queue = rd::rd_kafka_queue_new(rk);
        if queue.is_null() {
            rd::rd_kafka_TopicCollection_destroy(topics);
            return None;
        }
        rd::rd_kafka_DescribeTopics(rk, topics, std::ptr::null(), queue);
        let event = rd::rd_kafka_queue_poll(queue, ms);
        let id = if event.is_null() {
            None
        } else {
            let id = id_of(event, topic);
            rd::rd_kafka_event_destroy(event);
            id
        };
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_TopicCollection_destroy(topics);
        id.filter(|id| id != NO_ID)
    }
}

/// The id of `topic` in a DescribeTopics result event.
///
/// # Safety
/// `event` must be a live event from `rd_kafka_DescribeTopics`.
unsafe fn id_of(event: *mut rd::rd_kafka_event_t, topic: &str) -> Option<String> {
    if rd::rd_kafka_event_error(event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return None;
    }
    let result = rd::rd_kafka_event_DescribeTopics_result(event);
    if result.is_null() {
        return None;
    }
    let mut count = 0usize;
    let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
    if descriptions.is_null() {
        return None;
    }
    for i in 0..count {
        let d = *descriptions.add(i);
        if d.is_null() || !rd::rd_kafka_TopicDescription_error(d).is_null() {
            continue;
        }
        let name = rd::rd_kafka_TopicDescription_name(d);
        if name.is_null() || CStr::from_ptr(name).to_bytes() != topic.as_bytes() {
            continue;
        }
        let uuid = rd::rd_kafka_TopicDescription_topic_id(d);
        if uuid.is_null() {
            return None;
        }
        let text = rd::rd_kafka_Uuid_base64str(uuid);
        if text.is_null() {
            return None;
        }
        return Some(CStr::from_ptr(text).to_string_lossy().into_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(cluster: Option<&str>, topic: Option<&str>) -> LogId {
        LogId {
            cluster: cluster.map(str::to_owned),
            topic: topic.map(str::to_owned),
        }
    }

    #[test]
    fn ids_round_trip_and_differ_only_where_both_are_known() {
        for v in [
            id(Some("c1"), Some("t/+1")),
            id(Some("c1"), None),
            id(None, Some("t")),
        ] {
            assert_eq!(LogId::decode(&v.encode().unwrap()), v);
        }
        assert_eq!(LogId::default().encode(), None);
        assert!(id(Some("a"), None).differs(&id(Some("b"), None)));
        assert!(id(Some("a"), Some("x")).differs(&id(Some("a"), Some("y"))));
        assert!(!id(Some("a"), None).differs(&id(Some("a"), Some("y"))));
        assert!(!id(None, Some("x")).differs(&id(Some("b"), None)));
    }
}
