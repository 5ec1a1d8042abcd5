//! All statement text: identifiers, the tables' DDL, multi-row upserts,
//! tombstone deletes and dead-letter inserts.
//!
//! Statements are built as text into a reused buffer rather than sent as
//! prepared-statement parameters: a prepared multi-row statement is capped at
//! 65,535 placeholders and must be re-prepared for every batch length, while
//! text costs one copy of each value. Values are rendered so that they mean the
//! same under every `sql_mode`: a string holding a quote, a backslash, NUL or
//! Ctrl-Z (the only bytes whose meaning depends on `NO_BACKSLASH_ESCAPES` or on
//! client tooling) is sent as a `_utf8mb4 X'…'` hex literal, every other string
//! as a plain quoted literal.

use crate::decode::Row;
use crate::types::{Envelope, Op};

mod by_plan;
mod dead_letter;
mod offsets;
mod session;

pub use by_plan::{AsPlanRow, PlanBuildError, PlanShape, PlanStatements, WriteMode};
pub use dead_letter::create_dlq_table;
pub(crate) use dead_letter::{dlq_topic_binary, push_dead_letter_insert};
pub(crate) use offsets::*;
pub(crate) use session::*;

/// The columns the sink writes, in statement order.
pub(crate) const COLUMNS: [&str; 6] = [
    "id",
    "order_id",
    "quantity",
    "unit_price",
    "total_value",
    "processed_at",
];

/// Checks a database or table name: 1 to 64 characters of letters, digits,
/// `_`, `$` or `-`. Narrower than MySQL allows, on purpose: names come from
/// configuration and end up inside statements.
pub(crate) fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > 64 {
        return Err("must be at most 64 characters (MySQL's limit)".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '-')))
    {
        return Err(format!(
            "contains {c:?}; use letters, digits, '_', '$' or '-'"
        ));
    }
    Ok(())
}

/// `name` quoted as a MySQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `db`.`table`, quoted.
pub fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(table))
}

/// The seed's DDL, word for word, with the table name qualified by its database.
pub(crate) fn create_table(db: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
    `id` VARCHAR(36) PRIMARY KEY,
    `order_id` VARCHAR(255) NOT NULL,
    `quantity` INT NOT NULL DEFAULT 1,
    `unit_price` DECIMAL(10, 2) NOT NULL DEFAULT 0.00,
    `total_value` DECIMAL(10, 2) NOT NULL DEFAULT 0.00,
    `processed_at` BIGINT,
    `created_at` TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    `updated_at` TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    INDEX `idx_order_id` (`order_id`),
    INDEX `idx_processed_at` (`processed_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        qualified(db, table)
    )
}

/// How `ON DUPLICATE KEY UPDATE` refers to the incoming row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `col = VALUES(col)`: MariaDB and MySQL before 8.0.19.
    ValuesFunction,
    /// `... AS new ON DUPLICATE KEY UPDATE col = new.col`: MySQL 8.0.19+, where
    /// `VALUES()` is deprecated and warns on every statement.
    RowAlias,
}

impl Dialect {
    /// Picks the dialect from `SELECT VERSION()`.
    pub fn for_server_version(version: &str) -> Dialect {
        if version.to_ascii_lowercase().contains("mariadb") {
            return Dialect::ValuesFunction;
        }
        let mut parts = version
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let v = (
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        );
        if v >= (8, 0, 19) {
            Dialect::RowAlias
        } else {
            Dialect::ValuesFunction
        }
    }
}

/// Something that may carry a row; lets the writer hand over its batch as it
/// is (Kafka coordinates and all) without the builder knowing about them,
/// and without collecting the rows into a vector first.
pub trait AsRow {
    /// The row, or `None` for an item the statement skips.
    fn as_row(&self) -> Option<&Row>;
}

impl AsRow for Row {
    fn as_row(&self) -> Option<&Row> {
        Some(self)
    }
}

impl AsRow for Envelope {
    fn as_row(&self) -> Option<&Row> {
        match &self.op {
            Op::Upsert(row) => Some(row),
            _ => None,
        }
    }
}

impl<T: AsRow> AsRow for &T {
    fn as_row(&self) -> Option<&Row> {
        (*self).as_row()
    }
}

/// Why a statement could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error(
        "a single row needs {needed} bytes of SQL, over the server's max_allowed_packet budget \
         of {limit}; raise max_allowed_packet"
    )]
    RowTooLarge { needed: usize, limit: usize },
}

/// After a row's tuple was appended at `mark`: whether it fits, with
/// `tail` bytes still to come, in `max_len`. One that does not is taken out
/// again (`Ok(false)`: the statement ends before it), unless it is the
/// statement's first (`tuples == 0`), which fits in no statement at all
/// (`fixed` is what every statement spends besides its rows).
pub(crate) fn tuple_fits(
    buf: &mut String,
    mark: usize,
    tuples: usize,
    tail: usize,
    max_len: usize,
    fixed: usize,
) -> Result<bool, BuildError> {
    if buf.len() + tail <= max_len {
        return Ok(true);
    }
    if tuples == 0 {
        return Err(BuildError::RowTooLarge {
            needed: buf.len() - mark + fixed,
            limit: max_len,
        });
    }
    buf.truncate(mark);
    Ok(false)
}

/// Builds `INSERT … ON DUPLICATE KEY UPDATE` statements into a reused buffer.
pub struct UpsertBuilder {
    head: String,
    tail: String,
    buf: String,
}

impl UpsertBuilder {
    pub fn new(db: &str, table: &str, dialect: Dialect) -> UpsertBuilder {
        let cols: Vec<String> = COLUMNS.iter().map(|c| quote_ident(c)).collect();
        let head = format!(
            "INSERT INTO {} ({}) VALUES ",
            qualified(db, table),
            cols.join(",")
        );
        let updates: Vec<String> = cols[1..]
            .iter()
            .map(|c| match dialect {
                Dialect::ValuesFunction => format!("{c}=VALUES({c})"),
                Dialect::RowAlias => format!("{c}=`new`.{c}"),
            })
            .collect();
        let tail = match dialect {
            Dialect::ValuesFunction => {
                format!(" ON DUPLICATE KEY UPDATE {}", updates.join(","))
            }
            Dialect::RowAlias => {
                format!(" AS `new` ON DUPLICATE KEY UPDATE {}", updates.join(","))
            }
        };
        UpsertBuilder {
            head,
            tail,
            buf: String::with_capacity(64 * 1024),
        }
    }

    /// Builds one statement from the longest prefix of `rows` whose text stays
    /// within `max_len` bytes, and returns how many items of `rows` it covers
    /// (items without a row are passed over) and the text. Rows keep their
    /// order, so a later version of a key wins within a statement.
    pub fn build<'a, R: AsRow>(
        &'a mut self,
        rows: &[R],
        max_len: usize,
    ) -> Result<(usize, &'a str), BuildError> {
        self.buf.clear();
        self.buf.push_str(&self.head);
        let fixed = self.head.len() + self.tail.len();
        let mut taken = 0;
        let mut tuples = 0;
        // Rows arrive cold (see `Row::prefetch`); their loads are started
        // this many rows ahead of their use.
        const AHEAD: usize = 6;
        for r in rows.iter().take(AHEAD).filter_map(AsRow::as_row) {
            r.prefetch();
        }
        for (k, r) in rows.iter().enumerate() {
            if let Some(ahead) = rows.get(k + AHEAD).and_then(AsRow::as_row) {
                ahead.prefetch();
            }
            let Some(row) = r.as_row() else {
                taken += 1;
                continue;
            };
            let mark = self.buf.len();
            if tuples > 0 {
                self.buf.push(',');
            }
            push_tuple(&mut self.buf, row);
            if !tuple_fits(&mut self.buf, mark, tuples, self.tail.len(), max_len, fixed)? {
                break;
            }
            taken += 1;
            tuples += 1;
        }
        self.buf.push_str(&self.tail);
        Ok((taken, &self.buf))
    }
}

fn push_tuple(buf: &mut String, row: &Row) {
    buf.push('(');
    push_str_literal(buf, row.id());
    buf.push(',');
    push_str_literal(buf, row.order_id());
    // The numbers are SQL literals already (see crate::decode).
    for n in [row.quantity(), row.unit_price(), row.total_value()] {
        buf.push(',');
        buf.push_str(n);
    }
    buf.push(',');
    buf.push_str(row.processed_at().unwrap_or("NULL"));
    buf.push(')');
}

/// Appends `s` as a string literal whose meaning does not depend on `sql_mode`.
pub(crate) fn push_str_literal(buf: &mut String, s: &str) {
    if needs_hex(s.as_bytes()) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        buf.reserve(s.len() * 2 + 12);
        buf.push_str("_utf8mb4 X'");
        for b in s.bytes() {
            buf.push(HEX[(b >> 4) as usize] as char);
            buf.push(HEX[(b & 15) as usize] as char);
        }
        buf.push('\'');
    } else {
        buf.push('\'');
        buf.push_str(s);
        buf.push('\'');
    }
}

/// Whether `s` holds a quote, a backslash, NUL or Ctrl-Z.
///
/// Runs for every string of every row, so it looks at eight bytes at a time:
/// `x ^ splat(c)` has a zero byte exactly where `x` holds `c`, and the
/// classic `(v - 0x01..) & !v & 0x80..` test finds a zero byte without
/// branching per byte.
fn needs_hex(s: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    fn has_zero(v: u64) -> bool {
        v.wrapping_sub(LO) & !v & HI != 0
    }
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        if has_zero(x)
            || has_zero(x ^ (LO * b'\'' as u64))
            || has_zero(x ^ (LO * b'\\' as u64))
            || has_zero(x ^ (LO * 0x1a))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|b| matches!(b, b'\'' | b'\\' | 0 | 0x1a))
}

/// Appends raw bytes as a binary hex literal, or NULL.
pub(crate) fn push_bytes_literal(buf: &mut String, bytes: Option<&[u8]>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let Some(bytes) = bytes else {
        buf.push_str("NULL");
        return;
    };
    buf.reserve(bytes.len() * 2 + 3);
    buf.push_str("X'");
    for b in bytes {
        buf.push(HEX[(b >> 4) as usize] as char);
        buf.push(HEX[(b & 15) as usize] as char);
    }
    buf.push('\'');
}

/// Appends a `DELETE` of as many of `ids` as fit in `budget` bytes (at
/// least one); returns how many it took.
pub(crate) fn push_delete(buf: &mut String, table: &str, ids: &[&str], budget: usize) -> usize {
    buf.push_str("DELETE FROM ");
    buf.push_str(table);
    buf.push_str(" WHERE `id` IN (");
    let mut n = 0;
    for id in ids {
        let mark = buf.len();
        if n > 0 {
            buf.push(',');
        }
        push_str_literal(buf, id);
        if buf.len() + 1 > budget && n > 0 {
            buf.truncate(mark);
            break;
        }
        n += 1;
    }
    buf.push(')');
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Num;

    fn str_literal(s: &str) -> String {
        let mut out = String::new();
        push_str_literal(&mut out, s);
        out
    }

    fn num_literal(n: Num) -> String {
        let mut out = String::new();
        n.push_to(&mut out);
        out
    }

    fn row(id: &str) -> Row {
        Row::new(
            id,
            "ORD-1",
            Num::Int(5),
            Num::Float(49.99),
            Num::Float(249.95),
            Some(Num::Int(1699267200)),
        )
    }

    #[test]
    fn identifiers() {
        assert!(check_identifier("orders").is_ok());
        assert!(check_identifier("app_consumer-2$").is_ok());
        assert!(check_identifier("").is_err());
        assert!(check_identifier("a`b").is_err());
        assert!(check_identifier("a b").is_err());
        assert!(check_identifier("a;drop").is_err());
        assert!(check_identifier(&"x".repeat(65)).is_err());
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }

    #[test]
    fn dialect_from_version() {
        use Dialect::*;
        assert_eq!(
            Dialect::for_server_version("10.11.6-MariaDB-0+deb12u1"),
            ValuesFunction
        );
        assert_eq!(
            Dialect::for_server_version("11.4.2-MariaDB"),
            ValuesFunction
        );
        assert_eq!(Dialect::for_server_version("5.7.44-log"), ValuesFunction);
        assert_eq!(Dialect::for_server_version("8.0.18"), ValuesFunction);
        assert_eq!(Dialect::for_server_version("8.0.19"), RowAlias);
        assert_eq!(Dialect::for_server_version("8.4.3"), RowAlias);
        assert_eq!(Dialect::for_server_version("9.1.0-commercial"), RowAlias);
    }

    #[test]
    fn statement_text_for_both_dialects() {
        let rows = [row("a"), row("b")];
        let mut b = UpsertBuilder::new("db", "t", Dialect::ValuesFunction);
        let (n, sql) = b.build(&rows, 1 << 20).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            sql,
            "INSERT INTO `db`.`t` (`id`,`order_id`,`quantity`,`unit_price`,`total_value`,`processed_at`) VALUES \
             ('a','ORD-1',5,49.99,249.95,1699267200),('b','ORD-1',5,49.99,249.95,1699267200) \
             ON DUPLICATE KEY UPDATE `order_id`=VALUES(`order_id`),`quantity`=VALUES(`quantity`),\
             `unit_price`=VALUES(`unit_price`),`total_value`=VALUES(`total_value`),\
             `processed_at`=VALUES(`processed_at`)"
        );
        let mut b = UpsertBuilder::new("db", "t", Dialect::RowAlias);
        let (_, sql) = b.build(&rows[..1], 1 << 20).unwrap();
        assert!(sql.ends_with(
            " AS `new` ON DUPLICATE KEY UPDATE `order_id`=`new`.`order_id`,`quantity`=`new`.`quantity`,\
             `unit_price`=`new`.`unit_price`,`total_value`=`new`.`total_value`,`processed_at`=`new`.`processed_at`"
        ), "{sql}");
    }

    #[test]
    fn statements_respect_the_byte_limit() {
        let rows: Vec<Row> = (0..100).map(|i| row(&format!("id-{i}"))).collect();
        let mut b = UpsertBuilder::new("db", "t", Dialect::ValuesFunction);
        let limit = 2000;
        let mut start = 0;
        let mut statements = 0;
        while start < rows.len() {
            let (n, sql) = b.build(&rows[start..], limit).unwrap();
            assert!(n > 0);
            assert!(sql.len() <= limit, "{} > {limit}", sql.len());
            start += n;
            statements += 1;
        }
        assert!(statements > 1);
        let err = b.build(&rows, 100).unwrap_err();
        assert!(matches!(err, BuildError::RowTooLarge { limit: 100, .. }));
    }

    #[test]
    fn special_bytes_are_found_at_every_position() {
        let naive = |s: &[u8]| s.iter().any(|b| matches!(b, b'\'' | b'\\' | 0 | 0x1a));
        for len in 0..24 {
            // Bytes on either side of the special ones, and UTF-8 continuation bytes.
            for filler in [b'a', 0x01, 0x19, 0x1b, 0x26, 0x28, 0x5b, 0x5d, 0x80, 0xff] {
                let plain = vec![filler; len];
                assert_eq!(needs_hex(&plain), naive(&plain), "{plain:?}");
                for at in 0..len {
                    for special in [b'\'', b'\\', 0, 0x1a] {
                        let mut s = plain.clone();
                        s[at] = special;
                        assert!(needs_hex(&s), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn literals() {
        assert_eq!(str_literal("plain"), "'plain'");
        assert_eq!(str_literal("emoji 😀"), "'emoji 😀'");
        assert_eq!(str_literal("a'b"), "_utf8mb4 X'612762'");
        assert_eq!(str_literal("a\\b"), "_utf8mb4 X'615C62'");
        assert_eq!(str_literal("\0"), "_utf8mb4 X'00'");
        let mut b = String::new();
        push_bytes_literal(&mut b, Some(b"\x00'z"));
        assert_eq!(b, "X'00277A'");
        b.clear();
        push_bytes_literal(&mut b, None);
        assert_eq!(b, "NULL");
        assert_eq!(num_literal(Num::Float(49.99)), "49.99");
        assert_eq!(num_literal(Num::Float(0.1)), "0.1");
        assert_eq!(num_literal(Num::Float(5.0)), "5.0");
        assert_eq!(num_literal(Num::Int(-7)), "-7");
        assert_eq!(num_literal(Num::Uint(u64::MAX)), "18446744073709551615");
    }
}
