//! Any JSON message into a row of its route's table, by the route's plan:
//! per written column a literal (through the column's conversion),
//! `DEFAULT`, or nothing, or a refusal naming field, column, value and
//! expected type (the dead letter's reason).
//!
//! The same two ways as the orders decoder: a flat message whose columns
//! all come from top-level fields is read in one pass (`flat::members`),
//! with the common conversions done on the slices it finds
//! (`convert::push_number`); nested paths, escapes, nested values and
//! anything else the pass is unsure of go through simd-json's tape, whose
//! structural positions give each number's text, so numbers still reach
//! the statement as written. Nothing here talks to MySQL: the row is data
//! for the statement builder (`sql::by_plan`).

use std::borrow::Cow;

use simd_json::{BorrowedValue as Value, StaticNode, Tape};

use super::cells::{PlanRow, PlanRowBuilder};
use super::flat::{self, Scalar};
use super::DecodeError;
use crate::config::{Config, EpochUnit, Source, UnknownFields};
use crate::convert::{Conversion, ConvertError, FastNumber};
use crate::plan::{Absent, Feed, Plan};
use crate::sql::{PlanShape, WriteMode};
use crate::table::TableDesc;

/// A message's Kafka side, which metadata sources read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, when the message has a timestamp.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    /// Names and values in the message's order; of repeated names the last
    /// counts, as Kafka Connect's `lastWithName` does.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Why a message is not a row. Every variant names what a dead letter
/// needs to say.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error(transparent)]
    Payload(#[from] DecodeError),
    #[error("field `{field}` is missing, and column `{column}` needs {expected}")]
    Missing {
        field: String,
        column: String,
        expected: String,
    },
    #[error("field `{field}` is null, and key column `{column}` needs {expected}")]
    NullKey {
        field: String,
        column: String,
        expected: String,
    },
    #[error("field `{field}` appears twice")]
    Duplicate { field: String },
    #[error("field `{field}` feeds no column (unknown_fields = \"reject\")")]
    Unknown { field: String },
    #[error("column `{column}` is fed from the Kafka key, which {reason}")]
    Key { column: String, reason: String },
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

/// One written column, as the decoder follows it.
#[derive(Debug)]
pub(super) struct Col {
    pub(super) column: String,
    pub(super) source: Source,
    /// The source as errors name it: `contact.email`, `@topic`.
    pub(super) field: String,
    pub(super) conversion: Conversion,
    /// The conversion's way with numbers the one pass found.
    fast: FastNumber,
    pub(super) when_absent: Absent,
    pub(super) key: bool,
    /// The slot of a field's top-level name in `Shape::names`.
    pub(super) slot: Option<usize>,
}

/// What a member's value was, as positions in the payload (the found
/// values outlive no message, but the decoder does).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    No,
    Str(u32, u32),
    /// Bounds, then the point's place in the text or `NUM_INTEGER` or
    /// `NUM_EXPONENT`.
    Num(u32, u32, u32),
    Null,
    Bool(bool),
}

const NUM_INTEGER: u32 = u32::MAX;
const NUM_EXPONENT: u32 = u32::MAX - 1;

/// Records what the one pass finds, by slot.
struct Visit<'d> {
    names: &'d Names,
    seen: &'d mut [Seen],
    reject: bool,
    /// The payload's address: values are kept as positions in it.
    base: usize,
}

impl<'a> flat::Members<'a> for Visit<'_> {
    #[inline(always)]
    fn known(&self, rest: &[u8]) -> Option<(usize, usize)> {
        self.names.known(rest)
    }

    #[inline(always)]
    fn member(&mut self, slot: Option<usize>, value: Scalar<'a>) -> Option<()> {
        let Some(slot) = slot else {
            return (!self.reject).then_some(());
        };
        let entry = self.seen.get_mut(slot)?;
        if !matches!(entry, Seen::No) {
            return None;
        }
        let base = self.base;
        let at = |s: &str| {
            let a = (s.as_ptr() as usize - base) as u32;
            (a, a + s.len() as u32)
        };
        *entry = match value {
            Scalar::Str(s) => {
                let (a, b) = at(s);
                Seen::Str(a, b)
            }
            Scalar::Num(s, point, exponent) => {
                let (a, b) = at(s);
                // A number of the one pass is at most 32 bytes long.
                let shape = match (point, exponent) {
                    (_, true) => NUM_EXPONENT,
                    (Some(p), false) => p as u32,
                    (None, false) => NUM_INTEGER,
                };
                Seen::Num(a, b, shape)
            }
            Scalar::Null => Seen::Null,
            Scalar::Bool(b) => Seen::Bool(b),
        };
        Some(())
    }
}

/// Decodes payloads by one plan, reusing its buffers across messages.
pub struct PlanDecoder {
    cols: Vec<Col>,
    /// Distinct top-level names of the field sources.
    names: Names,
    /// Whether every field source is a top-level name (the one pass can
    /// read the message).
    flat: bool,
    reject_unknown: bool,
    null_is_absent: bool,
    shape: PlanShape,
    seen: Vec<Seen>,
    /// Per slot: the tape node and structural index of the member's value.
    found: Vec<Option<(usize, usize)>>,
    row: PlanRowBuilder,
    scratch: Vec<u8>,
    side: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: Option<Tape<'static>>,
}

impl PlanDecoder {
    pub(crate) fn new(plan: &Plan) -> PlanDecoder {
        let mut names: Vec<Box<str>> = Vec::new();
        let mut cols = Vec::new();
        for c in &plan.columns {
            let Feed::From {
                source,
                conversion,
                when_absent,
            } = &c.feed
            else {
                continue;
            };
            let slot = match source {
                Source::Field(path) => path.first().map(|top| {
                    names.iter().position(|n| **n == **top).unwrap_or_else(|| {
                        names.push(top.as_str().into());
                        names.len() - 1
                    })
                }),
                _ => None,
            };
            // The message timestamp is in milliseconds whatever unit the
            // route's epoch numbers are in.
            let conversion = match (source, conversion) {
                (Source::Timestamp, Conversion::Temporal(t)) => {
                    let mut t = t.clone();
                    t.epoch = EpochUnit::Millis;
                    Conversion::Temporal(t)
                }
                _ => conversion.clone(),
            };
            cols.push(Col {
                column: c.column.clone(),
                source: source.clone(),
                field: source.to_string(),
                fast: FastNumber::of(&conversion),
                conversion,
                when_absent: *when_absent,
                key: plan.key.iter().any(|k| k.eq_ignore_ascii_case(&c.column)),
                slot,
            });
        }
        // The one pass compares names with the payload's raw bytes, which
        // is right only for names JSON writes without escapes.
        let flat = cols
            .iter()
            .all(|c| !matches!(&c.source, Source::Field(p) if p.len() != 1))
            && names
                .iter()
                .all(|n| !n.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\'));
        let shape = PlanShape {
            table: plan.table.clone(),
            columns: cols.iter().map(|c| c.column.clone()).collect(),
            key: (0..cols.len()).filter(|&k| cols[k].key).collect(),
            mode: match plan.mode {
                crate::config::Mode::Upsert => WriteMode::Upsert,
                crate::config::Mode::Insert => WriteMode::Insert,
                crate::config::Mode::Update => WriteMode::Update,
            },
        };
        PlanDecoder {
            seen: vec![Seen::No; names.len()],
            found: vec![None; names.len()],
            names: Names::new(names),
            cols,
            flat,
            reject_unknown: plan.unknown_fields == UnknownFields::Reject,
            null_is_absent: plan.null_is_absent,
            shape,
            row: PlanRowBuilder::default(),
            scratch: Vec::with_capacity(4096),
            side: Vec::new(),
            buffers: simd_json::Buffers::new(4096),
            tape: None,
        }
    }

    /// The decoder of the seed's orders route (no `[[routes]]`), planned
    /// against `table` (`TableDesc::seed_orders` or the server's
    /// description); the plan's refusal otherwise.
    pub fn for_default_route(config: &Config, table: &TableDesc) -> Result<PlanDecoder, String> {
        crate::plan::compile_default(&config.default_route(), table)
            .map(|p| PlanDecoder::new(&p))
            .map_err(|e| e.to_string())
    }

    /// The decoder of `[[routes]]` entry `index`, planned against `table`.
    pub fn for_route(
        config: &Config,
        index: usize,
        table: &TableDesc,
    ) -> Result<PlanDecoder, String> {
        let route = config
            .routes
            .get(index)
            .ok_or_else(|| format!("there is no routes[{index}]"))?;
        crate::plan::compile(route, index, table)
            .map(|p| PlanDecoder::new(&p))
            .map_err(|e| e.to_string())
    }

    /// The statement builder's view of the rows this decoder makes: their
    /// columns in cell order and which of them are the key.
    pub fn shape(&self) -> &PlanShape {
        &self.shape
    }

    /// The row of `payload`; with `keep`, the row also keeps the message's
    /// key and payload for its dead letter.
    pub fn decode(
        &mut self,
        payload: &[u8],
        meta: &Meta<'_>,
        keep: bool,
    ) -> Result<PlanRow, RowError> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Err(DecodeError::Empty.into());
        }
        let raw = keep.then_some((meta.key, payload));
        if self.flat && self.read_flat(payload) {
            let (seen, row, side) = (&self.seen, &mut self.row, &mut self.side);
            row.clear();
            for col in &self.cols {
                let found = match col.slot {
                    Some(s) => seen.get(s).copied().unwrap_or(Seen::No),
                    None => Seen::No,
                };
                match found {
                    Seen::No if col.slot.is_some() => absent(col, row)?,
                    Seen::No => meta_cell(col, meta, payload, side, row)?,
                    Seen::Null => null(col, self.null_is_absent, row)?,
                    // A text column's string, as `push` would keep it.
                    Seen::Str(a, b) if col.fast == FastNumber::Quoted => row.text_in_source(a, b),
                    Seen::Str(a, b) => {
                        let v = Value::String(Cow::Borrowed(slice(payload, a, b)));
                        push(col, &v, None, row)?;
                    }
                    Seen::Num(a, b, shape) => {
                        let text = slice(payload, a, b);
                        let point = match shape {
                            NUM_EXPONENT => Err(()),
                            NUM_INTEGER => Ok(None),
                            p => Ok(Some(p as usize)),
                        };
                        let fast = point.ok().and_then(|p| col.fast.range(text, p));
                        if let Some(r) = fast {
                            row.value_in_source(a + r.start as u32, a + r.end as u32);
                        } else if col.fast.push(text, row.text()).is_some() {
                            row.end_value();
                        } else {
                            let (v, t) = number_value(text);
                            push(col, &v, t, row)?;
                        }
                    }
                    Seen::Bool(b) => {
                        let v = Value::Static(StaticNode::Bool(b));
                        push(col, &v, None, row)?;
                    }
                }
            }
            return Ok(row.finish(payload, raw));
        }
        self.decode_general(payload, meta, raw)
    }

    /// A tombstone's row: only its key columns, from the Kafka key (its
    /// text for a one-column key, a JSON object's members named after the
    /// columns for a composite one), every other cell absent.
    pub fn tombstone(&mut self, meta: &Meta<'_>) -> Result<PlanRow, RowError> {
        let Some(key) = meta.key else {
            let col = self.cols.iter().find(|c| c.key);
            return Err(RowError::Key {
                column: col.map(|c| c.column.clone()).unwrap_or_default(),
                reason: "the tombstone does not have".into(),
            });
        };
        self.row.clear();
        let composite = self.shape.key.len() > 1;
        self.side.clear();
        self.side.extend_from_slice(key);
        let doc = if composite {
            Some(
                simd_json::to_borrowed_value(&mut self.side).map_err(|e| RowError::Key {
                    column: self.shape.key_names(),
                    reason: format!("is not a JSON object ({e})"),
                })?,
            )
        } else {
            None
        };
        for col in &self.cols {
            if !col.key {
                self.row.push_absent();
                continue;
            }
            let member;
            let value = match &doc {
                Some(Value::Object(o)) => {
                    member = o.get(col.column.as_str()).ok_or_else(|| RowError::Key {
                        column: col.column.clone(),
                        reason: format!("has no member `{}`", col.column),
                    })?;
                    Cow::Borrowed(member)
                }
                Some(_) => {
                    return Err(RowError::Key {
                        column: col.column.clone(),
                        reason: "is not a JSON object".into(),
                    })
                }
                None => Cow::Owned(Value::String(Cow::Borrowed(key_text(col, key)?))),
            };
            if is_null(&value) {
                return Err(null_key(col));
            }
            push(col, &value, None, &mut self.row)?;
        }
        Ok(self.row.finish(&[], None))
    }

    /// The one pass: fills `seen`, or answers false for simd-json's way.
    fn read_flat(&mut self, payload: &[u8]) -> bool {
        self.seen.fill(Seen::No);
        let mut visit = Visit {
            names: &self.names,
            seen: &mut self.seen,
            reject: self.reject_unknown,
            base: payload.as_ptr() as usize,
        };
        flat::members(payload, &mut visit).is_some()
    }

    /// simd-json's way, for whatever the one pass does not accept.
    fn decode_general(
        &mut self,
        payload: &[u8],
        meta: &Meta<'_>,
        raw: Option<(Option<&[u8]>, &[u8])>,
    ) -> Result<PlanRow, RowError> {
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        self.scratch
            .resize(payload.len() + simd_json::INPUT_PADDING, b' ');
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        let result = match simd_json::fill_tape_padded(
            &mut self.scratch,
            payload.len(),
            &mut self.buffers,
            &mut tape,
        ) {
            Ok(()) => {
                let doc = Doc {
                    nodes: &tape.0,
                    payload,
                    structurals: self.buffers.structural_indexes(),
                };
                let mut g = General {
                    cols: &self.cols,
                    names: &self.names,
                    found: &mut self.found,
                    row: &mut self.row,
                    side: &mut self.side,
                    null_is_absent: self.null_is_absent,
                    reject_unknown: self.reject_unknown,
                };
                general_row(&mut g, &doc, meta).map(|()| self.row.finish(payload, raw))
            }
            Err(e) => Err(DecodeError::Invalid(e.to_string()).into()),
        };
        self.tape = Some(tape.reset());
        result
    }
}

mod cell;
mod general;
mod meta;
mod names;

use cell::{absent, is_null, key_text, null, null_key, number_value, push, slice};
use general::{general_row, Doc, General};
use meta::meta_cell;
use names::Names;

#[cfg(test)]
mod tests;
