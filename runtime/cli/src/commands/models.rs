//! `doppel models upload|list|get|delete|decommission|check`: DTDL models, under
//! `/models`; `check` runs offline.
//!
//! Key items: [`ModelsCmd`], [`run_models`], and the pure helpers [`upload_body`]
//! and [`check_summary`].
//!
//! Contract: `upload` sends every document of every file in ONE request, so models
//! that reference each other are accepted together; if any file fails to load,
//! nothing is sent. `check` never touches the network (it needs no server, token or
//! CA) and exits 1 with one error per line on stderr when the models are invalid.

use super::error::{report, CliError};
use super::output::{print_json, print_line};
use super::ClientOpts;
use doppel_client::{ApiClient, Preconditions, RequestBody};
use doppel_schemas::{ModelError, ModelErrors};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Model commands.
#[derive(clap::Subcommand, Debug)]
pub enum ModelsCmd {
    /// Upload DTDL models (JSON, or YAML for .yaml/.yml), all files in one request
    Upload {
        /// Files holding one Interface or an array of them
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the models on the server
    List {
        /// Include each model's DTDL definition
        #[arg(long)]
        definitions: bool,
    },
    /// Print one model, with its definition
    Get { id: String },
    /// Delete a model (refused while twins or models use it)
    Delete { id: String },
    /// Mark a model decommissioned: no new twins of it
    Decommission { id: String },
    /// Check DTDL files offline, as one set
    Check {
        /// Accept @context extensions this parser does not know
        #[arg(long)]
        allow_undefined_extensions: bool,
        /// Files holding one Interface or an array of them
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Run a `models` subcommand; returns the process exit code.
pub async fn run_models(opts: &ClientOpts, cmd: ModelsCmd) -> anyhow::Result<i32> {
    Ok(report(models(opts, cmd).await))
}

async fn models(opts: &ClientOpts, cmd: ModelsCmd) -> Result<(), CliError> {
    // The client is built per arm: `check` must work with no server, token or CA.
    match cmd {
        ModelsCmd::Check {
            allow_undefined_extensions,
            files,
        } => check(&files, allow_undefined_extensions),
        ModelsCmd::Upload { files } => {
            let body = upload_body(&files)?;
            let client = ApiClient::new(&opts.config())?;
            let response = client
                .call(
                    Method::POST,
                    client.url(&["models"], &[])?,
                    Some(RequestBody::Json(&body)),
                    &Preconditions::default(),
                )
                .await?;
            print_json(&response.into_json()?)
        }
        ModelsCmd::List { definitions } => {
            let client = ApiClient::new(&opts.config())?;
            let query: &[(&str, &str)] = if definitions {
                &[("includeModelDefinition", "true")]
            } else {
                &[]
            };
            let models = client
                .get_all(client.url(&["models"], query)?, None)
                .await?;
            print_json(&Value::Array(models))
        }
        ModelsCmd::Get { id } => {
            let client = ApiClient::new(&opts.config())?;
            let url = client.url(&["models", &id], &[("includeModelDefinition", "true")])?;
            print_json(&client.get_json(url).await?)
        }
        ModelsCmd::Delete { id } => {
            let client = ApiClient::new(&opts.config())?;
            let url = client.url(&["models", &id], &[])?;
            client
                .call(Method::DELETE, url, None, &Preconditions::default())
                .await?;
            print_line(&format!("deleted {id}"))
        }
        ModelsCmd::Decommission { id } => {
            let client = ApiClient::new(&opts.config())?;
            let url = client.url(&["models", &id], &[])?;
            client
                .call(
                    Method::PATCH,
                    url,
                    Some(RequestBody::JsonPatch(&decommission_patch())),
                    &Preconditions::default(),
                )
                .await?;
            print_line(&format!("decommissioned {id}"))
        }
    }
}

/// `models check`: parse all files together, print a one-line summary.
fn check(files: &[PathBuf], allow_undefined_extensions: bool) -> Result<(), CliError> {
    #[allow(clippy::needless_update)] // ParseOptions grows; options not exposed keep defaults
    let options = doppel_schemas::ParseOptions {
        allow_undefined_extensions,
        ..Default::default()
    };
    let ids =
        doppel_schemas::check::check_files(files, &options).map_err(CliError::InvalidModels)?;
    print_line(&check_summary(&ids))
}

/// `ok: N interfaces (id, id, …)`.
pub fn check_summary(ids: &[String]) -> String {
    format!("ok: {} interfaces ({})", ids.len(), ids.join(", "))
}

/// All documents of all `files`, flattened into the one array `POST /models` takes.
/// Load errors of every file are reported together.
pub fn upload_body(files: &[PathBuf]) -> Result<Value, CliError> {
    let mut documents = Vec::new();
    let mut errors: Vec<ModelError> = Vec::new();
    for file in files {
        match doppel_schemas::check::load_documents(file) {
            Ok(docs) => documents.extend(docs),
            Err(e) => errors.extend(e.0),
        }
    }
    if !errors.is_empty() {
        return Err(CliError::InvalidModels(ModelErrors(errors)));
    }
    if documents.is_empty() {
        return Err(CliError::Usage(
            "the files given hold no DTDL documents".to_owned(),
        ));
    }
    Ok(Value::Array(documents))
}

/// The JSON Patch that decommissions a model.
fn decommission_patch() -> Value {
    json!([{"op": "replace", "path": "/decommissioned", "value": true}])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(id: &str) -> Value {
        json!({"@id": id, "@type": "Interface", "@context": "dtmi:dtdl:context;3"})
    }

    #[test]
    fn upload_flattens_arrays_and_single_documents_across_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = dir.path().join("one.json");
        let many = dir.path().join("many.json");
        let yaml = dir.path().join("three.yaml");
        std::fs::write(&one, interface("dtmi:a:A;1").to_string()).expect("write");
        std::fs::write(
            &many,
            json!([interface("dtmi:a:B;1"), interface("dtmi:a:C;1")]).to_string(),
        )
        .expect("write");
        std::fs::write(
            &yaml,
            "'@id': 'dtmi:a:D;1'\n'@type': Interface\n'@context': 'dtmi:dtdl:context;3'\n",
        )
        .expect("write");
        let body = upload_body(&[one, many, yaml]).expect("body");
        let ids: Vec<&str> = body
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|d| d["@id"].as_str())
            .collect();
        assert_eq!(
            ids,
            vec!["dtmi:a:A;1", "dtmi:a:B;1", "dtmi:a:C;1", "dtmi:a:D;1"]
        );
    }

    #[test]
    fn upload_reports_every_bad_file_and_sends_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{oops").expect("write");
        let missing = dir.path().join("missing.json");
        let err = upload_body(&[bad, missing]).expect_err("invalid");
        let CliError::InvalidModels(errors) = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(errors.0.len(), 2);
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn upload_of_an_empty_array_is_a_usage_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, "[]").expect("write");
        assert_eq!(upload_body(&[empty]).expect_err("empty").exit_code(), 2);
    }

    #[test]
    fn check_summary_lists_the_ids() {
        assert_eq!(
            check_summary(&["dtmi:a:A;1".to_owned(), "dtmi:a:B;1".to_owned()]),
            "ok: 2 interfaces (dtmi:a:A;1, dtmi:a:B;1)"
        );
    }

    #[test]
    fn decommission_replaces_the_flag() {
        assert_eq!(
            decommission_patch(),
            json!([{"op": "replace", "path": "/decommissioned", "value": true}])
        );
    }
}
