//! Errors reported when DTDL documents are rejected.
//!
//! Key types: [`ModelError`] (one violated rule, located by the DTMI of the enclosing
//! Interface and the JSON path inside the uploaded batch) and [`ModelErrors`] (every
//! error found in one batch; parsing is all-or-nothing, so callers get them all at once).
//!
//! Contract: `path` is always a JSONPath-like location rooted at the batch, e.g.
//! `$[0].contents[2].schema`, so a user can find the offending element in their files.

use std::fmt;

/// One violated DTDL rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ModelError {
    /// The Interface the error was found in, when known.
    pub dtmi: Option<String>,
    /// JSON path of the offending element, e.g. `$[0].contents[2].schema`.
    pub path: String,
    /// Which rule was violated, in words.
    pub message: String,
}

impl ModelError {
    pub fn new(dtmi: Option<&str>, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            dtmi: dtmi.map(str::to_owned),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dtmi {
            Some(id) => write!(f, "{id} at {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// All errors found in one batch of documents (never empty when returned as `Err`).
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ModelErrors(pub Vec<ModelError>);

impl ModelErrors {
    pub fn single(err: ModelError) -> Self {
        Self(vec![err])
    }
}

impl fmt::Display for ModelErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_dtmi_path_and_rule() {
        let e = ModelError::new(
            Some("dtmi:x;1"),
            "$[0].contents[2].schema",
            "unknown schema",
        );
        assert_eq!(
            e.to_string(),
            "dtmi:x;1 at $[0].contents[2].schema: unknown schema"
        );
        let all = ModelErrors(vec![
            e.clone(),
            ModelError::new(None, "$[1]", "not an object"),
        ]);
        assert_eq!(
            all.to_string(),
            "dtmi:x;1 at $[0].contents[2].schema: unknown schema\n$[1]: not an object"
        );
    }
}
