//! String literals, quoted with PostgreSQL's rules.

/// Quote `value` as an SQL string literal, as `quote_literal()` does: single quotes doubled, and
/// the `E''` form when the text holds a backslash (so the result is right whatever
/// `standard_conforming_strings` says).
pub fn quote_literal(value: &str) -> String {
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

#[cfg(test)]
mod tests {
    use super::quote_literal;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn backslashes_use_the_escape_form() {
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
    }
}
