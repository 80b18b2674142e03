//! A cluster node: one openraft `Raft` per group (the meta group and every data shard)
//! over the node's one RocksDB and its one QUIC transport.
//!
//! ```text
//!  groups:  [shard 0] [shard 1] … [shard n-1] [meta]      one Raft each, same DB
//!  transport (QUIC, mTLS) ─▶ RpcRouter ─▶ group g's Raft (append / vote / snapshot)
//!                                      ─▶ read index, join, add-voter, status
//!                                      ─▶ forwarded application requests
//! ```
//!
//! Membership. The first node of a cluster (no `--join`) initializes every group with
//! itself as the only voter. A node started with `--join` asks a member to add it; that
//! member makes it a learner and then a voter of every group, one group at a time,
//! asking each group's current leader. Every group has at most
//! [`REPLICATION_FACTOR`] voters; with three nodes every node replicates every group.
//! The meta group's membership is the cluster's node list (ids and addresses); each
//! group's membership is its replica set; leaders are whatever Raft elected.

use crate::leader_watch::{LeaderFeed, LeaderWatch};
use crate::raft::network::{Network, RaftWire};
use crate::raft::store::{ApplyHook, LogStore};
use crate::raft::{GroupId, NodeId, Raft, ShardRequest, META_GROUP};
use crate::rpc::{self, GroupStatus, NodeStatus, ReadIndexError, Request, Response};
use crate::storage::Storage;
use crate::transport::{ClusterTls, RpcHandler, Transport};
use futures_util::future::BoxFuture;
use openraft::{BasicNode, ChangeMembers, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Replicas per group.
pub const REPLICATION_FACTOR: usize = 3;

/// How long a write waits for its group to commit before the caller is told the group
/// is unavailable (for example: no quorum on this side of a partition).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// The QUIC address to listen on; `None` runs a single node with no transport.
    pub listen: Option<SocketAddr>,
    /// The address peers dial (defaults to `listen`).
    pub advertise: Option<String>,
    /// Members to ask for admission when this node is new.
    pub join: Vec<String>,
    /// Where `ca.pem`, `node-{id}.pem` and `node-{id}.key` are.
    pub certs_dir: Option<std::path::PathBuf>,
    pub shard_count: u32,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// Take a snapshot (and let the log be purged) after this many applied entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot, for replicas that lag a little; one that
    /// lags more catches up by snapshot.
    pub logs_to_keep: u64,
}

impl ClusterConfig {
    pub fn single(node_id: NodeId, shard_count: u32) -> Self {
        ClusterConfig {
            node_id,
            listen: None,
            advertise: None,
            join: Vec::new(),
            certs_dir: None,
            shard_count,
            heartbeat_ms: 100,
            election_timeout_ms: (300, 600),
            snapshot_every: 20_000,
            logs_to_keep: 1_000,
        }
    }

    fn advertised(&self) -> String {
        self.advertise
            .clone()
            .or_else(|| self.listen.map(|a| a.to_string()))
            .unwrap_or_else(|| "local".into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("node {node} does not lead group {group} (leader: {})", leader.map(|l| l.to_string()).unwrap_or_else(|| "none elected yet".into()))]
    NotLeader {
        node: NodeId,
        group: GroupId,
        leader: Option<NodeId>,
    },
    #[error("group {group} is unavailable: {reason}")]
    Unavailable { group: GroupId, reason: String },
    #[error("cluster setup failed: {0}")]
    Setup(String),
}

/// An application-level handler for requests forwarded by other nodes.
pub trait ForwardHandler: Send + Sync + 'static {
    fn handle(&self, from: NodeId, payload: Vec<u8>) -> BoxFuture<'static, Vec<u8>>;
}

struct Inner {
    config: ClusterConfig,
    /// Index `s` for data shard `s`; the meta group last.
    groups: Vec<Raft>,
    /// Each group's leader, in the order of `groups`.
    leaders: Vec<LeaderFeed>,
    transport: Option<Transport>,
    forward: OnceLock<Arc<dyn ForwardHandler>>,
}

#[derive(Clone)]
pub struct ClusterNode {
    inner: Arc<Inner>,
}

fn raft_config(c: &ClusterConfig) -> Result<Arc<openraft::Config>, ClusterError> {
    let cfg = openraft::Config {
        cluster_name: "doppel".into(),
        heartbeat_interval: c.heartbeat_ms,
        election_timeout_min: c.election_timeout_ms.0,
        election_timeout_max: c.election_timeout_ms.1,
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(c.snapshot_every),
        max_in_snapshot_log_to_keep: c.logs_to_keep,
        max_payload_entries: 256,
        ..Default::default()
    };
    cfg.validate()
        .map(Arc::new)
        .map_err(|e| ClusterError::Setup(format!("raft configuration: {e}")))
}

impl ClusterNode {
    /// Opens every group on `storage`, starts the transport (when listening) and forms
    /// or joins the cluster. Returns once this node is a member of every group (its
    /// groups may still be electing leaders).
    pub async fn start(
        storage: Storage,
        config: ClusterConfig,
        hook: ApplyHook,
    ) -> Result<ClusterNode, ClusterError> {
        let rcfg = raft_config(&config)?;
        let router = Arc::new(RpcRouter {
            node: OnceLock::new(),
        });
        let transport = match config.listen {
            None => None,
            Some(listen) => {
                let dir = config.certs_dir.clone().ok_or_else(|| {
                    ClusterError::Setup(
                        "a cluster node needs --cluster-certs (make them with `doppel cluster init`)"
                            .into(),
                    )
                })?;
                let tls = ClusterTls::load(&dir, config.node_id)
                    .map_err(|e| ClusterError::Setup(e.to_string()))?;
                Some(
                    Transport::start(config.node_id, listen, tls, router.clone())
                        .await
                        .map_err(|e| ClusterError::Setup(e.to_string()))?,
                )
            }
        };
        let mut groups = Vec::with_capacity(config.shard_count as usize + 1);
        let mut leaders = Vec::with_capacity(config.shard_count as usize + 1);
        for g in (0..config.shard_count).chain([META_GROUP]) {
            let net = Network {
                group: g,
                wire: RaftWire::from(transport.clone()),
            };
            let (log, sm) = LogStore::with_state_machine(storage.clone(), g, hook.clone());
            let raft = Raft::new(config.node_id, rcfg.clone(), net, log, sm)
                .await
                .map_err(|e| ClusterError::Setup(format!("group {g}: {e}")))?;
            leaders.push(LeaderFeed::start(g, &raft));
            groups.push(raft);
        }
        let node = ClusterNode {
            inner: Arc::new(Inner {
                config,
                groups,
                leaders,
                transport,
                forward: OnceLock::new(),
            }),
        };
        let _ = router.node.set(node.clone());
        node.form_or_join().await?;
        Ok(node)
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    pub fn shard_count(&self) -> u32 {
        self.inner.config.shard_count
    }

    /// Installs the handler for forwarded application requests.
    pub fn set_forward_handler(&self, h: Arc<dyn ForwardHandler>) {
        let _ = self.inner.forward.set(h);
    }

    pub fn transport(&self) -> Option<&Transport> {
        self.inner.transport.as_ref()
    }

    /// Every group id: the data shards, then the meta group.
    pub fn group_ids(&self) -> impl Iterator<Item = GroupId> {
        (0..self.inner.config.shard_count).chain([META_GROUP])
    }

    /// Where `group` is in `groups` and `leaders` (the meta group is last).
    fn group_index(&self, group: GroupId) -> Option<usize> {
        let shards = self.inner.config.shard_count;
        match group {
            META_GROUP => Some(shards as usize),
            g if g < shards => Some(g as usize),
            _ => None,
        }
    }

    fn raft(&self, group: GroupId) -> Option<&Raft> {
        self.inner.groups.get(self.group_index(group)?)
    }

    /// Watches who leads `group` as this node sees it (`None`: no such group).
    pub fn leader_watch(&self, group: GroupId) -> Option<LeaderWatch> {
        let feed = self.inner.leaders.get(self.group_index(group)?)?;
        Some(feed.watch())
    }

    fn raft_or(&self, group: GroupId) -> Result<&Raft, ClusterError> {
        self.raft(group).ok_or(ClusterError::Unavailable {
            group,
            reason: "no such group".into(),
        })
    }

    async fn form_or_join(&self) -> Result<(), ClusterError> {
        let meta = self.raft_or(META_GROUP)?;
        let initialized = meta
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        if self.inner.config.join.is_empty() {
            let me = BasicNode {
                addr: self.inner.config.advertised(),
            };
            let members = BTreeMap::from([(self.node_id(), me)]);
            for g in self.group_ids() {
                let raft = self.raft_or(g)?;
                if !raft
                    .is_initialized()
                    .await
                    .map_err(|e| ClusterError::Setup(e.to_string()))?
                {
                    raft.initialize(members.clone())
                        .await
                        .map_err(|e| ClusterError::Setup(format!("group {g}: {e}")))?;
                }
            }
            tracing::info!(node = self.node_id(), "formed a new cluster");
            return Ok(());
        }
        self.join().await
    }

    async fn join(&self) -> Result<(), ClusterError> {
        let transport = self.inner.transport.clone().ok_or_else(|| {
            ClusterError::Setup("--join needs --cluster-addr (this node must be reachable)".into())
        })?;
        let req = rpc::encode(&Request::Join {
            node_id: self.node_id(),
            addr: self.inner.config.advertised(),
        })
        .map_err(ClusterError::Setup)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = String::new();
        while Instant::now() < deadline {
            for seed in &self.inner.config.join {
                // The seed's id is unknown before joining; 0 means "whoever answers" to
                // the transport, which still checks the CA.
                match transport
                    .call(0, seed, req.clone(), Duration::from_secs(120))
                    .await
                {
                    Ok(bytes) => match rpc::decode::<Response>(&bytes) {
                        Ok(Response::Done) => {
                            tracing::info!(node = self.node_id(), via = %seed, "joined the cluster");
                            return Ok(());
                        }
                        Ok(Response::Error(e)) => last = format!("{seed}: {e}"),
                        Ok(other) => last = format!("{seed}: unexpected answer {other:?}"),
                        Err(e) => last = format!("{seed}: {e}"),
                    },
                    Err(e) => last = format!("{seed}: {e}"),
                }
                tracing::warn!(error = %last, "join attempt failed; retrying");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(ClusterError::Setup(format!(
            "could not join the cluster within 120 s; last error: {last}"
        )))
    }

    /// Coordinates admitting `node_id` to every group (on the member that was asked).
    async fn admit(&self, node_id: NodeId, addr: String) -> Result<(), String> {
        let started = Instant::now();
        let total = self.inner.groups.len();
        for (i, g) in [META_GROUP]
            .into_iter()
            .chain(0..self.shard_count())
            .enumerate()
        {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let r = match self.wait_leader(g, Duration::from_secs(5)).await {
                    Err(e) => Err(e.to_string()),
                    Ok(l) if l == self.node_id() => self.add_voter(g, node_id, &addr).await,
                    Ok(l) => {
                        let req = Request::AddVoter {
                            group: g,
                            node_id,
                            addr: addr.clone(),
                        };
                        match self.call(l, &req, Duration::from_secs(30)).await {
                            Ok(Response::Done) => Ok(()),
                            Ok(Response::Error(e)) => Err(e),
                            Ok(other) => Err(format!("unexpected answer {other:?}")),
                            Err(e) => Err(e),
                        }
                    }
                };
                match r {
                    Ok(()) => break,
                    Err(e) if e.contains("replicas already") => return Err(e),
                    Err(e) if Instant::now() > deadline => {
                        return Err(format!("adding node {node_id} to group {g}: {e}"))
                    }
                    Err(e) => {
                        tracing::debug!(group = g, error = %e, "add voter: retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            if (i + 1) % 16 == 0 || i + 1 == total {
                tracing::info!(
                    node = node_id,
                    "admitting node: {}/{} groups ({} ms)",
                    i + 1,
                    total,
                    started.elapsed().as_millis()
                );
            }
        }
        Ok(())
    }

    /// On `group`'s leader: makes `node_id` a learner, waits for it to catch up, then a voter.
    async fn add_voter(&self, group: GroupId, node_id: NodeId, addr: &str) -> Result<(), String> {
        let raft = self.raft_or(group).map_err(|e| e.to_string())?;
        let m = raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        if voters.contains(&node_id) {
            return Ok(());
        }
        if voters.len() >= REPLICATION_FACTOR {
            return Err(format!(
                "group {group} has its {REPLICATION_FACTOR} replicas already; clusters of more \
                 than {REPLICATION_FACTOR} nodes need replica placement, which doppel does not \
                 do yet"
            ));
        }
        raft.add_learner(
            node_id,
            BasicNode {
                addr: addr.to_owned(),
            },
            true,
        )
        .await
        .map_err(|e| e.to_string())?;
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The current leader of `group` as this node sees it.
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.raft(group)?.metrics().borrow().current_leader
    }

    /// Waits up to `timeout` for `group` to have a leader.
    pub async fn wait_leader(
        &self,
        group: GroupId,
        timeout: Duration,
    ) -> Result<NodeId, ClusterError> {
        let raft = self.raft_or(group)?;
        let mut rx = raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = rx.borrow_and_update().current_leader {
                return Ok(l);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(ClusterError::Unavailable {
                    group,
                    reason: format!("no leader elected within {} ms", timeout.as_millis()),
                });
            }
        }
    }

    /// The address peers reach `node` at (from the meta group's membership).
    pub fn addr_of(&self, node: NodeId) -> Option<String> {
        for g in [META_GROUP].into_iter().chain(0..self.shard_count()) {
            let raft = self.raft(g)?;
            let m = raft.metrics().borrow().membership_config.clone();
            if let Some(n) = m.membership().get_node(&node) {
                return Some(n.addr.clone());
            }
        }
        None
    }

    /// Whether this node leads `group` and has applied everything earlier leaders
    /// committed (its term's first entry is applied), so it may evaluate commands
    /// against its local state.
    pub fn leads_and_caught_up(&self, group: GroupId) -> bool {
        let Some(raft) = self.raft(group) else {
            return false;
        };
        let m = raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader
            && m.current_leader == Some(self.node_id())
            && m.last_applied
                .map(|l| l.leader_id.term == m.current_term)
                .unwrap_or(false)
    }

    /// Replicates `req` through `group` and returns once it is committed and applied here.
    pub async fn write(&self, group: GroupId, req: ShardRequest) -> Result<(), ClusterError> {
        let raft = self.raft_or(group)?;
        match tokio::time::timeout(WRITE_TIMEOUT, raft.client_write(req)).await {
            Err(_) => Err(ClusterError::Unavailable {
                group,
                reason: format!(
                    "the write was not committed within {} s (no quorum?); it may still be \
                     applied later",
                    WRITE_TIMEOUT.as_secs()
                ),
            }),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                if let Some(f) = e.forward_to_leader() {
                    return Err(ClusterError::NotLeader {
                        node: self.node_id(),
                        group,
                        leader: f.leader_id,
                    });
                }
                Err(ClusterError::Unavailable {
                    group,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// The Raft read-index protocol: returns once this node has applied everything
    /// committed in each of `groups` before the call, as confirmed by their leaders
    /// (a heartbeat round to a quorum). A read of local state after this is linearizable.
    pub async fn read_barrier(&self, groups: &[GroupId]) -> Result<(), ClusterError> {
        let mut by_leader: BTreeMap<NodeId, Vec<GroupId>> = BTreeMap::new();
        for &g in groups {
            let l = match self.leader_of(g) {
                Some(l) => l,
                None => self.wait_leader(g, Duration::from_secs(3)).await?,
            };
            by_leader.entry(l).or_default().push(g);
        }
        let me = self.node_id();
        let mut waits = Vec::new();
        for (leader, gs) in by_leader {
            let answers = if leader == me {
                self.read_index_local(&gs).await
            } else {
                match self
                    .call(
                        leader,
                        &Request::ReadIndex { groups: gs.clone() },
                        Duration::from_secs(3),
                    )
                    .await
                {
                    Ok(Response::ReadIndex(a)) => a,
                    Ok(other) => {
                        return Err(ClusterError::Unavailable {
                            group: gs[0],
                            reason: format!("read index from node {leader}: {other:?}"),
                        })
                    }
                    Err(e) => {
                        return Err(ClusterError::Unavailable {
                            group: gs[0],
                            reason: format!("read index from node {leader}: {e}"),
                        })
                    }
                }
            };
            for (g, r) in answers {
                match r {
                    Ok(idx) => waits.push((g, idx)),
                    Err(ReadIndexError::NotLeader {
                        node,
                        group,
                        leader,
                    }) => {
                        return Err(ClusterError::NotLeader {
                            node,
                            group,
                            leader,
                        })
                    }
                    Err(ReadIndexError::Unavailable { group, reason }) => {
                        return Err(ClusterError::Unavailable { group, reason })
                    }
                }
            }
        }
        for (g, idx) in waits {
            let raft = self.raft_or(g)?;
            raft.wait(Some(Duration::from_secs(5)))
                .applied_index_at_least(Some(idx), "read barrier")
                .await
                .map_err(|e| ClusterError::Unavailable {
                    group: g,
                    reason: format!("catching up to index {idx}: {e}"),
                })?;
        }
        Ok(())
    }

    async fn read_index_local(
        &self,
        groups: &[GroupId],
    ) -> Vec<(GroupId, Result<u64, ReadIndexError>)> {
        let mut out = Vec::with_capacity(groups.len());
        for &g in groups {
            let r = match self.raft(g) {
                None => Err(ReadIndexError::Unavailable {
                    group: g,
                    reason: "no such group".into(),
                }),
                Some(raft) => {
                    match tokio::time::timeout(Duration::from_secs(3), raft.get_read_log_id()).await
                    {
                        Err(_) => Err(ReadIndexError::Unavailable {
                            group: g,
                            reason: "the leader could not reach a quorum within 3 s".into(),
                        }),
                        Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index).unwrap_or(0)),
                        Ok(Err(e)) => match e.forward_to_leader() {
                            Some(f) => Err(ReadIndexError::NotLeader {
                                node: self.node_id(),
                                group: g,
                                leader: f.leader_id,
                            }),
                            None => Err(ReadIndexError::Unavailable {
                                group: g,
                                reason: e.to_string(),
                            }),
                        },
                    }
                }
            };
            out.push((g, r));
        }
        out
    }

    /// Sends `req` to `node` and decodes the answer.
    pub async fn call(
        &self,
        node: NodeId,
        req: &Request,
        timeout: Duration,
    ) -> Result<Response, String> {
        let transport = self
            .inner
            .transport
            .as_ref()
            .ok_or_else(|| "this node runs without a cluster transport".to_string())?;
        let addr = self
            .addr_of(node)
            .ok_or_else(|| format!("node {node} is not a member of the cluster"))?;
        let payload = rpc::encode(req)?;
        let bytes = transport
            .call(node, &addr, payload, timeout)
            .await
            .map_err(|e| e.to_string())?;
        rpc::decode(&bytes)
    }

    /// Sends an application request to `node`'s forward handler.
    pub async fn forward(
        &self,
        node: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        match self.call(node, &Request::Forward(payload), timeout).await? {
            Response::Forward(b) => Ok(b),
            Response::Error(e) => Err(e),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// This node's view of every group.
    pub fn status(&self) -> NodeStatus {
        let groups = self
            .group_ids()
            .filter_map(|g| {
                let raft = self.raft(g)?;
                let m = raft.metrics().borrow().clone();
                let mem = m.membership_config.membership();
                Some(GroupStatus {
                    group: g,
                    role: format!("{:?}", m.state),
                    term: m.current_term,
                    leader: m.current_leader,
                    voters: mem.voter_ids().collect(),
                    learners: mem.learner_ids().collect(),
                    last_log_index: m.last_log_index,
                    last_applied: m.last_applied.map(|l| l.index),
                    snapshot: m.snapshot.map(|l| l.index),
                    purged: m.purged.map(|l| l.index),
                    replication: m
                        .replication
                        .map(|r| {
                            r.into_iter()
                                .map(|(n, l)| (n, l.map(|l| l.index)))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect();
        NodeStatus {
            node_id: self.node_id(),
            addr: self.inner.config.advertised(),
            groups,
        }
    }

    /// Whether this node is the meta group's only voter (a single-node deployment).
    pub fn is_single_voter(&self) -> bool {
        self.raft(META_GROUP).is_some_and(|r| {
            let m = r.metrics();
            let m = m.borrow();
            let mut voters = m.membership_config.membership().voter_ids();
            voters.next() == Some(self.node_id()) && voters.next().is_none()
        })
    }

    /// Every node of the cluster (from the meta group's membership) with its address.
    pub fn members(&self) -> Vec<(NodeId, String)> {
        self.raft(META_GROUP)
            .map(|r| {
                r.metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, n)| (*id, n.addr.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops every group and the transport.
    pub async fn shutdown(&self) {
        for raft in &self.inner.groups {
            let _ = raft.shutdown().await;
        }
        if let Some(t) = &self.inner.transport {
            t.shutdown().await;
        }
    }

    async fn handle(&self, from: NodeId, req: Request) -> Response {
        let group_err = |g: GroupId| Response::Error(format!("node has no group {g}"));
        match req {
            Request::AppendEntries { group, rpc } => match self.raft(group) {
                Some(r) => Response::AppendEntries(r.append_entries(rpc).await),
                None => group_err(group),
            },
            Request::Vote { group, rpc } => match self.raft(group) {
                Some(r) => Response::Vote(r.vote(rpc).await),
                None => group_err(group),
            },
            Request::InstallSnapshot { group, rpc } => match self.raft(group) {
                Some(r) => Response::InstallSnapshot(r.install_snapshot(rpc).await),
                None => group_err(group),
            },
            Request::ReadIndex { groups } => {
                Response::ReadIndex(self.read_index_local(&groups).await)
            }
            Request::Join { node_id, addr } => match self.admit(node_id, addr).await {
                Ok(()) => Response::Done,
                Err(e) => Response::Error(e),
            },
            Request::AddVoter {
                group,
                node_id,
                addr,
            } => match self.add_voter(group, node_id, &addr).await {
                Ok(()) => Response::Done,
                Err(e) => Response::Error(e),
            },
            Request::Forward(payload) => match self.inner.forward.get() {
                Some(h) => Response::Forward(h.handle(from, payload).await),
                None => Response::Error("this node is still starting".into()),
            },
            Request::Status => Response::Status(self.status()),
        }
    }
}

/// Decodes transport calls and hands them to the node (set once the node exists).
struct RpcRouter {
    node: OnceLock<ClusterNode>,
}

impl RpcHandler for RpcRouter {
    fn handle(&self, from: NodeId, payload: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let node = self.node.get().cloned();
        Box::pin(async move {
            let resp = match (node, rpc::decode::<Request>(&payload)) {
                (None, _) => Response::Error("this node is still starting".into()),
                (_, Err(e)) => Response::Error(e),
                (Some(node), Ok(req)) => node.handle(from, req).await,
            };
            rpc::encode(&resp).unwrap_or_else(|e| {
                rpc::encode(&Response::Error(format!("cannot encode the answer: {e}")))
                    .unwrap_or_default()
            })
        })
    }
}
