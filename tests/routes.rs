//! `[[routes]]` run by the real binary against MariaDB and the mock
//! cluster: any table's columns fed by a route's plan, every mode, keys of
//! any shape, dead letters per route, and the configurations start-up
//! refuses (issue #23).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use mysql::prelude::Queryable;

/// The sink's settings for a route test: short intervals, the test's
/// brokers and database (from the environment `spawn_sink` sets), then
/// `routes`.
fn config_text(extra: &str, routes: &str) -> String {
    format!(
        "[kafka]\ncommit_interval_ms = 200\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [mysql]\nconnect_retries = 2\nconnect_retry_delay_ms = 200\n\
         [sink]\nflush_interval_ms = 50\nretry_initial_ms = 20\nretry_max_ms = 500\n{extra}\n\
         {routes}"
    )
}

/// A topic of `parts` partitions on a new mock cluster, a fresh database
/// holding `ddl` (`{db}` replaced), and where the sink reads and writes.
fn setup(
    conn: &mut mysql::Conn,
    tag: &str,
    topic: &str,
    parts: i32,
    ddl: &[&str],
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    Target,
) {
    let cluster = mock_cluster(topic, parts);
    let t = Target {
        brokers: cluster.bootstrap_servers(),
        topic: topic.into(),
        group: format!("{tag}-group"),
        db: fresh_db(conn, tag),
    };
    conn.query_drop(format!("CREATE DATABASE `{}`", t.db))
        .unwrap();
    for statement in ddl {
        conn.query_drop(statement.replace("{db}", &t.db)).unwrap();
    }
    (cluster, t)
}

/// Runs the binary over the backlog (`--until-caught-up`) and returns its
/// exit code and log.
fn drain(t: &Target, tag: &str, config: &str, env: &[(&str, String)]) -> (Option<i32>, String) {
    let dir = scratch_dir(tag);
    let path = write_config(&dir, config);
    let mut sink = spawn_sink(t, &path, dir.join("sink.log"), &["--until-caught-up"], env);
    let status = sink.wait(Duration::from_secs(90));
    (status.code(), sink.log_text())
}

/// The dead-letter table's (offset, error) rows.
fn dead_letters(conn: &mut mysql::Conn, db: &str, table: &str) -> BTreeMap<i64, String> {
    conn.query_map(
        format!("SELECT kafka_offset, error FROM `{db}`.`{table}` ORDER BY kafka_offset"),
        |(o, e): (i64, String)| (o, e),
    )
    .unwrap()
    .into_iter()
    .collect()
}

/// Rows of a query, each column as text (`NULL` for SQL NULL).
fn text_rows(conn: &mut mysql::Conn, query: &str) -> Vec<Vec<String>> {
    conn.query_map(query, |row: mysql::Row| {
        (0..row.len())
            .map(|i| {
                row.get::<Option<String>, _>(i)
                    .flatten()
                    .unwrap_or_else(|| "NULL".into())
            })
            .collect()
    })
    .unwrap()
}

const EVENTS: &str = "CREATE TABLE `{db}`.`events` (
    tenant_id INT NOT NULL,
    id VARCHAR(64) NOT NULL,
    amount DECIMAL(18,6) NOT NULL,
    happened_at DATETIME(6) NOT NULL,
    seen_at TIMESTAMP(3) NULL,
    day DATE,
    flag BOOLEAN NOT NULL DEFAULT 0,
    doc JSON,
    raw VARBINARY(16),
    state ENUM('new','paid') NOT NULL DEFAULT 'new',
    note VARCHAR(20) NULL DEFAULT 'none',
    doubled DECIMAL(20,6) AS (amount * 2) VIRTUAL,
    email VARCHAR(100),
    src_topic VARCHAR(100),
    src_partition INT,
    src_offset BIGINT,
    PRIMARY KEY (tenant_id, id)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

const EVENTS_ROUTE: &str = r#"[[routes]]
topics = ["events_in"]
table = "events"
[routes.columns]
tenant_id = "tenant"
id = "id"
amount = "amount"
happened_at = { from = "happened", epoch_unit = "ms" }
seen_at = "/seen"
day = "day"
flag = "flag"
doc = "doc"
raw = { from = "raw", encoding = "base64" }
state = "state"
note = "note"
email = "contact.email"
src_topic = "@topic"
src_partition = "@partition"
src_offset = "@offset"
"#;

#[test]
fn every_kind_of_value_lands_exactly_and_every_bad_message_is_dead_lettered() {
    let mut conn = mysql();
    let (_cluster, t) = setup(&mut conn, "rt_kinds", "events_in", 1, &[EVENTS]);
    let long_id = "x".repeat(70);
    // (payload, for a bad one: a name its dead letter must give)
    let messages: Vec<(String, Option<&str>)> = vec![
        (
            r#"{"tenant":1,"id":"a","amount":"49.99","happened":1699267200123,
               "seen":"2024-01-01T05:30:00.5+05:30","day":"2024-02-29","flag":true,
               "doc":{"x":[1,"y"]},"raw":"AAH/","state":"PAID","note":"hi",
               "contact":{"email":"a@x.io"}}"#
                .into(),
            None,
        ),
        (
            r#"{"tenant":"2","id":"b","amount":"-123456789012.123456",
               "happened":"2024-02-29T23:30:00.1234565+05:30","seen":null,"day":null,
               "flag":0,"doc":null,"raw":null,"state":"new","contact":{"email":null}}"#
                .into(),
            None,
        ),
        (
            r#"{"tenant":3,"id":"c","amount":"abc","happened":0}"#.into(),
            Some("amount"),
        ),
        (
            r#"{"tenant":3,"id":"c","amount":"1e20","happened":0}"#.into(),
            Some("amount"),
        ),
        (
            r#"{"tenant":3,"id":"c","amount":1,"happened":"soon"}"#.into(),
            Some("happened"),
        ),
        (
            r#"{"tenant":1.5,"id":"c","amount":1,"happened":0}"#.into(),
            Some("tenant"),
        ),
        (
            r#"{"tenant":3,"id":"c","amount":1,"happened":0,"raw":"!!!"}"#.into(),
            Some("raw"),
        ),
        (
            r#"{"tenant":3,"id":"c","amount":1,"happened":0,"state":"shipped"}"#.into(),
            Some("state"),
        ),
        (
            r#"{"tenant":3,"id":"c","amount":1,"happened":0,"day":"2024-13-01"}"#.into(),
            Some("day"),
        ),
        (
            r#"{"tenant":3,"id":"c","amount":1,"happened":0,"flag":"maybe"}"#.into(),
            Some("flag"),
        ),
        (
            r#"{"id":"c","amount":1,"happened":0}"#.into(),
            Some("tenant"),
        ),
        (
            r#"{"tenant":3,"id":null,"amount":1,"happened":0}"#.into(),
            Some("id"),
        ),
        ("{".into(), Some("JSON")),
        // Refused by the server, not the conversion: its column is named.
        (
            format!(r#"{{"tenant":3,"id":"{long_id}","amount":1,"happened":0}}"#),
            Some("id"),
        ),
        (
            r#"{"tenant":3,"id":"c","amount":1,"happened":0,"seen":"2040-01-01T00:00:00Z"}"#.into(),
            Some("seen_at"),
        ),
        // A later version of (1, "a"): fewer fields, so the rest take
        // their defaults again (not a partial route).
        (
            r#"{"tenant":1,"id":"A","amount":7,"happened":"2024-05-01 12:00:00.25",
               "contact":{"email":"new@x.io"}}"#
                .into(),
            None,
        ),
        (
            r#"{"tenant":4,"id":"d","amount":0.1,"happened":-1500,"day":"2024-01-31T23:30:00Z",
               "seen":1704067200999,"doc":"text","raw":"AAE","flag":"1"}"#
                .into(),
            None,
        ),
    ];
    let records = messages
        .iter()
        .map(|(p, _)| (0, Some(b"k".to_vec()), Some(p.as_bytes().to_vec())))
        .collect();
    produce_raw(&t.brokers, &t.topic, records);

    let (code, log) = drain(&t, "rt_kinds", &config_text("", EVENTS_ROUTE), &[]);
    assert_eq!(code, Some(0), "{log}");

    let rows = text_rows(
        &mut conn,
        &format!(
            "SELECT tenant_id, id, CAST(amount AS CHAR), CAST(happened_at AS CHAR), \
             CAST(seen_at AS CHAR), CAST(day AS CHAR), CAST(flag AS CHAR), doc, HEX(raw), \
             state, note, CAST(doubled AS CHAR), email, src_topic, src_partition, src_offset \
             FROM `{}`.`events` ORDER BY tenant_id, id",
            t.db
        ),
    );
    let row = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rows,
        vec![
            row(&[
                "1",
                "a",
                "7.000000",
                "2024-05-01 12:00:00.250000",
                "NULL",
                "NULL",
                "0",
                "NULL",
                "NULL",
                "new",
                "none",
                "14.000000",
                "new@x.io",
                "events_in",
                "0",
                "15"
            ]),
            row(&[
                "2",
                "b",
                "-123456789012.123456",
                "2024-02-29 18:00:00.123457",
                "NULL",
                "NULL",
                "0",
                "NULL",
                "NULL",
                "new",
                "none",
                "-246913578024.246912",
                "NULL",
                "events_in",
                "0",
                "1"
            ]),
            row(&[
                "4",
                "d",
                "0.100000",
                "1969-12-31 23:59:58.500000",
                "2024-01-01 00:00:00.999",
                "2024-01-31",
                "1",
                "\"text\"",
                "0001",
                "new",
                "none",
                "0.200000",
                "NULL",
                "events_in",
                "0",
                "16"
            ]),
        ]
    );
    let dead = dead_letters(&mut conn, &t.db, "events_dlq");
    let bad: Vec<i64> = (0..messages.len() as i64)
        .filter(|&o| messages[o as usize].1.is_some())
        .collect();
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), bad, "{dead:?}");
    for (offset, error) in &dead {
        let name = messages[*offset as usize].1.unwrap_or_default();
        assert!(
            error.contains(name),
            "offset {offset}: {error:?} names no {name}"
        );
    }
    // Exactly-once: MySQL's next offset is past every message.
    let next: Option<i64> = conn
        .query_first(format!(
            "SELECT next_offset FROM `{}`.`orders_offsets` WHERE topic = 'events_in'",
            t.db
        ))
        .unwrap()
        .flatten();
    assert_eq!(next, Some(messages.len() as i64));
    drop_db(&mut conn, &t.db);
}

#[test]
fn the_first_version_of_a_row_keeps_every_converted_value() {
    // The message the test above replaces, alone, read back whole.
    let mut conn = mysql();
    let (_cluster, t) = setup(&mut conn, "rt_first", "events_in", 1, &[EVENTS]);
    let payload = r#"{"tenant":1,"id":"a","amount":"49.99","happened":1699267200123,
        "seen":"2024-01-01T05:30:00.5+05:30","day":"2024-02-29","flag":true,
        "doc":{"x":[1,"y"]},"raw":"AAH/","state":"PAID","note":"hi","contact":{"email":"a@x.io"}}"#;
    produce_raw(
        &t.brokers,
        &t.topic,
        vec![(0, None, Some(payload.as_bytes().to_vec()))],
    );
    let (code, log) = drain(&t, "rt_first", &config_text("", EVENTS_ROUTE), &[]);
    assert_eq!(code, Some(0), "{log}");
    let rows = text_rows(
        &mut conn,
        &format!(
            "SELECT tenant_id, id, CAST(amount AS CHAR), CAST(happened_at AS CHAR), \
             CAST(seen_at AS CHAR), CAST(day AS CHAR), CAST(flag AS CHAR), doc, HEX(raw), \
             state, note, CAST(doubled AS CHAR), email, src_offset FROM `{}`.`events`",
            t.db
        ),
    );
    assert_eq!(
        rows,
        vec![[
            "1",
            "a",
            "49.990000",
            "2023-11-06 10:40:00.123000",
            "2024-01-01 00:00:00.500",
            "2024-02-29",
            "1",
            r#"{"x":[1,"y"]}"#,
            "0001FF",
            "paid",
            "hi",
            "99.980000",
            "a@x.io",
            "0"
        ]
        .map(String::from)
        .to_vec()]
    );
    drop_db(&mut conn, &t.db);
}

#[test]
fn partial_upserts_leave_absent_columns_untouched() {
    let mut conn = mysql();
    let (_cluster, t) = setup(
        &mut conn,
        "rt_partial",
        "profiles_in",
        1,
        &[
            "CREATE TABLE `{db}`.`profiles` (id INT PRIMARY KEY, name VARCHAR(50), \
             city VARCHAR(50), score INT)",
            "INSERT INTO `{db}`.`profiles` VALUES (3, 'C', 'Z', 9)",
        ],
    );
    let payloads = [
        r#"{"id":1,"name":"A","city":"X","score":1}"#,
        r#"{"id":1,"score":2}"#,
        r#"{"id":2,"name":"B"}"#,
        r#"{"id":1,"city":null}"#,
        r#"{"id":3,"score":10}"#,
    ];
    produce_payloads(&t.brokers, &t.topic, 0, &payloads.map(str::as_bytes));
    let routes = "[[routes]]\ntopics = [\"profiles_in\"]\ntable = \"profiles\"\npartial = true\n";
    let (code, log) = drain(&t, "rt_partial", &config_text("", routes), &[]);
    assert_eq!(code, Some(0), "{log}");
    let rows = text_rows(
        &mut conn,
        &format!(
            "SELECT id, name, city, score FROM `{}`.`profiles` ORDER BY id",
            t.db
        ),
    );
    let want: Vec<Vec<String>> = [
        ["1", "A", "NULL", "2"],
        ["2", "B", "NULL", "NULL"],
        ["3", "C", "Z", "10"],
    ]
    .iter()
    .map(|r| r.map(String::from).to_vec())
    .collect();
    assert_eq!(rows, want);
    drop_db(&mut conn, &t.db);
}

#[test]
fn insert_mode_dead_letters_duplicates_and_writes_the_rest() {
    let mut conn = mysql();
    let (_cluster, t) = setup(
        &mut conn,
        "rt_insert",
        "ledger_in",
        1,
        &[
            "CREATE TABLE `{db}`.`ledger` (id INT PRIMARY KEY, v VARCHAR(10))",
            "INSERT INTO `{db}`.`ledger` VALUES (1, 'old')",
        ],
    );
    // Partial: rows without `v` leave it out of their statement, so one
    // write takes several statements; a duplicate in a later one must not
    // make the earlier ones' rows duplicates of themselves when the write
    // is split to find it.
    let payloads = [
        r#"{"id":5,"v":"e"}"#,
        r#"{"id":6}"#,
        r#"{"id":1,"v":"new"}"#,
        r#"{"id":2,"v":"a"}"#,
        r#"{"id":2,"v":"b"}"#,
        r#"{"id":3}"#,
        r#"{"id":4,"v":"d"}"#,
    ];
    produce_payloads(&t.brokers, &t.topic, 0, &payloads.map(str::as_bytes));
    let routes = "[[routes]]\ntopics = [\"ledger_in\"]\ntable = \"ledger\"\nmode = \"insert\"\npartial = true\n";
    let (code, log) = drain(&t, "rt_insert", &config_text("", routes), &[]);
    assert_eq!(code, Some(0), "{log}");
    let rows = text_rows(
        &mut conn,
        &format!("SELECT id, v FROM `{}`.`ledger` ORDER BY id", t.db),
    );
    let want: Vec<Vec<String>> = [
        ["1", "old"],
        ["2", "a"],
        ["3", "NULL"],
        ["4", "d"],
        ["5", "e"],
        ["6", "NULL"],
    ]
    .iter()
    .map(|r| r.map(String::from).to_vec())
    .collect();
    assert_eq!(rows, want);
    let dead = dead_letters(&mut conn, &t.db, "ledger_dlq");
    assert_eq!(
        dead.keys().copied().collect::<Vec<_>>(),
        vec![2, 4],
        "{dead:?}"
    );
    drop_db(&mut conn, &t.db);
}

#[test]
fn update_mode_never_creates_rows_and_counts_those_it_did_not_find() {
    let mut conn = mysql();
    let (_cluster, t) = setup(
        &mut conn,
        "rt_update",
        "stock_in",
        1,
        &[
            "CREATE TABLE `{db}`.`stock` (sku VARCHAR(20) PRIMARY KEY, qty INT, note VARCHAR(20))",
            "INSERT INTO `{db}`.`stock` VALUES ('a', 1, 'x'), ('b', 2, 'y')",
        ],
    );
    let payloads = [
        r#"{"sku":"a","qty":5}"#,
        r#"{"sku":"zz","qty":9}"#,
        // Found, and changes nothing: not counted as missing.
        r#"{"sku":"b","qty":2}"#,
        r#"{"sku":"q","qty":1}"#,
    ];
    produce_payloads(&t.brokers, &t.topic, 0, &payloads.map(str::as_bytes));
    let routes = "[[routes]]\ntopics = [\"stock_in\"]\ntable = \"stock\"\nmode = \"update\"\n";
    let dir = scratch_dir("rt_update");
    let path = write_config(&dir, &config_text("", routes));
    let (port, env) = metrics_env();
    let mut sink = spawn_sink(&t, &path, dir.join("sink.log"), &[], &[env]);
    let name = "kafka_mysql_sink_rows_not_found_total{table=\"stock\"}";
    let committed_all = wait_for(Duration::from_secs(60), || {
        committed(&t.brokers, &t.group, &t.topic, 1) == vec![payloads.len() as i64]
    });
    assert!(committed_all, "{}", sink.log_text());
    assert_eq!(scrape(port, name), Some(2.0), "{}", sink.log_text());
    sink.signal("TERM");
    assert_eq!(sink.wait(Duration::from_secs(60)).code(), Some(0));
    let rows = text_rows(
        &mut conn,
        &format!("SELECT sku, qty, note FROM `{}`.`stock` ORDER BY sku", t.db),
    );
    let want: Vec<Vec<String>> = [["a", "5", "x"], ["b", "2", "y"]]
        .iter()
        .map(|r| r.map(String::from).to_vec())
        .collect();
    assert_eq!(rows, want);
    drop_db(&mut conn, &t.db);
}

#[test]
fn at_least_once_versions_of_a_composite_key_arrive_in_order() {
    let mut conn = mysql();
    let (_cluster, t) = setup(
        &mut conn,
        "rt_alo",
        "versions_in",
        2,
        &[
            "CREATE TABLE `{db}`.`versions` (tenant_id INT, id VARCHAR(64), v INT, \
           PRIMARY KEY (tenant_id, id)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        ],
    );
    let (keys, versions) = (300u64, 6u64);
    // Versions of a key alternate the spelling of its id (one row under
    // the column's case-insensitive collation) and its tenant's type, and
    // interleave with every other key's.
    let mut records = Vec::new();
    for v in 0..versions {
        for k in 0..keys {
            let id = if v % 2 == 0 {
                format!("Key-{k}")
            } else {
                format!("key-{k} ")
            };
            let tenant = if v % 3 == 0 {
                format!("{}", k % 7)
            } else {
                format!("\"{}\"", k % 7)
            };
            let p = format!(r#"{{"tenant_id":{tenant},"id":"{id}","v":{v}}}"#);
            records.push(((k % 2) as i32, Some(b"k".to_vec()), Some(p.into_bytes())));
        }
    }
    produce_raw(&t.brokers, &t.topic, records);
    let routes = "[[routes]]\ntopics = [\"versions_in\"]\ntable = \"versions\"\n";
    let extra = "writers = 4\nbatch_size = 7\ndelivery = \"at_least_once\"";
    let (code, log) = drain(&t, "rt_alo", &config_text(extra, routes), &[]);
    assert_eq!(code, Some(0), "{log}");
    let rows = text_rows(
        &mut conn,
        &format!(
            "SELECT tenant_id, LOWER(TRIM(id)), v FROM `{}`.`versions`",
            t.db
        ),
    );
    assert_eq!(rows.len() as u64, keys);
    for r in rows {
        assert_eq!(r[2], (versions - 1).to_string(), "{r:?}");
    }
    drop_db(&mut conn, &t.db);
}

#[test]
fn tombstones_delete_by_a_composite_kafka_key_and_bad_ones_are_dead_lettered() {
    let mut conn = mysql();
    let (_cluster, t) = setup(
        &mut conn,
        "rt_tomb",
        "accounts_in",
        1,
        &[
            "CREATE TABLE `{db}`.`accounts` (tenant_id INT, id VARCHAR(64), v INT, \
           PRIMARY KEY (tenant_id, id)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        ],
    );
    let row = |p: &str| (0, Some(b"k".to_vec()), Some(p.as_bytes().to_vec()));
    let tombstone = |k: Option<&str>| (0, k.map(|k| k.as_bytes().to_vec()), None);
    let records = vec![
        row(r#"{"tenant_id":1,"id":"a","v":1}"#),
        row(r#"{"tenant_id":1,"id":"b","v":1}"#),
        row(r#"{"tenant_id":2,"id":"a","v":1}"#),
        // The key as the column compares it: (1, "a").
        tombstone(Some(r#"{"tenant_id":"1","id":"A"}"#)),
        tombstone(Some("not json")),
        tombstone(None),
        tombstone(Some(r#"{"tenant_id":1}"#)),
        tombstone(Some(r#"{"tenant_id":9,"id":"nobody"}"#)),
        row(r#"{"tenant_id":2,"id":"a","v":2}"#),
    ];
    produce_raw(&t.brokers, &t.topic, records);
    let routes =
        "[[routes]]\ntopics = [\"accounts_in\"]\ntable = \"accounts\"\ndelete_on_tombstone = true\n";
    let (code, log) = drain(&t, "rt_tomb", &config_text("", routes), &[]);
    assert_eq!(code, Some(0), "{log}");
    let rows = text_rows(
        &mut conn,
        &format!(
            "SELECT tenant_id, id, v FROM `{}`.`accounts` ORDER BY tenant_id, id",
            t.db
        ),
    );
    let want: Vec<Vec<String>> = [["1", "b", "1"], ["2", "a", "2"]]
        .iter()
        .map(|r| r.map(String::from).to_vec())
        .collect();
    assert_eq!(rows, want);
    let dead = dead_letters(&mut conn, &t.db, "accounts_dlq");
    assert_eq!(
        dead.keys().copied().collect::<Vec<_>>(),
        vec![4, 5, 6],
        "{dead:?}"
    );
    assert!(dead[&6].contains("id"), "{dead:?}");
    drop_db(&mut conn, &t.db);
}

#[test]
fn timestamps_land_at_their_instant_whatever_the_route_time_zone() {
    // The route writes local times in +05:30; a TIMESTAMP holds the
    // instant, read back here in UTC, a DATETIME the local time.
    let mut conn = mysql();
    let (_cluster, t) = setup(
        &mut conn,
        "rt_zone",
        "zone_in",
        1,
        &[
            "CREATE TABLE `{db}`.`moments` (id INT PRIMARY KEY, at TIMESTAMP(3) NULL, \
           local DATETIME(3))",
        ],
    );
    let payloads = [
        r#"{"id":1,"at":"2024-01-01T00:00:00Z","local":"2024-01-01T00:00:00Z"}"#,
        r#"{"id":2,"at":1704067200500,"local":1704067200500}"#,
        r#"{"id":3,"at":"2024-06-01 10:00:00","local":"2024-06-01 10:00:00"}"#,
    ];
    produce_payloads(&t.brokers, &t.topic, 0, &payloads.map(str::as_bytes));
    let routes =
        "[[routes]]\ntopics = [\"zone_in\"]\ntable = \"moments\"\ntime_zone = \"+05:30\"\n";
    let (code, log) = drain(&t, "rt_zone", &config_text("", routes), &[]);
    assert_eq!(code, Some(0), "{log}");
    conn.query_drop("SET time_zone = '+00:00'").unwrap();
    let rows = text_rows(
        &mut conn,
        &format!(
            "SELECT id, CAST(at AS CHAR), CAST(local AS CHAR) FROM `{}`.`moments` ORDER BY id",
            t.db
        ),
    );
    let want: Vec<Vec<String>> = [
        ["1", "2024-01-01 00:00:00.000", "2024-01-01 05:30:00.000"],
        ["2", "2024-01-01 00:00:00.500", "2024-01-01 05:30:00.500"],
        ["3", "2024-06-01 04:30:00.000", "2024-06-01 10:00:00.000"],
    ]
    .iter()
    .map(|r| r.map(String::from).to_vec())
    .collect();
    assert_eq!(rows, want);
    drop_db(&mut conn, &t.db);
}

#[test]
fn exactly_once_inserts_through_a_sigkill_apply_each_message_once() {
    // Insert mode refuses a row whose key exists: a message applied twice
    // after the kill would be a dead letter here.
    let mut conn = mysql();
    let (parts, n) = (4, 20_000u64);
    let (_cluster, t) = setup(
        &mut conn,
        "rt_kill",
        "kill_in",
        parts,
        &["CREATE TABLE `{db}`.`entries` (id BIGINT PRIMARY KEY, part INT, at BIGINT)"],
    );
    let records = (0..n)
        .map(|i| {
            let p = partition_of(i, parts);
            let body = format!(r#"{{"id":{i},"part":{p}}}"#);
            (p, Some(b"k".to_vec()), Some(body.into_bytes()))
        })
        .collect();
    produce_raw(&t.brokers, &t.topic, records);
    let routes = "[[routes]]\ntopics = [\"kill_in\"]\ntable = \"entries\"\nmode = \"insert\"\n\
                  [routes.columns]\nid = \"id\"\npart = \"@partition\"\nat = \"@offset\"\n";
    let config = config_text("batch_size = 50\nwriters = 2", routes);
    let dir = scratch_dir("rt_kill");
    let path = write_config(&dir, &config);
    let mut first = spawn_sink(&t, &path, dir.join("first.log"), &[], &[]);
    let started = wait_for(Duration::from_secs(60), || {
        count(&mut conn, &t.db, "entries") >= 2_000
    });
    assert!(started, "{}", first.log_text());
    first.signal("KILL");
    first.wait(Duration::from_secs(10));
    let mut second = spawn_sink(
        &t,
        &path,
        dir.join("second.log"),
        &["--until-caught-up"],
        &[],
    );
    let status = second.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", second.log_text());
    assert_eq!(count(&mut conn, &t.db, "entries"), n);
    assert!(dead_letters(&mut conn, &t.db, "entries_dlq").is_empty());
    // Each row is its message: partition and offset as produced.
    let wrong: u64 = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM `{}`.`entries` WHERE part <> id % {parts} OR at <> id DIV {parts}",
            t.db
        ))
        .unwrap()
        .unwrap();
    assert_eq!(wrong, 0);
    drop_db(&mut conn, &t.db);
}

/// Start-up of `routes` against `ddl`: the exit code and what stderr said.
fn refused(tag: &str, ddl: &[&str], routes: &str) -> (Option<i32>, String) {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, tag);
    conn.query_drop(format!("CREATE DATABASE `{db}`")).unwrap();
    for statement in ddl {
        conn.query_drop(statement.replace("{db}", &db)).unwrap();
    }
    let t = Target {
        // Start-up refuses before the consumer is made: no cluster needed.
        brokers: "127.0.0.1:1".into(),
        topic: "t_in".into(),
        group: format!("{tag}-group"),
        db: db.clone(),
    };
    let result = drain(&t, tag, &config_text("", routes), &[]);
    drop_db(&mut conn, &db);
    result
}

#[test]
fn a_route_that_does_not_fit_its_table_stops_start_up_naming_route_and_column() {
    let table = "CREATE TABLE `{db}`.`t` (id INT PRIMARY KEY, v INT, req INT NOT NULL, \
                 email VARCHAR(50), gen INT AS (v * 2) VIRTUAL, UNIQUE KEY uq_email (email))";
    let head = "[[routes]]\ntopics = [\"t_in\"]\ntable = \"t\"\n";
    let cases: [(&str, String, &[&str]); 6] = [
        (
            "rt_nocol",
            format!("{head}allow_other_unique = true\n[routes.columns]\nid = \"id\"\nreq = \"r\"\nnope = \"x\"\n"),
            &["nope"],
        ),
        (
            "rt_unfed",
            format!("{head}allow_other_unique = true\n[routes.columns]\nid = \"id\"\n"),
            &["req"],
        ),
        (
            "rt_gen",
            format!("{head}allow_other_unique = true\n[routes.columns]\nid = \"id\"\nreq = \"r\"\ngen = \"g\"\n"),
            &["gen"],
        ),
        (
            "rt_notkey",
            format!("{head}mode = \"insert\"\nkey = [\"v\"]\n"),
            &["v"],
        ),
        ("rt_unique", head.to_string(), &["uq_email", "email"]),
        (
            "rt_missing",
            "[[routes]]\ntopics = [\"t_in\"]\ntable = \"ghost\"\n".into(),
            &["ghost"],
        ),
    ];
    std::thread::scope(|s| {
        let runs: Vec<_> = cases
            .iter()
            .map(|(tag, routes, _)| s.spawn(move || refused(tag, &[table], routes)))
            .collect();
        for ((tag, _, names), run) in cases.iter().zip(runs) {
            let (code, log) = run.join().unwrap();
            assert_eq!(code, Some(1), "{tag}: {log}");
            for name in ["routes[0]"].iter().chain(names.iter()) {
                assert!(log.contains(name), "{tag}: no {name} in {log}");
            }
        }
    });
}
