//! The twin actor: one per active twin, the only proposer of that twin's commands
//! (on the write paths routed through [`super::TwinActors`]).
//!
//! Its state ([`TwinState`]) is the twin as last committed — read from storage on
//! activation, then replaced by each committed `Outcome` — so it never runs ahead of
//! what is durable: the copy changes only after the Proposer has fsynced the change,
//! and a restart re-reads it from storage. The state machine still decides everything
//! from storage; the copy is the actor's view for what comes next (desired-state
//! pushes, device sessions).
//!
//! Lifecycle: activated by its tenant supervisor on first use, one idle timer
//! outstanding ([`super::idle_clock`]); passivates by closing its mailbox gate when
//! idle, or at once when its twin does not exist (a 404 must not pin an actor).

use super::idle_clock::{IdleClock, IdleDecision};
use super::mailbox_gate::MailboxGate;
use super::messages::TwinMsg;
use super::TwinEnv;
use doppel_cluster::ProposeError;
use doppel_twins::keys::shard_of;
use doppel_twins::{load_twin, Command, Outcome, StateRead, TwinError, TwinRecord};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the tenant supervisor activates a twin with.
pub struct TwinArgs {
    pub tenant: String,
    pub twin_id: String,
    pub gate: Arc<MailboxGate>,
}

/// A twin actor's state: the committed twin and the bookkeeping of its lifecycle.
pub struct TwinState {
    pub tenant: String,
    pub twin_id: String,
    /// The twin as last committed; `None` if it does not exist.
    pub twin: Option<TwinRecord>,
    pub clock: IdleClock,
    pub gate: Arc<MailboxGate>,
}

impl TwinState {
    /// Activation: the twin's durable state.
    pub fn activate(
        storage: &dyn StateRead,
        shard_count: u32,
        args: TwinArgs,
        idle: Duration,
        now: Instant,
    ) -> Result<Self, TwinError> {
        let shard = shard_of(&args.tenant, &args.twin_id, shard_count);
        let twin = load_twin(storage, shard, &args.tenant, &args.twin_id)?;
        Ok(TwinState {
            tenant: args.tenant,
            twin_id: args.twin_id,
            twin,
            clock: IdleClock::new(idle, now),
            gate: args.gate,
        })
    }

    /// Folds the committed result of one of this twin's commands into the copy. A
    /// rejected or failed proposal changed nothing on disk, so it changes nothing here.
    pub fn absorb(&mut self, deleted_by: bool, result: &Result<Outcome, ProposeError>) {
        match result {
            Ok(Outcome::Twin { twin, .. }) => self.twin = Some(twin.clone()),
            Ok(_) if deleted_by => self.twin = None,
            _ => {}
        }
    }

    /// Whether the actor should stay after a request: only while its twin exists.
    pub fn worth_keeping(&self) -> bool {
        self.twin.is_some()
    }
}

pub struct TwinActor {
    pub(super) env: Arc<TwinEnv>,
}

impl TwinActor {
    fn arm_idle_check(myself: &ActorRef<TwinMsg>, after: Duration) {
        // One timer outstanding at a time; it dies quietly if the actor has stopped.
        myself.send_after(after, || TwinMsg::IdleCheck);
    }
}

impl Actor for TwinActor {
    type Msg = TwinMsg;
    type State = TwinState;
    type Arguments = TwinArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<TwinMsg>,
        args: TwinArgs,
    ) -> Result<TwinState, ActorProcessingErr> {
        Ok(TwinState::activate(
            &self.env.storage,
            self.env.shard_count,
            args,
            self.env.settings.idle_passivate,
            Instant::now(),
        )?)
    }

    async fn post_start(
        &self,
        myself: ActorRef<TwinMsg>,
        state: &mut TwinState,
    ) -> Result<(), ActorProcessingErr> {
        Self::arm_idle_check(&myself, state.clock.idle());
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<TwinMsg>,
        msg: TwinMsg,
        state: &mut TwinState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TwinMsg::Execute { cmd, reply } => {
                let deletes = matches!(*cmd, Command::DeleteTwin { .. });
                let result = self.env.proposer.propose(*cmd).await;
                state.absorb(deletes, &result);
                state.clock.touch(Instant::now());
                state.gate.leave();
                // The caller may have given up (client disconnected): not an error.
                let _ = reply.send(result);
                if !state.worth_keeping() && state.gate.try_close_idle() {
                    myself.stop(Some("twin does not exist".into()));
                }
            }
            TwinMsg::IdleCheck => {
                match state.clock.decide(Instant::now(), state.gate.in_flight()) {
                    IdleDecision::Passivate if state.gate.try_close_idle() => {
                        tracing::debug!(tenant = %state.tenant, twin = %state.twin_id, "twin passivated");
                        myself.stop(Some("idle".into()));
                    }
                    IdleDecision::Passivate => Self::arm_idle_check(&myself, state.clock.idle()),
                    IdleDecision::CheckAgainIn(d) => Self::arm_idle_check(&myself, d),
                }
            }
            #[cfg(test)]
            TwinMsg::Snapshot(reply) => {
                state.gate.leave();
                let _ = reply.send(state.twin.clone());
            }
            #[cfg(test)]
            TwinMsg::Hold(release) => {
                let _ = release.await;
                state.gate.leave();
            }
            #[cfg(test)]
            TwinMsg::Crash => panic!("test-only crash of twin '{}'", state.twin_id),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(etag: &str) -> TwinRecord {
        TwinRecord {
            id: "t".into(),
            etag: etag.into(),
            model: "dtmi:x:T;1".into(),
            last_update_time: "2025-01-01T00:00:00Z".into(),
            desired_version: 0,
            root: Default::default(),
            components: Default::default(),
            connection: None,
        }
    }

    fn state(twin: Option<TwinRecord>) -> TwinState {
        TwinState {
            tenant: "acme".into(),
            twin_id: "t".into(),
            twin,
            clock: IdleClock::new(Duration::from_secs(1), Instant::now()),
            gate: Arc::new(MailboxGate::new()),
        }
    }

    #[test]
    fn a_committed_twin_outcome_replaces_the_copy() {
        let mut s = state(Some(record("a")));
        s.absorb(
            false,
            &Ok(Outcome::Twin {
                twin: record("b"),
                created: false,
                changed: true,
            }),
        );
        assert_eq!(s.twin.as_ref().map(|t| t.etag.as_str()), Some("b"));
        assert!(s.worth_keeping());
    }

    #[test]
    fn a_rejected_command_leaves_the_copy_as_it_was() {
        let mut s = state(Some(record("a")));
        s.absorb(
            true,
            &Err(ProposeError::Rejected(TwinError::PreconditionFailed(
                "etag".into(),
            ))),
        );
        s.absorb(false, &Err(ProposeError::Overloaded));
        assert_eq!(s.twin.as_ref().map(|t| t.etag.as_str()), Some("a"));
    }

    #[test]
    fn a_committed_delete_empties_the_copy_and_the_actor_is_not_worth_keeping() {
        let mut s = state(Some(record("a")));
        s.absorb(true, &Ok(Outcome::Done));
        assert!(s.twin.is_none());
        assert!(!s.worth_keeping());
    }

    #[test]
    fn telemetry_outcomes_do_not_touch_the_copy() {
        let mut s = state(Some(record("a")));
        s.absorb(false, &Ok(Outcome::Done));
        assert_eq!(s.twin.as_ref().map(|t| t.etag.as_str()), Some("a"));
    }
}
