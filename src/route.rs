//! Which writer gets a row: a hash of its primary key.
//!
//! Routing by key rather than by partition keeps every version of an `id` on
//! one writer, which applies them in arrival (offset) order, while different
//! keys spread across all writers even when the topic has a single partition.
//! The key is hashed as the `id` column compares it (see
//! [`collation`](crate::collation)): ids MySQL holds for one row, such as
//! `"ABC"` and `"abc "` under a case-insensitive PAD SPACE collation, go to
//! one writer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};

use crate::collation::{KeyCollation, KeyHasher};
use crate::targets::RouteTargets;
use crate::types::{Chunk, Envelope, Op, Part};
use plan_key::PlanKeys;

mod plan_key;

/// How messages are spread over writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// By the row's key: versions of a key stay in order on one writer, and
    /// keys spread over all writers even from a single partition.
    ByKey,
    /// By partition: one writer sees a partition's messages in offset
    /// order, so each of its transactions covers a contiguous run of them.
    ByPartition,
}

/// The writer of a partition's messages when routing by partition.
///
/// Plain `partition % writers` spreads a contiguous range evenly, but a
/// round-robin or sticky assignor can hand an instance every other
/// partition, and with two writers those would all land on one. Adding
/// `partition / writers` shifts each successive block of `writers`
/// partitions by one writer: a contiguous range still spreads exactly
/// evenly (each block covers every writer once), and strided sets spread
/// too.
fn partition_writer(part: Part, writers: usize) -> usize {
    let p = part.partition.unsigned_abs() as usize;
    // Each topic's partitions rotated by the topic's number, so that the
    // first partitions of several topics do not all land on one writer; a
    // rotation keeps each topic's spread as it is.
    (p + p / writers + part.topic.index() as usize) % writers
}

/// The writer a message belongs to. By key: by `id` for upserts and
/// deletes, by every key cell for route rows and their deletes, by
/// position for rejects, which have no usable key.
pub(crate) fn writer_of(
    env: &Envelope,
    writers: usize,
    routing: Routing,
    keys: &mut KeyHasher,
    plan_keys: &mut PlanKeys,
) -> usize {
    if routing == Routing::ByPartition {
        return partition_writer(env.coord.part, writers);
    }
    match &env.op {
        Op::Upsert(row) => keys.writer(row.id(), writers),
        Op::Delete(id) => keys.writer(id, writers),
        Op::Plan(row) | Op::PlanDelete(row) => plan_keys.writer(env.target, row, writers),
        Op::Reject(_) => (env.coord.offset.unsigned_abs() % writers as u64) as usize,
    }
}

/// Why rows could not be handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// The writer's channel stayed full: its chunk stays staged; try again
    /// after other work.
    Full,
    /// The writer is gone (it panicked): the pipeline cannot continue.
    WriterGone(usize),
}

/// Rows per chunk at most. A channel operation per row was ~5 % of the
/// sink's instructions (and a cache line moving between cores every time);
/// per chunk it is a rounding error, while 64 rows is still well under a
/// batch, so writers keep getting work in small steps.
pub(crate) const CHUNK_ROWS: usize = 64;

/// The writer channels, indexed by writer, with the rows staged for each.
///
/// Rows are staged per writer and handed over as a chunk once the chunk is
/// full or the consumer has finished a read ([`Router::next_staged`]). A channel
/// holds `channel_capacity / chunk` chunks, so the rows queued per writer stay
/// within `channel_capacity`.
pub struct Router {
    senders: Vec<Sender<Chunk>>,
    staged: Vec<Chunk>,
    chunk: usize,
    routing: Routing,
    /// How keys compare, for routing by key.
    keys: KeyHasher,
    /// How route targets' keys compare, likewise.
    plan_keys: PlanKeys,
    /// Rows sent and not yet taken by a writer, over all writers.
    queued: Arc<AtomicUsize>,
}

impl Router {
    /// A router over `writers` new channels, each holding about
    /// `capacity` rows; returns the receiving ends for the writers. By key,
    /// keys are routed as `collation` compares them.
    pub fn new(
        writers: usize,
        capacity: usize,
        routing: Routing,
        collation: KeyCollation,
    ) -> (Router, Vec<Inbox>) {
        assert!(writers > 0, "at least one writer");
        let chunk = CHUNK_ROWS.min(capacity).max(1);
        let queued = Arc::new(AtomicUsize::new(0));
        let (senders, inboxes) = (0..writers)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::bounded((capacity / chunk).max(1));
                (
                    tx,
                    Inbox {
                        rx,
                        queued: queued.clone(),
                    },
                )
            })
            .unzip();
        let router = Router {
            senders,
            staged: (0..writers).map(|_| Vec::new()).collect(),
            chunk,
            routing,
            keys: KeyHasher::new(collation),
            plan_keys: PlanKeys::default(),
            queued,
        };
        (router, inboxes)
    }

    /// Routes rows of `targets` by their keys as their tables compare them.
    pub(crate) fn route_targets(&mut self, targets: &RouteTargets) {
        self.plan_keys = PlanKeys::new(targets);
    }

    /// Stages `env` for its writer. Returns the writer if that writer's
    /// chunk is now full and must be sent before more rows are staged for it.
    pub fn stage(&mut self, env: Envelope) -> Option<usize> {
        let w = writer_of(
            &env,
            self.senders.len(),
            self.routing,
            &mut self.keys,
            &mut self.plan_keys,
        );
        let staged = &mut self.staged[w];
        if staged.capacity() == 0 {
            staged.reserve_exact(self.chunk);
        }
        staged.push(env);
        (staged.len() >= self.chunk).then_some(w)
    }

    /// The writer that rows with key `id` go to, routing by key.
    pub fn writer_for_key(&mut self, id: &str) -> usize {
        self.keys.writer(id, self.senders.len())
    }

    /// Hands writer `w`'s staged chunk over, waiting at most `wait` for room.
    pub fn send(&mut self, w: usize, wait: Duration) -> Result<(), RouteError> {
        if self.staged[w].is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.staged[w]);
        let n = chunk.len();
        // Counted before it is sent: the writer may take it (and count it
        // off) before a send returns.
        self.queued.fetch_add(n, Ordering::Relaxed);
        // The common case, room in the channel, without reading the clock.
        let chunk = match self.senders[w].try_send(chunk) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(chunk)) => chunk,
            Err(TrySendError::Disconnected(_)) => return Err(RouteError::WriterGone(w)),
        };
        match self.senders[w].send_timeout(chunk, wait) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(chunk)) => {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                self.staged[w] = chunk;
                Err(RouteError::Full)
            }
            Err(SendTimeoutError::Disconnected(_)) => Err(RouteError::WriterGone(w)),
        }
    }

    /// Asks every writer to write the rows it holds now rather than when
    /// its flush interval ends: sent once nothing more is coming (a backfill
    /// read to its end), so the last partial batches do not sit out the
    /// interval. An empty chunk is the request (the router never sends one
    /// otherwise). Returns false, having asked none or only some, when rows
    /// are still staged or a channel is full: ask again later.
    pub fn flush_all(&mut self) -> Result<bool, RouteError> {
        if self.staged.iter().any(|s| !s.is_empty()) {
            return Ok(false);
        }
        for (w, tx) in self.senders.iter().enumerate() {
            match tx.try_send(Vec::new()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Ok(false),
                Err(TrySendError::Disconnected(_)) => return Err(RouteError::WriterGone(w)),
            }
        }
        Ok(true)
    }

    /// The first writer with rows staged, if any.
    pub fn next_staged(&self) -> Option<usize> {
        self.staged.iter().position(|s| !s.is_empty())
    }

    /// Rows staged and not yet sent.
    pub fn staged(&self) -> impl Iterator<Item = &Envelope> {
        self.staged.iter().flatten()
    }

    /// Drops staged rows that `keep` refuses (those of revoked partitions).
    pub fn retain_staged(&mut self, mut keep: impl FnMut(&Envelope) -> bool) {
        for s in &mut self.staged {
            s.retain(&mut keep);
        }
    }

    /// Rows all channels hold when full.
    pub fn capacity(&self) -> usize {
        self.senders
            .iter()
            .filter_map(Sender::capacity)
            .sum::<usize>()
            * self.chunk
    }

    /// Rows sent to writers and not yet taken by them.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// A writer channel of `chunks` chunks fed by hand rather than by a
/// [`Router`] (tests and benchmarks of writers alone).
pub fn inbox(chunks: usize) -> (Sender<Chunk>, Inbox) {
    let (tx, rx) = crossbeam_channel::bounded(chunks);
    let queued = Arc::new(AtomicUsize::new(0));
    (tx, Inbox { rx, queued })
}

/// A writer's end of its channel.
pub struct Inbox {
    rx: Receiver<Chunk>,
    queued: Arc<AtomicUsize>,
}

impl Inbox {
    fn taken(&self, chunk: &Chunk) {
        // A hand-fed inbox's count wraps below zero; no one reads it.
        self.queued.fetch_sub(chunk.len(), Ordering::Relaxed);
    }

    /// Waits for the next chunk; `Disconnected` once the router is gone and
    /// everything sent was taken.
    pub fn recv(&self, deadline: Option<Instant>) -> Result<Chunk, RecvTimeoutError> {
        let got = match deadline {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => self.rx.recv_deadline(d),
        };
        if let Ok(c) = &got {
            self.taken(c);
        }
        got
    }

    /// The next chunk if one is waiting.
    pub fn try_recv(&self) -> Option<Chunk> {
        let c = self.rx.try_recv().ok()?;
        self.taken(&c);
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collation::tests::unicode_ci;
    use crate::decode::{Num, Row};
    use crate::types::testing::unnamed as part;
    use crate::types::{Coord, Raw};

    #[test]
    fn queued_rows_return_to_zero_once_writers_took_everything() {
        // A writer taking a chunk races with the router counting it; the
        // count must come back to zero however the two interleave (a count
        // that drifted up would keep fetching paused for good).
        let (mut router, mut inboxes) = Router::new(1, 64, Routing::ByKey, KeyCollation::binary());
        let inbox = inboxes.remove(0);
        let taker = std::thread::spawn(move || {
            let mut rows = 0;
            while let Ok(chunk) = inbox.recv(None) {
                rows += chunk.len();
            }
            rows
        });
        let row = Row::new("id", "o", Num::Int(1), Num::Int(0), Num::Int(0), None);
        for i in 0..20_000 {
            router.stage(Envelope::upsert(0, i, row.clone()));
            while router.send(0, Duration::from_secs(1)) == Err(RouteError::Full) {}
        }
        let queued = Arc::clone(&router.queued);
        drop(router);
        assert_eq!(taker.join().unwrap(), 20_000);
        assert_eq!(queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn flush_all_asks_writers_only_with_nothing_staged_and_room_in_every_channel() {
        // 64 rows a chunk, one chunk a channel.
        let (mut router, inboxes) =
            Router::new(2, 64, Routing::ByPartition, KeyCollation::binary());
        let row = Row::new("id", "o", Num::Int(1), Num::Int(0), Num::Int(0), None);
        // The partition of writer 0, which flush_all asks first.
        let q = (0..2).find(|&q| partition_writer(part(q), 2) == 0).unwrap();
        router.stage(Envelope::upsert(q, 0, row.clone()));
        // A staged row would arrive after the request and wait out the
        // flush interval: not asked yet.
        assert_eq!(router.flush_all(), Ok(false));
        assert!(inboxes.iter().all(|i| i.try_recv().is_none()));
        let w = 0;
        router.send(w, Duration::ZERO).unwrap();
        // Writer w's channel is full now: asked again later.
        assert_eq!(router.flush_all(), Ok(false));
        assert_eq!(inboxes[w].try_recv().map(|c| c.len()), Some(1));
        assert!(inboxes[1 - w].try_recv().is_none());
        assert_eq!(router.flush_all(), Ok(true));
        for inbox in &inboxes {
            assert_eq!(inbox.try_recv().map(|c| c.len()), Some(0));
        }
        drop(inboxes);
        assert_eq!(router.flush_all(), Err(RouteError::WriterGone(0)));
    }

    #[test]
    fn same_key_same_writer_and_keys_spread() {
        let n = 4;
        for collation in [KeyCollation::binary(), unicode_ci()] {
            let (mut router, _inboxes) = Router::new(n, 64, Routing::ByKey, collation);
            assert_eq!(router.writer_for_key("abc"), router.writer_for_key("abc"));
            // Keys that differ only in their tail, only in their first word,
            // or only in a middle word all spread evenly.
            let shapes: [fn(usize) -> String; 3] = [
                |i| format!("00000000-0000-0000-0000-{i:012}"),
                |i| format!("{i:08}-0000-0000-0000-000000000000"),
                |i| format!("00000000-{:04}-{:04}-0000-000000000000", i / 100, i % 100),
            ];
            for shape in shapes {
                let mut counts = vec![0usize; n];
                for i in 0..10_000 {
                    counts[router.writer_for_key(&shape(i))] += 1;
                }
                for c in counts {
                    assert!((2300..2700).contains(&c), "uneven spread: {c}");
                }
            }
        }
    }

    fn delete(offset: i64, id: &str) -> Envelope {
        Envelope {
            coord: Coord::new(part(0), offset),
            generation: 0,
            timestamp_ms: crate::types::NO_TIMESTAMP,
            target: 0,
            op: Op::Delete(id.to_string()),
            raw: Raw::default(),
        }
    }

    /// The writer whose staged rows hold offset `offset`.
    fn staged_on(router: &Router, offset: i64) -> usize {
        router
            .staged
            .iter()
            .position(|s| s.iter().any(|e| e.coord.offset == offset))
            .expect("staged")
    }

    #[test]
    fn versions_of_a_key_the_column_holds_equal_share_a_writer() {
        // Under utf8mb4_unicode_ci each pair is one row: an upsert of one
        // spelling and a delete of the other must be applied in order.
        let pairs = [("ABC", "abc"), ("x", "x "), ("a\0b", "ab")];
        for n in 1..=16 {
            let (mut router, _inboxes) = Router::new(n, 64, Routing::ByKey, unicode_ci());
            for (i, (a, b)) in pairs.iter().enumerate() {
                let row = Row::new(a, "o", Num::Int(1), Num::Int(0), Num::Int(0), None);
                let i = i as i64 * 2;
                router.stage(Envelope::upsert(0, i, row));
                router.stage(delete(i + 1, b));
                assert_eq!(
                    staged_on(&router, i),
                    staged_on(&router, i + 1),
                    "{a:?} / {b:?}, {n} writers"
                );
            }
        }
        // Compared byte for byte they are different keys, which may part.
        let parted = (1..=16).any(|n| {
            let (mut router, _inboxes) = Router::new(n, 64, Routing::ByKey, KeyCollation::binary());
            pairs
                .iter()
                .any(|(a, b)| router.writer_for_key(a) != router.writer_for_key(b))
        });
        assert!(parted);
    }

    #[test]
    fn by_partition_ignores_keys() {
        let (mut router, _inboxes) = Router::new(4, 64, Routing::ByPartition, unicode_ci());
        let mut env = delete(0, "abc");
        env.coord.part = part(6);
        router.stage(env);
        assert_eq!(staged_on(&router, 0), partition_writer(part(6), 4));
    }

    #[test]
    fn partitions_spread_over_writers_whatever_the_assignor_hands_out() {
        for writers in 1..=8 {
            let load = |parts: &mut dyn Iterator<Item = i32>| {
                let mut n = vec![0usize; writers];
                for p in parts {
                    n[partition_writer(part(p), writers)] += 1;
                }
                n
            };
            // A contiguous range (one instance, or a range assignor): exactly
            // even.
            let range = load(&mut (0..64 * writers as i32));
            assert!(range.iter().all(|&n| n == 64), "{writers}: {range:?}");
            // Every other partition (round-robin over two instances): every
            // writer has some.
            for first in 0..2 {
                let strided = load(&mut (first..64).step_by(2));
                assert!(
                    strided.iter().all(|&n| n > 0),
                    "{writers} writers, partitions {first}, {}, ...: {strided:?}",
                    first + 2
                );
            }
        }
    }
}
