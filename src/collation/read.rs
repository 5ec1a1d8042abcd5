//! Reading the key column's collation from the server at start-up.

use mysql::prelude::Queryable;
use mysql::{Conn, Opts};

use super::*;
use crate::db::DbError;

/// Bound on each round trip of the router's own connection.
const RESOLVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl KeyCollation {
    /// The collation of the `id` column of `db`.`table`, which must exist.
    /// `opts` is how the router reaches the server for ids it cannot key
    /// itself.
    pub fn read(
        conn: &mut Conn,
        opts: Opts,
        db: &str,
        table: &str,
    ) -> Result<KeyCollation, DbError> {
        let found: Option<(Option<String>, Option<String>)> = conn
            .exec_first(
                "SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = 'id'",
                (db, table),
            )
            .map_err(query_err("reading the id column's collation"))?;
        match found {
            Some((Some(charset), Some(collation))) => Self::load(conn, opts, &charset, &collation),
            // Not a character column: bytes compare as they are.
            Some(_) => Ok(KeyCollation::binary()),
            None => Err(DbError::KeyCollation(format!(
                "table {db}.{table} has no id column"
            ))),
        }
    }

    /// The collation named `collation` (of its own character set).
    pub fn named(conn: &mut Conn, opts: Opts, collation: &str) -> Result<KeyCollation, DbError> {
        let charset: Option<String> = conn
            .exec_first(
                "SELECT CHARACTER_SET_NAME FROM information_schema.COLLATIONS \
                 WHERE COLLATION_NAME = ?",
                (collation,),
            )
            .map_err(query_err("looking up a collation"))?;
        let charset = charset
            .ok_or_else(|| DbError::KeyCollation(format!("unknown collation {collation:?}")))?;
        Self::load(conn, opts, &charset, collation)
    }

    fn load(
        conn: &mut Conn,
        opts: Opts,
        charset: &str,
        collation: &str,
    ) -> Result<KeyCollation, DbError> {
        for name in [charset, collation] {
            if !plain_name(name) {
                return Err(DbError::KeyCollation(format!(
                    "unexpected character set or collation name {name:?}"
                )));
            }
        }
        let ch = |n: &str| format!("CONVERT(CHAR({n} USING ascii) USING {charset})");
        let pad: Option<i64> = conn
            .query_first(format!(
                "SELECT CONVERT('x' USING {charset}) COLLATE {collation} \
                 = CONVERT('x ' USING {charset}) COLLATE {collation}"
            ))
            .map_err(query_err("reading the collation's padding"))?;
        let pad_space = pad == Some(1);

        let rows: Vec<(i64, Vec<u8>)> = conn
            .query(format!(
                "SELECT c.n, WEIGHT_STRING({} COLLATE {collation}) FROM {} AS c",
                ch("c.n"),
                ascii_codes()
            ))
            .map_err(query_err("reading the collation's ASCII weights"))?;
        let mut weights: Vec<Option<Vec<u8>>> = vec![None; 128];
        for (n, w) in rows {
            if let Some(slot) = usize::try_from(n).ok().and_then(|n| weights.get_mut(n)) {
                *slot = Some(w);
            }
        }
        let Some(weights) = weights.into_iter().collect::<Option<Vec<Vec<u8>>>>() else {
            return Err(DbError::KeyCollation(format!(
                "the server did not weigh every ASCII character under {collation}"
            )));
        };

        // Each pair's weights must be its characters' end to end: no
        // contraction (danish `aa`), no levels one after another.
        let broken: Option<u64> = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM {codes} AS a CROSS JOIN {codes} AS b \
                 WHERE NOT (WEIGHT_STRING(CONCAT({a}, {b}) COLLATE {collation}) \
                 <=> CONCAT(WEIGHT_STRING({a} COLLATE {collation}), WEIGHT_STRING({b} COLLATE {collation})))",
                codes = ascii_codes(),
                a = ch("a.n"),
                b = ch("b.n"),
            ))
            .map_err(query_err("checking the collation's ASCII weights"))?;
        let weigh = if broken == Some(0) {
            Weigh::Local
        } else {
            Weigh::Server
        };

        // Short timeouts: the consumer thread waits on these.
        let short = Some(RESOLVER_TIMEOUT);
        let server = ServerWeights {
            opts: Opts::from(
                mysql::OptsBuilder::from_opts(opts)
                    .tcp_connect_timeout(short)
                    .read_timeout(short)
                    .write_timeout(short),
            ),
            sql: format!(
                "SELECT WEIGHT_STRING(CONVERT(CONVERT(CAST(? AS BINARY) USING utf8mb4) \
                 USING {charset}) COLLATE {collation})"
            ),
        };
        // Once now, so that a statement the server refuses fails start-up
        // rather than the routing of some later row.
        let _: Option<Option<Vec<u8>>> = conn
            .exec_first(&server.sql, ("\u{e9}",))
            .map_err(query_err("weighing a key by the collation"))?;
        Ok(Self::new(
            collation,
            pad_space,
            weigh,
            weights,
            Some(server),
        ))
    }
}

/// Whether `name` can go into SQL as it is: `[A-Za-z0-9_]+`.
pub(super) fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `(SELECT n ...)`: the ASCII codes 0 to 127, without a recursive CTE
/// (which MySQL 5.7 lacks).
pub(super) fn ascii_codes() -> String {
    let digits = |n: u32| {
        (0..n)
            .map(|d| format!("SELECT {d} AS d"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    format!(
        "(SELECT h.d * 16 + l.d AS n FROM ({}) AS l CROSS JOIN ({}) AS h)",
        digits(16),
        digits(8)
    )
}

fn query_err(what: &'static str) -> impl FnOnce(mysql::Error) -> DbError {
    move |source| DbError::Query { what, source }
}
