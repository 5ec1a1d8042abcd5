//! simd-json's way, for whatever the one pass does not accept: the tape,
//! walked beside simd-json's structural positions so that each number's
//! text is found (see `decode::number_text`), paths followed down objects
//! and arrays.

use std::borrow::Cow;

use simd_json::{BorrowedValue as Value, Node, StaticNode};

use super::cell::{absent, null, push};
use super::{meta_cell, Col, Meta, Names, PlanRowBuilder, RowError};
use crate::config::Source;
use crate::decode::DecodeError;

/// A parsed payload: its tape, its text and simd-json's structural
/// positions (of every structural character and every value's start).
pub(super) struct Doc<'t, 'v> {
    pub(super) nodes: &'t [Node<'v>],
    pub(super) payload: &'t [u8],
    pub(super) structurals: &'t [u32],
}

/// The decoder's parts the general way uses, apart from its parse buffers.
pub(super) struct General<'a> {
    pub(super) cols: &'a [Col],
    pub(super) names: &'a Names,
    pub(super) found: &'a mut [Option<(usize, usize)>],
    pub(super) row: &'a mut PlanRowBuilder,
    pub(super) side: &'a mut Vec<u8>,
    pub(super) null_is_absent: bool,
    pub(super) reject_unknown: bool,
}

pub(super) fn general_row(
    d: &mut General<'_>,
    doc: &Doc<'_, '_>,
    meta: &Meta<'_>,
) -> Result<(), RowError> {
    let Some(&Node::Object { len, .. }) = doc.nodes.first() else {
        return Err(DecodeError::Invalid("expected a JSON object".into()).into());
    };
    d.found.fill(None);
    let (mut i, mut s) = (1, 1);
    for _ in 0..len {
        let Some(Node::String(key)) = doc.nodes.get(i) else {
            return Err(DecodeError::Invalid("truncated object".into()).into());
        };
        let (width, span) = widths(doc.nodes.get(i + 1..).unwrap_or_default());
        match d.names.position(key) {
            Some(slot) if d.found[slot].is_some() => {
                return Err(RowError::Duplicate {
                    field: (*key).to_owned(),
                })
            }
            Some(slot) => d.found[slot] = Some((i + 1, s + 2)),
            None if d.reject_unknown => {
                return Err(RowError::Unknown {
                    field: (*key).to_owned(),
                })
            }
            None => {}
        }
        i += 1 + width;
        s += 3 + span;
    }
    d.row.clear();
    for col in d.cols {
        let Source::Field(path) = &col.source else {
            meta_cell(col, meta, doc.payload, d.side, d.row)?;
            continue;
        };
        let top = col.slot.and_then(|slot| d.found[slot]);
        let at = match top {
            Some(at) => descend(doc, at, path.get(1..).unwrap_or_default(), col)?,
            None => None,
        };
        let Some((n, s)) = at else {
            absent(col, d.row)?;
            continue;
        };
        let mut sub = Vec::new();
        let value = match doc.nodes.get(n) {
            Some(Node::String(text)) => Value::String(Cow::Borrowed(text)),
            Some(Node::Static(StaticNode::Null)) => {
                null(col, d.null_is_absent, d.row)?;
                continue;
            }
            Some(Node::Static(x)) => Value::Static(*x),
            Some(Node::Object { .. } | Node::Array { .. }) => {
                // A nested value is parsed again on its own: conversions take
                // values, and the tape holds it only as nodes.
                let (_, span) = widths(doc.nodes.get(n..).unwrap_or_default());
                let pos = |k: usize| doc.structurals.get(k).map(|&p| p as usize);
                let (Some(a), Some(b)) = (pos(s), pos(s + span - 1)) else {
                    return Err(DecodeError::Invalid("truncated value".into()).into());
                };
                sub.extend_from_slice(doc.payload.get(a..=b).unwrap_or_default());
                simd_json::to_borrowed_value(&mut sub)
                    .map_err(|e| DecodeError::Invalid(e.to_string()))?
            }
            None => return Err(DecodeError::Invalid("truncated object".into()).into()),
        };
        let text = match value {
            Value::Static(StaticNode::F64(_)) => number_text(doc.payload, doc.structurals, s),
            _ => None,
        };
        push(col, &value, text, d.row)?;
    }
    Ok(())
}

/// Follows `rest` of a path down from the value at node `at.0`, structural
/// `at.1`: object members by name, array elements by index. `None` when
/// the path leads nowhere (an absent field).
fn descend(
    doc: &Doc<'_, '_>,
    mut at: (usize, usize),
    rest: &[String],
    col: &Col,
) -> Result<Option<(usize, usize)>, RowError> {
    for segment in rest {
        let (n, s) = at;
        let next = match doc.nodes.get(n) {
            Some(&Node::Object { len, .. }) => {
                let (mut i, mut si, mut hit) = (n + 1, s + 1, None);
                for _ in 0..len {
                    let (width, span) = widths(doc.nodes.get(i + 1..).unwrap_or_default());
                    if let Some(Node::String(key)) = doc.nodes.get(i) {
                        if *key == segment.as_str() {
                            if hit.is_some() {
                                return Err(RowError::Duplicate {
                                    field: col.field.clone(),
                                });
                            }
                            hit = Some((i + 1, si + 2));
                        }
                    }
                    i += 1 + width;
                    si += 3 + span;
                }
                hit
            }
            Some(&Node::Array { len, .. }) => match segment.parse::<usize>() {
                Ok(index) if index < len => {
                    let (mut i, mut si) = (n + 1, s + 1);
                    for _ in 0..index {
                        let (width, span) = widths(doc.nodes.get(i..).unwrap_or_default());
                        i += width;
                        si += span + 1;
                    }
                    Some((i, si))
                }
                _ => None,
            },
            _ => None,
        };
        let Some(next) = next else {
            return Ok(None);
        };
        at = next;
    }
    Ok(Some(at))
}

/// How many tape nodes and structural positions the value at `nodes[0]`
/// takes (see `decode::widths`).
fn widths(nodes: &[Node<'_>]) -> (usize, usize) {
    crate::decode::widths(nodes)
}

/// The text of the number whose value starts at structural `v`, if the
/// positions frame one (the caller otherwise prints the parsed value).
fn number_text<'p>(payload: &'p [u8], structurals: &[u32], v: usize) -> Option<&'p str> {
    let at = |k: usize| structurals.get(k).map(|&p| p as usize);
    let (start, end) = (at(v)?, at(v + 1)?);
    if !matches!(payload.get(end), Some(b',' | b'}' | b']')) {
        return None;
    }
    let text = payload.get(start..end)?.trim_ascii_end();
    let number_like = matches!(text.first(), Some(b'-' | b'0'..=b'9'))
        && text
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
    // Checked ASCII, so the conversion cannot fail.
    number_like
        .then(|| std::str::from_utf8(text).ok())
        .flatten()
}
