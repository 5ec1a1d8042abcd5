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
use crate::targets::{DeadLetters, RouteTarget};

/// The targets of `config.routes`, in order: per route, one for each of
/// its topics, or for each topic of the cluster (`cluster`) its
/// `topic_pattern` matches; the `time_zone` the writers' sessions must run
/// in, if any; and the topics a pattern matched but that cannot be taken
/// (their refusals logged), which are not read. A route's table must exist
/// (routes never create tables), and its plan must fit it: for a listed
/// topic, a start-up error.
pub(super) fn route_targets(
    config: &Config,
    conn: &mut Conn,
    info: &ServerInfo,
    cluster: &[String],
) -> Result<Built, SinkError> {
    let mut zone = None;
    let m = &config.mysql;
    let mut built = Built::default();
    for (index, route) in config.routes.iter().enumerate() {
        if route.topic_pattern.is_none() {
            for topic in &route.topics {
                let t = target(config, conn, info, (index, route), topic, &mut zone)?;
                built.targets.push(t);
            }
            continue;
        }
        for topic in cluster.iter().filter(|t| config.pattern_takes(route, t)) {
            // A topic goes to one route: one that lists it by name, else the
            // first whose pattern takes it.
            let listed = config.routes.iter().any(|r| r.topics.contains(topic));
            let taken = built.targets.iter().any(|t| t.topic == *topic);
            if listed || taken || built.refused.contains(topic) {
                continue;
            }
            match target(config, conn, info, (index, route), topic, &mut zone) {
                Ok(t) => built.targets.push(t),
                Err(e) => {
                    log::error!(
                        "routes[{index}]: topic {topic} matches its topic_pattern but is not \
                         read: {e}"
                    );
                    built.refused.push(topic.clone());
                }
            }
        }
    }
    for t in &built.targets {
        if let DeadLetters::Table(dlq) = &t.dead_letters {
            db::ensure_dlq_table(conn, &m.database, dlq)?;
        }
    }
    built.zone = zone.map(|(z, _)| z);
    Ok(built)
}

/// What [`route_targets`] found.
#[derive(Default)]
pub(super) struct Built {
    pub(super) targets: Vec<RouteTarget>,
    pub(super) zone: Option<String>,
    pub(super) refused: Vec<String>,
}

/// The target of `topic` for route `index`.
fn target(
    config: &Config,
    conn: &mut Conn,
    info: &ServerInfo,
    (index, route): (usize, &RouteConfig),
    topic: &String,
    zone: &mut Option<(String, usize)>,
) -> Result<RouteTarget, SinkError> {
    let m = &config.mysql;
    let invalid = |key: &'static str, reason: String| ConfigError::Route {
        index,
        table: route.table.clone(),
        key,
        reason,
    };
    let table = route
        .table_for(topic)
        .ok_or_else(|| invalid("table", format!("cannot be expanded for topic {topic:?}")))?;
    crate::sql::check_identifier(&table).map_err(|e| {
        invalid(
            "table",
            format!("for topic {topic:?} is {table:?}, which {e}"),
        )
    })?;
    // The sink's own tables are never a route's, whatever a pattern's
    // captures make of a topic name: rows there would move offsets or
    // claims, or mix with dead letters.
    let own = [Some(config.offsets_table()), config.dlq_table()];
    let same = |o: &String| o.eq_ignore_ascii_case(&table);
    if own.iter().flatten().any(same) || table.to_ascii_lowercase().ends_with("_dlq") {
        return Err(invalid(
            "table",
            format!(
                "for topic {topic:?} is {table:?}, a table of the sink's own (offsets or dead \
                 letters: `_dlq` names are kept for them)"
            ),
        )
        .into());
    }
    let desc = describe_table(conn, &m.database, &table, &info.version)?.ok_or_else(|| {
        SinkError::RouteTableMissing {
            route: format!("routes[{index}]"),
            topic: topic.clone(),
            table: crate::sql::qualified(&m.database, &table),
        }
    })?;
    let plan = plan::compile(route, index, &desc).map_err(|e| SinkError::Plan(e.to_string()))?;
    if writes_timestamps(&plan) {
        match &*zone {
            None => *zone = Some((session_zone(conn, index, route)?, index)),
            // One pool of sessions serves every route: their TIMESTAMP
            // literals must all be written in its zone.
            Some((_, first)) if config.routes[*first].time_zone != route.time_zone => {
                return Err(SinkError::Plan(format!(
                    "routes[{index}] and routes[{first}] both write TIMESTAMP columns, in \
                 time zones {:?} and {:?}; the writers' sessions have one, so give \
                 both routes the same time_zone (or use DATETIME columns, which \
                 take no zone)",
                    route.time_zone, config.routes[*first].time_zone
                )));
            }
            Some(_) => {}
        }
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
    let dead_letters = dead_letters(config, &table, topic).map_err(|e| invalid("table", e))?;
    log::info!(
        table = table.as_str();
        "routes[{index}]: topic {topic} into {} by ({}), {} mode",
        crate::sql::qualified(&m.database, &table),
        shape.key_names(),
        route.mode.as_str()
    );
    Ok(RouteTarget {
        topic: topic.clone(),
        table,
        plan,
        shape,
        delete_on_tombstone: route.delete_on_tombstone,
        dead_letters,
        key_collations,
    })
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
