//! Rules for the identifiers users choose: tenants, twin ids, relationship ids,
//! property and telemetry names.
//!
//! Twin and relationship ids follow Azure Digital Twins' spirit (any printable
//! characters) but exclude what would break URLs and our key encoding: they are
//! 1–128 characters, contain no control characters, whitespace, `/`, `\`, `?`, `#`,
//! `%`, and do not start with `$`. Tenants are stricter (they appear in paths, topics
//! and file names): 1–64 of `a-z 0-9 - _`, starting with a letter or digit.

/// Why an identifier was refused.
pub type IdError = String;

pub const MAX_ID_LEN: usize = 128;

pub fn check_twin_id(id: &str) -> Result<(), IdError> {
    check_id(id)
}

pub fn check_relationship_id(id: &str) -> Result<(), IdError> {
    check_id(id)
}

fn check_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    let len = id.chars().count();
    if len > MAX_ID_LEN {
        return Err(format!(
            "is {len} characters long; the limit is {MAX_ID_LEN}"
        ));
    }
    if id.starts_with('$') {
        return Err("must not start with '$' (reserved for system properties)".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '/' | '\\' | '?' | '#' | '%'))
    {
        return Err(format!(
            "contains {c:?}; control characters, whitespace and / \\ ? # % are not allowed"
        ));
    }
    Ok(())
}

pub fn check_tenant(name: &str) -> Result<(), IdError> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(
            "may only contain a-z, 0-9, '-' and '_', starting with a letter or digit".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_ids() {
        assert!(check_twin_id("pump-1").is_ok());
        assert!(check_twin_id("Fabrik:Linie_3.Maschine@7").is_ok());
        assert!(check_twin_id("").is_err());
        assert!(check_twin_id("a/b").is_err());
        assert!(check_twin_id("a b").is_err());
        assert!(check_twin_id("a\0b").is_err());
        assert!(check_twin_id("$dtId").is_err());
        assert!(check_twin_id(&"x".repeat(129)).is_err());
        assert!(check_twin_id(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn tenants() {
        assert!(check_tenant("default").is_ok());
        assert!(check_tenant("acme-2").is_ok());
        assert!(check_tenant("Acme").is_err());
        assert!(check_tenant("-x").is_err());
        assert!(check_tenant("").is_err());
    }
}
