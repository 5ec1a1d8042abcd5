//! One attempt at a batch: open its transaction and see which partitions
//! are still this instance's, apply what is left, store dead letters, and
//! commit (with the partitions' next offsets in exactly-once mode).

use std::collections::BTreeMap;
use std::time::Instant;

use super::isolate::{Applied, Transient};
use super::retry::{classify, ErrorClass};
use super::{BatchSink, Claim, Writer};
use crate::fence::Standing;
use crate::metrics::Metrics;
use crate::types::{Coord, Envelope, Part};

/// What a successful attempt did.
pub(super) struct Outcome {
    pub(super) applied: Applied,
    pub(super) dead: usize,
}

/// The distinct partitions of `batch` with the generations their rows were
/// read under, in order.
fn claims_of(batch: &[Envelope]) -> Vec<Claim> {
    let mut claims: Vec<Claim> = batch
        .iter()
        .map(|e| Claim {
            part: e.coord.part,
            generation: e.generation,
        })
        .collect();
    claims.sort_unstable();
    claims.dedup();
    claims
}

/// Whether some claim of the batch is no longer held as it was: checked
/// per claim, so that the rows are gone through only when one is not.
fn any_lost(claims: &[Claim], standing: &[Standing]) -> bool {
    claims.iter().any(|c| {
        !standing
            .iter()
            .any(|s| s.part == c.part && s.generation == c.generation)
    })
}

/// Whether some row of the batch lies below its partition's next offset:
/// checked against each partition's lowest offset, so that the rows are
/// gone through again only when one does.
fn any_written(batch: &[Envelope], standing: &[Standing]) -> bool {
    if standing.iter().all(|s| s.next_offset.is_none()) {
        return false;
    }
    let mut lowest: BTreeMap<Part, i64> = BTreeMap::new();
    for e in batch {
        let o = lowest.entry(e.coord.part).or_insert(e.coord.offset);
        *o = (*o).min(e.coord.offset);
    }
    standing.iter().any(|s| {
        s.next_offset
            .zip(lowest.get(&s.part))
            .is_some_and(|(n, &low)| low < n)
    })
}

/// Whether `env` may be written under `standing`: its partition is still
/// held at the generation it was read under.
fn owned(env: &Envelope, standing: &[Standing]) -> bool {
    standing
        .iter()
        .any(|s| s.part == env.coord.part && s.generation == env.generation)
}

/// Whether an exactly-once transaction already wrote `env` (its commit
/// reached MySQL although its answer did not reach us).
fn already_written(env: &Envelope, standing: &[Standing]) -> bool {
    standing
        .iter()
        .any(|s| s.part == env.coord.part && s.next_offset.is_some_and(|n| env.coord.offset < n))
}

/// Each partition's next offset after `batch`.
fn next_offsets(batch: &[Envelope]) -> Vec<Coord> {
    let mut next: BTreeMap<Part, i64> = BTreeMap::new();
    for e in batch {
        let n = next.entry(e.coord.part).or_insert(e.coord.offset + 1);
        *n = (*n).max(e.coord.offset + 1);
    }
    next.into_iter().map(|(p, o)| Coord::new(p, o)).collect()
}

impl<S: BatchSink> Writer<S> {
    /// One attempt at `batch`. Rows of partitions claimed since they were
    /// read are removed from it for good (never written, never
    /// acknowledged); rows an earlier attempt already committed are moved to
    /// `settled`. On failure the attempt is rolled back.
    pub(super) fn attempt(
        &mut self,
        batch: &mut Vec<Envelope>,
        settled: &mut Vec<Coord>,
        unknown_is_data: bool,
        dead: &mut Vec<(usize, String)>,
    ) -> Result<Outcome, Transient> {
        let began = Instant::now();
        let result = self.attempt_inner(batch, settled, unknown_is_data, dead);
        if result.is_err() {
            self.sink.rollback();
            self.rolled_back_seconds
                .observe(began.elapsed().as_secs_f64());
        } else {
            self.committed_seconds
                .observe(began.elapsed().as_secs_f64());
        }
        result
    }

    fn attempt_inner(
        &mut self,
        batch: &mut Vec<Envelope>,
        settled: &mut Vec<Coord>,
        unknown_is_data: bool,
        dead: &mut Vec<(usize, String)>,
    ) -> Result<Outcome, Transient> {
        let claims = claims_of(batch);
        let standing = self.sink.begin(&claims).map_err(retry_whole)?;
        if any_lost(&claims, &standing) {
            self.drop_fenced(batch, &standing);
        }
        if any_written(batch, &standing) {
            batch.retain(|e| {
                let done = already_written(e, &standing);
                if done {
                    settled.push(e.coord);
                }
                !done
            });
        }
        let applied = self.apply(batch, unknown_is_data, dead)?;
        self.store_dead(batch, dead)?;
        let next = next_offsets(batch);
        self.sink.commit(&next).map_err(retry_whole)?;
        Ok(Outcome {
            applied,
            dead: dead.len(),
        })
    }

    /// Removes the rows of partitions this instance no longer holds at the
    /// generation they were read under, saying so once per claim.
    fn drop_fenced(&mut self, batch: &mut Vec<Envelope>, standing: &[Standing]) {
        let before = batch.len();
        let mut lost: Vec<Claim> = Vec::new();
        batch.retain(|e| {
            let keep = owned(e, standing);
            if !keep {
                let c = Claim {
                    part: e.coord.part,
                    generation: e.generation,
                };
                if !lost.contains(&c) {
                    lost.push(c);
                }
            }
            keep
        });
        Metrics::add(&self.metrics.fenced_rows, (before - batch.len()) as u64);
        for c in lost {
            if self.fenced.insert(c) {
                log::warn!(
                    table = self.settings.table.as_str(),
                    topic = c.part.topic.name(),
                    partition = c.part.partition;
                    "writer {}: partition {} was claimed again since generation {}; \
                     its rows read under that claim are dropped (the current owner reads them again)",
                    self.id,
                    c.part,
                    c.generation
                );
            }
        }
    }
}

/// A failure outside the rows' statements (opening or committing the
/// transaction) is never the rows' fault: the attempt is retried whole,
/// counted as unknown where the classifier does not know the error.
fn retry_whole(e: super::WriteError) -> Transient {
    let class = match classify(&e) {
        ErrorClass::Data => ErrorClass::Transient,
        // The offsets table changed: never replanned around (its rows are
        // the guarantee), retried as before until an operator restores it.
        ErrorClass::Schema => ErrorClass::Unknown,
        other => other,
    };
    Transient::new(e, class)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Num, Row};
    use crate::types::testing::unnamed as p;

    fn env(partition: i32, offset: i64, generation: u64) -> Envelope {
        let mut e = Envelope::upsert(
            partition,
            offset,
            Row::new("id", "o", Num::Int(1), Num::Int(0), Num::Int(0), None),
        );
        e.generation = generation;
        e
    }

    #[test]
    fn claims_are_the_distinct_partition_generations() {
        let batch = [env(1, 5, 2), env(0, 3, 1), env(1, 6, 2), env(1, 7, 3)];
        let got: Vec<(i32, u64)> = claims_of(&batch)
            .iter()
            .map(|c| (c.part.partition, c.generation))
            .collect();
        assert_eq!(got, vec![(0, 1), (1, 2), (1, 3)]);
    }

    #[test]
    fn rows_are_owned_only_at_their_generation_and_settled_below_the_next_offset() {
        let standing = [Standing {
            part: p(1),
            generation: 2,
            next_offset: Some(6),
        }];
        assert!(owned(&env(1, 5, 2), &standing));
        assert!(!owned(&env(1, 5, 1), &standing), "an older claim");
        assert!(!owned(&env(0, 5, 2), &standing), "a partition not held");
        assert!(already_written(&env(1, 5, 2), &standing));
        assert!(!already_written(&env(1, 6, 2), &standing));
    }

    #[test]
    fn the_cheap_checks_agree_with_the_row_by_row_ones() {
        let batch = [env(1, 5, 2), env(0, 3, 1), env(1, 6, 2)];
        let claims = claims_of(&batch);
        let held = |q: i32, g: u64, next: Option<i64>| Standing {
            part: p(q),
            generation: g,
            next_offset: next,
        };
        for standing in [
            vec![held(0, 1, None), held(1, 2, None)],
            vec![held(0, 1, None), held(1, 3, None)],
            vec![held(1, 2, None)],
            vec![held(0, 1, Some(3)), held(1, 2, Some(6))],
            vec![held(0, 1, Some(4)), held(1, 2, None)],
        ] {
            assert_eq!(
                any_lost(&claims, &standing),
                batch.iter().any(|e| !owned(e, &standing)),
                "{standing:?}"
            );
            assert_eq!(
                any_written(&batch, &standing),
                batch.iter().any(|e| already_written(e, &standing)),
                "{standing:?}"
            );
        }
    }

    #[test]
    fn next_offsets_follow_the_highest_row_of_each_partition() {
        let batch = [env(1, 5, 1), env(0, 9, 1), env(1, 7, 1), env(1, 6, 1)];
        assert_eq!(
            next_offsets(&batch),
            vec![Coord::new(p(0), 10), Coord::new(p(1), 8)]
        );
    }
}
