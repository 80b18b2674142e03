//! Every way a request to a doppel node can fail.
//!
//! Key items: [`ClientError`] (typed, one variant per kind of failure) with
//! [`ClientError::exit_code`] and [`ClientError::hint`] for command-line tools.
//!
//! Contract — exit codes: 1 the server rejected the request or its answer was
//! unusable; 2 the request could not be issued (bad settings, TLS set-up, server
//! unreachable).

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
}

impl ClientError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_)
            | Self::Unreachable { .. }
            | Self::Tls { .. }
            | Self::Transport { .. } => 2,
            Self::Api { .. } | Self::BadResponse { .. } => 1,
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
}
