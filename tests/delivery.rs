//! Partition ownership and exactly-once delivery, with the real binary and
//! judged only by outcomes: the rows in MySQL, the offsets table, the
//! group's committed offsets in Kafka, metrics and exit codes.
//!
//! - A write held up by a network partition cannot land over the rows of
//!   the partition's next owner, whether the old owner was stopped or is
//!   still alive after a rebalance.
//! - In exactly-once mode no message is applied twice (triggers on the
//!   table log every applied row version), across SIGKILLs of the sink, a
//!   MariaDB killed mid-transaction, and a COMMIT whose answer is lost.
//! - Start-up refuses what cannot work: an offsets table the user may not
//!   create, a dead-letter topic with exactly-once delivery.
//!
//! The relay tests depend on timing, and every test here runs a sink
//! process or two: they take `server::serial()`, so one runs at a time.

mod common;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use relay::Relay;
use server::{DropDatabase, RowLock};

/// Kafka settings for a sink that joins, commits and gives revoked
/// partitions up quickly.
const KAFKA: &str = "[kafka]\ncommit_interval_ms = 100\nrevoke_timeout_ms = 1000\n\
                     [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
                     \"heartbeat.interval.ms\" = \"500\"\n";

/// One writer, small batches, a drain that gives up after 2 s. The MySQL
/// timeout is long: a write held by the relay stays in flight (and a
/// claim waiting for a row lock keeps waiting) for the whole test.
const ONE_WRITER: &str = "[mysql]\ntimeout_ms = 20000\npool_size = 2\n\
                          [sink]\nwriters = 1\nbatch_size = 10\nflush_interval_ms = 20\n\
                          shutdown_timeout_ms = 2000\nretry_initial_ms = 50\nretry_max_ms = 500\n";

/// Writes `body` to `dir/name`.
fn config_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// The `order_id` of the row of order `i` (which names its version), if
/// the row is there.
fn version_of(conn: &mut Conn, db: &str, i: u64) -> Option<String> {
    match conn.exec_first(
        format!("SELECT order_id FROM `{db}`.`orders` WHERE id = ?"),
        (order_id(i),),
    ) {
        Ok(v) => v,
        Err(mysql::Error::MySqlError(e)) if e.code == 1146 || e.code == 1049 => None,
        Err(e) => panic!("reading order {i}: {e}"),
    }
}

/// Version `v` of order `i` as its `order_id` shows it.
fn v(i: u64, version: u64) -> Option<String> {
    Some(order(i, version).1.order_id)
}

/// Produces versions of orders to partition `partition`, keyed by id.
fn produce_versions(t: &Target, partition: i32, versions: &[(u64, u64)]) {
    produce(
        &t.brokers,
        &t.topic,
        versions.iter().map(|&(i, version)| {
            (
                partition,
                order_id(i).into_bytes(),
                order(i, version).0.into_bytes(),
            )
        }),
    );
}

/// The offsets table's rows: (partition, next_offset, claims). A row's
/// generation counts its claims in its last three digits.
fn offsets_rows(conn: &mut Conn, db: &str) -> Vec<(i32, Option<i64>, u64)> {
    conn.query(format!(
        "SELECT kafka_partition, next_offset, generation % 1000 FROM `{db}`.`orders_offsets` \
         ORDER BY kafka_partition"
    ))
    .expect("reading the offsets table")
}

/// A counter or gauge of a sink process; 0 while it is not exported (yet).
fn metric(port: u16, name: &str) -> f64 {
    scrape(port, &format!("kafka_mysql_sink_{name}")).unwrap_or(0.0)
}

/// Upserts into `db`.`orders` now running in MariaDB (waiting for a lock,
/// say).
fn running_upserts(conn: &mut Conn, db: &str) -> usize {
    server::running(conn, &format!("INSERT INTO `{db}`.`orders` (%")).len()
}

/// Claims of partitions (upserts into the offsets table) now running in
/// MariaDB.
fn running_claims(conn: &mut Conn, db: &str) -> usize {
    server::running(conn, &format!("INSERT INTO `{db}`.`orders_offsets` (%")).len()
}

/// Numbers below `modulo` that differ from run to run (from the clock),
/// for kill moments: one per `slot`.
fn jitter(slot: u64, modulo: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // SplitMix64's finalizer, so that neighbouring slots land apart.
    let mut x = (nanos / 1000).wrapping_add(slot.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) % modulo
}

// ---------------------------------------------------------------------
// 1. A write held by a network partition after the partition moved.
// ---------------------------------------------------------------------

/// Order 0, on a one-partition topic, in versions 0..=3.
const ID: u64 = 0;

/// Instance A writes through a relay; the relay starts holding A's MySQL
/// traffic and versions 1 and 2 are produced, so A's batch of them is in
/// flight, held in the relay. A is stopped with SIGTERM (its drain gives up
/// after 2 s) and B, straight to MariaDB, takes the partition over and
/// writes versions 1, 2 and then 3. Only then does the relay deliver what it
/// held. Before partition ownership, A's held upsert landed last and the row
/// ended at version 2; now the row stays at version 3.
fn stale_write_of_a_stopped_owner(delivery: &str) {
    let _serial = server::serial();
    let mut conn = mysql();
    let dir = scratch_dir("stale-stop");
    let (_cluster, t) = target(&mut conn, "stalestop", 1);
    let _drop_db = DropDatabase(t.db.clone());
    let config = config_file(&dir, "sink.toml", &format!("{KAFKA}{ONE_WRITER}"));
    log_applied_versions(&mut conn, &t.db);
    let relay = Relay::start(mysql_port());
    let mode = ("SINK_DELIVERY", delivery.to_string());

    produce_versions(&t, 0, &[(ID, 0)]);
    let (port_a, metrics_a) = metrics_env();
    let mut a = spawn_sink(
        &t,
        &config,
        dir.join("a.log"),
        &[],
        &[
            ("MYSQL_PORT", relay.port().to_string()),
            metrics_a,
            mode.clone(),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(30), || {
            version_of(&mut conn, &t.db, ID) == v(ID, 0)
                && committed(&t.brokers, &t.group, &t.topic, 1) == [1]
        }),
        "A never wrote version 0:\n{}",
        a.log_text()
    );

    // The network partition: A reads versions 1 and 2 from Kafka, and its
    // batch of them goes no further than the relay.
    relay.hold();
    produce_versions(&t, 0, &[(ID, 1), (ID, 2)]);
    assert!(
        wait_for(Duration::from_secs(20), || metric(
            port_a,
            "messages_consumed_total"
        ) >= 3.0),
        "A never read versions 1 and 2:\n{}",
        a.log_text()
    );
    // Past the flush interval: the batch is in the writer's hands.
    std::thread::sleep(Duration::from_millis(500));
    a.signal("TERM");
    let status = a.wait(Duration::from_secs(30));
    assert!(status.success(), "A: {status:?}\n{}", a.log_text());
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 0));
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 1), [1]);

    // B takes the partition over and writes versions 1, 2, then 3.
    let (port_b, metrics_b) = metrics_env();
    let mut b = spawn_sink(
        &t,
        &config,
        dir.join("b.log"),
        &[],
        &[metrics_b, mode.clone()],
    );
    assert!(
        wait_for(Duration::from_secs(30), || version_of(&mut conn, &t.db, ID)
            == v(ID, 2)),
        "B never wrote version 2:\n{}",
        b.log_text()
    );
    produce_versions(&t, 0, &[(ID, 3)]);
    assert!(
        wait_for(Duration::from_secs(20), || version_of(&mut conn, &t.db, ID)
            == v(ID, 3)),
        "B never wrote version 3:\n{}",
        b.log_text()
    );
    assert_eq!(metric(port_b, "claims_total"), 1.0);

    // The partition heals: everything A's process sent is delivered, and
    // its connections close.
    relay.pass();
    assert!(
        wait_for(Duration::from_secs(20), || relay.open_connections() == 0),
        "the relay kept {} connection(s) open",
        relay.open_connections()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        version_of(&mut conn, &t.db, ID),
        v(ID, 3),
        "A's held write landed over B's newer version"
    );

    b.signal("TERM");
    let status = b.wait(Duration::from_secs(30));
    assert!(status.success(), "B: {status:?}\n{}", b.log_text());
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 3));
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 1), [4]);
    // A claimed generation 1, B generation 2; in exactly-once mode the
    // next offset is B's, and each version was applied once.
    let exactly_once = delivery == "exactly_once";
    assert_eq!(
        offsets_rows(&mut conn, &t.db),
        [(0, exactly_once.then_some(4), 2)]
    );
    if exactly_once {
        assert_eq!(applied_versions(&mut conn, &t.db), versions_0_to_3());
    }
}

#[test]
fn a_held_write_of_a_stopped_owner_never_lands_over_the_new_owner_at_least_once() {
    stale_write_of_a_stopped_owner("at_least_once");
}

#[test]
fn a_held_write_of_a_stopped_owner_never_lands_over_the_new_owner_exactly_once() {
    stale_write_of_a_stopped_owner("exactly_once");
}

/// As above, but A's upsert of versions 1 and 2 has reached MariaDB and
/// run there (inside A's transaction, which holds its partition's row of
/// the offsets table) when the relay starts holding: only its answer, and
/// so A's COMMIT, are held. B's claim must wait for that transaction, and
/// once the relay delivers A's closed connection the transaction is rolled
/// back; B then writes versions 1, 2 and 3.
#[test]
fn an_upsert_run_but_not_committed_by_a_stopped_owner_is_rolled_back_before_the_new_owner_claims() {
    let _serial = server::serial();
    let mut conn = mysql();
    let dir = scratch_dir("stale-run");
    let (_cluster, t) = target(&mut conn, "stalerun", 1);
    let _drop_db = DropDatabase(t.db.clone());
    // At-least-once: the offsets rows carry generations only.
    let config = config_file(
        &dir,
        "sink.toml",
        &format!("{KAFKA}{ONE_WRITER}delivery = \"at_least_once\"\n"),
    );
    let relay = Relay::start(mysql_port());

    produce_versions(&t, 0, &[(ID, 0)]);
    let mut a = spawn_sink(
        &t,
        &config,
        dir.join("a.log"),
        &[],
        &[("MYSQL_PORT", relay.port().to_string())],
    );
    assert!(
        wait_for(Duration::from_secs(30), || {
            version_of(&mut conn, &t.db, ID) == v(ID, 0)
                && committed(&t.brokers, &t.group, &t.topic, 1) == [1]
        }),
        "A never wrote version 0:\n{}",
        a.log_text()
    );

    // A's upsert of versions 1 and 2 waits in MariaDB for a row lock of
    // ours, inside A's transaction...
    let lock = RowLock::lock(&t.db, "orders", &[&order_id(ID)]);
    assert_eq!(lock.locked(), 1);
    produce_versions(&t, 0, &[(ID, 1), (ID, 2)]);
    assert!(
        wait_for(Duration::from_secs(20), || running_upserts(
            &mut conn, &t.db
        ) > 0),
        "A's upsert never reached the lock:\n{}",
        a.log_text()
    );
    // ...the network partition starts, and the upsert runs: its answer is
    // held, so A can neither learn of it nor commit it.
    relay.hold();
    std::thread::sleep(Duration::from_millis(200));
    lock.release();
    assert!(
        wait_for(Duration::from_secs(10), || running_upserts(
            &mut conn, &t.db
        ) == 0),
        "A's upsert did not run once the lock was gone"
    );
    a.signal("TERM");
    let status = a.wait(Duration::from_secs(30));
    assert!(status.success(), "A: {status:?}\n{}", a.log_text());

    let (port_b, metrics_b) = metrics_env();
    let mut b = spawn_sink(&t, &config, dir.join("b.log"), &[], &[metrics_b]);
    // B joins the group at once (A left it), but its claim waits for A's
    // transaction: nothing of B's or of A's is visible yet.
    assert!(
        wait_for(Duration::from_secs(20), || running_claims(&mut conn, &t.db)
            > 0),
        "B's claim never reached MariaDB:\n{}",
        b.log_text()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        running_claims(&mut conn, &t.db),
        1,
        "B's claim stopped waiting"
    );
    assert_eq!(metric(port_b, "claims_total"), 0.0, "{}", b.log_text());
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 0));
    assert_eq!(offsets_rows(&mut conn, &t.db), [(0, None, 1)]);

    // The partition heals: A's connection is delivered closed, its
    // transaction rolls back, and B's claim goes through.
    relay.pass();
    assert!(
        wait_for(Duration::from_secs(30), || version_of(&mut conn, &t.db, ID)
            == v(ID, 2)),
        "B never wrote version 2:\n{}",
        b.log_text()
    );
    produce_versions(&t, 0, &[(ID, 3)]);
    assert!(
        wait_for(Duration::from_secs(20), || version_of(&mut conn, &t.db, ID)
            == v(ID, 3)),
        "B never wrote version 3:\n{}",
        b.log_text()
    );
    assert!(wait_for(Duration::from_secs(20), || relay
        .open_connections()
        == 0));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 3));
    assert_eq!(metric(port_b, "claims_total"), 1.0);

    b.signal("TERM");
    let status = b.wait(Duration::from_secs(30));
    assert!(status.success(), "B: {status:?}\n{}", b.log_text());
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 3));
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 1), [4]);
    assert_eq!(offsets_rows(&mut conn, &t.db), [(0, None, 2)]);
}

/// Settings for the two live instances of the rebalance tests: static
/// group members, so that the range assignor (which orders members by
/// `group.instance.id`) gives the one partition to B once B joins.
fn live_config(dir: &Path, name: &str, instance: &str) -> PathBuf {
    config_file(
        dir,
        name,
        &format!(
            "[kafka]\ncommit_interval_ms = 100\nrevoke_timeout_ms = 2000\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
             \"heartbeat.interval.ms\" = \"500\"\n\"group.instance.id\" = \"{instance}\"\n\
             {ONE_WRITER}"
        ),
    )
}

/// Two live instances. A writes through the relay; the relay holds, and
/// versions 1 and 2 are produced: A's batch of them is in flight. B joins
/// the group and gets the partition; A's `revoke_timeout_ms` runs out with
/// the rows still in flight. B writes versions 1, 2 and 3. When the relay
/// delivers, A's transaction finds the partition claimed since its rows
/// were read and drops them (`fenced_rows_total`): version 3 stays.
fn held_batch_of_a_live_owner(delivery: &str) {
    let _serial = server::serial();
    let mut conn = mysql();
    let dir = scratch_dir("stale-live");
    let (_cluster, t) = target(&mut conn, "stalelive", 1);
    let _drop_db = DropDatabase(t.db.clone());
    log_applied_versions(&mut conn, &t.db);
    let relay = Relay::start(mysql_port());
    let mode = ("SINK_DELIVERY", delivery.to_string());

    produce_versions(&t, 0, &[(ID, 0)]);
    let (port_a, metrics_a) = metrics_env();
    let mut a = spawn_sink(
        &t,
        &live_config(&dir, "a.toml", "kms-member-b"),
        dir.join("a.log"),
        &[],
        &[
            ("MYSQL_PORT", relay.port().to_string()),
            metrics_a,
            mode.clone(),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(30), || {
            version_of(&mut conn, &t.db, ID) == v(ID, 0)
                && committed(&t.brokers, &t.group, &t.topic, 1) == [1]
        }),
        "A never wrote version 0:\n{}",
        a.log_text()
    );

    relay.hold();
    produce_versions(&t, 0, &[(ID, 1), (ID, 2)]);
    assert!(
        wait_for(Duration::from_secs(20), || metric(
            port_a,
            "messages_consumed_total"
        ) >= 3.0),
        "A never read versions 1 and 2:\n{}",
        a.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));

    let (port_b, metrics_b) = metrics_env();
    let mut b = spawn_sink(
        &t,
        &live_config(&dir, "b.toml", "kms-member-a"),
        dir.join("b.log"),
        &[],
        &[metrics_b, mode.clone()],
    );
    let moved = wait_for(Duration::from_secs(40), || {
        metric(port_b, "assigned_partitions") == 1.0 && metric(port_a, "assigned_partitions") == 0.0
    });
    assert!(
        moved,
        "the partition did not move to B:\n{}\n---\n{}",
        a.log_text(),
        b.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(30), || version_of(&mut conn, &t.db, ID)
            == v(ID, 2)),
        "B never wrote version 2:\n{}",
        b.log_text()
    );
    produce_versions(&t, 0, &[(ID, 3)]);
    assert!(
        wait_for(Duration::from_secs(20), || version_of(&mut conn, &t.db, ID)
            == v(ID, 3)),
        "B never wrote version 3:\n{}",
        b.log_text()
    );
    // A's batch is still in flight: it wrote version 0 and nothing since.
    assert_eq!(metric(port_a, "rows_written_total"), 1.0);
    assert_eq!(metric(port_a, "fenced_rows_total"), 0.0);

    relay.pass();
    assert!(
        wait_for(Duration::from_secs(30), || metric(
            port_a,
            "fenced_rows_total"
        ) > 0.0),
        "A's late batch was not fenced off:\n{}",
        a.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            port_a,
            "fenced_rows_total"
        ) == 2.0),
        "fenced {} rows",
        metric(port_a, "fenced_rows_total")
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 3));
    assert_eq!(metric(port_a, "rows_written_total"), 1.0);

    for (name, sink) in [("A", &mut a), ("B", &mut b)] {
        sink.signal("TERM");
        let status = sink.wait(Duration::from_secs(30));
        assert!(status.success(), "{name}: {status:?}\n{}", sink.log_text());
    }
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 3));
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 1), [4]);
    let exactly_once = delivery == "exactly_once";
    assert_eq!(
        offsets_rows(&mut conn, &t.db),
        [(0, exactly_once.then_some(4), 2)]
    );
    if exactly_once {
        assert_eq!(applied_versions(&mut conn, &t.db), versions_0_to_3());
    }
}

#[test]
fn a_held_batch_of_a_live_owner_is_fenced_off_after_a_rebalance_at_least_once() {
    held_batch_of_a_live_owner("at_least_once");
}

#[test]
fn a_held_batch_of_a_live_owner_is_fenced_off_after_a_rebalance_exactly_once() {
    held_batch_of_a_live_owner("exactly_once");
}

/// Two live instances, A's upsert of versions 1 and 2 run in MariaDB but
/// its answer held when B takes the partition over: B's claim waits for
/// A's transaction. When the relay delivers, A commits (the claim was still
/// waiting, so the rows were A's to write) and only then B claims. In
/// at-least-once mode B reads versions 1 and 2 again from the offset A
/// committed to Kafka; in exactly-once mode B starts at the next offset A's
/// transaction left in MySQL, so no version is applied twice. Either way
/// version 3 stays.
fn live_owners_transaction_holds_the_claim_back(delivery: &str) {
    let _serial = server::serial();
    let mut conn = mysql();
    let dir = scratch_dir("stale-live-run");
    let (_cluster, t) = target(&mut conn, "stalelr", 1);
    let _drop_db = DropDatabase(t.db.clone());
    log_applied_versions(&mut conn, &t.db);
    let relay = Relay::start(mysql_port());
    let mode = ("SINK_DELIVERY", delivery.to_string());

    produce_versions(&t, 0, &[(ID, 0)]);
    let (port_a, metrics_a) = metrics_env();
    let mut a = spawn_sink(
        &t,
        &live_config(&dir, "a.toml", "kms-member-b"),
        dir.join("a.log"),
        &[],
        &[
            ("MYSQL_PORT", relay.port().to_string()),
            metrics_a,
            mode.clone(),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(30), || {
            version_of(&mut conn, &t.db, ID) == v(ID, 0)
                && committed(&t.brokers, &t.group, &t.topic, 1) == [1]
        }),
        "A never wrote version 0:\n{}",
        a.log_text()
    );
    let lock = RowLock::lock(&t.db, "orders", &[&order_id(ID)]);
    produce_versions(&t, 0, &[(ID, 1), (ID, 2)]);
    assert!(
        wait_for(Duration::from_secs(20), || running_upserts(
            &mut conn, &t.db
        ) > 0),
        "A's upsert never reached the lock:\n{}",
        a.log_text()
    );
    relay.hold();
    std::thread::sleep(Duration::from_millis(200));
    lock.release();
    assert!(wait_for(Duration::from_secs(10), || running_upserts(
        &mut conn, &t.db
    ) == 0));

    let (port_b, metrics_b) = metrics_env();
    let mut b = spawn_sink(
        &t,
        &live_config(&dir, "b.toml", "kms-member-a"),
        dir.join("b.log"),
        &[],
        &[metrics_b, mode.clone()],
    );
    // A lets the partition go after its revoke timeout; B's claim then
    // waits for A's transaction.
    assert!(
        wait_for(Duration::from_secs(40), || metric(
            port_a,
            "assigned_partitions"
        ) == 0.0
            && metric(port_a, "assignments_total") >= 2.0),
        "A never gave the partition up:\n{}",
        a.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(20), || running_claims(&mut conn, &t.db)
            > 0),
        "B's claim never reached MariaDB:\n{}",
        b.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        running_claims(&mut conn, &t.db),
        1,
        "B's claim stopped waiting"
    );
    assert_eq!(metric(port_b, "claims_total"), 0.0, "{}", b.log_text());
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 0));

    relay.pass();
    assert!(
        wait_for(Duration::from_secs(30), || metric(port_b, "claims_total")
            == 1.0),
        "B never claimed:\n{}",
        b.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(30), || version_of(&mut conn, &t.db, ID)
            == v(ID, 2)),
        "version 2 never landed:\n{}",
        b.log_text()
    );
    produce_versions(&t, 0, &[(ID, 3)]);
    assert!(
        wait_for(Duration::from_secs(20), || version_of(&mut conn, &t.db, ID)
            == v(ID, 3)),
        "B never wrote version 3:\n{}",
        b.log_text()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 3));

    for (name, sink) in [("A", &mut a), ("B", &mut b)] {
        sink.signal("TERM");
        let status = sink.wait(Duration::from_secs(30));
        assert!(status.success(), "{name}: {status:?}\n{}", sink.log_text());
    }
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 3));
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 1), [4]);
    let exactly_once = delivery == "exactly_once";
    assert_eq!(
        offsets_rows(&mut conn, &t.db),
        [(0, exactly_once.then_some(4), 2)]
    );
    if exactly_once {
        assert_eq!(applied_versions(&mut conn, &t.db), versions_0_to_3());
    }
}

#[test]
fn a_live_owners_open_transaction_holds_the_new_owners_claim_back_at_least_once() {
    live_owners_transaction_holds_the_claim_back("at_least_once");
}

#[test]
fn a_live_owners_open_transaction_holds_the_new_owners_claim_back_exactly_once() {
    live_owners_transaction_holds_the_claim_back("exactly_once");
}

// ---------------------------------------------------------------------
// 2, 3. Exactly once across crashes of the sink and of MariaDB.
// ---------------------------------------------------------------------

/// Orders `0..IDS` in versions `0..VERSIONS`, order `i` on partition
/// `i % PARTS`.
const IDS: u64 = 2_000;
const VERSIONS: u64 = 10;
const PARTS: i32 = 4;

/// A writer's transaction locks the offsets rows of its batch's partitions
/// and no others. A batch with rows of many partitions used to lock every
/// partition's row (`kafka_partition IN (...)` over most of them is planned
/// as a scan of the group's rows), so exactly-once writers waited for each
/// other's transactions, and a lock on one partition's row stopped all of
/// them. Here another session holds partition 0's row while one batch
/// brings rows of the fifteen others: they must land all the same (a
/// blocked writer would wait far longer than the test does). The session
/// has `sql_safe_updates` on, which refuses updates not made by key.
#[test]
fn a_lock_on_one_partitions_offsets_row_holds_back_no_other_partition_exactly_once() {
    let _serial = server::serial();
    let mut conn = mysql();
    let dir = scratch_dir("offsets-row-lock");
    let parts = 16;
    let (_cluster, t) = target(&mut conn, "offlock", parts);
    let _drop_db = DropDatabase(t.db.clone());
    let config = config_file(
        &dir,
        "sink.toml",
        &format!(
            "{KAFKA}[mysql]\ntimeout_ms = 60000\npool_size = 2\n\
             init_sql = [\"SET SESSION sql_safe_updates = 1\"]\n\
             [sink]\nwriters = 1\nbatch_size = 100\nflush_interval_ms = 200\n\
             shutdown_timeout_ms = 2000\n"
        ),
    );
    let (port, metrics) = metrics_env();
    let mut sink = spawn_sink(
        &t,
        &config,
        dir.join("sink.log"),
        &[],
        &[metrics, ("SINK_DELIVERY", "exactly_once".to_string())],
    );
    assert!(
        wait_for(Duration::from_secs(30), || metric(
            port,
            "assigned_partitions"
        ) == f64::from(parts)),
        "the sink never claimed the partitions:\n{}",
        sink.log_text()
    );
    let mut holder = mysql();
    holder.query_drop("START TRANSACTION").unwrap();
    // By its whole primary key, so that the lock is on that row alone.
    let held: Vec<i32> = holder
        .exec(
            format!(
                "SELECT kafka_partition FROM `{}`.`orders_offsets` \
                 WHERE consumer_group = ? AND topic = ? AND kafka_partition = 0 FOR UPDATE",
                t.db
            ),
            (&t.group, &t.topic),
        )
        .unwrap();
    assert_eq!(held, [0], "partition 0's offsets row is not there to lock");

    for p in 1..parts {
        produce_versions(&t, p, &[(100 + p as u64, 0)]);
    }
    assert!(
        wait_for(Duration::from_secs(15), || (1..parts).all(|p| version_of(
            &mut conn,
            &t.db,
            100 + p as u64
        ) == v(
            100 + p as u64,
            0
        ))),
        "rows of partitions 1..{parts} waited for the lock on partition 0's offsets row:\n{}",
        sink.log_text()
    );
    let offsets = offsets_rows(&mut conn, &t.db);
    for p in 1..parts {
        assert!(
            offsets
                .iter()
                .any(|&(q, next, _)| q == p && next == Some(1)),
            "partition {p}'s next offset is not 1: {offsets:?}"
        );
    }

    // Partition 0 itself waits for the lock, and is written once it goes.
    produce_versions(&t, 0, &[(100, 0)]);
    holder.query_drop("ROLLBACK").unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || version_of(
            &mut conn, &t.db, 100
        ) == v(100, 0)),
        "partition 0 was not written after the lock went:\n{}",
        sink.log_text()
    );
    sink.signal("TERM");
    assert!(sink.wait(Duration::from_secs(30)).success());
}

/// Every version of every order, version by version, keyed by id.
fn produce_all_versions(t: &Target) {
    produce(
        &t.brokers,
        &t.topic,
        (0..VERSIONS).flat_map(|version| {
            (0..IDS).map(move |i| {
                (
                    partition_of(i, PARTS),
                    order_id(i).into_bytes(),
                    order(i, version).0.into_bytes(),
                )
            })
        }),
    );
}

/// Each order at its last version.
fn last_versions() -> Vec<Expected> {
    let mut e: Vec<Expected> = (0..IDS).map(|i| order(i, VERSIONS - 1).1).collect();
    e.sort();
    e
}

/// Creates the target table and triggers that log every row version
/// applied to it (inserted, or updated by an upsert) into `applied`.
fn log_applied_versions(conn: &mut Conn, db: &str) {
    conn.query_drop(format!("CREATE DATABASE `{db}`")).unwrap();
    kafka_mysql_sink::internals::ensure_table(conn, db, "orders").unwrap();
    for stmt in [
        format!(
            "CREATE TABLE `{db}`.`applied` (seq BIGINT AUTO_INCREMENT PRIMARY KEY, \
             id VARCHAR(36) NOT NULL, order_id VARCHAR(255) NOT NULL) ENGINE=InnoDB"
        ),
        format!(
            "CREATE TRIGGER `{db}`.`orders_applied_insert` AFTER INSERT ON `{db}`.`orders` \
             FOR EACH ROW INSERT INTO `{db}`.`applied` (id, order_id) VALUES (NEW.id, NEW.order_id)"
        ),
        format!(
            "CREATE TRIGGER `{db}`.`orders_applied_update` AFTER UPDATE ON `{db}`.`orders` \
             FOR EACH ROW INSERT INTO `{db}`.`applied` (id, order_id) VALUES (NEW.id, NEW.order_id)"
        ),
    ] {
        conn.query_drop(stmt).unwrap();
    }
}

/// The row versions applied, in the order they were.
fn applied_versions(conn: &mut Conn, db: &str) -> Vec<String> {
    conn.query(format!(
        "SELECT order_id FROM `{db}`.`applied` ORDER BY seq"
    ))
    .unwrap()
}

/// Versions 0 to 3 of order `ID`, as `applied_versions` lists them.
fn versions_0_to_3() -> Vec<String> {
    (0..4)
        .map(|version| order(ID, version).1.order_id)
        .collect()
}

fn applied_count(conn: &mut Conn, db: &str) -> u64 {
    conn.query_first(format!("SELECT COUNT(*) FROM `{db}`.`applied`"))
        .unwrap()
        .unwrap_or(0)
}

/// Row versions applied more than once: (id, order_id, times).
fn applied_twice(conn: &mut Conn, db: &str) -> Vec<(String, String, u64)> {
    conn.query(format!(
        "SELECT id, order_id, COUNT(*) FROM `{db}`.`applied` \
         GROUP BY id, order_id HAVING COUNT(*) > 1 ORDER BY id, order_id LIMIT 20"
    ))
    .unwrap()
}

/// Checks the end state of an exactly-once run over every version: the
/// table exact, every version applied once, and the offsets table and
/// Kafka's committed offsets at the end of every partition.
fn assert_exactly_once(conn: &mut Conn, t: &Target) {
    assert_eq!(table_rows(conn, &t.db, "orders"), last_versions());
    let twice = applied_twice(conn, &t.db);
    assert!(twice.is_empty(), "row versions applied twice: {twice:?}");
    assert_eq!(applied_count(conn, &t.db), IDS * VERSIONS);
    let end = end_offsets(&t.brokers, &t.topic, PARTS);
    assert_eq!(end.iter().sum::<i64>() as u64, IDS * VERSIONS);
    let next: Vec<Option<i64>> = offsets_rows(conn, &t.db)
        .into_iter()
        .map(|(_, next, _)| next)
        .collect();
    let want: Vec<Option<i64>> = end.iter().map(|&e| Some(e)).collect();
    assert_eq!(next, want, "next offsets in MySQL");
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, PARTS),
        end,
        "committed offsets in Kafka"
    );
}

/// Exactly-once settings that keep a sink slow enough to be interrupted:
/// small batches (each its own transaction) over two writers.
const EXACTLY_ONCE: &str = "[mysql]\npool_size = 3\n\
                            [sink]\ndelivery = \"exactly_once\"\nwriters = 2\nbatch_size = 20\n\
                            flush_interval_ms = 20\nretry_initial_ms = 50\nretry_max_ms = 500\n";

/// 20,000 versions of 2,000 orders; the sink is SIGKILLed four times
/// mid-stream (each time after a different number of rows landed) and
/// started again, then run until caught up. Every order ends at its last
/// version, no version was applied twice, and MySQL's next offsets are the
/// ends of the partitions.
#[test]
fn sigkilled_four_times_exactly_once_applies_every_version_once() {
    let _serial = server::serial();
    let mut conn = mysql();
    let dir = scratch_dir("eos-kill");
    let (_cluster, t) = target(&mut conn, "eoskill", PARTS);
    let _drop_db = DropDatabase(t.db.clone());
    log_applied_versions(&mut conn, &t.db);
    produce_all_versions(&t);
    // A member killed never leaves its group: each restart waits for its
    // session to time out, so keep that short.
    let kafka = KAFKA.replace("\"6000\"", "\"3000\"");
    let config = config_file(&dir, "sink.toml", &format!("{kafka}{EXACTLY_ONCE}"));

    let total = IDS * VERSIONS;
    // The last kill comes well before any partition is done: a partition
    // done in MySQL but not yet committed to Kafka when the sink is killed
    // is the case of the ignored test below.
    let kills: Vec<u64> = [1_500, 5_500, 9_500, 12_500]
        .iter()
        .zip(0..)
        .map(|(base, slot)| base + jitter(slot, 2_500))
        .collect();
    eprintln!("killing after {kills:?} applied row versions");
    for (n, &at) in kills.iter().enumerate() {
        let mut sink = spawn_sink(&t, &config, dir.join(format!("run{n}.log")), &[], &[]);
        assert!(
            wait_for(Duration::from_secs(60), || applied_count(&mut conn, &t.db)
                >= at),
            "run {n} never got to {at} rows:\n{}",
            sink.log_text()
        );
        sink.signal("KILL");
        sink.wait(Duration::from_secs(10));
        let applied = applied_count(&mut conn, &t.db);
        assert!(applied < total, "run {n} finished before it was killed");
        let twice = applied_twice(&mut conn, &t.db);
        assert!(
            twice.is_empty(),
            "after kill {n}, row versions applied twice: {twice:?}"
        );
    }
    let mut last = spawn_sink(
        &t,
        &config,
        dir.join("last.log"),
        &["--until-caught-up"],
        &[],
    );
    let status = last.wait(Duration::from_secs(120));
    assert!(status.success(), "{status:?}\n{}", last.log_text());
    assert_exactly_once(&mut conn, &t);
}

/// Exactly-once, with MySQL's next offsets at the end of every partition
/// but Kafka's committed offsets behind (a sink SIGKILLed after its last
/// MySQL transaction and before its next Kafka commit; here the commit
/// interval is ten minutes, so Kafka has nothing at all). A run with
/// `--until-caught-up` starts at MySQL's offsets, has nothing to read, and
/// must say so and exit; and the group's offsets in Kafka should then
/// show the partitions done.
#[test]
fn until_caught_up_exits_when_mysql_is_ahead_of_kafka_exactly_once() {
    let _serial = server::serial();
    let mut conn = mysql();
    let dir = scratch_dir("eos-ahead");
    let (_cluster, t) = target(&mut conn, "eosahead", 2);
    let _drop_db = DropDatabase(t.db.clone());
    let n = 100;
    produce_orders(&t, 2, n);
    let eos = "[sink]\ndelivery = \"exactly_once\"\n";
    let no_commits = KAFKA.replace("commit_interval_ms = 100", "commit_interval_ms = 600000");
    let first_config = config_file(&dir, "first.toml", &format!("{no_commits}{eos}"));
    let mut first = spawn_sink(&t, &first_config, dir.join("first.log"), &[], &[]);
    assert!(
        wait_for(Duration::from_secs(30), || {
            count(&mut conn, &t.db, "orders") == n
                && offsets_rows(&mut conn, &t.db)
                    .iter()
                    .all(|&(_, next, _)| next == Some(50))
        }),
        "{}",
        first.log_text()
    );
    first.signal("KILL");
    first.wait(Duration::from_secs(10));
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 2), [-1, -1]);

    let config = config_file(&dir, "sink.toml", &format!("{KAFKA}{eos}"));
    let mut second = spawn_sink(
        &t,
        &config,
        dir.join("second.log"),
        &["--until-caught-up"],
        &[],
    );
    // Joining takes a session timeout (the killed member never left).
    let status = second.wait(Duration::from_secs(40));
    assert!(status.success(), "{status:?}\n{}", second.log_text());
    let mut expected: Vec<Expected> = (0..n).map(|i| order(i, 0).1).collect();
    expected.sort();
    assert_eq!(table_rows(&mut conn, &t.db, "orders"), expected);
    assert_eq!(
        offsets_rows(&mut conn, &t.db),
        [(0, Some(50), 2), (1, Some(50), 2)]
    );
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 2), [50, 50]);
}

/// A MariaDB of the test's own, so that killing it disturbs no other test.
struct OwnMariaDb {
    port: u16,
    dir: PathBuf,
}

impl OwnMariaDb {
    fn start_new(tag: &str) -> OwnMariaDb {
        let own = OwnMariaDb {
            port: free_port(),
            dir: std::env::temp_dir().join(format!("kms-mariadb-{tag}-{}", std::process::id())),
        };
        assert!(
            own.script("start"),
            "cannot start a MariaDB of our own on port {}",
            own.port
        );
        own
    }

    fn script(&self, action: &str) -> bool {
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mariadb-local.sh"))
            .arg(action)
            .env("KMS_MYSQL_PORT", self.port.to_string())
            .env("KMS_MYSQL_DIR", &self.dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// SIGKILL: no shutdown, transactions in flight cut off mid-way; the
    /// next start runs crash recovery.
    fn kill9(&self) {
        let pid = std::fs::read_to_string(self.dir.join("mysqld.pid"))
            .expect("the server's pid file")
            .trim()
            .to_string();
        let ok = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -9 {pid} failed");
        let gone = wait_for(Duration::from_secs(10), || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
        assert!(gone, "MariaDB {pid} survived kill -9");
    }

    fn conn(&self) -> Conn {
        Conn::new(mysql::Opts::from(mysql_opts().tcp_port(self.port))).unwrap()
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        self.script("clean");
    }
}

/// Exactly-once mode while MariaDB is killed with SIGKILL twice, each time
/// with the sink's transactions in flight, and started again: the run
/// finishes, every order is at its last version, no version was applied
/// twice (a COMMIT whose answer was lost is not written again), and the
/// offsets are at the end in MySQL and in Kafka.
#[test]
fn mariadb_killed_mid_transaction_exactly_once_applies_every_version_once() {
    let _serial = server::serial();
    let own = OwnMariaDb::start_new("eos-crash");
    let mut conn = own.conn();
    let dir = scratch_dir("eos-crash");
    let (_cluster, t) = target(&mut conn, "eoscrash", PARTS);
    log_applied_versions(&mut conn, &t.db);
    produce_all_versions(&t);
    let config = config_file(
        &dir,
        "sink.toml",
        &format!(
            "{KAFKA}{}",
            EXACTLY_ONCE.replace("[mysql]\n", "[mysql]\ntimeout_ms = 3000\n")
        ),
    );
    let (port, metrics) = metrics_env();
    let mut sink = spawn_sink(
        &t,
        &config,
        dir.join("sink.log"),
        &["--until-caught-up"],
        &[("MYSQL_PORT", own.port.to_string()), metrics],
    );
    let total = IDS * VERSIONS;
    for (base, slot) in [(3_000, 0), (11_000, 1)] {
        let at = base + jitter(slot, 3_000);
        eprintln!("killing MariaDB after {at} applied row versions");
        assert!(
            wait_for(Duration::from_secs(60), || applied_count(&mut conn, &t.db)
                >= at),
            "never got to {at} rows:\n{}",
            sink.log_text()
        );
        let retries = || {
            metric(port, "retries_total{class=\"transient\"}")
                + metric(port, "retries_total{class=\"unknown\"}")
        };
        let before = retries();
        // The kill comes mid-stream: not everything is applied yet. (Counted
        // now, not after the restart, when the sink may already have
        // written the rest.)
        assert!(applied_count(&mut conn, &t.db) < total);
        drop(conn);
        own.kill9();
        let down = Instant::now();
        // The outage is seen by the writers.
        assert!(
            wait_for(Duration::from_secs(20), || retries() > before),
            "the outage never showed:\n{}",
            sink.log_text()
        );
        std::thread::sleep(Duration::from_secs(2).saturating_sub(down.elapsed()));
        assert!(own.script("start"), "cannot start MariaDB again");
        conn = own.conn();
    }
    let status = sink.wait(Duration::from_secs(120));
    assert!(status.success(), "{status:?}\n{}", sink.log_text());
    assert_exactly_once(&mut conn, &t);
}

/// Statements now running in MariaDB whose text is `info` exactly and
/// whose state mentions `state` (e.g. a `COMMIT` waiting for the backup
/// lock that `FLUSH TABLES WITH READ LOCK` holds).
fn running_in_state(conn: &mut Conn, info: &str, state: &str) -> u64 {
    conn.exec_first(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE INFO = ? AND STATE LIKE ? AND ID <> CONNECTION_ID()",
        (info, format!("%{state}%")),
    )
    .unwrap()
    .unwrap_or(0)
}

/// An exactly-once sink with one writer (`sink_settings`, plus `env`) over
/// one partition, once it has written and committed order `ID`'s version
/// 0; every version applied is logged (see `log_applied_versions`).
struct OneWriterAtVersion0 {
    t: Target,
    sink: SinkProcess,
    /// The sink's metrics port.
    port: u16,
    _drop_db: DropDatabase,
    _cluster: MockCluster<'static, DefaultProducerContext>,
}

fn exactly_once_at_version_0(
    conn: &mut Conn,
    tag: &str,
    sink_settings: &str,
    env: &[(&str, String)],
) -> OneWriterAtVersion0 {
    let dir = scratch_dir(tag);
    let (cluster, t) = target(conn, tag, 1);
    let drop_db = DropDatabase(t.db.clone());
    log_applied_versions(conn, &t.db);
    let config = config_file(
        &dir,
        "sink.toml",
        &format!(
            "{KAFKA}{}",
            sink_settings.replace("[sink]\n", "[sink]\ndelivery = \"exactly_once\"\n")
        ),
    );
    produce_versions(&t, 0, &[(ID, 0)]);
    let (port, metrics) = metrics_env();
    let mut env = env.to_vec();
    env.push(metrics);
    let sink = spawn_sink(&t, &config, dir.join("sink.log"), &[], &env);
    assert!(
        wait_for(Duration::from_secs(30), || {
            version_of(conn, &t.db, ID) == v(ID, 0)
                && committed(&t.brokers, &t.group, &t.topic, 1) == [1]
        }),
        "version 0 was never written:\n{}",
        sink.log_text()
    );
    OneWriterAtVersion0 {
        t,
        sink,
        port,
        _drop_db: drop_db,
        _cluster: cluster,
    }
}

/// The sink's COMMIT of versions 1 and 2 is carried out by MariaDB but its
/// answer never reaches the sink, which gives the session up and retries
/// the batch: in exactly-once mode the retry finds the partition's next
/// offset past the batch and applies nothing again.
///
/// How the answer is lost: a trigger makes the batch's update of the
/// offsets table sleep 2 s (once); meanwhile the relay holds, and
/// `FLUSH TABLES WITH READ LOCK` is taken as soon as the update is done, so
/// that the COMMIT, sent once the relay passes again, waits for that lock
/// in MariaDB. The relay then drops all traffic and the lock is released:
/// the COMMIT is carried out and its answer discarded.
#[test]
fn a_commit_whose_answer_is_lost_is_not_applied_again_exactly_once() {
    let _serial = server::serial();
    let mut conn = mysql();
    let relay = Relay::start(mysql_port());
    // Bound in this order so that the sink is dropped (stopped) first.
    let OneWriterAtVersion0 {
        _cluster,
        _drop_db,
        t,
        port,
        mut sink,
    } = exactly_once_at_version_0(
        &mut conn,
        "eoslost",
        &ONE_WRITER.replace("timeout_ms = 20000", "timeout_ms = 4000"),
        &[("MYSQL_PORT", relay.port().to_string())],
    );
    let db = &t.db;
    for stmt in [
        format!("CREATE TABLE `{db}`.`slowed` (x INT) ENGINE=InnoDB"),
        format!(
            "CREATE TRIGGER `{db}`.`offsets_slow_once` BEFORE UPDATE ON `{db}`.`orders_offsets` \
             FOR EACH ROW BEGIN \
               IF NOT (NEW.next_offset <=> OLD.next_offset) \
                  AND (SELECT COUNT(*) FROM `{db}`.`slowed`) = 0 THEN \
                 INSERT INTO `{db}`.`slowed` VALUES (1); \
                 DO SLEEP(2); \
               END IF; \
             END"
        ),
    ] {
        conn.query_drop(stmt).unwrap();
    }

    produce_versions(&t, 0, &[(ID, 1), (ID, 2)]);
    // While a trigger runs, the process list shows its statement.
    assert!(
        wait_for(Duration::from_secs(20), || !server::running(
            &mut conn,
            "DO SLEEP(2)"
        )
        .is_empty()),
        "the batch never updated the offsets table:\n{}",
        sink.log_text()
    );
    // The update sleeps: its answer, once it comes, is held, and the global
    // read lock is taken as soon as the update is done.
    relay.hold();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut locker = mysql();
        locker.query_drop("FLUSH TABLES WITH READ LOCK").unwrap();
        let _ = tx.send(locker);
    });
    let mut locker = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("FLUSH TABLES WITH READ LOCK never got the lock");
    // The update's answer goes through; the COMMIT comes and waits.
    relay.pass();
    assert!(
        wait_for(Duration::from_secs(5), || running_in_state(
            &mut conn,
            "COMMIT",
            "backup lock"
        ) == 1),
        "the COMMIT never came:\n{}",
        sink.log_text()
    );
    // The COMMIT is carried out; its answer is lost.
    relay.drop_traffic();
    locker.query_drop("UNLOCK TABLES").unwrap();
    assert!(wait_for(Duration::from_secs(5), || running_in_state(
        &mut conn, "COMMIT", ""
    ) == 0));
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 2));
    std::thread::sleep(Duration::from_millis(500));
    relay.pass();

    // The sink gives the session up, retries, and finds the batch written.
    let retries = || {
        metric(port, "retries_total{class=\"transient\"}")
            + metric(port, "retries_total{class=\"unknown\"}")
    };
    assert!(
        wait_for(Duration::from_secs(30), || retries() > 0.0
            && committed(&t.brokers, &t.group, &t.topic, 1) == [3]),
        "the batch was never settled:\n{}",
        sink.log_text()
    );
    produce_versions(&t, 0, &[(ID, 3)]);
    assert!(
        wait_for(Duration::from_secs(20), || version_of(&mut conn, &t.db, ID)
            == v(ID, 3)),
        "version 3 was never written:\n{}",
        sink.log_text()
    );
    sink.signal("TERM");
    let status = sink.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", sink.log_text());
    assert_eq!(applied_versions(&mut conn, &t.db), versions_0_to_3());
    assert_eq!(offsets_rows(&mut conn, &t.db), [(0, Some(4), 1)]);
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 1), [4]);
}

/// The batch's update of its partition's next offset fails (a trigger
/// refuses it while `refuse_next` has a row). The failure must take the
/// whole batch down with it, rows and all: nothing of it is visible while
/// the update is refused, and once it is let through, each version is
/// applied once, with the next offset after the batch in MySQL and in
/// Kafka.
#[test]
fn a_refused_next_offset_update_commits_nothing_of_its_batch_exactly_once() {
    let _serial = server::serial();
    let mut conn = mysql();
    // Bound in this order so that the sink is dropped (stopped) first.
    let OneWriterAtVersion0 {
        _cluster,
        _drop_db,
        t,
        port,
        mut sink,
    } = exactly_once_at_version_0(&mut conn, "eosrefused", ONE_WRITER, &[]);
    let db = &t.db;
    for stmt in [
        format!("CREATE TABLE `{db}`.`refuse_next` (x INT) ENGINE=InnoDB"),
        format!("INSERT INTO `{db}`.`refuse_next` VALUES (1)"),
        format!(
            "CREATE TRIGGER `{db}`.`offsets_refused` BEFORE UPDATE ON `{db}`.`orders_offsets` \
             FOR EACH ROW BEGIN \
               IF NOT (NEW.next_offset <=> OLD.next_offset) \
                  AND (SELECT COUNT(*) FROM `{db}`.`refuse_next`) > 0 THEN \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'next offset refused'; \
               END IF; \
             END"
        ),
    ] {
        conn.query_drop(stmt).unwrap();
    }

    produce_versions(&t, 0, &[(ID, 1), (ID, 2)]);
    let retries = || {
        metric(port, "retries_total{class=\"transient\"}")
            + metric(port, "retries_total{class=\"unknown\"}")
    };
    assert!(
        wait_for(Duration::from_secs(30), || retries() >= 2.0),
        "the refused update was never retried:\n{}",
        sink.log_text()
    );
    assert_eq!(
        version_of(&mut conn, &t.db, ID),
        v(ID, 0),
        "rows of a batch whose next-offset update failed were committed"
    );
    assert_eq!(applied_versions(&mut conn, &t.db).len(), 1);
    conn.query_drop(format!("DELETE FROM `{db}`.`refuse_next`"))
        .unwrap();

    assert!(
        wait_for(Duration::from_secs(30), || committed(
            &t.brokers, &t.group, &t.topic, 1
        ) == [3]),
        "the batch was never written after the update was let through:\n{}",
        sink.log_text()
    );
    sink.signal("TERM");
    let status = sink.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", sink.log_text());
    assert_eq!(version_of(&mut conn, &t.db, ID), v(ID, 2));
    assert_eq!(
        applied_versions(&mut conn, &t.db),
        versions_0_to_3()[..3].to_vec()
    );
    assert_eq!(offsets_rows(&mut conn, &t.db), [(0, Some(3), 1)]);
}

// ---------------------------------------------------------------------
// 4, 5. Start-up refusals.
// ---------------------------------------------------------------------

/// A MySQL user with SELECT, INSERT, UPDATE and DELETE on one database and
/// nothing else; dropped at the end of the test.
struct LimitedUser {
    name: String,
    password: String,
}

impl LimitedUser {
    fn create(conn: &mut Conn, db: &str) -> LimitedUser {
        let user = LimitedUser {
            name: format!("kms_nocreate_{}", std::process::id()),
            password: "No-Create-9d2e".into(),
        };
        conn.query_drop(format!("DROP USER IF EXISTS '{}'@'%'", user.name))
            .unwrap();
        conn.query_drop(format!(
            "CREATE USER '{}'@'%' IDENTIFIED BY '{}'",
            user.name, user.password
        ))
        .unwrap();
        conn.query_drop(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON `{db}`.* TO '{}'@'%'",
            user.name
        ))
        .unwrap();
        user
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MYSQL_USER", self.name.clone()),
            ("MYSQL_PASSWORD", self.password.clone()),
        ]
    }
}

impl Drop for LimitedUser {
    fn drop(&mut self) {
        if let Ok(mut c) = Conn::new(mysql::Opts::from(mysql_opts())) {
            let _ = c.query_drop(format!("DROP USER IF EXISTS '{}'@'%'", self.name));
        }
    }
}

/// The dead-letter table as the sink creates it, for an administrator to
/// create ahead of a user without CREATE.
fn create_dlq_table(conn: &mut Conn, db: &str) {
    conn.query_drop(kafka_mysql_sink::internals::create_dlq_table(
        db,
        "orders_dlq",
    ))
    .unwrap();
}

/// `kafka-mysql-sink check` with the same environment as a sink process.
fn run_check(t: &Target, config: &Path, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--config"])
        .arg(config)
        .env("RUST_LOG", "off")
        .env("KAFKA_BROKERS", &t.brokers)
        .env("SOURCE_TOPIC", &t.topic)
        .env("SINK_GROUP_ID", &t.group)
        .env("MYSQL_HOST", "127.0.0.1")
        .env("MYSQL_PORT", mysql_port().to_string())
        .env("MYSQL_USER", "root")
        .env("MYSQL_PASSWORD", "root")
        .env("MYSQL_DATABASE", &t.db)
        .env("MYSQL_TABLE", "orders");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null())
        .output()
        .expect("run kafka-mysql-sink check")
}

/// A database with the target and dead-letter tables created by root, a
/// user without CREATE on it, and orders waiting in Kafka.
struct NoCreateSetup {
    _cluster: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    t: Target,
    user: LimitedUser,
    dir: PathBuf,
    config: PathBuf,
    _drop_db: DropDatabase,
}

const NO_CREATE_ORDERS: u64 = 500;

fn no_create_setup(conn: &mut Conn, tag: &str, extra: &str) -> NoCreateSetup {
    let dir = scratch_dir(tag);
    let (cluster, t) = target(conn, tag, 2);
    let drop_db = DropDatabase(t.db.clone());
    conn.query_drop(format!("CREATE DATABASE `{}`", t.db))
        .unwrap();
    kafka_mysql_sink::internals::ensure_table(conn, &t.db, "orders").unwrap();
    create_dlq_table(conn, &t.db);
    let user = LimitedUser::create(conn, &t.db);
    produce_orders(&t, 2, NO_CREATE_ORDERS);
    let config = config_file(&dir, "sink.toml", &format!("{KAFKA}{extra}"));
    NoCreateSetup {
        _cluster: cluster,
        t,
        user,
        dir,
        config,
        _drop_db: drop_db,
    }
}

/// The offsets table missing and a user that may not create it: the sink
/// refuses to start at once (not after connection retries), exiting 1,
/// and `check` fails too; both name the table, `check` with the statement
/// that creates it. Nothing is read or committed.
#[test]
fn a_user_without_create_is_refused_at_start_up_when_the_offsets_table_is_missing() {
    let _serial = server::serial();
    let mut conn = mysql();
    let s = no_create_setup(&mut conn, "nocreate", "");
    let offsets = format!("`{}`.`orders_offsets`", s.t.db);

    let started = Instant::now();
    let out = {
        let mut cmd = Command::new(BIN);
        // No log lines: stderr is only what the command says to its user.
        cmd.args(["run", "--config"])
            .arg(&s.config)
            .env("RUST_LOG", "off")
            .env("KAFKA_BROKERS", &s.t.brokers)
            .env("SOURCE_TOPIC", &s.t.topic)
            .env("SINK_GROUP_ID", &s.t.group)
            .env("MYSQL_HOST", "127.0.0.1")
            .env("MYSQL_PORT", mysql_port().to_string())
            .env("MYSQL_DATABASE", &s.t.db)
            .env("MYSQL_TABLE", "orders");
        for (k, v) in s.user.env() {
            cmd.env(k, v);
        }
        cmd.stdin(std::process::Stdio::null()).output().unwrap()
    };
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        // Connection failures are retried 5 times 5 s apart (the defaults):
        // this is no such failure.
        took < Duration::from_secs(5),
        "took {took:?} to give up:\n{stderr}"
    );
    assert!(stderr.contains(&offsets), "{stderr}");

    let check = run_check(&s.t, &s.config, &s.user.env());
    let stdout = String::from_utf8_lossy(&check.stdout);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&offsets), "{stderr}");
    assert!(stdout.contains("CREATE TABLE"), "{stdout}");

    // Nothing consumed, written or committed; the offsets table is still
    // missing.
    assert_eq!(count(&mut conn, &s.t.db, "orders"), 0);
    assert_eq!(committed(&s.t.brokers, &s.t.group, &s.t.topic, 2), [-1, -1]);
    let tables: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME",
            (&s.t.db,),
        )
        .unwrap();
    assert_eq!(tables, ["orders", "orders_dlq"]);
}

/// The statement `check` prints for an administrator to run.
fn ddl_from_check(stdout: &str) -> String {
    let at = stdout
        .find("CREATE TABLE")
        .unwrap_or_else(|| panic!("check printed no CREATE TABLE:\n{stdout}"));
    stdout[at..].trim().to_string()
}

/// After an administrator runs the statement `check` printed, the same
/// user without CREATE passes `check` and runs: the whole topic is
/// written and committed.
fn a_user_without_create_runs_once_the_offsets_table_is_there(extra: &str, tag: &str) {
    let _serial = server::serial();
    let mut conn = mysql();
    let s = no_create_setup(&mut conn, tag, extra);
    let check = run_check(&s.t, &s.config, &s.user.env());
    assert_eq!(check.status.code(), Some(1));
    let ddl = ddl_from_check(&String::from_utf8_lossy(&check.stdout));
    conn.query_drop(&ddl).unwrap();

    let check = run_check(&s.t, &s.config, &s.user.env());
    assert!(
        check.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut sink = spawn_sink(
        &s.t,
        &s.config,
        s.dir.join("sink.log"),
        &["--until-caught-up"],
        &s.user.env(),
    );
    let status = sink.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", sink.log_text());
    let mut expected: Vec<Expected> = (0..NO_CREATE_ORDERS).map(|i| order(i, 0).1).collect();
    expected.sort();
    assert_eq!(table_rows(&mut conn, &s.t.db, "orders"), expected);
    assert_eq!(
        committed(&s.t.brokers, &s.t.group, &s.t.topic, 2),
        end_offsets(&s.t.brokers, &s.t.topic, 2)
    );
    assert_eq!(
        offsets_rows(&mut conn, &s.t.db)
            .iter()
            .map(|r| (r.0, r.2))
            .collect::<Vec<_>>(),
        [(0, 1), (1, 1)]
    );
}

#[test]
fn a_user_without_create_runs_once_the_offsets_table_is_there_with_dead_letters_in_a_table() {
    a_user_without_create_runs_once_the_offsets_table_is_there("", "nocreate-dlq");
}

#[test]
fn a_user_without_create_runs_once_the_offsets_table_is_there_with_dead_letters_skipped() {
    a_user_without_create_runs_once_the_offsets_table_is_there(
        "[dead_letter]\nmode = \"skip\"\n",
        "nocreate-skip",
    );
}

/// Dead letters on a Kafka topic cannot join a MySQL transaction: with
/// exactly-once delivery the sink refuses to start (exit 2, the status of
/// an unusable configuration), and so does `check`. Nothing is created,
/// read or committed.
#[test]
fn a_dead_letter_topic_with_exactly_once_is_refused_at_start_up() {
    let _serial = server::serial();
    let mut conn = mysql();
    let dir = scratch_dir("eos-dlq-topic");
    let (_cluster, t) = target(&mut conn, "eosdlqtopic", 1);
    let _drop_db = DropDatabase(t.db.clone());
    produce_orders(&t, 1, 10);
    let config = config_file(
        &dir,
        "sink.toml",
        &format!("{KAFKA}[dead_letter]\nmode = \"topic\"\n"),
    );
    let eos = [("SINK_DELIVERY", "exactly_once".to_string())];
    let started = Instant::now();
    let mut sink = spawn_sink(&t, &config, dir.join("sink.log"), &[], &eos);
    let status = sink.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", sink.log_text());
    assert!(started.elapsed() < Duration::from_secs(10));
    let check = run_check(&t, &config, &eos);
    assert_eq!(check.status.code(), Some(2));

    // The same file with at-least-once delivery is fine.
    let alo = [("SINK_DELIVERY", "at_least_once".to_string())];
    let check = run_check(&t, &config, &alo);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let exists: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (&t.db,),
        )
        .unwrap();
    assert_eq!(exists, None, "the refused run created the database");
    assert_eq!(committed(&t.brokers, &t.group, &t.topic, 1), [-1]);
}
