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
    /// `safe`: numbers of at most this many digits always fit.
    Integer {
        min: i64,
        max: i64,
        safe: usize,
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
            Conversion::Integer(r) => {
                let (min, max) = (
                    i64::try_from(r.min).unwrap_or(i64::MIN),
                    i64::try_from(r.max).unwrap_or(i64::MAX),
                );
                // The most digits whose every number lies in the range.
                let (mut safe, mut top) = (0, 9i64);
                while safe < 18 && top <= max && -top >= min {
                    safe += 1;
                    top = top.saturating_mul(10).saturating_add(9);
                }
                FastNumber::Integer { min, max, safe }
            }
            Conversion::Decimal { precision, scale } => FastNumber::Decimal {
                room: precision.saturating_sub(*scale) as usize,
                scale: *scale as usize,
            },
            Conversion::Float { .. } => FastNumber::Verbatim,
            Conversion::Text => FastNumber::Quoted,
            _ => FastNumber::None,
        }
    }

    /// Where in the JSON number `text` (as `decode`'s one pass accepts
    /// them: JSON grammar, integers of at most 18 digits, no exponent;
    /// `point` where its `.` is, which the pass found) the literal the
    /// general way would write is: numbers that fit are written as they
    /// came, but for zeros the general way drops (`-0`, `12.50`). `None`
    /// where the literal is not a part of the text, or the general way
    /// must decide.
    #[inline]
    pub(crate) fn range(self, text: &str, point: Option<usize>) -> Option<std::ops::Range<usize>> {
        let b = text.as_bytes();
        let negative = b.first() == Some(&b'-');
        let start = usize::from(negative);
        match self {
            FastNumber::Integer { min, max, safe } => {
                if point.is_some() {
                    return None;
                }
                let digits = b.get(start..)?;
                if digits.is_empty() || digits.len() > 18 {
                    return None;
                }
                let zero = digits == b"0";
                if digits.len() > safe {
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
                }
                // `-0` is written `0`.
                Some(if zero {
                    b.len() - 1..b.len()
                } else {
                    0..b.len()
                })
            }
            FastNumber::Decimal { room, scale } => {
                let point = point.unwrap_or(b.len());
                let mut int_start = start;
                while int_start < point && b[int_start] == b'0' {
                    int_start += 1;
                }
                let mut frac_end = b.len();
                while frac_end > point + 1 && b[frac_end - 1] == b'0' {
                    frac_end -= 1;
                }
                let frac = frac_end.saturating_sub(point + 1);
                if frac > scale || point - int_start > room {
                    return None;
                }
                // An empty integer part is written `0`, which JSON puts
                // right before the point.
                let mut first = if int_start == point {
                    point.checked_sub(1)?
                } else {
                    int_start
                };
                if b.get(first) != Some(&b'0') && int_start == point {
                    return None;
                }
                let zero = int_start == point && frac == 0;
                if negative && !zero {
                    first = first.checked_sub(1)?;
                    if b.get(first) != Some(&b'-') {
                        return None;
                    }
                }
                Some(first..if frac == 0 { point } else { frac_end })
            }
            FastNumber::Verbatim if !matches!(b, [b'-', b'0']) => Some(0..b.len()),
            _ => None,
        }
    }

    /// Appends the literal the general way would append for the JSON
    /// number `text`, or answers `None`, appending nothing.
    #[inline]
    pub(crate) fn push(self, text: &str, buf: &mut String) -> Option<()> {
        if self == FastNumber::Quoted && !matches!(text.as_bytes(), [b'-', b'0']) {
            push_str_literal(buf, text);
            return Some(());
        }
        let b = text.as_bytes();
        if b.iter().any(|&c| c | 0x20 == b'e') {
            return None;
        }
        let point = b.iter().position(|&c| c == b'.');
        buf.push_str(text.get(self.range(text, point)?)?);
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
            Conversion::Integer(IntRange::new(8, false)),
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
            "99",
            "-99",
            "127",
            "-128",
            "128",
            "-129",
            "999",
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
