//! The writer's MySQL side for route rows: each target's statements
//! (upsert, insert, update, delete by key) and dead-letter destination.

use mysql::prelude::Queryable;

use super::error::WriteError;
use super::mysql_sink::MysqlSink;
use crate::db::PooledConn;
use crate::sql::{self, PlanStatements, WriteMode};
use crate::types::{DeadLetter, Envelope, Op};

/// How many rows the last `UPDATE` found, changed or not: the server's
/// info line says (`Rows matched: 1  Changed: 0`), whereas affected rows
/// count only changed ones unless the session asked for found rows.
fn rows_matched(conn: &PooledConn) -> u64 {
    let info = conn.info_str();
    info.split("Rows matched:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| conn.affected_rows())
}

impl MysqlSink {
    /// Applies route rows of one target and one kind (`Op::Plan` or
    /// `Op::PlanDelete`), in order, by that target's statements.
    pub(super) fn write_plan(&mut self, items: &[Envelope]) -> Result<(), WriteError> {
        let Some(first) = items.first() else {
            return Ok(());
        };
        let t = usize::from(first.target);
        let delete = matches!(first.op, Op::PlanDelete(_));
        self.with_conn(|this, conn| {
            let budget = this.budget;
            let in_tx = this.in_tx;
            let Some(target) = this.targets.get_mut(t) else {
                return Ok(());
            };
            let st = &mut target.statements;
            if delete {
                let mut start = 0;
                while start < items.len() {
                    let (n, text) = st.build_delete(&items[start..], budget)?;
                    if !text.is_empty() {
                        conn.query_drop(text)?;
                    }
                    start += n.max(1);
                }
                return Ok(());
            }
            match st.shape().mode {
                WriteMode::Update => {
                    let mut missed = 0;
                    for e in items {
                        let Op::Plan(row) = &e.op else { continue };
                        if let Some(text) = st.build_update(row, budget)? {
                            conn.query_drop(text)?;
                            if rows_matched(conn) == 0 {
                                missed += 1;
                            }
                        }
                    }
                    // Counted only for a write that went through whole: a
                    // failed one is written again in halves, and counted
                    // there.
                    target.not_found += missed;
                    Ok(())
                }
                mode => {
                    let all_or_nothing = mode == WriteMode::Insert && in_tx;
                    insert_rows(st, conn, items, budget, all_or_nothing)
                }
            }
        })
    }

    /// Stores dead letters each at its target's destination.
    pub(super) fn dead_letter_by_target(
        &mut self,
        letters: &[DeadLetter<'_>],
    ) -> Result<(), WriteError> {
        let mut targets: Vec<u16> = letters.iter().map(|l| l.env.target).collect();
        targets.sort_unstable();
        targets.dedup();
        for t in targets {
            // A target every writer knows (the pipeline gives each all of
            // them); were one unknown, its letters would still be stored.
            let dlq = match self.targets.get(usize::from(t)) {
                Some(target) => target.dlq.clone(),
                None => self.dlq.clone(),
            };
            let mine: Vec<DeadLetter<'_>> = letters
                .iter()
                .filter(|l| l.env.target == t)
                .map(|l| DeadLetter {
                    env: l.env,
                    error: l.error.clone(),
                })
                .collect();
            self.store_letters(&dlq, &mine)?;
        }
        Ok(())
    }

    /// Rows not found by update-mode writes since the last call, by table.
    pub(super) fn take_targets_not_found(&mut self) -> Vec<(String, u64)> {
        self.targets
            .iter_mut()
            .filter(|t| t.not_found > 0)
            .map(|t| (t.table.clone(), std::mem::take(&mut t.not_found)))
            .collect()
    }

    /// Forgets what an abandoned attempt counted.
    pub(super) fn forget_not_found(&mut self) {
        for t in &mut self.targets {
            t.not_found = 0;
        }
    }
}

/// Upserts or inserts `items` in as many statements as the budget needs.
/// With `all_or_nothing` (inserts in a transaction), a write that fails
/// after some of its statements went through is undone to where it began:
/// its rows are written again in halves, and would otherwise be refused as
/// duplicates of their own first attempt.
fn insert_rows(
    st: &mut PlanStatements,
    conn: &mut PooledConn,
    items: &[Envelope],
    budget: usize,
    all_or_nothing: bool,
) -> Result<(), WriteError> {
    let mut saved = false;
    let mut start = 0;
    let result: Result<(), WriteError> = (|| {
        while start < items.len() {
            let (n, text) = st.build_insert(&items[start..], budget)?;
            if all_or_nothing && !saved && start + n < items.len() {
                conn.query_drop(sql::SAVE_WRITE)?;
                saved = true;
            }
            if !text.is_empty() {
                conn.query_drop(text)?;
            }
            start += n.max(1);
        }
        Ok(())
    })();
    if result.is_err() && saved {
        // Should this fail, the transaction is gone: the caller's check of
        // it finds that out.
        let _ = conn.query_drop(sql::UNDO_WRITE);
    }
    result
}
