//! Who leads a group, as a stream of changes: what the layers above the cluster watch
//! instead of openraft's metrics.
//!
//! ```text
//!  group g's Raft ──metrics (every apply, every heartbeat round …)──▶ feed task
//!      feed task ──only when current_leader differs──▶ watch<Option<NodeId>> ──▶ LeaderWatch …
//! ```
//!
//! Key types: [`LeaderWatch`] (one watcher's view) and [`LeaderFeed`] (the node's
//! per-group source of them, see [`crate::node::ClusterNode::leader_watch`]).
//!
//! Contract:
//! - [`LeaderWatch::current`] is the leader this node sees now (`None` while none is
//!   known, e.g. during an election), exactly as the group's metrics last reported it;
//! - [`LeaderWatch::changed`] resolves only when the leader differs from the last value
//!   this watcher saw (through `current` or `changed`): a watcher is woken by leadership
//!   changes, not by the metrics' other traffic; changes in quick succession may be seen
//!   as one (the latest value);
//! - once the group's Raft has stopped, `changed` returns [`GroupStopped`].

use crate::raft::{GroupId, NodeId, Raft};
use tokio::sync::watch;

/// The group's Raft has stopped: its leader will not change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("group {group} has stopped: its leader can no longer change")]
pub struct GroupStopped {
    pub group: GroupId,
}

/// One watcher of a group's leader.
#[derive(Debug)]
pub struct LeaderWatch {
    group: GroupId,
    rx: watch::Receiver<Option<NodeId>>,
}

impl LeaderWatch {
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The leader this node sees now (`None`: none known yet); marks it seen.
    pub fn current(&mut self) -> Option<NodeId> {
        *self.rx.borrow_and_update()
    }

    /// Waits until the leader differs from the last one this watcher saw, and returns
    /// the new one.
    pub async fn changed(&mut self) -> Result<Option<NodeId>, GroupStopped> {
        match self.rx.changed().await {
            Ok(()) => Ok(*self.rx.borrow_and_update()),
            Err(_) => Err(GroupStopped { group: self.group }),
        }
    }
}

/// The source of one group's [`LeaderWatch`]es: a task follows the group's metrics and
/// publishes its leader whenever it changes. The task ends when the Raft stops or when
/// the feed and every watch are gone.
pub(crate) struct LeaderFeed {
    group: GroupId,
    rx: watch::Receiver<Option<NodeId>>,
}

impl LeaderFeed {
    /// Starts following `raft` (needs a Tokio runtime).
    pub(crate) fn start(group: GroupId, raft: &Raft) -> LeaderFeed {
        let mut metrics = raft.metrics();
        let (tx, rx) = watch::channel(metrics.borrow_and_update().current_leader);
        tokio::spawn(async move {
            while metrics.changed().await.is_ok() {
                let leader = metrics.borrow_and_update().current_leader;
                tx.send_if_modified(|seen| {
                    let moved = *seen != leader;
                    *seen = leader;
                    moved
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        LeaderFeed { group, rx }
    }

    /// A new watcher; it has seen the current leader.
    pub(crate) fn watch(&self) -> LeaderWatch {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        LeaderWatch {
            group: self.group,
            rx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn watch_of(rx: watch::Receiver<Option<NodeId>>) -> LeaderWatch {
        LeaderFeed { group: 7, rx }.watch()
    }

    #[tokio::test]
    async fn a_watch_wakes_on_a_new_leader_and_reports_a_stopped_group() {
        let (tx, rx) = watch::channel(Some(1));
        let mut w = watch_of(rx);
        assert_eq!(w.current(), Some(1));
        tx.send_replace(None);
        assert_eq!(w.changed().await, Ok(None));
        assert_eq!(w.current(), None);
        tx.send_replace(Some(2));
        tx.send_replace(Some(3));
        // Changes in quick succession are seen as the latest.
        assert_eq!(w.changed().await, Ok(Some(3)));
        drop(tx);
        assert_eq!(w.changed().await, Err(GroupStopped { group: 7 }));
    }

    #[tokio::test]
    async fn a_group_reports_its_elected_leader_and_not_its_writes() {
        use crate::node::{ClusterConfig, ClusterNode};
        use crate::raft::ShardRequest;
        use crate::{Storage, StorageConfig};
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), 2, &StorageConfig::default()).unwrap();
        let node = ClusterNode::start(storage, ClusterConfig::single(1, 2), Arc::new(|_, _| {}))
            .await
            .unwrap();
        let mut w = node.leader_watch(0).expect("shard 0 exists");
        let mut leader = w.current();
        if leader.is_none() {
            leader = tokio::time::timeout(Duration::from_secs(10), w.changed())
                .await
                .expect("a leader is elected")
                .unwrap();
        }
        assert_eq!(leader, Some(1));
        // A write moves the group's metrics (last log, applied), not its leader.
        node.write(0, ShardRequest::default()).await.unwrap();
        let woken = tokio::time::timeout(Duration::from_millis(300), w.changed()).await;
        assert!(woken.is_err(), "woken by a write: {woken:?}");
        assert!(node.leader_watch(2).is_none(), "no shard 2");
        assert!(node.leader_watch(crate::raft::META_GROUP).is_some());
    }

    #[tokio::test]
    async fn a_new_watch_has_seen_the_current_leader() {
        let (tx, rx) = watch::channel(Some(1));
        tx.send_replace(Some(2));
        let mut w = watch_of(rx);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), w.changed()).await;
        assert!(waited.is_err(), "no change since the watch was made");
        assert_eq!(w.current(), Some(2));
    }
}
