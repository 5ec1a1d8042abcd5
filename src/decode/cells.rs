//! A row of any table, as a route's plan decodes it: per written column a
//! SQL literal, `DEFAULT`, or nothing (the column is left out, so an
//! update keeps its value).
//!
//! Like the orders [`Row`](super::Row), all of a row lives in one
//! allocation, for the same reason: rows are made on the consumer thread
//! and freed on a writer's, and allocator traffic across threads was the
//! largest single cost in profiles. Cells are in the order of the plan's
//! written columns; what those columns are is the plan's business, not the
//! row's.

/// One column's part of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    /// A SQL literal, ready for the statement.
    Value(&'a str),
    /// A string for a text column, as the message had it: the statement
    /// quotes it (`sql::push_str_literal`). Kept raw so that decoding does
    /// not pay for quoting, and so that a router can weigh a key's text as
    /// its column compares it.
    Text(&'a str),
    /// The column's default (an absent field whose column defaults).
    Default,
    /// Not written: inserts give the column its default, updates keep it.
    Absent,
}

/// Cell kinds in the top two bits of each cell's end offset.
const KIND_SHIFT: u32 = 30;
const END_MASK: u32 = (1 << KIND_SHIFT) - 1;
const KIND_VALUE: u32 = 0;
const KIND_DEFAULT: u32 = 1;
const KIND_ABSENT: u32 = 2;
const KIND_TEXT: u32 = 3;

/// A decoded row: its cells and, when the dead-letter destination needs
/// them, the message's key and payload as they arrived.
///
/// Layout of `bytes`: one little-endian `u32` per cell (where its literal
/// ends in the text, kind in the top bits), then the literals' text, then
/// the key, then the payload.
#[derive(Clone, PartialEq, Eq)]
pub struct PlanRow {
    bytes: Box<[u8]>,
    cells: u32,
    text_end: u32,
    key_end: u32,
    has_key: bool,
    has_payload: bool,
}

impl std::fmt::Debug for PlanRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.cells()).finish()
    }
}

impl PlanRow {
    /// How many cells the row has (the plan's written columns).
    pub fn len(&self) -> usize {
        self.cells as usize
    }

    pub fn is_empty(&self) -> bool {
        self.cells == 0
    }

    fn text_start(&self) -> usize {
        self.cells as usize * 4
    }

    fn word(&self, k: usize) -> u32 {
        let mut w = [0u8; 4];
        if let Some(b) = self.bytes.get(k * 4..k * 4 + 4) {
            w.copy_from_slice(b);
        }
        u32::from_le_bytes(w)
    }

    /// Cell `k`; `Absent` past the end.
    pub fn cell(&self, k: usize) -> Cell<'_> {
        if k >= self.cells as usize {
            return Cell::Absent;
        }
        let start = match k {
            0 => 0,
            _ => self.word(k - 1) & END_MASK,
        };
        self.cell_at(self.word(k), start)
    }

    /// The cell whose header word is `w` and whose text starts at `start`.
    fn cell_at(&self, w: u32, start: u32) -> Cell<'_> {
        match w >> KIND_SHIFT {
            kind @ (KIND_VALUE | KIND_TEXT) => {
                let base = self.text_start();
                let b = self
                    .bytes
                    .get(base + start as usize..base + (w & END_MASK) as usize)
                    .unwrap_or_default();
                // SAFETY: `PlanRowBuilder::finish` copied each cell's text
                // whole from a `String` or from a span of the message that
                // its caller took from a `&str` of it, so each is valid
                // UTF-8 on its own.
                debug_assert!(std::str::from_utf8(b).is_ok());
                let text = unsafe { std::str::from_utf8_unchecked(b) };
                if kind == KIND_TEXT {
                    Cell::Text(text)
                } else {
                    Cell::Value(text)
                }
            }
            KIND_DEFAULT => Cell::Default,
            _ => Cell::Absent,
        }
    }

    /// The cells in order; each one's text starts where the one before
    /// ended, so each header word is read once.
    pub fn cells(&self) -> impl Iterator<Item = Cell<'_>> {
        let mut start = 0;
        (0..self.cells as usize).map(move |k| {
            let w = self.word(k);
            let cell = self.cell_at(w, start);
            start = w & END_MASK;
            cell
        })
    }

    /// Whether `other` leaves out exactly the cells this row leaves out:
    /// such rows can share one multi-row statement.
    pub fn same_columns(&self, other: &PlanRow) -> bool {
        self.cells == other.cells
            && (0..self.cells as usize).all(|k| {
                (self.word(k) >> KIND_SHIFT == KIND_ABSENT)
                    == (other.word(k) >> KIND_SHIFT == KIND_ABSENT)
            })
    }

    /// The message's key, if the row keeps the message and it had one.
    pub fn raw_key(&self) -> Option<&[u8]> {
        self.has_key.then(|| {
            self.bytes
                .get(self.text_end as usize..self.key_end as usize)
                .unwrap_or_default()
        })
    }

    /// The message's payload, if the row keeps the message.
    pub fn raw_payload(&self) -> Option<&[u8]> {
        self.has_payload
            .then(|| self.bytes.get(self.key_end as usize..).unwrap_or_default())
    }

    /// Asks the CPU to start loading the row (see `Row::prefetch`).
    pub fn prefetch(&self) {
        super::prefetch(self.bytes.get(..self.text_end as usize).unwrap_or_default());
    }
}

/// Collects one row's cells, reused from one message to the next so that
/// the finished row is the only allocation.
#[derive(Debug, Default)]
pub(crate) struct PlanRowBuilder {
    text: String,
    cells: Vec<Pending>,
    /// Where the builder's own text of the next cell starts.
    mark: u32,
}

/// One cell until the row is finished: its kind and where its text is,
/// in the builder's text or (`from_source`) in the message it came from,
/// which spares copying text twice that the message already holds as the
/// row needs it.
#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: u32,
    start: u32,
    end: u32,
    from_source: bool,
}

impl PlanRowBuilder {
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.cells.clear();
        self.mark = 0;
    }

    /// The buffer the next literal is appended to; close it with
    /// [`PlanRowBuilder::end_value`].
    #[inline]
    pub(crate) fn text(&mut self) -> &mut String {
        &mut self.text
    }

    /// Ends the literal appended since the last cell.
    #[inline]
    pub(crate) fn end_value(&mut self) {
        self.end_own(KIND_VALUE);
    }

    /// Ends the raw text of a string appended since the last cell.
    #[inline]
    pub(crate) fn end_text(&mut self) {
        self.end_own(KIND_TEXT);
    }

    /// A literal that is `source[start..end]` of the message passed to
    /// [`PlanRowBuilder::finish`]; the span must be a `&str` of it (the row
    /// reads its cells as text without checking them again).
    #[inline]
    pub(crate) fn value_in_source(&mut self, start: u32, end: u32) {
        self.push(KIND_VALUE, start, end, true);
    }

    /// A text column's raw string that is `source[start..end]`, a `&str`
    /// of it as for [`PlanRowBuilder::value_in_source`].
    #[inline]
    pub(crate) fn text_in_source(&mut self, start: u32, end: u32) {
        self.push(KIND_TEXT, start, end, true);
    }

    #[inline]
    pub(crate) fn push_default(&mut self) {
        self.push(KIND_DEFAULT, 0, 0, true);
    }

    #[inline]
    pub(crate) fn push_absent(&mut self) {
        self.push(KIND_ABSENT, 0, 0, true);
    }

    #[inline]
    fn end_own(&mut self, kind: u32) {
        // Literals are bounded by the payload (far below 1 GiB, see
        // sink.max_payload_bytes) times a small factor for hex literals.
        let end = self.text.len() as u32;
        let start = std::mem::replace(&mut self.mark, end);
        self.push(kind, start, end, false);
    }

    #[inline]
    fn push(&mut self, kind: u32, start: u32, end: u32, from_source: bool) {
        self.cells.push(Pending {
            kind,
            start,
            end,
            from_source,
        });
    }

    /// The row; cells `in_source` are read from `source`; with `raw`, the
    /// row keeps the message's key and payload.
    pub(crate) fn finish(&self, source: &[u8], raw: Option<(Option<&[u8]>, &[u8])>) -> PlanRow {
        let (key, payload) = match raw {
            Some((k, p)) => (k, Some(p)),
            None => (None, None),
        };
        let key_bytes = key.unwrap_or_default();
        let payload_bytes = payload.unwrap_or_default();
        let own = self.text.as_bytes();
        let text_of = |c: &Pending| {
            let from = if c.from_source { source } else { own };
            from.get(c.start as usize..c.end as usize)
                .unwrap_or_default()
        };
        let header = self.cells.len() * 4;
        let texts: usize = self
            .cells
            .iter()
            .map(|c| c.end.saturating_sub(c.start) as usize)
            .sum();
        let len = header + texts + key_bytes.len() + payload_bytes.len();
        // Sized exactly, so that turning it into a box does not reallocate.
        let mut bytes = Vec::with_capacity(len);
        bytes.resize(header, 0);
        // One pass: each cell's text, then its end in the header. (An
        // iterator of `to_le_bytes` into `extend` cost more than all the
        // texts' copies together.)
        for (k, c) in self.cells.iter().enumerate() {
            bytes.extend_from_slice(text_of(c));
            let end = ((bytes.len() - header) as u32 & END_MASK) | c.kind << KIND_SHIFT;
            if let Some(word) = bytes.get_mut(k * 4..k * 4 + 4) {
                word.copy_from_slice(&end.to_le_bytes());
            }
        }
        let text_end = bytes.len() as u32;
        bytes.extend_from_slice(key_bytes);
        let key_end = bytes.len() as u32;
        bytes.extend_from_slice(payload_bytes);
        PlanRow {
            bytes: bytes.into_boxed_slice(),
            cells: self.cells.len() as u32,
            text_end,
            key_end,
            has_key: key.is_some(),
            has_payload: payload.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_key_and_payload_come_back_as_built() {
        let mut b = PlanRowBuilder::default();
        b.text().push_str("'a'");
        b.end_value();
        b.push_default();
        b.text().push_str("");
        b.end_value();
        b.push_absent();
        b.text().push_str("12.5");
        b.end_value();
        b.text().push_str("it's");
        b.end_text();
        b.text_in_source(1, 3);
        let row = b.finish(b"xyz", Some((Some(b"k"), b"{}")));
        let cells: Vec<Cell<'_>> = row.cells().collect();
        assert_eq!(
            cells,
            [
                Cell::Value("'a'"),
                Cell::Default,
                Cell::Value(""),
                Cell::Absent,
                Cell::Value("12.5"),
                Cell::Text("it's"),
                Cell::Text("yz"),
            ]
        );
        assert_eq!(row.len(), 7);
        assert_eq!(row.cell(9), Cell::Absent);
        assert_eq!(row.raw_key(), Some(&b"k"[..]));
        assert_eq!(row.raw_payload(), Some(&b"{}"[..]));
        let bare = b.finish(b"xyz", None);
        assert_eq!((bare.raw_key(), bare.raw_payload()), (None, None));
        assert!(bare.same_columns(&row));
        b.clear();
        b.text().push('1');
        b.end_value();
        for _ in 0..6 {
            b.push_default();
        }
        assert!(!b.finish(b"", None).same_columns(&row));
    }
}
