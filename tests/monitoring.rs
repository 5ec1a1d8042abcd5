//! The shipped monitoring against a live sink: the Grafana dashboard and
//! the alert rules name only metrics the sink exports, and a real
//! Prometheus (Debian's `prometheus` package) scraping a sink counts every
//! row and fires the stalled alert while MySQL is held down.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use kafka_mysql_sink::pipeline::RunOptions;
use relay::Relay;

#[path = "common/relay.rs"]
mod relay;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/kafka-mysql-sink.json"
);
const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");

/// Series Prometheus makes itself for every target.
const SYNTHETIC: &[&str] = &["up"];

/// The metric names a PromQL expression reads: identifiers outside
/// strings, label matchers, ranges and grouping clauses that are not
/// functions, keywords or Grafana variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // A Grafana variable query, `label_values(metric{...}, label)`: the
    // label is no metric.
    if let Some(args) = expr.trim().strip_prefix("label_values(") {
        let selector = args.rsplit_once(',').map_or(args, |(m, _)| m);
        return metric_names(selector);
    }
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| -> usize {
        let mut j = from;
        while j < chars.len() && chars[j] != close {
            if chars[j] == '"' {
                j += 1;
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
            }
            j += 1;
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' => i = skip_to(i + 1, '}'),
            '[' => i = skip_to(i + 1, ']'),
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let next_word: String = chars[j..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .collect();
                // `sum by (le) (...)`: an aggregation, its clause first.
                let call =
                    chars.get(j) == Some(&'(') || GROUPING[..2].contains(&next_word.as_str());
                if GROUPING.contains(&word.as_str()) {
                    if call {
                        i = skip_to(j + 1, ')');
                    }
                } else if !call && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every sample name `/metrics` exports, families with no samples yet
/// included (from their `# TYPE` lines).
fn exported(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            if let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty()) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// Every PromQL expression of the dashboard: panel targets and variable
/// queries.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The `expr` of every rule in a rules file (single-line or a `|` block).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            out.push(rest.to_string());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent;
            if !deeper && !next.trim().is_empty() {
                break;
            }
            block.push_str(next.trim());
            block.push(' ');
            lines.next();
        }
        out.push(block);
    }
    out
}

#[test]
fn promql_names_are_read_past_labels_ranges_functions_and_variables() {
    let expr = r#"histogram_quantile(0.9, sum by (le, table) (rate(a_bucket{job=~"$job", x="b{c}"}[$__rate_interval]))) - on (job) b_total offset 5m and time() > 1e3 or max without (x) (c)"#;
    let want: BTreeSet<String> = ["a_bucket", "b_total", "c"].map(String::from).into();
    assert_eq!(metric_names(expr), want);
    let want: BTreeSet<String> = ["d"].map(String::from).into();
    assert_eq!(
        metric_names(r#"label_values(d{job=~"$job"}, instance)"#),
        want
    );
}

#[test]
fn the_dashboard_and_the_alerts_read_only_metrics_a_live_sink_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    // The variables an operator picks from.
    let vars: Vec<(&str, &str)> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["type"].as_str().unwrap()))
        .collect();
    for want in [
        ("datasource", "datasource"),
        ("job", "query"),
        ("instance", "query"),
    ] {
        assert!(vars.contains(&want), "{want:?} not in {vars:?}");
    }
    let exprs = dashboard_exprs(&dashboard);
    let alerts = rule_exprs(&std::fs::read_to_string(ALERTS).unwrap());
    assert_eq!(alerts.len(), 8, "{alerts:?}");
    // Every panel query selects by the variables.
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let e = t["expr"].as_str().unwrap();
            assert!(
                e.contains("job=~\"$job\"") && e.contains("instance=~\"$instance\""),
                "{e}"
            );
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{e}");
        }
    }

    let mut conn = mysql();
    let parts = 2;
    let (_cluster, t) = target(&mut conn, "dashboard", parts);
    let mut config = test_config(&t.brokers, &t.topic, &t.group, &t.db);
    let port = free_port();
    config.metrics.listen = format!("127.0.0.1:{port}");
    let sink = start_sink(config, RunOptions::default());
    let n = 200;
    produce_orders(&t, parts, n);
    // Per-partition and per-table families have their children once rows
    // were written and lag was measured.
    let rows = "kafka_mysql_sink_rows_written_total";
    assert!(wait_for(Duration::from_secs(60), || {
        scrape(port, rows) == Some(n as f64)
            && scrape(
                port,
                &format!(
                    "kafka_mysql_sink_consumer_lag{{topic=\"{}\",partition=\"0\"}}",
                    t.topic
                ),
            )
            .is_some()
    }));
    let (_, body) = get(port, "/metrics").unwrap();
    sink.stop();
    drop_db(&mut conn, &t.db);

    let have = exported(&body);
    let mut read = BTreeSet::new();
    for e in exprs.iter().chain(&alerts) {
        read.extend(metric_names(e));
    }
    let missing: Vec<&String> = read
        .iter()
        .filter(|m| !have.contains(*m) && !SYNTHETIC.contains(&m.as_str()))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{body}");
    // The new metrics among them, so the check has teeth.
    for m in [
        "kafka_mysql_sink_write_duration_seconds_bucket",
        "kafka_mysql_sink_event_lag_seconds_bucket",
        "kafka_mysql_sink_newest_durable_timestamp_seconds",
        "kafka_mysql_sink_ready",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            read.contains(m),
            "{m} is not on the dashboard or in an alert"
        );
    }
    // One write per batch, and a lag observed for every message.
    assert!(
        sample(
            &body,
            "kafka_mysql_sink_write_duration_seconds_count{table=\"orders\",outcome=\"committed\"}"
        )
        .is_some_and(|c| c >= 1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "kafka_mysql_sink_event_lag_seconds_count"),
        Some(n as f64)
    );
}

/// Prometheus on loopback: its own config, storage in a scratch directory,
/// stopped (killed) when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `prometheus` binary. A test that needs it fails when it is missing,
/// as one that needs MariaDB does: a skipped test must never count as a
/// passed one.
fn prometheus_binary() -> PathBuf {
    let bin = PathBuf::from(std::env::var("KMS_PROMETHEUS").unwrap_or("prometheus".into()));
    match Command::new(&bin).arg("--version").output() {
        Ok(out) if out.status.success() => bin,
        other => panic!(
            "this test needs the Prometheus server ({}): {other:?}\n\
             install it with `apt-get install -y prometheus` (only the binary is used; \
             the test starts its own on 127.0.0.1), or point KMS_PROMETHEUS at one",
            bin.display()
        ),
    }
}

/// The shipped rules with every `for:` and range window shortened to
/// seconds, so that an alert's whole life fits in a bounded test.
fn rules_for_test() -> String {
    let text = std::fs::read_to_string(ALERTS).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let line = if line.trim_start().starts_with("for:") {
            let indent = line.len() - line.trim_start().len();
            format!("{}for: 2s", " ".repeat(indent))
        } else {
            let mut l = line.to_string();
            for w in ["[5m]", "[10m]", "[15m]"] {
                l = l.replace(w, "[5s]");
            }
            l
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert!(out.contains("for: 2s") && out.contains("[5s]"), "{out}");
    out
}

impl Prometheus {
    fn start(bin: &Path, dir: &Path, sink_port: u16) -> Prometheus {
        std::fs::write(dir.join("alerts.yml"), rules_for_test()).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: kafka-mysql-sink\n    static_configs:\n      \
             - targets: ['127.0.0.1:{sink_port}']\n",
            rules = dir.join("alerts.yml").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, port };
        assert!(
            wait_for(Duration::from_secs(30), || get(port, "/-/ready")
                .is_some_and(|(s, _)| s == 200)),
            "prometheus did not become ready: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        p
    }

    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let (status, body) = get(self.port, path)?;
        (status == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// The value of an instant query that yields one sample.
    fn value(&self, query: &str) -> Option<f64> {
        let v = self.api(&format!("/api/v1/query?query={}", encode(query)))?;
        let result = v["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// The state (`pending`, `firing`) of `alert` on the sink's job, if it
    /// is active.
    fn alert_state(&self, alert: &str) -> Option<String> {
        let v = self.api("/api/v1/alerts")?;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == alert)
            .and_then(|a| a["state"].as_str().map(String::from))
    }
}

/// `s` percent-encoded for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_counts_every_row_and_the_stalled_alert_fires_while_mysql_is_held_down() {
    let bin = prometheus_binary();
    let dir = scratch_dir("prometheus");
    let mut conn = mysql();
    let parts = 4;
    let (_cluster, t) = target(&mut conn, "prometheus", parts);
    let relay = Relay::start(mysql_port());
    let mut config = test_config(&t.brokers, &t.topic, &t.group, &t.db);
    config.mysql.port = relay.port();
    // Small batches and channels: while MySQL is held, most of the second
    // wave waits in Kafka and the channels, which is what "stalled" means.
    config.sink.batch_size = 100;
    config.sink.channel_capacity = 128;
    let sink_port = free_port();
    config.metrics.listen = format!("127.0.0.1:{sink_port}");
    let sink = start_sink(config, RunOptions::default());
    let prom = Prometheus::start(&bin, &dir, sink_port);

    let n = 2_000u64;
    produce_orders(&t, parts, n);
    let rows = "sum(kafka_mysql_sink_rows_written_total{job=\"kafka-mysql-sink\"})";
    assert!(
        wait_for(Duration::from_secs(120), || prom.value(rows)
            == Some(n as f64)),
        "Prometheus saw {:?} rows written of {n}",
        prom.value(rows)
    );
    assert_eq!(
        prom.value("sum(kafka_mysql_sink_messages_consumed_total)"),
        Some(n as f64)
    );
    assert_eq!(prom.value("up{job=\"kafka-mysql-sink\"}"), Some(1.0));
    assert_eq!(prom.alert_state("KafkaMysqlSinkStalled"), None);

    // MySQL held down while more orders arrive: nothing can be written.
    relay.hold();
    produce_order_range_from(&t.brokers, &t.topic, parts, n, 2 * n);
    let fired = wait_for(Duration::from_secs(90), || {
        prom.alert_state("KafkaMysqlSinkStalled").as_deref() == Some("firing")
    });
    let held_rows = prom.value(rows);
    relay.pass();
    assert!(fired, "the stalled alert did not fire while MySQL was held");
    assert_eq!(held_rows, Some(n as f64), "rows were written while held");

    // MySQL back: everything lands and the alert clears.
    assert!(wait_for(Duration::from_secs(120), || count(
        &mut conn, &t.db, "orders"
    ) == 2 * n));
    assert!(
        wait_for(Duration::from_secs(60), || prom
            .alert_state("KafkaMysqlSinkStalled")
            .is_none()),
        "the stalled alert did not clear: {:?}",
        prom.alert_state("KafkaMysqlSinkStalled")
    );
    assert!(prom.value(rows).is_some_and(|r| r > n as f64));
    // Every panel's query is PromQL this Prometheus accepts, with the
    // dashboard's variables as Grafana would fill them in.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    for e in dashboard_exprs(&dashboard) {
        if e.starts_with("label_values(") {
            continue;
        }
        let q = e
            .replace("$__rate_interval", "5s")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        let answer = prom.api(&format!("/api/v1/query?query={}", encode(&q)));
        assert!(
            answer.is_some_and(|a| a["status"] == "success"),
            "Prometheus refuses {q}"
        );
    }
    sink.stop();
    drop(prom);
    drop_db(&mut conn, &t.db);
    let _ = std::fs::remove_dir_all(&dir);
}
