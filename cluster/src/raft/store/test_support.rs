//! What the stores' unit tests share: a fresh database, entries and writes of a group,
//! and reading a group's rows back.

use super::{ApplyHook, LogStore};
use crate::raft::{group_prefix, Entry, GroupId, LogId, NodeId, ShardRequest};
use crate::storage::{Storage, StorageConfig};
use doppel_twins::keys::Family;
use doppel_twins::{StateRead, WireEvent, Write};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

const SHARDS: u32 = 8;

pub(super) fn open(dir: &Path) -> Storage {
    Storage::open(dir, SHARDS, &StorageConfig::default()).unwrap()
}

pub(super) fn no_hook() -> ApplyHook {
    Arc::new(|_, _| {})
}

pub(super) fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

pub(super) fn put(group: GroupId, family: Family, key: &str, value: &str) -> Write {
    Write::Put {
        family,
        key: data_key(group, key),
        value: value.as_bytes().to_vec(),
    }
}

pub(super) fn data_key(group: GroupId, key: &str) -> Vec<u8> {
    let mut k = group_prefix(group).to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

pub(super) fn event(twin: &str) -> WireEvent {
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

pub(super) fn normal(index: u64, writes: Vec<Write>, events: Vec<WireEvent>) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(ShardRequest { writes, events }),
    }
}

pub(super) fn membership(index: u64, voters: &[NodeId]) -> Entry {
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

pub(super) async fn append(log: &mut LogStore, entries: Vec<Entry>) {
    // LogFlushed has no public constructor; the suite covers the callback. Here a
    // blocking append through openraft's extension trait does the same.
    use openraft::storage::RaftLogStorageExt;
    log.blocking_append(entries).await.unwrap();
}

/// Every `(family, key, value)` of `group`, in order.
pub(super) fn group_rows(storage: &Storage, group: GroupId) -> Vec<(Family, Vec<u8>, Vec<u8>)> {
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
