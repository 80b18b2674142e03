//! [`TwinActors`]: the handle request handlers use to have a twin carry out one of the
//! twin's commands.
//!
//! ```text
//!  execute(cmd) ─▶ tenant entry (directory; else NodeMsg::Tenant)
//!               ─▶ suspended? ─▶ Err(TenantSuspended)                   (fail fast, no hop)
//!               ─▶ twin host of the twin's shard (directory; else TenantMsg::Host)
//!               ─▶ twin slot (directory; else HostMsg::Activate)
//!               ─▶ gate.try_enter(limit) ─ Full ─▶ Err(TwinOverloaded)    (never queue)
//!                                         ─ Closed (passivated/failed/draining) ─▶ look up again
//!               ─▶ HostMsg::Run(Execute) ─▶ host ─▶ (twin's turn) ─▶ Proposer ─▶ Outcome
//! ```

use super::directory::{HostEntry, TenantDirectory, TenantEntry, TwinHandle};
use super::error::ActorError;
use super::mailbox_gate::Admission;
use super::messages::{HostMsg, NodeMsg, TenantMsg, TwinOp};
use super::node_supervisor::{NodeArgs, NodeSupervisor};
use super::{ActorSettings, TwinEnv};
use doppel_cluster::{Proposer, Storage};
use doppel_twins::keys::shard_of;
use doppel_twins::{Command, Outcome};
use ractor::{Actor, ActorRef, MessagingErr};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// How often a request looks for a live twin before giving up (each miss means the
/// twin or host it found had just passivated, retired or failed).
const ATTEMPTS: usize = 5;

/// The twin's tenant and id, for commands that act on one twin.
pub fn twin_target(cmd: &Command) -> Option<(&str, &str)> {
    cmd.twin()
}

#[derive(Clone)]
pub struct TwinActors {
    node: ActorRef<NodeMsg>,
    pub(super) tenants: Arc<TenantDirectory>,
    env: Arc<TwinEnv>,
}

impl TwinActors {
    /// Starts the node supervisor. Twins propose through `proposer` and activate from
    /// `storage`.
    pub async fn start(
        storage: Storage,
        proposer: Proposer,
        shard_count: u32,
        settings: ActorSettings,
    ) -> Result<Self, ActorError> {
        let env = Arc::new(TwinEnv {
            storage,
            proposer,
            shard_count,
            settings,
            epoch: Instant::now(),
        });
        let tenants = Arc::new(TenantDirectory::default());
        let sup = NodeSupervisor { env: env.clone() };
        let args = NodeArgs {
            tenants: tenants.clone(),
        };
        let (node, _join) = Actor::spawn(None, sup, args)
            .await
            .map_err(|e| ActorError::Unavailable(format!("node supervisor: {e}")))?;
        Ok(TwinActors { node, tenants, env })
    }

    /// Stops the whole tree (tests; the process exit does it for `doppel serve`).
    pub fn stop(&self) {
        self.node.stop(Some("node stopping".into()));
    }

    /// Active twins on this node.
    pub fn active_twins(&self) -> usize {
        self.tenants.active_twins()
    }

    /// Drops every active twin of data shard `shard`, of every tenant (this node no
    /// longer leads the shard). New requests stop reaching the current activations at
    /// once; requests already admitted are still answered, and each twin is dropped as
    /// soon as it has nothing in flight. Later requests re-activate the twin from
    /// storage (only after its old activation is gone).
    pub fn passivate_shard(&self, shard: u32) {
        for tenant in self.tenants.all() {
            if let Some(host) = tenant.shared.host(shard) {
                host.shared.drain_all();
                // A host that has just retired has no twins left to drop.
                let _ = host.actor.send_message(HostMsg::DropDraining);
            }
        }
    }

    /// Has the twin propose `cmd` (a twin command) and returns the outcome.
    pub async fn execute(&self, cmd: Command) -> Result<Outcome, ActorError> {
        let Some((tenant, twin)) = twin_target(&cmd) else {
            return Err(ActorError::NotATwinCommand {
                tenant: cmd.tenant().to_owned(),
            });
        };
        let (tenant, twin) = (tenant.to_owned(), twin.to_owned());
        let mut cmd = Box::new(cmd);
        for _ in 0..ATTEMPTS {
            let Some(handle) = self.admitted(&tenant, &twin).await? else {
                tokio::task::yield_now().await;
                continue;
            };
            let (reply, answer) = oneshot::channel();
            let msg = HostMsg::Run {
                slot: handle.slot.clone(),
                op: TwinOp::Execute { cmd, reply },
            };
            match handle.host.send_message(msg) {
                Ok(()) => {
                    return match answer.await {
                        Ok(result) => result.map_err(ActorError::Propose),
                        Err(_) => Err(ActorError::TwinFailed { tenant, twin }),
                    };
                }
                Err(MessagingErr::SendErr(HostMsg::Run {
                    op: TwinOp::Execute { cmd: back, .. },
                    ..
                })) => {
                    // The host stopped between lookup and send: nothing was delivered.
                    handle.slot.gate.leave();
                    cmd = back;
                    tokio::task::yield_now().await;
                }
                Err(_) => {
                    handle.slot.gate.leave();
                    return Err(ActorError::Unavailable(format!(
                        "the host of twin '{twin}' did not take the request"
                    )));
                }
            }
        }
        Err(ActorError::Unavailable(format!(
            "no live twin '{twin}' after {ATTEMPTS} attempts"
        )))
    }

    /// The twin with this request counted into its gate; `None` if the twin or host
    /// found had just closed (look again).
    async fn admitted(&self, tenant: &str, twin: &str) -> Result<Option<TwinHandle>, ActorError> {
        let entry = self.tenant(tenant).await?;
        if let Some(e) = entry.shared.suspension_error(Instant::now()) {
            return Err(e);
        }
        let shard = shard_of(tenant, twin, self.env.shard_count);
        let host = match entry.shared.host(shard) {
            Some(h) => h,
            None => self.host(&entry, shard).await?,
        };
        let slot = match host.shared.lookup(twin) {
            Some(s) => s,
            None => match self.activate(&host, twin).await? {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        let limit = self.env.settings.mailbox_limit;
        match slot.gate.try_enter(limit) {
            Admission::Admitted => Ok(Some(TwinHandle {
                host: host.actor,
                slot,
            })),
            Admission::Full => Err(ActorError::TwinOverloaded {
                tenant: tenant.to_owned(),
                twin: twin.to_owned(),
                limit,
            }),
            Admission::Closed => Ok(None),
        }
    }

    async fn tenant(&self, tenant: &str) -> Result<TenantEntry, ActorError> {
        if let Some(entry) = self.tenants.get(tenant) {
            return Ok(entry);
        }
        let (reply, answer) = oneshot::channel();
        self.node
            .send_message(NodeMsg::Tenant {
                tenant: tenant.to_owned(),
                reply,
            })
            .map_err(|_| ActorError::Unavailable("the node supervisor has stopped".into()))?;
        answer
            .await
            .map_err(|_| ActorError::Unavailable("the node supervisor has stopped".into()))?
    }

    async fn host(&self, entry: &TenantEntry, shard: u32) -> Result<HostEntry, ActorError> {
        let (reply, answer) = oneshot::channel();
        let gone = || {
            ActorError::Unavailable(format!(
                "the supervisor of tenant '{}' has stopped",
                entry.shared.name
            ))
        };
        entry
            .actor
            .send_message(TenantMsg::Host { shard, reply })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// The twin's slot from its host; `None` if the host stopped before answering.
    async fn activate(
        &self,
        host: &HostEntry,
        twin: &str,
    ) -> Result<Option<Arc<super::directory::TwinSlot>>, ActorError> {
        let (reply, answer) = oneshot::channel();
        let msg = HostMsg::Activate {
            twin_id: twin.to_owned(),
            reply,
        };
        if host.actor.send_message(msg).is_err() {
            return Ok(None);
        }
        match answer.await {
            Ok(slot) => slot.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Test-only: sends `op` to the twin through its gate, as a request would.
    #[cfg(test)]
    pub(super) async fn send_raw(
        &self,
        tenant: &str,
        twin: &str,
        op: TwinOp,
    ) -> Result<(), ActorError> {
        let handle = self
            .admitted(tenant, twin)
            .await?
            .ok_or_else(|| ActorError::Unavailable("closed".into()))?;
        handle
            .host
            .send_message(HostMsg::Run {
                slot: handle.slot.clone(),
                op,
            })
            .map_err(|_| ActorError::Unavailable("send failed".into()))
    }

    /// Test-only: the active twin's handle, if it admits requests.
    #[cfg(test)]
    pub(super) fn lookup(&self, tenant: &str, twin: &str) -> Option<TwinHandle> {
        let tenant = self.tenants.get(tenant)?;
        let host = tenant
            .shared
            .host(shard_of(&tenant.shared.name, twin, self.env.shard_count))?;
        let slot = host.shared.lookup(twin)?;
        Some(TwinHandle {
            host: host.actor,
            slot,
        })
    }
}
