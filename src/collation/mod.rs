//! How the key column compares, so that ids MySQL holds for one row are
//! routed to one writer.
//!
//! The `id` column's collation decides which ids are the same row: under
//! `utf8mb4_unicode_ci`, `"ABC"`, `"abc"` and `"abc "` are one key. Routing
//! by raw bytes would send two versions of that row to two writers, which
//! apply them in either order. So ids are routed by what the collation
//! compares: their weight strings (what `WEIGHT_STRING()` returns), less
//! trailing space weights under a PAD SPACE collation, which compares
//! strings as if padded with spaces. Ids the column holds equal have equal
//! weight strings, so they get one routing key and one writer.
//!
//! The weights of the 128 ASCII characters are read from the server at
//! start-up. In the common collations (binary and UCA-based ones, and
//! `utf8mb4_general_ci`) an ASCII string weighs its characters' weights end
//! to end, each character one unit of the same size or nothing (start-up
//! checks every pair). Then characters with the same weights are
//! interchangeable, and an ASCII id's routing key is computed locally, with
//! no round trip: each character replaced by its class's representative
//! (the class's highest code, so letters become lowercase), characters that
//! weigh nothing dropped, and, under PAD SPACE, the characters that weigh as
//! spaces dropped from the end. That spelling stands for the weight string
//! one for one. Any other id is weighed by the server once (a bounded
//! cache), over a connection of its own; a weight string made only of ASCII
//! characters' weights is spelt back in representatives (`"straße"` meets
//! `"STRASSE"`), any other is its own key. A collation that fails the pair
//! check (`danish`'s `aa`, `czech`'s `ch`, multi-level ones such as
//! `uca1400_as_cs`) has every id weighed by the server.
//!
//! A row cannot be routed right without its key, and a guess could send two
//! versions of one key to two writers, so the consumer waits for a server
//! that does not answer (over a connection with short timeouts), however
//! long. Only an id the server says it cannot weigh is routed by its
//! lowercase trimmed form: the column refuses it too.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use mysql::Opts;

mod hasher;
mod key_hash;
mod read;

pub(crate) use hasher::KeyHasher;
pub(crate) use key_hash::{key_hash, KeyHash};

/// Weight bytes one ASCII character may have, at most, for ids to be keyed
/// locally (the UCA collations use 2, utf8mb4_bin 3).
const MAX_UNIT: usize = 8;

/// Marks a character that weighs nothing in [`KeyCollation::fold`]; no
/// representative is that high.
const IGNORED: u8 = 0xff;

/// Server-weighed ids remembered, at most; the cache starts over beyond.
const CACHE_MAX: usize = 100_000;

/// The first and the longest wait between attempts to reach the server.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How ids become routing keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weigh {
    /// The id's bytes as they are, no padding: binary columns, and tests and
    /// benchmarks without a server.
    Bytes,
    /// ASCII ids spelt in representatives here, others weighed by the server.
    Local,
    /// Every id weighed by the server.
    Server,
}

/// How an ASCII id is spelt in representatives, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spell {
    /// As it is: every character its own representative, none ignored
    /// (binary collations).
    Same,
    /// Lowercased, when every character is printable (case-insensitive
    /// collations); others by the table.
    Lower,
    /// By the table.
    Table,
}

/// Where and how the server weighs an id.
#[derive(Clone)]
struct ServerWeights {
    opts: Opts,
    /// One parameter, the id; answers its weight string.
    sql: String,
}

/// How the key column compares: what routing needs to send ids the column
/// holds equal to one writer. Read from the server at start-up
/// ([`KeyCollation::read`]).
#[derive(Clone)]
pub struct KeyCollation {
    name: String,
    /// Whether trailing spaces are insignificant (`'x' = 'x '`).
    pad_space: bool,
    weigh: Weigh,
    spell: Spell,
    /// Each ASCII character's weights.
    weights: Vec<Vec<u8>>,
    /// Each ASCII character's representative, [`IGNORED`] for those that
    /// weigh nothing.
    fold: [u8; 128],
    /// The ASCII characters that PAD SPACE disregards at the end of an id:
    /// those that weigh as spaces, or nothing. None without PAD SPACE.
    padding: [bool; 128],
    /// The weight of a space, cut from the end of weight strings under
    /// PAD SPACE.
    space: Vec<u8>,
    /// The size of a character's weights (`Local`).
    unit: usize,
    /// Representatives by their weights, little-endian (`Local`).
    spelling: HashMap<u64, u8>,
    server: Option<ServerWeights>,
}

impl fmt::Debug for KeyCollation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCollation")
            .field("name", &self.name)
            .field("pad_space", &self.pad_space)
            .field("weigh", &self.weigh)
            .field("spell", &self.spell)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for KeyCollation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pad = if self.pad_space {
            "PAD SPACE"
        } else {
            "NO PAD"
        };
        let how = match self.weigh {
            Weigh::Bytes => "keys routed by their bytes",
            Weigh::Local => {
                "ASCII keys routed without asking the server, others weighed by it once"
            }
            Weigh::Server => "every key weighed by the server once",
        };
        write!(f, "{} ({pad}; {how})", self.name)
    }
}

/// Whether `w` is nothing but copies of `unit` (or empty).
fn repeats(w: &[u8], unit: &[u8]) -> bool {
    if unit.is_empty() {
        return w.is_empty();
    }
    w.len().is_multiple_of(unit.len()) && w.chunks(unit.len()).all(|c| c == unit)
}

/// `w`, at most eight bytes, as a little-endian number.
fn le(w: &[u8]) -> u64 {
    w.iter()
        .enumerate()
        .fold(0, |n, (i, &b)| n | u64::from(b) << (8 * i))
}

impl KeyCollation {
    /// Ids compared byte for byte, trailing spaces significant: routing by
    /// the id's bytes. For benchmarks and tests without a server.
    pub fn binary() -> KeyCollation {
        let weights: Vec<Vec<u8>> = (0..128u8).map(|c| vec![c]).collect();
        Self::new("binary", false, Weigh::Bytes, weights, None)
    }

    /// A collation given by its ASCII characters' weights, with no server:
    /// ids that are not ASCII are routed by a guess (see [`fallback_key`]).
    /// For tests.
    #[cfg(test)]
    pub(crate) fn from_parts(pad_space: bool, weights: Vec<Vec<u8>>) -> KeyCollation {
        let c = Self::new("test", pad_space, Weigh::Local, weights, None);
        assert_eq!(c.weigh, Weigh::Local, "ASCII weights not of one size");
        c
    }

    /// `Local` is demoted to `Server` unless every ASCII character that
    /// weighs anything weighs one unit of the same size.
    fn new(
        name: &str,
        pad_space: bool,
        mut weigh: Weigh,
        weights: Vec<Vec<u8>>,
        server: Option<ServerWeights>,
    ) -> KeyCollation {
        assert_eq!(weights.len(), 128);
        let space = weights[usize::from(b' ')].clone();
        let padding: [bool; 128] = std::array::from_fn(|c| {
            pad_space && (c == usize::from(b' ') || repeats(&weights[c], &space))
        });
        let mut sizes = weights.iter().map(Vec::len).filter(|&n| n > 0);
        let unit = sizes.next().unwrap_or(0);
        if weigh == Weigh::Local && !((1..=MAX_UNIT).contains(&unit) && sizes.all(|n| n == unit)) {
            weigh = Weigh::Server;
        }
        // A class's representative is its highest code: letters go to
        // lowercase.
        let mut spelling = HashMap::new();
        for (c, w) in weights.iter().enumerate() {
            if !w.is_empty() && w.len() <= MAX_UNIT {
                spelling.insert(le(w), c as u8);
            }
        }
        let fold: [u8; 128] = std::array::from_fn(|c| match &weights[c] {
            w if w.is_empty() => IGNORED,
            w => spelling.get(&le(w)).copied().unwrap_or(c as u8),
        });
        let same = (0..128).all(|c| usize::from(fold[c]) == c);
        let lower = (0x20..0x7f_u8).all(|c| fold[usize::from(c)] == c.to_ascii_lowercase());
        let spell = match () {
            _ if same => Spell::Same,
            _ if lower => Spell::Lower,
            _ => Spell::Table,
        };
        KeyCollation {
            name: name.to_string(),
            pad_space,
            weigh,
            spell,
            weights,
            fold,
            padding,
            space,
            unit,
            spelling,
            server,
        }
    }

    /// The collation's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether trailing spaces are insignificant.
    pub fn pad_space(&self) -> bool {
        self.pad_space
    }

    /// An ASCII id's weight string from the weights read at start-up,
    /// trailing spaces included (as `WEIGHT_STRING()` has them); `None`
    /// when ids are not keyed locally.
    pub fn ascii_weights(&self, id: &str) -> Option<Vec<u8>> {
        if self.weigh != Weigh::Local || !id.is_ascii() {
            return None;
        }
        Some(
            id.bytes()
                .flat_map(|b| self.weights[usize::from(b)].iter().copied())
                .collect(),
        )
    }

    /// `id` less the ASCII characters PAD SPACE disregards at its end.
    fn trimmed<'i>(&self, id: &'i [u8]) -> &'i [u8] {
        let mut end = id.len();
        while end > 0 && id[end - 1] < 0x80 && self.padding[usize::from(id[end - 1])] {
            end -= 1;
        }
        &id[..end]
    }

    /// `w` less its trailing space weights, under PAD SPACE.
    fn unpadded<'w>(&self, mut w: &'w [u8]) -> &'w [u8] {
        if self.pad_space && !self.space.is_empty() {
            while let Some(rest) = w.strip_suffix(self.space.as_slice()) {
                w = rest;
            }
        }
        w
    }

    /// The routing key of the weight string `w` (`Local`): the spelling in
    /// representatives when every unit is an ASCII character's weight,
    /// otherwise `w`.
    fn key_of_weights(&self, w: &[u8]) -> u64 {
        let w = self.unpadded(w);
        if w.len().is_multiple_of(self.unit) {
            let spelt: Option<Vec<u8>> = w
                .chunks(self.unit)
                .map(|u| self.spelling.get(&le(u)).copied())
                .collect();
            if let Some(spelt) = spelt {
                return key_hash(&spelt);
            }
        }
        key_hash(w)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::hasher::hash_lower;
    use super::read::{ascii_codes, plain_name};
    use super::*;

    /// utf8mb4_unicode_ci's weights of ASCII 0..128 (MariaDB 10.11), 0 for
    /// characters that weigh nothing.
    #[rustfmt::skip]
    const UNICODE_CI: [u16; 128] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0201, 0x0202, 0x0203, 0x0204, 0x0205, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x0209, 0x0251, 0x027E, 0x02D2, 0x0E0F, 0x02D3, 0x02CF, 0x0277,
        0x0288, 0x0289, 0x02C8, 0x0428, 0x022F, 0x0221, 0x025D, 0x02CC,
        0x0E29, 0x0E2A, 0x0E2B, 0x0E2C, 0x0E2D, 0x0E2E, 0x0E2F, 0x0E30,
        0x0E31, 0x0E32, 0x023D, 0x023A, 0x042C, 0x042D, 0x042E, 0x0255,
        0x02C7, 0x0E33, 0x0E4A, 0x0E60, 0x0E6D, 0x0E8B, 0x0EB9, 0x0EC1,
        0x0EE1, 0x0EFB, 0x0F10, 0x0F21, 0x0F2E, 0x0F5B, 0x0F64, 0x0F82,
        0x0FA7, 0x0FB4, 0x0FC0, 0x0FEA, 0x1002, 0x101F, 0x1044, 0x1051,
        0x105A, 0x105E, 0x106A, 0x028A, 0x02CE, 0x028B, 0x020F, 0x021B,
        0x020C, 0x0E33, 0x0E4A, 0x0E60, 0x0E6D, 0x0E8B, 0x0EB9, 0x0EC1,
        0x0EE1, 0x0EFB, 0x0F10, 0x0F21, 0x0F2E, 0x0F5B, 0x0F64, 0x0F82,
        0x0FA7, 0x0FB4, 0x0FC0, 0x0FEA, 0x1002, 0x101F, 0x1044, 0x1051,
        0x105A, 0x105E, 0x106A, 0x028C, 0x0430, 0x028D, 0x0433, 0,
    ];

    fn unicode_ci_weights() -> Vec<Vec<u8>> {
        UNICODE_CI
            .iter()
            .map(|&w| match w {
                0 => vec![],
                w => w.to_be_bytes().to_vec(),
            })
            .collect()
    }

    /// utf8mb4_unicode_ci as the server describes it, without the server.
    pub(crate) fn unicode_ci() -> KeyCollation {
        KeyCollation::from_parts(true, unicode_ci_weights())
    }

    /// utf8mb4_bin: three bytes each, the code point.
    fn bin(pad_space: bool) -> KeyCollation {
        KeyCollation::from_parts(pad_space, (0..128u8).map(|c| vec![0, 0, c]).collect())
    }

    /// One byte each, case folded, like latin1_swedish_ci over ASCII.
    fn folded() -> KeyCollation {
        let weights = (0..128u8).map(|c| vec![c.to_ascii_uppercase()]).collect();
        KeyCollation::from_parts(true, weights)
    }

    /// unicode_ci where `-` and `_` weigh the same: spelt by the table.
    fn dashes() -> KeyCollation {
        let mut weights = unicode_ci_weights();
        weights[usize::from(b'_')] = weights[usize::from(b'-')].clone();
        KeyCollation::from_parts(true, weights)
    }

    fn writer(c: &KeyCollation, id: &str, writers: usize) -> usize {
        KeyHasher::new(c.clone()).writer(id, writers)
    }

    /// xorshift64*: reproducible ids without a dependency, heavy in what
    /// collations treat specially.
    fn ids(seed: u64, n: usize) -> Vec<String> {
        let mut x = seed;
        let mut next = move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        const SPECIAL: &[u8] = b" \0\t-_aAzZ09";
        (0..n)
            .map(|_| {
                let len = (next() % 41) as usize;
                let mut s: Vec<u8> = (0..len)
                    .map(|_| match next() % 4 {
                        0 => SPECIAL[(next() % SPECIAL.len() as u64) as usize],
                        1 => (next() % 128) as u8,
                        _ => (0x20 + next() % 0x5f) as u8,
                    })
                    .collect();
                s.extend(std::iter::repeat_n(b' ', (next() % 4) as usize));
                String::from_utf8(s).unwrap()
            })
            .collect()
    }

    #[test]
    fn ids_the_column_holds_equal_go_to_one_writer() {
        let c = unicode_ci();
        for (a, b) in [
            ("ABC", "abc"),
            ("x", "x "),
            ("x", "x   "),
            ("a\0b", "ab"),
            ("x", "x \0"),
            ("x", "x\0 "),
            ("Order-7", "order-7  "),
            (
                "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                "0123456789abcdefghijklmnopqrstuvwxyz",
            ),
        ] {
            for n in 1..=16 {
                assert_eq!(
                    writer(&c, a, n),
                    writer(&c, b, n),
                    "{a:?} / {b:?}, {n} writers"
                );
            }
        }
    }

    #[test]
    fn ids_the_column_holds_different_keep_different_keys() {
        for c in [unicode_ci(), bin(true), folded(), dashes()] {
            let mut keys = KeyHasher::new(c);
            for (a, b) in [
                ("a-b", "ab"),
                ("x\t", "x"),
                (" x", "x"),
                ("a b", "ab"),
                ("a", "b"),
            ] {
                assert_ne!(keys.hash(a), keys.hash(b), "{a:?} / {b:?}");
            }
        }
    }

    #[test]
    fn each_collation_takes_its_quickest_spelling() {
        assert_eq!(KeyCollation::binary().spell, Spell::Same);
        assert_eq!(bin(true).spell, Spell::Same);
        assert_eq!(unicode_ci().spell, Spell::Lower);
        assert_eq!(folded().spell, Spell::Lower);
        assert_eq!(dashes().spell, Spell::Table);
        // A character of two units among characters of one: every id goes
        // to the server.
        let mut weights: Vec<Vec<u8>> = (0..128u8).map(|c| vec![c]).collect();
        weights[usize::from(b'&')] = vec![b'e', b't'];
        let c = KeyCollation::new("two", false, Weigh::Local, weights, None);
        assert_eq!(c.weigh, Weigh::Server);
        assert_eq!(c.ascii_weights("a&b"), None);
    }

    #[test]
    fn weights_are_the_characters_end_to_end() {
        let c = unicode_ci();
        assert_eq!(
            c.ascii_weights("cafe ").unwrap(),
            [0x0E, 0x60, 0x0E, 0x33, 0x0E, 0xB9, 0x0E, 0x8B, 0x02, 0x09]
        );
        assert_eq!(c.ascii_weights("a\0B").unwrap(), [0x0E, 0x33, 0x0E, 0x4A]);
        assert_eq!(c.ascii_weights("").unwrap(), [0u8; 0]);
        assert_eq!(c.ascii_weights("caf\u{e9}"), None);
    }

    #[test]
    fn an_ascii_id_is_keyed_as_its_weight_string_would_be() {
        // What routing computes for an ASCII id is what it makes of the
        // server's weight string for any id that weighs the same.
        for c in [unicode_ci(), bin(true), bin(false), folded(), dashes()] {
            let mut keys = KeyHasher::new(c.clone());
            for id in ids(7, 5000) {
                let w = c.ascii_weights(&id).unwrap();
                assert_eq!(
                    keys.hash(&id),
                    c.key_of_weights(&w),
                    "{:?}: {id:?}",
                    c.spell
                );
            }
        }
    }

    #[test]
    fn weight_strings_of_ascii_weights_are_spelt_back() {
        let c = unicode_ci();
        let mut keys = KeyHasher::new(c.clone());
        // 'ß' weighs as "ss"; a trailing no-break space as a space.
        let sharp_s = [0x0F, 0xEA, 0x0F, 0xEA];
        assert_eq!(c.key_of_weights(&sharp_s), keys.hash("SS"));
        assert_eq!(
            c.key_of_weights(&[0x0F, 0xEA, 0x0F, 0xEA, 0x02, 0x09]),
            keys.hash("ss")
        );
        // Weights no ASCII character has are their own key.
        let emoji = [0xFF, 0xFD];
        assert_eq!(c.key_of_weights(&emoji), key_hash(&emoji));
        assert_eq!(c.key_of_weights(&[0x0E]), key_hash(&[0x0E]));
    }

    #[test]
    fn lowercasing_eight_at_a_time_is_lowercasing() {
        let all: Vec<u8> = (0x20..0x7f).collect();
        for len in 0..all.len() {
            let id = &all[all.len() - len..];
            let lower: Vec<u8> = id.iter().map(u8::to_ascii_lowercase).collect();
            assert_eq!(hash_lower(id), Some(key_hash(&lower)), "{id:?}");
        }
        for bad in (0..0x20).chain([0x7f]) {
            for at in 0..17 {
                let mut id = vec![b'a'; 17];
                id[at] = bad;
                assert_eq!(hash_lower(&id), None, "{bad:#x} at {at}");
            }
        }
    }

    #[test]
    fn binary_keeps_routing_by_bytes() {
        let mut keys = KeyHasher::new(KeyCollation::binary());
        for id in ["abc", "ABC", "x ", "caf\u{e9}", ""] {
            assert_eq!(keys.hash(id), key_hash(id.as_bytes()));
        }
        let parted = (1..=16)
            .filter(|&n| keys.writer("ABC", n) != keys.writer("abc", n))
            .count();
        assert!(parted > 0, "binary keys should not fold case");
    }

    #[test]
    fn keys_without_a_server_are_routed_by_a_guess() {
        let mut keys = KeyHasher::new(unicode_ci());
        assert_eq!(keys.hash("CAF\u{c9} "), keys.hash("caf\u{e9}"));
    }

    #[test]
    fn an_unreachable_server_is_waited_for_never_guessed() {
        let mut c = unicode_ci();
        c.server = Some(ServerWeights {
            // Nothing listens on port 1.
            opts: Opts::from(
                mysql::OptsBuilder::new()
                    .ip_or_hostname(Some("127.0.0.1"))
                    .tcp_port(1)
                    .prefer_socket(false),
            ),
            sql: "SELECT WEIGHT_STRING(?)".to_string(),
        });
        let mut keys = KeyHasher::new(c);
        // ASCII keys never wait.
        assert_eq!(keys.hash("ABC"), keys.hash("abc "));
        // Another id waits for the server, however long: a guess could
        // send two versions of one key to two writers.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(keys.hash("\u{c4}BC "));
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(2)).is_err(),
            "a key was routed without the server"
        );
    }

    #[test]
    fn names_are_checked_before_they_reach_sql() {
        assert!(plain_name("utf8mb4_unicode_ci"));
        for bad in ["", "x; DROP TABLE t", "utf8mb4_bin`", "a b", "\u{e9}"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert_eq!(ascii_codes().matches("SELECT").count(), 1 + 16 + 8);
    }
}
