//! `offsets reset`: moves the group's partitions in both stores at once.
//!
//! The command joins the group as a member, which is how Kafka tells who
//! holds the partitions: once the group has rebalanced, every partition
//! assigned to another member is held by a running instance (the
//! coordinator has dropped the ones that died, after their session
//! timeout), and the reset is refused unless forced. As a member it may
//! commit; the offsets table gets the same offsets under new generations,
//! which fences off any writer still holding rows read before.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{connect, gather, kafka_error, partitions, OffsetsError};
use crate::config::Config;
use crate::db;
use crate::fence::{self, FenceSpec};
use crate::source::{client_config, log_id, log_ranges};
use crate::types::{Coord, Part, Topic};

/// Where `offsets reset --to` moves the partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Earliest,
    Latest,
    Offset(i64),
    /// Where the sink would resume now, recorded as belonging to the log
    /// Kafka has now: for a group moved with its offsets translated
    /// (MirrorMaker 2, cluster linking), whose new cluster and topic ids
    /// would otherwise make the sink refuse them.
    Current,
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        match s {
            "earliest" => Ok(Target::Earliest),
            "latest" => Ok(Target::Latest),
            "current" => Ok(Target::Current),
            n => n
                .parse::<i64>()
                .ok()
                .filter(|o| *o >= 0)
                .map(Target::Offset)
                .ok_or_else(|| {
                    format!(
                        "expected earliest, latest, current or an offset (0 or more), not {n:?}"
                    )
                }),
        }
    }
}

/// Records the partitions this member was given.
#[derive(Default)]
struct Joined(Mutex<Option<Vec<i32>>>);

impl ClientContext for Joined {}

impl ConsumerContext for Joined {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = tpl.elements().iter().map(|e| e.partition()).collect();
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(parts);
        }
    }
}

/// How long joining the group may take: a member that died without
/// leaving is dropped by the coordinator after its session timeout, which
/// the join waits out.
fn join_patience(config: &Config) -> Duration {
    let session_ms = config
        .kafka
        .properties
        .get("session.timeout.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(45_000);
    Duration::from_millis(session_ms) + Duration::from_secs(30)
}

/// Moves `only` (every partition when empty) of the group to `to`, in
/// Kafka and in MySQL, writing a line per partition to `out`.
pub fn reset(
    config: &Config,
    to: Target,
    only: &[i32],
    force: bool,
    out: &mut dyn Write,
) -> Result<(), OffsetsError> {
    let k = &config.kafka;
    let mut client = client_config(k);
    // A static member id would take over a running sink's membership (and
    // so its partitions) without a rebalance, and not leave on close.
    client.remove("group.instance.id");
    let consumer: BaseConsumer<Joined> = client
        .create_with_context(Joined::default())
        .map_err(|e| kafka_error(config, e))?;
    let all = partitions(config, &consumer)?;
    if let Some(&p) = only.iter().find(|p| !all.contains(p)) {
        return Err(OffsetsError::NoPartition {
            topic: k.topic.clone(),
            partition: p,
        });
    }
    let chosen: Vec<i32> = if only.is_empty() {
        all.clone()
    } else {
        let mut v = only.to_vec();
        v.sort_unstable();
        v.dedup();
        v
    };

    consumer
        .subscribe(&[&k.topic])
        .map_err(|e| kafka_error(config, e))?;
    let deadline = Instant::now() + join_patience(config);
    let mine: HashSet<i32> = loop {
        // Messages that arrive meanwhile are not this command's to read.
        let _ = consumer.poll(Duration::from_millis(100));
        if let Some(parts) = consumer
            .context()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            break parts.into_iter().collect();
        }
        if Instant::now() >= deadline {
            return Err(kafka_error(
                config,
                format!(
                    "could not join group {} within {:?}; is Kafka reachable?",
                    k.group_id,
                    join_patience(config)
                ),
            ));
        }
    };
    let held: Vec<i32> = chosen
        .iter()
        .copied()
        .filter(|p| !mine.contains(p))
        .collect();
    if !held.is_empty() && !force {
        return Err(OffsetsError::Owned {
            topic: k.topic.clone(),
            group: k.group_id.clone(),
            partitions: held,
        });
    }

    let mut conn = connect(config)?;
    // Where the sink would resume each partition now: what `current` keeps.
    let held: HashMap<i32, Option<i64>> = match to {
        Target::Current => gather(config, &consumer, &mut conn, &chosen)?
            .iter()
            .map(|f| (f.partition, f.held(config.sink.delivery)))
            .collect(),
        _ => HashMap::new(),
    };
    let topic = Topic::named(&k.topic);
    let ranges = log_ranges(&consumer, &k.topic, &chosen);
    let mut next = Vec::with_capacity(chosen.len());
    for &p in &chosen {
        let range = ranges.get(&p).copied().ok_or_else(|| {
            kafka_error(config, format!("cannot look up the log of partition {p}"))
        })?;
        let offset = match to {
            Target::Earliest => range.low,
            Target::Latest => range.high,
            Target::Offset(o) => o,
            Target::Current => match held.get(&p).copied().flatten() {
                Some(o) => o,
                None => return Err(OffsetsError::NoOffset { partition: p }),
            },
        };
        if !force && (offset < range.low || offset > range.high) {
            return Err(OffsetsError::OutsideLog {
                partition: p,
                offset,
                low: range.low,
                high: range.high,
            });
        }
        next.push(Coord::new(Part::new(topic, p), offset));
    }

    // MySQL first, each offset pending there until Kafka has it: a sink
    // started after a failure in between still starts where this says
    // (a pending start overrules Kafka's offset).
    let marks =
        db::ensure_offsets_table(&mut conn, &config.mysql.database, &config.offsets_table())?;
    let spec = FenceSpec {
        marks,
        ..FenceSpec::new(config)
    };
    let owner = format!("offsets-reset:{}", fence::owner_id());
    let id = log_id(&consumer, &k.topic, Duration::from_secs(10)).encode();
    let mysql_error = |source| OffsetsError::Mysql {
        table: spec.table.clone(),
        source,
    };
    let standing =
        fence::reset(&mut conn, &spec, &next, &owner, id.as_deref()).map_err(mysql_error)?;
    let mut tpl = TopicPartitionList::new();
    for c in &next {
        tpl.add_partition_offset(&k.topic, c.partition(), Offset::Offset(c.offset))
            .map_err(|e| kafka_error(config, e))?;
    }
    consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
        let then = if spec.marks {
            "MySQL has it, pending, and the sink starts there all the same"
        } else {
            "MySQL has it, but the sink resumes at Kafka's offset where that is further on"
        };
        kafka_error(
            config,
            format!("cannot commit the reset: {e}; {then}; run the command again"),
        )
    })?;
    let confirmed: Vec<(Part, u64)> = standing.iter().map(|s| (s.part, s.generation)).collect();
    fence::clear_resets(&mut conn, &spec, &confirmed).map_err(mysql_error)?;
    for c in &next {
        let _ = writeln!(
            out,
            "partition {} of {}: next offset {} in Kafka (group {}) and in {}",
            c.partition(),
            k.topic,
            c.offset,
            k.group_id,
            spec.table
        );
    }
    // Leaves the group (no offsets committed on the way out).
    drop(consumer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_refuse_nonsense() {
        assert_eq!("earliest".parse(), Ok(Target::Earliest));
        assert_eq!("latest".parse(), Ok(Target::Latest));
        assert_eq!("42".parse(), Ok(Target::Offset(42)));
        assert_eq!("current".parse(), Ok(Target::Current));
        assert!("-1".parse::<Target>().is_err());
        assert!("soon".parse::<Target>().is_err());
    }
}
