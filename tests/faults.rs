//! Bad input and failures inside one process: poison rows, dead letters,
//! tombstones, lock waits, Kafka faults.

mod common;

use std::time::Duration;

use common::*;
use kafka_mysql_sink::pipeline::RunOptions;
use mysql::prelude::Queryable;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const LIMIT: Duration = Duration::from_secs(180);

#[derive(Debug, PartialEq)]
struct Dead {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    error: String,
}

fn dead_letters(conn: &mut mysql::Conn, db: &str) -> Vec<Dead> {
    conn.query_map(
        format!(
            "SELECT kafka_partition, kafka_offset, message_key, payload, error \
             FROM `{db}`.`orders_dlq` ORDER BY kafka_partition, kafka_offset"
        ),
        |(partition, offset, key, payload, error)| Dead {
            partition,
            offset,
            key,
            payload,
            error,
        },
    )
    .unwrap()
}

#[test]
fn poison_rows_in_a_batch_of_1000_are_isolated_and_dead_lettered() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "poison");
    let (topic, group) = ("enriched_orders", "poison-group");
    let cluster = mock_cluster(topic, 1);
    let brokers = cluster.bootstrap_servers();

    // Rows that MariaDB refuses in strict mode, at known offsets.
    let long = "X".repeat(300);
    let bad: Vec<(u64, String)> = vec![
        (
            17,
            format!(r#"{{"id":"{}","order_id":"{long}"}}"#, order(17, 0).1.id),
        ),
        (
            250,
            format!(
                r#"{{"id":"{}","order_id":"o","total_value":-1e9}}"#,
                order(250, 0).1.id
            ),
        ),
        (
            500,
            format!(
                r#"{{"id":"{}","order_id":"o","quantity":1000000000000}}"#,
                order(500, 0).1.id
            ),
        ),
        (
            999,
            format!(
                r#"{{"id":"{}","order_id":"o","unit_price":1e9}}"#,
                order(999, 0).1.id
            ),
        ),
    ];
    let mut payloads = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1000u64 {
        match bad.iter().find(|(b, _)| *b == i) {
            Some((_, p)) => payloads.push(p.clone().into_bytes()),
            None => {
                let (p, e) = order(i, 0);
                payloads.push(p.into_bytes());
                expected.push(e);
            }
        }
    }
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    produce_payloads(&brokers, topic, 0, &refs);

    let mut config = test_config(&brokers, topic, group, &db);
    // One writer, one statement of 1000 rows.
    config.sink.writers = 1;
    config.sink.batch_size = 1000;
    config.sink.flush_interval = std::time::Duration::from_millis(3000);
    let sink = start_sink(config, RunOptions::default());
    assert!(
        wait_caught_up(&brokers, group, topic, 1, LIMIT),
        "the stream stalled on bad rows"
    );
    let metrics = sink.metrics.snapshot();

    expected.sort();
    assert_eq!(table_rows(&mut conn, &db, "orders"), expected);
    let dead = dead_letters(&mut conn, &db);
    let offsets: Vec<i64> = dead.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, vec![17, 250, 500, 999]);
    for d in &dead {
        let raw = &bad.iter().find(|(b, _)| *b as i64 == d.offset).unwrap().1;
        assert_eq!(
            d.payload.as_deref(),
            Some(raw.as_bytes()),
            "raw payload kept"
        );
        assert_eq!(d.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(d.partition, 0);
    }
    assert!(dead[0].error.contains("Data too long"), "{}", dead[0].error);
    for d in &dead[1..] {
        assert!(d.error.contains("Out of range"), "{}", d.error);
    }
    assert_eq!(metrics.dead_lettered, 4);
    // Isolation cost: about 2·log2(1000) statements per bad row, not 1000.
    assert!(
        metrics.statements < 100,
        "{} statements",
        metrics.statements
    );

    // The stream keeps flowing after the bad rows.
    produce(
        &brokers,
        topic,
        (1000..1100u64).map(|i| (0, b"k".to_vec(), order(i, 0).0.into_bytes())),
    );
    assert!(wait_caught_up(&brokers, group, topic, 1, LIMIT));
    sink.stop();
    assert_eq!(count(&mut conn, &db, "orders"), 996 + 100);
    drop_db(&mut conn, &db);
}

#[test]
fn undecodable_messages_of_every_kind_are_dead_lettered() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "undecodable");
    let (topic, group) = ("enriched_orders", "undecodable-group");
    let cluster = mock_cluster(topic, 1);
    let brokers = cluster.bootstrap_servers();
    let big = format!(
        r#"{{"id":"big","order_id":"o","pad":"{}"}}"#,
        "p".repeat(2000)
    );
    let good = |i: u64| (0, Some(b"k".to_vec()), Some(order(i, 0).0.into_bytes()));
    let records: Vec<RawRecord> = vec![
        good(0),
        (0, Some(b"k1".to_vec()), Some(b"not json".to_vec())),
        (0, None, Some(br#"{"order_id":"no id"}"#.to_vec())),
        (
            0,
            None,
            Some(br#"{"id":"a","order_id":"o","quantity":"five"}"#.to_vec()),
        ),
        (0, None, Some(br#"{"id":"a","order_id":7}"#.to_vec())),
        (0, None, Some(Vec::new())),
        (0, None, Some(big.clone().into_bytes())),
        (0, None, None), // a tombstone without a key
        good(1),
    ];
    produce_raw(&brokers, topic, records);

    let mut config = test_config(&brokers, topic, group, &db);
    config.sink.max_payload_bytes = 1000;
    config.sink.delete_on_tombstone = true;
    let sink = start_sink(config, RunOptions::default());
    assert!(wait_caught_up(&brokers, group, topic, 1, LIMIT));
    let summary = sink.stop();

    assert_eq!(count(&mut conn, &db, "orders"), 2);
    let dead = dead_letters(&mut conn, &db);
    let offsets: Vec<i64> = dead.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, (1..=7).collect::<Vec<i64>>());
    assert_eq!(dead[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(dead[0].payload.as_deref(), Some(&b"not json"[..]));
    assert!(dead[1].error.contains("id"), "{}", dead[1].error);
    assert!(
        dead[2].error.contains("quantity") || dead[2].error.contains("number"),
        "{}",
        dead[2].error
    );
    assert_eq!(dead[4].payload.as_deref(), Some(&b""[..]));
    assert!(dead[4].error.contains("empty"), "{}", dead[4].error);
    assert!(
        dead[5].error.contains("max_payload_bytes"),
        "{}",
        dead[5].error
    );
    assert_eq!(
        dead[5].payload.as_ref().map(Vec::len),
        Some(1000),
        "stored truncated"
    );
    assert_eq!(dead[6].payload, None);
    assert!(dead[6].error.contains("tombstone"), "{}", dead[6].error);
    assert_eq!(summary.counters.dead_lettered, 7);
    assert_eq!(summary.counters.skipped, 0);

    // A restart reads nothing again and stores nothing twice.
    let mut config = test_config(&brokers, topic, group, &db);
    config.sink.max_payload_bytes = 1000;
    let summary = start_sink(config, RunOptions::until_caught_up())
        .handle
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(summary.counters.consumed, 0);
    assert_eq!(dead_letters(&mut conn, &db).len(), 7);
    drop_db(&mut conn, &db);
}

#[test]
fn tombstones_delete_by_key_or_are_skipped() {
    let mut conn = mysql();
    for delete in [true, false] {
        let db = fresh_db(&mut conn, "tombstone");
        let (topic, group) = ("enriched_orders", "tombstone-group");
        let cluster = mock_cluster(topic, 1);
        let brokers = cluster.bootstrap_servers();
        let mut records = Vec::new();
        for i in 0..100u64 {
            let (p, e) = order(i, 0);
            records.push((0, Some(e.id.into_bytes()), Some(p.into_bytes())));
        }
        for i in 0..40u64 {
            records.push((0, Some(order(i, 0).1.id.into_bytes()), None));
        }
        // Re-created after its delete: the later upsert wins.
        let (p, e) = order(5, 1);
        records.push((0, Some(e.id.into_bytes()), Some(p.into_bytes())));
        produce_raw(&brokers, topic, records);

        let mut config = test_config(&brokers, topic, group, &db);
        config.sink.delete_on_tombstone = delete;
        let summary = start_sink(config, RunOptions::until_caught_up())
            .handle
            .join()
            .unwrap()
            .unwrap();
        let rows = table_rows(&mut conn, &db, "orders");
        if delete {
            let mut want: Vec<Expected> = (40..100u64).map(|i| order(i, 0).1).collect();
            want.push(order(5, 1).1);
            want.sort();
            assert_eq!(rows, want);
            assert_eq!(summary.counters.rows_deleted, 40);
        } else {
            assert_eq!(rows.len(), 100);
            assert_eq!(summary.counters.skipped, 40);
        }
        drop_db(&mut conn, &db);
    }
}

#[test]
fn lock_wait_timeouts_are_retried_until_the_lock_is_gone() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "lockwait");
    let (topic, group) = ("enriched_orders", "lockwait-group");
    let cluster = mock_cluster(topic, 1);
    let brokers = cluster.bootstrap_servers();
    kafka_mysql_sink::internals::ensure_table(&mut conn, &db, "orders").unwrap();
    let target = order(3, 0).1.id;
    conn.query_drop(format!(
        "INSERT INTO `{db}`.`orders` (id, order_id) VALUES ('{target}', 'old')"
    ))
    .unwrap();
    // Hold the row's lock in another transaction.
    let mut locker = mysql();
    locker.query_drop("START TRANSACTION").unwrap();
    let _: Vec<String> = locker
        .query(format!(
            "SELECT id FROM `{db}`.`orders` WHERE id = '{target}' FOR UPDATE"
        ))
        .unwrap();

    produce(
        &brokers,
        topic,
        (0..10u64).map(|i| (0, b"k".to_vec(), order(i, 0).0.into_bytes())),
    );
    let mut config = test_config(&brokers, topic, group, &db);
    config.sink.writers = 1;
    // The sink's sessions give up a lock wait after 1 s (error 1205).
    config.mysql.init_sql = vec!["SET SESSION innodb_lock_wait_timeout = 1".into()];
    let sink = start_sink(config, RunOptions::default());
    let retried = wait_for(Duration::from_secs(60), || {
        sink.metrics.snapshot().retries >= 2
    });
    assert!(retried, "the lock wait was never reported and retried");
    assert_eq!(
        count(&mut conn, &db, "orders"),
        1,
        "nothing written past the lock"
    );
    assert_eq!(committed(&brokers, group, topic, 1), vec![-1]);

    locker.query_drop("COMMIT").unwrap();
    assert!(wait_caught_up(&brokers, group, topic, 1, LIMIT));
    let summary = sink.stop();
    assert_eq!(table_rows(&mut conn, &db, "orders"), first_versions(10));
    assert_eq!(summary.counters.dead_lettered, 0);
    drop_db(&mut conn, &db);
}

#[test]
fn a_short_stall_blocks_the_consumer_without_pausing_fetching() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "stall");
    let (topic, group, parts) = ("enriched_orders", "stall-group", 2);
    let cluster = mock_cluster(topic, parts);
    let brokers = cluster.bootstrap_servers();
    kafka_mysql_sink::internals::ensure_table(&mut conn, &db, "orders").unwrap();
    // Locking every row of the empty table (its supremum) holds back every insert.
    let mut locker = mysql();
    locker.query_drop("START TRANSACTION").unwrap();
    let _: Vec<String> = locker
        .query(format!("SELECT id FROM `{db}`.`orders` FOR UPDATE"))
        .unwrap();
    let n = 5_000u64;
    produce_order_range(&brokers, topic, parts, n);
    let mut config = test_config(&brokers, topic, group, &db);
    config.sink.writers = 1;
    config.sink.batch_size = 32;
    config.sink.channel_capacity = 64;
    let sink = start_sink(config, RunOptions::default());
    // The writer's first statement waits on the lock; the channel fills at
    // once and the consumer waits on it, reading nothing more.
    let mut last = 0;
    let blocked = wait_for(Duration::from_secs(60), || {
        let consumed = sink.metrics.snapshot().consumed;
        let still = consumed >= 64 && consumed == last;
        last = consumed;
        still && waiting_inserts(&mut conn, &db) > 0
    });
    assert!(blocked, "the writer never reached the lock");
    // A stall of 2 s, short of the pause threshold (5 s here). Throughout
    // it the consumer reads nothing more and fetching stays on.
    let before = sink.metrics.snapshot();
    std::thread::sleep(Duration::from_secs(2));
    let after = sink.metrics.snapshot();
    assert_eq!(
        after.consumed, before.consumed,
        "the consumer was not blocked"
    );
    assert_eq!(after.rows_written, 0, "the lock did not hold");
    assert!(waiting_inserts(&mut conn, &db) > 0, "the lock did not hold");
    assert_eq!(after.fetch_pauses, 0, "a short stall paused fetching");
    locker.query_drop("COMMIT").unwrap();
    assert!(wait_caught_up(&brokers, group, topic, parts, LIMIT));
    let summary = sink.stop();
    assert_eq!(table_rows(&mut conn, &db, "orders"), first_versions(n));
    // Pausing makes librdkafka drop what it prefetched and fetch it again;
    // doing that on every full channel halved a backfill's throughput, so a
    // stall shorter than the pause threshold (5 s here) only blocks.
    assert_eq!(summary.counters.fetch_pauses, 0);
    drop_db(&mut conn, &db);
}

#[test]
fn broker_down_and_commit_errors_lose_nothing_and_never_go_back() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "kafkafaults");
    let (topic, group, parts) = ("enriched_orders", "kafkafaults-group", 4);
    let cluster = mock_cluster(topic, parts);
    let brokers = cluster.bootstrap_servers();
    let n = 40_000u64;
    produce_order_range(&brokers, topic, parts, n);
    let mut config = test_config(&brokers, topic, group, &db);
    // Slow enough that the faults land mid-stream.
    config.sink.writers = 1;
    config.sink.batch_size = 100;
    let sink = start_sink(config, RunOptions::default());
    assert!(wait_for(LIMIT, || count(&mut conn, &db, "orders") > 2000));
    let failures_before = sink.metrics.snapshot().commit_failures;

    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    let mut seen: Vec<Vec<i64>> = vec![committed(&brokers, group, topic, parts)];
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    cluster.broker_up(1).unwrap();
    let done = wait_for(LIMIT, || {
        let now = committed(&brokers, group, topic, parts);
        seen.push(now.clone());
        now == end_offsets(&brokers, topic, parts)
    });
    assert!(done, "offsets never reached the end after the faults");
    let summary = sink.stop();
    // The faults did reach the sink: some commits were refused (and retried).
    assert!(
        summary.counters.commit_failures > failures_before,
        "no commit failed: {:?}",
        summary.counters
    );

    for pair in seen.windows(2) {
        for p in 0..parts as usize {
            assert!(
                pair[1][p] >= pair[0][p],
                "partition {p} went back: {:?} -> {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    assert_eq!(table_rows(&mut conn, &db, "orders"), first_versions(n));
    drop_db(&mut conn, &db);
}

#[test]
fn dead_letters_can_go_to_a_kafka_topic_with_headers() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};

    let mut conn = mysql();
    let db = fresh_db(&mut conn, "dlqtopic");
    let (topic, group) = ("enriched_orders", "dlqtopic-group");
    let cluster = mock_cluster(topic, 1);
    cluster.create_topic("enriched_orders_dlq", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let long = format!(r#"{{"id":"too-long","order_id":"{}"}}"#, "L".repeat(300));
    produce_raw(
        &brokers,
        topic,
        vec![
            (0, Some(b"k0".to_vec()), Some(order(0, 0).0.into_bytes())),
            (0, Some(b"k1".to_vec()), Some(b"{not json".to_vec())),
            (0, Some(b"k2".to_vec()), Some(long.clone().into_bytes())),
            (0, Some(b"k3".to_vec()), Some(order(3, 0).0.into_bytes())),
        ],
    );
    let mut config = test_config(&brokers, topic, group, &db);
    config.dead_letter.mode = kafka_mysql_sink::config::DlqMode::Topic;
    // A topic cannot join a MySQL transaction: at-least-once only.
    config.sink.delivery = kafka_mysql_sink::config::Delivery::AtLeastOnce;
    let summary = start_sink(config, RunOptions::until_caught_up())
        .handle
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(summary.counters.dead_lettered, 2);
    assert_eq!(count(&mut conn, &db, "orders"), 2);

    let reader: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&["enriched_orders_dlq"]).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            let headers: Vec<(String, String)> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            got.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                headers,
            ));
        }
    }
    assert_eq!(got.len(), 2, "dead letters on the topic: {got:?}");
    // Different writers may publish them in either order.
    got.sort_by_key(|(_, _, h)| {
        h.iter()
            .find(|(k, _)| k == "dlq.source.offset")
            .map(|(_, v)| v.clone())
    });
    assert_eq!(got[0].0.as_deref(), Some(&b"k1"[..]));
    assert_eq!(got[0].1.as_deref(), Some(&b"{not json"[..]));
    assert_eq!(got[1].1.as_deref(), Some(long.as_bytes()));
    let header = |i: usize, k: &str| {
        got[i]
            .2
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header(0, "dlq.source.topic"), "enriched_orders");
    assert_eq!(header(0, "dlq.source.partition"), "0");
    assert_eq!(header(0, "dlq.source.offset"), "1");
    assert_eq!(header(1, "dlq.source.offset"), "2");
    assert!(
        header(1, "dlq.error").contains("Data too long"),
        "{:?}",
        got[1].2
    );
    drop_db(&mut conn, &db);
}
