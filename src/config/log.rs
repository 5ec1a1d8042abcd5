//! The `[log]` settings: how log records are written.

use serde::Deserialize;

/// How log records are written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (the default, for people) or `json` (one object per line, for
    /// log shippers); `LOG_FORMAT` overrides it.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected \"text\" or \"json\"".into()),
        }
    }
}

impl LogFormat {
    /// `LOG_FORMAT` from the process environment, for logging set up before
    /// the configuration is read; text if unset or invalid (which loading
    /// the configuration then reports).
    pub fn from_process_env() -> LogFormat {
        std::env::var("LOG_FORMAT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }
}
