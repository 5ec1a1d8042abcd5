//! YEAR: 1901 to 2155, or 0, as a number or numeric string. Two-digit
//! years are refused rather than guessed into a century.

use super::decimal::digits_of;
use super::integer::whole;
use super::{Input, Refused};

pub(super) fn push(input: &Input<'_, '_>, buf: &mut String) -> Result<(), Refused> {
    const EXPECTED: &str = "a year from 1901 to 2155 (or 0)";
    let n = digits_of(input)
        .as_ref()
        .and_then(whole)
        .ok_or_else(|| Refused::expected(EXPECTED))?;
    if n != 0 && !(1901..=2155).contains(&n) {
        return Err(Refused::expected(EXPECTED));
    }
    buf.push_str(&n.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;

    #[test]
    fn four_digit_years() {
        let c = Conversion::Year;
        assert_eq!(run(&c, "2024").unwrap(), "2024");
        assert_eq!(run(&c, r#""1901""#).unwrap(), "1901");
        assert_eq!(run(&c, "0").unwrap(), "0");
        for bad in ["1900", "2156", "24", "2024.5", r#""MMXXIV""#] {
            assert!(run(&c, bad).is_err(), "{bad}");
        }
    }
}
