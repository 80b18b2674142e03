//! `doppel rel put|list|get|delete`: relationships between twins, under
//! `/digitaltwins/{source}/relationships` (and `/incomingrelationships`).
//!
//! Key items: [`RelCmd`], [`run_rel`], and the pure body builder [`relationship_body`].
//!
//! Contract: `put` sends `--props` plus `$targetId` and `$relationshipName` (the flags
//! win over same-named keys in `--props`). `list --incoming` reads the target's
//! incoming relationships; `--name` then filters them here, since the endpoint takes
//! no name filter.

use super::error::{report, CliError};
use super::output::{print_json, print_line};
use super::ClientOpts;
use doppel_client::{ApiClient, Preconditions, RequestBody};
use reqwest::Method;
use serde_json::{Map, Value};

/// Relationship commands.
#[derive(clap::Subcommand, Debug)]
pub enum RelCmd {
    /// Create or replace a relationship from SOURCE
    Put {
        /// Source twin id
        source: String,
        /// Relationship id (unique among SOURCE's relationships)
        rel_id: String,
        /// Target twin id
        #[arg(long)]
        target: String,
        /// Relationship name, as declared in the source's model
        #[arg(long)]
        name: String,
        /// Relationship properties, as a JSON object
        #[arg(long, value_name = "JSON")]
        props: Option<String>,
    },
    /// List the relationships of a twin (outgoing, or with --incoming those pointing to it)
    List {
        /// Twin id
        source: String,
        /// List relationships that target this twin instead
        #[arg(long)]
        incoming: bool,
        /// Only relationships with this name
        #[arg(long)]
        name: Option<String>,
    },
    /// Print one relationship
    Get { source: String, rel_id: String },
    /// Delete one relationship
    Delete { source: String, rel_id: String },
}

/// Run a `rel` subcommand; returns the process exit code.
pub async fn run_rel(opts: &ClientOpts, cmd: RelCmd) -> anyhow::Result<i32> {
    Ok(report(rel(opts, cmd).await))
}

async fn rel(opts: &ClientOpts, cmd: RelCmd) -> Result<(), CliError> {
    let client = ApiClient::new(&opts.config())?;
    match cmd {
        RelCmd::Put {
            source,
            rel_id,
            target,
            name,
            props,
        } => {
            let body = relationship_body(&target, &name, props.as_deref())?;
            let url = client.url(&["digitaltwins", &source, "relationships", &rel_id], &[])?;
            let response = client
                .call(
                    Method::PUT,
                    url,
                    Some(RequestBody::Json(&body)),
                    &Preconditions::default(),
                )
                .await?;
            print_json(&response.into_json()?)
        }
        RelCmd::List {
            source,
            incoming,
            name,
        } => {
            let relationships = if incoming {
                let url = client.url(&["digitaltwins", &source, "incomingrelationships"], &[])?;
                let all = client.get_all(url, None).await?;
                match &name {
                    Some(name) => filter_by_name(all, name),
                    None => all,
                }
            } else {
                let query: Vec<(&str, &str)> = name
                    .as_deref()
                    .map(|n| ("relationshipName", n))
                    .into_iter()
                    .collect();
                let url = client.url(&["digitaltwins", &source, "relationships"], &query)?;
                client.get_all(url, None).await?
            };
            print_json(&Value::Array(relationships))
        }
        RelCmd::Get { source, rel_id } => {
            let url = client.url(&["digitaltwins", &source, "relationships", &rel_id], &[])?;
            print_json(&client.get_json(url).await?)
        }
        RelCmd::Delete { source, rel_id } => {
            let url = client.url(&["digitaltwins", &source, "relationships", &rel_id], &[])?;
            client
                .call(Method::DELETE, url, None, &Preconditions::default())
                .await?;
            print_line(&format!("deleted {rel_id}"))
        }
    }
}

/// The body of `rel put`: the `--props` object with `$targetId` and
/// `$relationshipName` set.
pub fn relationship_body(target: &str, name: &str, props: Option<&str>) -> Result<Value, CliError> {
    let mut body = match props.map(serde_json::from_str::<Value>) {
        None => Map::new(),
        Some(Ok(Value::Object(props))) => props,
        Some(Ok(_)) => {
            return Err(CliError::Usage(
                "--props must be a JSON object, e.g. {\"since\":\"2024-01-01\"}".to_owned(),
            ))
        }
        Some(Err(e)) => return Err(CliError::Usage(format!("--props is not valid JSON: {e}"))),
    };
    body.insert("$targetId".to_owned(), Value::String(target.to_owned()));
    body.insert(
        "$relationshipName".to_owned(),
        Value::String(name.to_owned()),
    );
    Ok(Value::Object(body))
}

/// Keep the relationships whose `$relationshipName` is `name`.
fn filter_by_name(relationships: Vec<Value>, name: &str) -> Vec<Value> {
    relationships
        .into_iter()
        .filter(|r| r.get("$relationshipName").and_then(Value::as_str) == Some(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_without_props_has_target_and_name() {
        assert_eq!(
            relationship_body("room1", "contains", None).expect("body"),
            json!({"$targetId": "room1", "$relationshipName": "contains"})
        );
    }

    #[test]
    fn props_are_merged_and_flags_win() {
        let body = relationship_body(
            "room1",
            "contains",
            Some(r#"{"since": 2024, "$targetId": "other"}"#),
        )
        .expect("body");
        assert_eq!(
            body,
            json!({"since": 2024, "$targetId": "room1", "$relationshipName": "contains"})
        );
    }

    #[test]
    fn props_must_be_a_json_object() {
        for props in ["[1]", "{oops", "3"] {
            let err = relationship_body("t", "n", Some(props)).expect_err(props);
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn incoming_relationships_filter_by_name() {
        let all = vec![
            json!({"$relationshipId": "r1", "$relationshipName": "contains"}),
            json!({"$relationshipId": "r2", "$relationshipName": "feeds"}),
            json!({"$relationshipId": "r3"}),
        ];
        let kept = filter_by_name(all, "contains");
        assert_eq!(
            kept,
            vec![json!({"$relationshipId": "r1", "$relationshipName": "contains"})]
        );
    }
}
