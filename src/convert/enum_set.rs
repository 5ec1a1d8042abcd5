//! ENUM and SET: member names as the column defines them. A name matches
//! as the column's collation compares it for ASCII case (`_ci` collations
//! ignore it), and the member is written as defined.

use simd_json::BorrowedValue as Value;

use super::{Input, Refused};
use crate::sql::push_str_literal;
use crate::table::{members, Column};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Members {
    pub names: Vec<String>,
    pub ignore_case: bool,
}

impl Members {
    pub(crate) fn of(column: &Column) -> Members {
        let collation = column.collation.as_deref().unwrap_or("");
        Members {
            names: members(&column.column_type),
            ignore_case: !(collation.ends_with("_bin") || collation.ends_with("_cs")),
        }
    }

    fn find(&self, name: &str) -> Option<&str> {
        let exact = self.names.iter().find(|m| *m == name);
        exact
            .or_else(|| {
                self.ignore_case
                    .then(|| self.names.iter().find(|m| m.eq_ignore_ascii_case(name)))
                    .flatten()
            })
            .map(String::as_str)
    }

    fn listed(&self) -> String {
        let quoted: Vec<String> = self.names.iter().map(|m| format!("{m:?}")).collect();
        quoted.join(", ")
    }
}

pub(super) fn push_enum(
    m: &Members,
    input: &Input<'_, '_>,
    buf: &mut String,
) -> Result<(), Refused> {
    let expected = || format!("one of {}", m.listed());
    let name = input.str().ok_or_else(|| Refused::expected(expected()))?;
    let member = m.find(name).ok_or_else(|| Refused::expected(expected()))?;
    push_str_literal(buf, member);
    Ok(())
}

/// A SET value: `"a,b"` or `["a", "b"]`.
pub(super) fn push_set(
    m: &Members,
    input: &Input<'_, '_>,
    buf: &mut String,
) -> Result<(), Refused> {
    let expected = || format!("a string or array of members of {}", m.listed());
    let names: Vec<&str> = match input.value {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => s.split(',').collect(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_ref()),
                _ => Err(Refused::expected(expected())),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(Refused::expected(expected())),
    };
    let mut picked = Vec::with_capacity(names.len());
    for n in names {
        if n.contains(',') {
            return Err(Refused::because(expected(), "a member holds no comma"));
        }
        let member = m
            .find(n)
            .ok_or_else(|| Refused::because(expected(), format!("{n:?} is not a member")))?;
        picked.push(member);
    }
    push_str_literal(buf, &picked.join(","));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;
    use super::*;

    fn m(names: &[&str], ignore_case: bool) -> Members {
        Members {
            names: names.iter().map(|s| s.to_string()).collect(),
            ignore_case,
        }
    }

    #[test]
    fn enum_members_as_defined() {
        let c = Conversion::Enum(m(&["new", "paid"], true));
        assert_eq!(run(&c, r#""paid""#).unwrap(), "'paid'");
        assert_eq!(run(&c, r#""PAID""#).unwrap(), "'paid'");
        let err = run(&c, r#""shipped""#).unwrap_err();
        assert!(err.expected.contains("\"new\", \"paid\""), "{err:?}");
        assert!(run(&c, "1").is_err());
        let c = Conversion::Enum(m(&["new", "paid"], false));
        assert!(run(&c, r#""PAID""#).is_err());
    }

    #[test]
    fn set_from_text_or_array() {
        let c = Conversion::Set(m(&["a", "b", "c"], true));
        assert_eq!(run(&c, r#""a,c""#).unwrap(), "'a,c'");
        assert_eq!(run(&c, r#"["b","A"]"#).unwrap(), "'b,a'");
        assert_eq!(run(&c, r#""""#).unwrap(), "''");
        assert!(run(&c, r#""a,d""#).is_err());
        assert!(run(&c, r#"["a,b"]"#).is_err());
        assert!(run(&c, "[1]").is_err());
    }
}
