//! Operations: run-to-end mode, the metrics and health endpoints, `check`.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const FAST: &str =
    "[kafka]\ncommit_interval_ms = 200\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
                    [sink]\nflush_interval_ms = 50\nstats_interval_ms = 500\n";

#[test]
fn until_caught_up_exits_with_a_summary_and_promptly_on_an_empty_topic() {
    let mut conn = mysql();
    let parts = 4;
    let dir = scratch_dir("caughtup-bin");
    let (_cluster, mut t) = target(&mut conn, "caughtupbin", parts);
    t.group = "caughtup-bin".into();
    let config = write_config(&dir, FAST);

    let mut empty = spawn_sink(
        &t,
        &config,
        dir.join("empty.log"),
        &["--until-caught-up"],
        &[],
    );
    let status = empty.wait(Duration::from_secs(90));
    assert_eq!(status.code(), Some(0), "{}", empty.log_text());
    // Nothing to read: nothing written, nothing committed.
    assert_eq!(count(&mut conn, &t.db, "orders"), 0);
    assert_eq!(
        committed(&t.brokers, &t.group, &t.topic, parts),
        vec![-1; parts as usize]
    );

    let n = 30_000u64;
    produce_orders(&t, parts, n);
    let mut run = spawn_sink(
        &t,
        &config,
        dir.join("run.log"),
        &["--until-caught-up"],
        &[],
    );
    let status = run.wait(Duration::from_secs(300));
    let log = run.log_text();
    assert_eq!(status.code(), Some(0), "{log}");
    // It exited because the backlog is done: every row is there and every
    // partition is committed to its end.
    assert_drained(&mut conn, &t, n, parts);
    // The summary and, not being on a terminal, the progress are the
    // command's output for whoever runs it.
    assert!(
        log.lines().any(|l| l.contains("stopped: rows_written=")),
        "no summary line:\n{log}"
    );
    assert!(log.contains("progress: done="), "{log}");
    drop_db(&mut conn, &t.db);
}

/// A config in `dir` whose batches never fill and whose flush interval is
/// an hour: a writer holds its rows until told otherwise.
fn never_flushing(dir: &std::path::Path) -> std::path::PathBuf {
    let body = FAST.replace(
        "flush_interval_ms = 50\n",
        "flush_interval_ms = 3600000\nbatch_size = 100000\n",
    );
    assert!(body.contains("3600000"), "{body}");
    write_config(dir, &body)
}

#[test]
fn until_caught_up_writes_its_last_partial_batches_without_waiting_out_the_flush_interval() {
    let mut conn = mysql();
    let parts = 4;
    let dir = scratch_dir("endflush");
    let (_cluster, mut t) = target(&mut conn, "endflush", parts);
    t.group = "endflush".into();
    // Only being told that everything is read lets the writers write.
    let config = never_flushing(&dir);
    let n = 5_000u64;
    produce_orders(&t, parts, n);
    let mut run = spawn_sink(
        &t,
        &config,
        dir.join("run.log"),
        &["--until-caught-up"],
        &[],
    );
    // Far sooner than the hour; a minute or two on a slow machine.
    let status = run.wait(Duration::from_secs(180));
    assert_eq!(status.code(), Some(0), "{}", run.log_text());
    assert_drained(&mut conn, &t, n, parts);
    drop_db(&mut conn, &t.db);
}

#[test]
fn until_caught_up_ends_on_a_topic_still_being_written_to() {
    let mut conn = mysql();
    let parts = 4;
    let dir = scratch_dir("livebackfill");
    let (_cluster, mut t) = target(&mut conn, "livebackfill", parts);
    t.group = "livebackfill".into();
    // A row handed to a writer after the writers were told of the end
    // would stay in flight, and the run would never see a moment with
    // nothing in flight.
    let config = never_flushing(&dir);
    // A backlog that takes the writers a while once they are told: new
    // orders arrive meanwhile.
    let n = 40_000u64;
    produce_orders(&t, parts, n);
    let ends = end_offsets(&t.brokers, &t.topic, parts);
    // Orders keep coming while the backfill runs, in the same spread.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, brokers, topic) = (stop.clone(), t.brokers.clone(), t.topic.clone());
        std::thread::spawn(move || produce_orders_until(&brokers, &topic, parts, n, &stop))
    };
    let mut run = spawn_sink(
        &t,
        &config,
        dir.join("run.log"),
        &["--until-caught-up"],
        &[],
    );
    let status = run.wait(Duration::from_secs(180));
    stop.store(true, Ordering::Relaxed);
    let produced = producer.join().unwrap();
    assert_eq!(status.code(), Some(0), "{}", run.log_text());
    // Done up to where each partition ended when the run began, at least,
    // and everything committed is in the table.
    let committed = committed(&t.brokers, &t.group, &t.topic, parts);
    for p in 0..parts as usize {
        assert!(committed[p] >= ends[p], "{committed:?} against {ends:?}");
    }
    assert_committed_is_durable(&mut conn, &t.db, &committed, produced);
    // What came after the targets was left for the next run.
    let written = count(&mut conn, &t.db, "orders");
    assert!((n..produced).contains(&written), "{written} of {produced}");
    drop_db(&mut conn, &t.db);
}

#[test]
fn metrics_count_what_was_written_and_readyz_turns_ready() {
    let mut conn = mysql();
    let parts = 4;
    let dir = scratch_dir("metrics");
    let (_cluster, mut t) = target(&mut conn, "metrics", parts);
    t.group = "metrics-group".into();
    // As many connections as writers: the pool has none to spare once the
    // writers hold theirs, which the readiness probe must not depend on.
    let config = write_config(
        &dir,
        &format!(
            "{}[mysql]\npool_size = 2\n",
            FAST.replace("[sink]\n", "[sink]\nwriters = 2\n")
        ),
    );
    let (port, metrics) = metrics_env();
    let mut sink = spawn_sink(&t, &config, dir.join("metrics.log"), &[], &[metrics]);
    assert!(
        wait_for(Duration::from_secs(60), || get(port, "/healthz")
            .is_some_and(|(s, _)| s == 200)),
        "no /healthz:\n{}",
        sink.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(60), || get(port, "/readyz")
            .is_some_and(|(s, _)| s == 200)),
        "never ready:\n{}",
        sink.log_text()
    );
    let n = 20_000u64;
    produce_orders(&t, parts, n);
    produce_payloads(&t.brokers, &t.topic, 0, &[b"not json"]);
    assert!(wait_caught_up(
        &t.brokers,
        &t.group,
        &t.topic,
        parts,
        Duration::from_secs(240)
    ));
    let end = end_offsets(&t.brokers, &t.topic, parts);
    // Gauges follow at the next commit tick.
    let mut body = String::new();
    let settled = wait_for(Duration::from_secs(30), || {
        body = get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
        (0..parts).all(|p| {
            sample(
                &body,
                &format!(
                    "kafka_mysql_sink_committed_offset{{topic=\"{}\",partition=\"{p}\"}}",
                    t.topic
                ),
            ) == Some(end[p as usize] as f64)
        })
    });
    assert!(settled, "committed offsets not exported:\n{body}");
    assert_eq!(
        sample(&body, "kafka_mysql_sink_rows_written_total"),
        Some(n as f64),
        "{body}"
    );
    assert_eq!(
        sample(&body, "kafka_mysql_sink_messages_consumed_total"),
        Some(n as f64 + 1.0)
    );
    assert_eq!(
        sample(&body, "kafka_mysql_sink_dead_lettered_total"),
        Some(1.0)
    );
    assert!(
        body.contains("kafka_mysql_sink_batch_duration_seconds_bucket"),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!(
                "kafka_mysql_sink_consumer_lag{{topic=\"{}\",partition=\"0\"}}",
                t.topic
            )
        ),
        Some(0.0),
        "{body}"
    );
    assert!(body.contains("kafka_mysql_sink_channel_depth"), "{body}");
    assert_eq!(
        get(port, "/readyz").map(|(s, _)| s),
        Some(200),
        "not ready once the writers hold every pooled connection"
    );
    assert!(
        body.contains("kafka_mysql_sink_pool_connections_in_use"),
        "{body}"
    );
    // Every message made durable had its lag measured; the newest durable
    // timestamps are the orders', produced moments ago.
    assert_eq!(
        sample(&body, "kafka_mysql_sink_event_lag_seconds_count"),
        Some(n as f64 + 1.0),
        "{body}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for p in 0..parts {
        let newest = sample(
            &body,
            &format!(
                "kafka_mysql_sink_newest_durable_timestamp_seconds{{topic=\"{}\",partition=\"{p}\"}}",
                t.topic
            ),
        )
        .unwrap_or_else(|| panic!("no newest timestamp for {p}:\n{body}"));
        assert!(
            (now - 600.0..=now + 1.0).contains(&newest),
            "{newest} vs {now}"
        );
    }
    assert!(
        sample(
            &body,
            "kafka_mysql_sink_write_duration_seconds_count{table=\"orders\",outcome=\"committed\"}"
        )
        .is_some_and(|c| c >= 1.0),
        "{body}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || scrape(
            port,
            "kafka_mysql_sink_ready"
        ) == Some(1.0)),
        "the ready gauge does not say ready"
    );
    assert_eq!(count(&mut conn, &t.db, "orders"), n);
    sink.signal("TERM");
    assert!(sink.wait(Duration::from_secs(60)).success());
    drop_db(&mut conn, &t.db);
}

#[test]
fn json_logs_are_one_object_per_line_with_the_message_coordinates() {
    let mut conn = mysql();
    let parts = 2;
    let dir = scratch_dir("jsonlogs");
    let (_cluster, mut t) = target(&mut conn, "jsonlogs", parts);
    t.group = "jsonlogs".into();
    // The format from the file: logging starts before the file is read.
    let config = write_config(
        &dir,
        &format!("{FAST}[dead_letter]\nmode = \"skip\"\n[log]\nformat = \"json\"\n"),
    );
    produce_orders(&t, parts, 10);
    produce_payloads(&t.brokers, &t.topic, 1, &[b"not json"]);
    let bad_offset = end_offsets(&t.brokers, &t.topic, parts)[1] - 1;
    let mut run = spawn_sink(
        &t,
        &config,
        dir.join("run.log"),
        &["--until-caught-up"],
        &[],
    );
    assert_eq!(run.wait(Duration::from_secs(120)).code(), Some(0));
    let log = run.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{log}")))
        .collect();
    assert!(lines.len() > 3, "{log}");
    for l in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(l[key].is_string(), "{key} missing: {l}");
        }
    }
    // The skipped message is logged with its coordinates as fields.
    let skipped: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["offset"].is_number()).collect();
    assert_eq!(skipped.len(), 1, "{log}");
    assert_eq!(skipped[0]["topic"], t.topic.as_str());
    assert_eq!(skipped[0]["partition"], 1);
    assert_eq!(skipped[0]["offset"], bad_offset);
    assert_eq!(skipped[0]["level"], "WARN");

    // An unknown format is a configuration error.
    let mut bad = spawn_sink(
        &t,
        &config,
        dir.join("bad.log"),
        &["--until-caught-up"],
        &[("LOG_FORMAT", "xml".into())],
    );
    assert_eq!(bad.wait(Duration::from_secs(30)).code(), Some(2));
    drop_db(&mut conn, &t.db);
}

/// `(consumer_lag series, assigned_partitions)` on a sink's `/metrics`.
fn lag_series(port: u16) -> Option<(f64, f64)> {
    let (_, body) = get(port, "/metrics")?;
    let series = body
        .lines()
        .filter(|l| l.starts_with("kafka_mysql_sink_consumer_lag{"))
        .count();
    Some((
        series as f64,
        sample(&body, "kafka_mysql_sink_assigned_partitions")?,
    ))
}

#[test]
fn a_member_that_lost_partitions_reports_lag_only_for_those_it_holds() {
    let mut conn = mysql();
    let parts = 4;
    let dir = scratch_dir("lagseries");
    let (_cluster, mut t) = target(&mut conn, "lagseries", parts);
    t.group = "lagseries".into();
    let config = write_config(&dir, FAST);
    produce_orders(&t, parts, 1_000);
    let (port_a, env_a) = metrics_env();
    let mut a = spawn_sink(&t, &config, dir.join("a.log"), &[], &[env_a]);
    assert!(
        wait_for(Duration::from_secs(60), || lag_series(port_a)
            == Some((4.0, 4.0))),
        "{}",
        a.log_text()
    );
    // A second member takes some of the partitions from the first.
    let (port_b, env_b) = metrics_env();
    let mut b = spawn_sink(&t, &config, dir.join("b.log"), &[], &[env_b]);
    assert!(
        wait_for(Duration::from_secs(90), || lag_series(port_b)
            .is_some_and(|(_, held)| held > 0.0)),
        "{}",
        b.log_text()
    );
    // A stale series would read as lag waiting on a member that no longer
    // holds the partition (and keep the stalled alert up there).
    assert!(
        wait_for(Duration::from_secs(30), || lag_series(port_a)
            .is_some_and(|(series, held)| series == held && held < 4.0)),
        "{:?}",
        lag_series(port_a)
    );
    for s in [&a, &b] {
        s.signal("TERM");
    }
    assert!(a.wait(Duration::from_secs(60)).success());
    assert!(b.wait(Duration::from_secs(60)).success());
    drop_db(&mut conn, &t.db);
}

/// The ConfigMap's sink.toml is a configuration the sink accepts.
#[test]
fn the_kubernetes_config_map_holds_a_valid_sink_toml() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/configmap.yaml"
    ))
    .unwrap();
    let (_, block) = yaml.split_once("sink.toml: |\n").expect("a sink.toml key");
    let toml: String = block
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let dir = scratch_dir("configmap");
    let path = write_config(&dir, &toml);
    let config = kafka_mysql_sink::config::Config::load(Some(&path), &|_| None)
        .unwrap_or_else(|e| panic!("{e}:\n{toml}"));
    assert_eq!(config.metrics.listen, "0.0.0.0:9187");
    assert_eq!(config.log.format, kafka_mysql_sink::config::LogFormat::Json);
}

/// Runs `check`: its exit code and what it printed.
fn check(env: &[(&str, String)]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("check")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_passes_when_all_is_reachable_and_names_the_problem_otherwise() {
    let mut conn = mysql();
    let cluster = mock_cluster("enriched_orders", 3);
    let db = fresh_db(&mut conn, "check");
    let base = vec![
        ("KAFKA_BROKERS", cluster.bootstrap_servers()),
        ("MYSQL_HOST", "127.0.0.1".to_string()),
        ("MYSQL_PORT", mysql_port().to_string()),
        ("MYSQL_DATABASE", db.clone()),
        ("RUST_LOG", "off".to_string()),
    ];
    let (code, text) = check(&base);
    assert_eq!(code, Some(0), "{text}");
    // config, kafka, mysql, table, offsets table, positions, dead-letter table.
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        7,
        "{text}"
    );
    assert!(
        text.contains("topic enriched_orders has 3 partition(s)"),
        "{text}"
    );
    assert!(text.contains("will be created"), "{text}");
    assert!(!text.contains("password=root"), "{text}");

    let mut wrong_password = base.clone();
    wrong_password.push(("MYSQL_PASSWORD", "not-the-password".into()));
    let (code, text) = check(&wrong_password);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL mysql") && text.contains("Access denied"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");

    let mut no_broker = base.clone();
    no_broker[0] = ("KAFKA_BROKERS", format!("127.0.0.1:{}", free_port()));
    let (code, text) = check(&no_broker);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL kafka") && text.contains("cannot reach Kafka at 127.0.0.1:"),
        "{text}"
    );

    let mut no_topic = base.clone();
    no_topic.push(("SOURCE_TOPIC", "no_such_topic".into()));
    let (code, text) = check(&no_topic);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL kafka") && text.contains("no_such_topic"),
        "{text}"
    );

    let mut bad_config = base;
    bad_config.push(("SINK_BATCH_SIZE", "lots".into()));
    let out = Command::new(BIN)
        .arg("check")
        .envs(bad_config.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("SINK_BATCH_SIZE"), "{stderr}");
}
