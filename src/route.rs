//! Which writer gets a row: a hash of its primary key.
//!
//! Routing by key rather than by partition keeps every version of an `id` on
//! one writer, which applies them in arrival (offset) order, while different
//! keys spread across all writers even when the topic has a single partition.

use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

use crate::write::Envelope;

/// FNV-1a: fast on short keys, stable across runs and platforms.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
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
        let mut counts = vec![0usize; n];
        for i in 0..10_000 {
            counts[writer_for(&format!("00000000-0000-0000-0000-{i:012}"), n)] += 1;
        }
        for c in counts {
            assert!((2000..3000).contains(&c), "uneven spread: {c}");
        }
    }
}
