//! Every way a request to a doppel node can fail.
//!
//! Key items: [`ClientError`] (typed, one variant per kind of failure) with
//! [`ClientError::exit_code`] and [`ClientError::hint`] for command-line tools.
//!
//! [`transport_error`] classifies a failure to get any answer (TLS, unreachable, broken).
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

/// Classify a failure to get a response: TLS, unreachable server, or a broken exchange.
pub(crate) fn transport_error(url: &reqwest::Url, err: &reqwest::Error) -> ClientError {
    let origin = url.origin().ascii_serialization();
    let chain = error_chain(err);
    let cause = chain
        .last()
        .map_or_else(|| "unknown error".to_owned(), |e| cause_phrase(*e));
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return ClientError::Tls {
            url: origin,
            cause: tls.to_string(),
        };
    }
    // A peer that hangs up during the handshake (e.g. a plain-http server) is a TLS
    // failure too, not an unreachable server: the TCP connection was made.
    let io_kind = chain
        .iter()
        .rev()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    if url.scheme() == "https"
        && err.is_connect()
        && io_kind == Some(std::io::ErrorKind::UnexpectedEof)
    {
        return ClientError::Tls { url: origin, cause };
    }
    if err.is_connect() || err.is_timeout() {
        ClientError::Unreachable { url: origin, cause }
    } else {
        ClientError::Transport {
            url: url.to_string(),
            cause,
        }
    }
}

/// `err` and all its causes, outermost first. An io::Error's `source()` skips the
/// error it wraps (where rustls errors travel, sometimes io::Error in io::Error), so
/// wrapped errors are followed through `get_ref` as well.
fn error_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        chain.push(e);
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        next = wrapped.or_else(|| e.source());
    }
    chain
}

/// An error as a lower-case phrase without the OS error number
/// ("connection refused", not "Connection refused (os error 111)").
fn cause_phrase(err: &dyn std::error::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => &text[..i],
        _ => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

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
    fn causes_are_lower_case_phrases() {
        let io = std::io::Error::from_raw_os_error(111);
        let text = cause_phrase(&io);
        assert!(!text.contains("os error"), "{text}");
        assert!(
            text.chars().next().is_some_and(|c| !c.is_uppercase()),
            "{text}"
        );
    }

    #[test]
    fn rustls_errors_are_found_inside_nested_io_errors() {
        // The shape reqwest produces: io::Error(Other, io::Error(InvalidData, rustls)).
        let inner = std::io::Error::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let outer = std::io::Error::other(inner);
        let chain = error_chain(&outer);
        assert_eq!(chain.len(), 3);
        assert!(chain[2].downcast_ref::<rustls::Error>().is_some());
        assert_eq!(
            cause_phrase(chain[2]),
            "invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(error_chain(&std::io::Error::other("x")).len(), 2);
    }
}
