//! `make bench-e2e`: the sink end to end against what MySQL can take.
//!
//! 1. Starts librdkafka's mock cluster (in this process) with enough
//!    partitions for the volume and produces N generated orders.
//! 2. Ceiling: the same rows, decoded beforehand, written by the sink's own
//!    writer code (router, writers, multi-row upserts, same settings) into a
//!    fresh table, with no Kafka in the path.
//! 3. The sink binary, as a separate process (so its CPU and memory are its
//!    own), drains the topic into another fresh table with --until-caught-up.
//!
//! Both tables are checked for exactness. Steps 2 and 3 are repeated
//! BENCH_ROUNDS times (default 5), in alternating order, each sink run
//! compared with the ceiling of its own round, and each run starts on a
//! settled server (see `settle`); printed are the medians over the rounds of
//! rows/s of each, their ratio, the sink's CPU seconds per million rows (and
//! the kernel's part of them), its peak RSS, and how much of their time the
//! writers spent waiting for rows on either side (if the sink's writers wait
//! much more than the ceiling's, what feeds them is the limit, not MySQL).
//!
//! It then says which of the throughput targets the medians meet (end to
//! end ≥ 85 % of the ceiling, CPU ≤ 2 s per million rows, peak RSS ≤ 100 MB);
//! with BENCH_STRICT=1 a missed target fails the run.
//!
//! Environment: BENCH_ORDERS (default 1000000), BENCH_ROUNDS (default 5),
//! BENCH_CONFIG (default config/sink.toml), BENCH_STRICT, plus the sink's
//! usual variables (SINK_WRITERS...).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_mysql_sink::config::Config;
use kafka_mysql_sink::db;
use kafka_mysql_sink::decode::Decoder;
use kafka_mysql_sink::dlq::DlqTarget;
use kafka_mysql_sink::gen;
use kafka_mysql_sink::internals::KeyCollation;
use kafka_mysql_sink::metrics::Metrics;
use kafka_mysql_sink::pipeline::{self, WriterTarget};
use kafka_mysql_sink::route::{RouteError, Router};
use kafka_mysql_sink::shutdown::Shutdown;
use kafka_mysql_sink::sql::qualified;
use kafka_mysql_sink::write::Envelope;
use mysql::prelude::Queryable;
use rdkafka::mocking::MockCluster;

type BoxError = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-e2e failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> Result<(), BoxError> {
    let n: u64 = std::env::var("BENCH_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: u32 = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        // Single rounds on the shared development machine ranged from 76 % to
        // 117 % of the ceiling within one run; five make the median steadier.
        .unwrap_or(5);
    let config_path =
        PathBuf::from(std::env::var("BENCH_CONFIG").unwrap_or("config/sink.toml".into()));
    let env = |name: &str| match name {
        "MYSQL_HOST" => std::env::var(name).ok().or(Some("127.0.0.1".into())),
        "MYSQL_PORT" => std::env::var(name).ok().or(Some("3307".into())),
        "MYSQL_DATABASE" => std::env::var(name).ok().or(Some("kms_bench".into())),
        _ => std::env::var(name).ok(),
    };
    let config = Config::load(Some(&config_path), &env)?;
    // ~200 bytes a message; the mock keeps about 5 MB per partition.
    let partitions = 8.max(n.div_ceil(20_000)) as i32;

    let cluster = MockCluster::new(1)?;
    cluster.create_topic(&config.kafka.topic, partitions, 1)?;
    let brokers = cluster.bootstrap_servers();
    eprintln!("producing {n} orders over {partitions} partitions ...");
    let t = Instant::now();
    gen::produce_orders(&brokers, &config.kafka.topic, n, partitions)?;
    eprintln!("produced in {:.1}s", t.elapsed().as_secs_f64());

    let m = &config.mysql;
    let mut conn = mysql::Conn::new(mysql::Opts::from(db::opts(m)))?;
    let info = db::server_info(&mut conn)?;
    let bench = Bench {
        config: &config,
        config_path: &config_path,
        bin: sink_binary()?,
        brokers: &brokers,
        info: &info,
        n,
        partitions,
    };
    let mut rounds_out = Vec::new();
    for round in 1..=rounds {
        let r = bench.round(&mut conn, round)?;
        eprintln!(
            "round {round}/{rounds}: ceiling {:.0} rows/s, sink {:.0} rows/s ({:.1} %), {:.2} s CPU per million rows ({:.2} s in the kernel, {:.0} page faults), {:.1} MiB peak RSS",
            r.ceiling,
            r.sink,
            100.0 * r.sink / r.ceiling,
            r.cpu_per_million,
            r.system_per_million,
            r.faults_per_million,
            r.peak_mib
        );
        eprintln!(
            "round {round}/{rounds}: writers waited for rows {:.1} % of their time (ceiling), {:.1} % (sink)",
            100.0 * r.ceiling_waiting,
            100.0 * r.sink_waiting
        );
        rounds_out.push(r);
    }

    let med = |f: &dyn Fn(&Round) -> f64| median(rounds_out.iter().map(f).collect());
    println!();
    println!(
        "== bench-e2e: {n} orders, {partitions} partitions, MySQL {}, {rounds} round(s), medians ==",
        info.version
    );
    println!(
        "settings: batch_size={} flush_interval_ms={} writers={} pool_size={} channel_capacity={}",
        config.sink.batch_size,
        config.sink.flush_interval_ms,
        config.sink.writers,
        config.mysql.pool_size,
        config.sink.channel_capacity
    );
    // Each round's sink is compared with the ceiling of the same round, so
    // load that comes and goes on a shared machine hits both alike.
    let lines: [(&str, f64, &str, usize); 9] = [
        (
            "ceiling (sink writers, no Kafka)",
            med(&|r| r.ceiling),
            "rows/s",
            0,
        ),
        ("sink end to end", med(&|r| r.sink), "rows/s", 0),
        (
            "ratio (median of rounds)",
            med(&|r| 100.0 * r.sink / r.ceiling),
            "%",
            1,
        ),
        (
            "sink CPU per million rows",
            med(&|r| r.cpu_per_million),
            "s",
            2,
        ),
        (
            "  of which in the kernel",
            med(&|r| r.system_per_million),
            "s",
            2,
        ),
        (
            "  page faults per million rows",
            med(&|r| r.faults_per_million),
            "",
            0,
        ),
        ("sink peak RSS", med(&|r| r.peak_mib), "MiB", 1),
        (
            "writers waiting for rows, ceiling",
            med(&|r| 100.0 * r.ceiling_waiting),
            "%",
            1,
        ),
        (
            "writers waiting for rows, sink",
            med(&|r| 100.0 * r.sink_waiting),
            "%",
            1,
        ),
    ];
    for (label, value, unit, decimals) in lines {
        println!("{label:<34}: {value:>10.decimals$} {unit}");
    }
    println!("tables exact in every round: {n} rows, values verified");
    // The targets of the throughput issue, checked on the medians. With
    // BENCH_STRICT=1 a miss fails the run (for a machine quiet enough to
    // hold a benchmark to them).
    let targets = [
        (
            "end to end at least 85 % of the ceiling",
            med(&|r| 100.0 * r.sink / r.ceiling) >= 85.0,
        ),
        (
            "sink CPU at most 2 s per million rows",
            med(&|r| r.cpu_per_million) <= 2.0,
        ),
        (
            "sink peak RSS at most 100 MB",
            med(&|r| r.peak_mib) * 1_048_576.0 <= 100e6,
        ),
    ];
    let mut missed = 0;
    for (target, met) in targets {
        println!("target: {target}: {}", if met { "met" } else { "MISSED" });
        missed += usize::from(!met);
    }
    if missed > 0 && std::env::var("BENCH_STRICT").is_ok_and(|v| v == "1") {
        return Err(format!("{missed} target(s) missed (BENCH_STRICT=1)").into());
    }
    Ok(())
}

struct Round {
    ceiling: f64,
    ceiling_waiting: f64,
    sink: f64,
    sink_waiting: f64,
    cpu_per_million: f64,
    system_per_million: f64,
    faults_per_million: f64,
    peak_mib: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// What every round shares.
struct Bench<'a> {
    config: &'a Config,
    config_path: &'a Path,
    bin: PathBuf,
    brokers: &'a str,
    info: &'a db::ServerInfo,
    n: u64,
    partitions: i32,
}

/// What one run of the sink binary measured.
struct SinkRun {
    rows_per_sec: f64,
    writers_waiting: f64,
    cpu_per_million: f64,
    system_per_million: f64,
    faults_per_million: f64,
    peak_mib: f64,
}

impl Bench<'_> {
    /// One ceiling and one sink run, each into a fresh table and checked.
    fn round(&self, conn: &mut mysql::Conn, round: u32) -> Result<Round, BoxError> {
        let db_name = &self.config.mysql.database;
        let (ceiling_table, sink_table) = ("orders_ceiling", "orders_sink");
        for t in [ceiling_table, sink_table] {
            conn.query_drop(format!("DROP TABLE IF EXISTS {}", qualified(db_name, t)))?;
            db::ensure_table(conn, db_name, t)?;
        }
        // Odd rounds measure the ceiling first, even rounds the sink: whichever
        // runs second finds the server busier (the first table's pages to flush
        // and evict), so alternating keeps that from favouring either side.
        let (ceiling, sink) = if round % 2 == 1 {
            let ceiling = self.ceiling(conn, round, ceiling_table)?;
            (ceiling, self.sink(conn, round, sink_table)?)
        } else {
            let sink = self.sink(conn, round, sink_table)?;
            (self.ceiling(conn, round, ceiling_table)?, sink)
        };
        same_rows(conn, db_name, ceiling_table, sink_table, self.n)?;
        Ok(Round {
            ceiling: ceiling.rows_per_sec,
            ceiling_waiting: ceiling.writers_waiting,
            sink: sink.rows_per_sec,
            sink_waiting: sink.writers_waiting,
            cpu_per_million: sink.cpu_per_million,
            system_per_million: sink.system_per_million,
            faults_per_million: sink.faults_per_million,
            peak_mib: sink.peak_mib,
        })
    }

    /// The ceiling: the sink's writers, fed from memory; rows/s.
    fn ceiling(&self, conn: &mut mysql::Conn, round: u32, table: &str) -> Result<Pace, BoxError> {
        let (n, parts) = (self.n, self.partitions as u64);
        let mut decoder = Decoder::new();
        let rows: Vec<Envelope> = (0..n)
            .map(|i| {
                let row = decoder.decode(gen::order(i, 0).0.as_bytes())?;
                Ok(Envelope::upsert(
                    (i % parts) as i32,
                    (i / parts) as i64,
                    row,
                ))
            })
            .collect::<Result<_, kafka_mysql_sink::decode::DecodeError>>()?;
        settle(conn)?;
        eprintln!("round {round}: ceiling: writing {n} rows with the sink's writers ...");
        let ceiling = write_direct(self.config, self.info, table, rows)?;
        verify(conn, &self.config.mysql.database, table, n)?;
        Ok(ceiling)
    }

    /// The sink binary, end to end, as a new consumer group each round.
    fn sink(&self, conn: &mut mysql::Conn, round: u32, table: &str) -> Result<SinkRun, BoxError> {
        let (m, n) = (&self.config.mysql, self.n);
        settle(conn)?;
        eprintln!("round {round}: sink: draining the topic ...");
        let log_path = std::env::temp_dir().join("kms-bench-e2e-sink.log");
        let log = std::fs::File::create(&log_path)?;
        // BENCH_SINK_WRAPPER runs the sink under a profiler, e.g.
        // "perf record -e cpu-clock -g -o /tmp/perf.data --".
        let wrapper = std::env::var("BENCH_SINK_WRAPPER").unwrap_or_default();
        let mut words: Vec<String> = wrapper.split_whitespace().map(String::from).collect();
        words.push(self.bin.display().to_string());
        let status = Command::new(&words[0])
            .args(&words[1..])
            .args(["run", "--until-caught-up", "--config"])
            .arg(self.config_path)
            .env("KAFKA_BROKERS", self.brokers)
            .env(
                "SINK_GROUP_ID",
                format!("{}-bench-{round}", self.config.kafka.group_id),
            )
            .env("MYSQL_HOST", &m.host)
            .env("MYSQL_PORT", m.port.to_string())
            .env("MYSQL_DATABASE", &m.database)
            .env("MYSQL_TABLE", table)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        let text = std::fs::read_to_string(&log_path)?;
        if !status.success() {
            return Err(
                format!("the sink failed ({status}); log in {}", log_path.display()).into(),
            );
        }
        let active = field(&text, "active_seconds=")
            .ok_or_else(|| format!("no summary line in {}", log_path.display()))?;
        verify(conn, &m.database, table, n)?;
        let writers = self.config.sink.writers as f64;
        let of = |key: &str| field(&text, key).unwrap_or(f64::NAN);
        let per_million = |key: &str| of(key) / n as f64 * 1e6;
        Ok(SinkRun {
            rows_per_sec: n as f64 / active,
            writers_waiting: of("writer_idle_seconds=") / (active * writers),
            cpu_per_million: per_million("cpu_seconds="),
            system_per_million: per_million("system_seconds="),
            faults_per_million: per_million("page_faults="),
            peak_mib: of("peak_rss_mib="),
        })
    }
}

/// How fast rows went, and the share of the writers' time spent waiting for
/// rows (high when what feeds them, not MySQL, is the limit).
struct Pace {
    rows_per_sec: f64,
    writers_waiting: f64,
}

/// Writes `rows` through the sink's router and writers; rows/s from the
/// first row handed over to the last acknowledgement.
fn write_direct(
    config: &Config,
    info: &db::ServerInfo,
    table: &str,
    rows: Vec<Envelope>,
) -> Result<Pace, BoxError> {
    let pool = db::pool(&config.mysql);
    let metrics = Arc::new(Metrics::default());
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
    let (mut router, writers) = pipeline::spawn_writers(
        config,
        &WriterTarget {
            pool: &pool,
            info,
            table,
            dlq: &DlqTarget::Skip,
            collation: &KeyCollation::binary(),
        },
        ack_tx,
        &Shutdown::new(),
        &metrics,
    )?;
    let n = rows.len();
    let start = Instant::now();
    // Handed over as the consumer does: staged per writer, sent as chunks,
    // the rest of every chunk after each 256 rows.
    let send = |router: &mut Router, w: usize| loop {
        match router.send(w, Duration::from_secs(1)) {
            Ok(()) => return Ok(()),
            Err(RouteError::Full) => {}
            Err(RouteError::WriterGone(w)) => return Err(format!("writer {w} died")),
        }
    };
    for (i, env) in rows.into_iter().enumerate() {
        if let Some(w) = router.stage(env) {
            send(&mut router, w)?;
        }
        if i % 256 == 255 {
            while let Some(w) = router.next_staged() {
                send(&mut router, w)?;
            }
        }
    }
    while let Some(w) = router.next_staged() {
        send(&mut router, w)?;
    }
    drop(router);
    let acked: usize = ack_rx.iter().map(|a| a.len()).sum();
    let elapsed = start.elapsed();
    writers.join();
    if acked != n {
        return Err(format!("ceiling: {acked} of {n} rows acknowledged").into());
    }
    Ok(Pace {
        rows_per_sec: n as f64 / elapsed.as_secs_f64(),
        writers_waiting: metrics.writer_idle_seconds.get()
            / (elapsed.as_secs_f64() * config.sink.writers as f64),
    })
}

/// Waits until InnoDB has written out every dirty page, so that a measured
/// run does not pay for the one before it.
///
/// Left alone, InnoDB writes out the pages a run dirtied over the following
/// minutes, during whatever runs next (thousands of dirty pages were still
/// waiting minutes after a run), so each run's figure depended on what ran
/// before it. Flushing is hurried by setting the dirty-page target to zero
/// and raising the I/O budget for the wait, then the server's own settings
/// are put back (also when the wait fails).
fn settle(conn: &mut mysql::Conn) -> Result<(), BoxError> {
    let t = Instant::now();
    let saved: Option<(f64, u64, u64)> = conn.query_first(
        "SELECT @@GLOBAL.innodb_max_dirty_pages_pct, @@GLOBAL.innodb_io_capacity, \
         @@GLOBAL.innodb_io_capacity_max",
    )?;
    let Some((pct, io, io_max)) = saved else {
        return Err("cannot read InnoDB's flushing settings".into());
    };
    // The maximum first: the capacity may not exceed it.
    conn.query_drop(
        "SET GLOBAL innodb_io_capacity_max = 100000, GLOBAL innodb_io_capacity = 50000, \
         GLOBAL innodb_max_dirty_pages_pct = 0",
    )?;
    let dirty = |conn: &mut mysql::Conn| -> Result<u64, BoxError> {
        let row: Option<(String, u64)> =
            conn.query_first("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")?;
        Ok(row.map_or(0, |(_, v)| v))
    };
    let wait = |conn: &mut mysql::Conn| -> Result<u64, BoxError> {
        let mut left = dirty(conn)?;
        while left > 0 && t.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(100));
            left = dirty(conn)?;
        }
        Ok(left)
    };
    // The server's settings come back even if the wait failed.
    let waited = wait(conn);
    conn.query_drop(format!(
        "SET GLOBAL innodb_max_dirty_pages_pct = {pct}, GLOBAL innodb_io_capacity = {io}, \
         GLOBAL innodb_io_capacity_max = {io_max}"
    ))?;
    let left = waited?;
    eprintln!(
        "settled in {:.1}s ({left} dirty pages left)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Count, distinct ids and exact sums against what the generator produced.
fn verify(conn: &mut mysql::Conn, db: &str, table: &str, n: u64) -> Result<(), BoxError> {
    let (mut qty, mut price_cents, mut total_cents) = (0i64, 0i64, 0i64);
    for i in 0..n {
        let e = gen::order(i, 0).1;
        qty += e.quantity;
        price_cents += cents(&e.unit_price);
        total_cents += cents(&e.total_value);
    }
    let (count, ids, q, p, t): (u64, u64, i64, String, String) = conn
        .query_first(format!(
            "SELECT COUNT(*), COUNT(DISTINCT id), SUM(quantity), CAST(SUM(unit_price) AS CHAR), \
             CAST(SUM(total_value) AS CHAR) FROM {}",
            qualified(db, table)
        ))?
        .ok_or("no result")?;
    let want = (n, n, qty, price_cents, total_cents);
    let got = (count, ids, q, cents(&p), cents(&t));
    if got != want {
        return Err(format!("{table} is not exact: got {got:?}, want {want:?}").into());
    }
    Ok(())
}

/// Row by row, the two tables hold the same values.
fn same_rows(conn: &mut mysql::Conn, db: &str, a: &str, b: &str, n: u64) -> Result<(), BoxError> {
    let matching: u64 = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM {} a JOIN {} b USING (id) WHERE a.order_id = b.order_id \
             AND a.quantity = b.quantity AND a.unit_price = b.unit_price \
             AND a.total_value = b.total_value AND a.processed_at <=> b.processed_at",
            qualified(db, a),
            qualified(db, b)
        ))?
        .unwrap_or(0);
    if matching != n {
        return Err(format!("only {matching} of {n} rows match between {a} and {b}").into());
    }
    Ok(())
}

fn cents(decimal: &str) -> i64 {
    let (whole, frac) = decimal.split_once('.').unwrap_or((decimal, "0"));
    let frac: String = frac.chars().chain("00".chars()).take(2).collect();
    whole.parse::<i64>().unwrap_or(0) * 100 + frac.parse::<i64>().unwrap_or(0)
}

fn field(text: &str, key: &str) -> Option<f64> {
    let start = text.rfind(key)? + key.len();
    text[start..].split_whitespace().next()?.parse().ok()
}

/// The sink binary next to this example (target/<profile>/kafka-mysql-sink).
fn sink_binary() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    let bin = dir.join("kafka-mysql-sink");
    if !bin.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release` first",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}
