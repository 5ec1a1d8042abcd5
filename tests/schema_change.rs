//! A route's table changed while the sink runs, with the real binary: the
//! plan is built again against the table as it is, nothing is lost, and
//! the messages that no longer fit are dead-lettered naming why.

mod common;

use std::time::Duration;

use mysql::prelude::Queryable;

use common::*;

#[test]
fn a_column_added_and_one_dropped_while_running_replans_and_loses_nothing() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "schemachange");
    conn.query_drop(format!("CREATE DATABASE `{db}`")).unwrap();
    conn.query_drop(format!(
        "CREATE TABLE `{db}`.`sc` (id BIGINT NOT NULL PRIMARY KEY, a INT NOT NULL, \
         b VARCHAR(20) NULL)"
    ))
    .unwrap();
    let cluster = mock_cluster("sc", 1);
    let brokers = cluster.bootstrap_servers();
    let send = |from: u64, to: u64, shape: &dyn Fn(u64) -> String| {
        let records: Vec<_> = (from..to)
            .map(|i| (0, i.to_string().into_bytes(), shape(i).into_bytes()))
            .collect();
        produce(&brokers, "sc", records);
    };
    let old = |i: u64| format!(r#"{{"id":{i},"a":{i},"b":"b{i}"}}"#);
    let new = |i: u64| format!(r#"{{"id":{i},"a":{i},"c":{}}}"#, i * 2);
    send(0, 100, &old);
    let t = Target {
        brokers: brokers.clone(),
        topic: "sc".into(),
        group: "schemachange-group".into(),
        db: db.clone(),
    };
    let dir = scratch_dir("schemachange");
    let config = write_config(
        &dir,
        "[kafka]\ncommit_interval_ms = 100\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
         [sink]\nflush_interval_ms = 20\n\
         [[routes]]\ntopics = [\"sc\"]\ntable = \"sc\"\nunknown_fields = \"reject\"\n",
    );
    let (port, metrics) = metrics_env();
    let mut sink = spawn_sink(&t, &config, dir.join("sink.log"), &[], &[metrics]);
    let rows = |conn: &mut mysql::Conn| -> u64 {
        conn.query_first(format!("SELECT COUNT(*) FROM `{db}`.`sc`"))
            .unwrap()
            .unwrap_or(0)
    };
    assert!(
        wait_for(Duration::from_secs(60), || rows(&mut conn) == 100),
        "{}",
        sink.log_text()
    );
    conn.query_drop(format!(
        "ALTER TABLE `{db}`.`sc` ADD COLUMN c INT NULL, DROP COLUMN b"
    ))
    .unwrap();
    // The new shape, then messages still of the old one: `b` is no column
    // any more, and the route rejects fields it does not know.
    send(100, 200, &new);
    send(200, 220, &old);
    let dead = |conn: &mut mysql::Conn| -> Vec<(i64, String)> {
        conn.query(format!(
            "SELECT kafka_offset, error FROM `{db}`.`sc_dlq` ORDER BY kafka_offset"
        ))
        .unwrap_or_default()
    };
    assert!(
        wait_for(Duration::from_secs(90), || rows(&mut conn) == 200
            && dead(&mut conn).len() == 20),
        "{}",
        sink.log_text()
    );
    let got: Vec<(u64, u64, Option<u64>)> = conn
        .query(format!("SELECT id, a, c FROM `{db}`.`sc` ORDER BY id"))
        .unwrap();
    let want: Vec<(u64, u64, Option<u64>)> = (0..200)
        .map(|i| (i, i, (i >= 100).then_some(i * 2)))
        .collect();
    assert_eq!(got, want);
    let letters = dead(&mut conn);
    assert_eq!(
        letters.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (200..220).collect::<Vec<i64>>()
    );
    assert!(letters.iter().all(|(_, e)| e.contains('b')), "{letters:?}");
    assert!(
        scrape(port, "kafka_mysql_sink_plan_rebuilds_total").is_some_and(|n| n >= 1.0),
        "{}",
        sink.log_text()
    );
    sink.signal("TERM");
    assert!(
        sink.wait(Duration::from_secs(60)).success(),
        "{}",
        sink.log_text()
    );
    assert_eq!(committed(&brokers, &t.group, "sc", 1), vec![220]);
    drop_db(&mut conn, &db);
}

#[test]
fn a_column_dropped_under_a_backlog_replans_without_failing_the_run() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "schemabacklog");
    conn.query_drop(format!("CREATE DATABASE `{db}`")).unwrap();
    conn.query_drop(format!(
        "CREATE TABLE `{db}`.`bl` (id BIGINT NOT NULL PRIMARY KEY, a INT NOT NULL, \
         b VARCHAR(20) NULL)"
    ))
    .unwrap();
    let cluster = mock_cluster("bl", 1);
    let brokers = cluster.bootstrap_servers();
    let n = 30_000u64;
    let records: Vec<_> = (0..n)
        .map(|i| {
            let body = format!(r#"{{"id":{i},"a":{i},"b":"b{i}"}}"#);
            (0, i.to_string().into_bytes(), body.into_bytes())
        })
        .collect();
    produce(&brokers, "bl", records);
    let t = Target {
        brokers: brokers.clone(),
        topic: "bl".into(),
        group: "schemabacklog-group".into(),
        db: db.clone(),
    };
    let dir = scratch_dir("schemabacklog");
    // One writer with a short channel: the consumer waits on it when the
    // writer gives its batch up.
    let config = write_config(
        &dir,
        "[kafka]\ncommit_interval_ms = 100\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
         [sink]\nwriters = 1\nbatch_size = 50\nchannel_capacity = 100\nflush_interval_ms = 20\n\
         [[routes]]\ntopics = [\"bl\"]\ntable = \"bl\"\n",
    );
    let (port, metrics) = metrics_env();
    let mut sink = spawn_sink(&t, &config, dir.join("sink.log"), &[], &[metrics]);
    let rows = |conn: &mut mysql::Conn| -> u64 {
        conn.query_first(format!("SELECT COUNT(*) FROM `{db}`.`bl`"))
            .unwrap()
            .unwrap_or(0)
    };
    assert!(
        wait_for(Duration::from_secs(60), || rows(&mut conn) >= 2_000),
        "{}",
        sink.log_text()
    );
    conn.query_drop(format!("ALTER TABLE `{db}`.`bl` DROP COLUMN b"))
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(120), || rows(&mut conn) == n),
        "{}",
        sink.log_text()
    );
    assert!(
        scrape(port, "kafka_mysql_sink_plan_rebuilds_total").is_some_and(|r| r >= 1.0),
        "{}",
        sink.log_text()
    );
    let sum: u64 = conn
        .query_first(format!("SELECT CAST(SUM(a) AS UNSIGNED) FROM `{db}`.`bl`"))
        .unwrap()
        .unwrap();
    assert_eq!(sum, n * (n - 1) / 2);
    sink.signal("TERM");
    assert!(
        sink.wait(Duration::from_secs(60)).success(),
        "{}",
        sink.log_text()
    );
    assert_eq!(committed(&brokers, &t.group, "bl", 1), vec![n as i64]);
    drop_db(&mut conn, &db);
}
