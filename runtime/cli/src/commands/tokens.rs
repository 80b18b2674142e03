//! `doppel tokens create|list|revoke`: API tokens, under `/tokens`.
//!
//! Key items: [`TokensCmd`], [`Role`], [`run_tokens`], and the pure body builder
//! [`token_request_body`].
//!
//! Contract: `create` prints the server's answer, which holds the token secret; the
//! server shows it only this once, so the CLI says so on stderr (stdout stays
//! machine-readable JSON).

use super::error::{report, CliError};
use super::output::{print_json, print_line};
use super::ClientOpts;
use doppel_client::{ApiClient, Preconditions, RequestBody};
use reqwest::Method;
use serde_json::{json, Value};

/// What a token may do.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read access
    Reader,
    /// Write access
    Writer,
    /// Administers its tenant (e.g. its tokens)
    Admin,
    /// Acts across tenants (e.g. creates tokens for other tenants)
    Operator,
}

impl Role {
    /// The role's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Writer => "writer",
            Self::Admin => "admin",
            Self::Operator => "operator",
        }
    }
}

/// Token commands.
#[derive(clap::Subcommand, Debug)]
pub enum TokensCmd {
    /// Create a token and print it (the secret is shown only once)
    Create {
        /// A name to recognise the token by
        #[arg(long)]
        name: String,
        /// A role of the token (repeat for several)
        #[arg(long = "role", value_name = "ROLE", required = true)]
        roles: Vec<Role>,
        /// The tenant the token is limited to
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List tokens (without their secrets)
    List,
    /// Revoke a token
    Revoke { id: String },
}

/// Run a `tokens` subcommand; returns the process exit code.
pub async fn run_tokens(opts: &ClientOpts, cmd: TokensCmd) -> anyhow::Result<i32> {
    Ok(report(tokens(opts, cmd).await))
}

async fn tokens(opts: &ClientOpts, cmd: TokensCmd) -> Result<(), CliError> {
    let client = ApiClient::new(&opts.config())?;
    match cmd {
        TokensCmd::Create {
            name,
            roles,
            tenant,
        } => {
            let body = token_request_body(&name, &roles, tenant.as_deref());
            let response = client
                .call(
                    Method::POST,
                    client.url(&["tokens"], &[])?,
                    Some(RequestBody::Json(&body)),
                    &Preconditions::default(),
                )
                .await?;
            print_json(&response.into_json()?)?;
            eprintln!("note: the \"token\" secret above is shown only once; store it now");
            Ok(())
        }
        TokensCmd::List => {
            let tokens = client.get_all(client.url(&["tokens"], &[])?, None).await?;
            print_json(&Value::Array(tokens))
        }
        TokensCmd::Revoke { id } => {
            client
                .call(
                    Method::DELETE,
                    client.url(&["tokens", &id], &[])?,
                    None,
                    &Preconditions::default(),
                )
                .await?;
            print_line(&format!("revoked {id}"))
        }
    }
}

/// The body of `POST /tokens`; roles are sent once each, in the order given.
pub fn token_request_body(name: &str, roles: &[Role], tenant: Option<&str>) -> Value {
    let mut names: Vec<&str> = Vec::new();
    for role in roles {
        if !names.contains(&role.as_str()) {
            names.push(role.as_str());
        }
    }
    let mut body = json!({ "name": name, "roles": names });
    if let (Some(tenant), Value::Object(object)) = (tenant, &mut body) {
        object.insert("tenant".to_owned(), Value::String(tenant.to_owned()));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn body_has_name_roles_and_optional_tenant() {
        assert_eq!(
            token_request_body("ci", &[Role::Writer], None),
            json!({"name": "ci", "roles": ["writer"]})
        );
        assert_eq!(
            token_request_body(
                "ci",
                &[Role::Reader, Role::Admin, Role::Reader],
                Some("acme")
            ),
            json!({"name": "ci", "roles": ["reader", "admin"], "tenant": "acme"})
        );
    }

    #[test]
    fn api_names_match_the_cli_names() {
        for role in Role::value_variants() {
            let cli = role.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(cli.as_deref(), Some(role.as_str()));
        }
    }
}
