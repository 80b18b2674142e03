//! The in-memory network between the in-process cluster's nodes: it carries each Raft
//! RPC from one node's Raft to another's, and decides by seeded rule whether the
//! message is delivered, delayed, lost, or refused by a partition.
//!
//! ```text
//!  node a's Raft ─▶ NodeWire(a) ─▶ Router::carry ─┬─ partitioned a→b?   Isolated (at once)
//!                                                 ├─ b down?            Connect  (at once)
//!                                                 └─ k-th message a→b: first matching rule
//!                                                    draws from (seed, a, b, k):
//!                                                    drop request │ delay, deliver to b's
//!                                                    Raft, drop reply │ delay, deliver
//! ```
//!
//! Contract:
//! - **The decision is a function of (seed, a, b, k) and the rules in force**: `k`
//!   counts every message node `a` sent to node `b` (all groups, all kinds), and the
//!   draws come from a SplitMix64 hash of those four numbers, never from a shared RNG,
//!   so no other link's traffic and no thread timing changes the fate of the k-th
//!   message on a→b. (Which message is the k-th is up to openraft and the scheduler;
//!   see the module doc of `main.rs` for what that means for replay.)
//! - **No duplicates**: a message is delivered at most once. Delays reorder messages
//!   that openraft has in flight at the same time (votes, heartbeats, appends of other
//!   groups); they never clone one.
//! - A lost message or reply costs the caller its whole deadline (`ttl`) and then fails
//!   with `Timeout`, as a dropped QUIC stream would; a partition or a down node fails
//!   the call at once (`Isolated` / `Connect`), as the QUIC transport's isolation does.
//!   A partition that starts while a message is delayed loses it on arrival.
//! - Every decision is appended to the trace ([`Router::trace`]), with the virtual time
//!   it was taken at, together with the fixture's own fault events.

use doppel_cluster::raft::network::InProcessWire;
use doppel_cluster::raft::{GroupId, NodeId, Raft};
use doppel_cluster::rpc::{Request, Response};
use doppel_cluster::transport::TransportError;
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The kind of a Raft RPC, as rules select them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RpcKind {
    /// Append-entries, heartbeats included.
    Append,
    Vote,
    Snapshot,
}

/// What happens to messages that match: lost with a probability, delayed by a uniform
/// draw from a range. A rule with no `from` / `to` / `kind` matches every message.
#[derive(Debug, Clone)]
pub struct Rule {
    pub from: Option<NodeId>,
    pub to: Option<NodeId>,
    pub kind: Option<RpcKind>,
    /// Probability that the request is lost (never delivered).
    pub drop: f64,
    /// Probability that the request is delivered but its answer is lost.
    pub drop_reply: f64,
    /// Delivery delay, in milliseconds, drawn uniformly from this range.
    pub delay_ms: RangeInclusive<u64>,
}

impl Rule {
    /// Every message, untouched (narrow and add faults with the builders below).
    pub fn any() -> Rule {
        Rule {
            from: None,
            to: None,
            kind: None,
            drop: 0.0,
            drop_reply: 0.0,
            delay_ms: 0..=0,
        }
    }

    /// Only messages from `from` to `to`.
    pub fn link(from: NodeId, to: NodeId) -> Rule {
        Rule {
            from: Some(from),
            to: Some(to),
            ..Rule::any()
        }
    }

    pub fn kind(mut self, kind: RpcKind) -> Rule {
        self.kind = Some(kind);
        self
    }

    pub fn drop(mut self, p: f64) -> Rule {
        self.drop = p;
        self
    }

    pub fn drop_reply(mut self, p: f64) -> Rule {
        self.drop_reply = p;
        self
    }

    pub fn delay_ms(mut self, range: RangeInclusive<u64>) -> Rule {
        self.delay_ms = range;
        self
    }

    fn matches(&self, from: NodeId, to: NodeId, kind: RpcKind) -> bool {
        self.from.is_none_or(|f| f == from)
            && self.to.is_none_or(|t| t == to)
            && self.kind.is_none_or(|k| k == kind)
    }
}

/// The fate of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Deliver {
        delay_ms: u64,
    },
    /// Delivered after the delay, but the answer never comes back.
    DropReply {
        delay_ms: u64,
    },
    /// Never delivered.
    Drop,
    /// The link is cut by a partition.
    Partitioned,
    /// The target node is crashed.
    Down,
}

/// One line of the router's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEntry {
    Message {
        /// Virtual milliseconds since the cluster started.
        at_ms: u64,
        from: NodeId,
        to: NodeId,
        /// The message's number on its link (0-based).
        k: u64,
        /// How many fault changes (rules, partitions, crashes) preceded the decision.
        epoch: u64,
        group: GroupId,
        kind: RpcKind,
        decision: Decision,
    },
    /// A fault the test injected (partition, heal, crash, restart, rule change).
    Fault { at_ms: u64, what: String },
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEntry::Message {
                at_ms,
                from,
                to,
                k,
                epoch,
                group,
                kind,
                decision,
            } => write!(
                f,
                "{at_ms:>7} ms  {from}→{to} #{k:<4} e{epoch} g{group} {kind:?}: {decision:?}"
            ),
            TraceEntry::Fault { at_ms, what } => write!(f, "{at_ms:>7} ms  FAULT {what}"),
        }
    }
}

/// A node as the router sees it: its current incarnation's groups, or down.
struct Endpoint {
    incarnation: u64,
    groups: Option<BTreeMap<GroupId, Raft>>,
}

struct State {
    endpoints: BTreeMap<NodeId, Endpoint>,
    /// Cut links, one entry per direction.
    cut: BTreeSet<(NodeId, NodeId)>,
    rules: Vec<Rule>,
    /// The next message number of each link.
    next_k: BTreeMap<(NodeId, NodeId), u64>,
    /// Bumped by every change of rules, cuts or endpoints.
    epoch: u64,
    trace: Vec<TraceEntry>,
}

pub struct Router {
    seed: u64,
    started: Instant,
    state: Mutex<State>,
}

/// Salts that make the draws of one message independent of each other.
const SALT_DROP: u64 = 1;
const SALT_DROP_REPLY: u64 = 2;
const SALT_DELAY: u64 = 3;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit draw that depends on nothing but its arguments (stable across builds and
/// dependency versions, unlike a library RNG's stream).
pub fn draw(seed: u64, a: u64, b: u64, k: u64, salt: u64) -> u64 {
    [a, b, k, salt]
        .into_iter()
        .fold(splitmix(seed), |h, x| splitmix(h ^ x))
}

/// A draw as a uniform number in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn classify(req: &Request) -> Option<(GroupId, RpcKind)> {
    match req {
        Request::AppendEntries { group, .. } => Some((*group, RpcKind::Append)),
        Request::Vote { group, .. } => Some((*group, RpcKind::Vote)),
        Request::InstallSnapshot { group, .. } => Some((*group, RpcKind::Snapshot)),
        _ => None,
    }
}

impl Router {
    pub fn new(seed: u64) -> Arc<Router> {
        Arc::new(Router {
            seed,
            started: Instant::now(),
            state: Mutex::new(State {
                endpoints: BTreeMap::new(),
                cut: BTreeSet::new(),
                rules: Vec::new(),
                next_k: BTreeMap::new(),
                epoch: 0,
                trace: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Applies a fault change and records it in the trace, atomically.
    fn change(&self, what: String, f: impl FnOnce(&mut State)) {
        let at_ms = self.now_ms();
        let mut s = self.lock();
        f(&mut s);
        s.epoch += 1;
        s.trace.push(TraceEntry::Fault { at_ms, what });
    }

    /// Makes `node` reachable with a new incarnation's groups; returns the wire its
    /// Rafts send through (messages from an older incarnation are refused).
    pub fn attach(self: &Arc<Self>, node: NodeId) -> Arc<NodeWire> {
        let mut incarnation = 0;
        self.change(format!("start node {node}"), |s| {
            let ep = s.endpoints.entry(node).or_insert(Endpoint {
                incarnation: 0,
                groups: None,
            });
            ep.incarnation += 1;
            ep.groups = Some(BTreeMap::new());
            incarnation = ep.incarnation;
        });
        Arc::new(NodeWire {
            router: self.clone(),
            from: node,
            incarnation,
        })
    }

    /// Registers a started group of `node`'s current incarnation.
    pub fn add_group(&self, node: NodeId, group: GroupId, raft: Raft) {
        let mut s = self.lock();
        if let Some(groups) = s.endpoints.get_mut(&node).and_then(|e| e.groups.as_mut()) {
            groups.insert(group, raft);
        }
    }

    /// `node` is down: calls to it fail, its own in-flight sends are refused.
    pub fn detach(&self, node: NodeId) {
        self.change(format!("crash node {node}"), |s| {
            if let Some(ep) = s.endpoints.get_mut(&node) {
                ep.groups = None;
            }
        });
    }

    /// Cuts every link between `a` and `b`, both ways.
    pub fn cut(&self, a: &[NodeId], b: &[NodeId]) {
        self.change(format!("partition {a:?} | {b:?}"), |s| {
            for &x in a {
                for &y in b {
                    s.cut.insert((x, y));
                    s.cut.insert((y, x));
                }
            }
        });
    }

    pub fn heal(&self) {
        self.change("heal".into(), |s| s.cut.clear());
    }

    pub fn add_rule(&self, rule: Rule) {
        self.change(format!("rule {rule:?}"), |s| s.rules.push(rule));
    }

    pub fn clear_rules(&self) {
        self.change("clear rules".into(), |s| s.rules.clear());
    }

    pub fn trace(&self) -> Vec<TraceEntry> {
        self.lock().trace.clone()
    }

    /// The fate of the k-th message on `from → to` under `rules`.
    pub fn decide(
        seed: u64,
        rules: &[Rule],
        from: NodeId,
        to: NodeId,
        k: u64,
        kind: RpcKind,
    ) -> Decision {
        let Some(rule) = rules.iter().find(|r| r.matches(from, to, kind)) else {
            return Decision::Deliver { delay_ms: 0 };
        };
        if unit(draw(seed, from, to, k, SALT_DROP)) < rule.drop {
            return Decision::Drop;
        }
        let (lo, hi) = (*rule.delay_ms.start(), *rule.delay_ms.end());
        let delay_ms = lo + draw(seed, from, to, k, SALT_DELAY) % (hi.saturating_sub(lo) + 1);
        if unit(draw(seed, from, to, k, SALT_DROP_REPLY)) < rule.drop_reply {
            Decision::DropReply { delay_ms }
        } else {
            Decision::Deliver { delay_ms }
        }
    }

    /// Decides the fate of a message and records it; `None` if the sender is a stale
    /// incarnation (a task of a crashed node that has not stopped yet).
    fn admit(
        &self,
        from: NodeId,
        incarnation: u64,
        to: NodeId,
        group: GroupId,
        kind: RpcKind,
    ) -> Option<Decision> {
        let at_ms = self.now_ms();
        let mut s = self.lock();
        let sender = s.endpoints.get(&from)?;
        if sender.incarnation != incarnation || sender.groups.is_none() {
            return None;
        }
        let k = {
            let next = s.next_k.entry((from, to)).or_insert(0);
            *next += 1;
            *next - 1
        };
        let decision = if s.cut.contains(&(from, to)) {
            Decision::Partitioned
        } else if s.endpoints.get(&to).is_none_or(|e| e.groups.is_none()) {
            Decision::Down
        } else {
            Router::decide(self.seed, &s.rules, from, to, k, kind)
        };
        let epoch = s.epoch;
        s.trace.push(TraceEntry::Message {
            at_ms,
            from,
            to,
            k,
            epoch,
            group,
            kind,
            decision,
        });
        Some(decision)
    }

    /// The target's Raft for `group` if the message can arrive now.
    fn arrive(&self, from: NodeId, to: NodeId, group: GroupId) -> Option<Raft> {
        let s = self.lock();
        if s.cut.contains(&(from, to)) {
            return None;
        }
        s.endpoints.get(&to)?.groups.as_ref()?.get(&group).cloned()
    }

    fn reply_passes(&self, from: NodeId, to: NodeId) -> bool {
        !self.lock().cut.contains(&(to, from))
    }

    async fn carry(
        self: Arc<Self>,
        from: NodeId,
        incarnation: u64,
        to: NodeId,
        req: Request,
        ttl: Duration,
    ) -> Result<Response, TransportError> {
        let Some((group, kind)) = classify(&req) else {
            return Err(TransportError::Remote {
                peer: to,
                message: "the in-process router carries Raft RPCs only".into(),
            });
        };
        let lost = || TransportError::Timeout {
            peer: to,
            after: ttl,
        };
        let Some(decision) = self.admit(from, incarnation, to, group, kind) else {
            return Err(TransportError::Closed);
        };
        let (delay_ms, reply_lost) = match decision {
            Decision::Partitioned => return Err(TransportError::Isolated(to)),
            Decision::Down => {
                return Err(TransportError::Connect {
                    peer: to,
                    addr: format!("in-process node {to}"),
                    reason: "the node is down".into(),
                })
            }
            Decision::Drop => {
                tokio::time::sleep(ttl).await;
                return Err(lost());
            }
            Decision::Deliver { delay_ms } => (delay_ms, false),
            Decision::DropReply { delay_ms } => (delay_ms, true),
        };
        let delay = Duration::from_millis(delay_ms);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let Some(raft) = self.arrive(from, to, group) else {
            tokio::time::sleep(ttl.saturating_sub(delay)).await;
            return Err(lost());
        };
        let resp = deliver(&raft, req).await;
        if reply_lost || !self.reply_passes(from, to) {
            tokio::time::sleep(ttl.saturating_sub(delay)).await;
            return Err(lost());
        }
        Ok(resp)
    }
}

async fn deliver(raft: &Raft, req: Request) -> Response {
    match req {
        Request::AppendEntries { rpc, .. } => {
            Response::AppendEntries(raft.append_entries(rpc).await)
        }
        Request::Vote { rpc, .. } => Response::Vote(raft.vote(rpc).await),
        Request::InstallSnapshot { rpc, .. } => {
            Response::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
        other => Response::Error(format!("not a Raft RPC: {other:?}")),
    }
}

/// One node incarnation's side of the router: what its Rafts' network sends through.
pub struct NodeWire {
    router: Arc<Router>,
    from: NodeId,
    incarnation: u64,
}

impl InProcessWire for NodeWire {
    fn call(
        &self,
        to: NodeId,
        req: Request,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Response, TransportError>> {
        Box::pin(
            self.router
                .clone()
                .carry(self.from, self.incarnation, to, req, ttl),
        )
    }
}

#[test]
fn the_kth_message_on_a_link_has_one_fate_per_seed() {
    let rules = [Rule::any().drop(0.3).drop_reply(0.2).delay_ms(0..=50)];
    let fates = |seed| -> Vec<Decision> {
        (0..200)
            .map(|k| Router::decide(seed, &rules, 1, 2, k, RpcKind::Append))
            .collect()
    };
    assert_eq!(fates(7), fates(7));
    assert_ne!(fates(7), fates(8), "the seed must matter");
    // Another link's fates do not follow this one's.
    let other: Vec<Decision> = (0..200)
        .map(|k| Router::decide(7, &rules, 2, 1, k, RpcKind::Append))
        .collect();
    assert_ne!(fates(7), other);
    let drops = fates(7).iter().filter(|d| **d == Decision::Drop).count();
    assert!(
        (30..90).contains(&drops),
        "{drops} of 200 dropped at p = 0.3"
    );
}

#[test]
fn the_first_matching_rule_decides() {
    let rules = [
        Rule::link(1, 2).kind(RpcKind::Vote).drop(1.0),
        Rule::any().delay_ms(5..=5),
    ];
    assert_eq!(
        Router::decide(1, &rules, 1, 2, 0, RpcKind::Vote),
        Decision::Drop
    );
    assert_eq!(
        Router::decide(1, &rules, 1, 2, 0, RpcKind::Append),
        Decision::Deliver { delay_ms: 5 }
    );
    assert_eq!(
        Router::decide(1, &rules, 2, 1, 0, RpcKind::Vote),
        Decision::Deliver { delay_ms: 5 }
    );
}
