//! `doppel twins get|put|patch|delete|list`: digital twins over `/digitaltwins`.
//!
//! Key items: [`TwinsCmd`], [`run_twins`], and the pure body builder [`twin_body`].
//!
//! Contract: `put --model M` makes `M` the twin's `$metadata.$model`, whatever the
//! body said; `patch` sends the JSON Patch array as `application/json-patch+json` and
//! prints the new ETag; `list` reads every page (up to `--limit`).

use super::body_input::BodyArgs;
use super::error::{report, CliError};
use super::output::{print_json, print_line};
use super::ClientOpts;
use doppel_client::{ApiClient, Preconditions, RequestBody};
use reqwest::Method;
use serde_json::{Map, Value};

/// Digital twin commands.
#[derive(clap::Subcommand, Debug)]
pub enum TwinsCmd {
    /// Print a twin
    Get { id: String },
    /// Create or replace a twin (body from --json, --file, or --file - for stdin)
    Put {
        id: String,
        /// Model of the twin; set as $metadata.$model
        #[arg(long, value_name = "DTMI")]
        model: Option<String>,
        #[command(flatten)]
        body: BodyArgs,
        /// Replace only if the twin's current ETag is this one
        #[arg(long, value_name = "ETAG", conflicts_with = "if_none_match")]
        if_match: Option<String>,
        /// Create only: fail if the twin already exists (If-None-Match: *)
        #[arg(long)]
        if_none_match: bool,
    },
    /// Apply a JSON Patch (an array of operations) to a twin
    Patch {
        id: String,
        #[command(flatten)]
        body: BodyArgs,
        /// Patch only if the twin's current ETag is this one
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Delete a twin
    Delete {
        id: String,
        /// Delete only if the twin's current ETag is this one
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// List twins, optionally only those of one model
    List {
        /// Only twins of this model
        #[arg(long, value_name = "DTMI")]
        model: Option<String>,
        /// Stop after this many twins
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
}

/// Run a `twins` subcommand; returns the process exit code.
pub async fn run_twins(opts: &ClientOpts, cmd: TwinsCmd) -> anyhow::Result<i32> {
    Ok(report(twins(opts, cmd).await))
}

async fn twins(opts: &ClientOpts, cmd: TwinsCmd) -> Result<(), CliError> {
    let client = ApiClient::new(&opts.config())?;
    match cmd {
        TwinsCmd::Get { id } => {
            let twin = client
                .get_json(client.url(&["digitaltwins", &id], &[])?)
                .await?;
            print_json(&twin)
        }
        TwinsCmd::Put {
            id,
            model,
            body,
            if_match,
            if_none_match,
        } => {
            let twin = twin_body(body.read()?, model.as_deref())?;
            let preconditions = Preconditions {
                if_match,
                if_none_match_any: if_none_match,
            };
            let url = client.url(&["digitaltwins", &id], &[])?;
            let response = client
                .call(
                    Method::PUT,
                    url,
                    Some(RequestBody::Json(&twin)),
                    &preconditions,
                )
                .await?;
            print_json(&response.into_json()?)
        }
        TwinsCmd::Patch { id, body, if_match } => {
            let patch = match body.read()? {
                Some(patch @ Value::Array(_)) => patch,
                Some(_) => {
                    return Err(CliError::Usage(
                        "a twin patch must be a JSON Patch array, e.g. \
                         [{\"op\":\"replace\",\"path\":\"/temperature\",\"value\":21}]"
                            .to_owned(),
                    ))
                }
                None => {
                    return Err(CliError::Usage(
                        "twins patch needs the patch: --json '<array>' or --file <path|->"
                            .to_owned(),
                    ))
                }
            };
            let url = client.url(&["digitaltwins", &id], &[])?;
            let preconditions = Preconditions {
                if_match,
                if_none_match_any: false,
            };
            let response = client
                .call(
                    Method::PATCH,
                    url,
                    Some(RequestBody::JsonPatch(&patch)),
                    &preconditions,
                )
                .await?;
            match response.etag {
                Some(etag) => print_line(&format!("patched {id} etag {etag}")),
                None => print_line(&format!("patched {id}")),
            }
        }
        TwinsCmd::Delete { id, if_match } => {
            let url = client.url(&["digitaltwins", &id], &[])?;
            let preconditions = Preconditions {
                if_match,
                if_none_match_any: false,
            };
            client
                .call(Method::DELETE, url, None, &preconditions)
                .await?;
            print_line(&format!("deleted {id}"))
        }
        TwinsCmd::List { model, limit } => {
            let query: Vec<(&str, &str)> = match &model {
                Some(model) => {
                    check_dtmi(model)?;
                    vec![("model", model.as_str())]
                }
                None => Vec::new(),
            };
            let twins = client
                .get_all(client.url(&["digitaltwins"], &query)?, limit)
                .await?;
            print_json(&Value::Array(twins))
        }
    }
}

/// The twin document `twins put` sends: the body given (an object), with `model`
/// as `$metadata.$model` if given. A model alone makes a twin with no properties.
pub fn twin_body(body: Option<Value>, model: Option<&str>) -> Result<Value, CliError> {
    let mut twin = match body {
        Some(Value::Object(twin)) => twin,
        Some(_) => {
            return Err(CliError::Usage(
                "a twin must be a JSON object, e.g. {\"$metadata\":{\"$model\":\"dtmi:…;1\"}}"
                    .to_owned(),
            ))
        }
        None if model.is_some() => Map::new(),
        None => return Err(CliError::Usage(
            "twins put needs --model <DTMI> and/or a body (--json '<object>' or --file <path|->)"
                .to_owned(),
        )),
    };
    if let Some(model) = model {
        check_dtmi(model)?;
        let metadata = twin
            .entry("$metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(metadata) = metadata else {
            return Err(CliError::Usage(
                "the twin's \"$metadata\" must be a JSON object".to_owned(),
            ));
        };
        metadata.insert("$model".to_owned(), Value::String(model.to_owned()));
    }
    Ok(Value::Object(twin))
}

/// Refuse a malformed `--model` before asking the server.
fn check_dtmi(model: &str) -> Result<(), CliError> {
    if doppel_schemas::is_valid_dtmi(model) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--model {model:?} is not a valid DTMI (expected dtmi:<path>;<version>, e.g. dtmi:com:example:Room;1)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_alone_makes_an_empty_twin_of_that_model() {
        let twin = twin_body(None, Some("dtmi:com:ex:Room;1")).expect("twin");
        assert_eq!(twin, json!({"$metadata": {"$model": "dtmi:com:ex:Room;1"}}));
    }

    #[test]
    fn model_is_added_next_to_the_body_properties() {
        let twin =
            twin_body(Some(json!({"temp": 21.5})), Some("dtmi:com:ex:Room;1")).expect("twin");
        assert_eq!(
            twin,
            json!({"temp": 21.5, "$metadata": {"$model": "dtmi:com:ex:Room;1"}})
        );
    }

    #[test]
    fn model_flag_overrides_the_body_model_and_keeps_other_metadata() {
        let body = json!({"$metadata": {"$model": "dtmi:old:M;1", "temp": {"x": 1}}});
        let twin = twin_body(Some(body), Some("dtmi:new:M;2")).expect("twin");
        assert_eq!(
            twin,
            json!({"$metadata": {"$model": "dtmi:new:M;2", "temp": {"x": 1}}})
        );
    }

    #[test]
    fn body_without_model_is_sent_as_is() {
        let body = json!({"$metadata": {"$model": "dtmi:a:B;1"}, "n": 1});
        assert_eq!(twin_body(Some(body.clone()), None).expect("twin"), body);
    }

    #[test]
    fn bad_inputs_are_usage_errors() {
        let cases = [
            twin_body(None, None),
            twin_body(Some(json!([1])), None),
            twin_body(Some(json!({"$metadata": 3})), Some("dtmi:a:B;1")),
            twin_body(None, Some("Room")),
        ];
        for case in cases {
            assert_eq!(case.expect_err("usage").exit_code(), 2);
        }
    }
}
