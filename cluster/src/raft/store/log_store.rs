//! The log store: one group's Raft log and vote ([`LogStore`], openraft's
//! `RaftLogStorage` and `RaftLogReader`).
//!
//! Contract (see the parent module for the whole picture):
//! - `append` writes its entries in one batch before it returns (so they are readable at
//!   once) and reports them flushed only after the node's WAL syncer has fsynced past
//!   them; `save_vote` and `truncate` are fsynced before they return;
//! - `save_committed` and `purge` are not fsynced: losing either to a crash leaves a
//!   consistent state (less to re-apply; a longer log);
//! - every log write is one atomic batch, so the log never has a hole and `purged`
//!   always agrees with the entries present;
//! - entries between append and apply are also served from memory ([`RecentEntries`]).
//!
//! Failpoint (the `failpoints` feature): `raft_log_after_write_before_sync`, in `append`
//! after the entries are written and before their fsync is awaited.

use super::blocking;
use super::error::{sto_err, RaftStorageError, RaftStoreError};
use super::recent::RecentEntries;
use super::record::{decode, encode, log_end, log_key, read_state, state_key};
use super::record::{COMMITTED, PURGED, VOTE};
use super::state_machine::{ApplyHook, StateMachineStore};
use crate::raft::{Entry, GroupId, LogId, NodeId, TypeConfig};
use crate::storage::{Durability, RaftCf, Storage};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, Vote};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

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
        // Crash window: the entries are written (readable, in the OS's page cache) but
        // neither fsynced nor reported flushed, so nothing may have acknowledged them.
        fail::fail_point!("raft_log_after_write_before_sync");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::store::test_support::{append, log_id, no_hook, normal, open, put};
    use doppel_twins::keys::Family;
    use openraft::storage::RaftStateMachine;

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
}
