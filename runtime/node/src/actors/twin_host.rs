//! The twin host: one ractor actor per tenant × data shard in use, multiplexing that
//! shard's active twins of the tenant as lightweight entities ([`TwinEntity`]).
//!
//! Why not one actor per twin: a ractor actor is a task, four channels and (for idle
//! passivation) a timer — about 8 KiB resident, on top of the twin record — which put
//! an idle active twin near 11 KiB. A host instead keeps per twin a ~48-byte entity, a
//! shared [`TwinSlot`] (id + gate) and its map entries (a few hundred bytes all told),
//! sweeps for idle twins on one timer, and still gives each twin what an actor gave it:
//!
//! - **serialization**: one operation of a twin runs at a time, in arrival order (the
//!   host's mailbox is FIFO; an operation arriving while the twin is busy waits in the
//!   twin's backlog). Twins never wait for each other: a command's proposal runs in its
//!   own task, which answers the caller and reports back with [`HostMsg::Finished`];
//! - **bounded queue**: the twin's gate counts requests from admission to answer;
//! - **isolation**: a panic in a twin's handling is caught here and fails that twin
//!   alone (its queued callers get `TwinFailed`); it is counted against the tenant's
//!   restart budget and the twin is restarted from durable state, or the tenant is
//!   suspended. A failure of the host itself (outside any twin's handling) is ractor
//!   supervision's: its tenant supervisor drops the host and its twins, which are
//!   re-activated from storage on their next use.
//!
//! ```text
//!  Activate(id) ─▶ suspended? ─▶ Err(TenantSuspended)
//!               ─▶ active ─▶ Ok(slot) │ draining ─▶ parked until dropped, then re-read
//!               ─▶ load_twin (storage) ─▶ entity + slot ─▶ Ok(slot)
//!  Run(slot, op) ─▶ entity.offer ─┬─ start now ─▶ Execute: spawn { propose; leave gate;
//!                                 │                        answer; Finished(change) }
//!                                 └─ queue behind the running op
//!  Finished ─▶ entity.finish(change) ─▶ start queued ops ─▶ settle
//!  settle / Sweep / DropDraining ─▶ quiescent & (idle │ missing │ draining) & gate 0→CLOSED
//!                                   ─▶ drop the twin
//! ```
//!
//! Correctness contract: an entity's committed state is what storage returned when the
//! host activated it, then only what committed outcomes said; a twin is (re-)read from
//! storage only while none of its operations is running (a failure is only observed
//! between operations; a draining twin is re-read only after it has been dropped), so
//! the copy never runs ahead of — or falls behind — what is durable.

use super::directory::{HostShared, SlotKey, TenantShared, TwinSlot};
use super::error::ActorError;
use super::idle_clock::IdleClock;
use super::messages::{ActivationReply, HostMsg, OpEnd, TwinOp};
use super::twin_entity::{Change, CommittedTwin, TwinEntity};
use super::TwinEnv;
use doppel_twins::{load_twin, Command};
use futures_util::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

/// Sweeps a host may find no twin at all before it retires.
const EMPTY_SWEEPS_BEFORE_RETIRING: u8 = 2;

pub struct HostArgs {
    pub tenant: Arc<TenantShared>,
    pub shared: Arc<HostShared>,
}

/// What every twin operation of a host needs besides the twin itself.
struct HostCtx {
    env: Arc<TwinEnv>,
    myself: ActorRef<HostMsg>,
    tenant: Arc<TenantShared>,
    shared: Arc<HostShared>,
    clock: IdleClock,
}

pub struct HostState {
    ctx: HostCtx,
    twins: HashMap<SlotKey, TwinEntity>,
    empty_sweeps: u8,
}

/// Whether a host goes on after a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSweep {
    Continue,
    Retire,
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}

impl HostCtx {
    fn now(&self) -> u64 {
        self.clock.stamp(Instant::now())
    }

    /// Starts `op` on an entity that runs nothing. Synchronous ops complete here;
    /// asynchronous ones leave the entity busy until their `Finished` comes back.
    fn start(&self, slot: &Arc<TwinSlot>, entity: &mut TwinEntity, op: TwinOp) {
        match op {
            TwinOp::Execute { cmd, reply } => {
                entity.mark_running();
                let deletes = matches!(*cmd, Command::DeleteTwin { .. });
                let proposer = self.env.proposer.clone();
                self.spawn_op(slot, async move {
                    let result = proposer.propose(*cmd).await;
                    let change = Change::of(deletes, &result);
                    (change, move || {
                        // The caller may have given up (client disconnected): not an error.
                        let _ = reply.send(result);
                    })
                });
            }
            #[cfg(test)]
            TwinOp::Snapshot(reply) => {
                slot.gate.leave();
                entity.touch(self.now());
                let _ = reply.send(entity.committed().cloned());
            }
            #[cfg(test)]
            TwinOp::Hold(release) => {
                entity.mark_running();
                self.spawn_op(slot, async move {
                    let _ = release.await;
                    (Change::Unchanged, || {})
                });
            }
            #[cfg(test)]
            TwinOp::Crash => panic!("test-only crash of twin '{}'", slot.id),
        }
    }

    /// Runs an operation's asynchronous part in its own task. `work` yields the change
    /// to the durable twin and how to answer the caller; the gate is left before the
    /// answer (as a caller sees it, an answered request is no longer in flight), and
    /// the host hears of the end last. A panic drops the answer: the caller sees
    /// `TwinFailed`, the host fails the twin.
    fn spawn_op<W, A>(&self, slot: &Arc<TwinSlot>, work: W)
    where
        W: std::future::Future<Output = (Change, A)> + Send + 'static,
        A: FnOnce() + Send + 'static,
    {
        let (slot, host, shared) = (slot.clone(), self.myself.clone(), self.shared.clone());
        shared.op_started();
        tokio::spawn(async move {
            let end = match AssertUnwindSafe(work).catch_unwind().await {
                Ok((change, answer)) => {
                    slot.gate.leave();
                    answer();
                    OpEnd::Done(change)
                }
                Err(panic) => OpEnd::Panicked(panic_message(&*panic)),
            };
            shared.op_ended();
            // A host that has stopped meanwhile no longer needs to hear it.
            let _ = host.send_message(HostMsg::Finished { slot, end });
        });
    }
}

impl HostState {
    fn new(env: Arc<TwinEnv>, myself: ActorRef<HostMsg>, args: HostArgs) -> Self {
        let clock = IdleClock::new(env.settings.idle_passivate, env.epoch);
        HostState {
            ctx: HostCtx {
                env,
                myself,
                tenant: args.tenant,
                shared: args.shared,
                clock,
            },
            twins: HashMap::new(),
            empty_sweeps: 0,
        }
    }

    fn current(&mut self, slot: &Arc<TwinSlot>) -> Option<&mut TwinEntity> {
        current(&mut self.twins, slot)
    }

    /// Answers an activation request.
    pub fn activate(&mut self, twin_id: &str, reply: ActivationReply) {
        if let Some(e) = self.ctx.tenant.suspension_error(Instant::now()) {
            let _ = reply.send(Err(e));
            return;
        }
        if let Some((key, _)) = self.twins.get_key_value(twin_id) {
            let slot = key.0.clone();
            if !slot.gate.is_draining() {
                let _ = reply.send(Ok(slot));
                return;
            }
            if let Some(entity) = self.current(&slot) {
                entity.wait_for_activation(reply);
            }
            self.settle(&slot);
            return;
        }
        let _ = reply.send(self.load(twin_id));
    }

    /// Reads the twin from storage into a new entity and slot. A read that fails (or
    /// panics) counts against the tenant's restart budget.
    fn load(&mut self, twin_id: &str) -> Result<Arc<TwinSlot>, ActorError> {
        let ctx = &self.ctx;
        let read = std::panic::catch_unwind(AssertUnwindSafe(|| {
            load_twin(
                &ctx.env.storage,
                ctx.shared.shard,
                &ctx.tenant.name,
                twin_id,
            )
        }));
        let reason = match read {
            Ok(Ok(twin)) => {
                let slot = TwinSlot::new(twin_id);
                let entity = TwinEntity::new(twin.as_ref().map(CommittedTwin::of), ctx.now());
                self.twins.insert(SlotKey(slot.clone()), entity);
                ctx.shared.insert(slot.clone());
                return Ok(slot);
            }
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic_message(&*panic),
        };
        tracing::warn!(tenant = %ctx.tenant.name, twin = %twin_id, error = %reason, "twin activation failed");
        ctx.tenant.record_failure(twin_id, Instant::now());
        Err(ActorError::ActivationFailed {
            tenant: ctx.tenant.name.clone(),
            twin: twin_id.to_owned(),
            reason,
        })
    }

    /// Runs `f` (one twin's handling); a panic in it fails that twin only.
    fn guarded(&mut self, slot: &Arc<TwinSlot>, f: impl FnOnce(&mut Self)) {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
            self.fail_twin(slot, &panic_message(&*panic));
        }
    }

    /// An admitted operation arrives.
    pub fn run(&mut self, slot: &Arc<TwinSlot>, op: TwinOp) {
        self.guarded(slot, |s| {
            // Not current: the twin failed since admission; dropping the op drops its
            // reply, and the caller learns that its request died with the twin.
            let Some(entity) = current(&mut s.twins, slot) else {
                return;
            };
            if let Some(op) = entity.offer(op) {
                s.ctx.start(slot, entity, op);
            }
            s.pump(slot);
            s.settle(slot);
        });
    }

    /// The twin's running operation ended.
    pub fn finished(&mut self, slot: &Arc<TwinSlot>, end: OpEnd) {
        self.guarded(slot, |s| {
            let now = s.ctx.now();
            let Some(entity) = s.current(slot) else {
                return;
            };
            match end {
                OpEnd::Done(change) => {
                    entity.finish(change, now);
                    s.pump(slot);
                    s.settle(slot);
                }
                OpEnd::Panicked(reason) => s.fail_twin(slot, &reason),
            }
        });
    }

    /// Starts queued operations until one runs on (or none is left).
    fn pump(&mut self, slot: &Arc<TwinSlot>) {
        let Some(entity) = current(&mut self.twins, slot) else {
            return;
        };
        while let Some(op) = entity.next_queued() {
            self.ctx.start(slot, entity, op);
        }
    }

    /// Drops the twin if it is quiescent and should go now: it does not exist (a 404
    /// must not pin memory) or it is draining. True if it was dropped.
    fn settle(&mut self, slot: &Arc<TwinSlot>) -> bool {
        let Some(entity) = self.current(slot) else {
            return false;
        };
        if entity.exists() && !slot.gate.is_draining() {
            return false;
        }
        self.passivate(slot)
    }

    /// Drops the twin if nothing of it is running, queued or admitted; parked
    /// activations are then answered from a fresh read. True if it was dropped.
    fn passivate(&mut self, slot: &Arc<TwinSlot>) -> bool {
        let Some(entity) = self.current(slot) else {
            return false;
        };
        if !entity.is_quiescent() || !slot.gate.try_close_idle() {
            return false;
        }
        let waiting = entity.take_waiting_activations();
        self.twins.remove(&*slot.id);
        self.ctx.shared.remove([slot]);
        let mut waiting = waiting.into_iter();
        if let Some(first) = waiting.next() {
            self.activate(&slot.id, first);
            if self.twins.contains_key(&*slot.id) {
                for reply in waiting {
                    self.activate(&slot.id, reply);
                }
            }
            // Otherwise the rest are dropped: their callers look up again.
        }
        true
    }

    /// The twin failed: forget it (its queued callers' replies are dropped), count the
    /// failure, and restart it from durable state unless the tenant is now suspended.
    fn fail_twin(&mut self, slot: &Arc<TwinSlot>, reason: &str) {
        let tenant = self.ctx.tenant.clone();
        tracing::warn!(tenant = %tenant.name, twin = %slot.id, error = %reason, "twin failed");
        slot.gate.close();
        if self.current(slot).is_some() {
            self.twins.remove(&*slot.id);
        }
        self.ctx.shared.remove([slot]);
        if tenant.record_failure(&slot.id, Instant::now()) && self.load(&slot.id).is_ok() {
            tracing::info!(tenant = %tenant.name, twin = %slot.id, "twin restarted from durable state");
        }
    }

    /// Passivates the twins idle at `now`; says whether the host should retire.
    pub fn sweep(&mut self, now: Instant) -> AfterSweep {
        let now = self.ctx.clock.stamp(now);
        let clock = self.ctx.clock;
        let idle: Vec<Arc<TwinSlot>> = self
            .twins
            .iter()
            .filter(|(_, e)| e.is_idle(&clock, now))
            .map(|(k, _)| k.0.clone())
            .collect();
        for slot in &idle {
            self.guarded(slot, |s| {
                if s.passivate(slot) {
                    tracing::debug!(tenant = %s.ctx.tenant.name, twin = %slot.id, "twin passivated");
                }
            });
        }
        if self.twins.is_empty() {
            self.empty_sweeps = self.empty_sweeps.saturating_add(1);
        } else {
            self.empty_sweeps = 0;
        }
        if self.empty_sweeps >= EMPTY_SWEEPS_BEFORE_RETIRING {
            AfterSweep::Retire
        } else {
            AfterSweep::Continue
        }
    }

    /// Drops the draining twins that are quiescent now (the others go when their last
    /// admitted request has been answered).
    pub fn drop_draining(&mut self) {
        let draining: Vec<Arc<TwinSlot>> = self
            .twins
            .keys()
            .filter(|k| k.0.gate.is_draining())
            .map(|k| k.0.clone())
            .collect();
        for slot in &draining {
            self.guarded(slot, |s| {
                s.settle(slot);
            });
        }
    }
}

/// The entity of this very activation of the twin (not of an older or newer one).
// A `SlotKey` hashes and compares by the twin id only, which never changes; the gate
// inside is the mutable part.
#[allow(clippy::mutable_key_type)]
fn current<'a>(
    twins: &'a mut HashMap<SlotKey, TwinEntity>,
    slot: &Arc<TwinSlot>,
) -> Option<&'a mut TwinEntity> {
    let (key, _) = twins.get_key_value(&*slot.id)?;
    if !Arc::ptr_eq(&key.0, slot) {
        return None;
    }
    twins.get_mut(&*slot.id)
}

pub struct TwinHost {
    pub(super) env: Arc<TwinEnv>,
}

impl TwinHost {
    fn arm_sweep(myself: &ActorRef<HostMsg>, state: &HostState) {
        // One timer outstanding at a time; it dies quietly if the host has stopped.
        myself.send_after(state.ctx.clock.sweep_every(), || HostMsg::Sweep);
    }
}

impl Actor for TwinHost {
    type Msg = HostMsg;
    type State = HostState;
    type Arguments = HostArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HostMsg>,
        args: HostArgs,
    ) -> Result<HostState, ActorProcessingErr> {
        Ok(HostState::new(self.env.clone(), myself, args))
    }

    async fn post_start(
        &self,
        myself: ActorRef<HostMsg>,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        Self::arm_sweep(&myself, state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<HostMsg>,
        msg: HostMsg,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HostMsg::Activate { twin_id, reply } => state.activate(&twin_id, reply),
            HostMsg::Run { slot, op } => state.run(&slot, op),
            HostMsg::Finished { slot, end } => state.finished(&slot, end),
            HostMsg::Sweep => match state.sweep(Instant::now()) {
                AfterSweep::Continue => Self::arm_sweep(&myself, state),
                AfterSweep::Retire => {
                    // Leave the directory first: callers then ask the supervisor for a
                    // new host instead of messaging this one. No twin is left, so no
                    // request can be stranded here (an activation request that raced
                    // in loses its reply and is retried).
                    state
                        .ctx
                        .tenant
                        .remove_host_if(state.ctx.shared.shard, myself.get_id());
                    myself.stop(Some("no active twins".into()));
                }
            },
            HostMsg::DropDraining => state.drop_draining(),
            #[cfg(test)]
            HostMsg::CrashHost => panic!("test-only crash of a twin host"),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<HostMsg>,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped with twins (the tree is stopping): callers must not send here again.
        state.ctx.shared.close_all();
        Ok(())
    }
}
