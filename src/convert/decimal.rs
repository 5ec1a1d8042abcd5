//! DECIMAL: numbers and numeric strings exactly as written, never through a
//! float. The parts of a decimal number are shared with the integer, bit,
//! year and epoch conversions, which need the same exactness.

use super::{Input, Refused};

/// A decimal number's digits with any exponent folded in: `-1.5e2` is
/// negative, `150`, ``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Digits {
    pub negative: bool,
    /// No leading zeros; empty for a number below one.
    pub int: String,
    /// No trailing zeros.
    pub frac: String,
}

/// Exponents beyond this are refused rather than spelled out in digits.
const MAX_EXPONENT: i64 = 100;

/// Parses `[+-]digits[.digits][e[+-]digits]` (at least one digit), as JSON
/// and SQL write numbers; `None` for anything else.
pub(super) fn parse(text: &str) -> Option<Digits> {
    let b = text.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int = &text[start..i];
    let mut frac = "";
    if b.get(i) == Some(&b'.') {
        i += 1;
        let f = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac = &text[f..i];
    }
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exp: i64 = 0;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let sign = match b.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let e = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if e == i || i - e > 4 {
            return None;
        }
        exp = sign * text[e..i].parse::<i64>().ok()?;
        if exp.abs() > MAX_EXPONENT {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let mut all = String::with_capacity(int.len() + frac.len());
    all.push_str(int);
    all.push_str(frac);
    // The point sits after `point` digits of `all`, which may be outside it.
    let point = int.len() as i64 + exp;
    let (int, frac) = if point <= 0 {
        (String::new(), "0".repeat((-point) as usize) + &all)
    } else if point as usize >= all.len() {
        (
            all.clone() + &"0".repeat(point as usize - all.len()),
            String::new(),
        )
    } else {
        (
            all[..point as usize].to_owned(),
            all[point as usize..].to_owned(),
        )
    };
    Some(Digits {
        negative,
        int: int.trim_start_matches('0').to_owned(),
        frac: frac.trim_end_matches('0').to_owned(),
    })
}

impl Digits {
    pub(super) fn is_zero(&self) -> bool {
        self.int.is_empty() && self.frac.is_empty()
    }

    /// Rounded to `scale` fractional digits, half away from zero (MySQL's
    /// rounding of DECIMAL values).
    pub(super) fn rounded(&self, scale: usize) -> Digits {
        if self.frac.len() <= scale {
            return self.clone();
        }
        let up = self.frac.as_bytes()[scale] >= b'5';
        let mut digits: Vec<u8> = self.int.bytes().chain(self.frac[..scale].bytes()).collect();
        if up {
            let mut k = digits.len();
            loop {
                if k == 0 {
                    digits.insert(0, b'1');
                    break;
                }
                k -= 1;
                if digits[k] == b'9' {
                    digits[k] = b'0';
                } else {
                    digits[k] += 1;
                    break;
                }
            }
        }
        let split = digits.len() - scale;
        let text = String::from_utf8(digits).unwrap_or_default();
        Digits {
            negative: self.negative,
            int: text[..split].trim_start_matches('0').to_owned(),
            frac: text[split..].trim_end_matches('0').to_owned(),
        }
    }

    /// As a SQL exact-value literal.
    pub(super) fn push_to(&self, buf: &mut String) {
        if self.negative && !self.is_zero() {
            buf.push('-');
        }
        buf.push_str(if self.int.is_empty() { "0" } else { &self.int });
        if !self.frac.is_empty() {
            buf.push('.');
            buf.push_str(&self.frac);
        }
    }
}

/// The digits of a JSON number or numeric string.
pub(super) fn digits_of(input: &Input<'_, '_>) -> Option<Digits> {
    match input.number() {
        Some(text) => parse(&text),
        None => parse(input.str()?.trim()),
    }
}

pub(super) fn push(
    precision: u32,
    scale: u32,
    input: &Input<'_, '_>,
    buf: &mut String,
) -> Result<(), Refused> {
    let expected = || format!("a decimal({precision},{scale}) number or numeric string");
    let Some(d) = digits_of(input) else {
        return Err(Refused::expected(expected()));
    };
    let d = d.rounded(scale as usize);
    let room = precision.saturating_sub(scale) as usize;
    if d.int.len() > room {
        return Err(Refused::because(
            expected(),
            format!("at most {room} digit(s) before the point"),
        ));
    }
    d.push_to(buf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;
    use super::*;

    fn dec(p: u32, s: u32) -> Conversion {
        Conversion::Decimal {
            precision: p,
            scale: s,
        }
    }

    #[test]
    fn digits_fold_exponents_and_zeros() {
        let d = |t: &str| parse(t).map(|d| (d.negative, d.int, d.frac));
        assert_eq!(d("-1.5e2"), Some((true, "150".into(), "".into())));
        assert_eq!(d("0.0012"), Some((false, "".into(), "0012".into())));
        assert_eq!(d("12E-3"), Some((false, "".into(), "012".into())));
        assert_eq!(d("007.100"), Some((false, "7".into(), "1".into())));
        assert_eq!(d(".5"), Some((false, "".into(), "5".into())));
        assert_eq!(d("5."), Some((false, "5".into(), "".into())));
        for bad in [
            "", "-", ".", "1e", "1e1000", "12x", "1.2.3", " 1", "0x10", "NaN", "1e+",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn numbers_and_numeric_strings_exactly_as_written() {
        let c = dec(10, 2);
        assert_eq!(run(&c, "49.99").unwrap(), "49.99");
        assert_eq!(run(&c, r#""49.99""#).unwrap(), "49.99");
        assert_eq!(run(&c, "-0.5").unwrap(), "-0.5");
        assert_eq!(run(&c, "12").unwrap(), "12");
        assert_eq!(run(&c, "1.5e3").unwrap(), "1500");
        // The nearest double is 0.125, which would round to 0.13.
        assert_eq!(run(&c, "0.12499999999999999999").unwrap(), "0.12");
        assert_eq!(run(&c, "-0.001").unwrap(), "0");
    }

    #[test]
    fn fractions_round_half_away_from_zero_as_mysql_does() {
        let c = dec(10, 2);
        assert_eq!(run(&c, "1.005").unwrap(), "1.01");
        assert_eq!(run(&c, "-1.005").unwrap(), "-1.01");
        assert_eq!(run(&c, "1.004").unwrap(), "1");
        assert_eq!(run(&c, "99999999.994").unwrap(), "99999999.99");
        // Rounding up carries into a digit the column does not have.
        assert!(run(&c, "99999999.995").is_err());
    }

    #[test]
    fn thirty_eight_digits_and_the_integer_part_limit() {
        let c = dec(38, 0);
        let max = "9".repeat(38);
        assert_eq!(run(&c, &format!("\"{max}\"")).unwrap(), max);
        assert_eq!(run(&c, &format!("\"-{max}\"")).unwrap(), format!("-{max}"));
        assert!(run(&c, &format!("\"1{max}\"")).is_err());
        let c = dec(18, 6);
        assert_eq!(
            run(&c, r#""-123456789012.123456""#).unwrap(),
            "-123456789012.123456"
        );
        let err = run(&c, r#""1234567890123.5""#).unwrap_err();
        assert!(err.detail.unwrap().contains("12 digit"));
    }

    #[test]
    fn other_values_are_refused() {
        let c = dec(10, 2);
        for bad in ["true", r#""abc""#, "[1]", r#"{"a":1}"#, r#""""#, r#""1,5""#] {
            assert!(run(&c, bad).is_err(), "{bad}");
        }
    }
}
