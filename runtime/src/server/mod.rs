//! The REST API: Azure-Digital-Twins-style data-plane paths over one node's state.
//!
//! ```text
//!  request ─▶ Caller (auth) ─▶ handler ─┬─ read:  Storage (StateRead) ─▶ JSON
//!                                       ├─ write: Command ─▶ Proposer ─▶ fsync ─▶ JSON
//!                                       └─ twin write: Command ─▶ twin actor ─▶ Proposer ─▶ …
//! ```
//!
//! Handlers never change state themselves: every change is a `doppel_twins::Command`
//! handed to the [`Proposer`]. Reads go straight to committed storage, which after an
//! acknowledged write already holds it (read-your-writes on one node).

pub mod api_error;
pub mod auth;
pub mod body;
mod bootstrap;
mod cluster_api;
mod commands_api;
mod deletion;
mod devices_api;
mod events_api;
pub mod extract;
mod models_api;
pub mod paging;
mod relationships_api;
mod tokens_api;
mod twins_api;

use crate::actors::TwinActors;
use crate::config::NodeConfig;
use axum::routing::get;
use axum::Router;
use doppel_cluster::{Proposer, Storage, StorageConfig};
use std::sync::Arc;

pub use bootstrap::ADMIN_TOKEN_FILE;

#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub proposer: Proposer,
    /// The twin actors; twin write handlers go through them (see `crate::actors`).
    pub twins: TwinActors,
    /// The device edge's connected devices and pending direct-method calls.
    pub devices: crate::edge::DeviceLink,
    /// Turns true when the server starts shutting down: long-lived responses (event
    /// streams) end then, so a graceful stop does not wait for watchers to hang up.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    pub config: Arc<NodeConfig>,
    pub shard_count: u32,
    pub tls: bool,
}

/// A node opened on its data directory, ready to serve.
pub struct Node {
    pub state: AppState,
    /// The admin token, when this start created it.
    pub created_admin_token: Option<String>,
}

impl Node {
    pub async fn open(config: NodeConfig) -> anyhow::Result<Node> {
        let storage = Storage::open(
            &config.data_dir.join("db"),
            config.shard_count,
            &StorageConfig {
                sync: true,
                block_cache_mb: config.block_cache_mb,
            },
        )?;
        let proposer = Proposer::start(
            storage.clone(),
            config.cluster_config()?,
            config.write_queue,
            config.max_commit_batch,
        )
        .await?;
        let twins = TwinActors::start(
            storage.clone(),
            proposer.clone(),
            config.shard_count,
            config.actor_settings(),
        )
        .await?;
        let state = AppState {
            storage,
            proposer,
            twins,
            devices: Default::default(),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            shard_count: config.shard_count,
            tls: config.tls_cert.is_some(),
            config: Arc::new(config),
        };
        state
            .proposer
            .cluster()
            .set_forward_handler(Arc::new(crate::routing::Forwarder {
                state: state.clone(),
                router: router(state.clone()),
            }));
        follow_leadership(&state);
        // A joining node gets tenants and tokens from the cluster it joins.
        let created_admin_token = if state.config.join.is_empty() {
            bootstrap::first_start(&state).await?
        } else {
            None
        };
        Ok(Node {
            state,
            created_admin_token,
        })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
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
            crate::routing::route_to_leader,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn not_found(uri: axum::http::Uri) -> api_error::ApiError {
    api_error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "NotFound",
        format!("no such endpoint: {}", uri.path()),
    )
}

/// Serves the API until `shutdown` resolves.
pub async fn serve(
    node: Node,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let config = node.state.config.clone();
    let stopping = node.state.stopping.clone();
    let app = node.router();
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

/// Twin actors live on their shard's leader: whenever this node gains or loses the
/// leadership of a data shard, that shard's active twins are dropped, so no actor keeps
/// a copy from another reign (they re-activate from storage on their next request,
/// which only a leader that has applied its predecessors' entries takes).
fn follow_leadership(state: &AppState) {
    let cluster = state.proposer.cluster().clone();
    let me = cluster.node_id();
    for shard in 0..state.shard_count {
        let Some(raft) = cluster.raft(shard) else {
            continue;
        };
        let mut rx = raft.metrics();
        let twins = state.twins.clone();
        tokio::spawn(async move {
            let mut leading = rx.borrow_and_update().current_leader == Some(me);
            while rx.changed().await.is_ok() {
                let now = rx.borrow_and_update().current_leader == Some(me);
                if now != leading {
                    tracing::info!(
                        shard,
                        leading = now,
                        "shard leadership moved; its twin actors are dropped"
                    );
                    twins.passivate_shard(shard);
                    leading = now;
                }
            }
        });
    }
}
