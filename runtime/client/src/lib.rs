//! doppel-client: the Rust client of a doppel node's REST API (Azure Digital Twins
//! data-plane paths). Apps, the `doppel` CLI, the demo and the test harness use it.
//!
//! ```text
//!   ApiClient (http.rs) ── TLS config (tls.rs), bearer token (credentials.rs)
//!        │  one request → ApiResponse | ClientError (error.rs)
//!        ▼
//!   collect_pages (paging.rs) follows `nextLink` for every list
//!   RawRequest (raw.rs): any path, header and body; every status is an answer
//!   EventStream (events.rs): server-sent events as (type, JSON data)
//! ```
//!
//! Contract: the bearer token is sent only to the origin of the configured URL:
//! `nextLink`s pointing elsewhere are rebased onto it, and redirects are not followed.
//! Every URL carries `api-version`; path segments are percent-encoded.

mod credentials;
mod error;
pub mod events;
mod http;
mod paging;
pub mod raw;
mod tls;

pub use credentials::{resolve_token, DEFAULT_TOKEN_FILE};
pub use error::ClientError;
pub use events::{Event, EventStream};
pub use http::{
    api_error, encode_segment, endpoint_url, next_link_url, parse_base_url, ApiClient, ApiResponse,
    Preconditions, RequestBody,
};
pub use paging::{collect_pages, parse_page, Page};
pub use raw::{RawRequest, RawResponse};
pub use tls::client_tls_config;

/// Where and how to reach a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Base URL of the node's REST API (`http://127.0.0.1:8080`).
    pub url: String,
    /// Bearer token; `None`: the contents of [`DEFAULT_TOKEN_FILE`] if it exists.
    pub token: Option<String>,
    /// PEM file of a CA to trust for https URLs (the server's certificate or its CA).
    pub ca_cert: Option<std::path::PathBuf>,
    /// `api-version` sent with every request.
    pub api_version: String,
}

/// The `api-version` sent unless told otherwise.
pub const DEFAULT_API_VERSION: &str = "2023-10-31";

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            url: "http://127.0.0.1:8080".into(),
            token: None,
            ca_cert: None,
            api_version: DEFAULT_API_VERSION.into(),
        }
    }
}
