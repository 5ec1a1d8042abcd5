//! Deterministic seed-format orders, and the values MySQL must then hold.
//!
//! Test code, shared by the tests (through `common`), the demo and the
//! benchmarks (each includes this file with `#[path]`), so that all of them
//! check the table against the same expectations. Prices are generated in
//! whole cents and printed with two decimals, so the expected DECIMAL(10,2)
//! text is exact.
#![allow(dead_code)]

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// An order as the table must store it; decimals as MySQL prints them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expected {
    pub id: String,
    pub order_id: String,
    pub quantity: i64,
    pub unit_price: String,
    pub total_value: String,
    pub processed_at: Option<i64>,
}

/// The `id` of order number `i`: shaped like a random (version 4) UUID, 36
/// characters.
///
/// Real order ids are random UUIDs, so rows reach MySQL in no key order and
/// every insert lands somewhere else in the primary-key B-tree. Counting
/// ids up would flatter whatever writes them in generation order: InnoDB
/// appends ascending keys far faster than it inserts scattered ones, and a
/// benchmark's ceiling fed in that order measured nearly twice what the same
/// rows take in the order a partitioned topic delivers them. The leading
/// bits are a bijective scramble of `i` (so ids scatter); the last group is
/// `i` itself (so they stay unique).
pub fn order_id(i: u64) -> String {
    let h = scramble(i);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        (h >> 4) & 0xfff,
        h & 0xf,
        i & 0xffff_ffff_ffff
    )
}

/// The SplitMix64 finalizer: a bijection on u64 that spreads neighbours apart.
fn scramble(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Order number `i` in its `version` (later versions change the values of
/// the same `id`): the JSON payload and the row it must become.
pub fn order(i: u64, version: u64) -> (String, Expected) {
    let quantity = ((i + version) % 10 + 1) as i64;
    let cents = ((i * 7919 + version * 104_729) % 99_999 + 1) as i64;
    let total = cents * quantity;
    let processed_at = if i.is_multiple_of(7) {
        None
    } else {
        Some(1_699_267_200 + i as i64 + version as i64)
    };
    let exp = Expected {
        id: order_id(i),
        order_id: format!("ORD-{i}-v{version}"),
        quantity,
        unit_price: format!("{}.{:02}", cents / 100, cents % 100),
        total_value: format!("{}.{:02}", total / 100, total % 100),
        processed_at,
    };
    let processed = match exp.processed_at {
        Some(p) => p.to_string(),
        None => "null".to_string(),
    };
    let payload = format!(
        r#"{{"id":"{}","order_id":"{}","quantity":{},"unit_price":{},"total_value":{},"processed_at":{},"source":"enrich-v2"}}"#,
        exp.id, exp.order_id, exp.quantity, exp.unit_price, exp.total_value, processed,
    );
    (payload, exp)
}

pub use kafka_mysql_sink::internals::send;

/// Produces orders `0..n` (version 0) to `topic`, order `i` to partition
/// `i % partitions` keyed by its `id`, and waits until all are acknowledged.
/// For the demo and the benchmarks, against the mock cluster.
pub fn produce_orders(brokers: &str, topic: &str, n: u64, partitions: i32) -> KafkaResult<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for i in 0..n {
        let (payload, exp) = order(i, 0);
        let record = BaseRecord::to(topic)
            .partition((i % partitions.max(1) as u64) as i32)
            .key(exp.id.as_str())
            .payload(payload.as_str());
        send(&producer, record)?;
    }
    producer.flush(Duration::from_secs(300))
}
