//! A column's type class, and the members of ENUM and SET, from the type
//! text `information_schema` gives.

use super::TypeClass;

/// The class of a column of `DATA_TYPE` `data_type`; `json_checked` says
/// the column carries MariaDB's `json_valid` check (MariaDB's JSON is an
/// alias of LONGTEXT with that check, and reports `longtext`).
pub(crate) fn classify(data_type: &str, json_checked: bool) -> TypeClass {
    let data_type = data_type.to_ascii_lowercase();
    match data_type.as_str() {
        "tinyint" => TypeClass::Integer { bits: 8 },
        "smallint" => TypeClass::Integer { bits: 16 },
        "mediumint" => TypeClass::Integer { bits: 24 },
        "int" | "integer" => TypeClass::Integer { bits: 32 },
        "bigint" => TypeClass::Integer { bits: 64 },
        "decimal" | "numeric" | "dec" | "fixed" => TypeClass::Decimal,
        // FLOAT(p) with p > 24 is a DOUBLE, which the server reports as such.
        "float" => TypeClass::Float,
        "double" | "real" | "double precision" => TypeClass::Double,
        "json" => TypeClass::Json,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" if json_checked => {
            TypeClass::Json
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => TypeClass::Text,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            TypeClass::Binary
        }
        "date" => TypeClass::Date,
        "datetime" => TypeClass::DateTime,
        "timestamp" => TypeClass::Timestamp,
        "time" => TypeClass::Time,
        "year" => TypeClass::Year,
        "enum" => TypeClass::Enum,
        "set" => TypeClass::Set,
        "bit" => TypeClass::Bit,
        // Spatial types, MariaDB's inet4/inet6/uuid, vectors, and whatever
        // comes next: written only once someone decides how.
        _ => TypeClass::Unsupported,
    }
}

/// The members of `enum('a','b')` or `set('a','b')`, unquoted (`''` inside
/// a member is one quote; MySQL writes no other escapes there).
pub(crate) fn members(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let body = &column_type[open + 1..];
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut member = String::new();
        loop {
            match chars.next() {
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    member.push('\'');
                }
                Some('\'') | None => break,
                Some(c) => member.push(c),
            }
        }
        out.push(member);
    }
    out
}

/// Whether `text` names JSON's check on `column`: `json_valid(`column`)`,
/// as MariaDB words the constraint its JSON alias adds.
pub(crate) fn is_json_check(clause: &str, column: &str) -> bool {
    let c: String = clause.chars().filter(|c| !c.is_whitespace()).collect();
    let quoted = format!("json_valid(`{}`)", column.replace('`', "``"));
    c.eq_ignore_ascii_case(&quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_data_type() {
        assert_eq!(classify("int", false), TypeClass::Integer { bits: 32 });
        assert_eq!(classify("tinyint", false), TypeClass::Integer { bits: 8 });
        assert_eq!(classify("decimal", false), TypeClass::Decimal);
        assert_eq!(classify("json", false), TypeClass::Json);
        assert_eq!(classify("longtext", true), TypeClass::Json);
        assert_eq!(classify("longtext", false), TypeClass::Text);
        assert_eq!(classify("varbinary", false), TypeClass::Binary);
        assert_eq!(classify("point", false), TypeClass::Unsupported);
        assert_eq!(classify("GEOMETRY", false), TypeClass::Unsupported);
    }

    #[test]
    fn enum_and_set_members_are_unquoted() {
        assert_eq!(members("enum('new','paid')"), ["new", "paid"]);
        assert_eq!(members("set('a','it''s','x,y')"), ["a", "it's", "x,y"]);
        assert_eq!(members("enum('')"), [""]);
        assert!(members("int(11)").is_empty());
    }

    #[test]
    fn json_checks_are_told_from_other_checks() {
        assert!(is_json_check("json_valid(`doc`)", "doc"));
        assert!(is_json_check("JSON_VALID( `Doc` )", "doc"));
        assert!(!is_json_check("json_valid(`doc`) and 1", "doc"));
        assert!(!is_json_check("json_valid(`other`)", "doc"));
    }
}
