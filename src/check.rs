//! `kafka-mysql-sink check`: a pre-flight before a backfill.
//!
//! Each check prints one line; the first failure stops the run with a
//! message that names the problem. Nothing is created or committed. Last
//! come the plans: the default route's and each `[[routes]]` entry's, one
//! line per column, from the tables as the server describes them.

use std::io::Write;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::{Config, RouteConfig};
use crate::db::{self, TableState};
use crate::describe::describe_table;
use crate::plan;
use crate::source::{client_config, Start};
use crate::table::TableDesc;

/// The first check that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{check}: {reason}")]
pub struct CheckFailed {
    pub check: &'static str,
    pub reason: String,
}

fn fail(check: &'static str, reason: impl Into<String>) -> CheckFailed {
    CheckFailed {
        check,
        reason: reason.into(),
    }
}

/// Runs every check, writing a line for each to `out`.
pub fn run(config: &Config, out: &mut dyn Write) -> Result<(), CheckFailed> {
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    line(format!("ok   config: {}", config.summary()));

    let k = &config.kafka;
    let consumer: BaseConsumer = client_config(k).create().map_err(|e| {
        fail(
            "kafka",
            format!("cannot create a client for {}: {e}", k.brokers),
        )
    })?;
    let metadata = consumer
        .fetch_metadata(Some(&k.topic), Duration::from_secs(10))
        .map_err(|e| fail("kafka", format!("cannot reach Kafka at {}: {e}", k.brokers)))?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == k.topic)
        .ok_or_else(|| {
            fail(
                "kafka",
                format!("topic {} not in the metadata from {}", k.topic, k.brokers),
            )
        })?;
    if let Some(e) = topic.error() {
        return Err(fail(
            "kafka",
            format!(
                "topic {} at {}: {:?}",
                k.topic,
                k.brokers,
                rdkafka::error::RDKafkaErrorCode::from(e)
            ),
        ));
    }
    line(format!(
        "ok   kafka: topic {} has {} partition(s) at {}",
        k.topic,
        topic.partitions().len(),
        k.brokers
    ));

    let m = &config.mysql;
    let once = crate::config::MysqlConfig {
        connect_retries: 1,
        ..m.clone()
    };
    let mut conn = db::connect_with_retry(&once).map_err(|e| fail("mysql", e.to_string()))?;
    let info = db::server_info(&mut conn).map_err(|e| fail("mysql", e.to_string()))?;
    line(format!(
        "ok   mysql: logged in as {} at {}:{} ({}, max_allowed_packet {} bytes)",
        m.user, m.host, m.port, info.version, info.max_allowed_packet
    ));

    let table = crate::sql::qualified(&m.database, &m.table);
    match db::inspect_table(&mut conn, &m.database, &m.table)
        .map_err(|e| fail("table", e.to_string()))?
    {
        TableState::Ready => line(format!(
            "ok   table: {table} has every column the sink writes"
        )),
        TableState::Missing { database_exists } => line(format!(
            "ok   table: {table} is missing{}; it will be created at start-up",
            if database_exists {
                ""
            } else {
                " (with its database)"
            }
        )),
    }

    let offsets = config.offsets_table();
    line(sink_table(
        &mut conn,
        config,
        "offsets",
        &offsets,
        crate::sql::create_offsets_table(&m.database, &offsets),
        db::probe_offsets_writes,
    )?);
    line(positions(config, &mut conn)?);
    if let Some(dlq) = config.dlq_table() {
        line(sink_table(
            &mut conn,
            config,
            "dead letters",
            &dlq,
            crate::sql::create_dlq_table(&m.database, &dlq),
            db::probe_dlq_writes,
        )?);
    }

    let (orders, note) = match describe_table(&mut conn, &m.database, &m.table, &info.version)
        .map_err(|e| fail("plan", e.to_string()))?
    {
        Some(t) => (t, ""),
        None => (
            TableDesc::seed_orders(&m.database, &m.table),
            " (the table as start-up creates it)",
        ),
    };
    // `run` writes the default route as it always has, whatever its plan
    // says; a refusal is what a plan-driven run would refuse, so it warns.
    match plan::compile_default(&config.default_route(), &orders) {
        Ok(default) => plan_lines(&default, note).into_iter().for_each(&mut line),
        Err(e) => line(format!(
            "warn plan: {e} (`run` still writes the default route as before)"
        )),
    }
    for (index, route) in config.routes.iter().enumerate() {
        let tables = route_tables(&consumer, index, route)?;
        if tables.is_empty() {
            line(format!(
                "plan routes[{index}]: no topic on the cluster matches {:?} yet",
                route.topic_pattern.as_deref().unwrap_or_default()
            ));
        }
        for (table, topics) in tables {
            let desc = describe_table(&mut conn, &m.database, &table, &info.version)
                .map_err(|e| fail("plan", e.to_string()))?
                .ok_or_else(|| {
                    fail(
                        "plan",
                        format!(
                            "routes[{index}]: table {} (for topic(s) {}) does not exist; routes \
                             never create tables, so create it first",
                            crate::sql::qualified(&m.database, &table),
                            topics.join(", ")
                        ),
                    )
                })?;
            let p = plan::compile(route, index, &desc).map_err(|e| fail("plan", e.to_string()))?;
            plan_lines(&p, &format!(" (topics {})", topics.join(", ")))
                .into_iter()
                .for_each(&mut line);
        }
    }
    Ok(())
}

/// Whether Kafka still has the offset each partition would resume from,
/// and, where it does not, what `kafka.on_out_of_range` would do.
fn positions(config: &Config, conn: &mut mysql::Conn) -> Result<String, CheckFailed> {
    let starts = crate::offsets_command::starts(config, conn)
        .map_err(|e| fail("positions", e.to_string()))?;
    let mut resets = Vec::new();
    for (_, start) in &starts {
        match start {
            Start::Refuse(e) => return Err(fail("positions", e.to_string())),
            Start::Reset(r) => resets.push(format!(
                "partition {} would go on at {} instead of {} ({} message(s) lost)",
                r.partition, r.to, r.from, r.lost
            )),
            Start::At(_) | Start::Fresh(_) => {}
        }
    }
    if resets.is_empty() {
        return Ok(format!(
            "ok   positions: Kafka has the offset of each of the {} partition(s)",
            starts.len()
        ));
    }
    Ok(format!(
        "warn positions: kafka.on_out_of_range = \"{}\": {}",
        config.kafka.on_out_of_range.as_str(),
        resets.join("; ")
    ))
}

/// A plan as `check` prints it: its head, then its columns indented.
fn plan_lines(p: &plan::Plan, note: &str) -> Vec<String> {
    std::iter::once(format!("plan {}{note}", p.head()))
        .chain(p.column_lines().into_iter().map(|l| format!("       {l}")))
        .collect()
}

/// The tables a route writes now, each with its topics: the topics it
/// names (which must exist), or those its pattern matches on the cluster.
fn route_tables(
    consumer: &BaseConsumer,
    index: usize,
    route: &RouteConfig,
) -> Result<Vec<(String, Vec<String>)>, CheckFailed> {
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| fail("kafka", format!("cannot list the topics: {e}")))?;
    let on_cluster: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let topics: Vec<String> = if route.topic_pattern.is_some() {
        on_cluster
            .iter()
            .filter(|t| route.table_for(t).is_some())
            .map(|t| t.to_string())
            .collect()
    } else {
        if let Some(t) = route
            .topics
            .iter()
            .find(|t| !on_cluster.contains(&t.as_str()))
        {
            return Err(fail(
                "kafka",
                format!("routes[{index}]: topic {t} is not on the cluster"),
            ));
        }
        route.topics.clone()
    };
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for topic in topics {
        let table = route.table_for(&topic).unwrap_or_default();
        crate::sql::check_identifier(&table).map_err(|e| {
            fail(
                "plan",
                format!("routes[{index}]: topic {topic} maps to table {table:?}, which {e}"),
            )
        })?;
        match tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, ts)) => ts.push(topic),
            None => tables.push((table, vec![topic])),
        }
    }
    Ok(tables)
}

/// A table of the sink's own (offsets, dead letters): there and writable,
/// or missing and creatable at start-up; otherwise the failure says how to
/// create it by hand.
fn sink_table(
    conn: &mut mysql::Conn,
    config: &Config,
    check: &'static str,
    name: &str,
    ddl: String,
    probe_writes: fn(&mut mysql::Conn, &str) -> Result<(), mysql::Error>,
) -> Result<String, CheckFailed> {
    let m = &config.mysql;
    let table = crate::sql::qualified(&m.database, name);
    let exists =
        db::table_exists(conn, &m.database, name).map_err(|e| fail(check, e.to_string()))?;
    if exists {
        probe_writes(conn, &table).map_err(|e| {
            fail(
                check,
                format!("{table} is there but the sink's user cannot write it: {e}"),
            )
        })?;
        return Ok(format!("ok   {check}: {table} is there"));
    }
    if db::may_create_tables(conn, &m.database).map_err(|e| fail(check, e.to_string()))? {
        return Ok(format!(
            "ok   {check}: {table} is missing; it will be created at start-up"
        ));
    }
    Err(fail(
        check,
        format!(
            "{table} is missing and {} may not create it; grant CREATE on `{}`, or create it \
             once as an administrator:\n{ddl}",
            m.user, m.database
        ),
    ))
}
