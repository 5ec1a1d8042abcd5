//! Checking every setting once, so the rest of the program can trust them.

use super::{Config, ConfigError, Delivery, SslMode};

impl Config {
    /// Checks every setting, naming the first one that is out of bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        }
        let k = &self.kafka;
        let m = &self.mysql;
        let s = &self.sink;
        if k.brokers.trim().is_empty() {
            return invalid("kafka.brokers", "must list at least one host:port");
        }
        if k.topic.trim().is_empty() {
            return invalid("kafka.topic", "must not be empty");
        }
        if k.group_id.trim().is_empty() {
            return invalid("kafka.group_id", "must not be empty");
        }
        if k.commit_interval.is_zero() {
            return invalid("kafka.commit_interval_ms", "must be at least 1");
        }
        if k.topic_refresh.is_zero() {
            return invalid("kafka.topic_refresh_ms", "must be at least 1");
        }
        for reserved in [
            "group.id",
            "bootstrap.servers",
            "enable.auto.commit",
            "auto.offset.reset",
        ] {
            // librdkafka takes topic settings with a `topic.` prefix too.
            if k.properties
                .keys()
                .any(|key| key.strip_prefix("topic.").unwrap_or(key) == reserved)
            {
                return invalid(
                    "kafka.properties",
                    format!("`{reserved}` is managed by the sink; use the dedicated setting"),
                );
            }
        }
        if m.host.trim().is_empty() {
            return invalid("mysql.host", "must not be empty");
        }
        if m.port == 0 {
            return invalid("mysql.port", "must be between 1 and 65535");
        }
        if m.user.is_empty() {
            return invalid("mysql.user", "must not be empty");
        }
        if let Err(reason) = crate::sql::check_identifier(&m.database) {
            return invalid("mysql.database", reason);
        }
        if let Err(reason) = crate::sql::check_identifier(&m.table) {
            return invalid("mysql.table", reason);
        }
        if let Some(ca) = &m.ssl_ca {
            if m.ssl_mode == SslMode::Disabled {
                return invalid("mysql.ssl_ca", "is set but mysql.ssl_mode is \"disabled\"");
            }
            if !ca.is_file() {
                return invalid(
                    "mysql.ssl_ca",
                    format!("{} is not a readable file", ca.display()),
                );
            }
        }
        if m.connect_retries == 0 {
            return invalid("mysql.connect_retries", "must be at least 1");
        }
        if m.timeout.is_zero() {
            return invalid("mysql.timeout_ms", "must be at least 1");
        }
        if s.batch_size == 0 {
            return invalid("sink.batch_size", "must be at least 1");
        }
        if s.batch_size > 100_000 {
            return invalid(
                "sink.batch_size",
                "must be at most 100000 rows per statement",
            );
        }
        if s.flush_interval.is_zero() {
            return invalid("sink.flush_interval_ms", "must be at least 1");
        }
        if s.writers == 0 || s.writers > 256 {
            return invalid("sink.writers", "must be between 1 and 256");
        }
        if s.channel_capacity == 0 {
            return invalid("sink.channel_capacity", "must be at least 1");
        }
        if (m.pool_size as usize) < s.writers {
            return invalid(
                "mysql.pool_size",
                format!(
                    "must be at least sink.writers ({}), or writers wait for connections",
                    s.writers
                ),
            );
        }
        if s.max_payload_bytes == 0 {
            return invalid("sink.max_payload_bytes", "must be at least 1");
        }
        if let Some(t) = self.dlq_table() {
            if let Err(reason) = crate::sql::check_identifier(&t) {
                return invalid("dead_letter.table", reason);
            }
            if t == m.table {
                return invalid("dead_letter.table", "must differ from mysql.table");
            }
        }
        let offsets = self.offsets_table();
        if let Err(reason) = crate::sql::check_identifier(&offsets) {
            return invalid("mysql.offsets_table", reason);
        }
        if offsets == m.table || self.dlq_table().is_some_and(|t| t == offsets) {
            return invalid(
                "mysql.offsets_table",
                "must differ from mysql.table and dead_letter.table",
            );
        }
        if s.delivery == Delivery::ExactlyOnce && self.dlq_topic().is_some() {
            return invalid(
                "dead_letter.mode",
                "\"topic\" cannot join a MySQL transaction, so it cannot be used with \
                 sink.delivery = \"exactly_once\"; use \"table\" (or \"skip\")",
            );
        }
        for reserved in ["bootstrap.servers", "transactional.id"] {
            if self.dead_letter.properties.contains_key(reserved) {
                return invalid(
                    "dead_letter.properties",
                    format!("`{reserved}` is managed by the sink"),
                );
            }
        }
        if self.dlq_topic().is_some_and(|t| t == k.topic) {
            return invalid("dead_letter.topic", "must differ from kafka.topic");
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return invalid(
                "metrics.listen",
                "must be host:port with a numeric host, e.g. 0.0.0.0:9187",
            );
        }
        if s.retry_initial.is_zero() {
            return invalid("sink.retry_initial_ms", "must be at least 1");
        }
        if s.retry_max < s.retry_initial {
            return invalid(
                "sink.retry_max_ms",
                "must be at least sink.retry_initial_ms",
            );
        }
        self.validate_routes()
    }

    /// The effective settings as one log-friendly line, secrets redacted.
    pub fn summary(&self) -> String {
        let props = super::redacted_properties(&self.kafka.properties);
        format!(
            "kafka brokers={} topic={} group={} auto_offset_reset={} on_out_of_range={} commit_interval={}ms properties=[{}]; \
             mysql {}@{}:{} table=`{}`.`{}` password=<redacted> pool_size={}; \
             sink batch_size={} flush_interval={}ms writers={} channel_capacity={} delivery={}; dead_letter={}",
            self.kafka.brokers,
            self.kafka.topic,
            self.kafka.group_id,
            self.kafka.auto_offset_reset.as_str(),
            self.kafka.on_out_of_range.as_str(),
            self.kafka.commit_interval.as_millis(),
            props.join(","),
            self.mysql.user,
            self.mysql.host,
            self.mysql.port,
            self.mysql.database,
            self.mysql.table,
            self.mysql.pool_size,
            self.sink.batch_size,
            self.sink.flush_interval.as_millis(),
            self.sink.writers,
            self.sink.channel_capacity,
            self.sink.delivery.as_str(),
            match (self.dlq_table(), self.dlq_topic()) {
                (Some(t), _) => format!("table `{t}`"),
                (_, Some(t)) => format!("topic {t}"),
                _ => "skip".to_string(),
            },
        )
    }
}
