//! The common cases of [`Conversion::push`] for what the one-pass reader
//! hands over (a plain JSON number's text, a string without escapes),
//! without building a value or parsing digits into strings first.
//!
//! Like the reader, it only ever *accepts*: whatever it is not sure of, a
//! refusal included, answers `None` and goes the general way, which decides
//! and words it. So it only needs to be exact on what it accepts, and the
//! tests check exactly that against the general way.

use super::Conversion;
use crate::sql::push_str_literal;

/// Appends the literal the general way would append for the JSON number
/// `text` (as `decode`'s one pass accepts them: JSON grammar, integers of at
/// most 18 digits), or answers `None`, appending nothing.
pub(crate) fn push_number(conversion: &Conversion, text: &str, buf: &mut String) -> Option<()> {
    let integer = !text.contains(['.', 'e', 'E']);
    match conversion {
        Conversion::Integer(range) if integer => {
            let n: i64 = text.parse().ok()?;
            if i128::from(n) < range.min || i128::from(n) > range.max {
                return None;
            }
            buf.push_str(itoa::Buffer::new().format(n));
        }
        Conversion::Decimal { precision, scale } if !text.contains(['e', 'E']) => {
            let (negative, rest) = match text.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, text),
            };
            let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
            let int = int.trim_start_matches('0');
            let frac = frac.trim_end_matches('0');
            let room = precision.saturating_sub(*scale) as usize;
            if frac.len() > *scale as usize || int.len() > room {
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
        // A JSON integer's text is its value's text, but for `-0`.
        Conversion::Float { .. } if text != "-0" => buf.push_str(text),
        Conversion::Text if text != "-0" => push_str_literal(buf, text),
        _ => return None,
    }
    Some(())
}

/// Appends the literal of the JSON string `text` (no escapes) where that is
/// only the text's own literal, or answers `None`.
pub(crate) fn push_str(conversion: &Conversion, text: &str, buf: &mut String) -> Option<()> {
    match conversion {
        Conversion::Text => push_str_literal(buf, text),
        _ => return None,
    }
    Some(())
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
            for s in ["", "abc", "it's", "a\\b", "é"] {
                let mut fast = String::new();
                if push_str(c, s, &mut fast).is_some() {
                    let json = format!("\"{}\"", s.replace('\\', "\\\\"));
                    assert_eq!(run(c, &json), Ok(fast), "{c:?} {s}");
                }
            }
        }
        assert!(accepted > 60, "{accepted}");
    }
}
