//! BINARY, VARBINARY, BLOB: a string's bytes, or its base64 decoding with
//! `encoding = "base64"`; written as a hex literal, so every byte arrives.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use super::{Input, Refused};
use crate::sql::push_bytes_literal;

/// Standard base64, padded or not: producers differ, and either is
/// unambiguous.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(super) fn push(base64: bool, input: &Input<'_, '_>, buf: &mut String) -> Result<(), Refused> {
    let Some(s) = input.str() else {
        return Err(Refused::expected(if base64 {
            "a base64 string"
        } else {
            "a string"
        }));
    };
    if !base64 {
        push_bytes_literal(buf, Some(s.as_bytes()));
        return Ok(());
    }
    let bytes = BASE64
        .decode(s)
        .map_err(|e| Refused::because("a base64 string", e.to_string()))?;
    push_bytes_literal(buf, Some(&bytes));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;

    #[test]
    fn bytes_or_base64_as_hex() {
        let raw = Conversion::Binary { base64: false };
        let b64 = Conversion::Binary { base64: true };
        assert_eq!(run(&raw, r#""AB'""#).unwrap(), "X'414227'");
        assert_eq!(run(&raw, r#""""#).unwrap(), "X''");
        assert_eq!(run(&b64, r#""AAH/""#).unwrap(), "X'0001FF'");
        assert_eq!(run(&b64, r#""AAE=""#).unwrap(), "X'0001'");
        assert_eq!(run(&b64, r#""AAE""#).unwrap(), "X'0001'");
        assert!(run(&b64, r#""not base64!""#).is_err());
        assert!(run(&raw, "12").is_err());
    }
}
