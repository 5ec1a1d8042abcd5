//! Which writer gets a row: a hash of its primary key.
//!
//! Routing by key rather than by partition keeps every version of an `id` on
//! one writer, which applies them in arrival (offset) order, while different
//! keys spread across all writers even when the topic has a single partition.

use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

use crate::write::Envelope;

/// A hash of a key, stable across runs and platforms: FNV-1a over 8-byte
/// words (byte-wise FNV was ~2 % of the sink's instructions on 36-byte ids),
/// then a SplitMix64 finish, since multiplication alone leaves the low bits
/// (the ones `% writers` keeps) depending only on the low bytes.
pub fn key_hash(key: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(PRIME);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The writer (0..writers) responsible for `id`.
pub fn writer_for(id: &str, writers: usize) -> usize {
    (key_hash(id.as_bytes()) % writers as u64) as usize
}

/// What became of a row that could not be handed over in time.
pub enum RouteError {
    /// Its writer's channel stayed full: try again after other work.
    Full(Envelope),
    /// Its writer is gone (it panicked): the pipeline cannot continue.
    WriterGone(usize),
}

/// The writer channels, indexed by writer.
pub struct Router {
    senders: Vec<Sender<Envelope>>,
}

impl Router {
    pub fn new(senders: Vec<Sender<Envelope>>) -> Router {
        assert!(!senders.is_empty(), "at least one writer");
        Router { senders }
    }

    /// Hands `env` to its writer, waiting at most `wait` for channel space.
    // The row travels back by value when the channel is full; boxing it would
    // allocate on exactly the path that runs when the writers are behind.
    #[allow(clippy::result_large_err)]
    pub fn route(&self, env: Envelope, wait: Duration) -> Result<(), RouteError> {
        let w = env.writer(self.senders.len());
        // The common case, room in the channel, without reading the clock.
        let env = match self.senders[w].try_send(env) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => return Err(RouteError::WriterGone(w)),
            Err(TrySendError::Full(env)) => env,
        };
        match self.senders[w].send_timeout(env, wait) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(env)) => Err(RouteError::Full(env)),
            Err(SendTimeoutError::Disconnected(_)) => Err(RouteError::WriterGone(w)),
        }
    }

    /// Rows all channels hold when full.
    pub fn capacity(&self) -> usize {
        self.senders.iter().filter_map(Sender::capacity).sum()
    }

    /// Rows waiting in all channels.
    pub fn queued(&self) -> usize {
        self.senders.iter().map(Sender::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_writer_and_keys_spread() {
        let n = 4;
        assert_eq!(writer_for("abc", n), writer_for("abc", n));
        // Keys that differ only in their tail, only in their first word, or
        // only in a middle word all spread evenly.
        let shapes: [fn(usize) -> String; 3] = [
            |i| format!("00000000-0000-0000-0000-{i:012}"),
            |i| format!("{i:08}-0000-0000-0000-000000000000"),
            |i| format!("00000000-{:04}-{:04}-0000-000000000000", i / 100, i % 100),
        ];
        for shape in shapes {
            let mut counts = vec![0usize; n];
            for i in 0..10_000 {
                counts[writer_for(&shape(i), n)] += 1;
            }
            for c in counts {
                assert!((2300..2700).contains(&c), "uneven spread: {c}");
            }
        }
    }
}
