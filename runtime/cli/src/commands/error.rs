//! How a failed CLI command is shown to the user: [`CliError`] (the client's errors
//! plus the CLI's own) and [`report`], which prints the error (plus a hint where one
//! helps) to stderr and turns a command's result into an exit code.
//!
//! Contract — exit codes: 0 success; 1 the server rejected the request, the server's
//! answer was unusable, or the models given are invalid; 2 the command could not be
//! issued (bad arguments, unreadable files, TLS set-up, server unreachable).

use doppel_client::ClientError;
use doppel_schemas::ModelErrors;
use std::io::Write;

/// A failed CLI command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A request to the node failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Bad arguments or local input (unreadable file, malformed JSON).
    #[error("{0}")]
    Usage(String),
    /// DTDL documents failed to load or check (one error per line).
    #[error("{0}")]
    InvalidModels(ModelErrors),
    /// Writing the result to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Client(e) => e.exit_code(),
            Self::Usage(_) => 2,
            Self::InvalidModels(_) | Self::Stdout(_) => 1,
        }
    }

    /// Extra advice printed under the error, when there is something to suggest.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Client(e) => e.hint(),
            _ => None,
        }
    }
}

/// Print a failed command's error to stderr and return the exit code (0 on success).
pub fn report(result: Result<(), CliError>) -> i32 {
    report_to(result, &mut std::io::stderr().lock())
}

/// [`report`] writing to `out` instead of stderr.
fn report_to(result: Result<(), CliError>, out: &mut dyn Write) -> i32 {
    let Err(err) = result else { return 0 };
    // If stderr itself is gone there is nobody left to tell; the exit code still says it.
    let _ = match &err {
        // One line per model error, so they read like compiler output.
        CliError::InvalidModels(errors) => writeln!(out, "{errors}"),
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

    fn api(status: u16) -> CliError {
        CliError::Client(ClientError::Api {
            status,
            code: "C".into(),
            message: "m".into(),
        })
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
