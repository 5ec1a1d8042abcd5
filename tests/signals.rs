//! The real binary under SIGTERM: drains, commits, exits 0, and a restart
//! finishes the stream with nothing lost.

mod common;

use std::time::Duration;

use common::*;
use mysql::prelude::Queryable;

/// A login whose password is distinctive enough to search the logs for.
const SECRET_USER: &str = "kms_secret_user";
const SECRET_PASSWORD: &str = "Sup3r-S3cret-PW-9c1f";

fn create_secret_user(conn: &mut mysql::Conn) {
    for stmt in [
        format!("CREATE USER IF NOT EXISTS '{SECRET_USER}'@'%' IDENTIFIED BY '{SECRET_PASSWORD}'"),
        format!("GRANT ALL PRIVILEGES ON *.* TO '{SECRET_USER}'@'%'"),
    ] {
        conn.query_drop(stmt).unwrap();
    }
}

fn secret_env() -> Vec<(&'static str, String)> {
    vec![
        ("MYSQL_USER", SECRET_USER.to_string()),
        ("MYSQL_PASSWORD", SECRET_PASSWORD.to_string()),
    ]
}

#[test]
fn sigterm_mid_stream_drains_commits_and_a_restart_finishes() {
    let mut conn = mysql();
    create_secret_user(&mut conn);
    let parts = 8;
    let n = 100_000u64;
    let dir = scratch_dir("sigterm");
    let (_cluster, mut t) = target(&mut conn, "sigterm", parts);
    t.group = "sink-mysql-workers".into();
    // Small batches and one writer keep the first run slow enough to be
    // interrupted mid-stream.
    let config = write_config(
        &dir,
        "[kafka]\ncommit_interval_ms = 100\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
         [mysql]\npool_size = 2\n[sink]\nbatch_size = 50\nwriters = 1\nflush_interval_ms = 20\n",
    );
    produce_orders(&t, parts, n);

    let mut first = spawn_sink(&t, &config, dir.join("first.log"), &[], &secret_env());
    let started = wait_for(Duration::from_secs(120), || {
        count(&mut conn, &t.db, "orders") >= 3000
    });
    assert!(started, "first run never wrote rows:\n{}", first.log_text());
    first.signal("TERM");
    let status = first.wait(Duration::from_secs(60));
    assert!(status.success(), "exit {status:?}:\n{}", first.log_text());

    // Stopped mid-stream, and every committed offset is durable in MySQL.
    let committed_now = committed(&t.brokers, &t.group, &t.topic, parts);
    let total_committed: i64 = committed_now.iter().map(|&c| c.max(0)).sum();
    assert!(total_committed > 0, "nothing committed at shutdown");
    assert!(
        (total_committed as u64) < n,
        "the first run was not interrupted mid-stream"
    );
    assert_committed_is_durable(&mut conn, &t.db, &committed_now, n);
    // Drained and committed to the last row: with one writer the rows
    // handed over are, per partition, a prefix of what was read, so once
    // every one of them is written and committed there is exactly one row
    // per committed offset. A drain that stopped early, or a final commit
    // that was lost, leaves rows beyond the committed offsets.
    assert_eq!(
        count(&mut conn, &t.db, "orders"),
        total_committed as u64,
        "rows written but not committed at exit: {committed_now:?}"
    );
    // The log itself is under test here: the settings line shows the
    // password redacted (and, below, never in clear).
    let first_log = first.log_text();
    assert!(first_log.contains("password=<redacted>"), "{first_log}");

    let mut second = spawn_sink(
        &t,
        &config,
        dir.join("second.log"),
        &["--until-caught-up"],
        &secret_env(),
    );
    let status = second.wait(Duration::from_secs(300));
    assert!(status.success(), "exit {status:?}:\n{}", second.log_text());

    for run in [&first, &second] {
        assert!(
            !run.log_text().contains(SECRET_PASSWORD),
            "the password leaked into {}",
            run.log.display()
        );
    }
    let mut expected: Vec<Expected> = (0..n).map(|i| order(i, 0).1).collect();
    expected.sort();
    assert_eq!(table_rows(&mut conn, &t.db, "orders"), expected);
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, parts),
        end_offsets(&t.brokers, &t.topic, parts)
    );
    drop_db(&mut conn, &t.db);
}

#[test]
fn a_second_signal_exits_at_once_during_a_stuck_drain() {
    let mut conn = mysql();
    let dir = scratch_dir("stuck");
    let (_cluster, mut t) = target(&mut conn, "stuck", 1);
    t.group = "stuck-group".into();
    let config = write_config(
        &dir,
        "[sink]\nflush_interval_ms = 20\nshutdown_timeout_ms = 600000\n",
    );
    conn.query_drop(format!("CREATE DATABASE `{}`", t.db))
        .unwrap();
    kafka_mysql_sink::internals::ensure_table(&mut conn, &t.db, "orders").unwrap();
    // Hold a write lock so every batch waits: the drain cannot finish.
    let mut locker = mysql();
    locker
        .query_drop(format!("LOCK TABLES `{}`.`orders` WRITE", t.db))
        .unwrap();
    produce(
        &t.brokers,
        &t.topic,
        (0..100u64).map(|i| (0, b"k".to_vec(), order(i, 0).0.into_bytes())),
    );
    let (port, metrics) = metrics_env();
    let mut child = spawn_sink(&t, &config, dir.join("stuck.log"), &[], &[metrics]);
    // Wait until its writer is blocked on the lock.
    let blocked = wait_for(Duration::from_secs(60), || {
        waiting_inserts(&mut conn, &t.db) > 0
    });
    assert!(
        blocked,
        "the writer never reached the lock:\n{}",
        child.log_text()
    );
    child.signal("TERM");
    // The first signal starts the drain, which the lock keeps from ending;
    // the process is still there to say so.
    let draining = wait_for(Duration::from_secs(30), || {
        scrape(port, "kafka_mysql_sink_draining") == Some(1.0)
    });
    assert!(draining, "the drain never started:\n{}", child.log_text());
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "first signal must drain, not exit"
    );
    // Its insert waits on the lock (between waits, which the server ends
    // after three quarters of timeout_ms, it is retried).
    assert!(
        wait_for(Duration::from_secs(30), || waiting_inserts(
            &mut conn, &t.db
        ) > 0),
        "the drain is not stuck on the lock"
    );
    child.signal("INT");
    let status = child.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{}", child.log_text());
    // Nothing was durable, so nothing was committed.
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 1), vec![-1]);
    locker.query_drop("UNLOCK TABLES").unwrap();
    drop_db(&mut conn, &t.db);
}
