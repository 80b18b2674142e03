//! The tenant supervisor: spawns its tenant's twin hosts (one per data shard in use)
//! and supervises them.
//!
//! ```text
//!  Host(shard) ──▶ active ─▶ Ok(host)
//!               ├─ a failed predecessor still has operations running ─▶ answer once
//!               │  they have ended (no twin is re-read while its old command may commit)
//!               └─ spawn_linked(TwinHost) ─▶ Ok(host)
//!
//!  host failed ──▶ close its twins' gates, drop it from the directory (its twins are
//!                  re-activated from storage on their next use, in a new host)
//!                  └─ count against the tenant's restart budget ─▶ maybe suspend
//!  host stopped (retired: no twins left) ──▶ drop it from the directory
//! ```
//!
//! Twin failures are a host's business (it catches a twin's panic, fails that twin
//! alone, and restarts it); the budget they count against is the tenant's, kept in
//! [`TenantShared`] so that all its hosts and this supervisor share it. ractor has no
//! restart strategy of its own; this and [`super::twin_host`] are it.

use super::directory::{HostEntry, HostShared, TenantShared};
use super::error::ActorError;
use super::messages::TenantMsg;
use super::twin_host::{HostArgs, TwinHost};
use super::TwinEnv;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

pub struct TenantArgs {
    pub shared: Arc<TenantShared>,
    /// Hosts of a previous supervisor of this tenant whose operations may still run.
    pub retiring: HashMap<u32, Arc<HostShared>>,
}

pub struct TenantState {
    pub shared: Arc<TenantShared>,
    /// Which shard each live child host serves, and its directory.
    by_actor: HashMap<ActorId, Arc<HostShared>>,
    /// Failed hosts whose operations were still running, by shard.
    retiring: HashMap<u32, Arc<HostShared>>,
}

pub struct TenantSupervisor {
    pub(super) env: Arc<TwinEnv>,
}

impl TenantSupervisor {
    async fn spawn_host(
        &self,
        myself: &ActorRef<TenantMsg>,
        state: &mut TenantState,
        shard: u32,
    ) -> Result<HostEntry, ActorError> {
        let shared = Arc::new(HostShared::new(shard));
        let host = TwinHost {
            env: self.env.clone(),
        };
        let args = HostArgs {
            tenant: state.shared.clone(),
            shared: shared.clone(),
        };
        match Actor::spawn_linked(None, host, args, myself.get_cell()).await {
            Ok((actor, _join)) => {
                let entry = HostEntry { actor, shared };
                state
                    .by_actor
                    .insert(entry.actor.get_id(), entry.shared.clone());
                state.shared.insert_host(shard, entry.clone());
                Ok(entry)
            }
            Err(e) => Err(ActorError::Unavailable(format!(
                "cannot start the twin host of tenant '{}' for shard {shard}: {e}",
                state.shared.name
            ))),
        }
    }
}

impl Actor for TenantSupervisor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<TenantMsg>,
        args: TenantArgs,
    ) -> Result<TenantState, ActorProcessingErr> {
        Ok(TenantState {
            shared: args.shared,
            by_actor: HashMap::new(),
            retiring: args.retiring,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TenantMsg>,
        msg: TenantMsg,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TenantMsg::Host { shard, reply } => {
                if let Some(host) = state.shared.host(shard) {
                    let _ = reply.send(Ok(host));
                    return Ok(());
                }
                if let Some(old) = state.retiring.get(&shard) {
                    if old.running() > 0 {
                        // Ask again once the failed host's last operation has ended.
                        let (old, me) = (old.clone(), myself.clone());
                        tokio::spawn(async move {
                            old.drained().await;
                            let _ = me.send_message(TenantMsg::Host { shard, reply });
                        });
                        return Ok(());
                    }
                    state.retiring.remove(&shard);
                }
                let answer = self.spawn_host(&myself, state, shard).await;
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<TenantMsg>,
        event: SupervisionEvent,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(host) = state.by_actor.remove(&cell.get_id()) {
                    state.shared.remove_host_if(host.shard, cell.get_id());
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(host) = state.by_actor.remove(&cell.get_id()) else {
                    return Ok(());
                };
                state.shared.remove_host_if(host.shard, cell.get_id());
                // Callers still holding its twins' slots look them up again; while its
                // operations run, no replacement host re-reads its twins.
                host.close_all();
                if host.running() > 0 {
                    state.retiring.insert(host.shard, host.clone());
                }
                tracing::warn!(tenant = %state.shared.name, shard = host.shard, error = %error,
                    "twin host failed; its twins will be re-activated from durable state on use");
                state.shared.record_failure(
                    &format!("twin host of shard {}", host.shard),
                    Instant::now(),
                );
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<TenantMsg>,
        _state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children(Some("tenant supervisor stopping".into()));
        Ok(())
    }
}
