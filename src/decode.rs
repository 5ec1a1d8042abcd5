//! Turning a Kafka payload into a row of the `orders` table.
//!
//! The message format is the seed's: `id` and `order_id` are required
//! strings, `quantity` defaults to 1, `unit_price` and `total_value` default
//! to 0, `processed_at` may be null or absent, and unknown fields are ignored.
//!
//! Numbers are kept as the JSON text that carried them, not converted to
//! Rust types: the table's column types decide what fits, so an out-of-range
//! value is reported by MySQL with its own error, the same way the seed
//! passed values through to the driver. A JSON number is also a valid SQL
//! numeric literal, so the text goes into the statement as it is; that
//! spares a float parse and print per value (a tenth of the sink's
//! instructions) and is exact where a double is not: `0.12499999999999999999`
//! reaches a DECIMAL(10,2) as 0.12, where its nearest double would round to
//! 0.13.

use std::borrow::Cow;

use simd_json::{Node, StaticNode, Tape};

mod by_plan;
mod cells;
mod flat;

pub use by_plan::{Meta, PlanDecoder, RowError};
#[cfg(test)]
pub(crate) use cells::PlanRowBuilder;
pub use cells::{Cell, PlanRow};

/// A JSON number as a value, for rows built in code rather than decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl Num {
    /// Appends the number as a SQL numeric literal. Floats use the shortest
    /// text that reads back as the same double, so `49.99` stays `49.99`.
    pub fn push_to(self, buf: &mut String) {
        match self {
            Num::Int(i) => buf.push_str(itoa::Buffer::new().format(i)),
            Num::Uint(u) => buf.push_str(itoa::Buffer::new().format(u)),
            // Non-finite values cannot come from JSON; NULL makes MySQL
            // refuse the row loudly rather than store something made up.
            Num::Float(f) if !f.is_finite() => buf.push_str("NULL"),
            Num::Float(f) => buf.push_str(ryu::Buffer::new().format_finite(f)),
        }
    }

    fn to_sql(self) -> String {
        let mut s = String::new();
        self.push_to(&mut s);
        s
    }
}

/// One row of the target table.
///
/// All of it lives in one allocation: `id`, `order_id`, the SQL literals of
/// `quantity`, `unit_price`, `total_value` and `processed_at`, and, when the
/// dead-letter destination needs them, the message's key and payload as they
/// arrived. Rows are made on the consumer thread and freed on a writer's,
/// and allocator traffic across threads was the largest single cost in
/// profiles; a small row also moves through the channels more cheaply.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    bytes: Box<[u8]>,
    /// Where each part ends in `bytes`, in the order above.
    ends: [u32; 8],
    has_processed_at: bool,
    has_key: bool,
    has_payload: bool,
}

/// A message's key and payload, kept with its row.
pub(crate) type RawMessage<'a> = (Option<&'a [u8]>, &'a [u8]);

impl Row {
    pub fn new(
        id: &str,
        order_id: &str,
        quantity: Num,
        unit_price: Num,
        total_value: Num,
        processed_at: Option<Num>,
    ) -> Row {
        let [q, u, t] = [quantity, unit_price, total_value].map(Num::to_sql);
        Row::from_parts(
            [id, order_id, &q, &u, &t],
            processed_at.map(Num::to_sql).as_deref(),
            None,
        )
    }

    /// A row from its fields' texts (the numbers must be SQL literals) and,
    /// optionally, the message it came from.
    fn from_parts(
        fields: [&str; 5],
        processed_at: Option<&str>,
        raw: Option<RawMessage<'_>>,
    ) -> Row {
        let (key, payload) = match raw {
            Some((k, p)) => (k, Some(p)),
            None => (None, None),
        };
        let parts: [&[u8]; 8] = [
            fields[0].as_bytes(),
            fields[1].as_bytes(),
            fields[2].as_bytes(),
            fields[3].as_bytes(),
            fields[4].as_bytes(),
            processed_at.unwrap_or("").as_bytes(),
            key.unwrap_or_default(),
            payload.unwrap_or_default(),
        ];
        // Sized exactly, so that turning it into a box does not reallocate.
        let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 8];
        for (end, p) in ends.iter_mut().zip(parts) {
            bytes.extend_from_slice(p);
            // Payloads are limited to far below 4 GiB (sink.max_payload_bytes).
            *end = bytes.len() as u32;
        }
        Row {
            bytes: bytes.into_boxed_slice(),
            ends,
            has_processed_at: processed_at.is_some(),
            has_key: key.is_some(),
            has_payload: payload.is_some(),
        }
    }

    fn part(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        self.bytes
            .get(start..self.ends[k] as usize)
            .unwrap_or_default()
    }

    /// Field `k` (0..6) as text.
    fn field(&self, k: usize) -> &str {
        let b = self.part(k);
        // SAFETY: parts 0..6 were each copied whole from a `&str` by
        // `from_parts`, so each is valid UTF-8 on its own.
        debug_assert!(k < 6 && std::str::from_utf8(b).is_ok());
        unsafe { std::str::from_utf8_unchecked(b) }
    }

    /// Asks the CPU to start loading the row's fields into its cache.
    ///
    /// A row is made on the consumer thread and read thousands of rows later
    /// on a writer's, by which time it has left the caches: in profiles, the
    /// writer's first read of each row stood for most of the time spent
    /// putting it into a statement. Asked for a few rows ahead, the loads
    /// overlap with the work on the rows before.
    pub fn prefetch(&self) {
        prefetch(self.bytes.get(..self.ends[5] as usize).unwrap_or_default());
    }

    /// The message's key, if its row keeps the message and it had one.
    pub fn raw_key(&self) -> Option<&[u8]> {
        self.has_key.then(|| self.part(6))
    }

    /// The message's payload, if its row keeps the message.
    pub fn raw_payload(&self) -> Option<&[u8]> {
        self.has_payload.then(|| self.part(7))
    }

    /// The primary key.
    pub fn id(&self) -> &str {
        self.field(0)
    }

    pub fn order_id(&self) -> &str {
        self.field(1)
    }

    /// SQL numeric literal.
    pub fn quantity(&self) -> &str {
        self.field(2)
    }

    /// SQL numeric literal.
    pub fn unit_price(&self) -> &str {
        self.field(3)
    }

    /// SQL numeric literal.
    pub fn total_value(&self) -> &str {
        self.field(4)
    }

    /// SQL numeric literal, or `None` for NULL.
    pub fn processed_at(&self) -> Option<&str> {
        self.has_processed_at.then(|| self.field(5))
    }
}

/// Asks the CPU to start loading `bytes` (up to 256 of them) into its cache,
/// for data that another thread wrote a while ago and that is about to be
/// read. A hint only: it changes no result.
pub(crate) fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let Some(last) = bytes.len().checked_sub(1) else {
            return;
        };
        let first = bytes.as_ptr();
        // One hint per cache line touched, the last byte's line included.
        let mut at = 0;
        while at <= last.min(255) {
            // SAFETY: `at` is within `bytes`; a prefetch never faults and
            // reads nothing into the program.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.add(at).cast()) };
            at += 64;
        }
        // Lines need not start where `bytes` does: the last one may be
        // one more.
        // SAFETY: as above, `last` is within `bytes`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(first.add(last.min(255)).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Why a payload is not a row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("not a valid order: {0}")]
    Invalid(String),
}

/// Decodes payloads, reusing its buffers from one message to the next.
///
/// A flat order without escapes is read in one pass over the payload (see
/// `flat`); everything else goes through simd-json. simd-json parses in
/// place, so each such payload is copied once into a scratch
/// buffer, padded as simd-json needs so that it does not copy it again. That
/// buffer, simd-json's own and the tape it parses into all live across
/// messages, which leaves the row's one allocation as the only one per
/// message. The tape is read directly rather than through serde: the shape
/// is flat and fixed, and the serde layer cost more than the scan.
pub struct Decoder {
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    /// Kept empty between calls; see [`Tape::reset`].
    tape: Option<Tape<'static>>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            scratch: Vec::with_capacity(4096),
            buffers: simd_json::Buffers::new(4096),
            tape: None,
        }
    }

    pub fn decode(&mut self, payload: &[u8]) -> Result<Row, DecodeError> {
        self.decode_row(payload, None)
    }

    /// Decodes `payload` into a row that also keeps the message's key and
    /// payload (for the dead-letter destination), in the same allocation.
    pub fn decode_keeping(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<Row, DecodeError> {
        self.decode_row(payload, Some((key, payload)))
    }

    fn decode_row(
        &mut self,
        payload: &[u8],
        raw: Option<RawMessage<'_>>,
    ) -> Result<Row, DecodeError> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Err(DecodeError::Empty);
        }
        if let Some(flat) = flat::parse(payload) {
            return Ok(Row::from_parts(flat.fields, flat.processed_at, raw));
        }
        self.decode_general(payload, raw)
    }

    /// simd-json's way, for whatever the flat pass does not accept.
    fn decode_general(
        &mut self,
        payload: &[u8],
        raw: Option<RawMessage<'_>>,
    ) -> Result<Row, DecodeError> {
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        self.scratch
            .resize(payload.len() + simd_json::INPUT_PADDING, b' ');
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let row = match simd_json::fill_tape_padded(
            &mut self.scratch,
            payload.len(),
            &mut self.buffers,
            &mut tape,
        ) {
            Ok(()) => row_from_tape(&tape.0, payload, self.buffers.structural_indexes(), raw),
            Err(e) => Err(DecodeError::Invalid(e.to_string())),
        };
        self.tape = Some(tape.reset());
        row
    }
}

/// The fields of an order, from a parsed tape. `structurals` are the
/// positions in `payload` of the JSON structural characters and of the first
/// character of every value, in document order, as simd-json found them;
/// walking them beside the tape gives each number's text.
fn row_from_tape(
    nodes: &[Node<'_>],
    payload: &[u8],
    structurals: &[u32],
    raw: Option<RawMessage<'_>>,
) -> Result<Row, DecodeError> {
    let invalid = |m: String| Err(DecodeError::Invalid(m));
    let Some(&Node::Object { len, .. }) = nodes.first() else {
        return invalid("expected a JSON object".into());
    };
    let mut id: Option<&str> = None;
    let mut order_id: Option<&str> = None;
    let mut nums: [Option<Option<Cow<'_, str>>>; 4] = Default::default();
    // Tape node and structural index of the current member's key: after the
    // object's `{`, each member is key, `:`, value, then `,` or `}`.
    let (mut i, mut s) = (1, 1);
    for _ in 0..len {
        let (Some(Node::String(key)), Some(value)) = (nodes.get(i), nodes.get(i + 1)) else {
            return invalid("truncated object".into());
        };
        let (width, span) = match value {
            Node::Object { .. } | Node::Array { .. } => widths(&nodes[i + 1..]),
            _ => (1, 1),
        };
        let key_at = s;
        i += 1 + width;
        s += 3 + span;
        // One match on the key: a jump on its length, then one comparison.
        let (slot, k) = match *key {
            "id" => (Some(&mut id), 0),
            "order_id" => (Some(&mut order_id), 0),
            "quantity" => (None, 0),
            "unit_price" => (None, 1),
            "total_value" => (None, 2),
            "processed_at" => (None, 3),
            _ => continue, // unknown fields are ignored, as the seed did
        };
        if let Some(slot) = slot {
            let Node::String(v) = value else {
                return invalid(format!("`{key}` must be a string"));
            };
            if slot.replace(v).is_some() {
                return invalid(format!("duplicate field `{key}`"));
            }
            continue;
        }
        let value = match value {
            Node::Static(StaticNode::Null) => None,
            Node::Static(StaticNode::I64(v)) => Some(Num::Int(*v)),
            Node::Static(StaticNode::U64(v)) => Some(match i64::try_from(*v) {
                Ok(i) => Num::Int(i),
                Err(_) => Num::Uint(*v),
            }),
            Node::Static(StaticNode::F64(v)) if v.is_finite() => Some(Num::Float(*v)),
            _ => return invalid(format!("`{key}` must be a number or null")),
        };
        let field = value.map(|v| match number_text(payload, structurals, key_at) {
            Some(t) => Cow::Borrowed(t),
            None => Cow::Owned(v.to_sql()),
        });
        if nums[k].replace(field).is_some() {
            return invalid(format!("duplicate field `{key}`"));
        }
    }
    let Some(id) = id else {
        return invalid("missing field `id`".into());
    };
    let Some(order_id) = order_id else {
        return invalid("missing field `order_id`".into());
    };
    if id.is_empty() {
        return invalid("`id` must not be empty".into());
    }
    let [quantity, unit_price, total_value, processed_at] = nums.map(Option::flatten);
    Ok(Row::from_parts(
        [
            id,
            order_id,
            quantity.as_deref().unwrap_or("1"),
            unit_price.as_deref().unwrap_or("0"),
            total_value.as_deref().unwrap_or("0"),
        ],
        processed_at.as_deref(),
        raw,
    ))
}

/// The text of the number that is the value of the member whose key is at
/// structural `key`, or `None` if the positions do not look like
/// `"key" : number ,|}` (the caller then prints the parsed value instead, so
/// a miscount here could never put other text in a statement).
fn number_text<'p>(payload: &'p [u8], structurals: &[u32], key: usize) -> Option<&'p str> {
    let at = |k: usize| structurals.get(k).map(|&p| p as usize);
    let (colon, start, end) = (at(key + 1)?, at(key + 2)?, at(key + 3)?);
    let byte = |p: usize| payload.get(p).copied();
    if byte(at(key)?) != Some(b'"') || byte(colon) != Some(b':') {
        return None;
    }
    if !matches!(byte(end), Some(b',' | b'}')) {
        return None;
    }
    let text = payload.get(start..end)?.trim_ascii_end();
    let number_like = matches!(text.first(), Some(b'-' | b'0'..=b'9'))
        && text
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
    if !number_like {
        return None;
    }
    // SAFETY: every byte was just checked to be one of a few ASCII
    // characters, and ASCII is valid UTF-8. (The checked conversion cost more
    // than the rest of this function.)
    Some(unsafe { std::str::from_utf8_unchecked(text) })
}

/// How many tape nodes and how many structural positions the value at
/// `nodes[0]` takes, nested values included. A scalar is one of each; a
/// container adds its brackets, and per member its key and `:` (objects)
/// and the `,` between members.
fn widths(nodes: &[Node<'_>]) -> (usize, usize) {
    let (len, is_object) = match nodes.first() {
        Some(Node::Object { len, .. }) => (*len, true),
        Some(Node::Array { len, .. }) => (*len, false),
        _ => return (1, 1),
    };
    let (mut n, mut s) = (1, 2 + len.saturating_sub(1));
    for _ in 0..len {
        if is_object {
            n += 1;
            s += 2;
        }
        let (vn, vs) = widths(nodes.get(n..).unwrap_or_default());
        n += vn;
        s += vs;
    }
    (n, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An order in the shape the tests' generator produces: a UUID-like id,
    /// decimals with two places, sometimes a null, and an extra field.
    fn sample_order(i: u64, version: u64) -> String {
        let processed = if i.is_multiple_of(7) {
            "null".to_string()
        } else {
            (1_699_267_200 + i + version).to_string()
        };
        format!(
            r#"{{"id":"{:08x}-0000-4000-8000-{:012x}","order_id":"ORD-{i}-v{version}","quantity":{},"unit_price":{}.{:02},"total_value":12.50,"processed_at":{processed},"source":"enrich-v2"}}"#,
            i.wrapping_mul(0x9e37_79b9) & 0xffff_ffff,
            i,
            (i + version) % 10 + 1,
            i % 1000,
            (i * 7) % 100,
        )
    }

    /// Decodes `s` the public way; when that yields a row, simd-json's way
    /// must yield the same one, whichever path the public way took.
    fn decode(s: &str) -> Result<Row, DecodeError> {
        let row = Decoder::new().decode(s.as_bytes());
        if let Ok(r) = &row {
            assert_eq!(general(s).as_ref(), Ok(r), "{s}");
        }
        row
    }

    fn general(s: &str) -> Result<Row, DecodeError> {
        Decoder::new().decode_general(s.as_bytes(), None)
    }

    #[test]
    fn seed_message() {
        let row = decode(
            r#"{"id":"uuid-string","order_id":"ORD-123","quantity":5,"unit_price":49.99,"total_value":249.95,"processed_at":1699267200}"#,
        )
        .unwrap();
        assert_eq!(
            row,
            Row::new(
                "uuid-string",
                "ORD-123",
                Num::Int(5),
                Num::Float(49.99),
                Num::Float(249.95),
                Some(Num::Int(1699267200)),
            )
        );
        assert_eq!((row.id(), row.order_id()), ("uuid-string", "ORD-123"));
    }

    #[test]
    fn defaults_nulls_and_unknown_fields() {
        let row =
            decode(r#"{"id":"a","order_id":"o","extra":{"x":[1,2]},"processed_at":null}"#).unwrap();
        assert_eq!(row.quantity(), "1");
        assert_eq!(row.unit_price(), "0");
        assert_eq!(row.total_value(), "0");
        assert_eq!(row.processed_at(), None);
        let row = decode(r#"{"id":"a","order_id":"o","quantity":null}"#).unwrap();
        assert_eq!(row.quantity(), "1");
    }

    #[test]
    fn escapes_are_unescaped() {
        let row = decode(r#"{"id":"a\"b\\c\u0000d\ud83d\ude00","order_id":"x\ny"}"#).unwrap();
        assert_eq!(row.id(), "a\"b\\c\0d\u{1F600}");
        assert_eq!(row.order_id(), "x\ny");
    }

    #[test]
    fn numbers_keep_their_json_text() {
        let row = decode(r#"{"id":"a","order_id":"o","quantity":18446744073709551615,"unit_price":1e9,"total_value":-3,"processed_at":0.12499999999999999999}"#)
            .unwrap();
        assert_eq!(row.quantity(), "18446744073709551615");
        assert_eq!(row.unit_price(), "1e9");
        assert_eq!(row.total_value(), "-3");
        assert_eq!(row.processed_at(), Some("0.12499999999999999999"));
    }

    #[test]
    fn number_texts_are_found_through_whitespace_nesting_and_escapes() {
        let row = general(
            " {\"k\\\"\" : [ {\"x\":\"}\",\"y\":[1,[2],{}]} , -1.5e3 ] ,\n\t\"quantity\" :\r 12 ,\"z\":{\"quantity\":99},\"id\":\"i,\\\"d\",\"order_id\":\"o\",\"unit_price\":  -0.5E+2  ,\"total_value\":0 , \"processed_at\":1e-2} ",
        )
        .unwrap();
        assert_eq!(row.id(), "i,\"d");
        assert_eq!(row.quantity(), "12");
        assert_eq!(row.unit_price(), "-0.5E+2");
        assert_eq!(row.total_value(), "0");
        assert_eq!(row.processed_at(), Some("1e-2"));
    }

    #[test]
    fn every_number_text_is_the_number_the_parser_read() {
        // Unknown members of every shape before, between and after the known
        // ones: whatever the walk over structural positions makes of them,
        // the text it takes must read back as the value simd-json parsed.
        let fillers = [
            "",
            r#""a":1,"#,
            r#""a":"x,\":y","#,
            r#""a":[],"b":{},"#,
            r#""a":[1,[2,[3,{"q":4}]],{"r":[]}],"#,
            r#""a":{"b":{"c":[true,false,null]}},"#,
        ];
        let mut checked = 0;
        for (i, f1) in fillers.iter().enumerate() {
            for f2 in &fillers[i..] {
                let doc = format!(
                    r#"{{{f1}"quantity":3,{f2}"id":"x","unit_price":12.5,{f1}"order_id":"o",{f2}"total_value":-7e1,"processed_at":17}}"#
                );
                let row = general(&doc).unwrap();
                let texts = [row.quantity(), row.unit_price(), row.total_value()];
                assert_eq!(texts, ["3", "12.5", "-7e1"], "{doc}");
                assert_eq!(row.processed_at(), Some("17"), "{doc}");
                checked += 1;
            }
        }
        assert_eq!(checked, 21);
    }

    #[test]
    fn the_walk_falls_back_to_the_parsed_value_when_positions_do_not_fit() {
        // Positions that do not frame a number are refused, whatever they hold.
        assert_eq!(number_text(br#"{"a":1}"#, &[0, 1, 4, 5, 6], 1), Some("1"));
        assert_eq!(number_text(br#"{"a":1}"#, &[0, 1, 4, 5, 6], 0), None);
        assert_eq!(number_text(br#"{"a":"1"}"#, &[0, 1, 4, 5, 8], 1), None);
        assert_eq!(number_text(br#"{"a":1"#, &[0, 1, 4, 5], 1), None);
        // And a row built from values prints them as SQL literals.
        let row = Row::new(
            "i",
            "o",
            Num::Uint(u64::MAX),
            Num::Float(0.1),
            Num::Float(5.0),
            None,
        );
        assert_eq!(
            [row.quantity(), row.unit_price(), row.total_value()],
            ["18446744073709551615", "0.1", "5.0"]
        );
    }

    #[test]
    fn rejects_what_is_not_an_order() {
        for bad in [
            "not json",
            "{",
            "[]",
            "42",
            r#"{"order_id":"o"}"#,
            r#"{"id":"a"}"#,
            r#"{"id":null,"order_id":"o"}"#,
            r#"{"id":7,"order_id":"o"}"#,
            r#"{"id":"","order_id":"o"}"#,
            r#"{"id":"a","order_id":"o","quantity":"5"}"#,
            r#"{"id":"a","order_id":"o","unit_price":true}"#,
        ] {
            assert!(
                matches!(decode(bad), Err(DecodeError::Invalid(_))),
                "{bad} should be invalid"
            );
        }
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("  \n"), Err(DecodeError::Empty));
    }

    #[test]
    fn nested_unknown_fields_are_skipped_wherever_they_are() {
        let row = decode(
            r#"{"meta":{"a":[1,{"b":[2,3]},[]],"c":{}},"id":"x","tags":[[1],[2,[3]]],"order_id":"o","quantity":7,"deep":{"d":{"e":{"f":null}}},"unit_price":1.25}"#,
        )
        .unwrap();
        assert_eq!((row.id(), row.order_id()), ("x", "o"));
        assert_eq!((row.quantity(), row.unit_price()), ("7", "1.25"));
    }

    #[test]
    fn duplicate_fields_are_rejected() {
        for bad in [
            r#"{"id":"a","id":"b","order_id":"o"}"#,
            r#"{"id":"a","order_id":"o","quantity":1,"quantity":2}"#,
            r#"{"id":"a","order_id":"o","processed_at":null,"processed_at":2}"#,
        ] {
            let err = decode(bad).unwrap_err();
            assert!(err.to_string().contains("duplicate field"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_row_can_keep_its_message_beside_its_fields() {
        let payload = br#"{"id":"i\u00e9","order_id":"o","quantity":2,"processed_at":5}"#;
        let mut d = Decoder::new();
        let kept = d.decode_keeping(Some(b"k\xff"), payload).unwrap();
        assert_eq!((kept.id(), kept.order_id()), ("i\u{e9}", "o"));
        assert_eq!((kept.quantity(), kept.processed_at()), ("2", Some("5")));
        assert_eq!(kept.raw_key(), Some(&b"k\xff"[..]));
        assert_eq!(kept.raw_payload(), Some(&payload[..]));
        let keyless = d.decode_keeping(None, payload).unwrap();
        assert_eq!(
            (keyless.raw_key(), keyless.raw_payload()),
            (None, Some(&payload[..]))
        );
        let plain = d.decode(payload).unwrap();
        assert_eq!((plain.raw_key(), plain.raw_payload()), (None, None));
        assert_eq!(plain.id(), kept.id());
    }

    #[test]
    fn decoder_is_reusable_after_errors() {
        let mut d = Decoder::new();
        assert!(d.decode(b"{broken").is_err());
        let row = d.decode(br#"{"id":"x","order_id":"y"}"#).unwrap();
        assert_eq!(row.id(), "x");
    }

    #[test]
    fn the_flat_pass_accepts_only_what_simd_json_reads_the_same() {
        // Messages of many shapes, each mutated over and over (bytes
        // replaced, inserted, deleted, spans repeated) with characters that
        // matter to JSON. Whenever the flat pass accepts a message, simd-json
        // must read it too, into the same row; what the flat pass refuses
        // goes to simd-json anyway, so refusing is always safe.
        let mut bases: Vec<String> = (0..8).map(|i| sample_order(i, 0)).collect();
        bases.extend(
            [
                r#"{"id":"a","order_id":"o"}"#,
                r#" { "id" : "a b" , "order_id" : "o" , "quantity" : 12 , "unit_price" : -0.5E+2 } "#,
                r#"{"id":"x","order_id":"o","quantity":1e2,"unit_price":0,"total_value":-0.0,"processed_at":null}"#,
                r#"{"x":true,"y":false,"z":null,"id":"i","w":"v","order_id":"o","n":-1.5e-3}"#,
                r#"{"id":"é€","order_id":"\u00e9","quantity":18446744073709551615}"#,
                r#"{"id":"a","order_id":"o","meta":{"k":[1,2,{"quantity":3}]},"quantity":4}"#,
            ]
            .map(String::from),
        );
        let alphabet: &[u8] = b"{}[]:,\"\\ \t\n\r0123456789-+.eEtrufalsn\x00\x1f\x7f\xc3\xa9\xff";
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % n.max(1) as u64) as usize
        };
        let mut general = Decoder::new();
        let (mut tried, mut accepted) = (0, 0);
        for base in &bases {
            for _ in 0..20_000 {
                let mut m = base.as_bytes().to_vec();
                for _ in 0..1 + next(3) {
                    let at = next(m.len() + 1);
                    let c = alphabet[next(alphabet.len())];
                    match next(4) {
                        0 if at < m.len() => m[at] = c,
                        1 => m.insert(at, c),
                        2 if at < m.len() => {
                            m.remove(at);
                        }
                        _ => {
                            let end = (at + 1 + next(8)).min(m.len());
                            let span = m[at.min(end)..end].to_vec();
                            m.splice(at.min(end)..at.min(end), span);
                        }
                    }
                }
                tried += 1;
                let Some(f) = flat::parse(&m) else { continue };
                accepted += 1;
                let fast = Row::from_parts(f.fields, f.processed_at, None);
                assert_eq!(
                    general.decode_general(&m, None),
                    Ok(fast),
                    "{}",
                    String::from_utf8_lossy(&m)
                );
            }
        }
        // The mutations must leave plenty that the flat pass accepts, or the
        // comparison above would prove little.
        assert!(accepted * 10 > tried, "{accepted} of {tried} accepted");
    }

    #[test]
    fn generated_orders_take_the_flat_pass() {
        for i in 0..50 {
            let payload = sample_order(i, 3);
            assert!(flat::parse(payload.as_bytes()).is_some(), "{payload}");
        }
    }
}
