//! Routing keys of ids, on the consumer thread: locally for ASCII ids,
//! from the server (cached) for the others.

use std::collections::HashMap;
use std::thread;
use std::time::Instant;

use mysql::prelude::Queryable;
use mysql::Conn;

use super::*;

/// The routing key of an id that could not be weighed: a guess that holds
/// for case and trailing spaces only.
fn fallback_key(id: &str) -> Vec<u8> {
    id.trim_end_matches(' ').to_lowercase().into_bytes()
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Eight ASCII bytes lowercased, and a mask with the high bit of every byte
/// that is not printable (below 0x20, or 0x7f). Bytes below 0x80 carry into
/// no neighbour in these sums.
#[inline(always)]
fn lower_word(w: u64) -> (u64, u64) {
    let upper = ((w + (0x80 - 0x41) * ONES) ^ (w + (0x80 - 0x5b) * ONES)) & HIGHS;
    let unprintable = (!(w + (0x80 - 0x20) * ONES) | (w + ONES)) & HIGHS;
    (w | upper >> 2, unprintable)
}

/// Hashes ids by their routing keys; the router's, on the consumer thread.
pub(crate) struct KeyHasher {
    collation: KeyCollation,
    /// Spellings of ASCII ids by the table, reused.
    buf: Vec<u8>,
    pub(super) server: Option<Resolver>,
    /// Hashes of the ids the server weighed.
    pub(super) cache: HashMap<Box<str>, u64>,
}

impl KeyHasher {
    pub(crate) fn new(collation: KeyCollation) -> KeyHasher {
        let server = collation.server.clone().map(Resolver::new);
        KeyHasher {
            collation,
            buf: Vec::new(),
            server,
            cache: HashMap::new(),
        }
    }

    /// A hash of `id`'s routing key: equal for ids the column holds equal.
    #[inline]
    pub(crate) fn hash(&mut self, id: &str) -> u64 {
        let c = &self.collation;
        match c.weigh {
            Weigh::Bytes => key_hash(id.as_bytes()),
            Weigh::Local if id.is_ascii() => match c.spell {
                Spell::Same => key_hash(c.trimmed(id.as_bytes())),
                Spell::Lower => match hash_lower(c.trimmed(id.as_bytes())) {
                    Some(h) => h,
                    None => self.hash_by_table(id.as_bytes()),
                },
                Spell::Table => self.hash_by_table(id.as_bytes()),
            },
            Weigh::Local | Weigh::Server => self.hash_by_server(id),
        }
    }

    /// The writer (0..writers) for `id`.
    pub(crate) fn writer(&mut self, id: &str, writers: usize) -> usize {
        (self.hash(id) % writers as u64) as usize
    }

    /// An ASCII id spelt by the table.
    fn hash_by_table(&mut self, id: &[u8]) -> u64 {
        let c = &self.collation;
        self.buf.clear();
        self.buf.extend(
            c.trimmed(id)
                .iter()
                .map(|&b| c.fold[usize::from(b & 0x7f)])
                .filter(|&f| f != IGNORED),
        );
        key_hash(&self.buf)
    }

    #[inline(never)]
    fn hash_by_server(&mut self, id: &str) -> u64 {
        if let Some(&h) = self.cache.get(id) {
            return h;
        }
        let c = &self.collation;
        // Local: the weight string loses its padding (its spaces weigh as
        // ASCII spaces do); otherwise the id loses it before it is weighed.
        let asked = match c.weigh {
            Weigh::Local => id.as_bytes(),
            _ => c.trimmed(id.as_bytes()),
        };
        let asked = std::str::from_utf8(asked).expect("cut before an ASCII character");
        let Some(w) = self.server.as_mut().and_then(|s| s.ask(asked)) else {
            return key_hash(&fallback_key(id));
        };
        let h = match c.weigh {
            Weigh::Local => c.key_of_weights(&w),
            _ => key_hash(&w),
        };
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(id.into(), h);
        h
    }
}

/// [`key_hash`] of ASCII `id` lowercased, eight bytes at a time; `None` when
/// a character is not printable.
#[inline]
pub(super) fn hash_lower(id: &[u8]) -> Option<u64> {
    let mut h = KeyHash::new();
    let mut unprintable = 0;
    let mut words = id.chunks_exact(8);
    for w in &mut words {
        let (lower, bad) = lower_word(u64::from_le_bytes(w.try_into().expect("eight bytes")));
        unprintable |= bad;
        h.word(lower);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let tail = le(rest);
        let (lower, bad) = lower_word(tail);
        // Only the bytes there: the zeros above them are not characters.
        unprintable |= bad & (HIGHS >> (64 - 8 * rest.len()));
        h.tail(lower, rest.len());
    }
    (unprintable == 0).then(|| h.finish())
}

/// Server errors that pass: too many connections, shutting down, killed,
/// lock waits, deadlocks, interrupted.
const PASSING: &[u16] = &[1040, 1053, 1203, 1205, 1213, 1317, 1927];

/// Asks the server for weight strings, over a connection of its own.
pub(super) struct Resolver {
    server: ServerWeights,
    conn: Option<Conn>,
    /// Since when the server has not answered.
    down_since: Option<Instant>,
}

impl Resolver {
    fn new(server: ServerWeights) -> Resolver {
        Resolver {
            server,
            conn: None,
            down_since: None,
        }
    }

    /// `id`'s weight string; `None` when the server says it has none for
    /// it (such an id is refused by the column too, and dead-lettered).
    /// The row cannot be routed right without it, and a guess could send
    /// two versions of one key to two writers, so a server that is away is
    /// waited for, however long.
    fn ask(&mut self, id: &str) -> Option<Vec<u8>> {
        let mut delay = RETRY_FIRST;
        loop {
            let reused = self.conn.is_some();
            let e = match self.query(id) {
                Ok(Some(w)) => {
                    if let Some(since) = self.down_since.take() {
                        log::info!(
                            "MySQL answers again; routing keys by their collation after {:.1} s",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    return Some(w);
                }
                Ok(None) => {
                    log::error!(
                        "MySQL has no weight string for key {id:?}; routed by its lowercase \
                         trimmed form"
                    );
                    return None;
                }
                Err(e) => e,
            };
            match &e {
                mysql::Error::MySqlError(se) if !PASSING.contains(&se.code) => {
                    // The server answered, and will answer the same again.
                    log::error!(
                        "MySQL cannot weigh key {id:?}: {se}; routed by its lowercase trimmed form"
                    );
                    return None;
                }
                _ => {}
            }
            self.conn = None;
            if reused {
                // Maybe only idle past the server's wait_timeout: once more
                // on a new connection before this counts as an outage.
                continue;
            }
            let since = *self.down_since.get_or_insert_with(Instant::now);
            log::warn!(
                "cannot reach MySQL to weigh key {id:?} by the id column's collation for \
                 {:.1} s ({e}); retrying in {} ms",
                since.elapsed().as_secs_f64(),
                delay.as_millis()
            );
            thread::sleep(delay);
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    fn query(&mut self, id: &str) -> Result<Option<Vec<u8>>, mysql::Error> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(Conn::new(self.server.opts.clone())?),
        };
        let w: Option<Option<Vec<u8>>> = conn.exec_first(&self.server.sql, (id,))?;
        Ok(w.flatten())
    }
}
