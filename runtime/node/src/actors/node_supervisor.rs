//! The node supervisor: the root of the node's actor tree. It spawns one tenant
//! supervisor per tenant on first use and drops a tenant supervisor that dies (its
//! hosts and twins are closed and stopped with it; the next request spawns a fresh one,
//! which waits for the old hosts' running operations before re-reading any twin).
//!
//! Tenant supervisors are not passivated: one per tenant in use is small (a tenant's
//! twin hosts retire when they have no twins left).

use super::directory::{HostShared, TenantDirectory, TenantEntry, TenantShared};
use super::error::ActorError;
use super::messages::NodeMsg;
use super::tenant_supervisor::{TenantArgs, TenantSupervisor};
use super::TwinEnv;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;

pub struct NodeArgs {
    pub tenants: Arc<TenantDirectory>,
}

pub struct NodeState {
    tenants: Arc<TenantDirectory>,
    by_actor: HashMap<ActorId, String>,
    /// Hosts of dead tenant supervisors, handed to their successors.
    orphans: HashMap<String, HashMap<u32, Arc<HostShared>>>,
}

pub struct NodeSupervisor {
    pub(super) env: Arc<TwinEnv>,
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<NodeMsg>,
        args: NodeArgs,
    ) -> Result<NodeState, ActorProcessingErr> {
        Ok(NodeState {
            tenants: args.tenants,
            by_actor: HashMap::new(),
            orphans: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Tenant { tenant, reply } => {
                if let Some(entry) = state.tenants.get(&tenant) {
                    let _ = reply.send(Ok(entry));
                    return Ok(());
                }
                let shared = Arc::new(TenantShared::new(
                    tenant.clone(),
                    self.env.epoch,
                    self.env.settings.intensity,
                ));
                let sup = TenantSupervisor {
                    env: self.env.clone(),
                };
                let mut retiring = state.orphans.remove(&tenant).unwrap_or_default();
                retiring.retain(|_, h| h.running() > 0);
                let args = TenantArgs {
                    shared: shared.clone(),
                    retiring,
                };
                let answer = match Actor::spawn_linked(None, sup, args, myself.get_cell()).await {
                    Ok((actor, _join)) => {
                        let entry = TenantEntry { actor, shared };
                        state.by_actor.insert(entry.actor.get_id(), tenant.clone());
                        state.tenants.insert(tenant, entry.clone());
                        Ok(entry)
                    }
                    Err(e) => Err(ActorError::Unavailable(format!(
                        "cannot start the supervisor of tenant '{tenant}': {e}"
                    ))),
                };
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<NodeMsg>,
        event: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _)
            | SupervisionEvent::ActorFailed(cell, _) => {
                if let Some(tenant) = state.by_actor.remove(&cell.get_id()) {
                    tracing::error!(tenant = %tenant, "tenant supervisor stopped; its twins are stopped and will be re-activated on use");
                    if let Some(old) = state.tenants.remove(&tenant) {
                        let running: HashMap<u32, Arc<HostShared>> = old
                            .shared
                            .close_all()
                            .into_iter()
                            .filter(|h| h.running() > 0)
                            .map(|h| (h.shard, h))
                            .collect();
                        if !running.is_empty() {
                            state.orphans.insert(tenant, running);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<NodeMsg>,
        _state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children(Some("node stopping".into()));
        Ok(())
    }
}
