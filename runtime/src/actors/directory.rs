//! What callers read without messaging an actor: which tenant supervisors and twin
//! actors are active, their mailbox gates, and whether a tenant is suspended.
//!
//! Only supervisors write here (the node supervisor the tenant map, a tenant
//! supervisor its twin map and suspension), always from inside their own handler, so
//! activation, restart and passivation of one tenant are serialized. Callers only read:
//! the fast path of a request is a read lock and an atomic increment, no extra hop.
//! Locks are never held across an `.await`.

use super::mailbox_gate::MailboxGate;
use super::messages::{TenantMsg, TwinMsg};
use ractor::{ActorId, ActorRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// An active twin actor and the gate in front of its mailbox.
#[derive(Clone)]
pub struct TwinHandle {
    pub actor: ActorRef<TwinMsg>,
    pub gate: Arc<MailboxGate>,
}

/// An active tenant supervisor and what it shares with callers.
#[derive(Clone)]
pub struct TenantEntry {
    pub actor: ActorRef<TenantMsg>,
    pub shared: Arc<TenantShared>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // No code panics while holding these locks; a poisoned lock still holds a valid map.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// One tenant's directory of active twins and its suspension.
pub struct TenantShared {
    pub name: String,
    twins: RwLock<HashMap<String, TwinHandle>>,
    epoch: Instant,
    /// End of the suspension in ms since `epoch`; 0 = not suspended.
    suspended_until_ms: AtomicU64,
}

impl TenantShared {
    pub fn new(name: String, epoch: Instant) -> Self {
        TenantShared {
            name,
            twins: RwLock::new(HashMap::new()),
            epoch,
            suspended_until_ms: AtomicU64::new(0),
        }
    }

    /// The twin's actor if it is active and still admits requests.
    pub fn lookup(&self, twin: &str) -> Option<TwinHandle> {
        read(&self.twins)
            .get(twin)
            .filter(|h| !h.gate.is_closed())
            .cloned()
    }

    pub fn active_twins(&self) -> usize {
        read(&self.twins).len()
    }

    pub(super) fn insert(&self, twin: String, handle: TwinHandle) {
        write(&self.twins).insert(twin, handle);
    }

    /// Removes the twin's entry if it still belongs to actor `id` (a restarted or
    /// re-activated twin has a new actor that must stay).
    pub(super) fn remove_if(&self, twin: &str, id: ActorId) -> Option<TwinHandle> {
        let mut twins = write(&self.twins);
        if twins.get(twin).is_some_and(|h| h.actor.get_id() == id) {
            twins.remove(twin)
        } else {
            None
        }
    }

    /// Closes every gate and stops every twin actor (the tenant supervisor is gone).
    pub(super) fn close_all(&self) {
        for (_, h) in write(&self.twins).drain() {
            h.gate.close();
            h.actor.stop(Some("tenant supervisor stopped".into()));
        }
    }

    pub(super) fn suspend_until(&self, until: Instant) {
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

    pub(super) fn insert(&self, tenant: String, entry: TenantEntry) {
        write(&self.tenants).insert(tenant, entry);
    }

    pub(super) fn remove(&self, tenant: &str) -> Option<TenantEntry> {
        write(&self.tenants).remove(tenant)
    }

    /// Active twin actors over all tenants.
    pub fn active_twins(&self) -> usize {
        read(&self.tenants)
            .values()
            .map(|t| t.shared.active_twins())
            .sum()
    }
}
