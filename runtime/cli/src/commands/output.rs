//! What a successful client command prints on stdout.
//!
//! Key items: [`print_json`] (pretty JSON, for get/put/list results) and
//! [`print_line`] (one-line confirmations such as `deleted <id>`).
//!
//! Contract: a reader that closes the pipe early (`doppel twins list | head`) is not
//! an error; any other write failure is.

use super::error::CliError;
use serde_json::Value;
use std::io::Write;

/// Print `value` as pretty JSON followed by a newline.
pub fn print_json(value: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Stdout(std::io::Error::other(e)))?;
    print_line(&text)
}

/// Print one line.
pub fn print_line(line: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Stdout(e)),
        _ => Ok(()),
    }
}
