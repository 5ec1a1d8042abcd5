//! The common cases of [`Conversion::push`] for what the one-pass reader
//! hands over (a plain JSON number's text), without building a value or
//! parsing digits into strings first.
//!
//! Like the reader, it only ever *accepts*: whatever it is not sure of, a
//! refusal included, answers `None` and goes the general way, which decides
//! and words it. So it only needs to be exact on what it accepts, and the
//! tests check exactly that against the general way.

use super::Conversion;
use crate::sql::push_str_literal;

/// A conversion's fast way with numbers, decided once per column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FastNumber {
    Integer {
        min: i64,
        max: i64,
    },
    Decimal {
        room: usize,
        scale: usize,
    },
    /// FLOAT and DOUBLE take the text as written.
    Verbatim,
    /// Text columns quote it.
    Quoted,
    /// Always the general way.
    None,
}

impl FastNumber {
    pub(crate) fn of(conversion: &Conversion) -> FastNumber {
        match conversion {
            Conversion::Integer(r) => FastNumber::Integer {
                min: i64::try_from(r.min).unwrap_or(i64::MIN),
                max: i64::try_from(r.max).unwrap_or(i64::MAX),
            },
            Conversion::Decimal { precision, scale } => FastNumber::Decimal {
                room: precision.saturating_sub(*scale) as usize,
                scale: *scale as usize,
            },
            Conversion::Float { .. } => FastNumber::Verbatim,
            Conversion::Text => FastNumber::Quoted,
            _ => FastNumber::None,
        }
    }

    /// Appends the literal the general way would append for the JSON
    /// number `text` (as `decode`'s one pass accepts them: JSON grammar,
    /// integers of at most 18 digits), or answers `None`, appending nothing.
    pub(crate) fn push(self, text: &str, buf: &mut String) -> Option<()> {
        let b = text.as_bytes();
        // A JSON integer's text is its value's text, but for `-0`.
        let negative_zero = matches!(b, [b'-', b'0']);
        match self {
            FastNumber::Integer { min, max } => {
                let (negative, digits) = match b.split_first() {
                    Some((b'-', rest)) => (true, rest),
                    _ => (false, b),
                };
                if digits.is_empty() || digits.len() > 18 {
                    return None;
                }
                let mut n: i64 = 0;
                for &d in digits {
                    if !d.is_ascii_digit() {
                        return None;
                    }
                    n = n * 10 + i64::from(d - b'0');
                }
                let n = if negative { -n } else { n };
                if n < min || n > max {
                    return None;
                }
                buf.push_str(if negative_zero { "0" } else { text });
            }
            FastNumber::Decimal { room, scale } => {
                if b.iter().any(|&c| c | 0x20 == b'e') {
                    return None;
                }
                // Byte positions rather than `split_once` and `trim_*`,
                // whose character searches cost more than the rest here.
                let negative = b.first() == Some(&b'-');
                let start = usize::from(negative);
                let point = b.iter().position(|&c| c == b'.').unwrap_or(b.len());
                let mut int_start = start;
                while int_start < point && b[int_start] == b'0' {
                    int_start += 1;
                }
                let mut frac_end = b.len();
                while frac_end > point + 1 && b[frac_end - 1] == b'0' {
                    frac_end -= 1;
                }
                let int = text.get(int_start..point)?;
                let frac = text.get((point + 1).min(frac_end)..frac_end)?;
                if frac.len() > scale || int.len() > room {
                    return None;
                }
                if negative && !(int.is_empty() && frac.is_empty()) {
                    buf.push('-');
                }
                buf.push_str(if int.is_empty() { "0" } else { int });
                if !frac.is_empty() {
                    buf.push('.');
                    buf.push_str(frac);
                }
            }
            FastNumber::Verbatim if !negative_zero => buf.push_str(text),
            FastNumber::Quoted if !negative_zero => push_str_literal(buf, text),
            _ => return None,
        }
        Some(())
    }
}

/// [`FastNumber::push`] for `conversion`.
#[cfg(test)]
fn push_number(conversion: &Conversion, text: &str, buf: &mut String) -> Option<()> {
    FastNumber::of(conversion).push(text, buf)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::{integer::IntRange, Conversion};
    use super::*;

    #[test]
    fn what_the_fast_way_accepts_the_general_way_writes_the_same() {
        let conversions = [
            Conversion::Integer(IntRange::new(32, false)),
            Conversion::Integer(IntRange::new(8, true)),
            Conversion::Integer(IntRange::new(64, false)),
            Conversion::Decimal {
                precision: 10,
                scale: 2,
            },
            Conversion::Decimal {
                precision: 5,
                scale: 0,
            },
            Conversion::Decimal {
                precision: 38,
                scale: 10,
            },
            Conversion::Float { double: true },
            Conversion::Text,
            Conversion::Year,
        ];
        let numbers = [
            "0",
            "-0",
            "7",
            "-12",
            "255",
            "256",
            "-1",
            "2147483648",
            "123456789012345678",
            "-123456789012345678",
            "49.99",
            "49.990",
            "-0.0",
            "-0.50",
            "0.5",
            "1.005",
            "12345678.99",
            "123456789.5",
            "99999",
            "100000",
            "1e9",
            "1E+10",
            "-2.5e-9",
            "0.000",
            "10.10",
        ];
        let mut accepted = 0;
        for c in &conversions {
            for n in numbers {
                let mut fast = String::from("x");
                if push_number(c, n, &mut fast).is_none() {
                    assert_eq!(fast, "x", "{c:?} {n}");
                    continue;
                }
                accepted += 1;
                let general = run(c, n).map(|l| format!("x{l}"));
                assert_eq!(general, Ok(fast), "{c:?} {n}");
            }
        }
        assert!(accepted > 60, "{accepted}");
    }
}
