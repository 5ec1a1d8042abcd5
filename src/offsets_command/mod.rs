//! `kafka-mysql-sink offsets show` and `offsets reset`: the group's offsets
//! in both of their stores, Kafka (the committed offset) and MySQL (the
//! offsets table's next offset and generation), side by side with the log
//! Kafka has, and replays or moves as one command.
//!
//! Both stores matter: in exactly-once mode the sink resumes at MySQL's next
//! offset or Kafka's, whichever is further, so a reset of Kafka's alone
//! (`kafka-consumer-groups.sh --reset-offsets`) moves nothing back.

mod reset;
mod show;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{Config, Delivery};
use crate::db;
use crate::fence::{self, FenceSpec, OffsetsRow};
use crate::source::{
    client_config, decide_start as decide, held_offset, log_id, log_ranges, LogId, LogRange, Start,
};

pub use reset::{reset, Target};
pub use show::show;

/// Why an offsets command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("Kafka at {brokers}: {reason}")]
    Kafka { brokers: String, reason: String },
    #[error("MySQL: {0}")]
    Db(#[from] db::DbError),
    #[error("MySQL, table {table}: {source}")]
    Mysql { table: String, source: mysql::Error },
    #[error(
        "partitions {partitions:?} of topic {topic} are held by another member of group \
         {group} (a running sink?): stop it first, or pass --force to reset them anyway \
         (its rows read before the reset are fenced off; it commits over the reset unless \
         stopped)"
    )]
    Owned {
        topic: String,
        group: String,
        partitions: Vec<i32>,
    },
    #[error(
        "partition {partition} has no offset in either store to keep; give --to earliest, \
         latest or an offset"
    )]
    NoOffset { partition: i32 },
    #[error("topic {topic} has no partition {partition}")]
    NoPartition { topic: String, partition: i32 },
    #[error(
        "offset {offset} is outside the log of partition {partition} ({low}..{high}); pass \
         --force to set it anyway (the sink then acts on kafka.on_out_of_range)"
    )]
    OutsideLog {
        partition: i32,
        offset: i64,
        low: i64,
        high: i64,
    },
    #[error("{0}")]
    Topic(String),
}

/// `config` for the commands about `topic`: the default route's topic
/// without `[[routes]]`; with them, the one topic they name, or else the
/// one `--topic` names among theirs (a topic a pattern matches is taken as
/// named).
pub fn for_topic(config: &Config, topic: Option<&str>) -> Result<Config, OffsetsError> {
    let named: Vec<&str> = config
        .routes
        .iter()
        .flat_map(|r| r.topics.iter().map(String::as_str))
        .collect();
    let patterns = config.routes.iter().any(|r| r.topic_pattern.is_some());
    let chosen = match (topic, named.as_slice()) {
        (Some(t), _) if config.routes.is_empty() || patterns || named.contains(&t) => t,
        (Some(t), _) => {
            return Err(OffsetsError::Topic(format!(
                "no route reads topic {t}; the routes read {}",
                named.join(", ")
            )))
        }
        (None, _) if config.routes.is_empty() => return Ok(config.clone()),
        (None, [only]) if !patterns => only,
        (None, _) => {
            return Err(OffsetsError::Topic(format!(
                "the routes read several topics ({}); name one with --topic",
                if patterns {
                    "by a pattern".to_owned()
                } else {
                    named.join(", ")
                }
            )))
        }
    };
    let mut c = config.clone();
    c.kafka.topic = chosen.to_owned();
    Ok(c)
}

/// Bound on one Kafka round trip.
const LOOKUP: Duration = Duration::from_secs(10);

/// What both stores and the log say of one partition.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub(crate) partition: i32,
    pub(crate) range: Option<LogRange>,
    pub(crate) kafka: Option<i64>,
    pub(crate) mysql: Option<OffsetsRow>,
    /// Whether MySQL's offsets were written under another log's ids.
    pub(crate) replaced: bool,
}

impl Facts {
    /// The offset the sink would resume the partition from: exactly-once,
    /// MySQL's next offset or Kafka's where that is further on; at-least-once,
    /// Kafka's.
    pub(crate) fn held(&self, delivery: Delivery) -> Option<i64> {
        let row = self.mysql.as_ref();
        held_offset(
            delivery == Delivery::ExactlyOnce,
            self.kafka,
            row.and_then(|r| r.next_offset),
            row.and_then(|r| r.reset_to),
        )
    }
}

/// Where each partition of the topic would start if the sink started now,
/// under the configured `on_out_of_range`: for `check`. Changes nothing.
pub(crate) fn starts(
    config: &Config,
    conn: &mut mysql::Conn,
) -> Result<Vec<(i32, Start)>, OffsetsError> {
    let consumer: BaseConsumer = client_config(&config.kafka)
        .create()
        .map_err(|e| kafka_error(config, e))?;
    let parts = partitions(config, &consumer)?;
    let facts = gather(config, &consumer, conn, &parts)?;
    Ok(facts
        .iter()
        .map(|f| {
            let start = decide(
                &config.kafka.topic,
                f.partition,
                f.held(config.sink.delivery),
                f.range,
                f.replaced,
                config.kafka.on_out_of_range,
                config.kafka.auto_offset_reset,
            );
            (f.partition, start)
        })
        .collect())
}

fn kafka_error(config: &Config, reason: impl ToString) -> OffsetsError {
    OffsetsError::Kafka {
        brokers: config.kafka.brokers.clone(),
        reason: reason.to_string(),
    }
}

/// The topic's partitions, by the metadata.
fn partitions<C: ConsumerContext>(
    config: &Config,
    consumer: &BaseConsumer<C>,
) -> Result<Vec<i32>, OffsetsError> {
    let topic = &config.kafka.topic;
    let metadata = consumer
        .fetch_metadata(Some(topic), LOOKUP)
        .map_err(|e| kafka_error(config, e))?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| kafka_error(config, format!("no topic {topic} in the metadata")))?;
    if let Some(e) = t.error() {
        return Err(kafka_error(
            config,
            format!(
                "topic {topic}: {:?}",
                rdkafka::error::RDKafkaErrorCode::from(e)
            ),
        ));
    }
    let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    parts.sort_unstable();
    Ok(parts)
}

/// The facts of `parts`, from Kafka and from the offsets table (read
/// without a lock: a picture for people, not a claim).
fn gather<C: ConsumerContext>(
    config: &Config,
    consumer: &BaseConsumer<C>,
    conn: &mut mysql::Conn,
    parts: &[i32],
) -> Result<Vec<Facts>, OffsetsError> {
    let topic = &config.kafka.topic;
    let mut tpl = TopicPartitionList::new();
    for &p in parts {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, LOOKUP)
        .map_err(|e| kafka_error(config, format!("cannot read the group's offsets: {e}")))?;
    let ranges = log_ranges(consumer, topic, parts);
    let log = log_id(consumer, topic, LOOKUP);
    let (db_name, table) = (&config.mysql.database, config.offsets_table());
    let exists = db::table_exists(conn, db_name, &table)?;
    let spec = FenceSpec {
        marks: exists && db::offsets_table_has_marks(conn, db_name, &table)?,
        ..FenceSpec::new(config)
    };
    let rows: HashMap<i32, OffsetsRow> = if exists {
        fence::list(conn, &spec, topic)
            .map_err(|source| OffsetsError::Mysql {
                table: spec.table.clone(),
                source,
            })?
            .into_iter()
            .map(|r| (r.partition, r))
            .collect()
    } else {
        HashMap::new()
    };
    Ok(parts
        .iter()
        .map(|&p| Facts {
            partition: p,
            range: ranges.get(&p).copied(),
            kafka: committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }),
            mysql: rows.get(&p).cloned(),
            replaced: rows
                .get(&p)
                .and_then(|r| r.log_id.as_deref())
                .is_some_and(|stored| LogId::decode(stored).differs(&log)),
        })
        .collect())
}

/// MySQL, reached once (an operator's command: no retries to wait out).
fn connect(config: &Config) -> Result<mysql::Conn, OffsetsError> {
    let once = crate::config::MysqlConfig {
        connect_retries: 1,
        ..config.mysql.clone()
    };
    Ok(db::connect_with_retry(&once)?)
}
