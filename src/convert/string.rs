//! CHAR, VARCHAR, TEXT: strings byte for byte (the statement's literal
//! rules hold under every `sql_mode`), numbers and booleans as their text,
//! objects and arrays as their JSON text. Length is left to the server,
//! whose strict mode refuses what does not fit.

use simd_json::prelude::Writable;

use super::{Input, Refused};
use crate::sql::push_str_literal;

pub(super) fn push(input: &Input<'_, '_>, buf: &mut String) -> Result<(), Refused> {
    if let Some(s) = input.str() {
        push_str_literal(buf, s);
    } else if let Some(text) = input.number() {
        push_str_literal(buf, &text);
    } else if let Some(b) = input.bool() {
        push_str_literal(buf, if b { "true" } else { "false" });
    } else {
        push_str_literal(buf, &input.value.encode());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;

    #[test]
    fn every_json_value_has_a_text() {
        let c = Conversion::Text;
        assert_eq!(run(&c, r#""héllo""#).unwrap(), "'héllo'");
        assert_eq!(run(&c, r#""it's""#).unwrap(), "_utf8mb4 X'69742773'");
        assert_eq!(run(&c, "49.990").unwrap(), "'49.990'");
        assert_eq!(run(&c, "7").unwrap(), "'7'");
        assert_eq!(run(&c, "true").unwrap(), "'true'");
        assert_eq!(run(&c, r#"{"a":[1,"x"]}"#).unwrap(), r#"'{"a":[1,"x"]}'"#);
    }
}
