use super::*;
use crate::config::Config;
use crate::decode::Cell;
use crate::table::{Column, TableDesc};

fn column(name: &str, data_type: &str, column_type: &str) -> Column {
    Column {
        nullable: true,
        ..Column::new(name, data_type, column_type)
    }
}

/// A composite key, a decimal, a datetime, a JSON column, a defaulted
/// column and columns for metadata.
fn events() -> TableDesc {
    let mut cols = vec![
        column("tenant_id", "int", "int(11)"),
        column("id", "varchar", "varchar(64)"),
        column("amount", "decimal", "decimal(18,6)"),
        column("at", "datetime", "datetime(3)"),
        column("doc", "json", "json"),
        column("note", "varchar", "varchar(20)"),
        column("topic", "varchar", "varchar(50)"),
        column("part", "int", "int(11)"),
        column("off", "bigint", "bigint(20)"),
        column("hdr", "varchar", "varchar(20)"),
        column("ts", "datetime", "datetime(3)"),
        column("flag", "tinyint", "tinyint(1)"),
        column("qty", "int", "int(11)"),
    ];
    cols[0].nullable = false;
    cols[1].nullable = false;
    cols[2].precision = Some(18);
    cols[2].scale = Some(6);
    cols[3].fsp = Some(3);
    cols[5].default = Some("'none'".into());
    cols[10].fsp = Some(3);
    TableDesc {
        database: "db".into(),
        name: "events".into(),
        columns: cols,
        primary_key: Some(vec!["tenant_id".into(), "id".into()]),
        unique_keys: Vec::new(),
    }
}

const FLAT: &str = r#"
[routes.columns]
tenant_id = "tenant"
id = "id"
amount = "amount"
at = "at"
note = "note"
topic = "@topic"
part = "@partition"
off = "@offset"
hdr = "@header.h"
ts = "@timestamp"
flag = "flag"
qty = "qty"
"#;

const NESTED: &str = r#"
[routes.columns]
tenant_id = "tenant"
id = "/ids/0"
amount = "money.amount"
doc = "payload"
note = "note"
"#;

fn decoder(body: &str) -> PlanDecoder {
    let text =
        format!("[[routes]]\ntopics = [\"t\"]\ntable = \"events\"\nepoch_unit = \"s\"\n{body}");
    let config = Config::from_toml(&text).unwrap();
    PlanDecoder::for_route(&config, 0, &events()).unwrap()
}

const HEADERS: &[(&str, Option<&[u8]>)] = &[("h", Some(b"first")), ("h", Some(b"last"))];

fn meta() -> Meta<'static> {
    Meta {
        topic: "shop.events",
        partition: 3,
        offset: 42,
        timestamp: Some(1_700_000_000_123),
        key: Some(br#"{"tenant_id":7,"id":"k1"}"#),
        headers: HEADERS,
    }
}

/// Decodes `payload` the public way, and checks that simd-json's way
/// comes to the same answer, whichever way the public one took.
fn decode(d: &mut PlanDecoder, payload: &str) -> Result<Vec<String>, RowError> {
    let row = d.decode(payload.as_bytes(), &meta(), false);
    let general = d.decode_general(payload.as_bytes(), &meta(), None);
    assert_eq!(row, general, "{payload}");
    row.map(|r| r.cells().map(show).collect())
}

fn show(c: Cell<'_>) -> String {
    match c {
        Cell::Value(v) => v.to_owned(),
        // As the statement will quote it.
        Cell::Text(s) => {
            let mut quoted = String::new();
            crate::sql::push_str_literal(&mut quoted, s);
            quoted
        }
        Cell::Default => "DEFAULT".into(),
        Cell::Absent => "-".into(),
    }
}

#[test]
fn a_flat_message_fills_every_column_with_its_literal() {
    let mut d = decoder(FLAT);
    assert!(d.flat);
    let cells = decode(
        &mut d,
        r#"{"tenant":"7","id":"a'b","amount":"49.99","at":"2024-05-01T10:00:00.1234Z","flag":true,"qty":3,"x":[1]}"#,
    )
    .unwrap();
    assert_eq!(
        cells,
        [
            "7",
            "_utf8mb4 X'612762'",
            "49.99",
            "'2024-05-01 10:00:00.123'",
            "DEFAULT",
            "'shop.events'",
            "3",
            "42",
            "'last'",
            "'2023-11-14 22:13:20.123'",
            "1",
            "3",
        ]
    );
    assert_eq!(d.shape().key, [0, 1]);
    assert_eq!(d.shape().columns[4], "note");
}

#[test]
fn nested_paths_pointers_and_nested_values_go_through_simd_json() {
    let mut d = decoder(NESTED);
    assert!(!d.flat);
    let cells = decode(
        &mut d,
        r#"{"tenant":7,"ids":["x\"y",2],"money":{"amount":1.0000005,"cur":"EUR"},"payload":{"a":[1,{"b":null}],"c":"é"},"note":null}"#,
    )
    .unwrap();
    assert_eq!(
        cells,
        [
            "7",
            "'x\"y'",
            "1.000001",
            r#"'{"a":[1,{"b":null}],"c":"é"}'"#,
            "NULL"
        ]
    );
    // A path that leads nowhere is an absent field.
    let err = decode(&mut d, r#"{"tenant":7,"ids":[],"money":{}}"#).unwrap_err();
    assert!(
        matches!(&err, RowError::Missing { field, column, .. } if field == "ids.0" && column == "id"),
        "{err}"
    );
    let cells = decode(&mut d, r#"{"tenant":7,"ids":["i"],"money":5}"#).unwrap();
    assert_eq!(cells, ["7", "'i'", "DEFAULT", "DEFAULT", "DEFAULT"]);
}

#[test]
fn refusals_name_the_field_the_column_and_what_it_takes() {
    let mut d = decoder(FLAT);
    let err = decode(&mut d, r#"{"id":"a"}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `tenant` is missing, and column `tenant_id` needs integer"
    );
    let err = decode(&mut d, r#"{"tenant":null,"id":"a"}"#).unwrap_err();
    assert!(matches!(err, RowError::NullKey { .. }), "{err}");
    let err = decode(&mut d, r#"{"tenant":1,"id":"a","qty":2.5}"#).unwrap_err();
    let RowError::Convert(c) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (c.field.as_str(), c.column.as_str(), c.value.as_str()),
        ("qty", "qty", "2.5")
    );
    let err = decode(&mut d, r#"{"tenant":1,"id":"a","amount":"x"}"#).unwrap_err();
    assert!(err.to_string().contains("decimal(18,6)"), "{err}");
    let err = decode(&mut d, r#"{"tenant":1,"tenant":2,"id":"a"}"#).unwrap_err();
    assert_eq!(
        err,
        RowError::Duplicate {
            field: "tenant".into()
        }
    );
    assert!(matches!(
        decode(&mut d, "[1]").unwrap_err(),
        RowError::Payload(DecodeError::Invalid(_))
    ));
    assert_eq!(
        d.decode(b" ", &meta(), false).unwrap_err(),
        RowError::Payload(DecodeError::Empty)
    );
}

#[test]
fn unknown_fields_are_refused_when_the_route_says_so() {
    let mut d = decoder(&format!("unknown_fields = \"reject\"\n{FLAT}"));
    assert!(decode(&mut d, r#"{"tenant":1,"id":"a"}"#).is_ok());
    let err = decode(&mut d, r#"{"tenant":1,"id":"a","other":{}}"#).unwrap_err();
    assert_eq!(
        err,
        RowError::Unknown {
            field: "other".into()
        }
    );
}

#[test]
fn names_that_start_other_names_are_told_apart() {
    let mut d = decoder(
        r#"
[routes.columns]
tenant_id = "t"
id = "tt"
note = "tt_x"
"#,
    );
    assert!(d.flat);
    let cells = decode(&mut d, r#"{"tt_x":"n","tt":"i","t":1,"ttt":0}"#).unwrap();
    assert_eq!(cells, ["1", "'i'", "'n'"]);
}

#[test]
fn partial_upserts_leave_absent_columns_out() {
    let mut d = decoder(&format!("partial = true\n{FLAT}"));
    let cells = decode(&mut d, r#"{"tenant":1,"id":"a","qty":null}"#).unwrap();
    assert_eq!(
        cells,
        [
            "1",
            "'a'",
            "-",
            "-",
            "-",
            "'shop.events'",
            "3",
            "42",
            "'last'",
            "'2023-11-14 22:13:20.123'",
            "-",
            "NULL"
        ]
    );
}

#[test]
fn metadata_that_is_missing_is_an_absent_field() {
    let mut d = decoder(FLAT);
    let m = Meta {
        timestamp: None,
        headers: &[],
        key: None,
        ..meta()
    };
    let row = d.decode(br#"{"tenant":1,"id":"a"}"#, &m, true).unwrap();
    assert_eq!(row.cell(8), Cell::Default);
    assert_eq!(row.cell(9), Cell::Default);
    assert_eq!(row.raw_key(), None);
    assert_eq!(row.raw_payload(), Some(&br#"{"tenant":1,"id":"a"}"#[..]));
}

#[test]
fn tombstones_take_the_key_from_the_kafka_key() {
    let mut d = decoder(FLAT);
    let row = d.tombstone(&meta()).unwrap();
    let cells: Vec<String> = row.cells().map(show).collect();
    assert_eq!(cells[..3], ["7", "'k1'", "-"]);
    let bad = Meta {
        key: Some(b"plain"),
        ..meta()
    };
    assert!(matches!(d.tombstone(&bad), Err(RowError::Key { .. })));
    let config = Config::default();
    let orders = TableDesc::seed_orders("db", "orders");
    let mut d = PlanDecoder::for_default_route(&config, &orders).unwrap();
    let one = Meta {
        key: Some(b"id-1"),
        ..meta()
    };
    assert_eq!(d.tombstone(&one).unwrap().cell(0), Cell::Text("id-1"));
}

#[test]
fn the_default_route_reads_orders_in_one_pass() {
    let config = Config::default();
    let orders = TableDesc::seed_orders("db", "orders");
    let mut d = PlanDecoder::for_default_route(&config, &orders).unwrap();
    assert!(d.flat);
    let cells = decode(
        &mut d,
        r#"{"id":"a","order_id":"o","quantity":5,"unit_price":49.99,"total_value":249.950,"processed_at":null,"source":"x"}"#,
    )
    .unwrap();
    assert_eq!(cells, ["'a'", "'o'", "5", "49.99", "249.95", "DEFAULT"]);
    let cells = decode(&mut d, r#"{"id":"a","order_id":"o"}"#).unwrap();
    assert_eq!(
        cells,
        ["'a'", "'o'", "DEFAULT", "DEFAULT", "DEFAULT", "DEFAULT"]
    );
}

#[test]
fn the_one_pass_and_simd_json_agree_on_mutated_messages() {
    // As for the orders decoder: messages mutated over and over with
    // characters that matter to JSON; whichever way the public decode
    // takes, simd-json's way must answer the same (`decode` checks).
    let bases = [
        r#"{"tenant":7,"id":"abc","amount":12.50,"at":"2024-01-02 03:04:05","flag":false,"qty":-3,"note":"n"}"#,
        r#" { "tenant" : "8" , "id" : "x y" , "amount" : -0.5E+2 , "qty" : null , "z" : true } "#,
        r#"{"id":"é€","tenant":1e1,"amount":"1.5","at":1700000000,"qty":18}"#,
    ];
    let alphabet: &[u8] = b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsn\x00\xc3\xa9";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: usize| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    };
    let mut d = decoder(FLAT);
    let (mut tried, mut rows, mut flat) = (0, 0, 0);
    for base in bases {
        for _ in 0..3000 {
            let mut m = base.as_bytes().to_vec();
            for _ in 0..1 + next(2) {
                let at = next(m.len() + 1);
                let c = alphabet[next(alphabet.len())];
                match next(3) {
                    0 if at < m.len() => m[at] = c,
                    1 => m.insert(at, c),
                    _ if at < m.len() => {
                        m.remove(at);
                    }
                    _ => {}
                }
            }
            tried += 1;
            flat += usize::from(d.read_flat(&m));
            let fast = d.decode(&m, &meta(), false);
            let general = d.decode_general(&m, &meta(), None);
            assert_eq!(fast, general, "{}", String::from_utf8_lossy(&m));
            rows += usize::from(fast.is_ok());
        }
    }
    // Enough of them must be rows, and read in one pass, for the
    // comparison to prove something.
    assert!(rows * 10 > tried, "{rows} of {tried} decoded");
    assert!(flat * 10 > tried, "{flat} of {tried} read in one pass");
}
