//! Shared test harness: a real MariaDB (started by scripts/mariadb-local.sh)
//! and librdkafka's in-process mock cluster.
#![allow(dead_code, unused_imports)]

mod orders;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_mysql_sink::config::Config;
use kafka_mysql_sink::metrics::Metrics;
use kafka_mysql_sink::pipeline::{self, RunOptions, SinkError, Summary};
use kafka_mysql_sink::shutdown::Shutdown;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
pub use orders::{order, order_id, Expected};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub fn mysql_port() -> u16 {
    std::env::var("KMS_MYSQL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3307)
}

pub fn mysql_opts() -> OptsBuilder {
    OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(mysql_port())
        .user(Some("root"))
        .pass(Some("root"))
        .prefer_socket(false)
}

/// A connection to the test server. A test that needs MariaDB fails when it
/// is unreachable, on a developer machine as under CI: a skipped test must
/// never count as a passed one.
pub fn mysql() -> Conn {
    Conn::new(Opts::from(mysql_opts())).unwrap_or_else(|e| {
        panic!(
            "this test needs MariaDB on 127.0.0.1:{port}, which is unreachable: {e}\n\
             start it with `make mysql-start` (or `scripts/mariadb-local.sh start`); \
             for another port, start it with KMS_MYSQL_PORT={port} and run the tests with \
             the same KMS_MYSQL_PORT",
            port = mysql_port()
        )
    })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique, empty database for one test.
pub fn fresh_db(conn: &mut Conn, tag: &str) -> String {
    let name = format!(
        "kms_{tag}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .unwrap();
    name
}

pub fn drop_db(conn: &mut Conn, name: &str) {
    let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"));
}

pub fn mock_cluster(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(topic, partitions, 1)
        .expect("create topic");
    cluster
}

/// Settings for a test run: the seed's shape, with short intervals so tests
/// finish quickly.
pub fn test_config(brokers: &str, topic: &str, group: &str, db: &str) -> Config {
    let mut c = Config::default();
    c.kafka.brokers = brokers.into();
    c.kafka.topic = topic.into();
    c.kafka.group_id = group.into();
    c.kafka.commit_interval = std::time::Duration::from_millis(200);
    // The mock coordinator waits a full session timeout before it lets a new
    // member into a group whose last member just left; keep that short.
    c.kafka
        .properties
        .insert("session.timeout.ms".into(), "6000".into());
    c.kafka
        .properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    c.mysql.host = "127.0.0.1".into();
    c.mysql.port = mysql_port();
    c.mysql.database = db.into();
    c.mysql.connect_retries = 2;
    c.mysql.connect_retry_delay = std::time::Duration::from_millis(200);
    c.sink.flush_interval = std::time::Duration::from_millis(50);
    c.sink.stats_interval = std::time::Duration::from_millis(2000);
    c.sink.retry_initial = std::time::Duration::from_millis(20);
    c.sink.retry_max = std::time::Duration::from_millis(500);
    c.validate().unwrap();
    c
}

/// Produces `(partition, key, payload)` records and waits until all are acked.
pub fn produce(
    brokers: &str,
    topic: &str,
    records: impl IntoIterator<Item = (i32, Vec<u8>, Vec<u8>)>,
) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    for (partition, key, payload) in records {
        let record = BaseRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&payload);
        orders::send(&producer, record).expect("produce");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// Produces a tombstone-free record with no key handling: raw payload bytes.
pub fn produce_payloads(brokers: &str, topic: &str, partition: i32, payloads: &[&[u8]]) {
    produce(
        brokers,
        topic,
        payloads
            .iter()
            .map(|p| (partition, b"k".to_vec(), p.to_vec())),
    );
}

fn offsets_consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offsets consumer")
}

/// The group's committed offset per partition (-1 where none).
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c = offsets_consumer(brokers, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Each partition's high watermark.
pub fn end_offsets(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c = offsets_consumer(brokers, "kms-watermarks");
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .collect()
}

/// A port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET: (status, body), or None while nothing listens.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The value of one sample line, e.g. `kafka_mysql_sink_rows_written_total`
/// or `kafka_mysql_sink_retries_total{class="transient"}`.
pub fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// One sample scraped from the `/metrics` endpoint on `port`; None while
/// nothing answers there or the sample is not exported (yet).
pub fn scrape(port: u16, name: &str) -> Option<f64> {
    let (status, body) = get(port, "/metrics")?;
    (status == 200).then(|| sample(&body, name)).flatten()
}

/// The environment that turns a sink process's metrics endpoint on, at a
/// free port: `(port, env)`.
pub fn metrics_env() -> (u16, (&'static str, String)) {
    let port = free_port();
    (port, ("METRICS_ADDR", format!("127.0.0.1:{port}")))
}

/// Polls `f` every 100 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

pub struct Running {
    pub shutdown: Shutdown,
    pub metrics: Arc<Metrics>,
    pub handle: JoinHandle<Result<Summary, SinkError>>,
}

impl Running {
    pub fn stop(self) -> Summary {
        self.shutdown.request();
        self.handle.join().expect("sink thread").expect("sink run")
    }
}

pub fn start_sink(config: Config, options: RunOptions) -> Running {
    let shutdown = Shutdown::new();
    let metrics = Arc::new(Metrics::default());
    let (s, m) = (shutdown.clone(), metrics.clone());
    let handle = std::thread::spawn(move || pipeline::run(&config, options, &s, m));
    Running {
        shutdown,
        metrics,
        handle,
    }
}

/// Waits until the group has committed every partition up to its end.
pub fn wait_caught_up(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    limit: Duration,
) -> bool {
    let end = end_offsets(brokers, topic, partitions);
    wait_for(limit, || {
        committed(brokers, group, topic, partitions) == end
    })
}

/// The table's rows, sorted by id, as the strings MySQL stores.
pub fn table_rows(conn: &mut Conn, db: &str, table: &str) -> Vec<Expected> {
    conn.query_map(
        format!(
            "SELECT id, order_id, quantity, CAST(unit_price AS CHAR), CAST(total_value AS CHAR), processed_at \
             FROM `{db}`.`{table}` ORDER BY id"
        ),
        |(id, order_id, quantity, unit_price, total_value, processed_at)| Expected {
            id,
            order_id,
            quantity,
            unit_price,
            total_value,
            processed_at,
        },
    )
    .expect("read table")
}

/// Rows in the table; 0 while the sink has not created it yet.
pub fn count(conn: &mut Conn, db: &str, table: &str) -> u64 {
    match conn.query_first(format!("SELECT COUNT(*) FROM `{db}`.`{table}`")) {
        Ok(n) => n.unwrap_or(0),
        Err(mysql::Error::MySqlError(e)) if e.code == 1146 || e.code == 1049 => 0,
        Err(e) => panic!("count: {e}"),
    }
}

/// Statements of the sink's writers that are waiting inside MySQL right now
/// (on a lock the test holds, say): upserts into database `db`.
pub fn waiting_inserts(conn: &mut Conn, db: &str) -> u64 {
    conn.query_first(format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE INFO LIKE 'INSERT INTO `{db}`.`orders` %'"
    ))
    .unwrap()
    .unwrap_or(0)
}

/// The partition a key lands in, the way the tests spread records.
pub fn partition_of(i: u64, partitions: i32) -> i32 {
    (i % partitions as u64) as i32
}

/// Records `(partition, key, payload)` where key and payload may be absent
/// (a tombstone has no payload).
pub type RawRecord = (i32, Option<Vec<u8>>, Option<Vec<u8>>);

pub fn produce_raw(brokers: &str, topic: &str, records: Vec<RawRecord>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    for (partition, key, payload) in &records {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(*partition);
        if let Some(k) = key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = payload {
            record = record.payload(p.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).expect("produce");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// The sink binary as a child process, with its log in a file.
pub struct SinkProcess {
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_kafka-mysql-sink");

/// Where a sink process reads and writes.
pub struct Target {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub db: String,
}

/// Starts the binary with the seed's environment variables pointing at the
/// test's brokers and database; `extra_env` may override any of them.
pub fn spawn_sink(
    target: &Target,
    config: &std::path::Path,
    log: std::path::PathBuf,
    args: &[&str],
    extra_env: &[(&str, String)],
) -> SinkProcess {
    let Target {
        brokers,
        topic,
        group,
        db,
    } = target;
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["run", "--config"])
        .arg(config)
        .args(args)
        .env("RUST_LOG", "info")
        .env("KAFKA_BROKERS", brokers)
        .env("SOURCE_TOPIC", topic)
        .env("SINK_GROUP_ID", group)
        .env("MYSQL_HOST", "127.0.0.1")
        .env("MYSQL_PORT", mysql_port().to_string())
        .env("MYSQL_USER", "root")
        .env("MYSQL_PASSWORD", "root")
        .env("MYSQL_DATABASE", db)
        .env("MYSQL_TABLE", "orders");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start the sink binary");
    SinkProcess { child, log }
}

impl SinkProcess {
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the sink did not exit within {limit:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory for one test.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kms-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every committed offset is durable: for each partition, every generated
/// order `i` (spread as `partition_of(i)`, offset `i / partitions`) below the
/// committed offset has its row.
pub fn assert_committed_is_durable(conn: &mut Conn, db: &str, committed: &[i64], n: u64) {
    let parts = committed.len() as i32;
    let present: std::collections::HashSet<String> = conn
        .query(format!("SELECT id FROM `{db}`.`orders`"))
        .unwrap()
        .into_iter()
        .collect();
    for i in 0..n {
        let (p, offset) = (partition_of(i, parts), (i / parts as u64) as i64);
        if offset < committed[p as usize] {
            assert!(
                present.contains(&order(i, 0).1.id),
                "offset {offset} of partition {p} is committed but its row is missing"
            );
        }
    }
}

/// Writes a sink config file into `dir`.
pub fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("sink.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// A mock cluster with `enriched_orders` over `parts` partitions, a fresh
/// database, and where a sink process should read and write them.
pub fn target(
    conn: &mut Conn,
    tag: &str,
    parts: i32,
) -> (MockCluster<'static, DefaultProducerContext>, Target) {
    let cluster = mock_cluster("enriched_orders", parts);
    let t = Target {
        brokers: cluster.bootstrap_servers(),
        topic: "enriched_orders".into(),
        group: format!("{tag}-group"),
        db: fresh_db(conn, tag),
    };
    (cluster, t)
}

/// Orders `0..n` in version 0, as rows, in the order `table_rows` returns.
pub fn first_versions(n: u64) -> Vec<Expected> {
    let mut want: Vec<Expected> = (0..n).map(|i| order(i, 0).1).collect();
    want.sort();
    want
}

/// The table holds exactly orders `0..n` (version 0) and the group has
/// committed every partition to its end: a backlog fully drained.
pub fn assert_drained(conn: &mut Conn, t: &Target, n: u64, parts: i32) {
    assert_eq!(table_rows(conn, &t.db, "orders"), first_versions(n));
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, parts),
        end_offsets(&t.brokers, &t.topic, parts)
    );
}

/// Produces generated orders `0..n` (version 0), order `i` to partition
/// `partition_of(i, parts)`.
pub fn produce_orders(t: &Target, parts: i32, n: u64) {
    produce_order_range(&t.brokers, &t.topic, parts, n);
}

/// Produces generated orders `from..to` (version 0), order `i` to partition
/// `partition_of(i, parts)`.
pub fn produce_order_range_from(brokers: &str, topic: &str, parts: i32, from: u64, to: u64) {
    produce(
        brokers,
        topic,
        (from..to).map(|i| {
            (
                partition_of(i, parts),
                b"k".to_vec(),
                order(i, 0).0.into_bytes(),
            )
        }),
    );
}

/// Produces orders `from..` (version 0, spread as [`partition_of`]) a few
/// at a time, about 4,000 a second, until `stop` is set; returns where it
/// stopped.
pub fn produce_orders_until(
    brokers: &str,
    topic: &str,
    parts: i32,
    from: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let mut next = from;
    while !stop.load(Ordering::Relaxed) {
        for i in next..next + 20 {
            let payload = order(i, 0).0;
            let record = BaseRecord::to(topic)
                .partition(partition_of(i, parts))
                .key("k")
                .payload(&payload);
            orders::send(&producer, record).expect("produce");
        }
        next += 20;
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    next
}

pub fn produce_order_range(brokers: &str, topic: &str, parts: i32, n: u64) {
    produce(
        brokers,
        topic,
        (0..n).map(|i| {
            (
                partition_of(i, parts),
                b"k".to_vec(),
                order(i, 0).0.into_bytes(),
            )
        }),
    );
}
