//! Fault paths that once lost or stalled data, each against the real binary
//! and judged only by what ends up in MySQL and Kafka: the target table, the
//! dead-letter table and the committed offsets.
//!
//! A test that changes a server global, or must not run while another test
//! has changed one, takes `server::serial()` first.

mod common;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use server::{DropDatabase, GlobalGuard, RowLock};

/// Kafka settings for a sink that joins and commits quickly.
const KAFKA: &str = "[kafka]\ncommit_interval_ms = 100\n[kafka.properties]\n\
                     \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n";

/// A dead letter's coordinates and error.
#[derive(Debug)]
struct Dead {
    partition: i32,
    offset: i64,
    payload_len: Option<u64>,
    error: String,
}

fn dead_letters(conn: &mut Conn, db: &str) -> Vec<Dead> {
    match conn.query_map(
        format!(
            "SELECT kafka_partition, kafka_offset, LENGTH(payload), error \
             FROM `{db}`.`orders_dlq` ORDER BY kafka_partition, kafka_offset"
        ),
        |(partition, offset, payload_len, error)| Dead {
            partition,
            offset,
            payload_len,
            error,
        },
    ) {
        Ok(d) => d,
        // The sink has not created the table (yet).
        Err(mysql::Error::MySqlError(e)) if e.code == 1146 || e.code == 1049 => Vec::new(),
        Err(e) => panic!("reading the dead-letter table: {e}"),
    }
}

/// The dead letters' offsets (for tests with one partition).
fn offsets(dead: &[Dead]) -> Vec<i64> {
    dead.iter().map(|d| d.offset).collect()
}

/// The dead letters' coordinates.
fn coordinates(dead: &[Dead]) -> Vec<(i32, i64)> {
    dead.iter().map(|d| (d.partition, d.offset)).collect()
}

/// Produces raw payloads (key `k`), payload `i` to partition `i % parts`,
/// allowing messages of a few MB.
fn produce_big(t: &Target, parts: i32, payloads: &[Vec<u8>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &t.brokers)
        .set("message.max.bytes", "4000000")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    for (i, p) in payloads.iter().enumerate() {
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&t.topic)
            .partition(i as i32 % parts)
            .key(&b"k"[..])
            .payload(p.as_slice());
        producer
            .send(record)
            .map_err(|(e, _)| e)
            .expect("produce a large message");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Each partition's low watermark: where its retained messages begin.
fn start_offsets(t: &Target, parts: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &t.brokers)
        .set("group.id", "kms-low-watermarks")
        .create()
        .expect("consumer");
    (0..parts)
        .map(|p| {
            c.fetch_watermarks(&t.topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .0
        })
        .collect()
}

/// Waits for the sink to exit on its own; kills it after `limit`.
fn exit_status(sink: &mut SinkProcess, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = sink.child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = sink.child.kill();
    let _ = sink.child.wait();
    None
}

/// A statement blocked on a row lock for longer than `mysql.timeout_ms`: the
/// client gives up after 1 s, the server finishes the statement 0.6 s later
/// anyway. The connection must not be used again as if nothing were in
/// flight on it: if it is, every later statement reads the answer of the
/// one before, and rows the server refuses are taken as written.
#[test]
fn a_statement_that_outlives_the_client_timeout_does_not_desynchronise_the_connection() {
    let mut conn = mysql();
    let _serial = server::serial();
    // The server's own lock wait must not end the statement first.
    let _lock_wait = GlobalGuard::set("innodb_lock_wait_timeout", "50");
    let dir = scratch_dir("desync");
    let (_cluster, t) = target(&mut conn, "desync", 1);
    let _drop_db = DropDatabase(t.db.clone());
    let config = write_config(
        &dir,
        &format!(
            "{KAFKA}[mysql]\ntimeout_ms = 1000\npool_size = 1\n\
             [sink]\nwriters = 1\nbatch_size = 100\nflush_interval_ms = 50\n\
             retry_initial_ms = 50\nretry_max_ms = 500\n"
        ),
    );

    // Orders 0..100 in the table, so that one of them can be locked.
    produce_orders(&t, 1, 100);
    let _sink = spawn_sink(&t, &config, dir.join("sink.log"), &[], &[]);
    assert!(
        wait_caught_up(&t.brokers, &t.group, &t.topic, 1, Duration::from_secs(30)),
        "the first 100 orders were not written"
    );
    let locked = order(0, 0).1.id;
    let lock = RowLock::lock(&t.db, "orders", &[&locked]);
    assert_eq!(lock.locked(), 1);

    // Offsets 100..200: version 1 of orders 0..100, the first batch, which
    // waits for the lock. Then 50 rows the server refuses (order_id longer
    // than VARCHAR(255)), then orders 100..150.
    let long = "X".repeat(300);
    let bad_ids: Vec<String> = (0..50u64).map(|k| order(10_000 + k, 0).1.id).collect();
    let mut records: Vec<(i32, Vec<u8>, Vec<u8>)> = Vec::new();
    for i in 0..100u64 {
        records.push((0, b"k".to_vec(), order(i, 1).0.into_bytes()));
    }
    for id in &bad_ids {
        let p = format!(r#"{{"id":"{id}","order_id":"{long}","quantity":1}}"#);
        records.push((0, b"k".to_vec(), p.into_bytes()));
    }
    for i in 100..150u64 {
        records.push((0, b"k".to_vec(), order(i, 0).0.into_bytes()));
    }
    produce(&t.brokers, &t.topic, records);

    // Release the lock 1.6 s after the batch's statement began to wait:
    // 0.6 s after the client's 1 s timeout.
    let pattern = format!("INSERT INTO `{}`.`orders`%", t.db);
    let mut watcher = mysql();
    let mut waited = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        waited = server::running(&mut watcher, &pattern).first().copied();
        if waited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let waited = waited.expect("the first batch never waited for the locked row");
    let released = lock.release_after(Duration::from_millis(1600).saturating_sub(waited));

    let caught_up = wait_caught_up(&t.brokers, &t.group, &t.topic, 1, Duration::from_secs(30));
    released.join().unwrap();
    let mut want: Vec<Expected> = (0..100u64).map(|i| order(i, 1).1).collect();
    want.extend((100..150u64).map(|i| order(i, 0).1));
    want.sort();
    let rows = table_rows(&mut conn, &t.db, "orders");
    let dead = dead_letters(&mut conn, &t.db);
    let bad_in_table: Vec<&Expected> = rows.iter().filter(|r| bad_ids.contains(&r.id)).collect();
    let stale: Vec<&str> = rows
        .iter()
        .filter(|r| !want.contains(r) && !bad_ids.contains(&r.id))
        .map(|r| r.id.as_str())
        .collect();
    let missing = want.iter().filter(|w| !rows.contains(w)).count();
    let committed = committed(&t.brokers, &t.group, &t.topic, 1);
    let end = end_offsets(&t.brokers, &t.topic, 1);
    eprintln!(
        "outcome: caught up {caught_up}; {} rows, {missing} good rows missing or stale \
         ({} stale), {} refused rows in the table; dead letters at {:?}; committed {committed:?}, end {end:?}",
        rows.len(),
        stale.len(),
        bad_in_table.len(),
        offsets(&dead),
    );

    assert_eq!(
        offsets(&dead),
        (200..250).collect::<Vec<i64>>(),
        "every refused row (offsets 200..250) is dead-lettered, nothing else"
    );
    for d in &dead {
        assert!(d.error.contains("Data too long"), "{}", d.error);
    }
    assert_eq!(rows, want, "every good row, in its last version");
    assert!(caught_up, "committed {committed:?}, end {end:?}");
    assert_eq!(committed, end);
}

/// Dead letters of about 1 MB each: the dead-letter INSERT of a batch of
/// them is larger than `max_allowed_packet`. It can never succeed as one
/// statement, so retrying it as a transient failure stalls the partition
/// forever; the letters must be stored in statements that fit.
#[test]
fn dead_letters_too_large_for_one_packet_are_stored_not_retried_forever() {
    let mut conn = mysql();
    let _serial = server::serial();
    // 4 MB: one letter (2 MB as hex) fits a statement, two do not.
    let _packet = GlobalGuard::set("max_allowed_packet", "4194304");
    let dir = scratch_dir("bigdlq");
    // The mock broker keeps at most 5 MiB per partition (it deletes the
    // oldest messages beyond that): five messages of 1 MB in each of 8.
    const PARTS: i32 = 8;
    const N: usize = 40;
    const SIZE: usize = 1_000_000;
    let (_cluster, t) = target(&mut conn, "bigdlq", PARTS);
    let _drop_db = DropDatabase(t.db.clone());
    let config = write_config(&dir, KAFKA);
    let payloads: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut p = format!("not json {i} ").into_bytes();
            p.resize(SIZE, b'x');
            p
        })
        .collect();
    produce_big(&t, PARTS, &payloads);
    let end = end_offsets(&t.brokers, &t.topic, PARTS);
    let want: Vec<(i32, i64)> = (0..PARTS)
        .flat_map(|p| (0..(N as i64 / PARTS as i64)).map(move |o| (p, o)))
        .collect();
    assert_eq!(end, vec![N as i64 / PARTS as i64; PARTS as usize]);
    assert_eq!(
        start_offsets(&t, PARTS),
        vec![0; PARTS as usize],
        "the broker kept every message"
    );

    // One writer, and time to gather the letters into one batch.
    let mut sink = spawn_sink(
        &t,
        &config,
        dir.join("sink.log"),
        &["--until-caught-up"],
        &[
            ("SINK_WRITERS", "1".into()),
            ("SINK_BATCH_SIZE", "100".into()),
            ("SINK_FLUSH_INTERVAL_MS", "2000".into()),
        ],
    );
    let limit = Duration::from_secs(45);
    let status = exit_status(&mut sink, limit);
    let dead = dead_letters(&mut conn, &t.db);
    let committed = committed(&t.brokers, &t.group, &t.topic, PARTS);
    eprintln!(
        "outcome: exit {status:?}; {} dead letters stored at {:?}; committed {committed:?}, end {end:?}",
        dead.len(),
        coordinates(&dead)
    );
    let status = status.unwrap_or_else(|| {
        panic!(
            "the sink did not finish within {limit:?}: {} of {N} dead letters stored, \
             committed {committed:?} of {end:?}",
            dead.len()
        )
    });
    assert!(status.success(), "exit {status:?}");
    assert_eq!(coordinates(&dead), want, "every message dead-lettered");
    for d in &dead {
        let len = d.payload_len.unwrap_or(0);
        assert!(len > 0 && len <= SIZE as u64, "payload of {len} bytes");
    }
    assert_eq!(committed, end);
    assert_eq!(count(&mut conn, &t.db, "orders"), 0);
}

/// On a server whose `sql_mode` is not strict, a value too long for its
/// column is cut with a warning instead of refused. Ids longer than
/// VARCHAR(36) that share their first 36 characters would then be merged into
/// one row under the shared prefix; they must be refused and dead-lettered.
#[test]
fn a_server_without_strict_sql_mode_does_not_truncate_ids_silently() {
    let mut conn = mysql();
    let _serial = server::serial();
    let _mode = GlobalGuard::set("sql_mode", "''");
    let dir = scratch_dir("nonstrict");
    let (_cluster, t) = target(&mut conn, "nonstrict", 1);
    let _drop_db = DropDatabase(t.db.clone());
    let config = write_config(&dir, KAFKA);

    // 30 ordinary orders, with 5 long ids among them at known offsets.
    let prefix = order(1_000_000, 0).1.id;
    assert_eq!(prefix.len(), 36);
    let mut records: Vec<(i32, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut long_offsets = Vec::new();
    let mut ordinary = 0u64;
    for k in 0..5u64 {
        for _ in 0..6 {
            records.push((0, b"k".to_vec(), order(ordinary, 0).0.into_bytes()));
            ordinary += 1;
        }
        let id = format!("{prefix}-long-{k}");
        assert!(id.len() >= 40);
        long_offsets.push(records.len() as i64);
        let p = format!(
            r#"{{"id":"{id}","order_id":"ORD-long-{k}","quantity":{},"unit_price":1.00,"total_value":1.00}}"#,
            k + 1
        );
        records.push((0, b"k".to_vec(), p.into_bytes()));
    }
    produce(&t.brokers, &t.topic, records);

    let mut sink = spawn_sink(
        &t,
        &config,
        dir.join("sink.log"),
        &["--until-caught-up"],
        &[],
    );
    let status = exit_status(&mut sink, Duration::from_secs(60));
    let rows = table_rows(&mut conn, &t.db, "orders");
    let truncated: Vec<&Expected> = rows.iter().filter(|r| r.id.starts_with(&prefix)).collect();
    let dead = dead_letters(&mut conn, &t.db);
    let committed = committed(&t.brokers, &t.group, &t.topic, 1);
    let end = end_offsets(&t.brokers, &t.topic, 1);
    eprintln!(
        "outcome: exit {status:?}; {} rows; under the 36-character prefix: {truncated:?}; \
         dead letters at {:?}; committed {committed:?}, end {end:?}",
        rows.len(),
        offsets(&dead)
    );

    assert!(
        truncated.is_empty(),
        "long ids were written truncated to their 36-character prefix: {truncated:?}"
    );
    assert_eq!(offsets(&dead), long_offsets, "every long id dead-lettered");
    for d in &dead {
        assert!(
            d.error.contains("Data too long for column 'id'"),
            "the server's error: {}",
            d.error
        );
    }
    // The control: ordinary orders of the same run are written.
    assert_eq!(rows, first_versions(ordinary));
    let status = status.expect("the sink did not finish within 60 s");
    assert!(status.success(), "exit {status:?}");
    assert_eq!(committed, end);
    let ids: BTreeSet<String> = rows.into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len() as u64, ordinary);
}

/// The settings of a sink that retries quickly.
const FAST_RETRIES: &str = "[sink]\nretry_initial_ms = 20\nretry_max_ms = 200\n";

/// A trigger that refuses one order with `SIGNAL` (error 1644, which the
/// classifier does not know): the sink retries it a bounded number of times,
/// then isolates the row as a data error; everything else is written and the
/// run finishes.
#[test]
fn an_error_the_classifier_does_not_know_stalls_nothing_for_long() {
    let mut conn = mysql();
    let _serial = server::serial();
    let dir = scratch_dir("signal");
    let (_cluster, t) = target(&mut conn, "signal", 1);
    let _drop_db = DropDatabase(t.db.clone());
    kafka_mysql_sink::internals::ensure_table(&mut conn, &t.db, "orders").unwrap();
    let refused = order(7, 0).1.order_id;
    conn.query_drop(format!(
        "CREATE TRIGGER `{}`.`refuse_one` BEFORE INSERT ON `{}`.`orders` FOR EACH ROW \
         IF NEW.order_id = '{refused}' THEN \
           SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by a trigger'; \
         END IF",
        t.db, t.db
    ))
    .unwrap();
    produce_order_range(&t.brokers, &t.topic, 1, 50);
    let config = write_config(&dir, &format!("{KAFKA}{FAST_RETRIES}"));
    let mut sink = spawn_sink(
        &t,
        &config,
        dir.join("sink.log"),
        &["--until-caught-up"],
        &[],
    );
    let status = exit_status(&mut sink, Duration::from_secs(60));
    let status = status.expect("the sink did not finish within 60 s");
    assert!(status.success(), "exit {status:?}");
    let dead = dead_letters(&mut conn, &t.db);
    assert_eq!(offsets(&dead), vec![7], "{dead:?}");
    assert!(
        dead[0].error.contains("refused by a trigger"),
        "{}",
        dead[0].error
    );
    let rows = table_rows(&mut conn, &t.db, "orders");
    assert_eq!(rows.len(), 49);
    assert!(rows.iter().all(|r| r.order_id != refused));
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, 1),
        end_offsets(&t.brokers, &t.topic, 1)
    );
}

/// `max_allowed_packet` lowered while the sink runs: statements sized to the
/// old limit are refused (and the server drops the session); the sink reads
/// the limit again and writes everything in smaller statements, losing and
/// dead-lettering nothing.
#[test]
fn a_packet_limit_lowered_while_running_is_read_again() {
    let mut conn = mysql();
    let _serial = server::serial();
    let dir = scratch_dir("packet");
    let (_cluster, t) = target(&mut conn, "packet", 2);
    let _drop_db = DropDatabase(t.db.clone());
    let relay = relay::Relay::start(mysql_port());
    let config = write_config(
        &dir,
        &format!("{KAFKA}[sink]\nbatch_size = 500\nretry_initial_ms = 20\nretry_max_ms = 200\n"),
    );
    produce_order_range(&t.brokers, &t.topic, 2, 2_000);
    let env = [("MYSQL_PORT", relay.port().to_string())];
    let mut sink = spawn_sink(
        &t,
        &config,
        dir.join("sink1.log"),
        &["--until-caught-up"],
        &env,
    );
    assert!(sink.wait(Duration::from_secs(60)).success());
    assert_eq!(count(&mut conn, &t.db, "orders"), 2_000);

    // Statements of 500 rows are ~100 KB; new sessions take the new limit,
    // and cutting the relay's connections makes every session new.
    let _limit = GlobalGuard::set("max_allowed_packet", "32768");
    relay.cut();
    produce_order_range_from(&t.brokers, &t.topic, 2, 2_000, 6_000);
    let mut sink = spawn_sink(
        &t,
        &config,
        dir.join("sink2.log"),
        &["--until-caught-up"],
        &env,
    );
    let status = exit_status(&mut sink, Duration::from_secs(90));
    let status = status.expect("the sink did not finish within 90 s");
    assert!(status.success(), "exit {status:?}");
    assert!(dead_letters(&mut conn, &t.db).is_empty());
    assert_drained(&mut conn, &t, 6_000, 2);
}

/// MySQL's packets dropped (not refused) while the sink drains after
/// SIGTERM: every wait is bounded by what is left of the drain, so the
/// process exits soon after `shutdown_timeout_ms` instead of waiting out
/// statement timeouts; what it could not write stays uncommitted and a
/// restart writes it.
#[test]
fn a_drain_against_a_silent_server_ends_on_time_and_loses_nothing() {
    let mut conn = mysql();
    let _serial = server::serial();
    let dir = scratch_dir("silentdrain");
    let (_cluster, t) = target(&mut conn, "silentdrain", 2);
    let _drop_db = DropDatabase(t.db.clone());
    let relay = relay::Relay::start(mysql_port());
    let config = write_config(
        &dir,
        &format!(
            "{KAFKA}[mysql]\ntimeout_ms = 20000\n[sink]\nshutdown_timeout_ms = 2000\n\
             retry_initial_ms = 20\nretry_max_ms = 200\nflush_interval_ms = 50\n"
        ),
    );
    let env = [("MYSQL_PORT", relay.port().to_string())];
    let mut sink = spawn_sink(&t, &config, dir.join("sink1.log"), &[], &env);
    produce_order_range(&t.brokers, &t.topic, 2, 1_000);
    assert!(
        wait_for(Duration::from_secs(60), || count(
            &mut conn, &t.db, "orders"
        ) == 1_000),
        "the first thousand orders were not written"
    );
    relay.drop_traffic();
    produce_order_range_from(&t.brokers, &t.topic, 2, 1_000, 2_000);
    // Give the writers time to be stuck in a statement.
    std::thread::sleep(Duration::from_secs(2));
    let stopped = Instant::now();
    sink.signal("TERM");
    let status = exit_status(&mut sink, Duration::from_secs(30));
    let took = stopped.elapsed();
    assert!(status.is_some(), "the drain did not end within 30 s");
    // 2 s of drain, the final commit, leaving the group; far below the
    // 20 s statement timeout every stuck wait would otherwise take.
    assert!(took < Duration::from_secs(10), "the drain took {took:?}");

    relay.pass();
    let mut sink = spawn_sink(
        &t,
        &config,
        dir.join("sink2.log"),
        &["--until-caught-up"],
        &[],
    );
    assert!(sink.wait(Duration::from_secs(60)).success());
    assert_drained(&mut conn, &t, 2_000, 2);
}

/// Fetching is paused (the table is locked, writers wait, channels are
/// full) when a second instance joins and the partitions are dealt again:
/// those assigned to the paused instance start paused, instead of being
/// fetched and rewound every time it polls. Once the table is free both
/// finish and nothing is lost.
#[test]
fn partitions_assigned_while_paused_start_paused() {
    let mut conn = mysql();
    let _serial = server::serial();
    let dir = scratch_dir("pausedassign");
    let (_cluster, t) = target(&mut conn, "pausedassign", 4);
    let _drop_db = DropDatabase(t.db.clone());
    kafka_mysql_sink::internals::ensure_table(&mut conn, &t.db, "orders").unwrap();
    produce_order_range(&t.brokers, &t.topic, 4, 20_000);
    let config = write_config(
        &dir,
        "[kafka]\ncommit_interval_ms = 100\nrevoke_timeout_ms = 500\n[kafka.properties]\n\
         \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         \"max.poll.interval.ms\" = \"6000\"\n\
         [mysql]\ntimeout_ms = 2000\n\
         [sink]\nwriters = 1\nchannel_capacity = 64\nbatch_size = 50\n\
         retry_initial_ms = 20\nretry_max_ms = 200\n",
    );
    // Every write to the table waits while this session holds it (each
    // wait ends after 1 s, three quarters of timeout_ms, and is retried):
    // short waits, since a claim waits for the writers' transactions and
    // must end within half the poll interval.
    let mut locker = mysql();
    locker
        .query_drop(format!("LOCK TABLES `{}`.`orders` WRITE", t.db))
        .unwrap();
    let (port_a, metrics_a) = metrics_env();
    let mut a = spawn_sink(&t, &config, dir.join("a.log"), &[], &[metrics_a]);
    assert!(
        wait_for(Duration::from_secs(30), || scrape(
            port_a,
            "kafka_mysql_sink_fetch_pauses_total"
        )
        .is_some_and(|v| v >= 1.0)),
        "fetching never paused"
    );
    let (port_b, metrics_b) = metrics_env();
    let mut b = spawn_sink(&t, &config, dir.join("b.log"), &[], &[metrics_b]);
    // A's second assignment came while it was paused.
    assert!(
        wait_for(Duration::from_secs(40), || {
            scrape(port_a, "kafka_mysql_sink_assignments_total").is_some_and(|v| v >= 2.0)
                && scrape(port_b, "kafka_mysql_sink_assigned_partitions").is_some_and(|v| v >= 1.0)
        }),
        "the partitions were not dealt again"
    );
    let rewinds = || scrape(port_a, "kafka_mysql_sink_rewinds_total").unwrap_or(f64::NAN);
    let before = rewinds();
    std::thread::sleep(Duration::from_secs(3));
    let during = rewinds() - before;
    // Polled every ~50 ms for 3 s: a partition fetched while paused would
    // be rewound about sixty times.
    assert!(during <= 2.0, "{during} rewinds in 3 s while paused");

    locker.query_drop("UNLOCK TABLES").unwrap();
    let all = |conn: &mut Conn| count(conn, &t.db, "orders") == 20_000;
    assert!(
        wait_for(Duration::from_secs(60), || all(&mut conn)),
        "not every order was written"
    );
    assert!(wait_for(Duration::from_secs(30), || committed(
        &t.brokers, &t.group, &t.topic, 4
    ) == end_offsets(
        &t.brokers, &t.topic, 4
    )));
    a.signal("TERM");
    b.signal("TERM");
    assert!(a.wait(Duration::from_secs(30)).success());
    assert!(b.wait(Duration::from_secs(30)).success());
    assert!(table_rows(&mut conn, &t.db, "orders") == first_versions(20_000));
}
