//! Settings: a TOML file, then the environment on top of it.
//!
//! The file holds every knob with the seed's defaults, so an empty file (or
//! no file at all) yields the Python sink's behaviour. The seed's nine
//! environment variables and three `SINK_*` tuning variables override the
//! file, because container deployments configure through the environment
//! while backfills are tuned in a checked-in file.
//!
//! Validation happens once, here, so the rest of the program can trust its
//! settings; every error names the offending key or variable.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod env;
mod log;
mod route;
mod source;
mod validate;

pub use log::{LogConfig, LogFormat};
pub use route::{
    ColumnEntry, Encoding, EpochUnit, Format, KeyFrom, Mode, RouteConfig, UnknownFields,
};
pub use source::{parse_time_zone, Source};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source} (pass an existing file with --config)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid environment variable {var}={value:?}: {reason}")]
    Env {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("invalid route routes[{index}] (table `{table}`): `{key}` {reason}")]
    Route {
        index: usize,
        table: String,
        key: &'static str,
        reason: String,
    },
}

/// Everything the sink needs to run.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub mysql: MysqlConfig,
    pub sink: SinkConfig,
    pub dead_letter: DeadLetterConfig,
    pub metrics: MetricsConfig,
    /// `[[routes]]`: topics into tables; none means the default orders
    /// route alone.
    pub routes: Vec<RouteConfig>,
    pub log: LogConfig,
}

/// The operations endpoint.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` for `/metrics`, `/healthz` and `/readyz`; empty (the
    /// default) turns the endpoint off.
    pub listen: String,
}

/// Where messages go that cannot become rows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// `table` (rows in a table next to the target), `topic` (messages on a
    /// Kafka topic with the error in headers), or `skip` (log and count
    /// only, as the original Python sink did).
    pub mode: DlqMode,
    /// The table for `table` mode; empty means `<mysql.table>_dlq`.
    pub table: String,
    /// The topic for `topic` mode; empty means `<kafka.topic>_dlq`.
    pub topic: String,
    /// librdkafka properties for the dead-letter producer, on top of the
    /// consumer's connection settings (security, timeouts).
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DlqMode {
    Table,
    Topic,
    Skip,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            mode: DlqMode::Table,
            table: String::new(),
            topic: String::new(),
            properties: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The dead-letter topic's name, when dead letters go to a topic.
    pub fn dlq_topic(&self) -> Option<String> {
        match self.dead_letter.mode {
            DlqMode::Topic if self.dead_letter.topic.is_empty() => {
                Some(format!("{}_dlq", self.kafka.topic))
            }
            DlqMode::Topic => Some(self.dead_letter.topic.clone()),
            _ => None,
        }
    }

    /// The offsets table's name.
    pub fn offsets_table(&self) -> String {
        if self.mysql.offsets_table.is_empty() {
            format!("{}_offsets", self.mysql.table)
        } else {
            self.mysql.offsets_table.clone()
        }
    }

    /// The dead-letter table's name, when dead letters go to a table.
    pub fn dlq_table(&self) -> Option<String> {
        match self.dead_letter.mode {
            DlqMode::Skip | DlqMode::Topic => None,
            DlqMode::Table if self.dead_letter.table.is_empty() => {
                Some(format!("{}_dlq", self.mysql.table))
            }
            DlqMode::Table => Some(self.dead_letter.table.clone()),
        }
    }
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    /// Where a group without committed offsets starts.
    pub auto_offset_reset: AutoOffsetReset,
    /// What to do with a partition whose offset to resume from is outside
    /// the log Kafka has: see [`OnOutOfRange`].
    pub on_out_of_range: OnOutOfRange,
    /// How often durable offsets are committed to Kafka.
    #[serde(rename = "commit_interval_ms", with = "millis")]
    pub commit_interval: Duration,
    /// On a rebalance, how long to wait for the revoked partitions' rows in
    /// flight before committing and letting them go.
    #[serde(rename = "revoke_timeout_ms", with = "millis")]
    pub revoke_timeout: Duration,
    /// How often the cluster's topics are listed for new ones that a
    /// route's `topic_pattern` matches.
    #[serde(rename = "topic_refresh_ms", with = "millis")]
    pub topic_refresh: Duration,
    /// Passed verbatim to librdkafka (SASL, SSL, timeouts...). Values are
    /// strings, as librdkafka takes them.
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub table: String,
    /// Connections in the r2d2 pool; at least one per writer.
    pub pool_size: u32,
    /// Where partition ownership (and, in exactly-once mode, the next offset
    /// to read) is kept; empty means `<table>_offsets`.
    pub offsets_table: String,
    /// Start-up connection attempts before giving up (the seed: 5).
    pub connect_retries: u32,
    /// Pause between start-up attempts (the seed: 5 s).
    #[serde(rename = "connect_retry_delay_ms", with = "millis")]
    pub connect_retry_delay: Duration,
    /// Bound on a single connect or statement round trip, so a hung server
    /// turns into a retried error instead of a stuck writer.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Statements run on every new connection, after `SET NAMES utf8mb4`
    /// (e.g. `SET SESSION innodb_lock_wait_timeout = 5`).
    pub init_sql: Vec<String>,
    /// TLS to MySQL: `disabled`, `required` (encrypted, certificate not
    /// checked), `verify_ca` (signed by `ssl_ca`), `verify_identity`
    /// (`verify_ca` plus the host name).
    pub ssl_mode: SslMode,
    /// PEM file of the CA that signed the server's certificate; without it
    /// the system's roots are used.
    pub ssl_ca: Option<PathBuf>,
}

/// Where a group without committed offsets starts reading.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoOffsetReset {
    Earliest,
    Latest,
}

/// A partition's offset to resume from (the group's committed one, or
/// MySQL's next offset) that Kafka no longer has: below the log's start
/// (messages deleted by retention before the sink read them) or beyond its
/// end (the topic was recreated, or the group moved to another cluster).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnOutOfRange {
    /// Stop (exit 1) before anything of the partition is written, naming
    /// the partition, both offsets and the command that resolves it.
    Fail,
    /// Go on from the log's start, after a warning; counted and recorded.
    Earliest,
    /// Go on from the log's end, after a warning; counted and recorded.
    Latest,
}

impl OnOutOfRange {
    pub fn as_str(self) -> &'static str {
        match self {
            OnOutOfRange::Fail => "fail",
            OnOutOfRange::Earliest => "earliest",
            OnOutOfRange::Latest => "latest",
        }
    }
}

impl AutoOffsetReset {
    /// The value librdkafka takes.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
        }
    }
}

/// Durations kept in the file as whole milliseconds (`*_ms` keys).
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SslMode {
    Disabled,
    Required,
    VerifyCa,
    VerifyIdentity,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Rows per multi-row upsert statement.
    pub batch_size: usize,
    /// A partial batch is written once its oldest row has waited this long.
    #[serde(rename = "flush_interval_ms", with = "millis")]
    pub flush_interval: Duration,
    /// Writer threads, each with its own channel and batch.
    pub writers: usize,
    /// Rows each writer's channel holds before the consumer waits (as
    /// chunks of up to 64).
    pub channel_capacity: usize,
    /// How often the stats line is logged (0 turns it off).
    #[serde(rename = "stats_interval_ms", with = "millis")]
    pub stats_interval: Duration,
    /// After SIGINT/SIGTERM, how long writers keep retrying a failing batch
    /// before giving it up (uncommitted, so it is read again next start).
    #[serde(rename = "shutdown_timeout_ms", with = "millis")]
    pub shutdown_timeout: Duration,
    /// First retry delay of a failed batch; doubles up to `retry_max_ms`.
    #[serde(rename = "retry_initial_ms", with = "millis")]
    pub retry_initial: Duration,
    #[serde(rename = "retry_max_ms", with = "millis")]
    pub retry_max: Duration,
    /// A tombstone (null payload) deletes the row whose `id` is the message
    /// key; when false, tombstones are skipped and counted.
    pub delete_on_tombstone: bool,
    /// Payloads larger than this are dead-lettered without being parsed.
    pub max_payload_bytes: usize,
    /// What a written message promises: see [`Delivery`].
    pub delivery: Delivery,
}

/// The delivery guarantee.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Every message is applied at least once; a restart re-applies what
    /// came after the last Kafka commit. Rows are spread over writers by key.
    AtLeastOnce,
    /// Every message is applied exactly once: rows, dead letters and the
    /// partition's next offset commit in one MySQL transaction, and the
    /// consumer resumes from MySQL's offset. A partition's rows go to one
    /// writer.
    ExactlyOnce,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at_least_once",
            Delivery::ExactlyOnce => "exactly_once",
        }
    }
}

impl std::str::FromStr for Delivery {
    type Err = String;
    fn from_str(s: &str) -> Result<Delivery, String> {
        match s.trim() {
            "at_least_once" => Ok(Delivery::AtLeastOnce),
            "exactly_once" => Ok(Delivery::ExactlyOnce),
            _ => Err("expected \"at_least_once\" or \"exactly_once\"".into()),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "kafka:9092".into(),
            topic: "enriched_orders".into(),
            group_id: "sink-mysql-workers".into(),
            auto_offset_reset: AutoOffsetReset::Earliest,
            on_out_of_range: OnOutOfRange::Fail,
            commit_interval: Duration::from_millis(1000),
            revoke_timeout: Duration::from_millis(10_000),
            topic_refresh: Duration::from_millis(30_000),
            properties: BTreeMap::new(),
        }
    }
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            host: "mysql_servers".into(),
            port: 3306,
            user: "root".into(),
            password: "root".into(),
            database: "app_consumer".into(),
            table: "orders".into(),
            pool_size: 5,
            offsets_table: String::new(),
            connect_retries: 5,
            connect_retry_delay: Duration::from_millis(5000),
            timeout: Duration::from_millis(30_000),
            init_sql: Vec::new(),
            ssl_mode: SslMode::Disabled,
            ssl_ca: None,
        }
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            batch_size: 1000,
            flush_interval: Duration::from_millis(200),
            writers: 2,
            channel_capacity: 4096,
            stats_interval: Duration::from_millis(10_000),
            shutdown_timeout: Duration::from_millis(30_000),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_millis(30_000),
            delete_on_tombstone: false,
            max_payload_bytes: 1 << 20,
            delivery: Delivery::ExactlyOnce,
        }
    }
}

// The password must never reach a log line, so Debug is written by hand.
impl fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field("table", &self.table)
            .field("pool_size", &self.pool_size)
            .field("offsets_table", &self.offsets_table)
            .field("connect_retries", &self.connect_retries)
            .field("connect_retry_delay", &self.connect_retry_delay)
            .field("timeout", &self.timeout)
            .field("init_sql", &self.init_sql)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_ca", &self.ssl_ca)
            .finish()
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("group_id", &self.group_id)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("on_out_of_range", &self.on_out_of_range)
            .field("commit_interval", &self.commit_interval)
            .field("revoke_timeout", &self.revoke_timeout)
            .field("topic_refresh", &self.topic_refresh)
            .field("properties", &redacted_properties(&self.properties))
            .finish()
    }
}

/// `name=value` pairs with secret values replaced.
fn redacted_properties(props: &BTreeMap<String, String>) -> Vec<String> {
    props
        .iter()
        .map(|(k, v)| {
            if is_secret_property(k) {
                format!("{k}=<redacted>")
            } else {
                format!("{k}={v}")
            }
        })
        .collect()
}

/// librdkafka property names whose values are secrets.
fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n.contains("secret") || n.ends_with(".key.pem")
}

impl Config {
    /// Reads `path` (when given), applies environment overrides looked up
    /// through `env`, and validates the result.
    ///
    /// `env` is a parameter rather than `std::env::var` so tests can supply
    /// their own environment without touching the process's.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads with the process environment.
    pub fn load_from_process_env(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load(path, &|name| std::env::var(name).ok())
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write_temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kms-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = Config::load(None, &env_of(&[])).unwrap();
        assert_eq!(c.kafka.brokers, "kafka:9092");
        assert_eq!(c.kafka.topic, "enriched_orders");
        assert_eq!(c.kafka.group_id, "sink-mysql-workers");
        assert_eq!(c.kafka.auto_offset_reset, AutoOffsetReset::Earliest);
        assert_eq!(c.mysql.host, "mysql_servers");
        assert_eq!(c.mysql.port, 3306);
        assert_eq!(c.mysql.user, "root");
        assert_eq!(c.mysql.password, "root");
        assert_eq!(c.mysql.database, "app_consumer");
        assert_eq!(c.mysql.table, "orders");
        assert_eq!(c.mysql.connect_retries, 5);
        assert_eq!(c.mysql.connect_retry_delay, Duration::from_secs(5));
    }

    #[test]
    fn shipped_config_file_parses_and_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sink.toml");
        let c = Config::load(Some(&path), &env_of(&[])).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn backfill_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/backfill.toml");
        let c = Config::load(Some(&path), &env_of(&[])).unwrap();
        assert_eq!((c.sink.batch_size, c.sink.writers), (1000, 2));
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let path = write_temp(
            "precedence.toml",
            r#"
            [kafka]
            brokers = "file:9092"
            topic = "file_topic"
            [kafka.properties]
            "session.timeout.ms" = "10000"
            [mysql]
            host = "filehost"
            port = 1111
            password = "filepass"
            [sink]
            batch_size = 10
            writers = 2
            "#,
        );
        let env = env_of(&[
            ("KAFKA_BROKERS", "env:9092"),
            ("SINK_GROUP_ID", "env-group"),
            ("MYSQL_PORT", "2222"),
            ("MYSQL_PASSWORD", "envpass"),
            ("MYSQL_DATABASE", "envdb"),
            ("MYSQL_TABLE", "envtable"),
            ("MYSQL_USER", "envuser"),
            ("SOURCE_TOPIC", "env_topic"),
            ("SINK_BATCH_SIZE", "77"),
            ("SINK_FLUSH_INTERVAL_MS", "33"),
        ]);
        let c = Config::load(Some(&path), &env).unwrap();
        // environment wins over the file
        assert_eq!(c.kafka.brokers, "env:9092");
        assert_eq!(c.kafka.topic, "env_topic");
        assert_eq!(c.kafka.group_id, "env-group");
        assert_eq!(c.mysql.port, 2222);
        assert_eq!(c.mysql.password, "envpass");
        assert_eq!(c.mysql.user, "envuser");
        assert_eq!(c.mysql.database, "envdb");
        assert_eq!(c.mysql.table, "envtable");
        assert_eq!(c.sink.batch_size, 77);
        assert_eq!(c.sink.flush_interval, Duration::from_millis(33));
        // the file wins where the environment is silent
        assert_eq!(c.mysql.host, "filehost");
        assert_eq!(c.sink.writers, 2);
        assert_eq!(c.kafka.properties["session.timeout.ms"], "10000");
        // defaults fill the rest
        assert_eq!(
            c.sink.channel_capacity,
            SinkConfig::default().channel_capacity
        );

        let c = Config::load(Some(&path), &env_of(&[("SINK_WRITERS", "3")])).unwrap();
        assert_eq!(c.sink.writers, 3);
        assert_eq!(c.kafka.brokers, "file:9092");
    }

    fn invalid_key(toml_text: &str) -> &'static str {
        let c = Config::from_toml(toml_text).unwrap();
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid setting for {toml_text}, got {other:?}"),
        }
    }

    #[test]
    fn every_validation_error_names_its_key() {
        let cases = [
            ("[sink]\nbatch_size = 0", "sink.batch_size"),
            ("[sink]\nbatch_size = 1000000", "sink.batch_size"),
            ("[sink]\nflush_interval_ms = 0", "sink.flush_interval_ms"),
            ("[sink]\nwriters = 0", "sink.writers"),
            ("[sink]\nwriters = 1000\n[mysql]\npool_size=2000", "sink.writers"),
            ("[sink]\nchannel_capacity = 0", "sink.channel_capacity"),
            ("[sink]\nretry_initial_ms = 0", "sink.retry_initial_ms"),
            ("[sink]\nretry_initial_ms = 10\nretry_max_ms = 5", "sink.retry_max_ms"),
            ("[mysql]\npool_size = 1", "mysql.pool_size"),
            ("[mysql]\nport = 0", "mysql.port"),
            ("[mysql]\nhost = \"\"", "mysql.host"),
            ("[mysql]\nuser = \"\"", "mysql.user"),
            ("[mysql]\ntable = \"\"", "mysql.table"),
            ("[mysql]\ntable = \"a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5\"", "mysql.table"),
            ("[mysql]\ndatabase = \"bad`name\"", "mysql.database"),
            ("[mysql]\nconnect_retries = 0", "mysql.connect_retries"),
            ("[mysql]\nssl_ca = \"/etc/hostname\"", "mysql.ssl_ca"),
            ("[mysql]\nssl_mode = \"required\"\nssl_ca = \"/nonexistent.pem\"", "mysql.ssl_ca"),
            ("[mysql]\ntimeout_ms = 0", "mysql.timeout_ms"),
            ("[kafka]\nbrokers = \" \"", "kafka.brokers"),
            ("[kafka]\ntopic = \"\"", "kafka.topic"),
            ("[kafka]\ngroup_id = \"\"", "kafka.group_id"),
            ("[kafka]\ncommit_interval_ms = 0", "kafka.commit_interval_ms"),
            ("[kafka.properties]\n\"group.id\" = \"x\"", "kafka.properties"),
            ("[kafka.properties]\n\"auto.offset.reset\" = \"latest\"", "kafka.properties"),
            ("[kafka.properties]\n\"topic.auto.offset.reset\" = \"latest\"", "kafka.properties"),
            ("[sink]\nmax_payload_bytes = 0", "sink.max_payload_bytes"),
            ("[metrics]\nlisten = \"localhost\"", "metrics.listen"),
            ("[dead_letter]\ntable = \"orders\"", "dead_letter.table"),
            ("[dead_letter]\ntable = \"bad name\"", "dead_letter.table"),
            (
                "[sink]\ndelivery = \"at_least_once\"\n[dead_letter]\nmode = \"topic\"\ntopic = \"enriched_orders\"",
                "dead_letter.topic",
            ),
            ("[dead_letter]\nmode = \"topic\"", "dead_letter.mode"),
            ("[mysql]\noffsets_table = \"orders\"", "mysql.offsets_table"),
        ];
        for (text, key) in cases {
            assert_eq!(invalid_key(text), key, "for {text:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_key() {
        let path = write_temp("unknown.toml", "[sink]\nbatchsize = 10\n");
        let err = Config::load(Some(&path), &env_of(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(msg.contains("batchsize"), "{msg}");

        let path = write_temp("toplevel.toml", "[sinc]\nbatch_size = 10\n");
        let msg = Config::load(Some(&path), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("sinc"), "{msg}");

        let path = write_temp("badmode.toml", "[dead_letter]\nmode = \"bin\"\n");
        let msg = Config::load(Some(&path), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("bin"), "{msg}");

        let path = write_temp(
            "badreset.toml",
            "[kafka]\nauto_offset_reset = \"smallest\"\n",
        );
        let msg = Config::load(Some(&path), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("smallest") && msg.contains("latest"), "{msg}");

        let path = write_temp("badtype.toml", "[sink]\nbatch_size = \"ten\"\n");
        let msg = Config::load(Some(&path), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("batch_size"), "{msg}");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err =
            Config::load(Some(Path::new("/nonexistent/sink.toml")), &env_of(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/sink.toml"));
    }

    #[test]
    fn the_log_format_comes_from_the_file_and_log_format_overrides_it() {
        let path = write_temp("log.toml", "[log]\nformat = \"json\"\n");
        let c = Config::load(Some(&path), &env_of(&[])).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        let c = Config::load(Some(&path), &env_of(&[("LOG_FORMAT", "text")])).unwrap();
        assert_eq!(c.log.format, LogFormat::Text);
        let err = Config::load(None, &env_of(&[("LOG_FORMAT", "xml")])).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Env {
                    var: "LOG_FORMAT",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = Config::load(
            Some(&write_temp("badlog.toml", "[log]\nformat = \"xml\"\n")),
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    }

    #[test]
    fn bad_numbers_in_env_name_the_variable() {
        for var in [
            "MYSQL_PORT",
            "SINK_BATCH_SIZE",
            "SINK_FLUSH_INTERVAL_MS",
            "SINK_WRITERS",
        ] {
            let err = Config::load(None, &env_of(&[(var, "12x")])).unwrap_err();
            match &err {
                ConfigError::Env { var: v, .. } => assert_eq!(*v, var),
                other => panic!("expected an env error for {var}, got {other:?}"),
            }
            assert!(err.to_string().contains(var));
        }
        let err = Config::load(None, &env_of(&[("MYSQL_PORT", "70000")])).unwrap_err();
        assert!(err.to_string().contains("MYSQL_PORT"));
        // zero passes parsing but not validation, and the key is named
        let err = Config::load(None, &env_of(&[("SINK_BATCH_SIZE", "0")])).unwrap_err();
        assert!(err.to_string().contains("sink.batch_size"), "{err}");
    }

    #[test]
    fn password_never_in_summary_or_debug() {
        let mut c = Config::default();
        c.mysql.password = "s3cr3t-pw".into();
        c.kafka
            .properties
            .insert("sasl.password".into(), "kafka-s3cr3t".into());
        c.kafka
            .properties
            .insert("sasl.mechanism".into(), "PLAIN".into());
        for text in [c.summary(), format!("{c:?}")] {
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(text.contains("<redacted>"));
        }
        assert!(c.summary().contains("sasl.mechanism=PLAIN"));
    }
}
