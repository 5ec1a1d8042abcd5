//! FLOAT and DOUBLE: numbers and numeric strings, as their text (the
//! server rounds to the column's precision, as it would any literal).

use super::decimal::parse;
use super::{Input, Refused};

pub(super) fn push(input: &Input<'_, '_>, buf: &mut String) -> Result<(), Refused> {
    const EXPECTED: &str = "a number or numeric string";
    if let Some(text) = input.number() {
        buf.push_str(&text);
        return Ok(());
    }
    let text = input
        .str()
        .map(str::trim)
        .ok_or_else(|| Refused::expected(EXPECTED))?;
    // The grammar is checked so that only a number can reach the statement;
    // the text itself goes as written, like a JSON number's.
    if parse(text).is_none() {
        return Err(Refused::expected(EXPECTED));
    }
    buf.push_str(text.strip_prefix('+').unwrap_or(text));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;

    #[test]
    fn numbers_and_numeric_strings() {
        let c = Conversion::Float { double: true };
        assert_eq!(run(&c, "1.5").unwrap(), "1.5");
        assert_eq!(run(&c, "-3").unwrap(), "-3");
        assert_eq!(run(&c, "1e-7").unwrap(), "1e-7");
        assert_eq!(run(&c, r#""2.25""#).unwrap(), "2.25");
        assert_eq!(run(&c, r#""+2.25""#).unwrap(), "2.25");
        for bad in ["true", r#""NaN""#, r#""Infinity""#, r#""1;DROP""#, "[]"] {
            assert!(run(&c, bad).is_err(), "{bad}");
        }
    }
}
