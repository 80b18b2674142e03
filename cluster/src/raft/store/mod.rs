//! openraft storage (`storage-v2`) for one Raft group, in the node's one RocksDB.
//!
//! Every group of the node (the data shards and the meta group) shares the same
//! [`Storage`]; a group only ever touches keys that start with its own
//! [`group_prefix`](crate::raft::group_prefix), so groups never see each other's records.
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
//! `v` is a format-version byte ([`FORMAT_V1`]); a later format adds a version
//! and keeps reading this one.
//!
//! Key types: [`LogStore`] (`RaftLogStorage`, `RaftLogReader`) and [`StateMachineStore`]
//! (`RaftStateMachine`, `RaftSnapshotBuilder`), which share a group's [`RecentEntries`].
//!
//! | file               | subject                                                     |
//! |--------------------|-------------------------------------------------------------|
//! | `record.rs`        | on-disk record encoding (version byte + bincode) and keys   |
//! | `recent.rs`        | the recent-entries cache between append and apply           |
//! | `log_store.rs`     | the log and vote (`RaftLogStorage`)                         |
//! | `state_machine.rs` | applying entries (`RaftStateMachine`)                       |
//! | `snapshot.rs`      | building, keeping and installing snapshots                  |
//! | `error.rs`         | [`RaftStoreError`] and its conversion to openraft's error   |
//!
//! Correctness contract — what is fsynced when (fsync means: per
//! [`crate::StorageConfig::sync`]):
//!
//! | operation          | written as                          | durable when reported      |
//! |--------------------|-------------------------------------|----------------------------|
//! | `append`           | one batch, no fsync, before return  | fsynced by the node's WAL syncer before the `LogFlushed` callback |
//! | `save_vote`        | one batch                           | fsynced before return      |
//! | `truncate`         | one range delete                    | fsynced before return      |
//! | `save_committed`   | one batch                           | not fsynced (only ever names fsynced entries; losing it re-applies more) |
//! | `purge`            | range delete + `purged`, one batch  | not fsynced (a lost purge is a consistent, longer log) |
//! | `apply`            | writes + applied id (+ membership), one batch | not fsynced (committed entries are fsynced on a majority; re-applying reproduces the same writes) |
//! | snapshot build     | `snapshot` + `snapshot_meta`, one batch | fsynced                |
//! | snapshot install   | the group's whole key range + applied + membership + snapshot, one batch | fsynced |
//!
//! - Every log write is a single atomic batch, so the log never has a hole and `purged`
//!   always agrees with the entries present.
//! - The durable applied id always describes exactly the durable state-machine data.
//! - A snapshot is read from one consistent RocksDB snapshot: its data is exactly the
//!   state as of its `last_log_id`.

mod error;
mod log_store;
mod recent;
mod record;
mod snapshot;
mod state_machine;

pub use error::{RaftStorageError, RaftStoreError};
pub use log_store::LogStore;
pub use recent::RecentEntries;
pub use state_machine::{ApplyHook, StateMachineStore};

use crate::raft::GroupId;

/// The format version of every record the Raft stores write (the `v` byte above).
const FORMAT_V1: u8 = 1;

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

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use super::test_support::{append, log_id, no_hook, normal, open, put};
    use super::*;
    use crate::raft::TypeConfig;
    use doppel_twins::keys::Family;
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{RaftLogReader, RaftSnapshotBuilder, Vote};
    use tempfile::TempDir;

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
}
