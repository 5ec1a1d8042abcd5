//! Environment variables on top of the file: the seed's nine, plus the
//! `SINK_*` tuning ones, `SINK_DELIVERY`, `METRICS_ADDR` and `LOG_FORMAT`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{Config, ConfigError};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    pub(super) fn apply_env(&mut self, env: Env<'_>) -> Result<(), ConfigError> {
        let text = |var: &'static str, slot: &mut String| {
            if let Some(v) = env(var) {
                *slot = v;
            }
        };
        text("KAFKA_BROKERS", &mut self.kafka.brokers);
        text("SOURCE_TOPIC", &mut self.kafka.topic);
        text("SINK_GROUP_ID", &mut self.kafka.group_id);
        text("MYSQL_HOST", &mut self.mysql.host);
        text("MYSQL_USER", &mut self.mysql.user);
        text("MYSQL_PASSWORD", &mut self.mysql.password);
        text("MYSQL_DATABASE", &mut self.mysql.database);
        text("MYSQL_TABLE", &mut self.mysql.table);
        text("METRICS_ADDR", &mut self.metrics.listen);
        if let Some(port) = number(env, "MYSQL_PORT")? {
            self.mysql.port = port;
        }
        if let Some(n) = number(env, "SINK_BATCH_SIZE")? {
            self.sink.batch_size = n;
        }
        if let Some(ms) = number(env, "SINK_FLUSH_INTERVAL_MS")? {
            self.sink.flush_interval = Duration::from_millis(ms);
        }
        if let Some(n) = number(env, "SINK_WRITERS")? {
            self.sink.writers = n;
        }
        if let Some(value) = env("LOG_FORMAT") {
            self.log.format = value.parse().map_err(|reason| ConfigError::Env {
                var: "LOG_FORMAT",
                value,
                reason,
            })?;
        }
        if let Some(value) = env("SINK_DELIVERY") {
            self.sink.delivery = value.parse().map_err(|reason| ConfigError::Env {
                var: "SINK_DELIVERY",
                value,
                reason,
            })?;
        }
        Ok(())
    }
}

/// The whole number in `var`, if it is set.
fn number<T>(env: Env<'_>, var: &'static str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let Some(value) = env(var) else {
        return Ok(None);
    };
    match value.trim().parse::<T>() {
        Ok(v) => Ok(Some(v)),
        Err(e) => Err(ConfigError::Env {
            var,
            value,
            reason: format!("{e} (expected a whole number)"),
        }),
    }
}
