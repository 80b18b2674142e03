//! The tenant supervisor: activates its tenant's twin actors, restarts them when they
//! fail, and suspends the tenant when they crash-loop.
//!
//! ```text
//!  Activate(twin) ──▶ suspended? ──yes──▶ Err(TenantSuspended)
//!                       │ no
//!                       ├─ active & gate open ─▶ Ok(handle)
//!                       └─ spawn_linked(TwinActor) ── pre_start reads storage ─▶ Ok(handle)
//!
//!  child failed ──▶ close its gate, drop it from the directory
//!                   └─ RestartIntensity::on_failure ─┬─ Restart ─▶ spawn again (from storage)
//!                                                    └─ Suspend ─▶ mark the tenant suspended,
//!                                                                  warn once ("tenant suspended")
//!  child stopped (passivated) ──▶ drop it from the directory
//! ```
//!
//! ractor has no restart strategy of its own; this is it. Failures of activation
//! (`pre_start` errors: an unreadable record) count against the same budget, so a
//! tenant whose twins cannot even start is suspended too. The state is
//! [`TenantState`]; the actor only routes messages and events to it.

use super::directory::{TenantShared, TwinHandle};
use super::error::ActorError;
use super::mailbox_gate::MailboxGate;
use super::messages::TenantMsg;
use super::restart_intensity::{FailureDecision, RestartIntensity};
use super::twin_actor::{TwinActor, TwinArgs};
use super::TwinEnv;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

pub struct TenantArgs {
    pub shared: Arc<TenantShared>,
}

pub struct TenantState {
    pub shared: Arc<TenantShared>,
    /// Which twin each live child actor serves.
    by_actor: HashMap<ActorId, String>,
    intensity: RestartIntensity,
}

impl TenantState {
    fn new(shared: Arc<TenantShared>, intensity: RestartIntensity) -> Self {
        TenantState {
            shared,
            by_actor: HashMap::new(),
            intensity,
        }
    }

    fn suspended_error(&mut self, now: Instant) -> Option<ActorError> {
        let until = self.intensity.suspended_until(now)?;
        let limit = self.intensity.limit();
        Some(ActorError::TenantSuspended {
            tenant: self.shared.name.clone(),
            retry_after_s: retry_after_s(until.saturating_duration_since(now)),
            max_restarts: limit.max_restarts,
            window_ms: limit.window.as_millis() as u64,
        })
    }

    fn adopt(&mut self, twin_id: String, handle: TwinHandle) {
        self.by_actor.insert(handle.actor.get_id(), twin_id.clone());
        self.shared.insert(twin_id, handle);
    }

    /// Forgets a stopped or failed child; returns its twin id and, if it was still the
    /// twin's current actor, its handle.
    fn forget(&mut self, id: ActorId) -> Option<(String, Option<TwinHandle>)> {
        let twin = self.by_actor.remove(&id)?;
        let handle = self.shared.remove_if(&twin, id);
        Some((twin, handle))
    }

    /// Records a failure; true if the twin should be restarted.
    fn on_failure(&mut self, twin: &str, now: Instant) -> bool {
        match self.intensity.on_failure(now) {
            FailureDecision::Restart => true,
            FailureDecision::Suspend { until, newly } => {
                self.shared.suspend_until(until);
                if newly {
                    let limit = self.intensity.limit();
                    tracing::warn!(
                        event = "tenant_suspended",
                        tenant = %self.shared.name,
                        last_failed_twin = %twin,
                        max_restarts = limit.max_restarts,
                        window_ms = limit.window.as_millis() as u64,
                        cool_off_ms = limit.cool_off.as_millis() as u64,
                        "tenant suspended: its twins crash-loop; its calls fail until the cool-off ends"
                    );
                }
                false
            }
        }
    }
}

/// Whole seconds to put in `Retry-After` (at least 1).
pub fn retry_after_s(d: std::time::Duration) -> u32 {
    let ms = d.as_millis().max(1);
    ms.div_ceil(1000).min(u32::MAX as u128) as u32
}

pub struct TenantSupervisor {
    pub(super) env: Arc<TwinEnv>,
}

impl TenantSupervisor {
    /// Spawns the twin's actor (its `pre_start` reads the twin from storage).
    async fn activate(
        &self,
        myself: &ActorRef<TenantMsg>,
        state: &mut TenantState,
        twin_id: String,
    ) -> Result<TwinHandle, ActorError> {
        let gate = Arc::new(MailboxGate::new());
        let args = TwinArgs {
            tenant: state.shared.name.clone(),
            twin_id: twin_id.clone(),
            gate: gate.clone(),
        };
        let actor = TwinActor {
            env: self.env.clone(),
        };
        match Actor::spawn_linked(None, actor, args, myself.get_cell()).await {
            Ok((actor, _join)) => {
                let handle = TwinHandle { actor, gate };
                state.adopt(twin_id, handle.clone());
                Ok(handle)
            }
            Err(e) => {
                tracing::warn!(tenant = %state.shared.name, twin = %twin_id, error = %e, "twin activation failed");
                state.on_failure(&twin_id, Instant::now());
                Err(ActorError::ActivationFailed {
                    tenant: state.shared.name.clone(),
                    twin: twin_id,
                    reason: e.to_string(),
                })
            }
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
        Ok(TenantState::new(
            args.shared,
            RestartIntensity::new(self.env.settings.intensity),
        ))
    }

    async fn handle(
        &self,
        myself: ActorRef<TenantMsg>,
        msg: TenantMsg,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TenantMsg::Activate { twin_id, reply } => {
                let answer = if let Some(e) = state.suspended_error(Instant::now()) {
                    Err(e)
                } else if let Some(h) = state.shared.lookup(&twin_id) {
                    Ok(h)
                } else {
                    self.activate(&myself, state, twin_id).await
                };
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<TenantMsg>,
        event: SupervisionEvent,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.forget(cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some((twin, handle)) = state.forget(cell.get_id()) else {
                    return Ok(());
                };
                if let Some(h) = &handle {
                    // Callers still holding the handle go back to this supervisor.
                    h.gate.close();
                }
                tracing::warn!(tenant = %state.shared.name, twin = %twin, error = %error, "twin actor failed");
                let replaced = state.shared.lookup(&twin).is_some();
                if state.on_failure(&twin, Instant::now()) && !replaced {
                    // Restart from durable state; a failed activation is already counted.
                    if self.activate(&myself, state, twin.clone()).await.is_ok() {
                        tracing::info!(tenant = %state.shared.name, twin = %twin, "twin actor restarted from durable state");
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::retry_after_s;
    use std::time::Duration;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_s(Duration::ZERO), 1);
        assert_eq!(retry_after_s(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_s(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_s(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_s(Duration::from_secs(30)), 30);
    }
}
