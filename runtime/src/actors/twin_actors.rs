//! [`TwinActors`]: the handle request handlers use to have a twin's actor carry out
//! one of the twin's commands.
//!
//! ```text
//!  execute(cmd) ─▶ tenant entry (directory; else NodeMsg::Tenant)
//!               ─▶ suspended? ─▶ Err(TenantSuspended)              (fail fast, no hop)
//!               ─▶ twin handle (directory; else TenantMsg::Activate)
//!               ─▶ gate.try_enter(limit) ─ Full ─▶ Err(TwinOverloaded)   (never queue)
//!                                         ─ Closed (passivated/failed) ─▶ look up again
//!               ─▶ TwinMsg::Execute ─▶ twin actor ─▶ Proposer ─▶ Outcome
//! ```

use super::directory::{TenantDirectory, TenantEntry, TwinHandle};
use super::error::ActorError;
use super::mailbox_gate::Admission;
use super::messages::{NodeMsg, TenantMsg, TwinMsg};
use super::node_supervisor::{NodeArgs, NodeSupervisor};
use super::tenant_supervisor::retry_after_s;
use super::{ActorSettings, TwinEnv};
use doppel_cluster::{Proposer, Storage};
use doppel_twins::{Command, Outcome};
use ractor::{Actor, ActorRef, MessagingErr};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// How often a request looks for a live actor before giving up (each miss means the
/// actor it found had just passivated or failed).
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
    /// Starts the node supervisor. Twin actors propose through `proposer` and activate
    /// from `storage`.
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

    /// Active twin actors on this node.
    pub fn active_twins(&self) -> usize {
        self.tenants.active_twins()
    }

    /// Has the twin's actor propose `cmd` (a twin command) and returns the outcome.
    pub async fn execute(&self, cmd: Command) -> Result<Outcome, ActorError> {
        let Some((tenant, twin)) = twin_target(&cmd) else {
            return Err(ActorError::NotATwinCommand {
                tenant: cmd.tenant().to_owned(),
            });
        };
        let (tenant, twin) = (tenant.to_owned(), twin.to_owned());
        let mut cmd = Box::new(cmd);
        for _ in 0..ATTEMPTS {
            let handle = self.admitted(&tenant, &twin).await?;
            let Some(handle) = handle else {
                tokio::task::yield_now().await;
                continue;
            };
            let (reply, answer) = oneshot::channel();
            match handle.actor.send_message(TwinMsg::Execute { cmd, reply }) {
                Ok(()) => {
                    return match answer.await {
                        Ok(result) => result.map_err(ActorError::Propose),
                        Err(_) => Err(ActorError::TwinFailed { tenant, twin }),
                    };
                }
                Err(MessagingErr::SendErr(TwinMsg::Execute { cmd: back, .. })) => {
                    // The actor stopped between lookup and send: nothing was delivered.
                    handle.gate.leave();
                    cmd = back;
                    tokio::task::yield_now().await;
                }
                Err(_) => {
                    handle.gate.leave();
                    return Err(ActorError::Unavailable(format!(
                        "the actor of twin '{twin}' did not take the request"
                    )));
                }
            }
        }
        Err(ActorError::Unavailable(format!(
            "no live actor for twin '{twin}' after {ATTEMPTS} attempts"
        )))
    }

    /// The twin's actor with this request counted into its mailbox gate; `None` if the
    /// actor found had just closed (look again).
    async fn admitted(&self, tenant: &str, twin: &str) -> Result<Option<TwinHandle>, ActorError> {
        let entry = self.tenant(tenant).await?;
        let now = Instant::now();
        if let Some(left) = entry.shared.suspended_for(now) {
            let limit = self.env.settings.intensity;
            return Err(ActorError::TenantSuspended {
                tenant: tenant.to_owned(),
                retry_after_s: retry_after_s(left),
                max_restarts: limit.max_restarts,
                window_ms: limit.window.as_millis() as u64,
            });
        }
        let handle = match entry.shared.lookup(twin) {
            Some(h) => h,
            None => self.activate(&entry, twin).await?,
        };
        let limit = self.env.settings.mailbox_limit;
        match handle.gate.try_enter(limit) {
            Admission::Admitted => Ok(Some(handle)),
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

    async fn activate(&self, entry: &TenantEntry, twin: &str) -> Result<TwinHandle, ActorError> {
        let (reply, answer) = oneshot::channel();
        let gone = || {
            ActorError::Unavailable(format!(
                "the supervisor of tenant '{}' has stopped",
                entry.shared.name
            ))
        };
        entry
            .actor
            .send_message(TenantMsg::Activate {
                twin_id: twin.to_owned(),
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Test-only: sends `msg` to the twin's actor through its gate, as a request would.
    #[cfg(test)]
    pub(super) async fn send_raw(
        &self,
        tenant: &str,
        twin: &str,
        msg: TwinMsg,
    ) -> Result<(), ActorError> {
        let handle = self
            .admitted(tenant, twin)
            .await?
            .ok_or_else(|| ActorError::Unavailable("closed".into()))?;
        handle
            .actor
            .send_message(msg)
            .map_err(|_| ActorError::Unavailable("send failed".into()))
    }

    /// Test-only: the active twin's actor handle, if any.
    #[cfg(test)]
    pub(super) fn lookup(&self, tenant: &str, twin: &str) -> Option<TwinHandle> {
        self.tenants.get(tenant)?.shared.lookup(twin)
    }
}
