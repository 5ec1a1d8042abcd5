//! Cells fed from a message's Kafka side: topic, partition, offset,
//! timestamp, key (whole, or a member of a JSON key), headers, and the
//! whole payload.

use std::borrow::Cow;

use simd_json::{BorrowedValue as Value, StaticNode};

use super::cell::{absent, is_null, key_text, null, null_key, push};
use super::{Col, Meta, PlanRowBuilder, RowError};
use crate::config::Source;
use crate::convert::ConvertError;
use crate::decode::DecodeError;

/// A cell fed from the message's Kafka side (or the whole payload).
pub(super) fn meta_cell(
    col: &Col,
    meta: &Meta<'_>,
    payload: &[u8],
    side: &mut Vec<u8>,
    row: &mut PlanRowBuilder,
) -> Result<(), RowError> {
    let text = |s| Value::String(Cow::Borrowed(s));
    let int = |i| Value::Static(StaticNode::I64(i));
    side.clear();
    let value = match &col.source {
        Source::Topic => text(meta.topic),
        Source::Partition => int(i64::from(meta.partition)),
        Source::Offset => int(meta.offset),
        Source::Timestamp => match meta.timestamp {
            Some(ms) => int(ms),
            None => return absent(col, row),
        },
        Source::Key => match meta.key {
            Some(k) => text(key_text(col, k)?),
            None => return absent(col, row),
        },
        Source::KeyField(name) => {
            let Some(k) = meta.key else {
                return absent(col, row);
            };
            side.extend_from_slice(k);
            let doc = simd_json::to_borrowed_value(side).map_err(|e| RowError::Key {
                column: col.column.clone(),
                reason: format!("is not a JSON object ({e})"),
            })?;
            let Value::Object(mut o) = doc else {
                return Err(RowError::Key {
                    column: col.column.clone(),
                    reason: "is not a JSON object".into(),
                });
            };
            match o.remove(name.as_str()) {
                Some(v) if is_null(&v) && col.key => return Err(null_key(col)),
                Some(v) => {
                    push(col, &v, None, row)?;
                    return Ok(());
                }
                None => return absent(col, row),
            }
        }
        Source::Header(name) => match meta.headers.iter().rev().find(|(n, _)| n == name) {
            Some((_, Some(v))) => match std::str::from_utf8(v) {
                Ok(s) => text(s),
                Err(_) => {
                    return Err(ConvertError {
                        field: col.field.clone(),
                        column: col.column.clone(),
                        value: format!("{} bytes", v.len()),
                        expected: "UTF-8 text".into(),
                        detail: None,
                    }
                    .into())
                }
            },
            Some((_, None)) => return null(col, false, row),
            None => return absent(col, row),
        },
        Source::Value => {
            side.extend_from_slice(payload);
            let v = simd_json::to_borrowed_value(side)
                .map_err(|e| DecodeError::Invalid(e.to_string()))?;
            push(col, &v, None, row)?;
            return Ok(());
        }
        Source::Field(_) => return absent(col, row),
    };
    if is_null(&value) && col.key {
        return Err(null_key(col));
    }
    push(col, &value, None, row)?;
    Ok(())
}
