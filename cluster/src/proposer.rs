//! The path from a proposed [`Command`] to a replicated, durable, applied change.
//!
//! ```text
//!  handlers ──propose()──▶ group g's bounded queue ──▶ group g's writer task
//!                                                       │ drain up to `max_batch` proposals
//!                                                       │ (this node must lead g, caught up)
//!                                                       │ evaluate each in its own Overlay
//!                                                       │   (a rejected command leaves no trace)
//!                                                       │ one ShardRequest (writes + events)
//!                                                       │ raft(g).client_write: replicated to a
//!                                                       │   majority, fsynced, applied here
//!                                                       └─▶ reply to every proposer
//! ```
//!
//! Every group (each data shard and the meta group) has its own writer, so a group
//! without quorum stalls only its own proposers. The shard leader evaluates; the Raft
//! log carries the resulting write set, which every replica applies (see
//! [`crate::raft`]). Change events travel in the same entry and are published by the
//! apply hook on every replica, in log order, once applied ([`Proposer::subscribe`]).
//!
//! Contract: a proposer gets `Ok` only after its command's writes are committed by a
//! majority (each replica fsyncs its log before acknowledging) and applied on this node.

use crate::node::{ClusterConfig, ClusterError, ClusterNode};
use crate::raft::store::ApplyHook;
use crate::raft::{GroupId, NodeId, ShardRequest, META_GROUP};
use crate::storage::Storage;
use doppel_twins::{
    change_event, ChangeEvent, Command, ErrorCode, Outcome, Overlay, Stamp, StateMachine,
    TwinError, WireEvent,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error(transparent)]
    Rejected(#[from] TwinError),
    #[error("the write queue is full; retry shortly")]
    Overloaded,
    #[error("this node does not lead shard group {group}; its leader is {}", leader.map(|l| format!("node {l}")).unwrap_or_else(|| "not elected yet".into()))]
    NotLeader {
        group: GroupId,
        leader: Option<NodeId>,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("storage failed ({0})")]
    StorageFailed(String),
}

impl ProposeError {
    /// The same refusal for a later command that was not queued because of it (only
    /// the queueing refusals occur here; anything else becomes `Unavailable`).
    fn clone_for_later(&self) -> ProposeError {
        match self {
            ProposeError::Overloaded => ProposeError::Overloaded,
            ProposeError::NotLeader { group, leader } => ProposeError::NotLeader {
                group: *group,
                leader: *leader,
            },
            other => ProposeError::Unavailable(other.to_string()),
        }
    }
}

impl From<ClusterError> for ProposeError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::NotLeader { group, leader, .. } => {
                ProposeError::NotLeader { group, leader }
            }
            other => ProposeError::Unavailable(other.to_string()),
        }
    }
}

struct Proposal {
    cmd: Command,
    stamp: Stamp,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

/// Counters for `/metrics` and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commands: AtomicU64,
    pub rejected: AtomicU64,
    pub groups: AtomicU64,
}

/// How many change events a slow watcher may fall behind before it misses some.
const EVENT_BUFFER: usize = 4096;

/// How many times a group's writer lets other ready tasks run before cutting a batch.
const LINGER_YIELDS: usize = 2;

/// How long a newly elected leader may take to apply its predecessors' entries
/// before its proposers are told to retry.
const CATCH_UP_WAIT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct Proposer {
    queues: Arc<Vec<mpsc::Sender<Proposal>>>,
    events: broadcast::Sender<Arc<ChangeEvent>>,
    cluster: ClusterNode,
    shard_count: u32,
    pub stats: Arc<CommitStats>,
}

impl Proposer {
    /// Opens every Raft group of this node on `storage`, forms or joins the cluster, and
    /// starts one writer per group.
    pub async fn start(
        storage: Storage,
        config: ClusterConfig,
        queue: usize,
        max_batch: usize,
    ) -> Result<Self, ClusterError> {
        let shard_count = config.shard_count.max(1);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        // Each group's writer has its own state machine (model cache), so evaluation
        // takes no lock; a meta-group apply bumps the generation and every writer
        // drops its cached models before its next evaluation.
        let models_generation = Arc::new(AtomicU64::new(0));
        let hook: ApplyHook = {
            let events = events.clone();
            let models_generation = models_generation.clone();
            Arc::new(move |group: GroupId, wire: &[WireEvent]| {
                if group == META_GROUP {
                    // Models may have changed (possibly through another node's
                    // evaluation): every cached resolution is dropped.
                    models_generation.fetch_add(1, Ordering::AcqRel);
                }
                for w in wire {
                    match w.to_event() {
                        // No watcher is not an error.
                        Some(e) => {
                            let _ = events.send(Arc::new(e));
                        }
                        None => {
                            tracing::warn!(kind = %w.kind, "skipping an event this release cannot read")
                        }
                    }
                }
            })
        };
        let cluster = ClusterNode::start(storage.clone(), config, hook).await?;
        let stats = Arc::new(CommitStats::default());
        let mut queues = Vec::new();
        for g in cluster.group_ids() {
            let (tx, rx) = mpsc::channel(queue.max(1));
            let writer = Writer {
                group: g,
                storage: storage.clone(),
                machine: Mutex::new((0, StateMachine::new(shard_count))),
                models_generation: models_generation.clone(),
                cluster: cluster.clone(),
                stats: stats.clone(),
                max_batch: max_batch.max(1),
            };
            tokio::spawn(writer.run(rx));
            queues.push(tx);
        }
        Ok(Proposer {
            queues: Arc::new(queues),
            events,
            cluster,
            shard_count,
            stats,
        })
    }

    pub fn cluster(&self) -> &ClusterNode {
        &self.cluster
    }

    /// A stream of every applied change, in log order per group. A receiver that falls
    /// more than a few thousand events behind gets `RecvError::Lagged` and continues.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.events.subscribe()
    }

    /// The group a command is evaluated in.
    pub fn group_of(&self, cmd: &Command) -> GroupId {
        cmd.shard(self.shard_count)
    }

    /// Proposes a command stamped now; resolves once it is replicated and applied (or
    /// rejected).
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ProposeError> {
        let stamp = Stamp {
            now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            nonce: rand::random(),
        };
        self.propose_stamped(cmd, stamp).await
    }

    /// Proposes several commands stamped now, in order, and resolves once every one
    /// is replicated and applied (or rejected); result *i* answers command *i*.
    ///
    /// The commands are queued before anything is awaited, so commands of one group
    /// are evaluated in the order given (typically in one Raft entry). Once one
    /// cannot be queued here (not the leader, queue full), neither can any later one
    /// of its group: a later command never overtakes an earlier refused one.
    pub async fn propose_many(&self, cmds: Vec<Command>) -> Vec<Result<Outcome, ProposeError>> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut refused: Vec<(GroupId, ProposeError)> = Vec::new();
        let mut waits = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            let stamp = Stamp {
                now: now.clone(),
                nonce: rand::random(),
            };
            let group = self.group_of(&cmd);
            if let Some((_, e)) = refused.iter().find(|(g, _)| *g == group) {
                waits.push(Err(e.clone_for_later()));
                continue;
            }
            match self.enqueue(group, cmd, stamp) {
                Ok(rx) => waits.push(Ok(rx)),
                Err(e) => {
                    waits.push(Err(e.clone_for_later()));
                    refused.push((group, e));
                }
            }
        }
        let mut results = Vec::with_capacity(waits.len());
        for w in waits {
            results.push(match w {
                Ok(rx) => rx.await.unwrap_or_else(|_| {
                    Err(ProposeError::Unavailable(
                        "the node is shutting down".into(),
                    ))
                }),
                Err(e) => Err(e),
            });
        }
        results
    }

    /// Queues a command on its group's writer, or says why it cannot be.
    fn enqueue(
        &self,
        group: GroupId,
        cmd: Command,
        stamp: Stamp,
    ) -> Result<oneshot::Receiver<Result<Outcome, ProposeError>>, ProposeError> {
        let idx = if group == META_GROUP {
            self.queues.len() - 1
        } else {
            group as usize
        };
        let leader = self.cluster.leader_of(group);
        if leader.is_some() && leader != Some(self.cluster.node_id()) {
            return Err(ProposeError::NotLeader { group, leader });
        }
        let (reply, rx) = oneshot::channel();
        self.queues[idx]
            .try_send(Proposal { cmd, stamp, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ProposeError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    ProposeError::Unavailable("the node is shutting down".into())
                }
            })?;
        Ok(rx)
    }

    pub async fn propose_stamped(
        &self,
        cmd: Command,
        stamp: Stamp,
    ) -> Result<Outcome, ProposeError> {
        let group = self.group_of(&cmd);
        self.enqueue(group, cmd, stamp)?.await.unwrap_or_else(|_| {
            Err(ProposeError::Unavailable(
                "the node is shutting down".into(),
            ))
        })
    }
}

struct Writer {
    group: GroupId,
    storage: Storage,
    /// This writer's state machine and the models generation its cache matches. The
    /// mutex is never contended (one writer task); it only makes the writer `Sync`.
    machine: Mutex<(u64, StateMachine)>,
    models_generation: Arc<AtomicU64>,
    cluster: ClusterNode,
    stats: Arc<CommitStats>,
    max_batch: usize,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Proposal>) {
        while let Some(first) = rx.recv().await {
            // Let the tasks that are ready to run (connections with messages in hand)
            // enqueue theirs before the batch is cut: every Raft round has a fixed cost,
            // so a busy group should carry many commands per entry. When nothing else
            // is runnable this returns at once.
            for _ in 0..LINGER_YIELDS {
                tokio::task::yield_now().await;
            }
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            if !self.ready().await {
                let leader = self.cluster.leader_of(self.group);
                for p in batch {
                    let _ = p.reply.send(Err(ProposeError::NotLeader {
                        group: self.group,
                        leader: leader.filter(|l| *l != self.cluster.node_id()),
                    }));
                }
                continue;
            }
            self.commit_batch(batch).await;
        }
    }

    /// Whether this node may evaluate for its group now: it leads it and has applied
    /// every earlier leader's entries. A fresh leader gets a moment to catch up.
    async fn ready(&self) -> bool {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            if self.cluster.leads_and_caught_up(self.group) {
                return true;
            }
            let leader = self.cluster.leader_of(self.group);
            if (leader.is_some() && leader != Some(self.cluster.node_id()))
                || tokio::time::Instant::now() >= deadline
            {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn commit_batch(&self, batch: Vec<Proposal>) {
        let (mut results, mut writes, mut events) = self.evaluate(&batch);
        // Models live in the meta group, whose replica here may trail its leader: a
        // model uploaded through another node a moment ago may not be applied here
        // yet. Before refusing a twin for an unknown model, catch up with the meta
        // group (a read barrier) and evaluate the batch again.
        // The same holds for the marks that begin a model's or a twin's deletion (the
        // twin's mark lives in the twin's own shard group).
        let mut behind: Vec<GroupId> = Vec::new();
        for (p, r) in batch.iter().zip(&results) {
            let Err(ProposeError::Rejected(e)) = r else {
                continue;
            };
            match (e.code(), &p.cmd) {
                (ErrorCode::ModelNotFound | ErrorCode::ModelDeleteNotBegun, _) => {
                    behind.push(META_GROUP)
                }
                (
                    ErrorCode::DigitalTwinDeleteNotBegun,
                    Command::CheckNoIncoming {
                        tenant, twin_id, ..
                    }
                    | Command::CheckIncomingFit {
                        tenant, twin_id, ..
                    },
                ) => behind.push(doppel_twins::keys::shard_of(
                    tenant,
                    twin_id,
                    self.cluster.shard_count(),
                )),
                _ => {}
            }
        }
        behind.sort_unstable();
        behind.dedup();
        behind.retain(|g| *g != self.group);
        if !behind.is_empty() && !self.cluster.is_single_voter() {
            match self.cluster.read_barrier(&behind).await {
                Ok(()) => {
                    self.forget_models();
                    (results, writes, events) = self.evaluate(&batch);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "read barrier failed; answering as evaluated")
                }
            }
        }
        self.stats
            .commands
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let rejected = results.iter().filter(|r| r.is_err()).count();
        self.stats
            .rejected
            .fetch_add(rejected as u64, Ordering::Relaxed);
        let committed = if writes.is_empty() {
            Ok(())
        } else {
            self.stats.groups.fetch_add(1, Ordering::Relaxed);
            self.cluster
                .write(self.group, ShardRequest { writes, events })
                .await
        };
        match committed {
            Ok(()) => {
                for (p, r) in batch.into_iter().zip(results) {
                    let _ = p.reply.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(group = self.group, error = %e, "a write group was not committed");
                // The cache may hold models read through the uncommitted overlay.
                self.forget_models();
                let e = ProposeError::from(e);
                for p in batch {
                    let _ = p.reply.send(Err(match &e {
                        ProposeError::NotLeader { group, leader } => ProposeError::NotLeader {
                            group: *group,
                            leader: *leader,
                        },
                        other => ProposeError::Unavailable(other.to_string()),
                    }));
                }
            }
        }
    }

    /// Drops this writer's cached model resolutions (they may hold models read through an
    /// overlay that was never committed, or be older than the meta group's state).
    fn forget_models(&self) {
        let mut guard = match self.machine.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = guard.1.shard_count();
        guard.1 = StateMachine::new(n);
    }

    /// Evaluates every proposal against this node's applied state plus the writes of the
    /// proposals before it in the batch.
    #[allow(clippy::type_complexity)]
    fn evaluate(
        &self,
        batch: &[Proposal],
    ) -> (
        Vec<Result<Outcome, ProposeError>>,
        Vec<doppel_twins::Write>,
        Vec<WireEvent>,
    ) {
        let mut guard = match self.machine.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let generation = self.models_generation.load(Ordering::Acquire);
        if guard.0 != generation {
            let n = guard.1.shard_count();
            *guard = (generation, StateMachine::new(n));
        }
        let machine = &mut guard.1;
        let mut overlay = Overlay::new(&self.storage);
        let mut results = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        for p in batch {
            // A bug in applying one command (a panic) must not take the writer, and with
            // it every later write of the group, down: that command is refused (its
            // overlay is dropped, so it leaves no trace) and the batch goes on.
            let m = &mut *machine;
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut tx = Overlay::new(&overlay);
                m.apply(&p.cmd, &p.stamp, &mut tx)
                    .map(|o| (o, tx.into_writes()))
            }))
            .unwrap_or_else(|_| {
                tracing::error!(command = ?p.cmd, "applying a command panicked; it was refused");
                Err(TwinError::Store(doppel_twins::StoreError(
                    "internal error while applying the command; it was not applied".into(),
                )))
            });
            match applied {
                Ok((outcome, writes)) => {
                    overlay.extend(writes);
                    if let Some(e) = change_event(&p.cmd, &outcome, &p.stamp) {
                        events.push(WireEvent::from(&e));
                    }
                    results.push(Ok(outcome));
                }
                Err(e) => results.push(Err(ProposeError::Rejected(e))),
            }
        }
        (results, overlay.into_writes(), events)
    }
}
