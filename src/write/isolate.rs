//! Finding the rows MySQL refuses, and storing them as dead letters.
//!
//! A batch that fails on its data is split in halves, recursively, until the
//! refused rows are found: every other row is written, each refused row goes
//! to the dead-letter destination with the server's error, and the cost of
//! one bad row in a batch of n is about 2·log2(n) extra statements.

use super::retry::{classify, ErrorClass};
use super::{BatchSink, WriteError, Writer};
use crate::metrics::Metrics;
use crate::types::{DeadLetter, Envelope, Op};

/// A failure that should be retried as a whole, and whether it was one the
/// classifier does not know.
pub(super) struct Transient {
    pub(super) error: WriteError,
    pub(super) unknown: bool,
    /// The table changed under the plan (see `ErrorClass::Schema`).
    pub(super) schema: bool,
}

impl Transient {
    pub(super) fn new(error: WriteError, class: ErrorClass) -> Transient {
        Transient {
            error,
            unknown: class == ErrorClass::Unknown,
            schema: class == ErrorClass::Schema,
        }
    }
}

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// What one attempt at a batch applied.
#[derive(Default)]
pub(super) struct Applied {
    pub(super) upserts: u64,
    pub(super) deletes: u64,
}

impl<S: BatchSink> Writer<S> {
    /// Applies the batch in order: runs of upserts and runs of deletes as
    /// statements, rejects straight to `dead`. Data errors are isolated;
    /// a transient error aborts the attempt (the whole batch is retried,
    /// which is safe because every statement is idempotent). With
    /// `unknown_is_data`, errors the classifier does not know are isolated
    /// like data errors.
    pub(super) fn apply(
        &mut self,
        batch: &[Envelope],
        unknown_is_data: bool,
        dead: &mut Vec<(usize, String)>,
    ) -> Result<Applied, Transient> {
        let mut applied = Applied::default();
        let mut i = 0;
        while i < batch.len() {
            // A run is one kind of op of one route target: one target's
            // statements write it.
            let (kind, target) = (std::mem::discriminant(&batch[i].op), batch[i].target);
            let j = i + batch[i..]
                .iter()
                .take_while(|e| std::mem::discriminant(&e.op) == kind && e.target == target)
                .count();
            match &batch[i].op {
                Op::Reject(reason) => {
                    for (k, e) in batch[i..j].iter().enumerate() {
                        let reason = match &e.op {
                            Op::Reject(r) => r.clone(),
                            _ => reason.clone(),
                        };
                        dead.push((i + k, reason));
                    }
                }
                Op::Upsert(_) | Op::Plan(_) => {
                    let before = dead.len();
                    self.isolate(&batch[i..j], i, unknown_is_data, dead)?;
                    applied.upserts += (j - i - (dead.len() - before)) as u64;
                }
                Op::Delete(_) | Op::PlanDelete(_) => {
                    let before = dead.len();
                    self.isolate(&batch[i..j], i, unknown_is_data, dead)?;
                    applied.deletes += (j - i - (dead.len() - before)) as u64;
                }
            }
            i = j;
        }
        Ok(applied)
    }

    fn isolate(
        &mut self,
        items: &[Envelope],
        base: usize,
        unknown_is_data: bool,
        dead: &mut Vec<(usize, String)>,
    ) -> Result<(), Transient> {
        Metrics::add(&self.metrics.statements, 1);
        let e = match self.sink.write(items) {
            Ok(()) => {
                Metrics::add(&self.metrics.batches, 1);
                return Ok(());
            }
            Err(e) => e,
        };
        match classify(&e) {
            ErrorClass::Data => {}
            ErrorClass::Unknown | ErrorClass::Schema if unknown_is_data => {}
            class => return Err(Transient::new(e, class)),
        }
        self.metrics.retry("data");
        if items.len() == 1 {
            dead.push((base, e.to_string()));
            return Ok(());
        }
        let mid = items.len() / 2;
        self.isolate(&items[..mid], base, unknown_is_data, dead)?;
        self.isolate(&items[mid..], base + mid, unknown_is_data, dead)
    }

    pub(super) fn store_dead(
        &mut self,
        batch: &[Envelope],
        dead: &[(usize, String)],
    ) -> Result<(), Transient> {
        if dead.is_empty() {
            return Ok(());
        }
        let letters: Vec<DeadLetter<'_>> = dead
            .iter()
            .map(|(i, error)| DeadLetter {
                env: &batch[*i],
                error: error.clone(),
            })
            .collect();
        match self.sink.dead_letter(&letters) {
            Ok(()) => Ok(()),
            Err(e) if classify(&e) != ErrorClass::Data => {
                let class = classify(&e);
                Err(Transient::new(e, class))
            }
            Err(e) => {
                // The dead-letter table itself refused them: nothing better
                // is left than the log, which keeps every coordinate.
                for l in &letters {
                    log::error!(
                        topic = l.env.coord.part.topic.name(),
                        partition = l.env.coord.partition(),
                        offset = l.env.coord.offset;
                        "dead letter {} could not be stored ({e}); it was: {}",
                        l.env.coord,
                        l.error
                    );
                }
                Ok(())
            }
        }
    }
}
