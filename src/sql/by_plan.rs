//! Statements for rows decoded by a route's plan (`decode::PlanRow`): the
//! multi-row upsert in both dialects, plain inserts, per-row updates and
//! deletes by a key of any shape, each sized under `max_allowed_packet` as
//! [`UpsertBuilder`](super::UpsertBuilder) sizes its statements.
//!
//! A multi-row `INSERT` names one column list for all its rows, so a
//! statement takes the longest run of rows that leave out the same columns
//! (partial upserts): the rest go in the next statement, in order, so a
//! later version of a key still wins. Key columns are never assigned on a
//! duplicate: they are what the duplicate was found by.

use super::{push_str_literal, quote_ident, tuple_fits, BuildError, Dialect};
use crate::decode::{Cell, PlanRow};
use crate::types::{Envelope, Op};

/// How a plan's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Insert, or update the row the key finds.
    Upsert,
    /// Insert only; a duplicate key is the server's error (a dead letter).
    Insert,
    /// Update the row the key finds; never create one.
    Update,
}

/// The table side of a plan's rows: its columns in cell order, which of
/// them are the key, how rows are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanShape {
    /// `db`.`table`, quoted.
    pub table: String,
    /// Column names, unquoted, in the rows' cell order.
    pub columns: Vec<String>,
    /// Positions in `columns` of the key, in key order.
    pub key: Vec<usize>,
    pub mode: WriteMode,
}

impl PlanShape {
    /// The key columns, comma-separated, for messages.
    pub fn key_names(&self) -> String {
        let names: Vec<&str> = self
            .key
            .iter()
            .filter_map(|&k| self.columns.get(k).map(String::as_str))
            .collect();
        names.join(", ")
    }
}

/// Something that may carry a plan's row (see [`AsRow`](super::AsRow)).
pub trait AsPlanRow {
    /// The row, or `None` for an item the statement skips.
    fn as_plan_row(&self) -> Option<&PlanRow>;
}

impl AsPlanRow for PlanRow {
    fn as_plan_row(&self) -> Option<&PlanRow> {
        Some(self)
    }
}

impl AsPlanRow for Envelope {
    fn as_plan_row(&self) -> Option<&PlanRow> {
        match &self.op {
            Op::Plan(row) | Op::PlanDelete(row) => Some(row),
            _ => None,
        }
    }
}

impl<T: AsPlanRow> AsPlanRow for &T {
    fn as_plan_row(&self) -> Option<&PlanRow> {
        (*self).as_plan_row()
    }
}

/// Why a plan's statement could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanBuildError {
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The decoder refuses such rows; a row built otherwise must not turn
    /// into a statement that matches nothing.
    #[error("the row has no value for key column `{column}`")]
    KeyMissing { column: String },
}

/// Builds a plan's statements into a reused buffer.
pub struct PlanStatements {
    shape: PlanShape,
    dialect: Dialect,
    quoted: Vec<String>,
    is_key: Vec<bool>,
    /// The column list and update clause of the last statement's rows,
    /// kept while rows keep leaving out the same columns.
    present: Vec<bool>,
    head: String,
    tail: String,
    buf: String,
}

impl PlanStatements {
    pub fn new(shape: &PlanShape, dialect: Dialect) -> PlanStatements {
        let quoted = shape.columns.iter().map(|c| quote_ident(c)).collect();
        let is_key = (0..shape.columns.len())
            .map(|k| shape.key.contains(&k))
            .collect();
        PlanStatements {
            shape: shape.clone(),
            dialect,
            quoted,
            is_key,
            present: Vec::new(),
            head: String::new(),
            tail: String::new(),
            buf: String::with_capacity(64 * 1024),
        }
    }

    pub fn shape(&self) -> &PlanShape {
        &self.shape
    }

    /// The column list and `ON DUPLICATE KEY` clause for rows that have
    /// the cells `row` has.
    fn prepare(&mut self, row: &PlanRow) {
        let same = self.present.len() == row.len()
            && !self.head.is_empty()
            && self
                .present
                .iter()
                .enumerate()
                .all(|(k, &p)| p == (row.cell(k) != Cell::Absent));
        if same {
            return;
        }
        self.present = row.cells().map(|c| c != Cell::Absent).collect();
        let cols: Vec<&str> = self
            .quoted
            .iter()
            .zip(&self.present)
            .filter(|(_, &p)| p)
            .map(|(c, _)| c.as_str())
            .collect();
        self.head = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.shape.table,
            cols.join(",")
        );
        self.tail.clear();
        if self.shape.mode != WriteMode::Upsert {
            return;
        }
        let mut updates: Vec<String> = (0..self.quoted.len())
            .filter(|&k| self.present[k] && !self.is_key[k])
            .map(|k| {
                let c = &self.quoted[k];
                match self.dialect {
                    Dialect::ValuesFunction => format!("{c}=VALUES({c})"),
                    Dialect::RowAlias => format!("{c}=`new`.{c}"),
                }
            })
            .collect();
        if updates.is_empty() {
            // Only the key is written: a duplicate has nothing to change,
            // and `INSERT IGNORE` would also hide every other error.
            let k = self.shape.key.first().map_or("", |&k| &self.quoted[k]);
            updates.push(format!("{k}={k}"));
        }
        if self.dialect == Dialect::RowAlias {
            self.tail.push_str(" AS `new`");
        }
        self.tail.push_str(" ON DUPLICATE KEY UPDATE ");
        self.tail.push_str(&updates.join(","));
    }

    /// Upsert and insert modes: one `INSERT` of the longest prefix of `rows`
    /// that leave out the same columns and whose text stays within
    /// `max_len` bytes. Returns how many items it covers (items without a
    /// row are passed over) and the text; rows keep their order.
    pub fn build_insert<'a, R: AsPlanRow>(
        &'a mut self,
        rows: &[R],
        max_len: usize,
    ) -> Result<(usize, &'a str), PlanBuildError> {
        let Some(first) = rows.iter().find_map(AsPlanRow::as_plan_row) else {
            self.buf.clear();
            return Ok((rows.len(), ""));
        };
        self.prepare(first);
        self.buf.clear();
        self.buf.push_str(&self.head);
        let fixed = self.head.len() + self.tail.len();
        let (mut taken, mut tuples) = (0, 0);
        const AHEAD: usize = 6;
        for (k, r) in rows.iter().enumerate() {
            if let Some(ahead) = rows.get(k + AHEAD).and_then(AsPlanRow::as_plan_row) {
                ahead.prefetch();
            }
            let Some(row) = r.as_plan_row() else {
                taken += 1;
                continue;
            };
            if !row.same_columns(first) {
                break;
            }
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

    /// Update mode: `UPDATE … SET … WHERE key` for one row, or `None` when
    /// the row has nothing but its key.
    pub fn build_update<'a>(
        &'a mut self,
        row: &PlanRow,
        max_len: usize,
    ) -> Result<Option<&'a str>, PlanBuildError> {
        self.buf.clear();
        self.buf.push_str("UPDATE ");
        self.buf.push_str(&self.shape.table);
        self.buf.push_str(" SET ");
        let mut sets = 0;
        for (k, cell) in row.cells().enumerate() {
            if self.is_key.get(k).copied().unwrap_or(true) {
                continue;
            }
            if cell == Cell::Absent {
                continue;
            }
            if sets > 0 {
                self.buf.push(',');
            }
            self.buf.push_str(&self.quoted[k]);
            self.buf.push('=');
            push_cell(&mut self.buf, cell);
            sets += 1;
        }
        if sets == 0 {
            return Ok(None);
        }
        self.buf.push_str(" WHERE ");
        for (n, &k) in self.shape.key.iter().enumerate() {
            if n > 0 {
                self.buf.push_str(" AND ");
            }
            self.buf.push_str(&self.quoted[k]);
            self.buf.push('=');
            push_cell(&mut self.buf, key_value(&self.shape, row, k)?);
        }
        if self.buf.len() > max_len {
            return Err(BuildError::RowTooLarge {
                needed: self.buf.len(),
                limit: max_len,
            }
            .into());
        }
        Ok(Some(&self.buf))
    }

    /// Tombstones: one `DELETE` by key of the longest prefix of `rows`
    /// that fits in `max_len` bytes (at least one row): `k IN (…)` for a
    /// one-column key, `(a,b) IN ((…),(…))` for a composite one. Returns
    /// how many items it covers and the text.
    pub fn build_delete<'a, R: AsPlanRow>(
        &'a mut self,
        rows: &[R],
        max_len: usize,
    ) -> Result<(usize, &'a str), PlanBuildError> {
        let key = &self.shape.key;
        self.buf.clear();
        self.buf.push_str("DELETE FROM ");
        self.buf.push_str(&self.shape.table);
        self.buf.push_str(" WHERE ");
        let composite = key.len() > 1;
        if composite {
            self.buf.push('(');
        }
        for (n, &k) in key.iter().enumerate() {
            if n > 0 {
                self.buf.push(',');
            }
            self.buf.push_str(&self.quoted[k]);
        }
        if composite {
            self.buf.push(')');
        }
        self.buf.push_str(" IN (");
        let fixed = self.buf.len() + 1;
        let (mut taken, mut tuples) = (0, 0);
        for r in rows {
            let Some(row) = r.as_plan_row() else {
                taken += 1;
                continue;
            };
            let mark = self.buf.len();
            if tuples > 0 {
                self.buf.push(',');
            }
            if composite {
                self.buf.push('(');
            }
            for (n, &k) in key.iter().enumerate() {
                if n > 0 {
                    self.buf.push(',');
                }
                push_cell(&mut self.buf, key_value(&self.shape, row, k)?);
            }
            if composite {
                self.buf.push(')');
            }
            // One byte to come: the closing parenthesis.
            if !tuple_fits(&mut self.buf, mark, tuples, 1, max_len, fixed)? {
                break;
            }
            taken += 1;
            tuples += 1;
        }
        if tuples == 0 {
            self.buf.clear();
            return Ok((taken, ""));
        }
        self.buf.push(')');
        Ok((taken, &self.buf))
    }
}

fn key_value<'r>(
    shape: &PlanShape,
    row: &'r PlanRow,
    k: usize,
) -> Result<Cell<'r>, PlanBuildError> {
    match row.cell(k) {
        c @ (Cell::Value(_) | Cell::Text(_)) => Ok(c),
        _ => Err(PlanBuildError::KeyMissing {
            column: shape.columns.get(k).cloned().unwrap_or_default(),
        }),
    }
}

/// Appends a written cell: a literal, a quoted string or `DEFAULT`
/// (nothing for an absent one, which statements leave out).
fn push_cell(buf: &mut String, cell: Cell<'_>) {
    match cell {
        Cell::Value(v) => buf.push_str(v),
        Cell::Text(s) => push_str_literal(buf, s),
        Cell::Default => buf.push_str("DEFAULT"),
        Cell::Absent => {}
    }
}

fn push_tuple(buf: &mut String, row: &PlanRow) {
    buf.push('(');
    let mut first = true;
    for cell in row.cells() {
        if cell == Cell::Absent {
            continue;
        }
        if !first {
            buf.push(',');
        }
        first = false;
        push_cell(buf, cell);
    }
    buf.push(')');
}

#[cfg(test)]
mod tests;
