//! Column sources (`a.b`, `/a/b`, `@metadata`) and route time zones: the
//! parts of a route's text that are parsed before any table is known.

use std::fmt;

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path into the payload: object members (or array indices) from the
    /// top down.
    Field(Vec<String>),
    Topic,
    Partition,
    Offset,
    /// The message's timestamp.
    Timestamp,
    /// The Kafka key as text.
    Key,
    /// A member of the Kafka key, when it is a JSON object (`key_from = "key"`).
    KeyField(String),
    Header(String),
    /// The whole payload.
    Value,
}

impl Source {
    /// Parses `a.b`, `/a/b` (a JSON pointer) or `@metadata`.
    pub fn parse(text: &str) -> Result<Source, String> {
        if let Some(meta) = text.strip_prefix('@') {
            return match meta {
                "topic" => Ok(Source::Topic),
                "partition" => Ok(Source::Partition),
                "offset" => Ok(Source::Offset),
                "timestamp" => Ok(Source::Timestamp),
                "key" => Ok(Source::Key),
                "value" => Ok(Source::Value),
                _ => match meta.strip_prefix("header.") {
                    Some(name) if !name.is_empty() => Ok(Source::Header(name.into())),
                    _ => Err(format!(
                        "unknown metadata {text:?}; use @topic, @partition, @offset, @timestamp, \
                         @key, @header.NAME or @value"
                    )),
                },
            };
        }
        let segments: Vec<String> = if let Some(pointer) = text.strip_prefix('/') {
            // RFC 6901: `~1` is `/` and `~0` is `~`, in that order.
            pointer
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect()
        } else {
            text.split('.').map(str::to_owned).collect()
        };
        if text.is_empty() || segments.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?} is not a field path; write `a.b`, a JSON pointer `/a/b`, or @metadata"
            ));
        }
        Ok(Source::Field(segments))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Field(path) if path.iter().any(|s| s.contains(['.', '/', '~'])) => {
                for s in path {
                    write!(f, "/{}", s.replace('~', "~0").replace('/', "~1"))?;
                }
                Ok(())
            }
            Source::Field(path) => f.write_str(&path.join(".")),
            Source::Topic => f.write_str("@topic"),
            Source::Partition => f.write_str("@partition"),
            Source::Offset => f.write_str("@offset"),
            Source::Timestamp => f.write_str("@timestamp"),
            Source::Key => f.write_str("@key"),
            Source::KeyField(name) => write!(f, "@key.{name}"),
            Source::Header(name) => write!(f, "@header.{name}"),
            Source::Value => f.write_str("@value"),
        }
    }
}

/// The zone a route writes local times in.
pub fn parse_time_zone(text: &str) -> Result<jiff::tz::TimeZone, String> {
    if text.eq_ignore_ascii_case("UTC") || text == "Z" {
        return Ok(jiff::tz::TimeZone::UTC);
    }
    if let Some(offset) = fixed_offset(text) {
        return jiff::tz::Offset::from_seconds(offset)
            .map(jiff::tz::TimeZone::fixed)
            .map_err(|e| format!("{text:?}: {e}"));
    }
    jiff::tz::TimeZone::get(text).map_err(|e| {
        format!(
            "{text:?} is not UTC, an offset like +05:30, or a time zone this machine's tz \
             database knows ({e})"
        )
    })
}

/// `+HH:MM` / `-HH:MM` in seconds.
fn fixed_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}
