//! The table's DDL and the writer's SQL against a real MariaDB.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kafka_mysql_sink::internals as db;
use kafka_mysql_sink::internals::{
    qualified, BatchSink, DbError, Dialect, DlqTarget, Envelope, MysqlSink, Num, Op, Row,
    UpsertBuilder, Writer, WriterSettings,
};
use kafka_mysql_sink::metrics::Metrics;
use kafka_mysql_sink::shutdown::Shutdown;
use mysql::prelude::Queryable;
use mysql::Conn;

/// The seed's DDL, verbatim from its README.
const SEED_DDL: &str = "CREATE TABLE IF NOT EXISTS `orders` (
    `id` VARCHAR(36) PRIMARY KEY,
    `order_id` VARCHAR(255) NOT NULL,
    `quantity` INT NOT NULL DEFAULT 1,
    `unit_price` DECIMAL(10, 2) NOT NULL DEFAULT 0.00,
    `total_value` DECIMAL(10, 2) NOT NULL DEFAULT 0.00,
    `processed_at` BIGINT,
    `created_at` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    `updated_at` TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    INDEX `idx_order_id` (`order_id`),
    INDEX `idx_processed_at` (`processed_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;";

fn show_create(conn: &mut Conn, db: &str, table: &str) -> String {
    let (_, ddl): (String, String) = conn
        .query_first(format!("SHOW CREATE TABLE `{db}`.`{table}`"))
        .unwrap()
        .unwrap();
    ddl
}

#[test]
fn table_is_created_with_the_seeds_ddl() {
    let mut conn = mysql();
    let sink_db = fresh_db(&mut conn, "ddl_sink");
    let seed_db = fresh_db(&mut conn, "ddl_seed");
    // The sink creates its database too when it is missing.
    db::ensure_table(&mut conn, &sink_db, "orders").unwrap();
    conn.query_drop(format!("CREATE DATABASE `{seed_db}`"))
        .unwrap();
    conn.query_drop(format!("USE `{seed_db}`")).unwrap();
    conn.query_drop(SEED_DDL).unwrap();

    let ours = show_create(&mut conn, &sink_db, "orders");
    let seed = show_create(&mut conn, &seed_db, "orders");
    assert_eq!(ours, seed);
    for part in [
        "`id` varchar(36) NOT NULL",
        "`unit_price` decimal(10,2) NOT NULL DEFAULT 0.00",
        "PRIMARY KEY (`id`)",
        "KEY `idx_order_id` (`order_id`)",
        "KEY `idx_processed_at` (`processed_at`)",
        "ENGINE=InnoDB",
        "COLLATE=utf8mb4_unicode_ci",
    ] {
        assert!(ours.contains(part), "missing {part:?} in {ours}");
    }
    let collations: Vec<(String, Option<String>)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'orders' AND DATA_TYPE = 'varchar'",
            (&sink_db,),
        )
        .unwrap();
    assert_eq!(collations.len(), 2);
    assert!(collations
        .iter()
        .all(|(_, c)| c.as_deref() == Some("utf8mb4_unicode_ci")));
    // Idempotent: a second start leaves the table alone.
    db::ensure_table(&mut conn, &sink_db, "orders").unwrap();
    assert_eq!(show_create(&mut conn, &sink_db, "orders"), seed);
    drop_db(&mut conn, &sink_db);
    drop_db(&mut conn, &seed_db);
}

#[test]
fn an_existing_table_without_our_columns_is_refused() {
    let mut conn = mysql();
    let db_name = fresh_db(&mut conn, "ddl_missing");
    conn.query_drop(format!("CREATE DATABASE `{db_name}`"))
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE `{db_name}`.`orders` (id VARCHAR(36) PRIMARY KEY, order_id VARCHAR(255))"
    ))
    .unwrap();
    let err = db::ensure_table(&mut conn, &db_name, "orders").unwrap_err();
    match &err {
        DbError::MissingColumns { missing, .. } => assert_eq!(
            missing,
            &["quantity", "unit_price", "total_value", "processed_at"]
        ),
        other => panic!("expected MissingColumns, got {other:?}"),
    }
    assert!(err.to_string().contains("quantity"));
    drop_db(&mut conn, &db_name);
}

fn pool_with_sql_mode(mode: &str) -> db::Pool {
    sized_pool(mode, 2)
}

fn sized_pool(mode: &str, size: u32) -> db::Pool {
    let opts = mysql_opts().init(vec![
        "SET NAMES utf8mb4".to_string(),
        format!("SET SESSION sql_mode = '{mode}'"),
    ]);
    db::pool_from(opts, size, Duration::from_secs(3))
}

#[test]
fn a_writer_keeps_its_connection_and_renews_an_idle_one_in_a_pool_of_one() {
    let mut conn = mysql();
    let db_name = fresh_db(&mut conn, "keepconn");
    db::ensure_table(&mut conn, &db_name, "orders").unwrap();
    let pool = sized_pool("STRICT_TRANS_TABLES", 1);
    let mut sink = MysqlSink::new(
        pool.clone(),
        UpsertBuilder::new(&db_name, "orders", Dialect::ValuesFunction),
        qualified(&db_name, "orders"),
        1 << 20,
        DlqTarget::Skip,
    )
    .with_idle_limit(Duration::from_millis(50));
    let batch = |from: u64| -> Vec<Envelope> {
        (from..from + 10)
            .map(|i| Envelope::upsert(0, i as i64, row(&format!("k{i}"), "o")))
            .collect()
    };
    sink.write(&batch(0)).unwrap();
    // Kept between batches: the pool's only connection is checked out.
    assert_eq!(pool.state().idle_connections, 0);
    sink.write(&batch(10)).unwrap();
    // Idle past the limit: handed back before a new one is taken, or the
    // pool of one would time out.
    std::thread::sleep(Duration::from_millis(100));
    sink.write(&batch(20)).unwrap();
    assert_eq!(count(&mut conn, &db_name, "orders"), 30);
    drop_db(&mut conn, &db_name);
}

fn row(id: &str, order_id: &str) -> Row {
    Row::new(
        id,
        order_id,
        Num::Int(3),
        Num::Float(0.1),
        Num::Float(0.3),
        None,
    )
}

const NASTY: &[&str] = &[
    "O'Reilly",
    "back\\slash",
    "\\'",
    "'",
    "\\",
    "''",
    "nul\0byte",
    "ctrl-z\u{1a}",
    "emoji 😀🎉",
    "'; DROP TABLE orders; --",
    "\" OR \"1\"=\"1",
    "new\nline\r\ttab",
    "%_like\\%",
    "日本語テキスト",
    "\\x27 \\0 \\n",
    "`backtick`",
    "_utf8mb4 X'41'",
];

#[test]
fn strings_round_trip_byte_for_byte_under_any_sql_mode() {
    let mut conn = mysql();
    for (i, mode) in [
        "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
        "",
        "NO_BACKSLASH_ESCAPES",
        "ANSI_QUOTES,NO_BACKSLASH_ESCAPES,STRICT_ALL_TABLES",
        "ANSI",
    ]
    .into_iter()
    .enumerate()
    {
        let db_name = fresh_db(&mut conn, "escape");
        db::ensure_table(&mut conn, &db_name, "orders").unwrap();
        let mut sink = MysqlSink::new(
            pool_with_sql_mode(mode),
            UpsertBuilder::new(&db_name, "orders", Dialect::ValuesFunction),
            qualified(&db_name, "orders"),
            1 << 20,
            DlqTarget::Skip,
        );
        let rows: Vec<Envelope> = NASTY
            .iter()
            .enumerate()
            .map(|(n, s)| {
                // ids are at most 36 characters: keep a prefix of the string
                let id = format!("{n:02}{}", s.chars().take(20).collect::<String>());
                Envelope::upsert(0, n as i64, row(&id, s))
            })
            .collect();
        sink.write(&rows)
            .unwrap_or_else(|e| panic!("sql_mode {mode:?}: {e}"));
        // Written twice: the upsert path must accept the same literals.
        sink.write(&rows).unwrap();

        let got: Vec<(Vec<u8>, Vec<u8>)> = conn
            .exec(
                format!("SELECT id, order_id FROM `{db_name}`.`orders` ORDER BY id"),
                (),
            )
            .unwrap();
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = rows
            .iter()
            .map(|e| match &e.op {
                Op::Upsert(r) => (r.id().as_bytes().to_vec(), r.order_id().as_bytes().to_vec()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        want.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want, "sql_mode {mode:?} (case {i})");
        drop_db(&mut conn, &db_name);
    }
}

#[test]
fn decimals_are_exact_and_batches_split_under_a_small_packet_budget() {
    let mut conn = mysql();
    let db_name = fresh_db(&mut conn, "split");
    db::ensure_table(&mut conn, &db_name, "orders").unwrap();
    let info = db::server_info(&mut conn).unwrap();
    assert!(info.statement_budget() < info.max_allowed_packet);

    let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
    let (tx, rx) = kafka_mysql_sink::internals::inbox(5000);
    let metrics = Arc::new(Metrics::default());
    let writer = Writer::new(
        0,
        rx,
        ack_tx,
        // 4 KiB statements: a 2,000-row batch needs dozens of them.
        MysqlSink::new(
            pool_with_sql_mode("STRICT_TRANS_TABLES"),
            UpsertBuilder::new(&db_name, "orders", info.dialect),
            qualified(&db_name, "orders"),
            4096,
            DlqTarget::Skip,
        ),
        WriterSettings {
            table: "orders".into(),
            batch_size: 2000,
            flush_interval: Duration::from_secs(600),
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
            shutdown_timeout: Duration::from_secs(5),
        },
        Shutdown::new(),
        metrics.clone(),
    );
    let h = std::thread::spawn(move || writer.run());
    // JSON text as it arrives, and what a DECIMAL(10,2) must hold. The text
    // reaches MySQL as it is: 0.12499999999999999999 is 0.12, though the
    // nearest double (0.125) would round to 0.13.
    let prices = [
        ("49.99", "49.99"),
        ("0.1", "0.10"),
        ("0.125", "0.13"),
        ("99999999.99", "99999999.99"),
        ("7", "7.00"),
        ("1e-7", "0.00"),
        ("0.12499999999999999999", "0.12"),
        ("-1.5E+1", "-15.00"),
    ];
    let mut decoder = kafka_mysql_sink::internals::Decoder::new();
    for i in 0..2000 {
        let json = format!(
            r#"{{"id":"id-{i:05}","order_id":"ORD-{i}","quantity":3,"unit_price":{},"total_value":0.3}}"#,
            prices[i % prices.len()].0
        );
        let r = decoder.decode(json.as_bytes()).unwrap();
        tx.send(vec![Envelope::upsert(0, i as i64, r)]).unwrap();
    }
    drop(tx);
    h.join().unwrap();
    let acked: usize = ack_rx.try_iter().map(|a| a.len()).sum();
    assert_eq!(acked, 2000);
    assert_eq!(metrics.snapshot().rows_written, 2000);
    let got: Vec<(String, String)> = conn
        .query(format!(
            "SELECT id, CAST(unit_price AS CHAR) FROM `{db_name}`.`orders` ORDER BY id"
        ))
        .unwrap();
    assert_eq!(got.len(), 2000);
    for (i, (id, price)) in got.iter().enumerate() {
        assert_eq!(id, &format!("id-{i:05}"));
        assert_eq!(price, prices[i % prices.len()].1, "row {id}");
    }
    drop_db(&mut conn, &db_name);
}
