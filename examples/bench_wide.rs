//! The wide-event benchmark (`make bench-wide`, also run by `make bench-e2e`):
//! a route of 30 columns of mixed types, end to end, beside an independent
//! ceiling of the same rows.
//!
//! 1. Produces `BENCH_WIDE_MESSAGES` events (default 1,000,000) into a mock
//!    cluster: strings, decimals as strings, ISO-8601 timestamps with
//!    offsets, epoch milliseconds, booleans, integers, doubles and a nested
//!    object for a JSON column. The mock keeps about 5 MB per partition,
//!    so the partitions are at least `BENCH_PARTITIONS` (default 16) and as
//!    many more as the events' bytes need.
//! 2. Each round, in alternating order:
//!    - the ceiling: the same rows as multi-row upserts the benchmark
//!      builds itself (not the sink's code), `sink.batch_size` rows each,
//!      sent over `sink.writers` connections, in production order;
//!    - the sink binary with `--until-caught-up` and a `[[routes]]` entry
//!      for the table, exactly-once (the shipped delivery mode).
//!
//!    Both tables are checked to hold every row with the same contents.
//! 3. Prints per round and as medians: rows/s of both, their ratio, the
//!    sink's CPU seconds per million rows and its peak RSS.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use kafka_mysql_sink::config::Config;
use kafka_mysql_sink::internals as db;
use kafka_mysql_sink::internals::qualified;
use mysql::prelude::Queryable;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[path = "shared/bench.rs"]
mod bench_util;
use bench_util::{field, median, sink_binary};

type BoxError = Box<dyn std::error::Error>;

const TOPIC: &str = "wide_events";
const TABLE: &str = "wide_events";

/// The table: 30 columns, a key and 29 of every kind a JSON event carries.
fn ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
  id BIGINT NOT NULL PRIMARY KEY,
  tenant VARCHAR(32) NOT NULL, name VARCHAR(100) NOT NULL, email VARCHAR(120) NOT NULL,
  city VARCHAR(60) NOT NULL, country CHAR(2) NOT NULL, status VARCHAR(16) NOT NULL,
  sku VARCHAR(40) NOT NULL, currency CHAR(3) NOT NULL, channel VARCHAR(16) NOT NULL,
  price DECIMAL(12,2) NOT NULL, tax DECIMAL(12,4) NOT NULL, discount DECIMAL(10,2) NOT NULL,
  total DECIMAL(14,2) NOT NULL, weight DECIMAL(10,3) NOT NULL,
  created_at DATETIME(3) NOT NULL, updated_at DATETIME(6) NOT NULL,
  shipped_at TIMESTAMP(3) NULL, event_ms DATETIME(3) NOT NULL,
  paid BOOLEAN NOT NULL, gift BOOLEAN NOT NULL, vip BOOLEAN NOT NULL,
  quantity INT NOT NULL, items SMALLINT NOT NULL, points BIGINT NOT NULL,
  score DOUBLE NOT NULL, ratio DOUBLE NOT NULL,
  attrs JSON NOT NULL, note TEXT NULL, version INT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
    )
}

/// Event `i` as the producer writes it.
fn event(i: u64) -> String {
    let (day, sec, ms) = (1 + i % 28, i % 60, i % 1000);
    format!(
        concat!(
            r#"{{"id":{i},"tenant":"tenant-{t}","name":"Customer {i}","email":"user{i}@example.com","#,
            r#""city":"City {c}","country":"FR","status":"paid","sku":"SKU-{s:08}","currency":"EUR","#,
            r#""channel":"web","price":"{p}.{pc:02}","tax":"{tx}.{txc:04}","discount":"1.50","#,
            r#""total":"{tot}.{pc:02}","weight":"{w}.250","#,
            r#""created_at":"2026-11-{day:02}T10:20:{sec:02}.{ms:03}+02:00","#,
            r#""updated_at":"2026-11-{day:02}T08:20:{sec:02}.123456Z","#,
            r#""shipped_at":"2026-11-{day:02}T12:00:00Z","event_ms":{epoch},"#,
            r#""paid":true,"gift":false,"vip":{vip},"quantity":{q},"items":{it},"points":{pts},"#,
            r#""score":{score}.5,"ratio":0.{ratio},"#,
            r#""attrs":{{"color":"red","size":{q},"tags":["a","b"]}},"note":"note {i}","version":1}}"#
        ),
        i = i,
        t = i % 50,
        c = i % 300,
        s = i % 100_000,
        p = 10 + i % 90,
        pc = i % 100,
        tx = i % 20,
        txc = i % 10_000,
        tot = 20 + i % 900,
        w = i % 40,
        day = day,
        sec = sec,
        ms = ms,
        epoch = 1_764_000_000_000 + i,
        vip = i.is_multiple_of(7),
        q = 1 + i % 9,
        it = 1 + i % 30,
        pts = i * 3,
        score = i % 1000,
        ratio = 1 + i % 98,
    )
}

/// The same event as the ceiling's VALUES tuple: what the table must hold.
fn tuple(i: u64, out: &mut String) {
    use std::fmt::Write;
    let (day, sec, ms) = (1 + i % 28, i % 60, i % 1000);
    let _ = write!(
        out,
        "({i},'tenant-{}','Customer {i}','user{i}@example.com','City {}','FR','paid','SKU-{:08}',\
         'EUR','web',{}.{:02},{}.{:04},1.50,{}.{:02},{}.250,\
         '2026-11-{day:02} 08:20:{sec:02}.{ms:03}','2026-11-{day:02} 08:20:{sec:02}.123456',\
         '2026-11-{day:02} 12:00:00',FROM_UNIXTIME({}.{:03}),1,0,{},{},{},{},{}.5,0.{},\
         '{{\"color\":\"red\",\"size\":{},\"tags\":[\"a\",\"b\"]}}','note {i}',1)",
        i % 50,
        i % 300,
        i % 100_000,
        10 + i % 90,
        i % 100,
        i % 20,
        i % 10_000,
        20 + i % 900,
        i % 100,
        i % 40,
        (1_764_000_000_000 + i) / 1000,
        (1_764_000_000_000 + i) % 1000,
        u8::from(i.is_multiple_of(7)),
        1 + i % 9,
        1 + i % 30,
        i * 3,
        i % 1000,
        1 + i % 98,
        1 + i % 9,
    );
}

const COLUMNS: &str = "id,tenant,name,email,city,country,status,sku,currency,channel,price,tax,\
                       discount,total,weight,created_at,updated_at,shipped_at,event_ms,paid,gift,\
                       vip,quantity,items,points,score,ratio,attrs,note,version";

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-wide failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench() -> Result<(), BoxError> {
    let n = env_u64("BENCH_WIDE_MESSAGES", 1_000_000);
    let rounds = env_u64("BENCH_ROUNDS", 3).max(1) as u32;
    let config_path =
        PathBuf::from(std::env::var("BENCH_CONFIG").unwrap_or("config/sink.toml".into()));
    let env = |name: &str| match name {
        "MYSQL_HOST" => std::env::var(name).ok().or(Some("127.0.0.1".into())),
        "MYSQL_PORT" => std::env::var(name).ok().or(Some("3307".into())),
        "MYSQL_DATABASE" => std::env::var(name).ok().or(Some("kms_bench".into())),
        _ => std::env::var(name).ok(),
    };
    let config = Config::load(Some(&config_path), &env)?;
    let bytes: u64 = event(n / 2).len() as u64 * n;
    // About 4 MB a partition at most, under the mock's 5 MB.
    let partitions = env_u64("BENCH_PARTITIONS", 16).max(bytes.div_ceil(4 << 20)) as i32;
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, partitions, 1)?;
    let brokers = cluster.bootstrap_servers();
    eprintln!(
        "producing {n} wide events ({} bytes each) over {partitions} partitions ...",
        event(n / 2).len()
    );
    produce(&brokers, n, partitions)?;

    let m = &config.mysql;
    let mut conn = mysql::Conn::new(mysql::Opts::from(db::opts(m)))?;
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{}`", m.database))?;
    let bin = sink_binary()?;
    let dir = std::env::temp_dir().join(format!("kms-bench-wide-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut results = Vec::new();
    for round in 1..=rounds {
        let mut ceiling = 0.0;
        let mut sink = None;
        let order: [bool; 2] = if round % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        let mut prints = Vec::new();
        for first_is_ceiling in order {
            if first_is_ceiling {
                let table = qualified(&m.database, "wide_ceiling");
                fresh(&mut conn, &table)?;
                eprintln!("round {round}: ceiling ...");
                ceiling = write_ceiling(&config, &table, n, partitions)?;
                prints.push(fingerprint(&mut conn, &table, n)?);
            } else {
                let table = qualified(&m.database, TABLE);
                fresh(&mut conn, &table)?;
                for t in [format!("{TABLE}_offsets"), format!("{TABLE}_dlq")] {
                    conn.query_drop(format!(
                        "DROP TABLE IF EXISTS {}",
                        qualified(&m.database, &t)
                    ))?;
                }
                eprintln!("round {round}: sink ...");
                sink = Some(run_sink(
                    &bin,
                    &config_path,
                    &config,
                    &dir,
                    &brokers,
                    round,
                    n,
                )?);
                prints.push(fingerprint(&mut conn, &table, n)?);
            }
        }
        if prints[0] != prints[1] {
            return Err(format!("round {round}: the tables differ: {prints:x?}").into());
        }
        let s = sink.ok_or("the sink did not run")?;
        eprintln!(
            "round {round}/{rounds}: ceiling {ceiling:.0} rows/s; sink {:.0} rows/s ({:.2} of the \
             ceiling), {:.2} s CPU per million rows, {:.1} MiB peak RSS",
            s.rows_per_sec,
            s.rows_per_sec / ceiling,
            s.cpu_per_million,
            s.peak_mib
        );
        results.push((ceiling, s));
    }
    let med = |f: &dyn Fn(&(f64, SinkRun)) -> f64| median(results.iter().map(f).collect());
    println!(
        "wide events ({n} over {partitions} partitions, 30 columns, medians of {rounds} rounds): \
         ceiling {:.0} rows/s; sink {:.0} rows/s; sink / ceiling {:.2} (ratio of each round, \
         median); sink CPU {:.2} s per million rows; peak RSS {:.1} MiB",
        med(&|r| r.0),
        med(&|r| r.1.rows_per_sec),
        med(&|r| r.1.rows_per_sec / r.0),
        med(&|r| r.1.cpu_per_million),
        med(&|r| r.1.peak_mib),
    );
    Ok(())
}

fn produce(brokers: &str, n: u64, partitions: i32) -> Result<(), BoxError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    for i in 0..n {
        let (key, payload) = (i.to_string(), event(i));
        let p = (i % partitions as u64) as i32;
        loop {
            let record = BaseRecord::to(TOPIC)
                .partition(p)
                .key(&key)
                .payload(&payload);
            match producer.send(record) {
                Ok(()) => break,
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(std::time::Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        producer.poll(std::time::Duration::ZERO);
    }
    producer.flush(std::time::Duration::from_secs(300))?;
    Ok(())
}

fn fresh(conn: &mut mysql::Conn, table: &str) -> Result<(), BoxError> {
    conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))?;
    conn.query_drop(ddl(table))?;
    Ok(())
}

/// The ceiling: pre-built upserts in production order (event `i` is read
/// from partition `i mod partitions`), `writers` connections each taking
/// batches in turn, as many rows a statement as the sink's batch.
fn write_ceiling(config: &Config, table: &str, n: u64, partitions: i32) -> Result<f64, BoxError> {
    let batch = config.sink.batch_size as u64;
    let writers = config.sink.writers.max(1);
    let update: String = COLUMNS
        .split(',')
        .skip(1)
        .map(|c| format!("{c}=VALUES({c})"))
        .collect::<Vec<_>>()
        .join(",");
    // Each connection takes the rows of its share of the partitions.
    let mut lists: Vec<Vec<String>> = vec![Vec::new(); writers];
    for (w, list) in lists.iter_mut().enumerate() {
        let mine: Vec<u64> = (0..n)
            .filter(|i| (i % partitions as u64) as usize % writers == w)
            .collect();
        for chunk in mine.chunks(batch as usize) {
            let mut sql = format!("INSERT INTO {table} ({COLUMNS}) VALUES ");
            for (k, &i) in chunk.iter().enumerate() {
                if k > 0 {
                    sql.push(',');
                }
                tuple(i, &mut sql);
            }
            sql.push_str(" ON DUPLICATE KEY UPDATE ");
            sql.push_str(&update);
            list.push(sql);
        }
    }
    let opts = mysql::Opts::from(db::opts(&config.mysql));
    let started = Instant::now();
    std::thread::scope(|s| -> Result<(), BoxError> {
        let handles: Vec<_> = lists
            .iter()
            .map(|list| {
                let opts = opts.clone();
                s.spawn(move || -> Result<(), mysql::Error> {
                    let mut c = mysql::Conn::new(opts)?;
                    c.query_drop("SET time_zone = '+00:00'")?;
                    for sql in list {
                        c.query_drop("BEGIN")?;
                        c.query_drop(sql)?;
                        c.query_drop("COMMIT")?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a ceiling connection panicked")??;
        }
        Ok(())
    })?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

struct SinkRun {
    rows_per_sec: f64,
    cpu_per_million: f64,
    peak_mib: f64,
}

fn run_sink(
    bin: &Path,
    config_path: &Path,
    config: &Config,
    dir: &Path,
    brokers: &str,
    round: u32,
    n: u64,
) -> Result<SinkRun, BoxError> {
    // The shipped settings, with one route for the table: every column from
    // the field of its name (event_ms an epoch in milliseconds).
    let base = std::fs::read_to_string(config_path)?;
    let route =
        format!("\n[[routes]]\ntopics = [\"{TOPIC}\"]\ntable = \"{TABLE}\"\nepoch_unit = \"ms\"\n");
    let path = dir.join("wide.toml");
    std::fs::write(&path, base + &route)?;
    let log_path = dir.join(format!("sink-{round}.log"));
    let log = std::fs::File::create(&log_path)?;
    let m = &config.mysql;
    let status = Command::new(bin)
        .args(["run", "--until-caught-up", "--config"])
        .arg(&path)
        .env("KAFKA_BROKERS", brokers)
        .env(
            "SINK_GROUP_ID",
            format!("bench-wide-{}-{round}", std::process::id()),
        )
        .env("MYSQL_HOST", &m.host)
        .env("MYSQL_PORT", m.port.to_string())
        .env("MYSQL_DATABASE", &m.database)
        // The offsets and dead-letter tables are named after it.
        .env("MYSQL_TABLE", TABLE)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    let text = std::fs::read_to_string(&log_path)?;
    if !status.success() {
        return Err(format!("the sink failed ({status}); log in {}", log_path.display()).into());
    }
    let of = |key: &str| field(&text, key).unwrap_or(f64::NAN);
    let active = field(&text, "active_seconds=")
        .ok_or_else(|| format!("no summary line in {}", log_path.display()))?;
    Ok(SinkRun {
        rows_per_sec: n as f64 / active,
        cpu_per_million: of("cpu_seconds=") / n as f64 * 1e6,
        peak_mib: of("peak_rss_mib="),
    })
}

/// Every row there, and a fingerprint of all their values as MySQL holds
/// them (the same in both tables when both wrote the same).
fn fingerprint(conn: &mut mysql::Conn, table: &str, n: u64) -> Result<u64, BoxError> {
    let count: u64 = conn
        .query_first(format!("SELECT COUNT(*) FROM {table}"))?
        .ok_or("no count")?;
    if count != n {
        return Err(format!("{table} holds {count} rows, not {n}").into());
    }
    let cols: String = COLUMNS
        .split(',')
        .map(|c| format!("IFNULL(CAST({c} AS CHAR), 'null')"))
        .collect::<Vec<_>>()
        .join(",");
    let print: u64 = conn
        .query_first(format!(
            "SELECT BIT_XOR(CAST(CONV(LEFT(MD5(CONCAT_WS('|', {cols})), 16), 16, 10) AS UNSIGNED)) \
             FROM {table}"
        ))?
        .ok_or("no fingerprint")?;
    conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))?;
    Ok(print)
}
