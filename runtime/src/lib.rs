//! doppel-runtime: the doppel node (REST API, auth, bootstrap) and the `doppel` CLI.

pub mod actors;
pub mod bench;
pub mod client;
pub mod config;
pub mod edge;
pub mod routing;
pub mod server;
pub mod tls;
