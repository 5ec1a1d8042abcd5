//! Several topics in one run, with the real binary: two topics into two
//! tables (one with a column fed from a Kafka header), exactly-once, killed
//! twice and restarted.

mod common;

use std::time::Duration;

use mysql::prelude::Queryable;

use common::*;

const CUSTOMERS: &str = "shop-customers";
const PAYMENTS: &str = "shop-payments";

/// Both tables, and for each an audit of every version a statement applied,
/// which triggers fill in the writers' own transactions: a version applied
/// twice is there twice.
fn create_tables(conn: &mut mysql::Conn, db: &str) {
    conn.query_drop(format!("CREATE DATABASE `{db}`")).unwrap();
    for ddl in [
        format!(
            "CREATE TABLE `{db}`.`customers` (tenant_id INT NOT NULL, id VARCHAR(64) NOT NULL, \
             name VARCHAR(100) NOT NULL, version INT NOT NULL, PRIMARY KEY (tenant_id, id))"
        ),
        format!(
            "CREATE TABLE `{db}`.`payments` (id BIGINT NOT NULL PRIMARY KEY, \
             amount DECIMAL(12,2) NOT NULL, version INT NOT NULL, trace VARCHAR(40) NULL)"
        ),
        format!(
            "CREATE TABLE `{db}`.`applied` (tbl VARCHAR(16) NOT NULL, k VARCHAR(80) NOT NULL, \
             version INT NOT NULL)"
        ),
    ] {
        conn.query_drop(ddl).unwrap();
    }
    for (table, key) in [
        ("customers", "CONCAT(NEW.tenant_id, ':', NEW.id)"),
        ("payments", "CAST(NEW.id AS CHAR)"),
    ] {
        for event in ["INSERT", "UPDATE"] {
            conn.query_drop(format!(
                "CREATE TRIGGER `{db}`.`{table}_{event}` AFTER {event} ON `{db}`.`{table}` \
                 FOR EACH ROW INSERT INTO `{db}`.`applied` VALUES ('{table}', {key}, NEW.version)"
            ))
            .unwrap();
        }
    }
}

const KEYS: u64 = 600;
const VERSIONS: u64 = 5;

/// Every key's versions `0..VERSIONS`, in order, each key on one partition.
fn produce_versions(brokers: &str, parts: i32) {
    let mut customers = Vec::new();
    let mut payments = Vec::new();
    for v in 0..VERSIONS {
        for k in 0..KEYS {
            let p = (k % parts as u64) as i32;
            let (tenant, id) = (k % 7, format!("c-{k}"));
            customers.push((
                p,
                id.clone().into_bytes(),
                format!(
                    r#"{{"tenant_id":{tenant},"id":"{id}","name":"name {k} v{v}","version":{v}}}"#
                )
                .into_bytes(),
            ));
            payments.push((
                p,
                k.to_string().into_bytes(),
                format!(r#"{{"id":{k},"amount":"{k}.{v:02}","version":{v}}}"#).into_bytes(),
            ));
        }
    }
    produce(brokers, CUSTOMERS, customers);
    produce_traced(brokers, PAYMENTS, payments);
}

/// As `produce`, each record with a `trace` header naming its key.
fn produce_traced(brokers: &str, topic: &str, records: Vec<(i32, Vec<u8>, Vec<u8>)>) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (partition, key, payload) in records {
        let trace = format!("trace-{}", String::from_utf8_lossy(&key));
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some(trace.as_str()),
        });
        let record = BaseRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

const CONFIG: &str = r#"
[kafka]
commit_interval_ms = 100
[kafka.properties]
"session.timeout.ms" = "6000"
[mysql]
pool_size = 3
[sink]
batch_size = 40
writers = 2
flush_interval_ms = 20

[[routes]]
topics = ["shop-customers"]
table = "customers"

[[routes]]
topics = ["shop-payments"]
table = "payments"
[routes.columns]
id = "id"
amount = "amount"
version = "version"
trace = "@header.trace"
"#;

#[test]
fn two_topics_into_two_tables_exactly_once_through_two_kills() {
    let mut conn = mysql();
    let parts = 4;
    let db = fresh_db(&mut conn, "topics");
    create_tables(&mut conn, &db);
    let cluster = mock_cluster(CUSTOMERS, parts);
    cluster.create_topic(PAYMENTS, parts, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    produce_versions(&brokers, parts);
    let t = Target {
        brokers: brokers.clone(),
        topic: CUSTOMERS.into(),
        group: "topics-group".into(),
        db: db.clone(),
    };
    let dir = scratch_dir("topics");
    let config = write_config(&dir, CONFIG);
    let applied = |conn: &mut mysql::Conn| -> u64 {
        conn.query_first(format!("SELECT COUNT(*) FROM `{db}`.`applied`"))
            .unwrap()
            .unwrap_or(0)
    };
    let total = 2 * KEYS * VERSIONS;
    // Killed twice at different depths of the backlog.
    for (round, at) in [(1u64, total / 5), (2, total / 2)] {
        let mut sink = spawn_sink(&t, &config, dir.join(format!("run{round}.log")), &[], &[]);
        assert!(
            wait_for(Duration::from_secs(120), || applied(&mut conn) >= at),
            "{}",
            sink.log_text()
        );
        sink.signal("KILL");
        sink.wait(Duration::from_secs(10));
    }
    let mut last = spawn_sink(
        &t,
        &config,
        dir.join("last.log"),
        &["--until-caught-up"],
        &[],
    );
    let status = last.wait(Duration::from_secs(240));
    assert!(status.success(), "{}", last.log_text());

    // Both tables exact: each key at its last version.
    let customers: Vec<(u64, String, String, u64)> = conn
        .query(format!(
            "SELECT tenant_id, id, name, version FROM `{db}`.`customers` ORDER BY tenant_id, id"
        ))
        .unwrap();
    let mut want: Vec<(u64, String, String, u64)> = (0..KEYS)
        .map(|k| {
            let v = VERSIONS - 1;
            (k % 7, format!("c-{k}"), format!("name {k} v{v}"), v)
        })
        .collect();
    want.sort();
    assert_eq!(customers, want);
    let payments: Vec<(u64, String, u64, String)> = conn
        .query(format!(
            "SELECT id, CAST(amount AS CHAR), version, trace FROM `{db}`.`payments` ORDER BY id"
        ))
        .unwrap();
    let want: Vec<(u64, String, u64, String)> = (0..KEYS)
        .map(|k| {
            (
                k,
                format!("{k}.{:02}", VERSIONS - 1),
                VERSIONS - 1,
                format!("trace-{k}"),
            )
        })
        .collect();
    assert_eq!(payments, want);

    // Every version applied once, none twice, in both tables.
    let twice: u64 = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM (SELECT tbl, k, version FROM `{db}`.`applied` \
             GROUP BY tbl, k, version HAVING COUNT(*) > 1) AS d"
        ))
        .unwrap()
        .unwrap();
    assert_eq!(twice, 0, "versions applied more than once");
    assert_eq!(applied(&mut conn), total);

    // Offsets per topic: Kafka's and MySQL's, each at its topic's end.
    for topic in [CUSTOMERS, PAYMENTS] {
        let end = end_offsets(&brokers, topic, parts);
        assert_eq!(committed(&brokers, &t.group, topic, parts), end, "{topic}");
        let next: Vec<i64> = conn
            .query(format!(
                "SELECT next_offset FROM `{db}`.`orders_offsets` WHERE topic = '{topic}' \
                 ORDER BY kafka_partition"
            ))
            .unwrap();
        assert_eq!(next, end, "{topic} in MySQL");
    }
    drop_db(&mut conn, &db);
}

#[test]
fn a_topic_created_after_start_that_a_pattern_takes_is_read_into_its_table() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "pattern");
    conn.query_drop(format!("CREATE DATABASE `{db}`")).unwrap();
    for table in ["ev_clicks", "ev_views"] {
        conn.query_drop(format!(
            "CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL PRIMARY KEY, v INT NOT NULL)"
        ))
        .unwrap();
    }
    let cluster = mock_cluster("ev.clicks", 2);
    // Its table would be `ev_x.y`, not a name the sink writes: refused,
    // never read, and the run goes on.
    cluster.create_topic("ev.x.y", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let events = |topic: &str, n: u64| {
        let records = (0..n).map(|i| {
            (
                (i % 2) as i32,
                i.to_string().into_bytes(),
                format!(r#"{{"id":{i},"v":{}}}"#, i * 10).into_bytes(),
            )
        });
        produce(&brokers, topic, records.collect::<Vec<_>>());
    };
    events("ev.clicks", 50);
    produce(&brokers, "ev.x.y", vec![(0, b"1".to_vec(), b"{}".to_vec())]);
    let t = Target {
        brokers: brokers.clone(),
        topic: "ev.clicks".into(),
        group: "pattern-group".into(),
        db: db.clone(),
    };
    let dir = scratch_dir("pattern");
    let config = write_config(
        &dir,
        "[kafka]\ncommit_interval_ms = 100\ntopic_refresh_ms = 300\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
         [sink]\nflush_interval_ms = 20\n\
         [[routes]]\ntopic_pattern = \"ev[.](.+)\"\ntable = \"ev_{1}\"\n",
    );
    let rows = |conn: &mut mysql::Conn, table: &str| -> u64 {
        conn.query_first(format!("SELECT COUNT(*) FROM `{db}`.`{table}`"))
            .unwrap()
            .unwrap_or(0)
    };
    let mut sink = spawn_sink(&t, &config, dir.join("sink.log"), &[], &[]);
    assert!(
        wait_for(Duration::from_secs(60), || rows(&mut conn, "ev_clicks")
            == 50),
        "{}",
        sink.log_text()
    );
    cluster.create_topic("ev.views", 2, 1).unwrap();
    events("ev.views", 30);
    events("ev.clicks", 60);
    assert!(
        wait_for(Duration::from_secs(90), || rows(&mut conn, "ev_views")
            == 30
            && rows(&mut conn, "ev_clicks") == 60),
        "{}",
        sink.log_text()
    );
    let want: Vec<(u64, u64)> = (0..30).map(|i| (i, i * 10)).collect();
    let got: Vec<(u64, u64)> = conn
        .query(format!("SELECT id, v FROM `{db}`.`ev_views` ORDER BY id"))
        .unwrap();
    assert_eq!(got, want);
    sink.signal("TERM");
    let status = sink.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", sink.log_text());
    for topic in ["ev.clicks", "ev.views"] {
        assert_eq!(
            committed(&brokers, &t.group, topic, 2),
            end_offsets(&brokers, topic, 2),
            "{topic}"
        );
    }
    // The refused topic was never read: nothing of it is committed.
    assert_eq!(committed(&brokers, &t.group, "ev.x.y", 1), vec![-1]);
    drop_db(&mut conn, &db);
}
