//! Turning a Kafka payload into a row of the `orders` table.
//!
//! The message format is the seed's: `id` and `order_id` are required
//! strings, `quantity` defaults to 1, `unit_price` and `total_value` default
//! to 0, `processed_at` may be null or absent, and unknown fields are ignored.
//!
//! Numbers are kept as JSON gave them (integer or float) instead of being
//! forced into Rust types here: the table's column types decide what fits, so
//! an out-of-range value is reported by MySQL with its own error, the same way
//! the seed passed values through to the driver.

use simd_json::{Node, StaticNode, Tape};

/// A JSON number as it arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Uint(u64),
    Float(f64),
}

/// One row of the target table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `id` followed by `order_id`. One allocation rather than two: rows are
    /// made on the consumer thread and freed on a writer's, and allocator
    /// traffic across threads was the largest single cost in profiles.
    text: Box<str>,
    id_len: usize,
    pub quantity: Num,
    pub unit_price: Num,
    pub total_value: Num,
    pub processed_at: Option<Num>,
}

impl Row {
    pub fn new(
        id: &str,
        order_id: &str,
        quantity: Num,
        unit_price: Num,
        total_value: Num,
        processed_at: Option<Num>,
    ) -> Row {
        let mut text = String::with_capacity(id.len() + order_id.len());
        text.push_str(id);
        text.push_str(order_id);
        Row {
            text: text.into_boxed_str(),
            id_len: id.len(),
            quantity,
            unit_price,
            total_value,
            processed_at,
        }
    }

    /// The primary key.
    pub fn id(&self) -> &str {
        &self.text[..self.id_len]
    }

    pub fn order_id(&self) -> &str {
        &self.text[self.id_len..]
    }
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
/// simd-json parses in place, so each payload is copied once into a scratch
/// buffer. That buffer, simd-json's own and the tape it parses into all live
/// across messages, which leaves the row's one allocation as the only one
/// per message. The tape is read directly rather than through serde: the
/// shape is flat and fixed, and the serde layer cost more than the scan.
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
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Err(DecodeError::Empty);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let row = match simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape) {
            Ok(()) => row_from_tape(&tape.0),
            Err(e) => Err(DecodeError::Invalid(e.to_string())),
        };
        self.tape = Some(tape.reset());
        row
    }
}

/// The fields of an order, from a parsed tape.
fn row_from_tape(nodes: &[Node<'_>]) -> Result<Row, DecodeError> {
    let invalid = |m: String| Err(DecodeError::Invalid(m));
    let Some(&Node::Object { len, .. }) = nodes.first() else {
        return invalid("expected a JSON object".into());
    };
    let mut id: Option<&str> = None;
    let mut order_id: Option<&str> = None;
    let mut nums: [Option<Option<Num>>; 4] = [None; 4];
    const NUMS: [&str; 4] = ["quantity", "unit_price", "total_value", "processed_at"];
    let mut i = 1;
    for _ in 0..len {
        let (Some(Node::String(key)), Some(value)) = (nodes.get(i), nodes.get(i + 1)) else {
            return invalid("truncated object".into());
        };
        i += 1 + node_width(value);
        let slot = match *key {
            "id" => Some(&mut id),
            "order_id" => Some(&mut order_id),
            _ => None,
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
        let Some(k) = NUMS.iter().position(|n| n == key) else {
            continue; // unknown fields are ignored, as the seed did
        };
        let num = match value {
            Node::Static(StaticNode::Null) => None,
            Node::Static(StaticNode::I64(v)) => Some(Num::Int(*v)),
            Node::Static(StaticNode::U64(v)) => Some(match i64::try_from(*v) {
                Ok(i) => Num::Int(i),
                Err(_) => Num::Uint(*v),
            }),
            Node::Static(StaticNode::F64(v)) if v.is_finite() => Some(Num::Float(*v)),
            _ => return invalid(format!("`{key}` must be a number or null")),
        };
        if nums[k].replace(num).is_some() {
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
    Ok(Row::new(
        id,
        order_id,
        quantity.unwrap_or(Num::Int(1)),
        unit_price.unwrap_or(Num::Int(0)),
        total_value.unwrap_or(Num::Int(0)),
        processed_at,
    ))
}

/// How many tape nodes a value takes, its nested values included.
fn node_width(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<Row, DecodeError> {
        Decoder::new().decode(s.as_bytes())
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
        assert_eq!(row.quantity, Num::Int(1));
        assert_eq!(row.unit_price, Num::Int(0));
        assert_eq!(row.total_value, Num::Int(0));
        assert_eq!(row.processed_at, None);
        let row = decode(r#"{"id":"a","order_id":"o","quantity":null}"#).unwrap();
        assert_eq!(row.quantity, Num::Int(1));
    }

    #[test]
    fn escapes_are_unescaped() {
        let row = decode(r#"{"id":"a\"b\\c\u0000d\ud83d\ude00","order_id":"x\ny"}"#).unwrap();
        assert_eq!(row.id(), "a\"b\\c\0d\u{1F600}");
        assert_eq!(row.order_id(), "x\ny");
    }

    #[test]
    fn large_numbers_keep_their_kind() {
        let row = decode(r#"{"id":"a","order_id":"o","quantity":18446744073709551615,"unit_price":1e9,"total_value":-3}"#)
            .unwrap();
        assert_eq!(row.quantity, Num::Uint(u64::MAX));
        assert_eq!(row.unit_price, Num::Float(1e9));
        assert_eq!(row.total_value, Num::Int(-3));
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
        assert_eq!(
            (row.quantity, row.unit_price),
            (Num::Int(7), Num::Float(1.25))
        );
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
    fn decoder_is_reusable_after_errors() {
        let mut d = Decoder::new();
        assert!(d.decode(b"{broken").is_err());
        let row = d.decode(br#"{"id":"x","order_id":"y"}"#).unwrap();
        assert_eq!(row.id(), "x");
    }
}
