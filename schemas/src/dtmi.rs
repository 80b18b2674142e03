//! Digital Twin Model Identifier (DTMI) syntax.
//!
//! A DTMI is `dtmi:<segment>(:<segment>)*[;<version>]`. Each segment holds letters,
//! digits and underscores, does not start with a digit and does not end with an
//! underscore; a segment starting with `_` is a *system* segment, and a DTMI with one
//! is a system DTMI, which model documents may not use. The version is `major` or
//! `major.minor` (no leading zeros, major ≤ 9 digits, minor ≤ 6 digits and not 0).
//!
//! Key items: [`is_valid_dtmi`] (syntax only), [`DtmiSyntax`] (what [`parse`] found),
//! length limits and the reserved prefixes.

/// Maximum length of any DTMI.
pub const MAX_DTMI_LEN: usize = 4096;
/// Maximum length of a user DTMI (no system segments).
pub const MAX_USER_DTMI_LEN: usize = 2048;
/// Maximum length of the DTMI of an Interface.
pub const MAX_INTERFACE_DTMI_LEN: usize = 128;
/// Prefixes reserved for the DTDL language itself.
pub const RESERVED_PREFIXES: [&str; 2] = ["dtmi:dtdl:", "dtmi:standard:"];

/// The parts of a syntactically valid DTMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmiSyntax<'a> {
    pub segments: Vec<&'a str>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

impl DtmiSyntax<'_> {
    /// A system DTMI has at least one segment starting with `_`.
    pub fn is_system(&self) -> bool {
        self.segments.iter().any(|s| s.starts_with('_'))
    }
}

/// Whether `s` is a syntactically valid DTMI (system or user, any version form).
pub fn is_valid_dtmi(s: &str) -> bool {
    parse(s).is_some()
}

/// Whether `s` is a valid DTMI without system segments and within the user length limit.
pub fn is_user_dtmi(s: &str) -> bool {
    s.len() <= MAX_USER_DTMI_LEN && parse(s).is_some_and(|d| !d.is_system())
}

/// Whether `s` starts with a prefix reserved by DTDL.
pub fn is_reserved(s: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|p| s.starts_with(p))
}

/// Split a DTMI into its parts, or `None` if it is not valid syntax.
pub fn parse(s: &str) -> Option<DtmiSyntax<'_>> {
    if s.len() > MAX_DTMI_LEN {
        return None;
    }
    let rest = s.strip_prefix("dtmi:")?;
    let (path, version) = match rest.split_once(';') {
        Some((p, v)) => (p, Some(v)),
        None => (rest, None),
    };
    let segments: Vec<&str> = path.split(':').collect();
    if !segments.iter().all(|seg| is_segment(seg)) {
        return None;
    }
    let (major, minor) = match version {
        None => (None, None),
        Some(v) => {
            let (maj, min) = match v.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (v, None),
            };
            let major = version_part(maj, 9)?;
            let minor = match min {
                Some(m) => Some(version_part(m, 6)?),
                None => None,
            };
            (Some(major), minor)
        }
    };
    Some(DtmiSyntax {
        segments,
        major,
        minor,
    })
}

fn is_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            !first.is_ascii_digit()
                && *last != b'_'
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }
        _ => false,
    }
}

fn version_part(s: &str, max_digits: usize) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > max_digits || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_examples() {
        assert!(is_valid_dtmi("dtmi:com:example:Thermostat;1"));
        assert!(is_valid_dtmi("dtmi:foo_bar:_16:baz33:qux;12"));
        assert!(is_valid_dtmi("dtmi:com:example"));
        assert!(is_valid_dtmi("dtmi:com:example;1.2"));
        assert!(is_valid_dtmi("dtmi:a;999999999.999999"));
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "",
            "dtmi:",
            "DTMI:a;1",
            "dtmi:1a;1",
            "dtmi:a_;1",
            "dtmi:a::b;1",
            "dtmi:a;0",
            "dtmi:a;01",
            "dtmi:a;1.0",
            "dtmi:a;1.",
            "dtmi:a;1234567890",
            "dtmi:a;1.1234567",
            "dtmi:a-b;1",
            "dtmi:a;1;2",
            "dtmi:_;1",
        ] {
            assert!(!is_valid_dtmi(bad), "{bad} should be invalid");
        }
        assert!(!is_valid_dtmi(&format!(
            "dtmi:{};1",
            "a".repeat(MAX_DTMI_LEN)
        )));
    }

    #[test]
    fn system_and_reserved() {
        assert!(!is_user_dtmi("dtmi:foo_bar:_16:baz33:qux;12"));
        assert!(is_user_dtmi("dtmi:foo_bar:baz33;12"));
        assert!(is_reserved("dtmi:dtdl:context;3"));
        assert!(!is_reserved("dtmi:dtdlx;3"));
        let p = parse("dtmi:a:b;3.14");
        assert_eq!(
            p,
            Some(DtmiSyntax {
                segments: vec!["a", "b"],
                major: Some(3),
                minor: Some(14)
            })
        );
    }
}
