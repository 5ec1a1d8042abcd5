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
        .map(|row| column(RawColumn::read(row), mariadb, &checks))
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

/// One row of `information_schema.COLUMNS`, as read.
#[derive(Debug, Default)]
struct RawColumn {
    name: Option<String>,
    data_type: Option<String>,
    column_type: Option<String>,
    precision: Option<u64>,
    scale: Option<u64>,
    max_length: Option<u64>,
    fsp: Option<u64>,
    is_nullable: Option<String>,
    default: Option<String>,
    extra: Option<String>,
    generation: Option<String>,
    charset: Option<String>,
    collation: Option<String>,
}

impl RawColumn {
    fn read(row: &Row) -> RawColumn {
        RawColumn {
            name: text(row, 0),
            data_type: text(row, 1),
            column_type: text(row, 2),
            precision: number(row, 3),
            scale: number(row, 4),
            max_length: number(row, 5),
            fsp: number(row, 6),
            is_nullable: text(row, 7),
            default: text(row, 8),
            extra: text(row, 9),
            generation: text(row, 10),
            charset: text(row, 11),
            collation: text(row, 12),
        }
    }
}

fn column(raw: RawColumn, mariadb: bool, checks: &[String]) -> Column {
    let name = raw.name.unwrap_or_default();
    let data_type = raw.data_type.unwrap_or_default().to_ascii_lowercase();
    let column_type = raw.column_type.unwrap_or_default();
    let json_checked = checks.iter().any(|c| is_json_check(c, &name));
    let class = classify(&data_type, json_checked);
    let nullable = raw
        .is_nullable
        .is_some_and(|n| n.eq_ignore_ascii_case("YES"));
    let extra = raw.extra.unwrap_or_default().to_ascii_uppercase();
    let default = raw
        .default
        .filter(|d| !(mariadb && nullable && d == "NULL"));
    // MySQL's DEFAULT_GENERATED (an expression default) is not generated.
    let generated = raw.generation.is_some_and(|e| !e.is_empty())
        || ["VIRTUAL", "STORED", "PERSISTENT"]
            .iter()
            .any(|g| extra.split_whitespace().any(|w| w == *g));
    let fsp = matches!(
        class,
        TypeClass::DateTime | TypeClass::Timestamp | TypeClass::Time
    )
    .then(|| raw.fsp.map_or(0, |p| p.min(6) as u8));
    Column {
        unsigned: column_type.to_ascii_lowercase().contains(" unsigned"),
        precision: raw.precision.and_then(|p| u32::try_from(p).ok()),
        scale: raw.scale.and_then(|s| u32::try_from(s).ok()),
        max_length: raw.max_length,
        fsp,
        nullable,
        default,
        auto_increment: extra.contains("AUTO_INCREMENT"),
        generated,
        charset: raw.charset,
        collation: raw.collation,
        name,
        data_type,
        column_type,
        class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, data_type: &str, column_type: &str) -> RawColumn {
        RawColumn {
            name: Some(name.into()),
            data_type: Some(data_type.into()),
            column_type: Some(column_type.into()),
            is_nullable: Some("YES".into()),
            ..RawColumn::default()
        }
    }

    // The MariaDB forms are read from the real server in tests/plan.rs;
    // these are MySQL 8's, as its manual words them.
    #[test]
    fn mysql_8_columns() {
        let json = column(raw("doc", "json", "json"), false, &[]);
        assert_eq!(json.class, TypeClass::Json);
        assert_eq!(json.default, None);
        let created = column(
            RawColumn {
                default: Some("CURRENT_TIMESTAMP".into()),
                extra: Some("DEFAULT_GENERATED on update CURRENT_TIMESTAMP".into()),
                generation: Some(String::new()),
                fsp: Some(0),
                ..raw("created", "timestamp", "timestamp")
            },
            false,
            &[],
        );
        assert!(!created.generated && created.default.is_some());
        assert_eq!(created.fsp, Some(0));
        let total = column(
            RawColumn {
                extra: Some("STORED GENERATED".into()),
                generation: Some("(`a` * 2)".into()),
                ..raw("total", "int", "int unsigned")
            },
            false,
            &[],
        );
        assert!(total.generated && total.unsigned);
        let id = column(
            RawColumn {
                is_nullable: Some("NO".into()),
                extra: Some("auto_increment".into()),
                ..raw("id", "bigint", "bigint")
            },
            false,
            &[],
        );
        assert!(id.auto_increment && id.fills_itself() && !id.nullable);
        // A MySQL default that is the text NULL stays a default.
        let odd = column(
            RawColumn {
                default: Some("NULL".into()),
                ..raw("odd", "varchar", "varchar(4)")
            },
            false,
            &[],
        );
        assert_eq!(odd.default.as_deref(), Some("NULL"));
    }

    #[test]
    fn mariadb_json_is_longtext_with_its_check() {
        let checks = ["json_valid(`doc`)".to_string()];
        let doc = column(raw("doc", "longtext", "longtext"), true, &checks);
        assert_eq!(doc.class, TypeClass::Json);
        let other = column(raw("note", "longtext", "longtext"), true, &checks);
        assert_eq!(other.class, TypeClass::Text);
        let none = column(
            RawColumn {
                default: Some("NULL".into()),
                ..raw("n", "int", "int(11)")
            },
            true,
            &[],
        );
        assert_eq!(none.default, None);
    }
}
