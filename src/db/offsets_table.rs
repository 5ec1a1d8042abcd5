//! The sink's offsets table at start-up: created when missing, the columns
//! later versions added brought in, and the probe `check` uses.

use mysql::prelude::Queryable;
use mysql::Conn;

use super::{query_err, table_exists, DbError};
use crate::sql;

/// Creates the offsets table when missing, saying how to do it by hand when
/// the sink may not; adds the columns later versions use to a table made
/// before them. Returns whether the table has them: without them (no
/// privilege to add them) the sink runs as before, but cannot tell a
/// recreated topic whose log has grown past its offsets from the old one.
pub(crate) fn ensure_offsets_table(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<bool, DbError> {
    // Looked up first: CREATE TABLE IF NOT EXISTS needs the CREATE privilege
    // even when the table is there, and a pre-created table is the way to
    // run without it.
    if !table_exists(conn, db, table)? {
        let ddl = sql::create_offsets_table(db, table);
        conn.query_drop(&ddl)
            .map_err(|source| DbError::OffsetsTable {
                table: sql::qualified(db, table),
                ddl: ddl.clone(),
                source,
            })?;
        return Ok(true);
    }
    let have = columns(conn, db, table)?;
    let qualified = sql::qualified(db, table);
    for (column, definition) in sql::LATER_COLUMNS {
        if has(&have, column) {
            continue;
        }
        // Bounded: an ALTER queued behind a transaction on the table (an
        // older instance's writer) would hold up every statement after it.
        let _ = conn.query_drop("SET SESSION lock_wait_timeout = 10");
        let ddl = sql::add_offsets_column(&qualified, column, definition);
        let result = conn.query_drop(&ddl);
        let _ = conn.query_drop("SET SESSION lock_wait_timeout = DEFAULT");
        match result {
            Ok(()) => log::info!("added column `{column}` to {qualified}"),
            // Another instance starting at the same time may have added it.
            Err(_) if has(&columns(conn, db, table)?, column) => {}
            Err(e) => {
                log::warn!(
                    "cannot add column `{column}` to {qualified} ({e}); a recreated topic whose \
                     log has grown past the sink's offsets will not be told from the old one, \
                     and a reset Kafka did not confirm is not kept. As an administrator: {ddl}"
                );
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The columns of `db`.`table`.
fn columns(conn: &mut Conn, db: &str, table: &str) -> Result<Vec<String>, DbError> {
    conn.exec(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (db, table),
    )
    .map_err(query_err("reading the offsets table's columns"))
}

fn has(columns: &[String], column: &str) -> bool {
    columns.iter().any(|c| c.eq_ignore_ascii_case(column))
}

/// Whether the offsets table `db`.`table` has the columns later versions
/// added (`sql::LATER_COLUMNS`); reads, changes nothing.
pub(crate) fn offsets_table_has_marks(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<bool, DbError> {
    let have = columns(conn, db, table)?;
    Ok(sql::LATER_COLUMNS.iter().all(|(c, _)| has(&have, c)))
}

/// Checks that the session may insert into and update the offsets table,
/// by statements that match no row.
pub(crate) fn probe_offsets_writes(conn: &mut Conn, table: &str) -> Result<(), mysql::Error> {
    conn.query_drop(format!(
        "INSERT INTO {table} (`consumer_group`,`topic`,`kafka_partition`,`generation`,`owner`) \
         SELECT '', '', 0, 0, '' FROM DUAL WHERE 1 = 0"
    ))?;
    conn.query_drop(format!(
        "UPDATE {table} SET `generation` = `generation` WHERE 1 = 0"
    ))
}
