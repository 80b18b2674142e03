//! Snapshots of one group: building one from a consistent view of the group's key range,
//! keeping the current one in `raft_state`, and installing a received one: the work
//! behind the state machine store's `build_snapshot`, `install_snapshot` and
//! `get_current_snapshot` (plain functions over [`Storage`], so this module does not
//! know the store).
//!
//! Contract:
//! - a snapshot is read from one consistent RocksDB snapshot: its data is exactly the
//!   state as of its `last_log_id`;
//! - installing one replaces the group's whole key range, applied id, membership and
//!   current snapshot in one fsynced batch, and touches no other group's keys;
//! - a build never replaces a newer installed snapshot, and snapshot ids keep counting
//!   across restarts.

use super::error::{hex, RaftStoreError};
use super::record::{
    decode, encode, read_state, state_key, APPLIED, MEMBERSHIP, SNAPSHOT, SNAPSHOT_META,
};
use crate::raft::{group_prefix, GroupId, LogId, NodeId, StoredMembership, TypeConfig};
use crate::storage::{Durability, RaftCf, Storage};
use doppel_twins::keys::Family;
use openraft::storage::Snapshot;
use openraft::SnapshotMeta;
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

pub(super) type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// What the clones of one group's state machine store share about its snapshots.
#[derive(Default)]
pub(super) struct SnapshotState {
    /// Serializes replacing the current snapshot (a snapshot build runs concurrently
    /// with `apply` and may finish after an `install_snapshot`).
    snapshot_lock: Mutex<()>,
    /// Last snapshot counter used; 0 until seeded from the stored snapshot id.
    snapshot_seq: AtomicU64,
}

/// Reads the group's state from one consistent view and encodes it as snapshot data.
fn collect(
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
pub(super) fn build(
    storage: &Storage,
    group: GroupId,
    shared: &SnapshotState,
) -> Result<(Meta, Vec<u8>), RaftStoreError> {
    let (last_applied, last_membership, data) = collect(storage, group)?;
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
        put_current(&mut batch, group, &meta, &data)?;
        batch.commit(Durability::Fsync)?;
    }
    Ok((meta, data))
}

fn put_current(
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

/// The group's current snapshot, if it has one.
pub(super) fn read_current(
    storage: &Storage,
    group: GroupId,
) -> Result<Option<Snapshot<TypeConfig>>, RaftStoreError> {
    let stored: Option<StoredSnapshot> = read_state(storage, group, SNAPSHOT)?;
    Ok(stored.map(|s| Snapshot {
        meta: s.meta,
        snapshot: Box::new(Cursor::new(s.data)),
    }))
}

/// Replaces the group's whole state with a snapshot's, in one fsynced batch.
pub(super) fn install(
    storage: &Storage,
    group: GroupId,
    shared: &SnapshotState,
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
    put_current(&mut batch, group, meta, data)?;
    let _guard = shared
        .snapshot_lock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(batch.commit(Durability::Fsync)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::store::test_support::{
        group_rows, log_id, membership, no_hook, normal, open, put,
    };
    use crate::raft::store::StateMachineStore;
    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;

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
}
