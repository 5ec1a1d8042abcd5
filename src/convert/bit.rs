//! BIT(n): a whole number that fits in n bits, `true`/`false`, or a string
//! of binary digits (`"0101"`).

use super::decimal::digits_of;
use super::integer::whole;
use super::{Input, Refused};

pub(super) fn push(bits: u32, input: &Input<'_, '_>, buf: &mut String) -> Result<(), Refused> {
    let max: u128 = (1u128 << bits) - 1;
    let expected = || format!("a bit({bits}) value: 0 to {max}, true/false, or binary digits");
    let n: u128 = if let Some(b) = input.bool() {
        u128::from(b)
    } else if let Some(s) = input.str() {
        if s.is_empty() || !s.bytes().all(|b| matches!(b, b'0' | b'1')) {
            return Err(Refused::expected(expected()));
        }
        let significant = s.trim_start_matches('0');
        if significant.len() > bits as usize {
            return Err(Refused::because(expected(), "too many bits"));
        }
        if significant.is_empty() {
            0
        } else {
            u128::from_str_radix(significant, 2).map_err(|_| Refused::expected(expected()))?
        }
    } else {
        let n = digits_of(input)
            .as_ref()
            .and_then(whole)
            .ok_or_else(|| Refused::expected(expected()))?;
        u128::try_from(n).map_err(|_| Refused::expected(expected()))?
    };
    if n > max {
        return Err(Refused::because(expected(), "too many bits"));
    }
    buf.push_str(&n.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;

    #[test]
    fn numbers_booleans_and_binary_digits() {
        let c = Conversion::Bit { bits: 3 };
        assert_eq!(run(&c, "5").unwrap(), "5");
        assert_eq!(run(&c, "true").unwrap(), "1");
        assert_eq!(run(&c, r#""101""#).unwrap(), "5");
        assert_eq!(run(&c, r#""0011""#).unwrap(), "3");
        assert!(run(&c, "8").is_err());
        assert!(run(&c, r#""1000""#).is_err());
        assert!(run(&c, "-1").is_err());
        assert!(run(&c, r#""12""#).is_err());
        let c = Conversion::Bit { bits: 64 };
        assert_eq!(
            run(&c, "18446744073709551615").unwrap(),
            "18446744073709551615"
        );
    }
}
