//! Crashes and outages with the real binary: SIGKILL, a group member dying,
//! MariaDB going away for longer than `max.poll.interval.ms`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

const SLOW: &str = "[kafka]\ncommit_interval_ms = 100\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
                    [mysql]\npool_size = 2\n[sink]\nbatch_size = 50\nwriters = 1\nflush_interval_ms = 20\n";

fn expected(n: u64) -> Vec<Expected> {
    let mut e: Vec<Expected> = (0..n).map(|i| order(i, 0).1).collect();
    e.sort();
    e
}

#[test]
fn sigkill_at_a_random_moment_then_restart_is_exact() {
    let mut conn = mysql();
    let (parts, n) = (8, 60_000u64);
    let dir = scratch_dir("sigkill");
    let (_cluster, mut t) = target(&mut conn, "sigkill", parts);
    t.group = "sigkill-group".into();
    produce_orders(&t, parts, n);
    let config = write_config(&dir, SLOW);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let kill_at = 1000 + nanos % 30_000;
    eprintln!("killing after {kill_at} rows");

    let mut first = spawn_sink(&t, &config, dir.join("first.log"), &[], &[]);
    assert!(
        wait_for(Duration::from_secs(120), || count(
            &mut conn, &t.db, "orders"
        ) >= kill_at),
        "{}",
        first.log_text()
    );
    first.signal("KILL");
    first.wait(Duration::from_secs(10));

    // No committed offset is ahead of MySQL.
    let at_kill = committed(&t.brokers, &t.group, &t.topic, parts);
    assert_committed_is_durable(&mut conn, &t.db, &at_kill, n);

    let mut second = spawn_sink(
        &t,
        &config,
        dir.join("second.log"),
        &["--until-caught-up"],
        &[],
    );
    let status = second.wait(Duration::from_secs(300));
    assert!(status.success(), "{}", second.log_text());
    assert_eq!(table_rows(&mut conn, &t.db, "orders"), expected(n));
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, parts),
        end_offsets(&t.brokers, &t.topic, parts)
    );
    drop_db(&mut conn, &t.db);
}

#[test]
fn two_instances_split_the_partitions_and_the_survivor_finishes() {
    let mut conn = mysql();
    let (parts, n) = (8, 60_000u64);
    let dir = scratch_dir("pair");
    let (_cluster, mut t) = target(&mut conn, "pair", parts);
    t.group = "pair-group".into();
    // Tiny batches: the backlog must outlast the time the group takes to split.
    produce_orders(&t, parts, n);
    let config = write_config(&dir, &SLOW.replace("batch_size = 50", "batch_size = 10"));
    // Started together, both join the group's first generation and each
    // gets a share.
    let (port_a, metrics_a) = metrics_env();
    let (port_b, metrics_b) = metrics_env();
    assert_ne!(port_a, port_b);
    let mut a = spawn_sink(&t, &config, dir.join("a.log"), &[], &[metrics_a]);
    let mut b = spawn_sink(&t, &config, dir.join("b.log"), &[], &[metrics_b]);
    let held = |port| scrape(port, "kafka_mysql_sink_assigned_partitions").unwrap_or(0.0);
    let split = wait_for(Duration::from_secs(90), || {
        held(port_a) > 0.0 && held(port_b) > 0.0
    });
    assert!(
        split,
        "the group never split:\n{}\n---\n{}",
        a.log_text(),
        b.log_text()
    );
    assert!(wait_for(Duration::from_secs(60), || count(
        &mut conn, &t.db, "orders"
    ) >= 5_000));
    assert!(
        count(&mut conn, &t.db, "orders") < n,
        "the backlog was done before the kill"
    );

    a.signal("KILL");
    a.wait(Duration::from_secs(10));
    // The survivor takes every partition over in a later rebalance (once
    // the killed member's session times out), whether or not the killed
    // one had finished its share...
    let took_over = wait_for(Duration::from_secs(120), || {
        held(port_b) == f64::from(parts)
    });
    assert!(took_over, "{}", b.log_text());
    let done = wait_caught_up(
        &t.brokers,
        &t.group,
        &t.topic,
        parts,
        Duration::from_secs(240),
    );
    assert!(done, "the survivor did not finish:\n{}", b.log_text());
    assert_eq!(held(port_b), f64::from(parts), "{}", b.log_text());
    let assignments = scrape(port_b, "kafka_mysql_sink_assignments_total").unwrap_or(0.0);
    assert!(assignments >= 2.0, "{assignments} assignments");
    // ...and each partition must have been attached to the batch queue
    // again, or it would be read one message at a time.
    assert_eq!(
        scrape(port_b, "kafka_mysql_sink_unbatched_partitions_total"),
        Some(0.0),
        "{}",
        b.log_text()
    );
    b.signal("TERM");
    assert!(
        b.wait(Duration::from_secs(60)).success(),
        "{}",
        b.log_text()
    );
    assert_eq!(table_rows(&mut conn, &t.db, "orders"), expected(n));
    drop_db(&mut conn, &t.db);
}

/// A second MariaDB of our own, so stopping it does not disturb other tests.
struct OwnMariaDb {
    port: u16,
    dir: PathBuf,
}

impl OwnMariaDb {
    fn script(&self, action: &str) -> bool {
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mariadb-local.sh"))
            .arg(action)
            .env("KMS_MYSQL_PORT", self.port.to_string())
            .env("KMS_MYSQL_DIR", &self.dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn conn(&self) -> mysql::Conn {
        mysql::Conn::new(mysql::Opts::from(mysql_opts().tcp_port(self.port))).unwrap()
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        self.script("clean");
    }
}

#[test]
fn mariadb_down_longer_than_max_poll_interval_loses_nothing_and_keeps_the_group() {
    let own = OwnMariaDb {
        // Not a fixed port: the shared server (KMS_MYSQL_PORT) or another
        // checkout's test may hold any given one.
        port: free_port(),
        dir: std::env::temp_dir().join(format!("kms-mariadb-outage-{}", std::process::id())),
    };
    assert!(
        own.script("start"),
        "cannot start a second MariaDB on port {}",
        own.port
    );
    let mut conn = own.conn();
    let (parts, n) = (8, 100_000u64);
    let dir = scratch_dir("outage");
    let (_cluster, mut t) = target(&mut conn, "outage", parts);
    t.group = "outage-group".into();
    produce_orders(&t, parts, n);
    let config = write_config(
        &dir,
        "[kafka]\ncommit_interval_ms = 200\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
         \"max.poll.interval.ms\" = \"10000\"\n\
         [mysql]\ntimeout_ms = 3000\n[sink]\nbatch_size = 200\nwriters = 2\nchannel_capacity = 500\n\
         flush_interval_ms = 20\nretry_initial_ms = 50\nretry_max_ms = 1000\n",
    );
    let (port, metrics) = metrics_env();
    let mut sink = spawn_sink(
        &t,
        &config,
        dir.join("outage.log"),
        &[],
        &[("MYSQL_PORT", own.port.to_string()), metrics],
    );
    let metric = |name: &str| scrape(port, &format!("kafka_mysql_sink_{name}"));
    assert!(
        wait_for(Duration::from_secs(120), || count(
            &mut conn, &t.db, "orders"
        ) >= 5_000),
        "{}",
        sink.log_text()
    );
    assert_eq!(metric("assignments_total"), Some(1.0));
    drop(conn);
    assert!(own.script("stop"));
    let stopped = std::time::Instant::now();
    // The outage is seen: statements fail and are retried, and the writers
    // stay behind long enough for back-pressure to pause fetching.
    let seen = wait_for(Duration::from_secs(60), || {
        metric("retries_total{class=\"transient\"}").unwrap_or(0.0) >= 1.0
            && metric("fetch_pauses_total").unwrap_or(0.0) >= 1.0
    });
    assert!(
        seen,
        "the outage never showed in the metrics:\n{}",
        sink.log_text()
    );
    // Down for longer than max.poll.interval.ms (10 s): a consumer that
    // stopped polling would have been thrown out of its group by now.
    std::thread::sleep(Duration::from_secs(15).saturating_sub(stopped.elapsed()));
    assert!(own.script("start"), "cannot restart the second MariaDB");
    let done = wait_caught_up(
        &t.brokers,
        &t.group,
        &t.topic,
        parts,
        Duration::from_secs(300),
    );
    assert!(
        done,
        "did not finish after the outage:\n{}",
        sink.log_text()
    );
    // Still the group's first and only assignment, every partition still
    // held, and no drain yet: the outage cost neither the membership nor
    // any partition.
    let log = sink.log_text();
    assert_eq!(metric("assignments_total"), Some(1.0), "rejoined:\n{log}");
    assert_eq!(
        metric("assigned_partitions"),
        Some(f64::from(parts)),
        "lost partitions:\n{log}"
    );
    assert_eq!(metric("draining"), Some(0.0));
    // Every failed attempt was a transaction rolled back, and timed as one.
    let failed = metric("retries_total{class=\"transient\"}").unwrap_or(0.0)
        + metric("retries_total{class=\"unknown\"}").unwrap_or(0.0);
    assert!(failed >= 1.0);
    assert_eq!(
        metric("write_duration_seconds_count{table=\"orders\",outcome=\"rolled_back\"}"),
        Some(failed),
        "{log}"
    );
    assert!(
        metric("write_duration_seconds_count{table=\"orders\",outcome=\"committed\"}")
            .is_some_and(|c| c >= 1.0)
    );
    sink.signal("TERM");
    assert!(
        sink.wait(Duration::from_secs(60)).success(),
        "{}",
        sink.log_text()
    );

    let mut conn = own.conn();
    assert_eq!(table_rows(&mut conn, &t.db, "orders"), expected(n));
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, parts),
        end_offsets(&t.brokers, &t.topic, parts)
    );
}
