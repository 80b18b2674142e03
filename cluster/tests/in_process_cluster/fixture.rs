//! [`TestCluster`]: N nodes in this process, each with its own RocksDB in a temp dir
//! and the real Raft log store and state machine (`LogStore::with_state_machine`), one
//! openraft `Raft` per group, all wired through the [`Router`].
//!
//! A write is a [`ShardRequest`] that puts key `group | "w/" | id` and carries one
//! event naming `id`; the apply hook records, per node and group, the ids in the order
//! that node applied them. So a test can ask both "what is on this node's disk"
//! ([`TestCluster::stored_ids`]) and "in which order did it apply what"
//! ([`TestCluster::applied_ids`]).
//!
//! Every (group, term) in which a node was seen leading is recorded
//! ([`TestCluster::leaders_by_term`]), from each Raft's metrics watch.
//!
//! Dropping a cluster while the test panics prints the seed, the replay command and the
//! end of the router's trace.

use super::router::{Router, Rule, TraceEntry};
use doppel_cluster::raft::network::{Network, RaftWire};
use doppel_cluster::raft::store::{ApplyHook, LogStore};
use doppel_cluster::raft::{group_prefix, GroupId, NodeId, Raft, ShardRequest};
use doppel_cluster::{Storage, StorageConfig};
use doppel_twins::keys::Family;
use doppel_twins::{StateRead, WireEvent, Write};
use openraft::{BasicNode, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The seed of this run: `DOPPEL_SEED=<n>` replays one, unset (or `random`) draws one.
pub fn seed() -> u64 {
    match std::env::var("DOPPEL_SEED").ok().as_deref() {
        None | Some("random") => rand::random(),
        Some(s) => s
            .parse()
            .expect("DOPPEL_SEED must be an unsigned integer or `random`"),
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: u64,
    pub groups: Vec<GroupId>,
    pub heartbeat_ms: u64,
    /// Take a snapshot after this many applied entries (and purge the log behind it).
    pub snapshot_every: u64,
    pub logs_to_keep: u64,
    /// Rules in force from the first message on.
    pub rules: Vec<Rule>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            groups: vec![0],
            heartbeat_ms: 50,
            snapshot_every: 100_000,
            logs_to_keep: 1_000,
            rules: Vec::new(),
        }
    }
}

/// Why a write was not acknowledged.
#[derive(Debug)]
pub enum WriteError {
    /// Refused before it was appended anywhere: it will never be applied.
    NotLeader,
    /// No answer in time, or another failure: it may or may not be applied later.
    Ambiguous(String),
}

struct Node {
    storage: Storage,
    groups: BTreeMap<GroupId, Raft>,
    watchers: Vec<JoinHandle<()>>,
}

type Applied = Arc<Mutex<BTreeMap<(NodeId, GroupId), Vec<u64>>>>;
type Leaders = Arc<Mutex<BTreeMap<(GroupId, u64), BTreeSet<NodeId>>>>;

pub struct TestCluster {
    pub seed: u64,
    test: &'static str,
    opts: Options,
    router: Arc<Router>,
    dir: tempfile::TempDir,
    /// `None` while the node is crashed.
    nodes: BTreeMap<NodeId, Option<Node>>,
    applied: Applied,
    leaders: Leaders,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The write with id `id` in `group`.
pub fn request(group: GroupId, id: u64) -> ShardRequest {
    let mut key = group_prefix(group).to_vec();
    key.extend_from_slice(b"w/");
    key.extend_from_slice(&id.to_be_bytes());
    ShardRequest {
        writes: vec![Write::Put {
            family: Family::Twins,
            key,
            value: id.to_be_bytes().to_vec(),
        }],
        events: vec![WireEvent {
            tenant: "test".into(),
            kind: "write".into(),
            twin_id: id.to_string(),
            model: None,
            time: String::new(),
            data: String::new(),
            patch: None,
        }],
    }
}

impl TestCluster {
    /// Starts the nodes and makes every node a voter of every group; returns once each
    /// group has a leader.
    pub async fn start(test: &'static str, seed: u64, opts: Options) -> TestCluster {
        println!(
            "{test}: seed {seed} (replay: DOPPEL_SEED={seed} cargo test --workspace -- {test})"
        );
        let mut c = TestCluster {
            seed,
            test,
            router: Router::new(seed),
            dir: tempfile::tempdir().expect("temp dir"),
            nodes: BTreeMap::new(),
            applied: Applied::default(),
            leaders: Leaders::default(),
            opts,
        };
        for r in c.opts.rules.clone() {
            c.router.add_rule(r);
        }
        for n in c.ids() {
            let node = c.open(n).await;
            c.nodes.insert(n, Some(node));
        }
        let members: BTreeMap<NodeId, BasicNode> = c
            .ids()
            .map(|n| {
                (
                    n,
                    BasicNode {
                        addr: format!("in-process:{n}"),
                    },
                )
            })
            .collect();
        for g in c.opts.groups.clone() {
            c.raft(1, g)
                .initialize(members.clone())
                .await
                .unwrap_or_else(|e| panic!("initializing group {g}: {e}"));
        }
        for g in c.opts.groups.clone() {
            c.wait_leader(g, &c.ids().collect::<Vec<_>>(), Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        c
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> {
        1..=self.opts.nodes
    }

    pub fn groups(&self) -> Vec<GroupId> {
        self.opts.groups.clone()
    }

    /// Node `n`'s election timeout: fixed per node (openraft draws it from an unseeded
    /// RNG in `min..max`, so `max = min + 1` takes that RNG out), spread by the seed
    /// and at least 40 ms apart so that elections do not keep splitting.
    fn election_timeout_ms(&self, n: NodeId) -> u64 {
        let rank = self
            .ids()
            .filter(|&m| {
                let key = |x| (super::router::draw(self.seed, x, 0, 0, 10), x);
                key(m) < key(n)
            })
            .count() as u64;
        150 + 40 * rank + super::router::draw(self.seed, n, 0, 0, 11) % 30
    }

    fn raft_config(&self, n: NodeId) -> Arc<openraft::Config> {
        let min = self.election_timeout_ms(n);
        let cfg = openraft::Config {
            cluster_name: "doppel-in-process".into(),
            heartbeat_interval: self.opts.heartbeat_ms,
            election_timeout_min: min,
            election_timeout_max: min + 1,
            install_snapshot_timeout: 2_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.opts.snapshot_every),
            max_in_snapshot_log_to_keep: self.opts.logs_to_keep,
            max_payload_entries: 64,
            ..Default::default()
        };
        Arc::new(cfg.validate().expect("test raft configuration"))
    }

    /// Opens node `n`'s store (retrying while a crashed incarnation still holds the
    /// RocksDB lock) and starts its groups.
    async fn open(&self, n: NodeId) -> Node {
        let path = self.dir.path().join(format!("node-{n}"));
        // No fsync: the WAL is still written before each call returns, so a "crash"
        // of an in-process node (which keeps the OS page cache) loses nothing written,
        // and no I/O waits on the WAL sync thread.
        let config = StorageConfig {
            sync: false,
            block_cache_mb: 8,
        };
        let shard_count = self.opts.groups.iter().max().map_or(1, |g| g + 1);
        let mut attempts = 0;
        let storage = loop {
            match Storage::open(&path, shard_count, &config) {
                Ok(s) => break s,
                Err(e) if attempts < 200 => {
                    attempts += 1;
                    expect_lock_error(&e.to_string());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("reopening node {n}: {e}"),
            }
        };
        let wire = self.router.attach(n);
        let applied = self.applied.clone();
        let hook: ApplyHook = Arc::new(move |g, events: &[WireEvent]| {
            let mut a = lock(&applied);
            let seq = a.entry((n, g)).or_default();
            seq.extend(events.iter().filter_map(|e| e.twin_id.parse::<u64>().ok()));
        });
        let mut groups = BTreeMap::new();
        let mut watchers = Vec::new();
        for &g in &self.opts.groups {
            let net = Network {
                group: g,
                wire: RaftWire::InProcess(wire.clone()),
            };
            let (log, sm) = LogStore::with_state_machine(storage.clone(), g, hook.clone());
            let raft = Raft::new(n, self.raft_config(n), net, log, sm)
                .await
                .unwrap_or_else(|e| panic!("starting node {n} group {g}: {e}"));
            self.router.add_group(n, g, raft.clone());
            watchers.push(tokio::spawn(watch_leadership(
                n,
                g,
                raft.clone(),
                self.leaders.clone(),
            )));
            groups.insert(g, raft);
        }
        Node {
            storage,
            groups,
            watchers,
        }
    }

    fn node(&self, n: NodeId) -> &Node {
        self.nodes
            .get(&n)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic!("node {n} is down"))
    }

    pub fn is_up(&self, n: NodeId) -> bool {
        self.nodes.get(&n).is_some_and(Option::is_some)
    }

    pub fn up(&self) -> Vec<NodeId> {
        self.ids().filter(|&n| self.is_up(n)).collect()
    }

    pub fn raft(&self, n: NodeId, group: GroupId) -> &Raft {
        &self.node(n).groups[&group]
    }

    // ---- faults --------------------------------------------------------------------

    /// Cuts every link between the two sides, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        self.router.cut(a, b);
    }

    /// Cuts `n` off from every other node.
    pub fn isolate(&self, n: NodeId) {
        let others: Vec<NodeId> = self.ids().filter(|&m| m != n).collect();
        self.partition(&[n], &others);
    }

    pub fn heal(&self) {
        self.router.heal();
    }

    pub fn add_rule(&self, rule: Rule) {
        self.router.add_rule(rule);
    }

    pub fn clear_rules(&self) {
        self.router.clear_rules();
    }

    /// Stops node `n` abruptly: its Rafts stop, messages to it fail, its store closes.
    /// Nothing it wrote is lost (see [`TestCluster::open`]).
    pub async fn crash(&mut self, n: NodeId) {
        self.router.detach(n);
        let node = self
            .nodes
            .get_mut(&n)
            .and_then(Option::take)
            .unwrap_or_else(|| panic!("node {n} is already down"));
        for raft in node.groups.values() {
            let _ = raft.shutdown().await;
        }
        for w in node.watchers {
            w.abort();
        }
        drop(node.storage);
    }

    /// Reopens node `n`'s store from disk and starts its groups again; it rejoins with
    /// whatever its log, vote and state machine hold.
    pub async fn restart(&mut self, n: NodeId) {
        assert!(!self.is_up(n), "node {n} is running");
        let node = self.open(n).await;
        self.nodes.insert(n, Some(node));
    }

    // ---- reads and writes ------------------------------------------------------------

    /// The node among `among` that leads `group` in the highest term, as the nodes'
    /// own metrics say (a deposed leader in a minority may still think it leads).
    pub fn leader(&self, group: GroupId, among: &[NodeId]) -> Option<NodeId> {
        among
            .iter()
            .filter(|&&n| self.is_up(n))
            .filter_map(|&n| {
                let m = self.raft(n, group).metrics().borrow().clone();
                (m.state == ServerState::Leader && m.current_leader == Some(n))
                    .then_some((m.current_term, n))
            })
            .max()
            .map(|(_, n)| n)
    }

    /// Waits for a leader of `group` among `among`.
    pub async fn wait_leader(
        &self,
        group: GroupId,
        among: &[NodeId],
        timeout: Duration,
    ) -> Result<NodeId, String> {
        self.wait_for(timeout, || self.leader(group, among))
            .await
            .ok_or_else(|| format!("group {group}: no leader among {among:?} within {timeout:?}"))
    }

    /// Re-evaluates `probe` each time any live Raft's metrics change, until it answers
    /// or `timeout` passes. Waking on changes rather than polling on a timer keeps the
    /// test's own steps at the virtual instants the cluster reaches them, whatever
    /// the scheduling (see the module doc of `main.rs`).
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watches: Vec<_> = self
            .up()
            .into_iter()
            .flat_map(|n| {
                self.node(n)
                    .groups
                    .values()
                    .map(Raft::metrics)
                    .collect::<Vec<_>>()
            })
            .collect();
        loop {
            if let Some(v) = probe() {
                return Some(v);
            }
            if watches.is_empty() {
                tokio::time::sleep_until(deadline).await;
                return probe();
            }
            let changed =
                futures_util::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            let stopped = match tokio::time::timeout_at(deadline, changed).await {
                Err(_) => return probe(),
                Ok((result, i, _)) => result.is_err().then_some(i),
            };
            if let Some(i) = stopped {
                watches.remove(i);
            }
        }
    }

    /// Proposes write `id` to `group` through node `n` (which must lead it).
    pub async fn write_via(
        &self,
        n: NodeId,
        group: GroupId,
        id: u64,
        timeout: Duration,
    ) -> Result<(), WriteError> {
        let raft = self.raft(n, group);
        match tokio::time::timeout(timeout, raft.client_write(request(group, id))).await {
            Err(_) => Err(WriteError::Ambiguous(format!(
                "no answer within {timeout:?}"
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.forward_to_leader().is_some() => Err(WriteError::NotLeader),
            Ok(Err(e)) => Err(WriteError::Ambiguous(e.to_string())),
        }
    }

    /// Writes `id` to `group` through whichever live node leads it, retrying while no
    /// node leads; returns the node that acknowledged it. An ambiguous failure is not
    /// retried (the same id could otherwise be applied twice).
    pub async fn write(
        &self,
        group: GroupId,
        id: u64,
        timeout: Duration,
    ) -> Result<NodeId, WriteError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(WriteError::NotLeader);
            }
            let Some(l) = self.wait_for(left, || self.leader(group, &self.up())).await else {
                continue;
            };
            match self.write_via(l, group, id, left).await {
                Ok(()) => return Ok(l),
                // Refused by a node that no longer leads: wait for the cluster to move on.
                Err(WriteError::NotLeader) => {
                    let term = self.raft(l, group).metrics().borrow().current_term;
                    self.wait_for(left, || {
                        (self.leader(group, &self.up()) != Some(l)
                            || self.raft(l, group).metrics().borrow().current_term != term)
                            .then_some(())
                    })
                    .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The write ids on node `n`'s disk for `group`, in id order.
    pub fn stored_ids(&self, n: NodeId, group: GroupId) -> Vec<u64> {
        let mut prefix = group_prefix(group).to_vec();
        prefix.extend_from_slice(b"w/");
        self.node(n)
            .storage
            .scan(Family::Twins, &prefix, None, usize::MAX)
            .expect("scan")
            .into_iter()
            .map(|(_, value)| u64::from_be_bytes(value[..8].try_into().expect("8-byte value")))
            .collect()
    }

    /// The write ids node `n` applied for `group`, in the order it applied them, across
    /// its restarts (entries installed by snapshot are not applied one by one, so they
    /// are not here).
    pub fn applied_ids(&self, n: NodeId, group: GroupId) -> Vec<u64> {
        lock(&self.applied)
            .get(&(n, group))
            .cloned()
            .unwrap_or_default()
    }

    /// A linearizable read of `group` on node `n` (the read-index protocol: `n` must
    /// lead and hear from a quorum), then its stored ids.
    pub async fn linearizable_read(
        &self,
        n: NodeId,
        group: GroupId,
        timeout: Duration,
    ) -> Result<Vec<u64>, String> {
        match tokio::time::timeout(timeout, self.raft(n, group).ensure_linearizable()).await {
            Err(_) => Err(format!("node {n}: no quorum within {timeout:?}")),
            Ok(Err(e)) => Err(format!("node {n}: {e}")),
            Ok(Ok(_)) => Ok(self.stored_ids(n, group)),
        }
    }

    /// Waits until every live node has applied the same last entry of `group`, which is
    /// the leader's last log entry.
    pub async fn wait_converged(&self, group: GroupId, timeout: Duration) -> Result<(), String> {
        let up = self.up();
        let applied = || -> Vec<Option<u64>> {
            up.iter()
                .map(|&n| {
                    self.raft(n, group)
                        .metrics()
                        .borrow()
                        .last_applied
                        .map(|l| l.index)
                })
                .collect()
        };
        self.wait_for(timeout, || {
            let l = self.leader(group, &up)?;
            let last = self.raft(l, group).metrics().borrow().last_log_index;
            applied().iter().all(|a| *a == last).then_some(())
        })
        .await
        .ok_or_else(|| {
            format!(
                "group {group}: nodes {up:?} have applied {:?} after {timeout:?}",
                applied()
            )
        })
    }

    /// Every (group, term) and the nodes seen leading it.
    pub fn leaders_by_term(&self) -> BTreeMap<(GroupId, u64), BTreeSet<NodeId>> {
        lock(&self.leaders).clone()
    }

    pub fn trace(&self) -> Vec<TraceEntry> {
        self.router.trace()
    }

    /// Stops every node (call at the end of a test; dropping also works, less tidily).
    pub async fn shutdown(mut self) {
        for n in self.up() {
            self.crash(n).await;
        }
    }
}

/// Records each term in which node `n` leads `group`.
async fn watch_leadership(n: NodeId, group: GroupId, raft: Raft, leaders: Leaders) {
    let mut rx = raft.metrics();
    drop(raft);
    loop {
        let (state, term) = {
            let m = rx.borrow_and_update();
            (m.state, m.current_term)
        };
        if state == ServerState::Leader {
            lock(&leaders).entry((group, term)).or_default().insert(n);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Opening a store that a crashed incarnation's last tasks still hold fails with
/// RocksDB's lock error until they finish; nothing else is expected here.
fn expect_lock_error(err: &str) {
    assert!(
        err.contains("lock"),
        "unexpected error reopening a store: {err}"
    );
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let trace = self.router.trace();
            let tail = trace.len().saturating_sub(60);
            eprintln!(
                "\n{}: FAILED with seed {} — replay: DOPPEL_SEED={} cargo test --workspace -- {}\n\
                 last {} of {} router decisions:",
                self.test,
                self.seed,
                self.seed,
                self.test,
                trace.len() - tail,
                trace.len()
            );
            for e in &trace[tail..] {
                eprintln!("  {e}");
            }
        }
    }
}
