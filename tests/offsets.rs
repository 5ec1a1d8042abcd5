//! Offsets that Kafka no longer has (a recreated topic, retention gaps),
//! `offsets show` and `offsets reset`, and the durable lag: against the
//! real binary, MariaDB and librdkafka's mock cluster.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use mysql::prelude::Queryable;

const FAST: &str =
    "[kafka]\ncommit_interval_ms = 200\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
     [sink]\nflush_interval_ms = 50\nstats_interval_ms = 500\n";

/// A config file in `dir` with `kafka` keys added to [`FAST`]'s.
fn config_with(dir: &std::path::Path, name: &str, kafka: &str) -> std::path::PathBuf {
    let body = FAST.replace("[kafka]\n", &format!("[kafka]\n{kafka}\n"));
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// The seed's environment variables pointing at the target.
fn sink_env(t: &Target) -> Vec<(&'static str, String)> {
    vec![
        ("RUST_LOG", "warn".into()),
        ("KAFKA_BROKERS", t.brokers.clone()),
        ("SOURCE_TOPIC", t.topic.clone()),
        ("SINK_GROUP_ID", t.group.clone()),
        ("MYSQL_HOST", "127.0.0.1".into()),
        ("MYSQL_PORT", mysql_port().to_string()),
        ("MYSQL_USER", "root".into()),
        ("MYSQL_PASSWORD", "root".into()),
        ("MYSQL_DATABASE", t.db.clone()),
        ("MYSQL_TABLE", "orders".into()),
    ]
}

/// Runs `kafka-mysql-sink offsets ARGS` against the target.
fn offsets_cmd(t: &Target, config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("offsets")
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(sink_env(t))
        .output()
        .expect("run the offsets command")
}

/// A backfill run to its end: (exit code, log).
fn backfill(
    t: &Target,
    config: &std::path::Path,
    dir: &std::path::Path,
    tag: &str,
) -> (i32, String) {
    backfill_with(t, config, dir, tag, &[])
}

/// [`backfill`] with more environment.
fn backfill_with(
    t: &Target,
    config: &std::path::Path,
    dir: &std::path::Path,
    tag: &str,
    env: &[(&str, String)],
) -> (i32, String) {
    let log = dir.join(format!("{tag}.log"));
    let mut run = spawn_sink(t, config, log, &["--until-caught-up"], env);
    let status = run.wait(Duration::from_secs(180));
    (status.code().unwrap_or(-1), run.log_text())
}

/// A number from the summary line, e.g. `offset_resets`.
fn summary_field(log: &str, field: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("stopped: rows_written="))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{field}=")))
        .and_then(|v| v.parse().ok())
}

/// MySQL's next offset per partition, in partition order.
fn mysql_next(conn: &mut mysql::Conn, t: &Target) -> Vec<Option<i64>> {
    conn.query(format!(
        "SELECT next_offset FROM `{}`.`orders_offsets` WHERE consumer_group = '{}' \
         ORDER BY kafka_partition",
        t.db, t.group
    ))
    .unwrap()
}

#[test]
fn a_recreated_topic_is_refused_by_default_and_read_from_its_start_when_asked() {
    let mut conn = mysql();
    let parts = 4;
    let dir = scratch_dir("recreated");
    let (_old, mut t) = target(&mut conn, "recreated", parts);
    t.group = "recreated".into();
    let fail = config_with(&dir, "fail.toml", "");
    produce_orders(&t, parts, 3000);
    let (code, log) = backfill(&t, &fail, &dir, "first");
    assert_eq!(code, 0, "{log}");
    let before = mysql_next(&mut conn, &t);
    assert_eq!(before, vec![Some(750); parts as usize]);

    // The same topic, started again from offset 0 on a new cluster, with
    // 4,000 new orders: the new log has grown past the sink's offsets
    // (750), which look valid by their numbers alone. The cluster id tells.
    let new = mock_cluster("enriched_orders", parts);
    t.brokers = new.bootstrap_servers();
    produce_order_range_from(&t.brokers, &t.topic, parts, 3000, 7000);
    let (code, log) = backfill(&t, &fail, &dir, "refused");
    assert_eq!(
        code, 1,
        "an offset beyond the log's end must stop the run:\n{log}"
    );
    assert_eq!(
        count(&mut conn, &t.db, "orders"),
        3000,
        "nothing new is written"
    );
    assert_eq!(mysql_next(&mut conn, &t), before, "nor any offset moved");

    // `offsets show` tells the same: MySQL's next offsets, of another log.
    let shown = offsets_cmd(&t, &fail, &["show"]);
    assert!(shown.status.success(), "{shown:?}");
    let text = String::from_utf8_lossy(&shown.stdout);
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), parts as usize, "{text}");
    for r in &rows {
        // partition, log_start, log_end, kafka_committed, mysql_next, ...
        assert_eq!(r[2], "1000", "{text}");
        assert_eq!(r[4], "750", "{text}");
        assert!(r[7].starts_with("OF"), "{text}");
    }

    // So does `check`, before anything is started.
    let checked = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&fail)
        .envs(sink_env(&t))
        .output()
        .unwrap();
    assert_eq!(checked.status.code(), Some(1), "{checked:?}");
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("FAIL positions"),
        "{checked:?}"
    );

    // Told to go on from the start: the new orders land, the reset is
    // counted and the backfill's exit status says so.
    let earliest = config_with(&dir, "earliest.toml", "on_out_of_range = \"earliest\"");
    let (code, log) = backfill(&t, &earliest, &dir, "earliest");
    assert_eq!(code, 3, "{log}");
    assert_eq!(
        summary_field(&log, "offset_resets"),
        Some(parts as u64),
        "{log}"
    );
    assert_eq!(summary_field(&log, "offsets_lost"), Some(0), "{log}");
    assert_eq!(count(&mut conn, &t.db, "orders"), 7000);
    assert_eq!(mysql_next(&mut conn, &t), vec![Some(1000); parts as usize]);
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, parts),
        vec![1000; parts as usize]
    );
    // From then on the offsets are in range: nothing is reset again.
    let (code, log) = backfill(&t, &fail, &dir, "after");
    assert_eq!(code, 0, "{log}");
    assert_eq!(summary_field(&log, "offset_resets"), Some(0), "{log}");
    drop_db(&mut conn, &t.db);
}

#[test]
fn a_reset_kafka_never_took_is_not_undone_by_kafka_s_old_offset() {
    let mut conn = mysql();
    let parts = 2;
    let dir = scratch_dir("pending");
    let (_old, mut t) = target(&mut conn, "pending", parts);
    t.group = "pending".into();
    let body = "on_out_of_range = \"earliest\"";
    let config = config_with(&dir, "sink.toml", body);
    let at_least_once = [("SINK_DELIVERY", "at_least_once".to_string())];
    let run = |t: &Target, tag: &str| backfill_with(t, &config, &dir, tag, &at_least_once);
    produce_orders(&t, parts, 1500);
    let (code, log) = run(&t, "first");
    assert_eq!(code, 0, "{log}");

    // The topic recreated with 400 new orders, while the group's offsets
    // (750, of the old log) survived in Kafka.
    let new = mock_cluster("enriched_orders", parts);
    t.brokers = new.bootstrap_servers();
    produce_order_range_from(&t.brokers, &t.topic, parts, 3000, 3400);
    {
        use rdkafka::consumer::Consumer;
        let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &t.brokers)
            .set("group.id", &t.group)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..parts {
            tpl.add_partition_offset(&t.topic, p, rdkafka::Offset::Offset(750))
                .unwrap();
        }
        c.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
    }
    // The sink resets to the start (another log), but Kafka refuses
    // the commit that records it: the run stops before reading.
    new.request_errors(
        rdkafka::types::RDKafkaApiKey::OffsetCommit,
        &[rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 4],
    );
    let (code, log) = run(&t, "refused-commit");
    assert_eq!(code, 1, "{log}");
    new.clear_request_errors(rdkafka::types::RDKafkaApiKey::OffsetCommit);
    assert_eq!(count(&mut conn, &t.db, "orders"), 1500);
    // Meanwhile the new log grows past Kafka's stale 750.
    produce_order_range_from(&t.brokers, &t.topic, parts, 3400, 6000);
    let (code, log) = run(&t, "after");
    assert_eq!(code, 0, "{log}");
    // Every order of the new log, from its start: the reset held.
    assert_eq!(count(&mut conn, &t.db, "orders"), 1500 + 3000);
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, parts),
        vec![1500; parts as usize]
    );
    drop_db(&mut conn, &t.db);
}

/// Order `i` padded to about 10 kB, so that a few hundred of them push the
/// mock cluster's log (about 5 MB a partition) past its oldest messages.
fn padded_order(i: u64) -> Vec<u8> {
    let (payload, _) = order(i, 0);
    let pad = "x".repeat(10_000);
    format!("{},\"pad\":\"{pad}\"}}", &payload[..payload.len() - 1]).into_bytes()
}

#[test]
fn a_retention_gap_is_refused_by_default_and_counted_when_skipped() {
    let mut conn = mysql();
    let dir = scratch_dir("retention");
    let (_cluster, base) = target(&mut conn, "retention", 1);
    let fail = config_with(&dir, "fail.toml", "");
    // Two groups, each with its own table, have read the first 50 orders.
    let mut groups = Vec::new();
    for name in ["gap-earliest", "gap-latest"] {
        let t = Target {
            brokers: base.brokers.clone(),
            topic: base.topic.clone(),
            group: name.into(),
            db: fresh_db(&mut conn, name),
        };
        groups.push(t);
    }
    produce_orders(&base, 1, 50);
    for t in &groups {
        let (code, log) = backfill(t, &fail, &dir, &format!("{}-first", t.group));
        assert_eq!(code, 0, "{log}");
    }
    // 1,500 large orders: retention (the mock's size bound) deletes the
    // oldest, among them offsets the groups never read.
    produce(
        &base.brokers,
        &base.topic,
        (50..1550).map(|i| (0, b"k".to_vec(), padded_order(i))),
    );
    let consumer_low = {
        let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &base.brokers)
            .create()
            .unwrap();
        use rdkafka::consumer::Consumer;
        c.fetch_watermarks(&base.topic, 0, Duration::from_secs(10))
            .unwrap()
    };
    let (low, high) = consumer_low;
    assert!(
        low > 50,
        "the log must have lost unread offsets: {low}..{high}"
    );

    // Refused, whatever auto_offset_reset says (it is for groups without
    // offsets): nothing written, nothing moved.
    let t = &groups[0];
    let latest_fresh = config_with(&dir, "fresh-latest.toml", "auto_offset_reset = \"latest\"");
    let (code, log) = backfill(t, &latest_fresh, &dir, "refused");
    assert_eq!(code, 1, "{log}");
    assert_eq!(count(&mut conn, &t.db, "orders"), 50);
    assert_eq!(mysql_next(&mut conn, t), vec![Some(50)]);

    // From the log's start: what is left is written, the gap counted.
    let earliest = config_with(&dir, "earliest.toml", "on_out_of_range = \"earliest\"");
    let (code, log) = backfill(t, &earliest, &dir, "earliest");
    assert_eq!(code, 3, "{log}");
    assert_eq!(summary_field(&log, "offset_resets"), Some(1), "{log}");
    assert_eq!(
        summary_field(&log, "offsets_lost"),
        Some((low - 50) as u64),
        "{log}"
    );
    assert_eq!(count(&mut conn, &t.db, "orders"), 50 + (high - low) as u64);
    assert_eq!(mysql_next(&mut conn, t), vec![Some(high)]);

    // From the log's end: the backfill finishes at once, and says what it
    // passed over.
    let t = &groups[1];
    let latest = config_with(&dir, "latest.toml", "on_out_of_range = \"latest\"");
    let (code, log) = backfill(t, &latest, &dir, "latest");
    assert_eq!(code, 3, "{log}");
    assert_eq!(
        summary_field(&log, "offsets_lost"),
        Some((high - 50) as u64),
        "{log}"
    );
    assert_eq!(count(&mut conn, &t.db, "orders"), 50);
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 1), vec![high]);
    for t in &groups {
        drop_db(&mut conn, &t.db);
    }
    drop_db(&mut conn, &base.db);
}

#[test]
fn offsets_reset_replays_in_both_stores_and_is_refused_while_a_sink_runs() {
    let mut conn = mysql();
    let parts = 2;
    let n = 600;
    let dir = scratch_dir("replay");
    let (_cluster, mut t) = target(&mut conn, "replay", parts);
    t.group = "replay".into();
    let config = config_with(&dir, "sink.toml", "");
    produce_orders(&t, parts, n);
    let (code, log) = backfill(&t, &config, &dir, "first");
    assert_eq!(code, 0, "{log}");
    // Somebody damages the table; a replay from the start repairs it.
    conn.query_drop(format!("UPDATE `{}`.`orders` SET quantity = 0", t.db))
        .unwrap();

    // While a sink runs, the reset is refused and changes nothing.
    let (port, env) = metrics_env();
    let running = spawn_sink(&t, &config, dir.join("running.log"), &[], &[env]);
    assert!(
        wait_for(Duration::from_secs(60), || scrape(
            port,
            "kafka_mysql_sink_assigned_partitions"
        ) == Some(parts as f64)),
        "{}",
        running.log_text()
    );
    let refused = offsets_cmd(&t, &config, &["reset", "--to", "earliest"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert_eq!(mysql_next(&mut conn, &t), vec![Some(300); 2]);
    running.signal("TERM");
    let mut running = running;
    assert_eq!(running.wait(Duration::from_secs(60)).code(), Some(0));

    let reset = offsets_cmd(&t, &config, &["reset", "--to", "earliest"]);
    assert!(reset.status.success(), "{reset:?}");
    assert_eq!(mysql_next(&mut conn, &t), vec![Some(0); 2]);
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, parts), vec![0, 0]);
    let (code, log) = backfill(&t, &config, &dir, "replay");
    assert_eq!(code, 0, "{log}");
    assert_drained(&mut conn, &t, n, parts);

    // One partition to an offset: only it moves.
    let one = offsets_cmd(&t, &config, &["reset", "--to", "100", "--partition", "1"]);
    assert!(one.status.success(), "{one:?}");
    assert_eq!(mysql_next(&mut conn, &t), vec![Some(300), Some(100)]);
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, parts),
        vec![300, 100]
    );
    // An offset the log does not have is refused.
    let outside = offsets_cmd(&t, &config, &["reset", "--to", "5000"]);
    assert_eq!(outside.status.code(), Some(1), "{outside:?}");
    drop_db(&mut conn, &t.db);
}

#[test]
fn durable_lag_stays_up_while_a_partition_is_read_but_fenced() {
    let mut conn = mysql();
    let parts = 2;
    let dir = scratch_dir("durable-lag");
    let (_cluster, mut t) = target(&mut conn, "durablelag", parts);
    t.group = "durable-lag".into();
    // The fenced rows are never written: the drain gives up on them soon.
    let config = config_with(&dir, "sink.toml", "");
    let body = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[sink]\n", "[sink]\nshutdown_timeout_ms = 2000\n");
    std::fs::write(&config, body).unwrap();
    let (port, env) = metrics_env();
    let mut sink = spawn_sink(&t, &config, dir.join("sink.log"), &[], &[env]);
    assert!(
        wait_for(Duration::from_secs(60), || scrape(
            port,
            "kafka_mysql_sink_assigned_partitions"
        ) == Some(parts as f64)),
        "{}",
        sink.log_text()
    );
    // Partition 0's row moves to a generation this sink never claimed:
    // every write of it is fenced off, and none is acknowledged.
    conn.query_drop(format!(
        "UPDATE `{}`.`orders_offsets` SET generation = generation + 1 WHERE kafka_partition = 0",
        t.db
    ))
    .unwrap();
    produce_orders(&t, parts, 400);
    let lag = |p: i32, name: &str| {
        scrape(
            port,
            &format!(
                "kafka_mysql_sink_{name}{{topic=\"{}\",partition=\"{p}\"}}",
                t.topic
            ),
        )
    };
    assert!(
        wait_for(Duration::from_secs(60), || {
            lag(0, "consumer_lag") == Some(0.0)
                && lag(1, "durable_lag") == Some(0.0)
                && lag(0, "durable_lag") == Some(200.0)
        }),
        "read lag {:?}, durable lag {:?} / {:?}\n{}",
        lag(0, "consumer_lag"),
        lag(0, "durable_lag"),
        lag(1, "durable_lag"),
        sink.log_text()
    );
    sink.signal("TERM");
    assert_eq!(sink.wait(Duration::from_secs(60)).code(), Some(0));
    drop_db(&mut conn, &t.db);
}

#[test]
fn a_group_moved_with_its_offsets_is_kept_where_it_was_by_offsets_reset_to_current() {
    let mut conn = mysql();
    let dir = scratch_dir("moved");
    let (_old, mut t) = target(&mut conn, "moved", 1);
    t.group = "moved".into();
    let config = config_with(&dir, "sink.toml", "");
    produce_orders(&t, 1, 100);
    let (code, log) = backfill(&t, &config, &dir, "first");
    assert_eq!(code, 0, "{log}");
    // The topic mirrored to another cluster, offsets and all, and 200 more.
    let new = mock_cluster("enriched_orders", 1);
    t.brokers = new.bootstrap_servers();
    produce_orders(&t, 1, 300);
    let (code, log) = backfill(&t, &config, &dir, "refused");
    assert_eq!(code, 1, "another cluster's offsets are refused:\n{log}");
    // The operator knows the offsets carried over: keep them.
    let kept = offsets_cmd(&t, &config, &["reset", "--to", "current"]);
    assert!(kept.status.success(), "{kept:?}");
    assert_eq!(mysql_next(&mut conn, &t), vec![Some(100)]);
    let (code, log) = backfill(&t, &config, &dir, "kept");
    assert_eq!(code, 0, "{log}");
    assert_eq!(summary_field(&log, "rows_written"), Some(200), "{log}");
    assert_eq!(table_rows(&mut conn, &t.db, "orders"), first_versions(300));
    drop_db(&mut conn, &t.db);
}

#[test]
fn an_offsets_table_of_an_earlier_version_gets_the_new_columns_and_is_used() {
    let mut conn = mysql();
    let dir = scratch_dir("old-offsets");
    let (cluster, mut t) = target(&mut conn, "oldoffsets", 2);
    t.group = "old-offsets".into();
    // The offsets table as earlier versions made it.
    conn.query_drop(format!("CREATE DATABASE `{}`", t.db))
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE `{}`.`orders_offsets` (
            `consumer_group` VARCHAR(255) NOT NULL, `topic` VARCHAR(249) NOT NULL,
            `kafka_partition` INT NOT NULL, `next_offset` BIGINT NULL,
            `generation` BIGINT NOT NULL, `owner` VARCHAR(255) NOT NULL,
            `updated_at` TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                ON UPDATE CURRENT_TIMESTAMP(3),
            PRIMARY KEY (`consumer_group`, `topic`, `kafka_partition`))",
        t.db
    ))
    .unwrap();
    let config = config_with(&dir, "sink.toml", "");
    produce_orders(&t, 2, 200);
    let (code, log) = backfill(&t, &config, &dir, "first");
    assert_eq!(code, 0, "{log}");
    let ids: Vec<Option<String>> = conn
        .query(format!(
            "SELECT log_id FROM `{}`.`orders_offsets` ORDER BY kafka_partition",
            t.db
        ))
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(Option::is_some), "{ids:?}");
    drop(cluster);
    drop_db(&mut conn, &t.db);
}

/// Commits `offset` for every partition as a member of the group (the mock
/// cluster, like a Kafka broker, takes commits for a group it knows only
/// from members): what `kafka-consumer-groups.sh --reset-offsets` does.
fn commit_as_member(t: &Target, parts: i32, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &t.brokers)
        .set("group.id", &t.group)
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[&t.topic]).unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || {
            let _ = c.poll(Duration::from_millis(100));
            c.assignment().is_ok_and(|a| a.count() == parts as usize)
        }),
        "never joined the group"
    );
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..parts {
        tpl.add_partition_offset(&t.topic, p, rdkafka::Offset::Offset(offset))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

#[test]
fn at_least_once_after_exactly_once_writes_what_kafka_says_despite_mysql_s_next_offsets() {
    let mut conn = mysql();
    let parts = 2;
    let dir = scratch_dir("modes");
    let (_cluster, mut t) = target(&mut conn, "modes", parts);
    t.group = "modes".into();
    let config = config_with(&dir, "sink.toml", "");
    produce_orders(&t, parts, 1000);
    let (code, log) = backfill(&t, &config, &dir, "exactly-once");
    assert_eq!(code, 0, "{log}");
    assert_eq!(mysql_next(&mut conn, &t), vec![Some(500); 2]);
    // Kafka's offsets moved back by hand, the table emptied: an
    // at-least-once run writes everything again, whatever MySQL's next
    // offsets (left by the exactly-once run) say.
    commit_as_member(&t, parts, 0);
    conn.query_drop(format!("DELETE FROM `{}`.`orders`", t.db))
        .unwrap();
    let at_least_once = [("SINK_DELIVERY", "at_least_once".to_string())];
    let (code, log) = backfill_with(&t, &config, &dir, "at-least-once", &at_least_once);
    assert_eq!(code, 0, "{log}");
    assert_drained(&mut conn, &t, 1000, parts);
    drop_db(&mut conn, &t.db);
}
