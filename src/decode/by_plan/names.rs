//! A plan's top-level field names, compared with a payload's raw keys the
//! way `flat::key_at` compares the orders' names: a table by first byte,
//! then sixteen bytes in two words with the closing quote included, so that
//! the keys that matter are neither scanned nor compared with `memcmp`.

const NONE: u16 = u16::MAX;

#[derive(Debug)]
pub(super) struct Names {
    names: Vec<Box<str>>,
    /// Per first byte, the first slot whose name starts with it.
    first: Box<[u16; 256]>,
    /// The next slot whose name starts with the same byte.
    next: Vec<u16>,
    /// The first sixteen bytes of each name followed by its closing quote
    /// (fewer for short names), as two little-endian words, and which
    /// bytes count.
    head: Vec<[(u64, u64); 2]>,
}

impl Names {
    pub(super) fn new(names: Vec<Box<str>>) -> Names {
        let mut first = Box::new([NONE; 256]);
        let mut next = vec![NONE; names.len()];
        let mut head = Vec::with_capacity(names.len());
        // Built back to front, so that each chain runs in slot order.
        for (slot, n) in names.iter().enumerate().rev() {
            let b = n.as_bytes();
            if let Some(&c) = b.first() {
                next[slot] = first[c as usize];
                first[c as usize] = slot as u16;
            }
            let mut word = [0u8; 16];
            let mut mask = [0u8; 16];
            for (k, &c) in b.iter().chain([&b'"']).take(16).enumerate() {
                word[k] = c;
                mask[k] = 0xff;
            }
            let half = |a: &[u8; 16], k: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&a[k * 8..k * 8 + 8]);
                u64::from_le_bytes(w)
            };
            head.push([
                (half(&word, 0), half(&mask, 0)),
                (half(&word, 1), half(&mask, 1)),
            ]);
        }
        head.reverse();
        Names {
            names,
            first,
            next,
            head,
        }
    }

    /// The slot of the name that is exactly `key`.
    pub(super) fn position(&self, key: &str) -> Option<usize> {
        self.names.iter().position(|n| **n == *key)
    }

    /// The slot and length of the name that is the whole key starting
    /// `rest` (the bytes after its opening quote), closing quote included
    /// in the comparison.
    #[inline(always)]
    pub(super) fn known(&self, rest: &[u8]) -> Option<(usize, usize)> {
        let mut slot = self.first[*rest.first()? as usize];
        let word = |k: usize| {
            let w: [u8; 8] = rest.get(k..k + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(w))
        };
        let words = word(0).zip(word(8)).map(|(a, b)| [a, b]);
        while slot != NONE {
            let k = slot as usize;
            let n = self.names[k].as_bytes();
            let whole = match words {
                // Names of up to fifteen bytes are two masked comparisons.
                Some(w) if n.len() < 16 => {
                    let [(h0, m0), (h1, m1)] = self.head[k];
                    w[0] & m0 == h0 && w[1] & m1 == h1
                }
                _ => rest.starts_with(n) && rest.get(n.len()) == Some(&b'"'),
            };
            if whole {
                return Some((k, n.len()));
            }
            slot = self.next[k];
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_known_only_when_whole() {
        let names = Names::new(
            ["id", "idx", "order_id", "a_rather_long_name", "i"]
                .map(Box::from)
                .to_vec(),
        );
        for (rest, want) in [
            (&b"id\":1}"[..], Some((0, 2))),
            (b"idx\":1,\"more\":2}", Some((1, 3))),
            (b"idy\":1,\"more\":2}", None),
            (b"order_id\":\"o\"}", Some((2, 8))),
            (b"order_i\":\"o\"}", None),
            (b"a_rather_long_name\":1", Some((3, 18))),
            (b"a_rather_long_namf\":1", None),
            (b"a_rather_long_name_\":1", None),
            (b"i\"", Some((4, 1))),
            (b"id\"", Some((0, 2))),
            (b"x\":1", None),
            (b"order_id\":\"a much longer value\"}", Some((2, 8))),
            (
                b"a_rather_long_name\":\"a much longer value\"}",
                Some((3, 18)),
            ),
            (b"idx\":\"a much longer value\"}", Some((1, 3))),
            (b"", None),
        ] {
            assert_eq!(names.known(rest), want, "{}", String::from_utf8_lossy(rest));
        }
        assert_eq!(names.position("order_id"), Some(2));
    }
}
