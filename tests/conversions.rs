//! Every conversion's literal, stored by the real server under the sink's
//! strict mode and read back as text: what lands is exactly what the
//! conversion table in docs/configuration.md promises.

mod common;

use common::*;
use kafka_mysql_sink::config::{Encoding, EpochUnit};
use kafka_mysql_sink::internals::{describe_table, server_info, sql_literal, TypeClass};
use mysql::prelude::Queryable;

const KINDS: &str = "CREATE TABLE `{db}`.`kinds` (
    k INT PRIMARY KEY,
    i INT, u TINYINT UNSIGNED, big BIGINT UNSIGNED,
    d DECIMAL(18,6), d38 DECIMAL(38,0), f DOUBLE,
    s VARCHAR(50), t TEXT, b VARBINARY(16),
    dt DATETIME(6), ts TIMESTAMP(3) NULL, day DATE, tm TIME(2),
    y YEAR, j JSON, e ENUM('new','paid'), st SET('a','b','c'), bits BIT(3)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

struct Case {
    column: &'static str,
    json: &'static str,
    zone: &'static str,
    epoch: EpochUnit,
    base64: bool,
    stored: &'static str,
}

const fn case(column: &'static str, json: &'static str, stored: &'static str) -> Case {
    Case {
        column,
        json,
        zone: "UTC",
        epoch: EpochUnit::Millis,
        base64: false,
        stored,
    }
}

#[test]
fn every_conversion_lands_exactly_on_the_server() {
    let cases = [
        case("i", "-2147483648", "-2147483648"),
        case("i", r#""42""#, "42"),
        case("i", "true", "1"),
        case("u", "255", "255"),
        case("big", "18446744073709551615", "18446744073709551615"),
        case("d", r#""-123456789012.123456""#, "-123456789012.123456"),
        case("d", "49.99", "49.990000"),
        case("d", "0.12499999999999999999", "0.125000"),
        case("d", r#""1.0000005""#, "1.000001"),
        case("d", "1.5e3", "1500.000000"),
        case(
            "d38",
            r#""-99999999999999999999999999999999999999""#,
            "-99999999999999999999999999999999999999",
        ),
        case("f", "1.5", "1.5"),
        case("f", r#""-2.25e2""#, "-225"),
        case(
            "s",
            r#""it's \\ a \"test\" \u0000 é""#,
            "it's \\ a \"test\" \0 é",
        ),
        case("s", "49.990", "49.990"),
        case("t", r#"{"a":[1,"x"]}"#, r#"{"a":[1,"x"]}"#),
        case("b", r#""AB""#, "4142"),
        Case {
            base64: true,
            ..case("b", r#""AAH/""#, "0001FF")
        },
        case(
            "dt",
            r#""2024-02-29T23:30:00.1234565+05:30""#,
            "2024-02-29 18:00:00.123457",
        ),
        case("dt", "1699267200123", "2023-11-06 10:40:00.123000"),
        case(
            "dt",
            r#""1969-07-20 20:17:40""#,
            "1969-07-20 20:17:40.000000",
        ),
        Case {
            epoch: EpochUnit::Seconds,
            ..case("dt", "-1.5", "1969-12-31 23:59:58.500000")
        },
        case(
            "ts",
            r#""2024-01-01T00:00:00.5Z""#,
            "2024-01-01 00:00:00.500",
        ),
        Case {
            zone: "+05:30",
            ..case("day", r#""2024-02-28T20:00:00Z""#, "2024-02-29")
        },
        case("day", r#""1900-01-01""#, "1900-01-01"),
        case("tm", r#""-838:59:59""#, "-838:59:59.00"),
        case("tm", r#""12:34:56.789""#, "12:34:56.79"),
        case("y", "2155", "2155"),
        case("j", r#"{"a":{"b":[1,2.5]}}"#, r#"{"a":{"b":[1,2.5]}}"#),
        case("j", r#""x""#, r#""x""#),
        case("e", r#""PAID""#, "paid"),
        case("st", r#"["c","a"]"#, "a,c"),
        case("bits", r#""101""#, "5"),
        case("bits", "7", "7"),
    ];

    let mut conn = mysql();
    let db = fresh_db(&mut conn, "conversions");
    conn.query_drop(format!("CREATE DATABASE `{db}`")).unwrap();
    conn.query_drop(KINDS.replace("{db}", &db)).unwrap();
    // As the sink's sessions run.
    conn.query_drop("SET NAMES utf8mb4").unwrap();
    conn.query_drop(
        "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')",
    )
    .unwrap();
    let version = server_info(&mut conn).unwrap().version;
    let table = describe_table(&mut conn, &db, "kinds", &version)
        .unwrap()
        .unwrap();

    for (k, c) in cases.iter().enumerate() {
        let column = table.column(c.column).unwrap();
        let encoding = c.base64.then_some(Encoding::Base64);
        let literal = sql_literal(column, encoding, c.zone, c.epoch, c.json)
            .unwrap_or_else(|e| panic!("{} <- {}: {e}", c.column, c.json));
        conn.query_drop(format!(
            "INSERT INTO `{db}`.`kinds` (k, `{}`) VALUES ({k}, {literal})",
            c.column
        ))
        .unwrap_or_else(|e| panic!("{} <- {} as {literal}: {e}", c.column, c.json));
        let read = match column.class {
            TypeClass::Binary => format!("HEX(`{}`)", c.column),
            TypeClass::Bit => format!("CAST(`{}` + 0 AS CHAR)", c.column),
            _ => format!("CAST(`{}` AS CHAR)", c.column),
        };
        let stored: Option<String> = conn
            .query_first(format!("SELECT {read} FROM `{db}`.`kinds` WHERE k = {k}"))
            .unwrap();
        assert_eq!(
            stored.as_deref(),
            Some(c.stored),
            "{} <- {} as {literal}",
            c.column,
            c.json
        );
    }
    drop_db(&mut conn, &db);
}

#[test]
fn refusals_name_the_column_the_value_and_the_type() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "refusals");
    conn.query_drop(format!("CREATE DATABASE `{db}`")).unwrap();
    conn.query_drop(KINDS.replace("{db}", &db)).unwrap();
    let version = server_info(&mut conn).unwrap().version;
    let table = describe_table(&mut conn, &db, "kinds", &version)
        .unwrap()
        .unwrap();
    for (column, json, expected) in [
        ("u", "256", "an integer from 0 to 255"),
        ("i", "2.5", "fractions are not rounded"),
        ("d", r#""1234567890123""#, "decimal(18,6)"),
        ("dt", r#""yesterday""#, "a date-time"),
        ("e", r#""shipped""#, r#"one of "new", "paid""#),
        ("y", "24", "a year from 1901 to 2155"),
        ("bits", "8", "bit(3)"),
        ("b", "12", "a string"),
    ] {
        let err = sql_literal(
            table.column(column).unwrap(),
            None,
            "UTC",
            EpochUnit::Millis,
            json,
        )
        .unwrap_err();
        assert!(
            err.contains(&format!("column `{column}`"))
                && err.contains(json)
                && err.contains(expected),
            "{column} <- {json}: {err}"
        );
    }
    drop_db(&mut conn, &db);
}
