//! `make demo`: the whole pipeline on one machine, no Docker needed.
//!
//! Starts librdkafka's in-process mock cluster, fills `enriched_orders` with
//! generated orders, runs the sink (settings from config/sink.toml and the
//! environment, pointed at the mock cluster and the local MariaDB of
//! scripts/mariadb-local.sh) until it has caught up, then prints a summary and
//! sample rows from the table.
//!
//! Environment: DEMO_ORDERS (default 200000), DEMO_PARTITIONS (default 8, more
//! for large volumes), and
//! the sink's usual variables (MYSQL_HOST, MYSQL_PORT, ... SINK_BATCH_SIZE).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use kafka_mysql_sink::config::Config;
use kafka_mysql_sink::metrics::Metrics;
use kafka_mysql_sink::pipeline::{self, RunOptions};
use kafka_mysql_sink::shutdown::Shutdown;
use mysql::prelude::Queryable;
use rdkafka::mocking::MockCluster;

#[path = "../tests/common/orders.rs"]
mod orders;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let bars = kafka_mysql_sink::progress::init_logging(false);
    match demo(&bars) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(bars: &indicatif::MultiProgress) -> Result<(), Box<dyn std::error::Error>> {
    let orders = env_num("DEMO_ORDERS", 200_000);
    // The mock cluster keeps only ~5 MB per partition and silently drops
    // older data past that, so spread larger volumes over more partitions.
    let partitions = env_num("DEMO_PARTITIONS", 8).max(orders.div_ceil(10_000)) as i32;

    // The local MariaDB unless the environment names another server.
    let env = |name: &str| match name {
        "MYSQL_HOST" => std::env::var(name).ok().or(Some("127.0.0.1".into())),
        "MYSQL_PORT" => std::env::var(name).ok().or(Some("3307".into())),
        "MYSQL_DATABASE" => std::env::var(name).ok().or(Some("kms_demo".into())),
        _ => std::env::var(name).ok(),
    };
    let mut config = Config::load(Some(Path::new("config/sink.toml")), &env)?;

    let cluster = MockCluster::new(1)?;
    cluster.create_topic(&config.kafka.topic, partitions, 1)?;
    config.kafka.brokers = cluster.bootstrap_servers();
    // The mock coordinator is slow to re-admit a group otherwise.
    config
        .kafka
        .properties
        .insert("session.timeout.ms".into(), "6000".into());

    println!(
        "demo: producing {orders} orders into mock topic {} ({partitions} partitions)",
        config.kafka.topic
    );
    let t = Instant::now();
    orders::produce_orders(
        &config.kafka.brokers,
        &config.kafka.topic,
        orders,
        partitions,
    )?;
    println!("demo: produced in {:.1}s", t.elapsed().as_secs_f64());

    // Fresh tables each time, so the summary reflects this run. The mock
    // cluster is new too: offsets kept from an earlier run belong to
    // another log, which the sink refuses (kafka.on_out_of_range), so they
    // go with the table.
    let mut conn = mysql::Conn::new(mysql::Opts::from(kafka_mysql_sink::internals::opts(
        &config.mysql,
    )))?;
    let db = &config.mysql.database;
    let table = kafka_mysql_sink::internals::qualified(db, &config.mysql.table);
    let mut ours = vec![config.mysql.table.clone(), config.offsets_table()];
    ours.extend(config.dlq_table());
    for t in &ours {
        let t = kafka_mysql_sink::internals::qualified(db, t);
        conn.query_drop(format!("DROP TABLE IF EXISTS {t}"))?;
    }

    let metrics = Arc::new(Metrics::default());
    let shutdown = Shutdown::new();
    shutdown.install_signal_handlers()?;
    let options = RunOptions {
        until_caught_up: true,
        progress: kafka_mysql_sink::progress::bar_if_terminal(bars),
    };
    let summary = pipeline::run(&config, options, &shutdown, metrics)?;
    let c = summary.counters;

    let (rows, revenue): (u64, String) = conn
        .query_first(format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(total_value), 0) AS CHAR) FROM {table}"
        ))?
        .unwrap_or_default();
    println!();
    println!("== summary ==");
    println!("messages consumed : {}", c.consumed);
    println!("rows written      : {}", c.rows_written);
    println!("skipped           : {}", c.skipped);
    println!("batches           : {}", c.batches);
    println!(
        "time              : {:.1}s in all, {:.1}s moving rows ({:.0} rows/s)",
        summary.elapsed.as_secs_f64(),
        summary.active.as_secs_f64(),
        summary.rows_per_sec()
    );
    println!("rows in {table} : {rows} (total revenue {revenue})");
    println!();
    println!("== sample rows ==");
    let sample: Vec<(String, String, i64, String, String, Option<i64>)> = conn.query(format!(
        "SELECT id, order_id, quantity, CAST(unit_price AS CHAR), CAST(total_value AS CHAR), processed_at \
         FROM {table} ORDER BY id LIMIT 5"
    ))?;
    println!(
        "{:<36}  {:<14} {:>3} {:>10} {:>10}  processed_at",
        "id", "order_id", "qty", "unit_price", "total"
    );
    for (id, order_id, q, price, total, at) in sample {
        println!(
            "{id:<36}  {order_id:<14} {q:>3} {price:>10} {total:>10}  {}",
            at.map_or("NULL".into(), |a| a.to_string())
        );
    }
    if rows != orders {
        return Err(format!("expected {orders} rows, found {rows}").into());
    }
    Ok(())
}
