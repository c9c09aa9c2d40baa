//! The one rule every user-given name (dataset, model, alias) obeys.
//!
//! Names end up in file paths, URLs and SQL; a single strict rule, checked at every door, is what
//! keeps `../` and quoting tricks out of all three.

/// A name that breaks the naming rule.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid {what} name `{shown}`: use 1 to 64 characters from a-z, A-Z, 0-9, `_`, `-`, `.`, starting with a letter or digit"
)]
pub struct BadName {
    pub what: &'static str,
    pub shown: String,
}

/// Checks `name` against the rule; `what` says what kind of name it is, for the message.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), BadName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(BadName {
            what,
            shown: name.chars().take(80).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names_and_refuses_paths_and_quotes() {
        for ok in ["bikes", "bike-rental_2011", "v1.2", "A"] {
            assert!(validate_name("dataset", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            "a..b",
            "x'; DROP TABLE datasets; --",
            ".hidden",
            "é",
            &"a".repeat(65),
        ] {
            assert!(validate_name("dataset", bad).is_err(), "{bad}");
        }
    }
}
