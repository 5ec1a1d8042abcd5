//! Log records as JSON, one object per line, for log shippers
//! (`log.format = "json"` or `LOG_FORMAT=json`).
//!
//! Each object has `timestamp`, `level`, `target` and `message`, then the
//! record's structured fields (`topic`, `partition`, `offset`, `table`, ...)
//! where the call site gives them. Written by hand: a record is a handful
//! of strings and numbers.

use std::fmt::{Display, Write as _};

use log::kv::{Error, Key, Value, VisitSource};

/// Appends `record` to `out` as one JSON object and a newline, stamped with
/// `timestamp` (RFC 3339).
pub(crate) fn write_record(out: &mut String, timestamp: &dyn Display, record: &log::Record<'_>) {
    out.push_str("{\"timestamp\":");
    string(out, &timestamp.to_string());
    out.push_str(",\"level\":");
    string(out, record.level().as_str());
    out.push_str(",\"target\":");
    string(out, record.target());
    out.push_str(",\"message\":");
    string(out, &record.args().to_string());
    // A source can only fail through its visitor, which never does.
    let _ = record.key_values().visit(&mut Fields(out));
    out.push_str("}\n");
}

struct Fields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        let out = &mut *self.0;
        out.push(',');
        string(out, key.as_str());
        out.push(':');
        if let Some(n) = value.to_i64() {
            let _ = write!(out, "{n}");
        } else if let Some(n) = value.to_u64() {
            let _ = write!(out, "{n}");
        } else if let Some(b) = value.to_bool() {
            out.push_str(if b { "true" } else { "false" });
        } else if let Some(f) = value.to_f64().filter(|f| f.is_finite()) {
            let _ = write!(out, "{f}");
        } else {
            string(out, &value.to_string());
        }
        Ok(())
    }
}

/// `s` as a JSON string, quoted and escaped.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(record: &log::Record<'_>) -> serde_json::Value {
        let mut out = String::new();
        write_record(&mut out, &"2026-01-02T03:04:05.678Z", record);
        assert_eq!(out.matches('\n').count(), 1, "one line: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    #[test]
    fn a_record_is_one_json_object_with_its_fields() {
        let kvs: [(&str, Value<'_>); 4] = [
            ("topic", Value::from("enriched_orders")),
            ("partition", Value::from(3i32)),
            ("offset", Value::from(42i64)),
            ("table", Value::from("orders")),
        ];
        let args = format_args!("skipping \"message\"\n\tat 3@42: bad \\ json \u{1}");
        let record = log::Record::builder()
            .level(log::Level::Warn)
            .target("kafka_mysql_sink::source")
            .args(args)
            .key_values(&kvs)
            .build();
        let v = render(&record);
        assert_eq!(v["timestamp"], "2026-01-02T03:04:05.678Z");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "kafka_mysql_sink::source");
        assert_eq!(
            v["message"],
            "skipping \"message\"\n\tat 3@42: bad \\ json \u{1}"
        );
        assert_eq!(v["topic"], "enriched_orders");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 42);
        assert_eq!(v["table"], "orders");
    }

    #[test]
    fn a_record_without_fields_has_the_four_keys() {
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("t")
            .args(format_args!("started"))
            .build();
        let v = render(&record);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
    }
}
