//! The writer's MySQL side: one kept session, the transaction of a batch,
//! and when a session must be given up.

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::dlq::DlqTarget;
use super::error::WriteError;
use super::retry::is_packet_too_large;
use super::target_sink::TargetSink;
use crate::db::{self, Pool, PooledConn};
use crate::fence::{self, FenceSpec, Standing};
use crate::sql::{self, AsRow, UpsertBuilder};
use crate::types::{Coord, DeadLetter, Envelope, Op, Part};

/// A partition of a batch, with the generation its rows were read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claim {
    pub part: Part,
    pub generation: u64,
}

/// Where a writer sends its work; MySQL in production, something cheaper in
/// benchmarks of the pipeline itself.
///
/// One attempt at a batch is `begin`, any number of `write`s and
/// `dead_letter`s, then `commit`; a failed attempt is abandoned with
/// `rollback` and started over.
pub trait BatchSink: Send {
    /// Starts an attempt at a batch whose rows were read under `claims`, and
    /// returns how the partitions stand now (those missing from the answer,
    /// or standing at another generation, are no longer this instance's).
    fn begin(&mut self, claims: &[Claim]) -> Result<Vec<Standing>, WriteError> {
        Ok(claims
            .iter()
            .map(|c| Standing {
                part: c.part,
                generation: c.generation,
                next_offset: None,
            })
            .collect())
    }
    /// Applies `items`, which are all of one kind (upserts, deletes, or a
    /// route target's rows or deletes), in order.
    fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError>;
    /// Stores messages that cannot be written. Must be idempotent.
    fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), WriteError>;
    /// Makes the attempt durable; in exactly-once mode together with each
    /// partition's next offset.
    fn commit(&mut self, _next: &[Coord]) -> Result<(), WriteError> {
        Ok(())
    }
    /// Abandons the attempt.
    fn rollback(&mut self) {}
    /// After a commit: rows that update-mode writes of the attempt did not
    /// find, by table.
    fn take_not_found(&mut self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// How long a writer keeps an idle connection before handing it back, well
/// under any server's `wait_timeout`.
const CONN_IDLE_LIMIT: Duration = Duration::from_secs(60);

/// How a transaction stands after one of its statements failed.
enum Survival {
    Alive,
    /// The server rolled it back whole (its savepoint is gone too): InnoDB
    /// does so for some errors (deadlocks, a full lock table, lock wait
    /// timeouts with `innodb_rollback_on_timeout`), only the statement for
    /// most.
    RolledBack,
    /// The question itself got no clean answer: the session is not to be
    /// trusted any more.
    Unknown(mysql::Error),
}

fn survival(conn: &mut PooledConn) -> Survival {
    // Every result set is read, so an error of the second statement is
    // seen, and nothing is left unread on the connection.
    let result = fence::run_multi(&mut ***conn, &sql::check_alive());
    match result {
        Ok(()) => Survival::Alive,
        Err(mysql::Error::MySqlError(_)) => Survival::RolledBack,
        Err(e) => Survival::Unknown(e),
    }
}

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
    pub(super) budget: usize,
    pub(super) dlq: DlqTarget,
    /// Route targets by `Envelope::target`; empty on the orders path.
    pub(super) targets: Vec<TargetSink>,
    /// Partition ownership; `None` only where no consumer claims partitions
    /// (tests and benchmarks that drive writers directly).
    fence: Option<FenceSpec>,
    /// How to reach the server on a side connection, to stop a statement
    /// left running by a session given up on.
    side: Option<mysql::Opts>,
    pub(super) in_tx: bool,
    buf: String,
}

impl MysqlSink {
    pub fn new(
        pool: Pool,
        builder: UpsertBuilder,
        table: String,
        statement_budget: usize,
        dlq: DlqTarget,
    ) -> MysqlSink {
        MysqlSink {
            pool,
            conn: None,
            idle_limit: CONN_IDLE_LIMIT,
            builder,
            table,
            budget: statement_budget,
            dlq,
            targets: Vec::new(),
            fence: None,
            side: None,
            in_tx: false,
            buf: String::new(),
        }
    }

    /// Hands an idle connection back after `limit` instead of a minute.
    pub fn with_idle_limit(mut self, limit: Duration) -> MysqlSink {
        self.idle_limit = limit;
        self
    }

    /// Writes every batch in a transaction that first checks partition
    /// ownership (see [`crate::fence`]).
    pub(crate) fn fenced(mut self, spec: FenceSpec) -> MysqlSink {
        self.fence = Some(spec);
        self
    }

    /// Writes route rows too, by these targets' statements.
    pub(crate) fn with_targets(mut self, targets: Vec<TargetSink>) -> MysqlSink {
        self.targets = targets;
        self
    }

    /// Kills what a session given up on left running, over a side
    /// connection made with `opts`.
    pub(crate) fn with_side_connection(mut self, opts: mysql::Opts) -> MysqlSink {
        self.side = Some(opts);
        self
    }

    /// Runs `statements` on the writer's connection, checking one out first
    /// if it has none (or let its connection idle too long).
    pub(super) fn with_conn<T>(
        &mut self,
        statements: impl FnOnce(&mut Self, &mut PooledConn) -> Result<T, WriteError>,
    ) -> Result<T, WriteError> {
        // An idle-expired connection goes back to the pool (which pings it
        // and drops it if the server closed it) before another is taken, so
        // a pool no larger than the writer count is never short by one. A
        // connection in a transaction is never handed back.
        let kept = match self.conn.take() {
            Some((c, used)) if self.in_tx || used.elapsed() < self.idle_limit => Some(c),
            _ => None,
        };
        let mut conn = match kept {
            Some(c) => c,
            None => self.pool.get()?,
        };
        let result = statements(self, &mut conn);
        let Err(e) = result else {
            self.conn = Some((conn, Instant::now()));
            return result;
        };
        let e = match &e {
            // Refused before anything was sent (a row too large for any
            // statement, or a packet the client will not send): the session
            // and its transaction are as they were.
            WriteError::Build(_)
            | WriteError::PlanBuild(_)
            | WriteError::Mysql(mysql::Error::DriverError(mysql::DriverError::PacketTooLarge)) => {
                self.conn = Some((conn, Instant::now()));
                if is_packet_too_large(&e) {
                    self.reread_budget();
                }
                return Err(e);
            }
            // The server answered, so the session works, unless the answer
            // was that it is shutting down (1053), killed it (1927), or is
            // closing it over a packet too large (1153).
            WriteError::Mysql(mysql::Error::MySqlError(se))
                if !matches!(se.code, 1053 | 1927 | 1153) =>
            {
                if !self.in_tx {
                    self.conn = Some((conn, Instant::now()));
                    return Err(e);
                }
                // Some errors end the whole transaction, not just the
                // statement; what follows must not run outside of it.
                match survival(&mut conn) {
                    Survival::Alive => {
                        self.conn = Some((conn, Instant::now()));
                        return Err(e);
                    }
                    Survival::RolledBack => {
                        self.in_tx = false;
                        self.conn = Some((conn, Instant::now()));
                        return Err(WriteError::TransactionLost(Box::new(e)));
                    }
                    Survival::Unknown(why) => {
                        log::warn!("cannot tell whether a transaction survived ({why})");
                        let id = conn.connection_id();
                        conn.condemn();
                        drop(conn);
                        self.kill_session(id);
                        e
                    }
                }
            }
            WriteError::Mysql(mysql::Error::MySqlError(_)) => {
                drop(conn);
                e
            }
            // No answer, or one the client could not read: where the
            // conversation stands is unknown, so the session is closed and
            // it is ended on the server too, with whatever it holds.
            _ => {
                let id = conn.connection_id();
                conn.condemn();
                drop(conn);
                self.kill_session(id);
                e
            }
        };
        // After the session is given back: a pool no larger than the writer
        // count has no other to spare.
        if is_packet_too_large(&e) {
            self.reread_budget();
        }
        if std::mem::take(&mut self.in_tx) {
            // The transaction went with its session: the attempt is over.
            return Err(WriteError::TransactionLost(Box::new(e)));
        }
        Err(e)
    }

    /// Ends a given-up session on the server, so that a statement it left
    /// running cannot land after the batch is retried elsewhere, and the
    /// locks its transaction holds (the offsets rows among them) are let
    /// go. Tried a few times: until it is done, claims of its partitions
    /// wait (at most the session's `wait_timeout`).
    fn kill_session(&self, connection_id: u32) {
        let Some(opts) = &self.side else {
            return;
        };
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let result = mysql::Conn::new(opts.clone())
                .and_then(|mut c| c.query_drop(sql::kill_connection(connection_id)));
            match result {
                Ok(()) => {
                    log::warn!("ended abandoned MySQL session {connection_id}");
                    return;
                }
                // 1094: no such thread: the session is gone already.
                Err(mysql::Error::MySqlError(e)) if e.code == 1094 => return,
                Err(e) if attempt < ATTEMPTS => {
                    log::warn!("cannot end abandoned MySQL session {connection_id} yet: {e}");
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                }
                Err(e) => log::warn!(
                    "cannot end abandoned MySQL session {connection_id}: {e}; \
                     the server ends it after its wait_timeout"
                ),
            }
        }
    }

    /// Reads `max_allowed_packet` again after the server refused a packet.
    fn reread_budget(&mut self) {
        let read = self.pool.get().map_err(WriteError::from).and_then(|mut c| {
            c.query_first::<u64, _>(sql::MAX_ALLOWED_PACKET)
                .map_err(WriteError::from)
        });
        match read {
            Ok(Some(max)) => {
                let budget = db::statement_budget(usize::try_from(max).unwrap_or(usize::MAX));
                if budget != self.budget {
                    log::warn!(
                        "max_allowed_packet is now {max} bytes; statements are sized to {budget}"
                    );
                }
                self.budget = budget;
            }
            Ok(None) => {}
            Err(e) => log::warn!("cannot read max_allowed_packet again: {e}"),
        }
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

    /// Stores `letters` at `dlq`, each under the topic it came from.
    pub(super) fn store_letters(
        &mut self,
        dlq: &DlqTarget,
        letters: &[DeadLetter<'_>],
    ) -> Result<(), WriteError> {
        let table = match dlq {
            DlqTarget::Skip => {
                for l in letters {
                    log::warn!("skipping message {}: {}", l.env.coord, l.error);
                }
                return Ok(());
            }
            DlqTarget::Table(t) => t.clone(),
            DlqTarget::Topic(t) => return t.send(letters),
        };
        self.with_conn(|this, conn| {
            let mut start = 0;
            while start < letters.len() {
                this.buf.clear();
                start += sql::push_dead_letter_insert(
                    &mut this.buf,
                    &table,
                    &letters[start..],
                    this.budget,
                );
                conn.query_drop(&this.buf)?;
            }
            Ok(())
        })
    }
}

impl BatchSink for MysqlSink {
    fn begin(&mut self, claims: &[Claim]) -> Result<Vec<Standing>, WriteError> {
        let Some(spec) = self.fence.clone() else {
            return Ok(claims
                .iter()
                .map(|c| Standing {
                    part: c.part,
                    generation: c.generation,
                    next_offset: None,
                })
                .collect());
        };
        let mut partitions: Vec<Part> = claims.iter().map(|c| c.part).collect();
        partitions.dedup();
        let rows = spec.rows();
        // One round trip, none of it writing: the transaction, the
        // ownership read under a lock, and a savepoint by which a later
        // error can tell whether the transaction survived it.
        let text = sql::begin_checked(&rows.read(&partitions, spec.exactly_once()));
        let mut standing = self.with_conn(|this, conn| {
            let standing = fence::read_multi(&mut ***conn, &text)?;
            this.in_tx = true;
            Ok(standing)
        })?;
        // Only an exactly-once run keeps the next offset up to date, in the
        // transaction that writes the rows. Left by an earlier exactly-once
        // run, or by `offsets reset`, it says nothing of what an
        // at-least-once run must write: rows below it are not skipped.
        if !spec.exactly_once() {
            for s in &mut standing {
                s.next_offset = None;
            }
        }
        // A partition without its row was claimed by no one: an operator
        // removed it. Nothing of it may be written, nor dropped as fenced.
        if let Some(missing) = partitions
            .iter()
            .find(|p| !standing.iter().any(|s| s.part == **p))
        {
            self.rollback();
            return Err(WriteError::OwnershipMissing {
                partition: *missing,
                table: spec.table.clone(),
            });
        }
        Ok(standing)
    }

    fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError> {
        if let Some(Op::Plan(_) | Op::PlanDelete(_)) = items.first().map(|e| &e.op) {
            return self.write_plan(items);
        }
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
        if !self.targets.is_empty() {
            return self.dead_letter_by_target(letters);
        }
        let dlq = self.dlq.clone();
        self.store_letters(&dlq, letters)
    }

    fn commit(&mut self, next: &[Coord]) -> Result<(), WriteError> {
        if !self.in_tx {
            return Ok(());
        }
        let set_next = match &self.fence {
            Some(spec) if spec.exactly_once() && !next.is_empty() => {
                Some(spec.rows().set_next(next))
            }
            _ => None,
        };
        self.with_conn(|this, conn| {
            if let Some(statements) = &set_next {
                fence::run_multi(&mut ***conn, statements)?;
            }
            conn.query_drop(sql::COMMIT)?;
            this.in_tx = false;
            Ok(())
        })
    }

    fn take_not_found(&mut self) -> Vec<(String, u64)> {
        self.take_targets_not_found()
    }

    fn rollback(&mut self) {
        self.forget_not_found();
        if !std::mem::take(&mut self.in_tx) {
            return;
        }
        if let Some((mut conn, _)) = self.conn.take() {
            match conn.query_drop(sql::ROLLBACK) {
                Ok(()) => self.conn = Some((conn, Instant::now())),
                Err(e) => {
                    log::warn!("ROLLBACK failed ({e}); closing the session instead");
                    conn.condemn();
                }
            }
        }
    }
}
