//! Which bearer token a client command sends.
//!
//! Key items: [`resolve_token`] and [`DEFAULT_TOKEN_FILE`].
//!
//! Contract: an explicit token (`--token`, or `DOPPEL_TOKEN` through clap) wins; a
//! blank one counts as absent. Otherwise the token file written by a node started in
//! the current directory is used if it exists. No token at all is not an error here:
//! the request goes out unauthenticated and a 401 comes back with a hint.

use crate::error::ClientError;
use std::path::Path;

/// Where `doppel serve` writes its admin token with the default data directory.
pub const DEFAULT_TOKEN_FILE: &str = "doppel-data/admin.token";

/// The token to send: `explicit` if non-blank, else the trimmed contents of
/// `token_file` if that file exists.
pub fn resolve_token(
    explicit: Option<&str>,
    token_file: &Path,
) -> Result<Option<String>, ClientError> {
    if let Some(token) = explicit.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(Some(token.to_owned()));
    }
    match std::fs::read_to_string(token_file) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                Err(ClientError::Usage(format!(
                    "token file {} is empty; set DOPPEL_TOKEN or --token",
                    token_file.display()
                )))
            } else {
                Ok(Some(token.to_owned()))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::Usage(format!(
            "cannot read token file {}: {e}; set DOPPEL_TOKEN or --token",
            token_file.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_token_wins_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("admin.token");
        std::fs::write(&file, "from-file\n").expect("write");
        assert_eq!(
            resolve_token(Some(" explicit "), &file).expect("ok"),
            Some("explicit".to_owned())
        );
    }

    #[test]
    fn blank_explicit_token_falls_back_to_the_file_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("admin.token");
        std::fs::write(&file, "secret\n").expect("write");
        assert_eq!(
            resolve_token(Some("  "), &file).expect("ok"),
            Some("secret".to_owned())
        );
        assert_eq!(
            resolve_token(None, &file).expect("ok"),
            Some("secret".to_owned())
        );
    }

    #[test]
    fn missing_file_means_no_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("absent.token");
        assert_eq!(resolve_token(None, &file).expect("ok"), None);
    }

    #[test]
    fn empty_file_is_a_usage_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("admin.token");
        std::fs::write(&file, "\n").expect("write");
        let err = resolve_token(None, &file).expect_err("empty");
        assert_eq!(err.exit_code(), 2);
    }
}
