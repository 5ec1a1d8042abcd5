//! TINYINT … BIGINT: JSON integers, numeric strings and `true`/`false`,
//! checked against the column's range. A fraction is refused rather than
//! rounded: `2.5` items are not a count of two or three.

use super::decimal::{digits_of, Digits};
use super::{Input, Refused};

/// The values a column of some width and signedness holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntRange {
    pub min: i128,
    pub max: i128,
}

impl IntRange {
    pub(crate) fn new(bits: u8, unsigned: bool) -> IntRange {
        let bits = u32::from(bits.clamp(8, 64));
        if unsigned {
            IntRange {
                min: 0,
                max: (1i128 << bits) - 1,
            }
        } else {
            IntRange {
                min: -(1i128 << (bits - 1)),
                max: (1i128 << (bits - 1)) - 1,
            }
        }
    }
}

/// The whole number `d` is, if it is one that fits in an `i128`.
pub(super) fn whole(d: &Digits) -> Option<i128> {
    if !d.frac.is_empty() || d.int.len() > 38 {
        return None;
    }
    let magnitude: i128 = if d.int.is_empty() {
        0
    } else {
        d.int.parse().ok()?
    };
    Some(if d.negative { -magnitude } else { magnitude })
}

pub(super) fn push(
    range: &IntRange,
    input: &Input<'_, '_>,
    buf: &mut String,
) -> Result<(), Refused> {
    let expected = || format!("an integer from {} to {}", range.min, range.max);
    let n = match input.bool() {
        Some(b) => i128::from(b),
        None => {
            let d = digits_of(input).ok_or_else(|| Refused::expected(expected()))?;
            if !d.frac.is_empty() {
                return Err(Refused::because(
                    expected(),
                    "a whole number is needed; fractions are not rounded",
                ));
            }
            whole(&d).ok_or_else(|| Refused::because(expected(), "out of the column's range"))?
        }
    };
    if n < range.min || n > range.max {
        return Err(Refused::because(expected(), "out of the column's range"));
    }
    buf.push_str(&n.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;
    use super::*;

    fn int(bits: u8, unsigned: bool) -> Conversion {
        Conversion::Integer(IntRange::new(bits, unsigned))
    }

    #[test]
    fn ranges_by_width_and_sign() {
        assert_eq!(
            IntRange::new(8, false),
            IntRange {
                min: -128,
                max: 127
            }
        );
        assert_eq!(IntRange::new(8, true), IntRange { min: 0, max: 255 });
        assert_eq!(IntRange::new(24, false).max, 8_388_607);
        assert_eq!(IntRange::new(64, true).max, u64::MAX as i128);
    }

    #[test]
    fn integers_numeric_strings_and_booleans() {
        let c = int(32, false);
        assert_eq!(run(&c, "5").unwrap(), "5");
        assert_eq!(run(&c, "-2147483648").unwrap(), "-2147483648");
        assert_eq!(run(&c, r#""42""#).unwrap(), "42");
        assert_eq!(run(&c, r#"" -7 ""#).unwrap(), "-7");
        assert_eq!(run(&c, "true").unwrap(), "1");
        assert_eq!(run(&c, "false").unwrap(), "0");
        assert_eq!(run(&c, "5.0").unwrap(), "5");
        assert_eq!(run(&c, "1e3").unwrap(), "1000");
    }

    #[test]
    fn edges_of_the_range() {
        assert!(run(&int(32, false), "2147483648").is_err());
        assert!(run(&int(8, true), "-1").is_err());
        assert_eq!(run(&int(8, true), "255").unwrap(), "255");
        assert!(run(&int(8, true), "256").is_err());
        assert_eq!(
            run(&int(64, true), "18446744073709551615").unwrap(),
            "18446744073709551615"
        );
        assert_eq!(
            run(&int(64, false), r#""-9223372036854775808""#).unwrap(),
            "-9223372036854775808"
        );
        assert!(run(&int(64, false), r#""9223372036854775808""#).is_err());
    }

    #[test]
    fn fractions_and_other_values_are_refused() {
        let c = int(32, false);
        let err = run(&c, "2.5").unwrap_err();
        assert!(err.detail.unwrap().contains("not rounded"));
        for bad in [r#""12x""#, r#""""#, "[1]", r#"{"a":1}"#, r#""1e1000""#] {
            assert!(run(&c, bad).is_err(), "{bad}");
        }
        let err = run(&c, "1e40").unwrap_err();
        assert!(err.detail.unwrap().contains("range"));
    }
}
