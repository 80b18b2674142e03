//! Every way a client command can fail, and how each failure is shown to the user.
//!
//! Key items: [`ClientError`] (typed, one variant per kind of failure) with
//! [`ClientError::exit_code`], and [`report`], which prints the error (plus a hint
//! where one helps) to stderr and turns a command's result into an exit code.
//!
//! Contract — exit codes: 0 success; 1 the server rejected the request, the server's
//! answer was unusable, or the models given are invalid; 2 the command could not be
//! issued (bad arguments, unreadable files, TLS set-up, server unreachable).

use doppel_schemas::ModelErrors;
use std::io::Write;

/// A failed client command.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad arguments or local input (unreadable file, malformed JSON, bad URL).
    #[error("{0}")]
    Usage(String),
    /// No connection could be made to the server.
    #[error("cannot reach {url}: {cause} — is `doppel serve` running?")]
    Unreachable { url: String, cause: String },
    /// The TLS handshake failed (usually a `--ca-cert` that does not match).
    #[error("TLS handshake with {url} failed: {cause}")]
    Tls { url: String, cause: String },
    /// The connection broke during a request.
    #[error("request to {url} failed: {cause}")]
    Transport { url: String, cause: String },
    /// The server answered with an error status.
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server answered successfully but not in the documented shape.
    #[error("unexpected response from {url}: {what}")]
    BadResponse { url: String, what: String },
    /// DTDL documents failed to load or check (one error per line).
    #[error("{0}")]
    InvalidModels(ModelErrors),
    /// Writing the result to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

impl ClientError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_)
            | Self::Unreachable { .. }
            | Self::Tls { .. }
            | Self::Transport { .. } => 2,
            Self::Api { .. }
            | Self::BadResponse { .. }
            | Self::InvalidModels(_)
            | Self::Stdout(_) => 1,
        }
    }

    /// Extra advice printed under the error, when there is something to suggest.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Api { status: 401, .. } => Some(
                "set DOPPEL_TOKEN or --token (the node wrote its admin token to <data-dir>/admin.token; ./doppel-data/admin.token by default)",
            ),
            Self::Api { status: 403, .. } => {
                Some("the token's roles do not allow this operation; use a token with a suitable role")
            }
            Self::Tls { .. } => Some(
                "check that the server serves https and that --ca-cert names its certificate (or the CA that signed it)",
            ),
            Self::Transport { .. } => {
                Some("if the server uses TLS, use an https:// URL with --ca-cert")
            }
            _ => None,
        }
    }
}

/// Print a failed command's error to stderr and return the exit code (0 on success).
pub fn report(result: Result<(), ClientError>) -> i32 {
    report_to(result, &mut std::io::stderr().lock())
}

/// [`report`] writing to `out` instead of stderr.
fn report_to(result: Result<(), ClientError>, out: &mut dyn Write) -> i32 {
    let Err(err) = result else { return 0 };
    // If stderr itself is gone there is nobody left to tell; the exit code still says it.
    let _ = match &err {
        // One line per model error, so they read like compiler output.
        ClientError::InvalidModels(errors) => writeln!(out, "{errors}"),
        other => writeln!(out, "error: {other}"),
    };
    if let Some(hint) = err.hint() {
        let _ = writeln!(out, "hint: {hint}");
    }
    err.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> ClientError {
        ClientError::Api {
            status,
            code: "C".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn server_rejections_exit_1_and_local_problems_exit_2() {
        assert_eq!(api(404).exit_code(), 1);
        assert_eq!(ClientError::Usage("x".into()).exit_code(), 2);
        let unreachable = ClientError::Unreachable {
            url: "http://127.0.0.1:8080".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 2);
        assert_eq!(
            unreachable.to_string(),
            "cannot reach http://127.0.0.1:8080: connection refused — is `doppel serve` running?"
        );
    }

    #[test]
    fn api_errors_render_status_code_and_message() {
        assert_eq!(api(409).to_string(), "409 C: m");
    }

    #[test]
    fn unauthorized_gets_a_token_hint() {
        assert!(api(401).hint().is_some_and(|h| h.contains("DOPPEL_TOKEN")));
        assert!(api(404).hint().is_none());
    }

    #[test]
    fn report_prints_the_error_and_hint_and_returns_the_exit_code() {
        let mut out = Vec::new();
        assert_eq!(report_to(Ok(()), &mut out), 0);
        assert!(out.is_empty());
        assert_eq!(report_to(Err(api(401)), &mut out), 1);
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.starts_with("error: 401 C: m\nhint: set DOPPEL_TOKEN"),
            "{text}"
        );
    }
}
