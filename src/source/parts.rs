//! The partitions of an assignment: listing them, and what revoking them
//! waits for and commits.

use rdkafka::TopicPartitionList;

use crate::offsets::OffsetTracker;
use crate::types::{Coord, Part, Topic};

/// Whether every offset of `parts` still in flight is one that is only held
/// (read, never handed to a writer): then nothing of them is being written.
pub(super) fn nothing_in_writers(t: &OffsetTracker, held: &[Coord], parts: &[Part]) -> bool {
    parts.iter().all(|&p| {
        t.unfinished(p)
            .all(|o| held.binary_search(&Coord::new(p, o)).is_ok())
    })
}

/// What to commit for partitions being revoked: their done prefix, where it
/// is ahead of what Kafka last confirmed. Forgets the partitions.
pub(super) fn release(t: &mut OffsetTracker, parts: &[Part]) -> Vec<Coord> {
    let mut out = Vec::new();
    for &p in parts {
        let committed = t.committed(p);
        if let Some(off) = t.remove(p) {
            if committed.is_none_or(|c| off > c) {
                out.push(Coord::new(p, off));
            }
        }
    }
    out
}

pub(super) fn partitions_of(tpl: &TopicPartitionList) -> Vec<Part> {
    tpl.elements()
        .iter()
        .map(|e| Part::new(Topic::named(e.topic()), e.partition()))
        .collect()
}

/// The distinct topics of `parts`, in order.
pub(super) fn topics_of(parts: &[Part]) -> Vec<Topic> {
    let mut topics: Vec<Topic> = parts.iter().map(|p| p.topic).collect();
    topics.sort_unstable();
    topics.dedup();
    topics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::{at, p};

    #[test]
    fn a_revocation_waits_only_for_rows_that_writers_have() {
        let mut t = OffsetTracker::new();
        for o in 0..4 {
            t.register(at(0, o));
        }
        t.register(at(1, 0));
        // Offsets 2 and 3 were read but never handed over.
        let held = vec![at(0, 2), at(0, 3)];
        assert!(!nothing_in_writers(&t, &held, &[p(0)]));
        t.complete(at(0, 0));
        assert!(!nothing_in_writers(&t, &held, &[p(0)]));
        t.complete(at(0, 1));
        assert!(nothing_in_writers(&t, &held, &[p(0)]));
        // Partition 1 is not among the revoked ones.
        assert!(!nothing_in_writers(&t, &held, &[p(0), p(1)]));
    }

    #[test]
    fn releasing_commits_only_progress_past_the_confirmed_offset() {
        let mut t = OffsetTracker::new();
        for p in 0..3 {
            t.register(at(p, 10));
            t.register(at(p, 11));
        }
        t.complete(at(0, 10));
        t.complete(at(1, 10));
        t.confirm_commit(p(1), 11);
        // 0: done up to 11, unconfirmed; 1: already confirmed; 2: nothing done.
        assert_eq!(release(&mut t, &[p(0), p(1), p(2)]), vec![at(0, 11)]);
        assert!(t.is_idle(p(0)) && t.is_idle(p(1)) && t.is_idle(p(2)));
        assert!(!t.complete(at(0, 11)), "forgotten after release");
    }
}
