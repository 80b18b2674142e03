//! The HTTP edge: Azure-Digital-Twins-style data-plane paths over one node.
//!
//! ```text
//!  request ─▶ routing (to the group's leader) ─▶ Caller (auth) ─▶ handler ─┬─ read:  doppel_twins (committed storage) ─▶ JSON
//!                                                                         └─ write: Command ─▶ dispatch / coordination ─▶ JSON
//! ```
//!
//! Handlers parse, call the node and map results ([`api_error`] is the one mapping
//! from errors to statuses); they never change state themselves: every change is a
//! `doppel_twins::Command` handed to [`crate::dispatch`] or [`crate::coordination`]
//! (or the proposer / twin actors of this node, which routing made the leader). Reads
//! go straight to committed storage, which after an acknowledged write already holds
//! it (read-your-writes).

pub mod api_error;
pub mod auth;
pub mod body;
mod cluster_api;
mod commands_api;
mod devices_api;
mod events_api;
pub mod extract;
#[cfg(feature = "failpoints")]
mod failpoints_api;
pub mod headers;
mod models_api;
pub mod paging;
mod relationships_api;
pub mod routing;
mod tokens_api;
mod twins_api;

use crate::node::Node;
use axum::routing::get;
use axum::Router;
use doppel_twins::ErrorCode;

pub fn router(state: Node) -> Router {
    let routes = Router::new();
    // Test builds only: a build without the feature has no failpoints to set.
    #[cfg(feature = "failpoints")]
    let routes = routes.merge(failpoints_api::routes());
    routes
        .route("/healthz", get(healthz))
        .merge(models_api::routes())
        .merge(twins_api::routes())
        .merge(relationships_api::routes())
        .merge(tokens_api::routes())
        .merge(events_api::routes())
        .merge(devices_api::routes())
        .merge(commands_api::routes())
        .merge(cluster_api::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routing::route_to_leader,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn not_found(uri: axum::http::Uri) -> api_error::ApiError {
    api_error::ApiError::new(
        ErrorCode::NotFound,
        format!("no such endpoint: {}", uri.path()),
    )
}

/// Serves `app` on `listener` (HTTPS when the node has a certificate) until `shutdown`
/// resolves; streams end when the node's `stopping` flag turns.
pub async fn serve(
    node: &Node,
    app: Router,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let config = node.config.clone();
    let stopping = node.stopping.clone();
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.send_replace(true);
        h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = crate::tls::server_config(cert, key)?;
            axum_server::from_tcp_rustls(
                listener,
                axum_server::tls_rustls::RustlsConfig::from_config(tls),
            )?
            .handle(handle)
            .serve(app.into_make_service())
            .await?;
        }
        _ => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(app.into_make_service())
                .await?;
        }
    }
    Ok(())
}
