//! Relation names as users write them in API calls: `'orders_agg'`, `'public.orders_agg'`,
//! `'"Sales"."Totals"'`. Parsed with PostgreSQL's rules (unquoted parts fold to lower case,
//! quoted parts are kept exactly), and checked against PostgreSQL's length limit instead of
//! being silently truncated.

use crate::error::{CoreError, CoreResult, ErrorKind};

/// PostgreSQL's NAMEDATALEN - 1: the longest identifier in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A relation name as given, before the schema is resolved through `search_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationName {
    pub schema: Option<String>,
    pub name: String,
}

/// Parse `text` as `name` or `schema.name`.
pub fn parse_relation_name(text: &str) -> CoreResult<RelationName> {
    let parts = split_identifier_parts(text)?;
    let mut parts = parts.into_iter();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, None) => Ok(RelationName { schema: None, name }),
        (Some(schema), Some(name), None) => Ok(RelationName {
            schema: Some(schema),
            name,
        }),
        _ => Err(CoreError::new(
            ErrorKind::InvalidName,
            format!("improper relation name (too many dotted names): {text}"),
        )
        .with_hint("Write the name as table or schema.table.")),
    }
}

fn invalid_name(text: &str, why: &str) -> CoreError {
    CoreError::new(ErrorKind::InvalidName, format!("invalid name syntax: {text:?}"))
        .with_detail(why.to_string())
        .with_hint("Write the name as table or schema.table; double-quote parts with upper-case letters or special characters.")
}

fn split_identifier_parts(text: &str) -> CoreResult<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let mut parts = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut part = String::new();
        if i < chars.len() && chars[i] == '"' {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(invalid_name(text, "A quoted part is not closed.")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        part.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        part.push(*c);
                        i += 1;
                    }
                }
            }
            if part.is_empty() {
                return Err(invalid_name(text, "A quoted part is empty."));
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '.' {
                if chars[i] == '"' {
                    return Err(invalid_name(
                        text,
                        "A quote stands inside an unquoted part.",
                    ));
                }
                part.push(chars[i].to_ascii_lowercase());
                i += 1;
            }
            if part.is_empty() {
                return Err(invalid_name(text, "A part of the name is empty."));
            }
        }
        check_identifier_length(&part)?;
        parts.push(part);
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        match chars.get(i) {
            None => return Ok(parts),
            Some('.') => i += 1,
            Some(_) => return Err(invalid_name(text, "Parts must be separated by a dot.")),
        }
    }
}

/// Refuse identifiers PostgreSQL would truncate.
pub fn check_identifier_length(ident: &str) -> CoreResult<()> {
    if ident.len() > MAX_IDENTIFIER_BYTES {
        return Err(CoreError::new(
            ErrorKind::NameTooLong,
            format!(
                "name {ident:?} is {} bytes long; PostgreSQL names are at most {MAX_IDENTIFIER_BYTES} bytes",
                ident.len()
            ),
        )
        .with_hint("Choose a shorter name; pg_trickle does not truncate names."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(schema: Option<&str>, name: &str) -> RelationName {
        RelationName {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }

    #[test]
    fn unqualified_and_qualified() {
        assert_eq!(
            parse_relation_name("orders_agg"),
            Ok(rel(None, "orders_agg"))
        );
        assert_eq!(
            parse_relation_name("public.orders_agg"),
            Ok(rel(Some("public"), "orders_agg"))
        );
        assert_eq!(
            parse_relation_name(" Public . Orders "),
            Ok(rel(Some("public"), "orders"))
        );
    }

    #[test]
    fn quoted_parts_keep_case_and_dots() {
        assert_eq!(
            parse_relation_name("\"Sales\".\"Q1.Totals\""),
            Ok(rel(Some("Sales"), "Q1.Totals"))
        );
        assert_eq!(parse_relation_name("\"a\"\"b\""), Ok(rel(None, "a\"b")));
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "", ".", "a.", ".a", "a..b", "\"open", "\"\"", "a b", "a.b.c", "x\"y",
        ] {
            let err = parse_relation_name(bad).expect_err(bad);
            assert_eq!(err.kind, ErrorKind::InvalidName, "{bad}");
        }
    }

    #[test]
    fn long_names_are_refused_not_truncated() {
        let ok = "a".repeat(63);
        assert!(parse_relation_name(&ok).is_ok());
        let long = "a".repeat(64);
        assert_eq!(
            parse_relation_name(&long).map_err(|e| e.kind),
            Err(ErrorKind::NameTooLong)
        );
        // bytes, not characters: 32 two-byte characters are 64 bytes
        let wide = "é".repeat(32);
        assert_eq!(
            parse_relation_name(&format!("\"{wide}\"")).map_err(|e| e.kind),
            Err(ErrorKind::NameTooLong)
        );
    }
}
