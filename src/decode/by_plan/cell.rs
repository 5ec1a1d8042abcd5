//! One value into one cell of a row: the conversion's literal, a text
//! column's raw string, `DEFAULT` or nothing for what is absent, `NULL`, or
//! the refusal.

use simd_json::{BorrowedValue as Value, StaticNode};

use super::{Col, PlanRowBuilder, RowError};
use crate::convert::{self, Conversion};
use crate::plan::Absent;

pub(super) fn is_null(v: &Value<'_>) -> bool {
    matches!(v, Value::Static(StaticNode::Null))
}

/// The text between `a` and `b`, which the one pass found as a `&str` of
/// this payload.
#[inline]
pub(super) fn slice(payload: &[u8], a: u32, b: u32) -> &str {
    let bytes = payload.get(a as usize..b as usize).unwrap_or_default();
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: `read_flat` recorded these bounds from a `&str` slice of
    // `payload` (which `flat::members` validated as UTF-8), and `decode`
    // passes the same payload.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// A JSON number the one pass accepted, as simd-json would have read it,
/// with its text when that is what a float keeps.
pub(super) fn number_value(text: &str) -> (Value<'static>, Option<&str>) {
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = text.parse::<i64>() {
            return (Value::Static(StaticNode::I64(i)), None);
        }
    }
    let f = text.parse::<f64>().unwrap_or(f64::NAN);
    (Value::Static(StaticNode::F64(f)), Some(text))
}

/// Appends `value` as `col`'s cell: a string for a text column as its raw
/// text (the statement quotes it, as it quotes the orders row's strings),
/// anything else as the conversion's literal.
pub(super) fn push(
    col: &Col,
    value: &Value<'_>,
    text: Option<&str>,
    row: &mut PlanRowBuilder,
) -> Result<(), RowError> {
    if let (Conversion::Text, Value::String(s)) = (&col.conversion, value) {
        row.text().push_str(s);
        row.end_text();
        return Ok(());
    }
    convert::apply(
        &col.conversion,
        &col.field,
        &col.column,
        value,
        text,
        row.text(),
    )?;
    row.end_value();
    Ok(())
}

#[inline]
pub(super) fn absent(col: &Col, row: &mut PlanRowBuilder) -> Result<(), RowError> {
    match col.when_absent {
        Absent::Refuse => {
            return Err(RowError::Missing {
                field: col.field.clone(),
                column: col.column.clone(),
                expected: col.conversion.to_string(),
            })
        }
        Absent::Default => row.push_default(),
        Absent::LeaveAlone => row.push_absent(),
    }
    Ok(())
}

pub(super) fn null_key(col: &Col) -> RowError {
    RowError::NullKey {
        field: col.field.clone(),
        column: col.column.clone(),
        expected: col.conversion.to_string(),
    }
}

#[inline]
pub(super) fn null(
    col: &Col,
    null_is_absent: bool,
    row: &mut PlanRowBuilder,
) -> Result<(), RowError> {
    if null_is_absent {
        return absent(col, row);
    }
    if col.key {
        return Err(null_key(col));
    }
    row.text().push_str("NULL");
    row.end_value();
    Ok(())
}

pub(super) fn key_text<'k>(col: &Col, key: &'k [u8]) -> Result<&'k str, RowError> {
    std::str::from_utf8(key).map_err(|_| RowError::Key {
        column: col.column.clone(),
        reason: "is not UTF-8 text".into(),
    })
}
