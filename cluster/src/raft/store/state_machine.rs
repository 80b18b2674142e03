//! The state-machine store: one group's slice of the data families plus its applied log
//! id and membership ([`StateMachineStore`], openraft's `RaftStateMachine` and
//! `RaftSnapshotBuilder`); the snapshot work itself is in [`super::snapshot`].
//!
//! Contract:
//! - `apply` writes a whole batch of entries' writes *and* the new applied log id (and
//!   membership) in one atomic batch, so the durable applied id always describes exactly
//!   the durable state-machine data; it is not fsynced (see `write_applied`);
//! - a write outside the group's key prefix is refused, and then nothing of the batch is
//!   written or published;
//! - the [`ApplyHook`] sees each normal entry's events after its batch is written, in
//!   log order.

use super::blocking;
use super::error::{hex, sto_err, RaftStorageError, RaftStoreError};
use super::recent::RecentEntries;
use super::record::{encode, read_state, state_key, APPLIED, MEMBERSHIP};
use super::snapshot::{self, Meta, SnapshotState};
use crate::raft::{
    group_prefix, Entry, GroupId, LogId, ShardRequest, ShardResponse, StoredMembership, TypeConfig,
};
use crate::storage::{Durability, RaftCf, Storage};
use doppel_twins::{WireEvent, Write};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use std::io::Cursor;
use std::sync::Arc;

/// Called after each `apply` batch is written, once per normal entry, in log order, with
/// the entry's change events. It runs on the state machine's task: it must not block
/// (publishing to a broadcast channel is the intended use).
pub type ApplyHook = Arc<dyn Fn(GroupId, &[WireEvent]) + Send + Sync>;

/// The state machine of one group: its slice of the data families plus the applied log
/// id, membership and current snapshot.
#[derive(Clone)]
pub struct StateMachineStore {
    pub(super) storage: Storage,
    pub(super) group: GroupId,
    hook: ApplyHook,
    pub(super) shared: Arc<SnapshotState>,
    /// The log's entries held in memory; applied ones are let go.
    pub(super) recent: RecentEntries,
}

impl StateMachineStore {
    pub fn new(storage: Storage, group: GroupId, hook: ApplyHook) -> Self {
        StateMachineStore {
            storage,
            group,
            hook,
            shared: Arc::default(),
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
            snapshot::install(&storage, group, &shared, &meta_owned, &data)
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
        snapshot::read_current(&self.storage, self.group)
            .map_err(|e| sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let (storage, group, shared) = (self.storage.clone(), self.group, self.shared.clone());
        let (meta, data) = blocking(group, move || snapshot::build(&storage, group, &shared))
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
    use crate::raft::store::test_support::{
        append, data_key, event, group_rows, log_id, membership, no_hook, normal, open, put,
    };
    use crate::raft::store::LogStore;
    use crate::raft::META_GROUP;
    use doppel_twins::keys::Family;
    use doppel_twins::StateRead;
    use openraft::storage::RaftLogStorage;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

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
}
