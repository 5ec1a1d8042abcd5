//! `offsets show`: one line per partition, both stores beside the log.

use std::io::Write;

use rdkafka::consumer::BaseConsumer;

use super::{connect, gather, kafka_error, partitions, Facts, OffsetsError};
use crate::config::Config;
use crate::source::client_config;
use crate::source::out_of_range_verdict;

/// Prints the group's offsets of the topic, partition by partition.
pub fn show(config: &Config, out: &mut dyn Write) -> Result<(), OffsetsError> {
    let consumer: BaseConsumer = client_config(&config.kafka)
        .create()
        .map_err(|e| kafka_error(config, e))?;
    let parts = partitions(config, &consumer)?;
    let mut conn = connect(config)?;
    let facts = gather(config, &consumer, &mut conn, &parts)?;
    let _ = writeln!(
        out,
        "topic {} group {} delivery {} offsets table `{}`.`{}`",
        config.kafka.topic,
        config.kafka.group_id,
        config.sink.delivery.as_str(),
        config.mysql.database,
        config.offsets_table()
    );
    let _ = writeln!(
        out,
        "{:>9} {:>12} {:>12} {:>15} {:>12} {:>20} {:>11}  state (owner, last change)",
        "partition",
        "log_start",
        "log_end",
        "kafka_committed",
        "mysql_next",
        "generation",
        "durable_lag",
    );
    for f in &facts {
        let _ = writeln!(out, "{}", line(config, f));
    }
    Ok(())
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// One partition's line: where the sink would resume, and whether Kafka
/// still has that offset.
fn line(config: &Config, f: &Facts) -> String {
    let mysql_next = f.mysql.as_ref().and_then(|r| r.next_offset);
    let held = f.held(config.sink.delivery);
    let lag = match (f.range, held) {
        (Some(r), Some(h)) if h <= r.high => Some(r.high - h.max(r.low)),
        (Some(r), None) => Some(r.high - r.low),
        _ => None,
    };
    let state = out_of_range_verdict(
        &config.kafka.topic,
        f.partition,
        held,
        f.range,
        f.replaced,
        config.kafka.auto_offset_reset,
    );
    let pending = f
        .mysql
        .as_ref()
        .and_then(|r| r.reset_to)
        .map_or_else(String::new, |p| {
            format!(", starts at {p}: a reset Kafka has not confirmed")
        });
    let owner = f.mysql.as_ref().map_or_else(String::new, |r| {
        format!(" ({}, {}{pending})", r.owner, r.updated_at)
    });
    format!(
        "{:>9} {:>12} {:>12} {:>15} {:>12} {:>20} {:>11}  {state}{owner}",
        f.partition,
        opt(f.range.map(|r| r.low)),
        opt(f.range.map(|r| r.high)),
        opt(f.kafka),
        opt(mysql_next),
        f.mysql
            .as_ref()
            .map_or_else(|| "-".into(), |r| r.generation.to_string()),
        opt(lag),
    )
}
