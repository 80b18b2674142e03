//! The client commands of the `doppel` CLI: `doppel models|twins|rel|tokens …` talk to a
//! running node over its REST API through `doppel_client`.
//!
//! Layout, one concept per file:
//!
//! ```text
//!   run_models / run_twins / run_rel / run_tokens      (models.rs, twins.rs,
//!        │  parse args, build bodies (pure fns)          relationships.rs, tokens.rs)
//!        ▼
//!   doppel_client::ApiClient  one request → ApiResponse | ClientError;
//!        │                    get_all follows `nextLink` for every list command
//!        ▼
//!   output.rs prints pretty JSON / one-line results;  error.rs maps every
//!   failure to a message on stderr and a process exit code
//! ```
//!
//! Contract: every `run_*` returns the process exit code — 0 on success, 1 when the
//! server (or `models check`) rejected the request, 2 for usage or connection
//! problems — and has already printed the reason to stderr. The bearer token is sent
//! only to the origin of `--url`: `nextLink`s pointing elsewhere are rebased onto it.

mod body_input;
mod cluster;
mod devices;
mod error;
mod models;
mod output;
mod relationships;
mod tokens;
mod twins;

pub use cluster::{run_cluster, ClusterCmd};
pub use devices::{mqtt_credentials, run_devices, DevicesCmd};
pub use models::{run_models, ModelsCmd};
pub use relationships::{run_rel, RelCmd};
pub use tokens::{run_tokens, TokensCmd};
pub use twins::{run_twins, TwinsCmd};

/// Connection options shared by every client subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOpts {
    /// Server URL
    #[arg(
        long,
        env = "DOPPEL_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Bearer token; default: DOPPEL_TOKEN, else the contents of ./doppel-data/admin.token if it exists
    #[arg(long, env = "DOPPEL_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of a CA to trust for https URLs (e.g. the server's self-signed cert)
    #[arg(long, env = "DOPPEL_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// api-version sent with every request
    #[arg(long, default_value = doppel_client::DEFAULT_API_VERSION, global = true)]
    pub api_version: String,
}

impl ClientOpts {
    /// The client's settings from these options.
    pub fn config(&self) -> doppel_client::ClientConfig {
        doppel_client::ClientConfig {
            url: self.url.clone(),
            token: self.token.clone(),
            ca_cert: self.ca_cert.clone(),
            api_version: self.api_version.clone(),
        }
    }
}

#[cfg(test)]
mod cli_tests {
    //! The subcommands parse as documented (flags, repeatable options, conflicts).
    use super::tokens::Role;
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Top {
        #[command(subcommand)]
        Models(ModelsCmd),
        #[command(subcommand)]
        Twins(TwinsCmd),
        #[command(subcommand)]
        Rel(RelCmd),
        #[command(subcommand)]
        Tokens(TokensCmd),
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("doppel").chain(args.iter().copied()))
    }

    #[test]
    fn global_options_are_accepted_after_the_subcommand() {
        let cli = parse(&[
            "twins",
            "get",
            "t1",
            "--url",
            "https://h:1",
            "--token",
            "s",
            "--api-version",
            "v9",
        ])
        .expect("parses");
        assert_eq!(cli.opts.url, "https://h:1");
        assert_eq!(cli.opts.token.as_deref(), Some("s"));
        assert_eq!(cli.opts.api_version, "v9");
    }

    #[test]
    fn twins_put_takes_model_and_a_body_source() {
        let cli = parse(&[
            "twins",
            "put",
            "t1",
            "--model",
            "dtmi:a:b;1",
            "--json",
            "{}",
        ])
        .expect("parses");
        match cli.cmd {
            Top::Twins(TwinsCmd::Put {
                id, model, body, ..
            }) => {
                assert_eq!(id, "t1");
                assert_eq!(model.as_deref(), Some("dtmi:a:b;1"));
                assert_eq!(body.json.as_deref(), Some("{}"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn json_and_file_bodies_conflict() {
        assert!(parse(&["twins", "patch", "t1", "--json", "[]", "--file", "-"]).is_err());
    }

    #[test]
    fn token_roles_repeat_and_are_checked() {
        let cli = parse(&[
            "tokens", "create", "--name", "n", "--role", "reader", "--role", "writer",
        ])
        .expect("parses");
        match cli.cmd {
            Top::Tokens(TokensCmd::Create { roles, .. }) => {
                assert_eq!(roles, vec![Role::Reader, Role::Writer]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["tokens", "create", "--name", "n", "--role", "root"]).is_err());
    }

    #[test]
    fn rel_list_flags() {
        let cli =
            parse(&["rel", "list", "src", "--incoming", "--name", "contains"]).expect("parses");
        match cli.cmd {
            Top::Rel(RelCmd::List {
                source,
                incoming,
                name,
            }) => {
                assert_eq!(source, "src");
                assert!(incoming);
                assert_eq!(name.as_deref(), Some("contains"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn models_check_needs_files() {
        assert!(parse(&["models", "check"]).is_err());
        assert!(parse(&["models", "check", "--allow-undefined-extensions", "a.json"]).is_ok());
    }
}
