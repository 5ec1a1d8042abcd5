//! The writer's MySQL side: one kept connection, the statements a batch
//! needs, and when a connection must be given up.

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::dlq::DlqTarget;
use super::error::WriteError;
use crate::db::{Pool, PooledConn};
use crate::sql::{self, AsRow, UpsertBuilder};
use crate::types::{DeadLetter, Envelope, Op};

/// Where a writer sends its work; MySQL in production, something cheaper in
/// benchmarks of the pipeline itself.
pub trait BatchSink: Send {
    /// Applies `items`, which are all upserts or all deletes, in order.
    fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError>;
    /// Stores messages that cannot be written. Must be idempotent.
    fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), WriteError>;
}

/// How long a writer keeps an idle connection before handing it back, well
/// under any server's `wait_timeout`.
const CONN_IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Dead letters per `INSERT`.
const DEAD_LETTERS_PER_STATEMENT: usize = 100;

/// Writes batches as multi-row upserts over a pooled connection.
///
/// The connection is kept from one batch to the next instead of being
/// checked out per batch: r2d2_mysql pings a connection every time it goes
/// back to the pool, which cost a round trip per batch. It is handed back
/// after a driver or network error (so a broken one is replaced) and after
/// sitting idle for a minute (see [`MysqlSink::with_idle_limit`]).
pub struct MysqlSink {
    pool: Pool,
    conn: Option<(PooledConn, Instant)>,
    idle_limit: Duration,
    builder: UpsertBuilder,
    table: String,
    budget: usize,
    topic: String,
    dlq: DlqTarget,
    buf: String,
}

impl MysqlSink {
    pub fn new(
        pool: Pool,
        builder: UpsertBuilder,
        table: String,
        statement_budget: usize,
        topic: String,
        dlq: DlqTarget,
    ) -> MysqlSink {
        MysqlSink {
            pool,
            conn: None,
            idle_limit: CONN_IDLE_LIMIT,
            builder,
            table,
            budget: statement_budget,
            topic,
            dlq,
            buf: String::new(),
        }
    }

    /// Hands an idle connection back after `limit` instead of a minute.
    pub fn with_idle_limit(mut self, limit: Duration) -> MysqlSink {
        self.idle_limit = limit;
        self
    }

    /// Runs `statements` on the writer's connection, checking one out first
    /// if it has none (or let its connection idle too long).
    fn with_conn<T>(
        &mut self,
        statements: impl FnOnce(&mut Self, &mut PooledConn) -> Result<T, WriteError>,
    ) -> Result<T, WriteError> {
        // An idle-expired connection goes back to the pool (which pings it
        // and drops it if the server closed it) before another is taken, so
        // a pool no larger than the writer count is never short by one.
        let kept = match self.conn.take() {
            Some((c, used)) if used.elapsed() < self.idle_limit => Some(c),
            _ => None,
        };
        let mut conn = match kept {
            Some(c) => c,
            None => self.pool.get()?,
        };
        let result = statements(self, &mut conn);
        let keep = match &result {
            Ok(_) => true,
            // The server answered, so the connection works, unless the
            // answer was that it is shutting down (1053) or killed it (1927).
            Err(WriteError::Mysql(mysql::Error::MySqlError(e))) => !matches!(e.code, 1053 | 1927),
            _ => false,
        };
        if keep {
            self.conn = Some((conn, Instant::now()));
        }
        // Otherwise it goes back to the pool, which drops it if it is broken.
        result
    }

    fn delete(&mut self, ids: &[&str]) -> Result<(), WriteError> {
        self.with_conn(|this, conn| {
            let mut start = 0;
            while start < ids.len() {
                this.buf.clear();
                start += sql::push_delete(&mut this.buf, &this.table, &ids[start..], this.budget);
                conn.query_drop(&this.buf)?;
            }
            Ok(())
        })
    }
}

impl BatchSink for MysqlSink {
    fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError> {
        if items.iter().all(|e| e.as_row().is_none()) {
            let ids: Vec<&str> = items
                .iter()
                .filter_map(|e| match &e.op {
                    Op::Delete(id) => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            return self.delete(&ids);
        }
        self.with_conn(|this, conn| {
            let mut start = 0;
            // Usually one statement; more only when the batch would exceed
            // max_allowed_packet. Each is atomic on its own and all are
            // idempotent, so a retry after a partial success is harmless.
            while start < items.len() {
                let (n, sql) = this.builder.build(&items[start..], this.budget)?;
                conn.query_drop(sql)?;
                start += n;
            }
            Ok(())
        })
    }

    fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), WriteError> {
        let table = match &self.dlq {
            DlqTarget::Skip => {
                for l in letters {
                    log::warn!(
                        "skipping message {}/{}: {}",
                        self.topic,
                        l.env.coord,
                        l.error
                    );
                }
                return Ok(());
            }
            DlqTarget::Table(t) => t.clone(),
            DlqTarget::Topic(t) => return t.send(letters),
        };
        self.with_conn(|this, conn| {
            for chunk in letters.chunks(DEAD_LETTERS_PER_STATEMENT) {
                this.buf.clear();
                sql::push_dead_letter_insert(&mut this.buf, &table, &this.topic, chunk);
                conn.query_drop(&this.buf)?;
            }
            Ok(())
        })
    }
}
