//! `[[routes]]`: which topics go to which table, and how a message's fields
//! feed the table's columns.
//!
//! Only what can be judged without the table is checked here (names,
//! patterns, sources, the time zone); whether the route fits its table is
//! the plan's business, once the table's description is read.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::source::parse_time_zone;
use super::{Config, ConfigError, Source};

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The topics taken, by name; or else `topic_pattern`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression the whole topic name must match; its captures
    /// may be used in `table` as `{1}`, `{2}`...
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// The target table in `mysql.database`; may use `{topic}` and captures.
    pub table: String,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub mode: Mode,
    /// The columns rows are matched by; empty means the primary key.
    #[serde(default)]
    pub key: Vec<String>,
    #[serde(default)]
    pub key_from: KeyFrom,
    /// Upserts write only the columns present in the message.
    #[serde(default)]
    pub partial: bool,
    /// A tombstone deletes the row its key names; otherwise it is skipped.
    #[serde(default)]
    pub delete_on_tombstone: bool,
    /// Column name → source; without it every column is fed from the
    /// top-level field of its own name.
    #[serde(default, deserialize_with = "columns")]
    pub columns: BTreeMap<String, ColumnEntry>,
    /// Columns the route never writes.
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub unknown_fields: UnknownFields,
    /// The zone local times are written in: `UTC`, a fixed offset such as
    /// `+05:30`, or a tz database name such as `Europe/Paris`.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// The unit of epoch numbers fed to temporal columns.
    #[serde(default)]
    pub epoch_unit: EpochUnit,
    /// Lets an upsert run on a table with UNIQUE keys besides its key,
    /// accepting that a collision on one of them updates that row.
    #[serde(default)]
    pub allow_other_unique: bool,
}

fn utc() -> String {
    "UTC".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Insert, or update the row with the same key.
    #[default]
    Upsert,
    /// Insert; a row whose key exists is refused.
    Insert,
    /// Update existing rows only.
    Update,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Upsert => "upsert",
            Mode::Insert => "insert",
            Mode::Update => "update",
        }
    }
}

/// Where the key columns are read from.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyFrom {
    /// The payload, like every other column.
    #[default]
    Value,
    /// The Kafka key: a string for a one-column key, a JSON object for a
    /// composite one.
    Key,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnknownFields {
    #[default]
    Ignore,
    Reject,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum EpochUnit {
    #[serde(rename = "s")]
    Seconds,
    #[default]
    #[serde(rename = "ms")]
    Millis,
    #[serde(rename = "us")]
    Micros,
}

impl EpochUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            EpochUnit::Seconds => "s",
            EpochUnit::Millis => "ms",
            EpochUnit::Micros => "us",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Base64,
}

/// A `[routes.columns]` value: `"source"` or `{ from = "source", ... }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnEntry {
    pub from: String,
    #[serde(default)]
    pub epoch_unit: Option<EpochUnit>,
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

impl ColumnEntry {
    pub fn field(from: &str) -> ColumnEntry {
        ColumnEntry {
            from: from.into(),
            epoch_unit: None,
            encoding: None,
        }
    }
}

// By hand rather than `untagged`, so that a bad table entry reports its own
// key ("unknown field `form`") instead of "did not match any variant".
impl<'de> Deserialize<'de> for ColumnEntryOrText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ColumnEntryOrText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a source such as \"a.b\", \"/a/b\" or \"@topic\", or a table with `from`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ColumnEntryOrText(ColumnEntry::field(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ColumnEntry::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ColumnEntryOrText)
            }
        }
        d.deserialize_any(V)
    }
}

/// What `[routes.columns]` deserializes its values through.
struct ColumnEntryOrText(ColumnEntry);

fn columns<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, ColumnEntry>, D::Error> {
    let map = BTreeMap::<String, ColumnEntryOrText>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

impl RouteConfig {
    /// The compiled `topic_pattern`, anchored to the whole name.
    pub fn pattern(&self) -> Option<Result<regex::Regex, regex::Error>> {
        self.topic_pattern
            .as_ref()
            .map(|p| regex::Regex::new(&format!("^(?:{p})$")))
    }

    /// The table a topic goes to, or `None` when the topic is not this
    /// route's.
    pub fn table_for(&self, topic: &str) -> Option<String> {
        let captures: Vec<String> = match self.pattern() {
            Some(Ok(re)) => re
                .captures(topic)?
                .iter()
                .map(|c| c.map_or(String::new(), |m| m.as_str().to_owned()))
                .collect(),
            Some(Err(_)) => return None,
            None if self.topics.iter().any(|t| t == topic) => vec![topic.to_owned()],
            None => return None,
        };
        expand(&self.table, topic, &captures).ok()
    }
}

/// `template` with `{topic}` and `{N}` replaced; an unknown or unclosed
/// placeholder is an error.
fn expand(template: &str, topic: &str, captures: &[String]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err("has a `{` without its `}`".into());
        };
        let name = &rest[open + 1..open + close];
        match name {
            "topic" => out.push_str(topic),
            n => match n.parse::<usize>() {
                Ok(i) if i >= 1 && i < captures.len() => out.push_str(&captures[i]),
                Ok(i) if i >= 1 => {
                    return Err(format!(
                        "uses {{{i}}} but topic_pattern has {} capture group(s)",
                        captures.len().saturating_sub(1)
                    ))
                }
                _ => {
                    return Err(format!(
                        "has an unknown placeholder {{{name}}}; use {{topic}} or {{1}}, {{2}}... \
                         (captures of topic_pattern)"
                    ))
                }
            },
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Config {
    /// The route the seed's settings describe: `kafka.topic` into
    /// `mysql.table` by `id`, the six order fields, the rest left to MySQL.
    pub fn default_route(&self) -> RouteConfig {
        RouteConfig {
            topics: vec![self.kafka.topic.clone()],
            topic_pattern: None,
            table: self.mysql.table.clone(),
            format: Format::Json,
            mode: Mode::Upsert,
            key: vec!["id".into()],
            key_from: KeyFrom::Value,
            partial: false,
            delete_on_tombstone: self.sink.delete_on_tombstone,
            columns: crate::sql::COLUMNS
                .into_iter()
                .map(|c| (c.to_owned(), ColumnEntry::field(c)))
                .collect(),
            ignore: Vec::new(),
            unknown_fields: UnknownFields::Ignore,
            time_zone: utc(),
            epoch_unit: EpochUnit::Seconds,
            allow_other_unique: false,
        }
    }

    /// The configuration with `kafka.topic` the routes' one topic, when
    /// they name exactly one: what `run`'s consumer reads, its offsets rows
    /// record and `offsets` looks at. Unchanged otherwise.
    pub fn with_route_topic(&self) -> Config {
        let mut c = self.clone();
        let mut topics = self.routes.iter().flat_map(|r| r.topics.iter());
        if let (Some(t), None) = (topics.next(), topics.next()) {
            if self.routes.iter().all(|r| r.topic_pattern.is_none()) {
                c.kafka.topic = t.clone();
            }
        }
        c
    }

    /// Whether `route`'s `topic_pattern` takes `topic`: it matches, and the
    /// topic is neither Kafka's own (`__consumer_offsets`...) nor a
    /// dead-letter topic, whose messages a pattern such as `shop.*` would
    /// otherwise feed back in.
    pub fn pattern_takes(&self, route: &RouteConfig, topic: &str) -> bool {
        let dead_letters = topic.ends_with("_dlq")
            || (!self.dead_letter.topic.is_empty() && topic == self.dead_letter.topic);
        route.topic_pattern.is_some()
            && !topic.starts_with("__")
            && !dead_letters
            && route.table_for(topic).is_some()
    }

    pub(super) fn validate_routes(&self) -> Result<(), ConfigError> {
        let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, r) in self.routes.iter().enumerate() {
            let invalid = |key: &'static str, reason: String| ConfigError::Route {
                index,
                table: r.table.clone(),
                key,
                reason,
            };
            validate_route(r).map_err(|(key, reason)| invalid(key, reason))?;
            let own = [Some(self.offsets_table()), self.dlq_table()];
            for t in &r.topics {
                let table = r.table_for(t).unwrap_or_default();
                if own.iter().flatten().any(|o| *o == table) {
                    return Err(invalid(
                        "table",
                        format!("for topic {t:?} is {table:?}, a table of the sink's own (offsets or dead letters)"),
                    ));
                }
                if let Some(other) = taken.insert(t, index) {
                    return Err(invalid(
                        "topics",
                        format!("topic {t:?} is already taken by routes[{other}]; a topic goes to one route"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn validate_route(r: &RouteConfig) -> Result<(), (&'static str, String)> {
    let captures = match (&r.topic_pattern, r.topics.is_empty()) {
        (Some(_), false) => {
            return Err((
                "topics",
                "and topic_pattern are both set; a route takes one of them".into(),
            ))
        }
        (None, true) => {
            return Err((
                "topics",
                "is empty; list the topics, or set topic_pattern".into(),
            ))
        }
        (Some(_), true) => match r.pattern() {
            Some(Ok(re)) => re.captures_len(),
            Some(Err(e)) => {
                return Err((
                    "topic_pattern",
                    format!("is not a regular expression: {e}").replace('\n', " "),
                ))
            }
            None => 1,
        },
        (None, false) => 1,
    };
    if let Some(t) = r.topics.iter().find(|t| t.trim().is_empty()) {
        return Err(("topics", format!("holds an empty name {t:?}")));
    }
    // Captures stand in as `x`, so the literal part of a pattern route's
    // table is checked now and only its substitutions when a topic matches.
    let stand_ins = vec!["x".to_string(); captures];
    let probe = expand(&r.table, "x", &stand_ins).map_err(|e| ("table", e))?;
    crate::sql::check_identifier(&probe).map_err(|e| ("table", e))?;
    for t in &r.topics {
        let name = expand(&r.table, t, std::slice::from_ref(t)).map_err(|e| ("table", e))?;
        crate::sql::check_identifier(&name)
            .map_err(|e| ("table", format!("for topic {t:?} is {name:?}, which {e}")))?;
    }
    if let Some(dup) = first_duplicate(&r.key) {
        return Err(("key", format!("names column {dup:?} twice")));
    }
    for (column, entry) in &r.columns {
        if column.is_empty() {
            return Err(("columns", "has an empty column name".into()));
        }
        Source::parse(&entry.from).map_err(|e| ("columns", format!("{column}: {e}")))?;
    }
    if let Some(dup) = first_duplicate(&r.ignore) {
        return Err(("ignore", format!("names column {dup:?} twice")));
    }
    if let Some(c) = r.ignore.iter().find(|c| r.columns.contains_key(*c)) {
        return Err((
            "ignore",
            format!("names column {c:?}, which [routes.columns] maps; keep one of them"),
        ));
    }
    parse_time_zone(&r.time_zone).map_err(|e| ("time_zone", e))?;
    Ok(())
}

fn first_duplicate(names: &[String]) -> Option<&str> {
    names.iter().enumerate().find_map(|(i, n)| {
        names[..i]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(n))
            .then_some(n.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Config, String> {
        Config::from_toml(text)
    }

    fn refusal(text: &str) -> (usize, String, &'static str, String) {
        let c = parsed(text).unwrap();
        match c.validate() {
            Err(ConfigError::Route {
                index,
                table,
                key,
                reason,
            }) => (index, table, key, reason),
            other => panic!("expected a route error for {text}, got {other:?}"),
        }
    }

    const FULL: &str = r#"
        [[routes]]
        topics = ["shop.customers", "shop.vip"]
        table = "customers"
        format = "json"
        mode = "insert"
        key = ["tenant_id", "id"]
        key_from = "key"
        partial = true
        delete_on_tombstone = true
        ignore = ["secret"]
        unknown_fields = "reject"
        time_zone = "+05:30"
        epoch_unit = "s"
        allow_other_unique = true
        [routes.columns]
        email = "contact.email"
        phone = "/contact/phone~1mobile"
        seen = { from = "@timestamp", epoch_unit = "ms" }
        avatar = { from = "avatar", encoding = "base64" }
        topic = "@topic"
        trace = "@header.trace-id"

        [[routes]]
        topic_pattern = "shop\\.(.+)\\.(v\\d)"
        table = "{1}_{2}"
    "#;

    #[test]
    fn every_route_key_parses() {
        let c = parsed(FULL).unwrap();
        c.validate().unwrap();
        let r = &c.routes[0];
        assert_eq!(r.mode, Mode::Insert);
        assert_eq!(r.key_from, KeyFrom::Key);
        assert_eq!(r.unknown_fields, UnknownFields::Reject);
        assert_eq!(r.epoch_unit, EpochUnit::Seconds);
        assert!(r.partial && r.delete_on_tombstone && r.allow_other_unique);
        assert_eq!(r.columns["email"], ColumnEntry::field("contact.email"));
        assert_eq!(r.columns["seen"].epoch_unit, Some(EpochUnit::Millis));
        assert_eq!(r.columns["avatar"].encoding, Some(Encoding::Base64));
        let src = |c: &str| Source::parse(&r.columns[c].from).unwrap();
        assert_eq!(
            src("email"),
            Source::Field(vec!["contact".into(), "email".into()])
        );
        assert_eq!(
            src("phone"),
            Source::Field(vec!["contact".into(), "phone/mobile".into()])
        );
        assert_eq!(src("phone").to_string(), "/contact/phone~1mobile");
        assert_eq!(src("seen"), Source::Timestamp);
        assert_eq!(src("trace"), Source::Header("trace-id".into()));

        let p = &c.routes[1];
        assert_eq!(p.mode, Mode::Upsert);
        assert_eq!(p.time_zone, "UTC");
        assert_eq!(p.epoch_unit, EpochUnit::Millis);
        assert_eq!(p.table_for("shop.orders.v2").as_deref(), Some("orders_v2"));
        assert_eq!(p.table_for("shop.orders"), None);
        assert_eq!(r.table_for("shop.vip").as_deref(), Some("customers"));
        assert_eq!(r.table_for("other"), None);
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/examples/multi-topic.toml");
        let c = Config::load(Some(&path), &|_| None).unwrap();
        assert_eq!(c.routes.len(), 2);
        assert_eq!(
            c.routes[1].table_for("shop.clicks").as_deref(),
            Some("shop_events")
        );
    }

    #[test]
    fn no_routes_is_todays_config() {
        let c = parsed("").unwrap();
        assert!(c.routes.is_empty());
        assert_eq!(c, Config::default());
        let d = c.default_route();
        assert_eq!(d.topics, ["enriched_orders"]);
        assert_eq!(d.table, "orders");
        assert_eq!(d.key, ["id"]);
        assert_eq!(d.columns.len(), 6);
    }

    #[test]
    fn one_topic_routes_name_the_commands_topic_and_patterns_skip_kafkas_and_dead_letters() {
        let ok = parsed("[[routes]]\ntopics = [\"a\"]\ntable = \"t\"").unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.with_route_topic().kafka.topic, "a");
        let two = parsed("[[routes]]\ntopics = [\"a\", \"b\"]\ntable = \"t\"").unwrap();
        assert_eq!(two.with_route_topic(), two);
        assert_eq!(Config::default().with_route_topic(), Config::default());
        let p = parsed("[[routes]]\ntopic_pattern = \"shop[.](.+)\"\ntable = \"{1}\"").unwrap();
        let r = &p.routes[0];
        assert!(p.pattern_takes(r, "shop.orders"));
        for refused in ["shop.orders_dlq", "__consumer_offsets", "other", "shop."] {
            assert!(!p.pattern_takes(r, refused), "{refused}");
        }
        assert!(!ok.pattern_takes(&ok.routes[0], "a"), "listed, not matched");
    }

    #[test]
    fn every_route_refusal_names_the_route_and_the_key() {
        let head = |rest: &str| format!("[[routes]]\ntopics = [\"a\"]\ntable = \"t\"\n{rest}");
        let cases: Vec<(String, &str)> = vec![
            ("[[routes]]\ntable = \"t\"".into(), "topics"),
            (
                "[[routes]]\ntopics = [\"a\"]\ntopic_pattern = \"a\"\ntable = \"t\"".into(),
                "topics",
            ),
            (
                "[[routes]]\ntopic_pattern = \"(\"\ntable = \"t\"".into(),
                "topic_pattern",
            ),
            (
                "[[routes]]\ntopic_pattern = \"a\"\ntable = \"t_{1}\"".into(),
                "table",
            ),
            (
                "[[routes]]\ntopic_pattern = \"(a)\"\ntable = \"t_{nope}\"".into(),
                "table",
            ),
            (
                "[[routes]]\ntopic_pattern = \"(a)\"\ntable = \"t {1}\"".into(),
                "table",
            ),
            (
                "[[routes]]\ntopics = [\"a.b\"]\ntable = \"{topic}\"".into(),
                "table",
            ),
            (
                "[[routes]]\ntopics = [\"\"]\ntable = \"t\"".into(),
                "topics",
            ),
            (
                "[[routes]]\ntopics = [\"a\"]\ntable = \"t{\"".into(),
                "table",
            ),
            (head("key = [\"id\", \"ID\"]"), "key"),
            (head("[routes.columns]\nx = \"a..b\""), "columns"),
            (head("[routes.columns]\nx = \"@nope\""), "columns"),
            (head("[routes.columns]\nx = \"\""), "columns"),
            (head("[routes.columns]\nx = \"@header.\""), "columns"),
            (
                head("ignore = [\"x\"]\n[routes.columns]\nx = \"a\""),
                "ignore",
            ),
            (head("time_zone = \"Mars/Olympus\""), "time_zone"),
            (head("time_zone = \"+25:00\""), "time_zone"),
            (
                "[[routes]]\ntopics = [\"a\"]\ntable = \"orders_offsets\"".into(),
                "table",
            ),
            (
                "[[routes]]\ntopics = [\"a\"]\ntable = \"orders_dlq\"".into(),
                "table",
            ),
            (
                format!(
                    "{}\n{}",
                    head(""),
                    "[[routes]]\ntopics = [\"a\"]\ntable = \"u\""
                ),
                "topics",
            ),
        ];
        for (text, key) in cases {
            let (index, table, k, reason) = refusal(&text);
            assert_eq!(k, key, "{text}: {reason}");
            let msg = ConfigError::Route {
                index,
                table: table.clone(),
                key: k,
                reason,
            }
            .to_string();
            assert!(
                msg.contains(&format!("routes[{index}] (table `{table}`)")),
                "{msg}"
            );
        }
        let (index, _, _, _) = refusal(&format!(
            "{}\n{}",
            head(""),
            "[[routes]]\ntopics = [\"a\"]\ntable = \"u\""
        ));
        assert_eq!(index, 1);
    }

    #[test]
    fn bad_route_types_and_unknown_keys_name_the_key() {
        for (text, word) in [
            ("[[routes]]\ntopics = [\"a\"]\ntable = \"t\"\nmode = \"merge\"", "merge"),
            ("[[routes]]\ntopics = [\"a\"]\ntable = \"t\"\nformat = \"avro\"", "avro"),
            ("[[routes]]\ntopics = [\"a\"]\ntable = \"t\"\nkeyfrom = \"key\"", "keyfrom"),
            ("[[routes]]\ntopics = [\"a\"]\ntable = \"t\"\nepoch_unit = \"ns\"", "ns"),
            ("[[routes]]\ntopics = [\"a\"]\n", "table"),
            (
                "[[routes]]\ntopics = [\"a\"]\ntable = \"t\"\n[routes.columns]\nx = { form = \"a\" }",
                "form",
            ),
            (
                "[[routes]]\ntopics = [\"a\"]\ntable = \"t\"\n[routes.columns]\nx = 5",
                "a source",
            ),
        ] {
            let msg = parsed(text).unwrap_err();
            assert!(msg.contains(word), "{text}: {msg}");
        }
    }

    #[test]
    fn time_zones() {
        assert_eq!(parse_time_zone("UTC").unwrap(), jiff::tz::TimeZone::UTC);
        let ist = parse_time_zone("+05:30").unwrap();
        assert_eq!(ist.to_offset(jiff::Timestamp::UNIX_EPOCH).seconds(), 19_800);
        let nf = parse_time_zone("-03:30").unwrap();
        assert_eq!(nf.to_offset(jiff::Timestamp::UNIX_EPOCH).seconds(), -12_600);
        assert!(parse_time_zone("Europe/Paris").is_ok());
        assert!(parse_time_zone("+5:30").is_err());
    }
}
