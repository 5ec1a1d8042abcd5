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

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

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

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        struct NumVisitor;
        impl Visitor<'_> for NumVisitor {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(match i64::try_from(v) {
                    Ok(i) => Num::Int(i),
                    Err(_) => Num::Uint(v),
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                if v.is_finite() {
                    Ok(Num::Float(v))
                } else {
                    Err(E::custom("number is not finite"))
                }
            }
        }
        d.deserialize_any(NumVisitor)
    }
}

/// The wire shape, borrowing strings from the (unescaped in place) buffer.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    order_id: Cow<'a, str>,
    #[serde(default)]
    quantity: Option<Num>,
    #[serde(default)]
    unit_price: Option<Num>,
    #[serde(default)]
    total_value: Option<Num>,
    #[serde(default)]
    processed_at: Option<Num>,
}

/// Decodes payloads, reusing its buffers from one message to the next.
///
/// simd-json parses in place, so each payload is copied once into a scratch
/// buffer; keeping that buffer (and simd-json's own) alive across messages
/// removes the per-message allocations apart from the row's two strings.
pub struct Decoder {
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
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
        }
    }

    pub fn decode(&mut self, payload: &[u8]) -> Result<Row, DecodeError> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Err(DecodeError::Empty);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        let wire: Wire<'_> =
            simd_json::serde::from_slice_with_buffers(&mut self.scratch, &mut self.buffers)
                .map_err(|e| DecodeError::Invalid(e.to_string()))?;
        if wire.id.is_empty() {
            return Err(DecodeError::Invalid("`id` must not be empty".into()));
        }
        Ok(Row::new(
            &wire.id,
            &wire.order_id,
            wire.quantity.unwrap_or(Num::Int(1)),
            wire.unit_price.unwrap_or(Num::Int(0)),
            wire.total_value.unwrap_or(Num::Int(0)),
            wire.processed_at,
        ))
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
    fn decoder_is_reusable_after_errors() {
        let mut d = Decoder::new();
        assert!(d.decode(b"{broken").is_err());
        let row = d.decode(br#"{"id":"x","order_id":"y"}"#).unwrap();
        assert_eq!(row.id(), "x");
    }
}
