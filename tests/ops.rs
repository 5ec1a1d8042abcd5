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
                &format!("kafka_mysql_sink_committed_offset{{partition=\"{p}\"}}"),
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
        sample(&body, "kafka_mysql_sink_consumer_lag{partition=\"0\"}"),
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
    assert_eq!(count(&mut conn, &t.db, "orders"), n);
    sink.signal("TERM");
    assert!(sink.wait(Duration::from_secs(60)).success());
    drop_db(&mut conn, &t.db);
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
