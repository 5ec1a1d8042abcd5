//! Routing keys of route rows: every key cell of a row, each as its column
//! compares it, so that versions of one key (composite or not) meet on one
//! writer.
//!
//! A text column's cell is weighed by the column's collation, as the
//! orders `id` is; any other cell's literal is canonical already (the
//! conversion wrote it: `42` for `"42"` and `42.0` into an INT, the
//! rounded decimal, the normalised datetime), so its bytes are the key.

use std::borrow::Cow;

use crate::collation::{key_hash, KeyHasher};
use crate::decode::{Cell, PlanRow};
use crate::targets::RouteTargets;

/// One target's key: its cells' positions, and per cell the hasher of a
/// text column.
struct TargetKey {
    cells: Vec<usize>,
    hashers: Vec<Option<KeyHasher>>,
}

/// The key hashers of every route target, by target index.
#[derive(Default)]
pub(crate) struct PlanKeys(Vec<TargetKey>);

impl PlanKeys {
    pub(crate) fn new(targets: &RouteTargets) -> PlanKeys {
        PlanKeys(
            targets
                .iter()
                .map(|t| TargetKey {
                    cells: t.shape.key.clone(),
                    hashers: t
                        .key_collations
                        .iter()
                        .map(|c| c.clone().map(KeyHasher::new))
                        .collect(),
                })
                .collect(),
        )
    }

    /// A hash of `row`'s key as target `target`'s table compares it.
    pub(crate) fn hash(&mut self, target: u16, row: &PlanRow) -> u64 {
        let Some(key) = self.0.get_mut(usize::from(target)) else {
            return 0;
        };
        let mut h: u64 = 0;
        for (n, &k) in key.cells.iter().enumerate() {
            let hasher = key.hashers.get_mut(n).and_then(Option::as_mut);
            let part = match (row.cell(k), hasher) {
                (Cell::Text(s), Some(hs)) => hs.hash(s),
                (Cell::Value(v), Some(hs)) => match text_of_literal(v) {
                    Some(s) => hs.hash(&s),
                    None => key_hash(v.as_bytes()),
                },
                (Cell::Text(s) | Cell::Value(s), None) => key_hash(s.as_bytes()),
                (Cell::Default | Cell::Absent, _) => 0,
            };
            // Order matters: (a, b) and (b, a) are different keys.
            h = (h.rotate_left(27) ^ part).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        h
    }

    /// The writer (0..writers) of `row`.
    pub(crate) fn writer(&mut self, target: u16, row: &PlanRow, writers: usize) -> usize {
        (self.hash(target, row) % writers as u64) as usize
    }
}

/// The string a text column's literal stands for (`'abc'`, or
/// `_utf8mb4 X'…'` for strings with special bytes): a number fed to a text
/// key is such a literal, and must weigh as the same string would.
fn text_of_literal(v: &str) -> Option<Cow<'_, str>> {
    if let Some(hex) = v
        .strip_prefix("_utf8mb4 X'")
        .and_then(|r| r.strip_suffix('\''))
    {
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
            })
            .collect();
        return String::from_utf8(bytes?).ok().map(Cow::Owned);
    }
    v.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .map(Cow::Borrowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collation::tests::unicode_ci;
    use crate::decode::PlanRowBuilder;

    /// A row of (tenant, id, v): `tenant` and `v` literals, `id` a text
    /// cell (`text`) or the literal a number fed to a text column makes.
    fn row(tenant: &str, id: &str, text: bool, v: &str) -> PlanRow {
        let mut b = PlanRowBuilder::default();
        b.text().push_str(tenant);
        b.end_value();
        if text {
            b.text().push_str(id);
            b.end_text();
        } else {
            crate::sql::push_str_literal(b.text(), id);
            b.end_value();
        }
        b.text().push_str(v);
        b.end_value();
        b.finish(&[], None)
    }

    fn keys() -> PlanKeys {
        PlanKeys(vec![TargetKey {
            cells: vec![0, 1],
            hashers: vec![None, Some(KeyHasher::new(unicode_ci()))],
        }])
    }

    #[test]
    fn literals_give_back_their_strings() {
        assert_eq!(text_of_literal("'42'").as_deref(), Some("42"));
        assert_eq!(
            text_of_literal("_utf8mb4 X'612762'").as_deref(),
            Some("a'b")
        );
        assert_eq!(text_of_literal("42"), None);
        assert_eq!(text_of_literal("NULL"), None);
    }

    #[test]
    fn versions_of_a_composite_key_hash_alike_and_other_keys_apart() {
        let mut k = keys();
        let h = k.hash(0, &row("1", "Key-7", true, "1"));
        // Same key as the table compares it; other cells do not count.
        assert_eq!(h, k.hash(0, &row("1", "key-7 ", true, "2")));
        assert_eq!(h, k.hash(0, &row("1", "KEY-7", false, "3")));
        // Either key cell differing is another key.
        assert_ne!(h, k.hash(0, &row("2", "Key-7", true, "1")));
        assert_ne!(h, k.hash(0, &row("1", "Key-8", true, "1")));
        // Cells swapped are another key.
        let swapped = k.hash(0, &row("7", "1", false, "1"));
        assert_ne!(k.hash(0, &row("1", "7", false, "1")), swapped);
        // Keys spread over writers.
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[k.writer(
                0,
                &row(&(i % 5).to_string(), &format!("id-{i}"), true, "0"),
                4,
            )] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
