//! Where a request body typed by the user comes from: `--json '<text>'`,
//! `--file <path>`, or `--file -` for standard input.
//!
//! Key item: [`BodyArgs`] (flattened into the subcommands that send a body) and
//! [`BodyArgs::read`].
//!
//! Contract: at most one source (clap enforces it); the text must be JSON, and a parse
//! error names its source and position. Which JSON shape is acceptable (object for a
//! twin, array for a patch) is for the caller to check.

use super::error::CliError;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;

/// A JSON body given inline, in a file, or on standard input.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BodyArgs {
    /// The JSON body, inline
    #[arg(long, value_name = "JSON", conflicts_with = "file")]
    pub json: Option<String>,
    /// Read the JSON body from a file ('-' reads standard input)
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

impl BodyArgs {
    /// The parsed body, or `None` if no source was given.
    pub fn read(&self) -> Result<Option<Value>, CliError> {
        self.read_from(&mut std::io::stdin().lock())
    }

    /// [`Self::read`] with standard input replaced by `stdin`.
    fn read_from(&self, stdin: &mut dyn Read) -> Result<Option<Value>, CliError> {
        let (source, text) = match (&self.json, &self.file) {
            (Some(json), _) => ("--json".to_owned(), json.clone()),
            (None, Some(path)) if path.as_os_str() == "-" => {
                let mut text = String::new();
                stdin.read_to_string(&mut text).map_err(|e| {
                    CliError::Usage(format!("cannot read the body from standard input: {e}"))
                })?;
                ("standard input".to_owned(), text)
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
                (path.display().to_string(), text)
            }
            (None, None) => return Ok(None),
        };
        serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map(Some)
            .map_err(|e| CliError::Usage(format!("{source} is not valid JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inline_json_is_parsed() {
        let args = BodyArgs {
            json: Some(r#"{"a": 1}"#.into()),
            file: None,
        };
        assert_eq!(
            args.read_from(&mut &b""[..]).expect("ok"),
            Some(json!({"a": 1}))
        );
    }

    #[test]
    fn dash_reads_standard_input() {
        let args = BodyArgs {
            json: None,
            file: Some(PathBuf::from("-")),
        };
        let body = args.read_from(&mut &b"[{\"op\":\"remove\",\"path\":\"/x\"}]"[..]);
        assert_eq!(
            body.expect("ok"),
            Some(json!([{"op": "remove", "path": "/x"}]))
        );
    }

    #[test]
    fn files_are_read_and_bad_json_names_its_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("twin.json");
        std::fs::write(&file, "{\"x\": true}").expect("write");
        let args = BodyArgs {
            json: None,
            file: Some(file.clone()),
        };
        assert_eq!(
            args.read_from(&mut &b""[..]).expect("ok"),
            Some(json!({"x": true}))
        );

        std::fs::write(&file, "{oops").expect("write");
        let err = args.read_from(&mut &b""[..]).expect_err("bad json");
        assert!(err.to_string().contains("twin.json"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn no_source_is_no_body() {
        assert_eq!(
            BodyArgs::default().read_from(&mut &b""[..]).expect("ok"),
            None
        );
    }
}
