//! What callers read without messaging an actor: which tenants, twin hosts and twins are
//! active, each twin's gate, and whether a tenant is suspended.
//!
//! ```text
//!  TenantDirectory ─ tenant ─▶ TenantShared ─ shard ─▶ HostEntry ─▶ HostShared ─ twin id ─▶ TwinSlot
//!  (node supervisor)           (tenant supervisor;      (host actor)  (the host)            (gate)
//!                               suspension, budget)
//! ```
//!
//! Writers: the node supervisor writes the tenant map, a tenant supervisor its host
//! map (a host removes its own entry when it retires), and a host its twin set — each
//! from inside its own handler, so activation, restart and passivation of one twin are
//! serialized by its host. Callers only read: the fast path of a request is three read
//! locks and an atomic increment, no extra hop. Locks are never held across an `.await`.
//!
//! A twin's [`TwinSlot`] is its identity for one activation: the host's private map and
//! this directory share the same `Arc` (keyed by the twin id through [`SlotKey`]), so an
//! active twin's id is stored once.

use super::error::ActorError;
use super::mailbox_gate::MailboxGate;
use super::messages::{HostMsg, TenantMsg};
use super::restart_intensity::{retry_after_s, FailureDecision, RestartIntensity};
use super::IntensityLimit;
use ractor::{ActorId, ActorRef};
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One activation of a twin: its id and the gate in front of its queue.
#[derive(Debug)]
pub struct TwinSlot {
    pub id: Box<str>,
    pub gate: MailboxGate,
}

impl TwinSlot {
    pub fn new(id: &str) -> Arc<Self> {
        Arc::new(TwinSlot {
            id: id.into(),
            gate: MailboxGate::new(),
        })
    }
}

/// A slot as a map key, found by its twin id (`Borrow<str>`; hashes as the id does).
/// Its hash and equality use only the id, which never changes, so the gate's interior
/// mutability cannot disturb a map (clippy's `mutable_key_type` is allowed for it).
#[derive(Debug, Clone)]
pub struct SlotKey(pub Arc<TwinSlot>);

impl Borrow<str> for SlotKey {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl Hash for SlotKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly as the `str` it borrows as.
        (*self.0.id).hash(state)
    }
}

impl PartialEq for SlotKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for SlotKey {}

/// An active twin as a caller sees it: where to send, and the gate to pass first.
#[derive(Clone)]
pub struct TwinHandle {
    pub host: ActorRef<HostMsg>,
    pub slot: Arc<TwinSlot>,
}

impl TwinHandle {
    /// Whether both handles point at the same activation of the twin (a restarted or
    /// re-activated twin has a new slot).
    pub fn same_activation(&self, other: &TwinHandle) -> bool {
        Arc::ptr_eq(&self.slot, &other.slot)
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // No code panics while holding these locks; a poisoned lock still holds a valid map.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// One twin host's directory: its active twins, and its operations still running.
pub struct HostShared {
    pub shard: u32,
    twins: RwLock<HashSet<SlotKey>>,
    /// Operations of this host's twins running in their own tasks. A replacement for a
    /// failed host waits for 0, so that no twin is re-read from storage while a command
    /// proposed by its previous activation may still commit.
    running: AtomicU32,
    drained: Notify,
}

impl HostShared {
    pub fn new(shard: u32) -> Self {
        HostShared {
            shard,
            twins: RwLock::new(HashSet::new()),
            running: AtomicU32::new(0),
            drained: Notify::new(),
        }
    }

    /// The twin's slot if it is active and admits requests.
    pub fn lookup(&self, twin: &str) -> Option<Arc<TwinSlot>> {
        read(&self.twins)
            .get(twin)
            .filter(|k| !k.0.gate.is_closed())
            .map(|k| k.0.clone())
    }

    pub fn active_twins(&self) -> usize {
        read(&self.twins).len()
    }

    pub(super) fn insert(&self, slot: Arc<TwinSlot>) {
        write(&self.twins).replace(SlotKey(slot));
    }

    /// Removes the twins whose slots are these very activations.
    pub(super) fn remove<'a>(&self, slots: impl IntoIterator<Item = &'a Arc<TwinSlot>>) {
        let mut twins = write(&self.twins);
        for slot in slots {
            if twins
                .get(&*slot.id)
                .is_some_and(|k| Arc::ptr_eq(&k.0, slot))
            {
                twins.remove(&*slot.id);
            }
        }
    }

    /// Closes every gate and forgets every twin (the host failed or was stopped).
    pub(super) fn close_all(&self) {
        for k in write(&self.twins).drain() {
            k.0.gate.close();
        }
    }

    /// Stops admissions to every twin; the host drops each once it is quiescent.
    pub(super) fn drain_all(&self) {
        for k in read(&self.twins).iter() {
            k.0.gate.drain();
        }
    }

    pub(super) fn op_started(&self) {
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn op_ended(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }

    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Acquire)
    }

    /// Resolves once no operation of this host is running.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// An active twin host and its directory.
#[derive(Clone)]
pub struct HostEntry {
    pub actor: ActorRef<HostMsg>,
    pub shared: Arc<HostShared>,
}

/// An active tenant supervisor and what it shares with callers.
#[derive(Clone)]
pub struct TenantEntry {
    pub actor: ActorRef<TenantMsg>,
    pub shared: Arc<TenantShared>,
}

/// One tenant's twin hosts, its suspension and its restart budget.
pub struct TenantShared {
    pub name: String,
    hosts: RwLock<HashMap<u32, HostEntry>>,
    epoch: Instant,
    /// End of the suspension in ms since `epoch`; 0 = not suspended.
    suspended_until_ms: AtomicU64,
    /// The tenant's restart budget, shared by its hosts (twin failures) and its
    /// supervisor (host failures). Held only for the decision, never across an await.
    intensity: Mutex<RestartIntensity>,
}

impl TenantShared {
    pub fn new(name: String, epoch: Instant, limit: IntensityLimit) -> Self {
        TenantShared {
            name,
            hosts: RwLock::new(HashMap::new()),
            epoch,
            suspended_until_ms: AtomicU64::new(0),
            intensity: Mutex::new(RestartIntensity::new(limit)),
        }
    }

    pub fn host(&self, shard: u32) -> Option<HostEntry> {
        read(&self.hosts).get(&shard).cloned()
    }

    pub fn hosts(&self) -> Vec<HostEntry> {
        read(&self.hosts).values().cloned().collect()
    }

    pub fn active_twins(&self) -> usize {
        read(&self.hosts)
            .values()
            .map(|h| h.shared.active_twins())
            .sum()
    }

    pub(super) fn insert_host(&self, shard: u32, entry: HostEntry) {
        write(&self.hosts).insert(shard, entry);
    }

    /// Removes the shard's host entry if it still belongs to actor `id`.
    pub(super) fn remove_host_if(&self, shard: u32, id: ActorId) -> Option<HostEntry> {
        let mut hosts = write(&self.hosts);
        if hosts.get(&shard).is_some_and(|h| h.actor.get_id() == id) {
            hosts.remove(&shard)
        } else {
            None
        }
    }

    /// Closes every twin and stops every host (the tenant supervisor is gone); returns
    /// the hosts' directories (their running operations may still be finishing).
    pub(super) fn close_all(&self) -> Vec<Arc<HostShared>> {
        write(&self.hosts)
            .drain()
            .map(|(_, h)| {
                h.shared.close_all();
                h.actor.stop(Some("tenant supervisor stopped".into()));
                h.shared
            })
            .collect()
    }

    fn suspend_until(&self, until: Instant) {
        let ms = until.saturating_duration_since(self.epoch).as_millis() as u64;
        self.suspended_until_ms.store(ms.max(1), Ordering::Release);
    }

    /// How much longer the tenant is suspended, if it is at `now`.
    pub fn suspended_for(&self, now: Instant) -> Option<Duration> {
        let until = self.suspended_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return None;
        }
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        (now_ms < until).then(|| Duration::from_millis(until - now_ms))
    }

    /// The error callers get while the tenant is suspended at `now`.
    pub fn suspension_error(&self, now: Instant) -> Option<ActorError> {
        let left = self.suspended_for(now)?;
        let limit = self.limit();
        Some(ActorError::TenantSuspended {
            tenant: self.name.clone(),
            retry_after_s: retry_after_s(left),
            max_restarts: limit.max_restarts,
            window_ms: limit.window.as_millis() as u64,
        })
    }

    pub fn limit(&self) -> IntensityLimit {
        self.intensity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .limit()
    }

    /// Counts one failure (of `what`: a twin, or a host) against the tenant's budget;
    /// true if the failed part should be restarted, false if the tenant is suspended
    /// (the `tenant_suspended` event is logged once, when the limit trips).
    pub fn record_failure(&self, what: &str, now: Instant) -> bool {
        let decision = self
            .intensity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .on_failure(now);
        match decision {
            FailureDecision::Restart => true,
            FailureDecision::Suspend { until, newly } => {
                self.suspend_until(until);
                if newly {
                    let limit = self.limit();
                    tracing::warn!(
                        event = "tenant_suspended",
                        tenant = %self.name,
                        last_failed = %what,
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

/// The node's directory of tenant supervisors.
#[derive(Default)]
pub struct TenantDirectory {
    tenants: RwLock<HashMap<String, TenantEntry>>,
}

impl TenantDirectory {
    pub fn get(&self, tenant: &str) -> Option<TenantEntry> {
        read(&self.tenants).get(tenant).cloned()
    }

    pub fn all(&self) -> Vec<TenantEntry> {
        read(&self.tenants).values().cloned().collect()
    }

    pub(super) fn insert(&self, tenant: String, entry: TenantEntry) {
        write(&self.tenants).insert(tenant, entry);
    }

    pub(super) fn remove(&self, tenant: &str) -> Option<TenantEntry> {
        write(&self.tenants).remove(tenant)
    }

    /// Active twins over all tenants.
    pub fn active_twins(&self) -> usize {
        read(&self.tenants)
            .values()
            .map(|t| t.shared.active_twins())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::mutable_key_type)] // hashed by the immutable id, see `SlotKey`
    fn a_slot_key_is_found_by_its_twin_id() {
        let mut set = HashSet::new();
        let slot = TwinSlot::new("pump-1");
        set.insert(SlotKey(slot.clone()));
        let found = set.get("pump-1").expect("found by &str");
        assert!(Arc::ptr_eq(&found.0, &slot));
        assert!(!set.contains("pump-2"));
    }

    #[test]
    fn lookup_skips_closed_and_draining_twins_and_remove_spares_a_newer_activation() {
        let host = HostShared::new(3);
        let old = TwinSlot::new("t");
        host.insert(old.clone());
        assert!(host.lookup("t").is_some());
        old.gate.drain();
        assert!(host.lookup("t").is_none());
        assert_eq!(host.active_twins(), 1, "a draining twin is still active");
        let new = TwinSlot::new("t");
        host.insert(new.clone());
        host.remove([&old]);
        assert!(Arc::ptr_eq(&host.lookup("t").unwrap(), &new));
        host.remove([&new]);
        assert_eq!(host.active_twins(), 0);
    }

    #[tokio::test]
    async fn drained_resolves_when_the_last_running_operation_ends() {
        let host = Arc::new(HostShared::new(0));
        host.drained().await;
        host.op_started();
        host.op_started();
        let waiter = tokio::spawn({
            let host = host.clone();
            async move { host.drained().await }
        });
        host.op_ended();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        host.op_ended();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("drained")
            .unwrap();
    }
}
