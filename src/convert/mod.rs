//! JSON values into SQL literals, one small unit per column type class.
//!
//! A route's plan picks each column's [`Conversion`] once, from the
//! column's type; per message, [`apply`] turns a field's value into the
//! literal appended to the statement, or a refusal that names the field,
//! the column, the value and what the column takes. Each refusal is meant
//! to become a dead letter; nothing is rounded or cut that MySQL's strict
//! mode would refuse, and what strict mode rounds (DECIMAL fractions,
//! fractional seconds) is rounded here the same way, so MariaDB and MySQL
//! store the same value.
//!
//! Values arrive as simd-json's borrowed values, which keep a float only as
//! an `f64`; callers that still have the number's JSON text pass it beside
//! the value, and numbers then reach MySQL exactly as written.

use std::fmt;

use simd_json::{BorrowedValue as Value, StaticNode};

use crate::config::{Encoding, EpochUnit};
use crate::table::{Column, TypeClass};

mod binary;
mod bit;
mod decimal;
mod enum_set;
mod fast;
mod float;
mod integer;
mod json;
mod string;
mod temporal;
mod year;

pub(crate) use fast::FastNumber;
pub(crate) use temporal::{Temporal, TemporalKind};

/// How one column is fed, decided once per plan.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Conversion {
    Integer(integer::IntRange),
    Decimal { precision: u32, scale: u32 },
    Float { double: bool },
    Text,
    Binary { base64: bool },
    Temporal(Temporal),
    Year,
    Json,
    Enum(enum_set::Members),
    Set(enum_set::Members),
    Bit { bits: u32 },
}

/// Why a column cannot be fed at all (the plan turns it into its error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unfeedable(pub String);

impl Conversion {
    /// The conversion for `column`, with the column entry's `encoding` and
    /// the route's (or entry's) time settings.
    pub(crate) fn for_column(
        column: &Column,
        encoding: Option<Encoding>,
        zone: &jiff::tz::TimeZone,
        epoch: EpochUnit,
    ) -> Result<Conversion, Unfeedable> {
        if encoding.is_some() && column.class != TypeClass::Binary {
            return Err(Unfeedable(format!(
                "encoding = \"base64\" applies to binary columns, and `{}` is {}",
                column.name, column.column_type
            )));
        }
        let temporal = |kind| {
            Conversion::Temporal(Temporal {
                kind,
                fsp: column.fsp.unwrap_or(0).min(6),
                zone: zone.clone(),
                epoch,
            })
        };
        Ok(match column.class {
            TypeClass::Integer { bits } => {
                Conversion::Integer(integer::IntRange::new(bits, column.unsigned))
            }
            TypeClass::Decimal => Conversion::Decimal {
                precision: column.precision.unwrap_or(10),
                scale: column.scale.unwrap_or(0),
            },
            TypeClass::Float => Conversion::Float { double: false },
            TypeClass::Double => Conversion::Float { double: true },
            TypeClass::Text => Conversion::Text,
            TypeClass::Binary => Conversion::Binary {
                base64: encoding == Some(Encoding::Base64),
            },
            TypeClass::Date => temporal(TemporalKind::Date),
            TypeClass::DateTime => temporal(TemporalKind::DateTime),
            TypeClass::Timestamp => temporal(TemporalKind::Timestamp),
            TypeClass::Time => temporal(TemporalKind::Time),
            TypeClass::Year => Conversion::Year,
            TypeClass::Json => Conversion::Json,
            TypeClass::Enum => Conversion::Enum(enum_set::Members::of(column)),
            TypeClass::Set => Conversion::Set(enum_set::Members::of(column)),
            TypeClass::Bit => Conversion::Bit {
                bits: column.precision.unwrap_or(1).clamp(1, 64),
            },
            TypeClass::Unsupported => {
                return Err(Unfeedable(format!(
                    "`{}` is {}, which the sink cannot write",
                    column.name, column.column_type
                )))
            }
        })
    }

    /// Appends `value` as this column's literal. `number_text` is the JSON
    /// text of a number value, when the caller has it.
    pub(crate) fn push(
        &self,
        value: &Value<'_>,
        number_text: Option<&str>,
        buf: &mut String,
    ) -> Result<(), Refused> {
        if let Value::Static(StaticNode::Null) = value {
            buf.push_str("NULL");
            return Ok(());
        }
        let input = Input { value, number_text };
        match self {
            Conversion::Integer(range) => integer::push(range, &input, buf),
            Conversion::Decimal { precision, scale } => {
                decimal::push(*precision, *scale, &input, buf)
            }
            Conversion::Float { .. } => float::push(&input, buf),
            Conversion::Text => string::push(&input, buf),
            Conversion::Binary { base64 } => binary::push(*base64, &input, buf),
            Conversion::Temporal(t) => temporal::push(t, &input, buf),
            Conversion::Year => year::push(&input, buf),
            Conversion::Json => json::push(&input, buf),
            Conversion::Enum(m) => enum_set::push_enum(m, &input, buf),
            Conversion::Set(m) => enum_set::push_set(m, &input, buf),
            Conversion::Bit { bits } => bit::push(*bits, &input, buf),
        }
    }
}

impl fmt::Display for Conversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conversion::Integer(r) if r.min == 0 => f.write_str("unsigned integer"),
            Conversion::Integer(_) => f.write_str("integer"),
            Conversion::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            Conversion::Float { double: false } => f.write_str("float"),
            Conversion::Float { double: true } => f.write_str("double"),
            Conversion::Text => f.write_str("string"),
            Conversion::Binary { base64: false } => f.write_str("binary"),
            Conversion::Binary { base64: true } => f.write_str("binary from base64"),
            Conversion::Temporal(t) => t.fmt(f),
            Conversion::Year => f.write_str("year"),
            Conversion::Json => f.write_str("json"),
            Conversion::Enum(m) => write!(f, "enum of {}", m.names.len()),
            Conversion::Set(m) => write!(f, "set of {}", m.names.len()),
            Conversion::Bit { bits } => write!(f, "bit({bits})"),
        }
    }
}

/// One value with the JSON text it had, when it is a number and the
/// caller kept the text.
pub(crate) struct Input<'a, 'v> {
    pub value: &'a Value<'v>,
    pub number_text: Option<&'a str>,
}

impl Input<'_, '_> {
    /// A number's text: as written when known, otherwise its shortest
    /// round-trip form.
    fn number(&self) -> Option<NumberText<'_>> {
        match self.value {
            Value::Static(StaticNode::I64(i)) => Some(NumberText::Owned(i.to_string())),
            Value::Static(StaticNode::U64(u)) => Some(NumberText::Owned(u.to_string())),
            Value::Static(StaticNode::F64(x)) if x.is_finite() => Some(match self.number_text {
                Some(t) => NumberText::Borrowed(t),
                None => NumberText::Owned(ryu::Buffer::new().format_finite(*x).to_owned()),
            }),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    fn bool(&self) -> Option<bool> {
        match self.value {
            Value::Static(StaticNode::Bool(b)) => Some(*b),
            _ => None,
        }
    }
}

enum NumberText<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl std::ops::Deref for NumberText<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            NumberText::Borrowed(s) => s,
            NumberText::Owned(s) => s,
        }
    }
}

/// A value a conversion does not take: what it expected, and why not when
/// the value looked right but did not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub expected: String,
    pub detail: Option<String>,
}

impl Refused {
    fn expected(what: impl Into<String>) -> Refused {
        Refused {
            expected: what.into(),
            detail: None,
        }
    }

    fn because(what: impl Into<String>, detail: impl Into<String>) -> Refused {
        Refused {
            expected: what.into(),
            detail: Some(detail.into()),
        }
    }
}

/// A value refused for a column, worded for its dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "field `{field}` cannot feed column `{column}`: {value} is not {expected}{}; fix the \
     producer, or map the column to another field",
    detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
)]
pub struct ConvertError {
    pub field: String,
    pub column: String,
    /// The value as JSON, cut to a readable length.
    pub value: String,
    pub expected: String,
    pub detail: Option<String>,
}

/// Appends the literal of `value` for `column`, fed from `field`.
pub(crate) fn apply(
    conversion: &Conversion,
    field: &str,
    column: &str,
    value: &Value<'_>,
    number_text: Option<&str>,
    buf: &mut String,
) -> Result<(), ConvertError> {
    let mark = buf.len();
    conversion.push(value, number_text, buf).map_err(|refused| {
        buf.truncate(mark);
        ConvertError {
            field: field.into(),
            column: column.into(),
            value: shown(value, number_text),
            expected: refused.expected,
            detail: refused.detail,
        }
    })
}

/// The literal `column` gets from the JSON document `json`, as a route
/// with `time_zone`, `epoch` and `encoding` would write it; the refusal's
/// message otherwise. For tests against a real server, until the data path
/// calls [`apply`] itself.
pub fn sql_literal(
    column: &Column,
    encoding: Option<Encoding>,
    time_zone: &str,
    epoch: EpochUnit,
    json: &str,
) -> Result<String, String> {
    let zone = crate::config::parse_time_zone(time_zone)?;
    let conversion = Conversion::for_column(column, encoding, &zone, epoch).map_err(|u| u.0)?;
    let mut bytes = json.as_bytes().to_vec();
    let value = simd_json::to_borrowed_value(&mut bytes).map_err(|e| e.to_string())?;
    // A bare number's text is the whole document.
    let text = matches!(value, Value::Static(StaticNode::F64(_))).then_some(json.trim());
    let mut buf = String::new();
    apply(&conversion, "value", &column.name, &value, text, &mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// At most this many characters of a refused value are quoted.
const SHOWN_CHARS: usize = 80;

fn shown(value: &Value<'_>, number_text: Option<&str>) -> String {
    use simd_json::prelude::Writable;
    let text = match (value, number_text) {
        (Value::Static(StaticNode::F64(_)), Some(t)) => t.to_owned(),
        _ => value.encode(),
    };
    if text.chars().count() <= SHOWN_CHARS {
        return text;
    }
    let cut: String = text.chars().take(SHOWN_CHARS).collect();
    format!("{cut}…")
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Runs `conversion` on the JSON `json`; the literal or the refusal.
    pub(crate) fn run(conversion: &Conversion, json: &str) -> Result<String, Refused> {
        let mut bytes = json.as_bytes().to_vec();
        let value = simd_json::to_borrowed_value(&mut bytes).expect("test JSON");
        // A bare number's text is the whole document, as a decoder would
        // have kept it.
        let text = matches!(value, Value::Static(StaticNode::F64(_))).then_some(json.trim());
        let mut buf = String::new();
        conversion.push(&value, text, &mut buf).map(|()| buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_field_column_value_and_type_and_leaves_the_buffer() {
        let mut bytes = br#""12x""#.to_vec();
        let value = simd_json::to_borrowed_value(&mut bytes).unwrap();
        let mut buf = String::from("(1,");
        let conv = Conversion::Integer(integer::IntRange::new(32, false));
        let err = apply(&conv, "qty", "quantity", &value, None, &mut buf).unwrap_err();
        assert_eq!(buf, "(1,");
        let msg = err.to_string();
        for part in ["`qty`", "`quantity`", "\"12x\"", "an integer"] {
            assert!(msg.contains(part), "{msg}");
        }
    }

    #[test]
    fn null_is_null_for_every_conversion() {
        for conv in [
            Conversion::Text,
            Conversion::Json,
            Conversion::Year,
            Conversion::Decimal {
                precision: 10,
                scale: 2,
            },
        ] {
            assert_eq!(test_support::run(&conv, "null").unwrap(), "NULL");
        }
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = format!("\"{}\"", "x".repeat(500));
        let mut bytes = long.into_bytes();
        let value = simd_json::to_borrowed_value(&mut bytes).unwrap();
        let s = shown(&value, None);
        assert!(
            s.chars().count() <= SHOWN_CHARS + 1 && s.ends_with('…'),
            "{s}"
        );
    }
}
