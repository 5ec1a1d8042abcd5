//! Tables as the real server describes them, and the plans `check` prints
//! from them (issue #23's foundation; tests/routes.rs runs them).

mod common;

use std::process::Command;

use common::*;
use kafka_mysql_sink::internals::{describe_table, ensure_table, server_info, TypeClass};
use mysql::prelude::Queryable;

/// The issue's table: a composite key, every class of value, a nullable
/// column with a default, a generated column, a secondary UNIQUE key.
const EVENTS: &str = "CREATE TABLE `{db}`.`events` (
    tenant_id INT NOT NULL,
    id VARCHAR(64) NOT NULL,
    amount DECIMAL(18,6) NOT NULL,
    happened_at DATETIME(6) NOT NULL,
    seen_at TIMESTAMP(3) NULL,
    day DATE,
    flag BOOLEAN NOT NULL DEFAULT 0,
    doc JSON,
    raw VARBINARY(16),
    state ENUM('new','paid') NOT NULL DEFAULT 'new',
    note VARCHAR(20) NULL DEFAULT 'none',
    doubled DECIMAL(20,6) AS (amount * 2) VIRTUAL,
    email VARCHAR(100) COLLATE utf8mb4_bin,
    counter BIGINT UNSIGNED,
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY uq_email (email, tenant_id)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

fn create_events(conn: &mut mysql::Conn, db: &str) {
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{db}`"))
        .unwrap();
    conn.query_drop(EVENTS.replace("{db}", db)).unwrap();
}

#[test]
fn the_server_describes_every_kind_of_column_and_key() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "describe");
    create_events(&mut conn, &db);
    let version = server_info(&mut conn).unwrap().version;
    let t = describe_table(&mut conn, &db, "events", &version)
        .unwrap()
        .expect("the table is there");
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenant_id",
            "id",
            "amount",
            "happened_at",
            "seen_at",
            "day",
            "flag",
            "doc",
            "raw",
            "state",
            "note",
            "doubled",
            "email",
            "counter"
        ]
    );
    let c = |name: &str| t.column(name).unwrap();
    assert_eq!(
        t.primary_key.as_deref(),
        Some(&["tenant_id".to_string(), "id".to_string()][..])
    );
    assert_eq!(t.unique_keys.len(), 1);
    assert_eq!(t.unique_keys[0].name, "uq_email");
    assert_eq!(t.unique_keys[0].columns, ["email", "tenant_id"]);

    assert_eq!(c("tenant_id").class, TypeClass::Integer { bits: 32 });
    assert!(!c("tenant_id").nullable && !c("tenant_id").fills_itself());
    assert_eq!(c("id").class, TypeClass::Text);
    assert_eq!(c("id").max_length, Some(64));
    assert_eq!(c("id").collation.as_deref(), Some("utf8mb4_unicode_ci"));
    assert_eq!(c("amount").class, TypeClass::Decimal);
    assert_eq!(
        (c("amount").precision, c("amount").scale),
        (Some(18), Some(6))
    );
    assert_eq!(c("happened_at").class, TypeClass::DateTime);
    assert_eq!(c("happened_at").fsp, Some(6));
    assert_eq!(c("seen_at").class, TypeClass::Timestamp);
    assert_eq!(c("seen_at").fsp, Some(3));
    assert!(c("seen_at").nullable);
    assert_eq!(c("day").class, TypeClass::Date);
    assert_eq!(c("flag").class, TypeClass::Integer { bits: 8 });
    assert_eq!(c("flag").column_type, "tinyint(1)");
    assert_eq!(c("flag").default.as_deref(), Some("0"));
    // MariaDB's JSON is LONGTEXT with a json_valid check; MySQL's is json.
    assert_eq!(c("doc").class, TypeClass::Json, "{:?}", c("doc"));
    assert_eq!(c("raw").class, TypeClass::Binary);
    assert_eq!(c("raw").max_length, Some(16));
    assert_eq!(c("state").class, TypeClass::Enum);
    assert_eq!(c("state").column_type, "enum('new','paid')");
    assert!(c("state").default.is_some() && !c("state").nullable);
    assert!(c("note").nullable);
    assert!(c("note").default.as_deref().unwrap().contains("none"));
    // A nullable column without a default has none (MariaDB says `NULL`).
    assert_eq!(c("day").default, None);
    assert!(c("doubled").generated);
    assert!(!c("amount").generated);
    assert_eq!(c("email").collation.as_deref(), Some("utf8mb4_bin"));
    assert!(c("counter").unsigned && !c("tenant_id").unsigned);
    assert_eq!(c("counter").class, TypeClass::Integer { bits: 64 });

    assert!(describe_table(&mut conn, &db, "nope", &version)
        .unwrap()
        .is_none());
    drop_db(&mut conn, &db);
}

#[test]
fn the_seed_orders_description_is_what_the_server_reports() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "seeddesc");
    ensure_table(&mut conn, &db, "orders").unwrap();
    let version = server_info(&mut conn).unwrap().version;
    let read = describe_table(&mut conn, &db, "orders", &version)
        .unwrap()
        .unwrap();
    let seed = kafka_mysql_sink::internals::TableDesc::seed_orders(&db, "orders");
    assert_eq!(read.primary_key, seed.primary_key);
    assert_eq!(read.unique_keys, seed.unique_keys);
    assert_eq!(read.columns.len(), seed.columns.len());
    for (r, s) in read.columns.iter().zip(&seed.columns) {
        let shape = |c: &kafka_mysql_sink::internals::Column| {
            (
                c.name.clone(),
                c.class,
                c.precision,
                c.scale,
                c.max_length,
                c.fsp,
                c.nullable,
                c.fills_itself(),
                c.generated,
                c.unsigned,
            )
        };
        assert_eq!(shape(r), shape(s));
    }
    drop_db(&mut conn, &db);
}

/// Runs the binary with `args`: its exit code and everything it printed.
fn sink(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
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

const ORDERS_PLAN: [&str; 8] = [
    "       id <- id (string; required)",
    "       order_id <- order_id (string; required)",
    "       quantity <- quantity (integer; default when absent)",
    "       unit_price <- unit_price (decimal(10,2); default when absent)",
    "       total_value <- total_value (decimal(10,2); default when absent)",
    "       processed_at <- processed_at (integer; default when absent)",
    "       created_at: left alone",
    "       updated_at: left alone",
];

#[test]
fn check_prints_the_default_plan_and_each_routes() {
    let mut conn = mysql();
    let cluster = mock_cluster("enriched_orders", 2);
    cluster.create_topic("shop.events", 1, 1).unwrap();
    let db = fresh_db(&mut conn, "checkplan");
    let env = vec![
        ("KAFKA_BROKERS", cluster.bootstrap_servers()),
        ("MYSQL_HOST", "127.0.0.1".to_string()),
        ("MYSQL_PORT", mysql_port().to_string()),
        ("MYSQL_DATABASE", db.clone()),
        ("RUST_LOG", "off".to_string()),
    ];

    // No table yet: the plan of the table start-up will create.
    let (code, text) = sink(&["check"], &env);
    assert_eq!(code, Some(0), "{text}");
    let head = format!(
        "plan the default route into `{db}`.`orders`: upsert by (id); tombstones skipped \
         (the table as start-up creates it)"
    );
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == head)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(lines[at + 1..at + 9], ORDERS_PLAN, "{text}");
    // config, kafka, mysql, table, offsets table, positions, dead-letter table.
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("ok ")).count(),
        7,
        "{text}"
    );

    // The table there, and a route into the issue's table.
    ensure_table(&mut conn, &db, "orders").unwrap();
    create_events(&mut conn, &db);
    let dir = scratch_dir("checkplan");
    let config = write_config(
        &dir,
        r#"
        [[routes]]
        topic_pattern = "shop\\.(.+)"
        table = "{1}"
        key_from = "key"
        allow_other_unique = true
        time_zone = "+05:30"
        [routes.columns]
        amount = "price.amount"
        happened_at = { from = "ts", epoch_unit = "s" }
        seen_at = "@timestamp"
        doc = "@value"
        raw = { from = "blob", encoding = "base64" }
        "#,
    );
    let config = config.to_str().unwrap();
    let (code, text) = sink(&["check", "--config", config], &env);
    assert_eq!(code, Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let head =
        format!("plan the default route into `{db}`.`orders`: upsert by (id); tombstones skipped");
    let at = lines
        .iter()
        .position(|l| *l == head)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(lines[at + 1..at + 9], ORDERS_PLAN, "{text}");
    let head = format!(
        "plan routes[0] into `{db}`.`events`: upsert by (tenant_id, id) from the Kafka key; \
         tombstones skipped (topics shop.events)"
    );
    let at = lines
        .iter()
        .position(|l| *l == head)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        lines[at + 1..],
        [
            "       tenant_id <- @key.tenant_id (integer; required)",
            "       id <- @key.id (string; required)",
            "       amount <- price.amount (decimal(18,6); required)",
            "       happened_at <- ts (datetime(6) in +05:30, epochs in s; required)",
            "       seen_at <- @timestamp (timestamp(3) in +05:30, epochs in ms; default when absent)",
            "       day: left alone",
            "       flag: left alone",
            "       doc <- @value (json; default when absent)",
            "       raw <- blob (binary from base64; default when absent)",
            "       state: left alone",
            "       note: left alone",
            "       doubled: generated",
            "       email: left alone",
            "       counter: left alone",
        ],
        "{text}"
    );

    // A plan that cannot work names the route and the column.
    let bad = write_config(
        &dir,
        "[[routes]]\ntopics = [\"shop.events\"]\ntable = \"events\"\nallow_other_unique = true\n\
         [routes.columns]\ntenant_id = \"t\"\nid = \"id\"\namount = \"a\"\nhappened_at = \"h\"\n\
         doubled = \"d\"\n",
    );
    let (code, text) = sink(&["check", "--config", bad.to_str().unwrap()], &env);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL plan: routes[0]: column `doubled`") && text.contains("generated"),
        "{text}"
    );
    // The default route warns where a plan-driven run would refuse, and
    // passes: `run` writes it as before.
    conn.query_drop(format!(
        "ALTER TABLE `{db}`.`orders` ADD UNIQUE KEY uq_order (order_id)"
    ))
    .unwrap();
    let none = write_config(
        &dir,
        "[[routes]]\ntopic_pattern = \"nothing\\\\..*\"\ntable = \"events\"\n",
    );
    let (code, text) = sink(&["check", "--config", none.to_str().unwrap()], &env);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("warn plan: the default route: an upsert by (id)")
            && text.contains("`uq_order`"),
        "{text}"
    );
    assert!(
        text.contains("plan routes[0]: no topic on the cluster matches \"nothing\\\\..*\" yet"),
        "{text}"
    );
    let missing = write_config(
        &dir,
        "[[routes]]\ntopics = [\"shop.events\"]\ntable = \"nope\"\n",
    );
    let (code, text) = sink(&["check", "--config", missing.to_str().unwrap()], &env);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("never create tables"), "{text}");
    let absent = write_config(
        &dir,
        "[[routes]]\ntopics = [\"nope\"]\ntable = \"events\"\n",
    );
    let (code, text) = sink(&["check", "--config", absent.to_str().unwrap()], &env);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL kafka: routes[0]: topic nope is not on the cluster"),
        "{text}"
    );
    drop_db(&mut conn, &db);
}

#[test]
fn run_refuses_a_route_that_is_wrong_on_its_face_as_configuration() {
    let dir = scratch_dir("runroutes");
    let bad = write_config(
        &dir,
        "[[routes]]\ntopics = [\"a\"]\ntable = \"t\"\nmode = \"upsert\"\nkey = [\"x\", \"x\"]\n",
    );
    let (code, text) = sink(&["run", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("routes[0] (table `t`): `key`"), "{text}");
}
