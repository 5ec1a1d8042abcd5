//! JSON columns: any JSON value, as its JSON text (a string becomes a JSON
//! string); the server validates it, as strict mode does for any JSON
//! column (MariaDB through the column's `json_valid` check).

use simd_json::prelude::Writable;
use simd_json::{BorrowedValue as Value, StaticNode};

use super::{Input, Refused};
use crate::sql::push_str_literal;

pub(super) fn push(input: &Input<'_, '_>, buf: &mut String) -> Result<(), Refused> {
    match (input.value, input.number_text) {
        // A top-level number keeps its written text; nested ones are
        // written back by simd-json.
        (Value::Static(StaticNode::F64(_)), Some(text)) => push_str_literal(buf, text),
        (value, _) => push_str_literal(buf, &value.encode()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;

    #[test]
    fn any_value_as_json_text() {
        let c = Conversion::Json;
        assert_eq!(
            run(&c, r#"{"a":{"b":[1,2]}}"#).unwrap(),
            r#"'{"a":{"b":[1,2]}}'"#
        );
        assert_eq!(run(&c, r#""x""#).unwrap(), r#"'"x"'"#);
        assert_eq!(run(&c, "1.10").unwrap(), "'1.10'");
        assert_eq!(run(&c, "true").unwrap(), "'true'");
        // A quote inside goes as a hex literal, whatever the sql_mode.
        assert!(run(&c, r#"{"q":"it's"}"#)
            .unwrap()
            .starts_with("_utf8mb4 X'"));
    }
}
