//! MySQL at start-up, continued: a table's description from
//! `information_schema`, for a route's plan.
//!
//! MariaDB and MySQL word a few things differently, and both are read
//! here: MariaDB's JSON is LONGTEXT with a `json_valid` check (found in
//! `CHECK_CONSTRAINTS`), MySQL's is `json`; MariaDB reports "no default" of
//! a nullable column as the text `NULL`, MySQL as SQL NULL; generated
//! columns carry an expression on both.

use mysql::prelude::Queryable;
use mysql::{Conn, Row};

use crate::db::DbError;
use crate::table::{classify, is_json_check, Column, TableDesc, TypeClass, UniqueKey};

fn query_err(what: &'static str) -> impl FnOnce(mysql::Error) -> DbError {
    move |source| DbError::Query { what, source }
}

/// `db`.`table` as MySQL describes it, or `None` when there is no such
/// table. `server_version` is `SELECT VERSION()`.
pub fn describe_table(
    conn: &mut Conn,
    db: &str,
    table: &str,
    server_version: &str,
) -> Result<Option<TableDesc>, DbError> {
    let mariadb = server_version.to_ascii_lowercase().contains("mariadb");
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, \
               CHARACTER_MAXIMUM_LENGTH, DATETIME_PRECISION, IS_NULLABLE, COLUMN_DEFAULT, \
               EXTRA, GENERATION_EXPRESSION, CHARACTER_SET_NAME, COLLATION_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .map_err(query_err("reading the table's columns"))?;
    if rows.is_empty() {
        return Ok(None);
    }
    // MySQL's CHECK_CONSTRAINTS has no TABLE_NAME, and MySQL has a JSON
    // type of its own, so only MariaDB's checks are read.
    let checks: Vec<String> = if mariadb {
        conn.exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .map_err(query_err("reading the table's check constraints"))?
    } else {
        Vec::new()
    };
    let columns = rows
        .iter()
        .map(|row| column(row, mariadb, &checks))
        .collect();
    let keys: Vec<(String, Option<String>)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (db, table),
        )
        .map_err(query_err("reading the table's unique keys"))?;
    let mut primary_key = None;
    let mut unique_keys: Vec<UniqueKey> = Vec::new();
    for (index, column) in keys {
        // A functional key part (MySQL 8) has no column: such a key can
        // never be a route's key, but it still makes upserts ambiguous.
        let column = column.unwrap_or_else(|| "(expression)".into());
        if index == "PRIMARY" {
            primary_key.get_or_insert_with(Vec::new).push(column);
        } else {
            match unique_keys.last_mut() {
                Some(k) if k.name == index => k.columns.push(column),
                _ => unique_keys.push(UniqueKey {
                    name: index,
                    columns: vec![column],
                }),
            }
        }
    }
    Ok(Some(TableDesc {
        database: db.into(),
        name: table.into(),
        columns,
        primary_key,
        unique_keys,
    }))
}

fn text(row: &Row, i: usize) -> Option<String> {
    row.get_opt::<Option<String>, usize>(i)
        .and_then(Result::ok)
        .flatten()
}

fn number(row: &Row, i: usize) -> Option<u64> {
    row.get_opt::<Option<u64>, usize>(i)
        .and_then(Result::ok)
        .flatten()
}

fn column(row: &Row, mariadb: bool, checks: &[String]) -> Column {
    let name = text(row, 0).unwrap_or_default();
    let data_type = text(row, 1).unwrap_or_default().to_ascii_lowercase();
    let column_type = text(row, 2).unwrap_or_default();
    let json_checked = checks.iter().any(|c| is_json_check(c, &name));
    let class = classify(&data_type, json_checked);
    let nullable = text(row, 7).is_some_and(|n| n.eq_ignore_ascii_case("YES"));
    let extra = text(row, 9).unwrap_or_default().to_ascii_uppercase();
    let default = text(row, 8).filter(|d| !(mariadb && nullable && d == "NULL"));
    let generated = text(row, 10).is_some_and(|e| !e.is_empty())
        || ["VIRTUAL", "STORED", "PERSISTENT"]
            .iter()
            .any(|g| extra.split_whitespace().any(|w| w == *g));
    let fsp = matches!(
        class,
        TypeClass::DateTime | TypeClass::Timestamp | TypeClass::Time
    )
    .then(|| number(row, 6).map_or(0, |p| p.min(6) as u8));
    Column {
        unsigned: column_type.to_ascii_lowercase().contains(" unsigned"),
        precision: number(row, 3).and_then(|p| u32::try_from(p).ok()),
        scale: number(row, 4).and_then(|s| u32::try_from(s).ok()),
        max_length: number(row, 5),
        fsp,
        nullable,
        default,
        auto_increment: extra.contains("AUTO_INCREMENT"),
        generated,
        charset: text(row, 11),
        collation: text(row, 12),
        name,
        data_type,
        column_type,
        class,
    }
}
