//! End-to-end runs of the sink against MariaDB and the librdkafka mock cluster.

mod common;

use std::time::Duration;

use common::*;
use kafka_mysql_sink::pipeline::RunOptions;

const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn fifty_thousand_orders_over_eight_partitions_land_exactly() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "fifty");
    let (topic, group, parts) = ("enriched_orders", "sink-mysql-workers", 8);
    let cluster = mock_cluster(topic, parts);
    let brokers = cluster.bootstrap_servers();
    let n = 50_000u64;
    let mut expected = Vec::with_capacity(n as usize);
    produce(
        &brokers,
        topic,
        (0..n).map(|i| {
            let (payload, exp) = order(i, 0);
            expected.push(exp);
            (partition_of(i, parts), b"k".to_vec(), payload.into_bytes())
        }),
    );
    expected.sort();

    let sink = start_sink(
        test_config(&brokers, topic, group, &db),
        RunOptions::default(),
    );
    assert!(
        wait_caught_up(&brokers, group, topic, parts, LIMIT),
        "offsets never reached the end"
    );
    let summary = sink.stop();

    assert_eq!(table_rows(&mut conn, &db, "orders"), expected);
    assert_eq!(
        committed(&brokers, group, topic, parts),
        end_offsets(&brokers, topic, parts)
    );
    assert_eq!(summary.counters.rows_written, n);
    assert_eq!(summary.counters.skipped, 0);
    drop_db(&mut conn, &db);
}

#[test]
fn the_last_version_of_each_id_wins() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "versions");
    let (topic, group, parts) = ("enriched_orders", "versions-group", 4);
    let cluster = mock_cluster(topic, parts);
    let brokers = cluster.bootstrap_servers();
    let (ids, versions) = (2_000u64, 10u64);
    // Versions of an id share a partition (as they would with key
    // partitioning), in version order; ids interleave.
    produce(
        &brokers,
        topic,
        (0..versions).flat_map(|v| {
            (0..ids).map(move |i| {
                (
                    partition_of(i, parts),
                    b"k".to_vec(),
                    order(i, v).0.into_bytes(),
                )
            })
        }),
    );
    let mut config = test_config(&brokers, topic, group, &db);
    // Small batches so versions of one id land in different statements too.
    config.sink.batch_size = 97;
    let sink = start_sink(config, RunOptions::default());
    assert!(wait_caught_up(&brokers, group, topic, parts, LIMIT));
    sink.stop();

    let mut expected: Vec<Expected> = (0..ids).map(|i| order(i, versions - 1).1).collect();
    expected.sort();
    assert_eq!(table_rows(&mut conn, &db, "orders"), expected);
    drop_db(&mut conn, &db);
}

#[test]
fn invalid_messages_are_skipped_counted_and_do_not_block_commits() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "invalid");
    let (topic, group) = ("enriched_orders", "invalid-group");
    let cluster = mock_cluster(topic, 1);
    let brokers = cluster.bootstrap_servers();
    let bad: [&[u8]; 6] = [
        b"not json at all",
        br#"{"order_id":"ORD-no-id","quantity":1}"#,
        br#"{"id":"has-no-order-id"}"#,
        br#"{"id":"x","order_id":"y","quantity":"many"}"#,
        b"",
        br#"{"id":"trunc"#,
    ];
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut expected = Vec::new();
    for i in 0..300u64 {
        let (p, e) = order(i, 0);
        payloads.push(p.into_bytes());
        expected.push(e);
        if i % 50 == 0 {
            for b in bad {
                payloads.push(b.to_vec());
            }
        }
    }
    // The very last message is invalid: the commit must still reach the end.
    payloads.push(b"{{{".to_vec());
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    produce_payloads(&brokers, topic, 0, &refs);

    // The seed's behaviour: log, count, move on.
    let mut config = test_config(&brokers, topic, group, &db);
    config.dead_letter.mode = kafka_mysql_sink::config::DlqMode::Skip;
    let sink = start_sink(config, RunOptions::default());
    assert!(
        wait_caught_up(&brokers, group, topic, 1, LIMIT),
        "invalid messages blocked the commit"
    );
    let summary = sink.stop();
    expected.sort();
    assert_eq!(table_rows(&mut conn, &db, "orders"), expected);
    assert_eq!(summary.counters.skipped, 6 * 6 + 1);
    assert_eq!(summary.counters.dead_lettered, 0);
    let dlq_tables: u64 = mysql::prelude::Queryable::query_first(
        &mut conn,
        format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'orders_dlq'"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(dlq_tables, 0, "skip mode creates no dead-letter table");
    assert_eq!(
        committed(&brokers, group, topic, 1),
        vec![payloads.len() as i64]
    );
    drop_db(&mut conn, &db);
}

#[test]
fn until_caught_up_exits_by_itself_and_on_an_empty_topic() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "caughtup");
    let (topic, group, parts) = ("enriched_orders", "caughtup-group", 3);
    let cluster = mock_cluster(topic, parts);
    let brokers = cluster.bootstrap_servers();

    // Empty topic: returns on its own with nothing written.
    let options = RunOptions::until_caught_up();
    let sink = start_sink(test_config(&brokers, topic, group, &db), options.clone());
    let summary = sink.handle.join().unwrap().unwrap();
    assert_eq!(summary.counters.rows_written, 0);

    produce_order_range(&brokers, topic, parts, 3000);
    let sink = start_sink(test_config(&brokers, topic, group, &db), options);
    let summary = sink.handle.join().unwrap().unwrap();
    assert_eq!(summary.counters.rows_written, 3000);
    assert_eq!(count(&mut conn, &db, "orders"), 3000);
    assert_eq!(
        committed(&brokers, group, topic, parts),
        end_offsets(&brokers, topic, parts)
    );
    drop_db(&mut conn, &db);
}
