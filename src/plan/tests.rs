use super::*;
use crate::config::{Config, Encoding, EpochUnit};
use crate::table::UniqueKey;

fn column(name: &str, data_type: &str, column_type: &str) -> Column {
    Column::new(name, data_type, column_type)
}

/// The issue's table: a composite key, every class of value, a nullable
/// column with a default, a generated column and a secondary UNIQUE key.
fn events() -> TableDesc {
    let mut cols = vec![
        column("tenant_id", "int", "int(11)"),
        column("id", "varchar", "varchar(64)"),
        column("amount", "decimal", "decimal(18,6)"),
        column("happened_at", "datetime", "datetime(6)"),
        column("seen_at", "timestamp", "timestamp(3)"),
        column("day", "date", "date"),
        column("flag", "tinyint", "tinyint(1)"),
        column("doc", "json", "json"),
        column("raw", "varbinary", "varbinary(16)"),
        column("state", "enum", "enum('new','paid')"),
        column("note", "varchar", "varchar(20)"),
        column("doubled", "decimal", "decimal(20,6)"),
        column("email", "varchar", "varchar(100)"),
        column("place", "point", "point"),
    ];
    cols[2].precision = Some(18);
    cols[2].scale = Some(6);
    cols[3].fsp = Some(6);
    cols[4].fsp = Some(3);
    cols[4].nullable = true;
    cols[5].nullable = true;
    cols[7].nullable = true;
    cols[8].nullable = true;
    cols[6].default = Some("0".into());
    cols[9].default = Some("'new'".into());
    cols[10].nullable = true;
    cols[10].default = Some("'none'".into());
    cols[11].generated = true;
    cols[11].nullable = true;
    cols[12].nullable = true;
    cols[13].nullable = true;
    TableDesc {
        database: "db".into(),
        name: "events".into(),
        columns: cols,
        primary_key: Some(vec!["tenant_id".into(), "id".into()]),
        unique_keys: vec![UniqueKey {
            name: "uq_email".into(),
            columns: vec!["email".into(), "tenant_id".into()],
        }],
    }
}

fn route(toml_body: &str) -> RouteConfig {
    let text = format!("[[routes]]\ntopics = [\"t\"]\ntable = \"events\"\n{toml_body}");
    let mut c = Config::from_toml(&text).unwrap();
    c.routes.remove(0)
}

fn lines(plan: &Plan) -> Vec<String> {
    plan.column_lines()
}

#[test]
fn the_default_route_plans_the_seed_orders_table() {
    let config = Config::default();
    let table = TableDesc::seed_orders("app_consumer", "orders");
    let plan = compile_default(&config.default_route(), &table).unwrap();
    assert_eq!(plan.key, ["id"]);
    assert_eq!(plan.mode, Mode::Upsert);
    assert!(plan.null_is_absent);
    assert_eq!(
        lines(&plan),
        [
            "id <- id (string; required)",
            "order_id <- order_id (string; required)",
            "quantity <- quantity (integer; default when absent)",
            "unit_price <- unit_price (decimal(10,2); default when absent)",
            "total_value <- total_value (decimal(10,2); default when absent)",
            "processed_at <- processed_at (integer; default when absent)",
            "created_at: left alone",
            "updated_at: left alone",
        ]
    );
    assert_eq!(
        plan.head(),
        "the default route into `app_consumer`.`orders`: upsert by (id); tombstones skipped"
    );
}

#[test]
fn without_a_map_every_column_is_fed_from_its_own_field() {
    let plan = compile(&route("allow_other_unique = true"), 0, &events()).unwrap();
    let l = lines(&plan);
    assert_eq!(l[0], "tenant_id <- tenant_id (integer; required)");
    assert_eq!(l[2], "amount <- amount (decimal(18,6); required)");
    assert_eq!(
        l[3],
        "happened_at <- happened_at (datetime(6) in UTC, epochs in ms; required)"
    );
    assert_eq!(
        l[4],
        "seen_at <- seen_at (timestamp(3) in UTC, epochs in ms; default when absent)"
    );
    assert_eq!(l[7], "doc <- doc (json; default when absent)");
    assert_eq!(l[9], "state <- state (enum of 2; default when absent)");
    assert_eq!(l[11], "doubled: generated");
    // Unsupported types are left to MySQL when nothing names them.
    assert_eq!(l[13], "place: left alone");
    assert_eq!(plan.key, ["tenant_id", "id"]);
}

#[test]
fn a_map_feeds_only_its_columns_with_their_options() {
    let r = route(
        r#"
        mode = "insert"
        time_zone = "+05:30"
        [routes.columns]
        tenant_id = "/tenant/id"
        id = "order.id"
        amount = "amount"
        happened_at = { from = "ts", epoch_unit = "s" }
        flag = "@partition"
        raw = { from = "blob", encoding = "base64" }
        doc = "@value"
        "#,
    );
    let plan = compile(&r, 3, &events()).unwrap();
    let l = lines(&plan);
    assert_eq!(l[0], "tenant_id <- tenant.id (integer; required)");
    assert_eq!(l[1], "id <- order.id (string; required)");
    assert_eq!(
        l[3],
        "happened_at <- ts (datetime(6) in +05:30, epochs in s; required)"
    );
    assert_eq!(l[4], "seen_at: default");
    assert_eq!(l[6], "flag <- @partition (integer; default when absent)");
    assert_eq!(l[7], "doc <- @value (json; default when absent)");
    assert_eq!(
        l[8],
        "raw <- blob (binary from base64; default when absent)"
    );
    assert_eq!(l[10], "note: default");
    assert_eq!(plan.route, "routes[3]");
}

#[test]
fn the_key_may_come_from_the_kafka_key() {
    let r = route("key_from = \"key\"\nallow_other_unique = true");
    let plan = compile(&r, 0, &events()).unwrap();
    let l = lines(&plan);
    assert_eq!(l[0], "tenant_id <- @key.tenant_id (integer; required)");
    assert_eq!(l[1], "id <- @key.id (string; required)");

    let mut one = events();
    one.primary_key = Some(vec!["id".into()]);
    one.unique_keys.clear();
    let plan = compile(&r, 0, &one).unwrap();
    assert_eq!(lines(&plan)[1], "id <- @key (string; required)");

    let r = route("key_from = \"key\"\nallow_other_unique = true\n[routes.columns]\nid = \"x\"");
    assert!(matches!(
        compile(&r, 0, &events()),
        Err(PlanError::KeyTwice { .. })
    ));
}

#[test]
fn partial_and_update_leave_absent_columns_alone() {
    let r = route("partial = true\nallow_other_unique = true");
    let plan = compile(&r, 0, &events()).unwrap();
    assert_eq!(
        lines(&plan)[10],
        "note <- note (string; left alone when absent)"
    );
    assert!(plan.head().contains("partial upsert by (tenant_id, id)"));

    let r =
        route("mode = \"update\"\n[routes.columns]\ntenant_id = \"t\"\nid = \"id\"\nnote = \"n\"");
    let plan = compile(&r, 0, &events()).unwrap();
    let l = lines(&plan);
    assert_eq!(l[2], "amount: left alone");
    assert_eq!(l[10], "note <- n (string; left alone when absent)");
}

fn refusal(body: &str, table: &TableDesc) -> PlanError {
    compile(&route(body), 2, table).unwrap_err()
}

#[test]
fn every_refusal_names_the_route_and_the_column() {
    let t = events();
    let cases: Vec<(&str, &str)> = vec![
        ("allow_other_unique = true\n[routes.columns]\nnope = \"x\"", "`nope`"),
        ("allow_other_unique = true\nignore = [\"nope\"]", "`nope`"),
        ("allow_other_unique = true\nkey = [\"nope\"]", "`nope`"),
        ("allow_other_unique = true\n[routes.columns]\ntenant_id = \"a\"\nid = \"b\"", "`amount`"),
        ("allow_other_unique = true\n[routes.columns]\ntenant_id = \"a\"\nid = \"b\"\ndoubled = \"d\"", "`doubled`"),
        ("allow_other_unique = true\n[routes.columns]\ntenant_id = \"a\"\nid = \"b\"\nplace = \"p\"", "`place`"),
        ("allow_other_unique = true\n[routes.columns]\ntenant_id = \"a\"\nid = \"b\"\nnote = { from = \"n\", encoding = \"base64\" }", "`note`"),
        ("allow_other_unique = true\nkey = [\"amount\"]", "(amount)"),
        ("", "uq_email"),
        ("allow_other_unique = true\nignore = [\"id\"]", "`id`"),
    ];
    for (body, names) in cases {
        let msg = refusal(body, &t).to_string();
        assert!(msg.starts_with("routes[2]: "), "{body}: {msg}");
        assert!(msg.contains(names), "{body}: {msg}");
    }
}

#[test]
fn refusals_by_kind() {
    let t = events();
    assert!(matches!(
        refusal("allow_other_unique = true\n[routes.columns]\ntenant_id = \"a\"\nid = \"b\"\ndoubled = \"d\"", &t),
        PlanError::Generated { .. }
    ));
    assert!(matches!(
        refusal("allow_other_unique = true\nkey = [\"note\"]", &t),
        PlanError::NotAKey { .. }
    ));
    assert!(matches!(refusal("", &t), PlanError::OtherUnique { .. }));
    // The secondary UNIQUE key is a key too, and then the primary key is
    // the other one.
    assert!(matches!(
        refusal("key = [\"tenant_id\", \"email\"]", &t),
        PlanError::OtherUnique { ref other, .. } if other == "PRIMARY"
    ));
    let plan = compile(
        &route("key = [\"tenant_id\", \"email\"]\nallow_other_unique = true"),
        0,
        &t,
    )
    .unwrap();
    assert_eq!(plan.key, ["tenant_id", "email"]);
    // Insert and update cannot be misdirected by another UNIQUE key.
    assert!(compile(&route("mode = \"insert\""), 0, &t).is_ok());
    assert!(matches!(
        refusal("mode = \"insert\"\n[routes.columns]\ntenant_id = \"a\"\nid = \"b\"", &t),
        PlanError::Unfed { ref column, .. } if column == "amount"
    ));
    // A partial upsert is an INSERT too, which the server checks for every
    // column that needs a value, whether the row exists or not (MariaDB:
    // 1364 for every statement): refused, as inserts are.
    assert!(matches!(
        refusal(
            "partial = true\nallow_other_unique = true\n[routes.columns]\ntenant_id = \"a\"\nid = \"b\"",
            &t
        ),
        PlanError::Unfed { ref column, .. } if column == "amount"
    ));
    assert!(matches!(
        refusal("mode = \"update\"\n[routes.columns]\namount = \"a\"", &t),
        PlanError::KeyUnfed { .. }
    ));
    let mut no_pk = t.clone();
    no_pk.primary_key = None;
    assert!(matches!(
        refusal("allow_other_unique = true", &no_pk),
        PlanError::NoKey { .. }
    ));
    assert!(matches!(
        refusal(
            "allow_other_unique = true\n[routes.columns]\nID = \"a\"\nid = \"b\"",
            &t
        ),
        PlanError::MappedTwice { .. }
    ));
    // Plans are compiled from validated settings, but a bad source is
    // still refused rather than read as "unmapped".
    let mut r = route("allow_other_unique = true");
    r.columns.insert("id".into(), ColumnEntry::field("@nope"));
    assert!(matches!(
        compile(&r, 0, &t),
        Err(PlanError::BadSource { ref column, .. }) if column == "id"
    ));
}

#[test]
fn an_auto_increment_key_may_be_left_to_mysql_by_inserts() {
    let mut t = events();
    t.columns[0].auto_increment = true;
    t.primary_key = Some(vec!["tenant_id".into()]);
    t.unique_keys.clear();
    let r = route("mode = \"insert\"\nignore = [\"tenant_id\"]");
    let plan = compile(&r, 0, &t).unwrap();
    assert_eq!(lines(&plan)[0], "tenant_id: default");
    assert!(compile(&route("ignore = [\"tenant_id\"]"), 0, &t).is_err());
}

#[test]
fn conversions_follow_the_column_options() {
    let t = events();
    let r = route(
        "allow_other_unique = true\nepoch_unit = \"us\"\n[routes.columns]\ntenant_id = \"a\"\nid = \"b\"\namount = \"c\"\nhappened_at = \"d\"\nraw = { from = \"r\", encoding = \"base64\" }",
    );
    let plan = compile(&r, 0, &t).unwrap();
    let conv = |name: &str| match &plan.columns.iter().find(|c| c.column == name).unwrap().feed {
        Feed::From { conversion, .. } => conversion.clone(),
        other => panic!("{other:?}"),
    };
    match conv("happened_at") {
        Conversion::Temporal(t) => assert_eq!((t.fsp, t.epoch), (6, EpochUnit::Micros)),
        other => panic!("{other:?}"),
    }
    assert_eq!(conv("raw"), Conversion::Binary { base64: true });
    let _ = Encoding::Base64;
}
