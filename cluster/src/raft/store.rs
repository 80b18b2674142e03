//! openraft storage (`storage-v2`) for one Raft group, in the node's one RocksDB.
//!
//! Every group of the node (the data shards and the meta group) shares the same
//! [`Storage`]; a group only ever touches keys that start with its own
//! [`group_prefix`], so groups never see each other's records.
//!
//! ```text
//! raft_log     group | index u64 BE          -> v | bincode(Entry)
//! raft_state   group | "vote"                -> v | bincode(Vote)
//!              group | "committed"           -> v | bincode(LogId)
//!              group | "purged"              -> v | bincode(LogId)       last purged log id
//!              group | "applied"             -> v | bincode(LogId)       last applied log id
//!              group | "membership"          -> v | bincode(StoredMembership)
//!              group | "snapshot"            -> v | bincode(StoredSnapshot {meta, data})
//!              group | "snapshot_meta"       -> v | bincode(SnapshotMeta) (cheap to read)
//! twins, rel_out, rel_in, telemetry, meta, devices
//!              group | …                     -> the group's state machine
//! ```
//!
//! `v` is a format-version byte ([`FORMAT_V1`]); a later format adds a version and keeps
//! reading this one.
//!
//! Key types: [`LogStore`] (`RaftLogStorage`, `RaftLogReader`) and [`StateMachineStore`]
//! (`RaftStateMachine`, `RaftSnapshotBuilder`).
//!
//! Correctness contract:
//! - `append` and `save_vote` are fsynced (per [`crate::StorageConfig::sync`]) before
//!   they report completion; every log write is a single atomic batch, so the log never
//!   has a hole and `purged` always agrees with the entries present.
//! - `apply` writes a whole batch of entries' writes *and* the new applied log id (and
//!   membership) in one atomic batch, so the durable applied id always describes exactly
//!   the durable state-machine data.
//! - A snapshot is read from one consistent RocksDB snapshot: its data is exactly the
//!   state as of its `last_log_id`. Installing one replaces the group's whole key range
//!   in one fsynced batch.

use super::{
    group_prefix, Entry, GroupId, LogId, NodeId, ShardRequest, ShardResponse, StoredMembership,
    TypeConfig,
};
use crate::storage::{Durability, RaftCf, Storage};
use doppel_twins::keys::Family;
use doppel_twins::{WireEvent, Write};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// openraft's storage error, as every storage trait method returns it.
pub type RaftStorageError = openraft::StorageError<NodeId>;

/// Called after each `apply` batch is written, once per normal entry, in log order, with
/// the entry's change events. It runs on the state machine's task: it must not block
/// (publishing to a broadcast channel is the intended use).
pub type ApplyHook = Arc<dyn Fn(GroupId, &[WireEvent]) + Send + Sync>;

/// The format version of every record this module writes.
const FORMAT_V1: u8 = 1;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";
const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_META: &str = "snapshot_meta";

/// What can go wrong below openraft's error type; carried inside its `StorageIOError`.
#[derive(Debug, thiserror::Error)]
pub enum RaftStoreError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(
        "group {group}: {record} has format version {version}; this build reads version \
         {FORMAT_V1}"
    )]
    UnknownFormat {
        group: GroupId,
        record: &'static str,
        version: u8,
    },
    #[error("group {group}: {record} is corrupt: {reason}")]
    Corrupt {
        group: GroupId,
        record: &'static str,
        reason: String,
    },
    #[error("group {group}: cannot encode {record}: {reason}")]
    Encode {
        group: GroupId,
        record: &'static str,
        reason: String,
    },
    #[error(
        "group {group}: {origin} writes {family} key {key} outside the group's prefix {prefix}"
    )]
    ForeignKey {
        group: GroupId,
        origin: String,
        family: &'static str,
        key: String,
        prefix: String,
    },
    #[error("group {group}: snapshot belongs to group {found}")]
    WrongGroup { group: GroupId, found: GroupId },
    #[error("group {group}: snapshot data is at {data:?} but its meta says {meta:?}")]
    SnapshotMismatch {
        group: GroupId,
        data: Option<LogId>,
        meta: Option<LogId>,
    },
    #[error("group {group}: snapshot names unknown column family {family:?}")]
    UnknownFamily { group: GroupId, family: String },
    #[error("group {group}: storage task failed: {reason}")]
    Task { group: GroupId, reason: String },
}

fn sto_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: RaftStoreError) -> RaftStorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- record encoding -------------------------------------------------------------

fn encode<T: Serialize>(
    group: GroupId,
    record: &'static str,
    value: &T,
) -> Result<Vec<u8>, RaftStoreError> {
    let mut out = vec![FORMAT_V1];
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard()).map_err(
        |e| RaftStoreError::Encode {
            group,
            record,
            reason: e.to_string(),
        },
    )?;
    Ok(out)
}

fn decode<T: DeserializeOwned>(
    group: GroupId,
    record: &'static str,
    bytes: &[u8],
) -> Result<T, RaftStoreError> {
    let corrupt = |reason: String| RaftStoreError::Corrupt {
        group,
        record,
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => {
            let (value, read) =
                bincode::serde::decode_from_slice(body, bincode::config::standard())
                    .map_err(|e| corrupt(e.to_string()))?;
            if read != body.len() {
                return Err(corrupt(format!("{} trailing bytes", body.len() - read)));
            }
            Ok(value)
        }
        Some((&version, _)) => Err(RaftStoreError::UnknownFormat {
            group,
            record,
            version,
        }),
        None => Err(corrupt("empty record".into())),
    }
}

// ---- keys ----------------------------------------------------------------------------

fn log_key(group: GroupId, index: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&group_prefix(group));
    k[4..].copy_from_slice(&index.to_be_bytes());
    k
}

/// An exclusive upper bound above every log key of `group` (log keys are exactly 12
/// bytes, so `group | u64::MAX | 0` sorts after all of them, even for the all-0xff meta
/// group).
fn log_end(group: GroupId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..12].copy_from_slice(&log_key(group, u64::MAX));
    k
}

fn state_key(group: GroupId, name: &str) -> Vec<u8> {
    let mut k = group_prefix(group).to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// Reads and decodes one `raft_state` record.
fn read_state<T: DeserializeOwned>(
    storage: &Storage,
    group: GroupId,
    name: &'static str,
) -> Result<Option<T>, RaftStoreError> {
    match storage.raft_get(RaftCf::State, &state_key(group, name))? {
        Some(bytes) => Ok(Some(decode(group, name, &bytes)?)),
        None => Ok(None),
    }
}

/// Runs blocking storage work (an fsync, a whole-group scan) off the async workers.
async fn blocking<T, F>(group: GroupId, f: F) -> Result<T, RaftStoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, RaftStoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RaftStoreError::Task {
            group,
            reason: e.to_string(),
        })?
}

// ---- log -----------------------------------------------------------------------------

/// How many bytes of recently appended (encoded) entries one group keeps in memory.
const RECENT_BYTES: usize = 8 << 20;

/// The group's entries from their append until they are applied here, in memory, so
/// that applying them (openraft reads every entry back from the log to apply it) and
/// replicating them to followers costs neither a RocksDB read nor a decode. A range not
/// wholly held is read from the log as before; what is held is always exactly what the
/// log holds (appends, truncations and purges update both).
#[derive(Clone, Default)]
pub struct RecentEntries(Arc<Mutex<RecentInner>>);

#[derive(Default)]
struct RecentInner {
    entries: std::collections::BTreeMap<u64, (Entry, usize)>,
    bytes: usize,
}

impl RecentEntries {
    fn lock(&self) -> std::sync::MutexGuard<'_, RecentInner> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn insert(&self, entries: Vec<(Entry, usize)>) {
        let mut g = self.lock();
        for (entry, size) in entries {
            if let Some((_, old)) = g.entries.insert(entry.log_id.index, (entry, size)) {
                g.bytes -= old;
            }
            g.bytes += size;
        }
        while g.bytes > RECENT_BYTES {
            match g.entries.pop_first() {
                Some((_, (_, size))) => g.bytes -= size,
                None => break,
            }
        }
    }

    /// Forgets `index` and everything after it (a truncation).
    fn forget_from(&self, index: u64) {
        let mut g = self.lock();
        let gone = g.entries.split_off(&index);
        g.bytes -= gone.values().map(|(_, size)| size).sum::<usize>();
    }

    /// Forgets everything up to and including `index` (applied or purged).
    fn forget_through(&self, index: u64) {
        let mut g = self.lock();
        let Some(next) = index.checked_add(1) else {
            g.entries.clear();
            g.bytes = 0;
            return;
        };
        let kept = g.entries.split_off(&next);
        let gone = std::mem::replace(&mut g.entries, kept);
        g.bytes -= gone.values().map(|(_, size)| size).sum::<usize>();
    }

    /// `[start, end)` when every entry of it is held.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let g = self.lock();
        let count = usize::try_from(end.checked_sub(start)?).ok()?;
        let held: Vec<Entry> = g
            .entries
            .range(start..end)
            .map(|(_, (e, _))| e.clone())
            .collect();
        (held.len() == count).then_some(held)
    }
}

/// The Raft log and vote of one group.
#[derive(Clone)]
pub struct LogStore {
    storage: Storage,
    group: GroupId,
    recent: RecentEntries,
}

impl LogStore {
    pub fn new(storage: Storage, group: GroupId) -> Self {
        LogStore {
            storage,
            group,
            recent: RecentEntries::default(),
        }
    }

    /// A group's log and state machine, sharing the entries held between append and
    /// apply (see [`RecentEntries`]).
    pub fn with_state_machine(
        storage: Storage,
        group: GroupId,
        hook: ApplyHook,
    ) -> (LogStore, StateMachineStore) {
        let log = LogStore::new(storage.clone(), group);
        let mut sm = StateMachineStore::new(storage, group, hook);
        sm.recent = log.recent.clone();
        (log, sm)
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    fn read_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, RaftStoreError> {
        let to = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => log_key(self.group, end).to_vec(),
            None => log_end(self.group).to_vec(),
        };
        self.storage
            .raft_range(RaftCf::Log, &log_key(self.group, start), &to)?
            .into_iter()
            .map(|(_, v)| decode(self.group, "log entry", &v))
            .collect()
    }

    fn last_log_id(&self) -> Result<Option<LogId>, RaftStoreError> {
        let last = self.storage.raft_last_in_range(
            RaftCf::Log,
            &log_key(self.group, 0),
            &log_end(self.group),
        )?;
        match last {
            Some((_, v)) => Ok(Some(decode::<Entry>(self.group, "log entry", &v)?.log_id)),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        if let Some(held) = end.and_then(|end| self.recent.get(start, end)) {
            return Ok(held);
        }
        self.read_entries(start, end)
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let read = || -> Result<LogState<TypeConfig>, RaftStoreError> {
            let last_purged_log_id: Option<LogId> = read_state(&self.storage, self.group, PURGED)?;
            let last_log_id = self.last_log_id()?.or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        };
        read().map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        let (storage, group) = (self.storage.clone(), self.group);
        let value = encode(group, VOTE, vote)
            .map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        blocking(group, move || {
            let mut batch = storage.batch();
            batch.put_raft(RaftCf::State, &state_key(group, VOTE), &value)?;
            Ok(batch.commit(Durability::Fsync)?)
        })
        .await
        .map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        read_state(&self.storage, self.group, VOTE)
            .map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    /// Not fsynced: `committed` only ever names entries that are already fsynced in the
    /// log, and losing the latest value merely makes a restart re-apply less.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        let write = || -> Result<(), RaftStoreError> {
            let key = state_key(self.group, COMMITTED);
            let mut batch = self.storage.batch();
            match committed {
                Some(id) => {
                    batch.put_raft(RaftCf::State, &key, &encode(self.group, COMMITTED, &id)?)?
                }
                None => batch.delete_raft(RaftCf::State, &key)?,
            }
            Ok(batch.commit(Durability::Buffered)?)
        };
        write().map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        read_state(&self.storage, self.group, COMMITTED)
            .map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let (storage, group) = (self.storage.clone(), self.group);
        let mut held = Vec::new();
        let encoded = entries
            .into_iter()
            .map(|entry| {
                let value = encode(group, "log entry", &entry)?;
                let index = entry.log_id.index;
                held.push((entry, value.len()));
                Ok((index, value))
            })
            .collect::<Result<Vec<_>, RaftStoreError>>()
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        // The write completes before `append` returns, so the entries are readable on
        // return; they are durable when the callback reports it, after the node's WAL
        // syncer has fsynced past them (one fsync shared by every group appending at
        // the same time: group commit across the node's Raft groups).
        // Without fsync the write is a memtable insert and a buffered WAL append: done
        // inline rather than on the blocking pool.
        let write = || -> Result<(), RaftStoreError> {
            let mut batch = storage.batch();
            for (index, value) in &encoded {
                batch.put_raft(RaftCf::Log, &log_key(group, *index), value)?;
            }
            Ok(batch.commit(Durability::Buffered)?)
        };
        write().map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        // Held only once written: a range served from memory is also in the log.
        self.recent.insert(held);
        storage.after_wal_sync(Box::new(move |r| {
            callback.log_io_completed(r.map_err(std::io::Error::other))
        }));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        // Forgotten first: a failed truncation must not leave memory holding entries
        // the log may no longer have (reading them back from the log is always right).
        self.recent.forget_from(log_id.index);
        let (storage, group) = (self.storage.clone(), self.group);
        blocking(group, move || {
            let mut batch = storage.batch();
            batch.delete_raft_range(RaftCf::Log, &log_key(group, log_id.index), &log_end(group))?;
            Ok(batch.commit(Durability::Fsync)?)
        })
        .await
        .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    /// Not fsynced: if a crash loses a purge, the purged entries and the previous
    /// `purged` id come back together (one batch), which is a consistent, longer log.
    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        self.recent.forget_through(log_id.index);
        let purge = || -> Result<(), RaftStoreError> {
            let end = match log_id.index.checked_add(1) {
                Some(next) => log_key(self.group, next).to_vec(),
                None => log_end(self.group).to_vec(),
            };
            let mut batch = self.storage.batch();
            batch.delete_raft_range(RaftCf::Log, &log_key(self.group, 0), &end)?;
            batch.put_raft(
                RaftCf::State,
                &state_key(self.group, PURGED),
                &encode(self.group, PURGED, &log_id)?,
            )?;
            Ok(batch.commit(Durability::Buffered)?)
        };
        purge().map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

// ---- state machine ------------------------------------------------------------------

/// The data a snapshot carries (the `SnapshotData` bytes: version byte + bincode).
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    group: GroupId,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Per data family (by its on-disk name, so that reordering `Family` cannot
    /// reinterpret old snapshots): every `(key, value)` under the group prefix.
    families: Vec<FamilyRows>,
}

#[derive(Serialize, Deserialize)]
struct FamilyRows {
    family: String,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The current snapshot as kept in `raft_state`.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// State shared by the clones of one group's state machine store.
struct Shared {
    /// Serializes replacing the current snapshot (a snapshot build runs concurrently
    /// with `apply` and may finish after an `install_snapshot`).
    snapshot_lock: Mutex<()>,
    /// Last snapshot counter used; 0 until seeded from the stored snapshot id.
    snapshot_seq: AtomicU64,
}

/// The state machine of one group: its slice of the data families plus the applied log
/// id, membership and current snapshot.
#[derive(Clone)]
pub struct StateMachineStore {
    storage: Storage,
    group: GroupId,
    hook: ApplyHook,
    shared: Arc<Shared>,
    /// The log's entries held in memory; applied ones are let go.
    recent: RecentEntries,
}

impl StateMachineStore {
    pub fn new(storage: Storage, group: GroupId, hook: ApplyHook) -> Self {
        StateMachineStore {
            storage,
            group,
            hook,
            shared: Arc::new(Shared {
                snapshot_lock: Mutex::new(()),
                snapshot_seq: AtomicU64::new(0),
            }),
            recent: RecentEntries::default(),
        }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Refuses a write outside the group's key range: applying it would put data into
    /// another group's range, which neither group's snapshot would carry.
    fn check_owned(
        &self,
        origin: impl FnOnce() -> String,
        w: &Write,
    ) -> Result<(), RaftStoreError> {
        let prefix = group_prefix(self.group);
        let (family, key) = match w {
            Write::Put { family, key, .. } | Write::Delete { family, key } => (family, key),
            Write::DeletePrefix { family, prefix } => (family, prefix),
        };
        if key.starts_with(&prefix) {
            return Ok(());
        }
        Err(RaftStoreError::ForeignKey {
            group: self.group,
            origin: origin(),
            family: family.name(),
            key: hex(key),
            prefix: hex(&prefix),
        })
    }

    fn write_applied(&self, entries: &[Entry]) -> Result<(), RaftStoreError> {
        let mut writes: Vec<&Write> = Vec::new();
        let mut last_applied = None;
        let mut last_membership = None;
        for entry in entries {
            last_applied = Some(entry.log_id);
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(ShardRequest { writes: ws, .. }) => {
                    for w in ws {
                        self.check_owned(|| format!("log entry {}", entry.log_id), w)?;
                        writes.push(w);
                    }
                }
                EntryPayload::Membership(m) => {
                    last_membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()))
                }
            }
        }
        let Some(last_applied) = last_applied else {
            return Ok(());
        };
        let mut batch = self.storage.batch();
        batch.add_writes(&writes)?;
        batch.put_raft(
            RaftCf::State,
            &state_key(self.group, APPLIED),
            &encode(self.group, APPLIED, &last_applied)?,
        )?;
        if let Some(m) = &last_membership {
            batch.put_raft(
                RaftCf::State,
                &state_key(self.group, MEMBERSHIP),
                &encode(self.group, MEMBERSHIP, m)?,
            )?;
        }
        // Not fsynced. The entries are already fsynced in the log on a majority (openraft
        // only applies committed entries), and the data writes and the applied id are one
        // atomic batch: after a crash the durable applied id describes exactly the durable
        // data, openraft re-applies the log after it, and re-applying an entry from that
        // point reproduces the same writes (they are leader-evaluated, not re-evaluated).
        Ok(batch.commit(Durability::Buffered)?)
    }

    /// Reads the group's state from one consistent view and encodes it as snapshot data.
    fn collect_snapshot(
        storage: &Storage,
        group: GroupId,
    ) -> Result<(Option<LogId>, StoredMembership, Vec<u8>), RaftStoreError> {
        let view = storage.read_view();
        let last_applied: Option<LogId> =
            match view.raft_get(RaftCf::State, &state_key(group, APPLIED))? {
                Some(b) => Some(decode(group, APPLIED, &b)?),
                None => None,
            };
        let last_membership: StoredMembership =
            match view.raft_get(RaftCf::State, &state_key(group, MEMBERSHIP))? {
                Some(b) => decode(group, MEMBERSHIP, &b)?,
                None => StoredMembership::default(),
            };
        let prefix = group_prefix(group);
        let mut families = Vec::with_capacity(Family::ALL.len());
        for family in Family::ALL {
            let rows = view
                .scan_prefix(family, &prefix)?
                .collect::<Result<Vec<_>, _>>()?;
            families.push(FamilyRows {
                family: family.name().to_owned(),
                rows,
            });
        }
        let payload = SnapshotPayload {
            group,
            last_applied,
            last_membership: last_membership.clone(),
            families,
        };
        Ok((
            last_applied,
            last_membership,
            encode(group, "snapshot data", &payload)?,
        ))
    }

    /// Builds a snapshot of the current state and makes it the current snapshot (unless
    /// a newer one was installed meanwhile).
    fn build(
        storage: &Storage,
        group: GroupId,
        shared: &Shared,
    ) -> Result<(Meta, Vec<u8>), RaftStoreError> {
        let (last_applied, last_membership, data) = Self::collect_snapshot(storage, group)?;
        let _guard = shared
            .snapshot_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current: Option<Meta> = read_state(storage, group, SNAPSHOT_META)?;
        if shared.snapshot_seq.load(Ordering::SeqCst) == 0 {
            let seed = current
                .as_ref()
                .and_then(|m| m.snapshot_id.rsplit('-').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            shared.snapshot_seq.store(seed, Ordering::SeqCst);
        }
        let seq = shared.snapshot_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id.term, id.index),
            None => format!("0-0-{seq}"),
        };
        let meta = Meta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let newer_installed = current.is_some_and(|c| c.last_log_id > meta.last_log_id);
        if !newer_installed {
            let mut batch = storage.batch();
            Self::put_current_snapshot(&mut batch, group, &meta, &data)?;
            batch.commit(Durability::Fsync)?;
        }
        Ok((meta, data))
    }

    fn put_current_snapshot(
        batch: &mut crate::storage::Batch,
        group: GroupId,
        meta: &Meta,
        data: &[u8],
    ) -> Result<(), RaftStoreError> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        batch.put_raft(
            RaftCf::State,
            &state_key(group, SNAPSHOT),
            &encode(group, SNAPSHOT, &stored)?,
        )?;
        batch.put_raft(
            RaftCf::State,
            &state_key(group, SNAPSHOT_META),
            &encode(group, SNAPSHOT_META, meta)?,
        )?;
        Ok(())
    }

    /// Replaces the group's whole state with a snapshot's, in one fsynced batch.
    fn install(
        storage: &Storage,
        group: GroupId,
        shared: &Shared,
        meta: &Meta,
        data: &[u8],
    ) -> Result<(), RaftStoreError> {
        let payload: SnapshotPayload = decode(group, "snapshot data", data)?;
        if payload.group != group {
            return Err(RaftStoreError::WrongGroup {
                group,
                found: payload.group,
            });
        }
        if payload.last_applied != meta.last_log_id {
            return Err(RaftStoreError::SnapshotMismatch {
                group,
                data: payload.last_applied,
                meta: meta.last_log_id,
            });
        }
        let prefix = group_prefix(group);
        let mut batch = storage.batch();
        for family in Family::ALL {
            batch.delete_prefix(family, &prefix)?;
        }
        for FamilyRows { family, rows } in &payload.families {
            let Some(f) = Family::ALL.into_iter().find(|f| f.name() == family) else {
                return Err(RaftStoreError::UnknownFamily {
                    group,
                    family: family.clone(),
                });
            };
            for (key, value) in rows {
                if !key.starts_with(&prefix) {
                    return Err(RaftStoreError::ForeignKey {
                        group,
                        origin: format!("snapshot {}", meta.snapshot_id),
                        family: f.name(),
                        key: hex(key),
                        prefix: hex(&prefix),
                    });
                }
                batch.put(f, key, value)?;
            }
        }
        match &meta.last_log_id {
            Some(id) => batch.put_raft(
                RaftCf::State,
                &state_key(group, APPLIED),
                &encode(group, APPLIED, id)?,
            )?,
            None => batch.delete_raft(RaftCf::State, &state_key(group, APPLIED))?,
        }
        batch.put_raft(
            RaftCf::State,
            &state_key(group, MEMBERSHIP),
            &encode(group, MEMBERSHIP, &meta.last_membership)?,
        )?;
        Self::put_current_snapshot(&mut batch, group, meta, data)?;
        let _guard = shared
            .snapshot_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(batch.commit(Durability::Fsync)?)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        let read = || -> Result<_, RaftStoreError> {
            let applied: Option<LogId> = read_state(&self.storage, self.group, APPLIED)?;
            let membership: Option<StoredMembership> =
                read_state(&self.storage, self.group, MEMBERSHIP)?;
            Ok((applied, membership.unwrap_or_default()))
        };
        read().map_err(|e| sto_err(ErrorSubject::StateMachine, ErrorVerb::Read, e))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ShardResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Err(e) = self.write_applied(&entries) {
            let subject = match entries.last() {
                Some(last) => ErrorSubject::Apply(last.log_id),
                None => ErrorSubject::StateMachine,
            };
            return Err(sto_err(subject, ErrorVerb::Write, e));
        }
        if let Some(last) = entries.last() {
            self.recent.forget_through(last.log_id.index);
        }
        for entry in &entries {
            if let EntryPayload::Normal(req) = &entry.payload {
                (self.hook)(self.group, &req.events);
            }
        }
        Ok(vec![ShardResponse::default(); entries.len()])
    }

    async fn get_snapshot_builder(&mut self) -> StateMachineStore {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let (storage, group, shared) = (self.storage.clone(), self.group, self.shared.clone());
        let meta_owned = meta.clone();
        let data = snapshot.into_inner();
        blocking(group, move || {
            Self::install(&storage, group, &shared, &meta_owned, &data)
        })
        .await
        .map_err(|e| {
            sto_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let stored: Option<StoredSnapshot> = read_state(&self.storage, self.group, SNAPSHOT)
            .map_err(|e| sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let (storage, group, shared) = (self.storage.clone(), self.group, self.shared.clone());
        let (meta, data) = blocking(group, move || Self::build(&storage, group, &shared))
            .await
            .map_err(|e| sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::META_GROUP;
    use crate::storage::StorageConfig;
    use doppel_twins::StateRead;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{BasicNode, CommittedLeaderId, Membership};
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;
    use tempfile::TempDir;

    const SHARDS: u32 = 8;

    fn open(dir: &Path) -> Storage {
        Storage::open(dir, SHARDS, &StorageConfig::default()).unwrap()
    }

    fn no_hook() -> ApplyHook {
        Arc::new(|_, _| {})
    }

    /// Builds the stores of group 3 in a fresh database per test.
    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), RaftStorageError> {
            let dir = tempfile::tempdir().unwrap();
            let storage = open(dir.path());
            let (log, sm) = LogStore::with_state_machine(storage, 3, no_hook());
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn passes_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn put(group: GroupId, family: Family, key: &str, value: &str) -> Write {
        Write::Put {
            family,
            key: data_key(group, key),
            value: value.as_bytes().to_vec(),
        }
    }

    fn data_key(group: GroupId, key: &str) -> Vec<u8> {
        let mut k = group_prefix(group).to_vec();
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn event(twin: &str) -> WireEvent {
        WireEvent {
            tenant: "acme".into(),
            kind: "twin.update".into(),
            twin_id: twin.into(),
            model: None,
            time: "2024-01-01T00:00:00Z".into(),
            data: "{}".into(),
            patch: None,
        }
    }

    fn normal(index: u64, writes: Vec<Write>, events: Vec<WireEvent>) -> Entry {
        Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(ShardRequest { writes, events }),
        }
    }

    fn membership(index: u64, voters: &[NodeId]) -> Entry {
        let set: BTreeSet<NodeId> = voters.iter().copied().collect();
        let nodes: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .map(|n| (*n, BasicNode::new(format!("10.0.0.{n}:7000"))))
            .collect();
        Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Membership(Membership::new(vec![set], nodes)),
        }
    }

    async fn append(log: &mut LogStore, entries: Vec<Entry>) {
        // LogFlushed has no public constructor; the suite covers the callback. Here a
        // blocking append through openraft's extension trait does the same.
        use openraft::storage::RaftLogStorageExt;
        log.blocking_append(entries).await.unwrap();
    }

    /// Every `(family, key, value)` of `group`, in order.
    fn group_rows(storage: &Storage, group: GroupId) -> Vec<(Family, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for f in Family::ALL {
            for (k, v) in storage
                .scan(f, &group_prefix(group), None, usize::MAX)
                .unwrap()
            {
                out.push((f, k, v));
            }
        }
        out
    }

    #[tokio::test]
    async fn entries_held_between_append_and_apply_always_match_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        let (mut log, mut sm) = LogStore::with_state_machine(storage.clone(), 4, no_hook());
        let entry = |i: u64| {
            normal(
                i,
                vec![put(4, Family::Twins, &format!("k{i}"), "v")],
                vec![],
            )
        };
        append(&mut log, (1..=5).map(entry).collect()).await;
        let held = log.recent.get(1, 6).expect("appended entries are held");
        let disk = log.read_entries(1, Some(6)).unwrap();
        assert_eq!(held, disk);
        assert_eq!(log.try_get_log_entries(2..=4).await.unwrap(), disk[1..4]);

        // A truncation drops the held tail with the logged one; the reader then
        // answers from the log, which no longer has it.
        log.truncate(log_id(1, 4)).await.unwrap();
        assert!(log.recent.get(4, 5).is_none());
        assert!(log.try_get_log_entries(4..6).await.unwrap().is_empty());
        // Entries appended anew after a truncation replace the old ones.
        let replaced = normal(4, vec![put(4, Family::Twins, "new", "v")], vec![]);
        append(&mut log, vec![replaced.clone()]).await;
        assert_eq!(
            log.try_get_log_entries(4..5).await.unwrap(),
            vec![replaced.clone()]
        );
        assert_eq!(log.read_entries(4, Some(5)).unwrap(), vec![replaced]);

        // Applied entries are let go (the log still serves them).
        sm.apply(log.try_get_log_entries(1..3).await.unwrap())
            .await
            .unwrap();
        assert!(log.recent.get(1, 3).is_none());
        assert!(log.recent.get(3, 5).is_some());
        assert_eq!(
            log.try_get_log_entries(1..5).await.unwrap(),
            log.read_entries(1, Some(5)).unwrap()
        );

        // A purge lets go of what it removes.
        log.purge(log_id(1, 3)).await.unwrap();
        assert!(log.recent.get(3, 4).is_none());
        assert_eq!(log.try_get_log_entries(4..5).await.unwrap().len(), 1);
    }

    #[test]
    fn held_entries_stay_within_their_byte_budget() {
        let recent = RecentEntries::default();
        let big = RECENT_BYTES / 4 + 1;
        recent.insert((1..=8).map(|i| (normal(i, vec![], vec![]), big)).collect());
        let g = recent.lock();
        assert!(g.bytes <= RECENT_BYTES, "{} bytes held", g.bytes);
        assert_eq!(g.entries.len(), 3, "the oldest are let go first");
        assert_eq!(g.entries.keys().copied().collect::<Vec<_>>(), vec![6, 7, 8]);
    }

    #[tokio::test]
    async fn two_groups_in_one_database_stay_separate() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        let mut log1 = LogStore::new(storage.clone(), 1);
        let mut log2 = LogStore::new(storage.clone(), 2);
        append(
            &mut log1,
            (1..=5).map(|i| normal(i, vec![], vec![])).collect(),
        )
        .await;
        append(
            &mut log2,
            (1..=3).map(|i| normal(i, vec![], vec![])).collect(),
        )
        .await;
        log1.save_vote(&Vote::new(4, 1)).await.unwrap();
        log1.purge(log_id(1, 2)).await.unwrap();
        log2.truncate(log_id(1, 3)).await.unwrap();

        let s1 = log1.get_log_state().await.unwrap();
        let s2 = log2.get_log_state().await.unwrap();
        assert_eq!(
            (s1.last_purged_log_id, s1.last_log_id),
            (Some(log_id(1, 2)), Some(log_id(1, 5)))
        );
        assert_eq!(
            (s2.last_purged_log_id, s2.last_log_id),
            (None, Some(log_id(1, 2)))
        );
        assert_eq!(log2.read_vote().await.unwrap(), None);
        assert_eq!(log2.try_get_log_entries(..).await.unwrap().len(), 2);
        assert_eq!(log1.try_get_log_entries(..).await.unwrap().len(), 3);

        let mut sm1 = StateMachineStore::new(storage.clone(), 1, no_hook());
        let mut sm2 = StateMachineStore::new(storage.clone(), 2, no_hook());
        sm1.apply([normal(1, vec![put(1, Family::Twins, "a", "1")], vec![])])
            .await
            .unwrap();
        sm2.apply([normal(7, vec![put(2, Family::Twins, "a", "2")], vec![])])
            .await
            .unwrap();
        assert_eq!(sm1.applied_state().await.unwrap().0, Some(log_id(1, 1)));
        assert_eq!(sm2.applied_state().await.unwrap().0, Some(log_id(1, 7)));
        let snap = sm1.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 1)));
        assert!(sm2.get_current_snapshot().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn applied_state_and_data_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let storage = open(dir.path());
            let mut log = LogStore::new(storage.clone(), 5);
            let mut sm = StateMachineStore::new(storage, 5, no_hook());
            let entries = vec![
                membership(1, &[1, 2, 3]),
                normal(
                    2,
                    vec![
                        put(5, Family::Twins, "t1", "v1"),
                        put(5, Family::Telemetry, "t1/x", "9"),
                    ],
                    vec![],
                ),
                normal(
                    3,
                    vec![
                        Write::DeletePrefix {
                            family: Family::Telemetry,
                            prefix: data_key(5, "t1/"),
                        },
                        put(5, Family::Devices, "d", "dv"),
                    ],
                    vec![],
                ),
            ];
            append(&mut log, entries.clone()).await;
            log.save_committed(Some(log_id(1, 3))).await.unwrap();
            sm.apply(entries).await.unwrap();
            sm.build_snapshot().await.unwrap();
        }
        let storage = open(dir.path());
        let mut log = LogStore::new(storage.clone(), 5);
        let mut sm = StateMachineStore::new(storage.clone(), 5, no_hook());
        let (applied, mem) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(1, 3)));
        assert_eq!(mem.log_id(), &Some(log_id(1, 1)));
        assert_eq!(
            mem.membership().voter_ids().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 3)));
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(log_id(1, 3))
        );
        assert_eq!(
            storage.get(Family::Twins, &data_key(5, "t1")).unwrap(),
            Some(b"v1".to_vec())
        );
        assert_eq!(
            storage
                .get(Family::Telemetry, &data_key(5, "t1/x"))
                .unwrap(),
            None
        );
        assert_eq!(
            storage.get(Family::Devices, &data_key(5, "d")).unwrap(),
            Some(b"dv".to_vec())
        );
        let current = sm
            .get_current_snapshot()
            .await
            .unwrap()
            .expect("snapshot kept across restart");
        assert_eq!(current.meta.last_log_id, Some(log_id(1, 3)));
        // Snapshot ids keep counting after a restart instead of repeating.
        let next = sm.build_snapshot().await.unwrap();
        assert_eq!(current.meta.snapshot_id, "1-3-1");
        assert_eq!(next.meta.snapshot_id, "1-3-2");
    }

    #[tokio::test]
    async fn snapshot_transfer_replaces_only_that_group() {
        let leader_dir = tempfile::tempdir().unwrap();
        let follower_dir = tempfile::tempdir().unwrap();
        let leader = open(leader_dir.path());
        let follower = open(follower_dir.path());
        let mut lead4 = StateMachineStore::new(leader.clone(), 4, no_hook());
        let mut lead5 = StateMachineStore::new(leader.clone(), 5, no_hook());
        lead4
            .apply([
                membership(1, &[1, 2, 3]),
                normal(
                    2,
                    vec![
                        put(4, Family::Twins, "a", "1"),
                        put(4, Family::RelOut, "a/r", "r"),
                    ],
                    vec![],
                ),
                normal(
                    3,
                    vec![
                        put(4, Family::Telemetry, "a/x", "7"),
                        put(4, Family::RelIn, "b/a", ""),
                    ],
                    vec![],
                ),
            ])
            .await
            .unwrap();
        lead5
            .apply([normal(
                1,
                vec![put(5, Family::Twins, "leader-only", "x")],
                vec![],
            )])
            .await
            .unwrap();

        let mut fol4 = StateMachineStore::new(follower.clone(), 4, no_hook());
        let mut fol5 = StateMachineStore::new(follower.clone(), 5, no_hook());
        // Stale state of group 4 the snapshot must wipe, and group 5 state it must keep.
        fol4.apply([normal(
            1,
            vec![
                put(4, Family::Twins, "stale", "s"),
                put(4, Family::Devices, "stale", "s"),
            ],
            vec![],
        )])
        .await
        .unwrap();
        fol5.apply([normal(
            9,
            vec![put(5, Family::Twins, "follower-only", "y")],
            vec![],
        )])
        .await
        .unwrap();
        let before5 = group_rows(&follower, 5);

        let snap = lead4.build_snapshot().await.unwrap();
        let mut rx = fol4.begin_receiving_snapshot().await.unwrap();
        *rx = *snap.snapshot;
        fol4.install_snapshot(&snap.meta, rx).await.unwrap();

        assert_eq!(group_rows(&follower, 4), group_rows(&leader, 4));
        assert_eq!(group_rows(&follower, 4).len(), 4);
        assert_eq!(group_rows(&follower, 5), before5);
        assert_eq!(
            fol4.applied_state().await.unwrap(),
            lead4.applied_state().await.unwrap()
        );
        assert_eq!(fol5.applied_state().await.unwrap().0, Some(log_id(1, 9)));
        drop((fol4, fol5, follower));

        // The installed snapshot is the current one after a restart.
        let follower = open(follower_dir.path());
        let mut fol4 = StateMachineStore::new(follower, 4, no_hook());
        let current = fol4.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
        assert_eq!(
            current.snapshot.into_inner(),
            lead4
                .get_current_snapshot()
                .await
                .unwrap()
                .unwrap()
                .snapshot
                .into_inner()
        );
    }

    #[tokio::test]
    async fn meta_group_prefix_deletes_cover_earlier_writes_of_the_batch() {
        // The meta group's prefix is all 0xff: its prefix deletes have no range end.
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        let mut sm = StateMachineStore::new(storage.clone(), META_GROUP, no_hook());
        sm.apply([normal(
            1,
            vec![put(META_GROUP, Family::Meta, "old", "1")],
            vec![],
        )])
        .await
        .unwrap();
        sm.apply([
            normal(2, vec![put(META_GROUP, Family::Meta, "new", "2")], vec![]),
            normal(
                3,
                vec![
                    Write::DeletePrefix {
                        family: Family::Meta,
                        prefix: group_prefix(META_GROUP).to_vec(),
                    },
                    put(META_GROUP, Family::Meta, "after", "3"),
                ],
                vec![],
            ),
        ])
        .await
        .unwrap();
        let rows: Vec<Vec<u8>> = group_rows(&storage, META_GROUP)
            .into_iter()
            .map(|(_, k, _)| k)
            .collect();
        assert_eq!(rows, vec![data_key(META_GROUP, "after")]);

        // And a snapshot of the meta group installs over other meta state.
        let snap = sm.build_snapshot().await.unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = open(other_dir.path());
        let mut other_sm = StateMachineStore::new(other.clone(), META_GROUP, no_hook());
        other_sm
            .apply([normal(
                1,
                vec![put(META_GROUP, Family::Meta, "zzz", "1")],
                vec![],
            )])
            .await
            .unwrap();
        other_sm
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        // `Storage::open` records the shard count in the meta family; compare our rows only.
        assert_eq!(
            group_rows(&other, META_GROUP),
            group_rows(&storage, META_GROUP)
        );
    }

    /// What the apply hook saw for one entry: its group and its events' twin ids.
    type Published = (GroupId, Vec<String>);

    #[tokio::test]
    async fn apply_hook_sees_events_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        let seen: Arc<Mutex<Vec<Published>>> = Arc::default();
        let sink = seen.clone();
        let hook: ApplyHook = Arc::new(move |group, events| {
            let twins = events.iter().map(|e| e.twin_id.clone()).collect();
            sink.lock().unwrap().push((group, twins));
        });
        let mut sm = StateMachineStore::new(storage, 6, hook);
        let replies = sm
            .apply([
                normal(1, vec![], vec![event("a"), event("b")]),
                membership(2, &[1]),
                normal(3, vec![], vec![]),
                normal(4, vec![], vec![event("c")]),
            ])
            .await
            .unwrap();
        assert_eq!(replies.len(), 4);
        sm.apply([normal(5, vec![], vec![event("d")])])
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            seen,
            vec![
                (6, s(&["a", "b"])),
                (6, s(&[])),
                (6, s(&["c"])),
                (6, s(&["d"]))
            ]
        );
    }

    #[tokio::test]
    async fn write_outside_the_group_prefix_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        let called = Arc::new(AtomicU64::new(0));
        let counter = called.clone();
        let hook: ApplyHook = Arc::new(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let mut sm = StateMachineStore::new(storage.clone(), 1, hook);
        let err = sm
            .apply([
                normal(
                    1,
                    vec![put(1, Family::Twins, "mine", "1")],
                    vec![event("a")],
                ),
                normal(
                    2,
                    vec![put(2, Family::Twins, "theirs", "1")],
                    vec![event("b")],
                ),
            ])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("outside the group's prefix"),
            "{err}"
        );
        // Nothing of the batch was written, and nothing was published.
        assert_eq!(
            storage.get(Family::Twins, &data_key(1, "mine")).unwrap(),
            None
        );
        assert_eq!(
            storage.get(Family::Twins, &data_key(2, "theirs")).unwrap(),
            None
        );
        assert_eq!(sm.applied_state().await.unwrap().0, None);
        assert_eq!(called.load(Ordering::SeqCst), 0);
        // A prefix delete reaching past the group (a shorter prefix) is refused too.
        let err = sm
            .apply([normal(
                3,
                vec![Write::DeletePrefix {
                    family: Family::Twins,
                    prefix: vec![0],
                }],
                vec![],
            )])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }

    #[test]
    fn records_carry_a_format_version() {
        let bytes = encode(1, APPLIED, &log_id(2, 3)).unwrap();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode::<LogId>(1, APPLIED, &bytes).unwrap(), log_id(2, 3));
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(
            decode::<LogId>(1, APPLIED, &future),
            Err(RaftStoreError::UnknownFormat { version: 9, .. })
        ));
    }
}
