//! Which offsets may be committed.
//!
//! Writers finish batches out of order (several writers, one partition's rows
//! spread over all of them), so an offset becomes committable only when it and
//! every offset before it in its partition are durable in MySQL or were
//! skipped. Each partition keeps its in-flight offsets in arrival order (the
//! consumer reads a partition in increasing offset order), marks them done as
//! acknowledgements arrive, and advances past the done prefix.
//!
//! Kafka's committed offset is the *next* offset to read, so a partition whose
//! offsets up to and including `n` are done commits `n + 1`.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::types::{Coord, Part};

/// Hashes partitions (a topic's number and a partition's). The default
/// SipHash, built to resist chosen keys, was a visible share of the sink's
/// instructions for the two lookups every message makes; these are small
/// integers chosen by no one, and a multiplication spreads them well enough.
#[derive(Default, Clone, Copy)]
struct PartitionHasher(u64);

impl Hasher for PartitionHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0 ^ u64::from(i)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
}

type Parts = HashMap<Part, Partition, BuildHasherDefault<PartitionHasher>>;

#[derive(Debug, Default)]
struct Partition {
    /// In-flight offsets in increasing order, with their done flags.
    pending: VecDeque<(i64, bool)>,
    /// Every offset below this is done; `None` until the first one is.
    done_below: Option<i64>,
    /// The last offset Kafka confirmed as committed.
    committed: Option<i64>,
}

impl Partition {
    /// Where `offset` sits in `pending`. A partition's offsets are usually
    /// consecutive, so the distance from the front is tried first; gaps
    /// (compacted or transactional topics) fall back to a binary search.
    fn position(&self, offset: i64) -> Option<usize> {
        let &(front, _) = self.pending.front()?;
        let guess = usize::try_from(offset.checked_sub(front)?).ok()?;
        if self.pending.get(guess).is_some_and(|&(o, _)| o == offset) {
            return Some(guess);
        }
        self.pending.binary_search_by_key(&offset, |&(o, _)| o).ok()
    }
}

/// Tracks in-flight offsets of the partitions this instance consumes.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    parts: Parts,
}

impl OffsetTracker {
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Records that `offset` of `partition` was read and is now in flight.
    pub fn register(&mut self, coord: Coord) {
        let Coord { part, offset } = coord;
        let p = self.parts.entry(part).or_default();
        if let Some(&(last, _)) = p.pending.back() {
            if offset <= last {
                // The consumer went back (a seek or a re-fetch after an error):
                // what follows will be delivered again, so forget it rather than
                // let a stale acknowledgement skip over it.
                let keep = p.pending.partition_point(|&(o, _)| o < offset);
                p.pending.truncate(keep);
            }
        }
        if let Some(below) = p.done_below {
            if offset < below {
                p.done_below = Some(offset);
            }
        }
        p.pending.push_back((offset, false));
    }

    /// Records that `offset` is durable (or was skipped). Unknown offsets, such
    /// as a late acknowledgement for a partition that was revoked, are ignored.
    /// Returns whether the offset was tracked.
    pub fn complete(&mut self, coord: Coord) -> bool {
        let Coord { part, offset } = coord;
        let Some(p) = self.parts.get_mut(&part) else {
            return false;
        };
        let Some(i) = p.position(offset) else {
            return false;
        };
        p.pending[i].1 = true;
        if i == 0 {
            while let Some(&(o, true)) = p.pending.front() {
                p.pending.pop_front();
                p.done_below = Some(o + 1);
            }
        }
        true
    }

    /// Marks every offset of a writer's acknowledgement as done.
    pub fn complete_all(&mut self, ack: impl IntoIterator<Item = Coord>) {
        for c in ack {
            self.complete(c);
        }
    }

    /// Partitions whose committable offset is ahead of what Kafka confirmed.
    pub fn commit_candidates(&self) -> Vec<Coord> {
        let mut out: Vec<Coord> = self
            .parts
            .iter()
            .filter_map(|(&part, p)| match (p.done_below, p.committed) {
                (Some(d), Some(c)) if d <= c => None,
                (Some(d), _) => Some(Coord::new(part, d)),
                (None, _) => None,
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Kafka confirmed `offset` as committed for `partition`. Commits confirm
    /// out of order at times; the highest one stands.
    pub fn confirm_commit(&mut self, part: Part, offset: i64) {
        if let Some(p) = self.parts.get_mut(&part) {
            if p.committed.is_none_or(|c| offset > c) {
                p.committed = Some(offset);
            }
        }
    }

    /// The offset below which everything of `partition` is durable (or was
    /// skipped), once one is.
    pub fn durable(&self, part: Part) -> Option<i64> {
        self.parts.get(&part).and_then(|p| p.done_below)
    }

    pub fn committed(&self, part: Part) -> Option<i64> {
        self.parts.get(&part).and_then(|p| p.committed)
    }

    /// Messages read but not yet durable, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.parts
            .values()
            .map(|p| p.pending.iter().filter(|(_, done)| !done).count())
            .sum()
    }

    /// Whether `partition` has no in-flight offsets.
    pub fn is_idle(&self, part: Part) -> bool {
        self.parts.get(&part).is_none_or(|p| p.pending.is_empty())
    }

    /// Whether `offset` of `partition` is in flight here.
    pub fn is_tracked(&self, coord: Coord) -> bool {
        self.parts
            .get(&coord.part)
            .is_some_and(|p| p.position(coord.offset).is_some())
    }

    /// The offsets of `partition` still in flight (read, not yet durable).
    pub fn unfinished(&self, part: Part) -> impl Iterator<Item = i64> + '_ {
        self.parts
            .get(&part)
            .into_iter()
            .flat_map(|p| p.pending.iter().filter(|(_, done)| !done).map(|&(o, _)| o))
    }

    /// Forgets a partition (after it was revoked); returns its committable offset.
    pub fn remove(&mut self, part: Part) -> Option<i64> {
        self.parts.remove(&part).and_then(|p| p.done_below)
    }

    pub fn partitions(&self) -> Vec<Part> {
        let mut v: Vec<Part> = self.parts.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::{at, p};

    impl OffsetTracker {
        /// The offset to commit for `partition`: everything below it is done.
        fn committable(&self, partition: i32) -> Option<i64> {
            self.parts.get(&p(partition)).and_then(|p| p.done_below)
        }
    }

    #[test]
    fn commits_only_the_contiguous_done_prefix() {
        let mut t = OffsetTracker::new();
        for o in 10..15 {
            t.register(at(0, o));
        }
        assert_eq!(t.committable(0), None);
        assert!(t.complete(at(0, 12)));
        assert!(t.complete(at(0, 11)));
        assert_eq!(t.committable(0), None, "10 is still in flight");
        assert!(t.complete(at(0, 10)));
        assert_eq!(t.committable(0), Some(13));
        assert!(t.complete(at(0, 14)));
        assert_eq!(t.committable(0), Some(13));
        assert!(t.complete(at(0, 13)));
        assert_eq!(t.committable(0), Some(15));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn unfinished_lists_what_is_in_flight() {
        let mut t = OffsetTracker::new();
        for o in 0..6 {
            t.register(at(0, o));
        }
        t.complete(at(0, 1));
        t.complete(at(0, 4));
        assert_eq!(t.unfinished(p(0)).collect::<Vec<_>>(), [0, 2, 3, 5]);
        t.complete(at(0, 0));
        assert_eq!(t.unfinished(p(0)).collect::<Vec<_>>(), [2, 3, 5]);
        assert_eq!(
            t.unfinished(p(7)).count(),
            0,
            "unknown partitions hold nothing"
        );
    }

    #[test]
    fn partitions_are_independent_and_gaps_are_fine() {
        let mut t = OffsetTracker::new();
        t.register(at(0, 0));
        t.register(at(1, 100));
        t.register(at(1, 105)); // compacted away in between
        t.complete(at(1, 105));
        t.complete(at(0, 0));
        assert_eq!(t.committable(0), Some(1));
        assert_eq!(t.committable(1), None);
        t.complete(at(1, 100));
        assert_eq!(t.committable(1), Some(106));
        assert_eq!(t.commit_candidates(), vec![at(0, 1), at(1, 106)]);
    }

    #[test]
    fn confirmed_commits_are_not_repeated_and_never_go_back() {
        let mut t = OffsetTracker::new();
        t.register(at(3, 0));
        t.complete(at(3, 0));
        assert_eq!(t.commit_candidates(), vec![at(3, 1)]);
        t.confirm_commit(p(3), 1);
        assert!(t.commit_candidates().is_empty());
        t.confirm_commit(p(3), 0);
        assert_eq!(t.committed(p(3)), Some(1));
    }

    #[test]
    fn unknown_and_revoked_acks_are_ignored() {
        let mut t = OffsetTracker::new();
        assert!(!t.complete(at(9, 1)));
        t.register(at(0, 5));
        assert!(!t.complete(at(0, 4)));
        assert_eq!(t.remove(p(0)), None);
        assert!(!t.complete(at(0, 5)));
        assert_eq!(t.committable(0), None);
    }

    #[test]
    fn rewind_forgets_later_offsets() {
        let mut t = OffsetTracker::new();
        for o in 0..5 {
            t.register(at(0, o));
        }
        t.complete(at(0, 0));
        t.complete(at(0, 1));
        // re-delivery from 1 on
        t.register(at(0, 1));
        assert_eq!(t.committable(0), Some(1));
        assert!(!t.complete(at(0, 3)), "3 was forgotten and will come again");
        t.complete(at(0, 1));
        assert_eq!(t.committable(0), Some(2));
    }

    #[test]
    fn random_completion_order_reaches_the_end() {
        // A deterministic shuffle: every permutation step must keep the
        // committable offset equal to the length of the done prefix.
        let n = 1000i64;
        let mut t = OffsetTracker::new();
        for o in 0..n {
            t.register(at(7, o));
        }
        let mut order: Vec<i64> = (0..n).collect();
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut done = vec![false; n as usize];
        for o in order {
            t.complete(at(7, o));
            done[o as usize] = true;
            let prefix = done.iter().take_while(|d| **d).count() as i64;
            assert_eq!(t.committable(7), (prefix > 0).then_some(prefix));
        }
        assert_eq!(t.committable(7), Some(n));
    }
}
