//! The hash routing keys are reduced to.

/// A hash of a key, stable across runs and platforms: FNV-1a over 8-byte
/// words (byte-wise FNV was ~2 % of the sink's instructions on 36-byte ids),
/// the last bytes zero-padded into one more word with their count, then a
/// SplitMix64 finish, since multiplication alone leaves the low bits (the
/// ones `% writers` keeps) depending only on the low bytes.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    let mut h = KeyHash::new();
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        h.word(u64::from_le_bytes(w.try_into().expect("eight bytes")));
    }
    let rest = words.remainder();
    let tail = rest
        .iter()
        .enumerate()
        .fold(0u64, |t, (i, &b)| t | u64::from(b) << (8 * i));
    h.tail(tail, rest.len());
    h.finish()
}

/// [`key_hash`] fed piece by piece, for keys made on the fly: whole
/// little-endian words, then the last bytes, then finished.
#[derive(Clone, Copy)]
pub(crate) struct KeyHash(u64);

impl KeyHash {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    #[inline]
    pub(crate) fn new() -> KeyHash {
        KeyHash(0xcbf2_9ce4_8422_2325)
    }

    /// Eight bytes of the key, little-endian.
    #[inline]
    pub(crate) fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(Self::PRIME);
    }

    /// The key's last `len` (0 to 7) bytes, little-endian in `w`, whose
    /// other bytes are zero.
    #[inline]
    pub(crate) fn tail(&mut self, w: u64, len: usize) {
        if len > 0 {
            self.word(w | (len as u64) << 56);
        }
    }

    #[inline]
    pub(crate) fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}
