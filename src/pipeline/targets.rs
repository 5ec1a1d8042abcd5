//! Start-up of a run with `[[routes]]`: each route's table described and
//! its plan compiled, per topic, into the registry of targets; their
//! dead-letter tables created.

use mysql::prelude::Queryable;
use mysql::Conn;

use super::SinkError;
use crate::collation::KeyCollation;
use crate::config::{Config, ConfigError, DlqMode, RouteConfig};
use crate::convert::{Conversion, TemporalKind};
use crate::db::{self, ServerInfo};
use crate::decode::PlanDecoder;
use crate::describe::describe_table;
use crate::plan::{self, Feed, Plan};
use crate::table::TypeClass;
use crate::targets::{DeadLetters, RouteTarget, RouteTargets};

/// The targets of `config.routes`, one per route and topic, in order, and
/// the `time_zone` the writers' sessions must run in, if any. A route's
/// table must exist (routes never create tables), and its plan must fit it.
pub(super) fn route_targets(
    config: &Config,
    conn: &mut Conn,
    info: &ServerInfo,
) -> Result<(RouteTargets, Option<String>), SinkError> {
    let mut zone = None;
    let m = &config.mysql;
    let mut targets = Vec::new();
    for (index, route) in config.routes.iter().enumerate() {
        let invalid = |key: &'static str, reason: String| ConfigError::Route {
            index,
            table: route.table.clone(),
            key,
            reason,
        };
        for topic in &route.topics {
            let table = route.table_for(topic).ok_or_else(|| {
                invalid("table", format!("cannot be expanded for topic {topic:?}"))
            })?;
            crate::sql::check_identifier(&table).map_err(|e| {
                invalid(
                    "table",
                    format!("for topic {topic:?} is {table:?}, which {e}"),
                )
            })?;
            let desc =
                describe_table(conn, &m.database, &table, &info.version)?.ok_or_else(|| {
                    SinkError::RouteTableMissing {
                        route: format!("routes[{index}]"),
                        topic: topic.clone(),
                        table: crate::sql::qualified(&m.database, &table),
                    }
                })?;
            let plan =
                plan::compile(route, index, &desc).map_err(|e| SinkError::Plan(e.to_string()))?;
            if zone.is_none() && writes_timestamps(&plan) {
                zone = Some(session_zone(conn, index, route)?);
            }
            let shape = PlanDecoder::new(&plan).shape().clone();
            let mut key_collations = Vec::with_capacity(shape.key.len());
            for &k in &shape.key {
                let column = shape.columns.get(k).and_then(|c| desc.column(c));
                let collation = match column {
                    Some(c) if c.class == TypeClass::Text => c.collation.clone(),
                    _ => None,
                };
                key_collations.push(match collation {
                    Some(name) => Some(KeyCollation::named(conn, db::opts(m).into(), &name)?),
                    None => None,
                });
            }
            let dead_letters =
                dead_letters(config, &table, topic).map_err(|e| invalid("table", e))?;
            log::info!(
                table = table.as_str();
                "routes[{index}]: topic {topic} into {} by ({}), {} mode",
                crate::sql::qualified(&m.database, &table),
                shape.key_names(),
                route.mode.as_str()
            );
            targets.push(RouteTarget {
                topic: topic.clone(),
                table,
                plan,
                shape,
                delete_on_tombstone: route.delete_on_tombstone,
                dead_letters,
                key_collations,
            });
        }
    }
    for t in &targets {
        if let DeadLetters::Table(dlq) = &t.dead_letters {
            db::ensure_dlq_table(conn, &m.database, dlq)?;
        }
    }
    Ok((RouteTargets(targets), zone))
}

fn writes_timestamps(plan: &Plan) -> bool {
    plan.columns.iter().any(|c| {
        matches!(
            &c.feed,
            Feed::From { conversion: Conversion::Temporal(t), .. } if t.kind == TemporalKind::Timestamp
        )
    })
}

/// The session `time_zone` of a route that writes TIMESTAMP columns: the
/// server reads their literals in the session's zone, and the conversion
/// wrote them in the route's, so the two must be one. Tried on the start-up
/// session, so that a zone the server does not know stops start-up here
/// rather than every writer's session later.
fn session_zone(conn: &mut Conn, index: usize, route: &RouteConfig) -> Result<String, SinkError> {
    let zone = match route.time_zone.as_str() {
        "UTC" | "Z" => "+00:00",
        z => z,
    };
    // parse_time_zone accepted it; names are letters, digits and `/_+-`.
    if !zone
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_+-:".contains(c))
    {
        return Err(SinkError::Plan(format!(
            "routes[{index}]: time_zone {zone:?} cannot be set on MySQL sessions; use an offset \
             such as \"+01:00\""
        )));
    }
    let set = format!("SET SESSION time_zone = '{zone}'");
    conn.query_drop(&set).map_err(|e| {
        SinkError::Plan(format!(
            "routes[{index}]: its TIMESTAMP columns are written in time_zone {zone:?}, which \
             the server does not know ({e}); load the server's time zone tables \
             (mysql_tzinfo_to_sql) or use an offset such as \"+01:00\""
        ))
    })?;
    Ok(set)
}

/// A target's dead-letter destination: `dead_letter.table` or `.topic`
/// when set, shared by every route; otherwise `<table>_dlq` or
/// `<topic>_dlq` of its own.
fn dead_letters(config: &Config, table: &str, topic: &str) -> Result<DeadLetters, String> {
    let d = &config.dead_letter;
    Ok(match d.mode {
        DlqMode::Skip => DeadLetters::Skip,
        DlqMode::Topic if d.topic.is_empty() => DeadLetters::Topic(format!("{topic}_dlq")),
        DlqMode::Topic => DeadLetters::Topic(d.topic.clone()),
        DlqMode::Table => {
            let name = if d.table.is_empty() {
                format!("{table}_dlq")
            } else {
                d.table.clone()
            };
            crate::sql::check_identifier(&name).map_err(|e| {
                format!("gives the dead-letter table {name:?}, which {e}; set dead_letter.table")
            })?;
            DeadLetters::Table(name)
        }
    })
}
