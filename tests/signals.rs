//! The real binary under SIGTERM: drains, commits, exits 0, and a restart
//! finishes the stream with nothing lost.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-mysql-sink");
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

struct Setup {
    brokers: String,
    topic: &'static str,
    group: &'static str,
    db: String,
    config: PathBuf,
    log_dir: PathBuf,
}

fn write_config(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn spawn(s: &Setup, run: &str, extra: &[&str]) -> Child {
    let log = std::fs::File::create(s.log_dir.join(format!("{run}.log"))).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(&s.config)
        .args(extra)
        .env("RUST_LOG", "info")
        .env("KAFKA_BROKERS", &s.brokers)
        .env("SOURCE_TOPIC", s.topic)
        .env("SINK_GROUP_ID", s.group)
        .env("MYSQL_HOST", "127.0.0.1")
        .env("MYSQL_PORT", mysql_port().to_string())
        .env("MYSQL_USER", SECRET_USER)
        .env("MYSQL_PASSWORD", SECRET_PASSWORD)
        .env("MYSQL_DATABASE", &s.db)
        .env("MYSQL_TABLE", "orders")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the sink binary")
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the sink did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_of(s: &Setup, run: &str) -> String {
    std::fs::read_to_string(s.log_dir.join(format!("{run}.log"))).unwrap_or_default()
}

#[test]
fn sigterm_mid_stream_drains_commits_and_a_restart_finishes() {
    let Some(mut conn) = mysql() else { return };
    create_secret_user(&mut conn);
    let parts = 8;
    let n = 100_000u64;
    let cluster = mock_cluster("enriched_orders", parts);
    let dir = std::env::temp_dir().join(format!("kms-signals-{}", std::process::id()));
    let s = Setup {
        brokers: cluster.bootstrap_servers(),
        topic: "enriched_orders",
        group: "sink-mysql-workers",
        db: fresh_db(&mut conn, "sigterm"),
        // Small batches and one writer keep the first run slow enough to be
        // interrupted mid-stream.
        config: write_config(
            &dir,
            "sigterm.toml",
            "[kafka]\ncommit_interval_ms = 100\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n[mysql]\npool_size = 2\n[sink]\nbatch_size = 50\nwriters = 1\nflush_interval_ms = 20\n",
        ),
        log_dir: dir.clone(),
    };
    produce(
        &s.brokers,
        s.topic,
        (0..n).map(|i| {
            (
                partition_of(i, parts),
                b"k".to_vec(),
                order(i, 0).0.into_bytes(),
            )
        }),
    );

    let mut first = spawn(&s, "first", &[]);
    let started = wait_for(Duration::from_secs(120), || {
        conn.query_first::<u64, _>(format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}'",
            s.db
        ))
        .unwrap()
        .unwrap_or(0)
            > 0
            && count(&mut conn, &s.db, "orders") >= 3000
    });
    assert!(
        started,
        "first run never wrote rows:\n{}",
        log_of(&s, "first")
    );
    signal(&first, "TERM");
    let status = wait_exit(&mut first, Duration::from_secs(60));
    assert!(
        status.success(),
        "exit {status:?}:\n{}",
        log_of(&s, "first")
    );

    // Stopped mid-stream, and every committed offset is durable in MySQL.
    let committed_now = committed(&s.brokers, s.group, s.topic, parts);
    let total_committed: i64 = committed_now.iter().map(|&c| c.max(0)).sum();
    assert!(total_committed > 0, "nothing committed at shutdown");
    assert!(
        (total_committed as u64) < n,
        "the first run was not interrupted mid-stream"
    );
    let present: HashSet<String> = conn
        .query(format!("SELECT id FROM `{}`.`orders`", s.db))
        .unwrap()
        .into_iter()
        .collect();
    for i in 0..n {
        let (p, offset) = (partition_of(i, parts), (i / parts as u64) as i64);
        if offset < committed_now[p as usize] {
            assert!(
                present.contains(&order(i, 0).1.id),
                "offset {offset} of partition {p} committed but its row is missing"
            );
        }
    }
    let first_log = log_of(&s, "first");
    assert!(
        first_log.contains("drained; final offsets committed"),
        "{first_log}"
    );
    assert!(first_log.contains("password=<redacted>"), "{first_log}");

    let mut second = spawn(&s, "second", &["--until-caught-up"]);
    let status = wait_exit(&mut second, Duration::from_secs(300));
    assert!(
        status.success(),
        "exit {status:?}:\n{}",
        log_of(&s, "second")
    );

    for run in ["first", "second"] {
        assert!(
            !log_of(&s, run).contains(SECRET_PASSWORD),
            "the password leaked into the {run} run's log"
        );
    }
    let mut expected: Vec<Expected> = (0..n).map(|i| order(i, 0).1).collect();
    expected.sort();
    assert_eq!(table_rows(&mut conn, &s.db, "orders"), expected);
    assert_eq!(
        committed(&s.brokers, s.group, s.topic, parts),
        end_offsets(&s.brokers, s.topic, parts)
    );
    drop_db(&mut conn, &s.db);
}

#[test]
fn a_second_signal_exits_at_once_during_a_stuck_drain() {
    let Some(mut conn) = mysql() else { return };
    create_secret_user(&mut conn);
    let cluster = mock_cluster("enriched_orders", 1);
    let dir = std::env::temp_dir().join(format!("kms-signals2-{}", std::process::id()));
    let s = Setup {
        brokers: cluster.bootstrap_servers(),
        topic: "enriched_orders",
        group: "stuck-group",
        db: fresh_db(&mut conn, "stuck"),
        config: write_config(
            &dir,
            "stuck.toml",
            "[sink]\nflush_interval_ms = 20\nshutdown_timeout_ms = 600000\n",
        ),
        log_dir: dir.clone(),
    };
    conn.query_drop(format!("CREATE DATABASE `{}`", s.db))
        .unwrap();
    kafka_mysql_sink::db::ensure_table(&mut conn, &s.db, "orders").unwrap();
    // Hold a write lock so every batch waits: the drain cannot finish.
    let mut locker = mysql().unwrap();
    locker
        .query_drop(format!("LOCK TABLES `{}`.`orders` WRITE", s.db))
        .unwrap();
    produce(
        &s.brokers,
        s.topic,
        (0..100u64).map(|i| (0, b"k".to_vec(), order(i, 0).0.into_bytes())),
    );
    let mut child = spawn(&s, "stuck", &[]);
    // Wait until its writer is blocked on the lock.
    let blocked = wait_for(Duration::from_secs(60), || {
        let waiting: u64 = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO `{}`%'",
                s.db
            ))
            .unwrap()
            .unwrap_or(0);
        waiting > 0
    });
    assert!(
        blocked,
        "the writer never reached the lock:\n{}",
        log_of(&s, "stuck")
    );
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "first signal must drain, not exit"
    );
    signal(&child, "INT");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{}", log_of(&s, "stuck"));
    // Nothing was durable, so nothing was committed.
    assert_eq!(committed(&s.brokers, s.group, s.topic, 1), vec![-1]);
    locker.query_drop("UNLOCK TABLES").unwrap();
    drop_db(&mut conn, &s.db);
}
