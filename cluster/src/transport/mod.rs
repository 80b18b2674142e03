//! The cluster transport: request/response calls between nodes over one QUIC
//! connection per node pair, mutually authenticated with certificates from the
//! cluster's own CA ([`crate::certs`]).
//!
//! Key types: [`Transport`] (one per node; cheap to clone), [`ClusterTls`] (the node's
//! identity), [`RpcHandler`] (what answers incoming calls), [`TransportError`].
//! Nothing outside this module names `quinn`: callers see node ids, byte payloads and
//! doppel errors.
//!
//! ```text
//!   node A                                                   node B
//!   call(B, addr, req) ─▶ link to B ══ QUIC (mTLS) ══▶ accept stream ─▶ RpcHandler
//!        ▲                 (one connection,            from = id in A's certificate
//!        └── answer ◀──── one stream per call) ◀══════ answer frame ◀─────┘
//! ```
//!
//! Correctness contract:
//! - **Identity.** Both sides present certificates signed by the cluster CA (the only
//!   trust root). A caller dials node `n` with server name `doppel-node-{n}`, so only
//!   the holder of node `n`'s key can answer; the callee learns the caller's id from
//!   the caller's certificate, never from the payload. [`ANY_NODE`] (0) dials "any
//!   node of this cluster" (joining through a seed whose id is unknown).
//! - **One connection per pair**, used by both directions: calls either way open
//!   streams on whichever connection exists, dialed or accepted. If both nodes dial at
//!   once, both sides keep the connection dialed by the lower node id; the other
//!   ("superseded") one serves what is in flight and is closed once idle for
//!   [`SUPERSEDED_LINGER`]. A side closes a superseded connection only while it has no
//!   stream in flight on it (answers included, until acknowledged), so a call that
//!   sees it closed was not handled, and is retried on the surviving connection.
//! - **Broken connections are replaced transparently**: a closed connection is
//!   dropped and the next call dials again. Keep-alives and an idle timeout notice a
//!   dead peer within [`IDLE_TIMEOUT`]; a restarted node derives the same QUIC
//!   stateless-reset key from its private key, so it resets its peers' stale
//!   connections as soon as their packets reach it.
//! - **At most once.** A call whose connection breaks after the request left is not
//!   retried (it may have been handled): it fails with
//!   [`TransportError::ConnectionLost`] or [`TransportError::Timeout`].
//! - **Isolation** (fault injection, [`Transport::set_isolated`]): calls to an
//!   isolated peer fail at once with [`TransportError::Isolated`]; its incoming
//!   streams are reset unhandled.
//! - **Framing** (`frame.rs`): every frame starts with the protocol version; payloads
//!   are bounded by [`MAX_FRAME_BYTES`] both ways. Nothing a peer sends can panic this
//!   node; a panicking handler becomes an error answer.

mod error;
mod frame;
mod stateless_reset;
mod tls;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use quinn::{
    Connection, ConnectionError, Endpoint, IdleTimeout, ReadError, ReadExactError, ReadToEndError,
    RecvStream, SendStream, TransportConfig, VarInt, WriteError,
};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use self::error::TransportError;
pub use self::frame::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
pub use self::tls::ClusterTls;
pub use crate::certs::ANY_NODE;

use self::frame::Status;

/// A cluster node's id (0 is reserved: [`ANY_NODE`]).
pub type NodeId = u64;

/// Answers the calls other nodes make to this one.
pub trait RpcHandler: Send + Sync + 'static {
    /// Handles `payload` sent by node `from` (authenticated by its certificate) and
    /// returns the answer (at most [`MAX_FRAME_BYTES`]).
    fn handle(&self, from: NodeId, payload: Vec<u8>) -> BoxFuture<'static, Vec<u8>>;
}

/// Concurrent calls per connection and direction (QUIC bidirectional streams).
const MAX_CONCURRENT_CALLS: u32 = 1024;
/// A quiet connection sends a keep-alive this often…
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// …and one that hears nothing for this long is considered dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Flow-control windows: one stream may have this much unread data in flight…
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// …and a whole connection this much (bounds the memory one peer can make us hold).
const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;
/// How long a superseded connection must be idle before it is closed.
pub const SUPERSEDED_LINGER: Duration = Duration::from_secs(10);
/// How long shutdown waits for connections to close cleanly.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// Connection close codes (QUIC application error codes).
const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(0);
const CLOSE_BAD_IDENTITY: VarInt = VarInt::from_u32(1);
const CLOSE_SUPERSEDED: VarInt = VarInt::from_u32(2);
const CLOSE_DROPPED: VarInt = VarInt::from_u32(3);

/// Stream reset / stop codes.
const STREAM_ISOLATED: VarInt = VarInt::from_u32(1);
const STREAM_SHUTDOWN: VarInt = VarInt::from_u32(2);
const STREAM_BAD_REQUEST: VarInt = VarInt::from_u32(3);

/// This node's end of the cluster transport. Clones share one endpoint.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core>,
    endpoint: Endpoint,
    local_addr: SocketAddr,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

/// What the background tasks (accept loop, per-connection stream loops) share.
struct Core {
    node_id: NodeId,
    version: u8,
    handler: Arc<dyn RpcHandler>,
    isolated: RwLock<HashSet<NodeId>>,
    peers: Mutex<HashMap<NodeId, Arc<Slot>>>,
    /// Which node answered at an address dialed as [`ANY_NODE`].
    any_addrs: Mutex<HashMap<String, NodeId>>,
    closed: AtomicBool,
    /// [`SUPERSEDED_LINGER`], shortened by tests.
    superseded_linger_ms: AtomicU64,
}

/// The connection calls to one peer use. The async lock is held while dialing, so
/// concurrent first calls share one dial.
#[derive(Default)]
struct Slot {
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
}

/// One QUIC connection to a peer and the streams in flight on it.
struct Link {
    conn: Connection,
    peer: NodeId,
    /// The node that dialed it (decides which of two simultaneous connections stays).
    dialer: NodeId,
    state: Mutex<LinkState>,
}

struct LinkState {
    /// Calls and served streams not finished (served answers: until acknowledged).
    in_flight: usize,
    idle_since: Instant,
    /// Closed as superseded: no new stream may start on it.
    retired: bool,
}

/// A stream in flight on a link; keeps the link from being retired.
struct Busy(Arc<Link>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}

impl Link {
    fn new(conn: Connection, peer: NodeId, dialer: NodeId) -> Arc<Self> {
        Arc::new(Self {
            conn,
            peer,
            dialer,
            state: Mutex::new(LinkState {
                in_flight: 0,
                idle_since: Instant::now(),
                retired: false,
            }),
        })
    }

    /// Starts a stream on the link, unless it was retired.
    fn enter(self: &Arc<Self>) -> Option<Busy> {
        let mut state = lock(&self.state);
        if state.retired {
            return None;
        }
        state.in_flight += 1;
        Some(Busy(self.clone()))
    }

    fn is_usable(&self) -> bool {
        self.conn.close_reason().is_none() && !lock(&self.state).retired
    }

    /// Closes the link if nothing has been in flight on it for `linger`.
    fn retire_if_idle(&self, linger: Duration) -> bool {
        let mut state = lock(&self.state);
        if state.in_flight > 0 || state.idle_since.elapsed() < linger {
            return false;
        }
        state.retired = true;
        self.conn
            .close(CLOSE_SUPERSEDED, b"superseded by another connection");
        true
    }
}

/// Whether `new` should replace `existing` as the connection calls to the peer use.
fn replaces(existing: &Link, new: &Link) -> bool {
    if !existing.is_usable() {
        return true;
    }
    if existing.dialer != new.dialer {
        // Both sides apply the same rule, so they settle on the same connection.
        return new.dialer < existing.dialer;
    }
    // Same dialer re-dialed while the old one looked alive here: the peer restarted
    // (or lost it); the newest is the one known to work.
    true
}

/// A std lock that shrugs off poisoning: the guarded data stays consistent because no
/// code panics while holding one of these locks.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    fn is_isolated(&self, peer: NodeId) -> bool {
        self.isolated
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&peer)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn slot(&self, peer: NodeId) -> Arc<Slot> {
        lock(&self.peers).entry(peer).or_default().clone()
    }

    /// Takes over a connection established outside its slot's lock (accepted, or dialed
    /// as [`ANY_NODE`]): serves its streams, and makes it the peer's connection unless
    /// the current one is preferred.
    async fn adopt(self: &Arc<Self>, link: Arc<Link>) {
        tokio::spawn(serve_link(self.clone(), link.clone()));
        let slot = self.slot(link.peer);
        let mut current = slot.link.lock().await;
        let loser = match current.as_ref() {
            Some(existing) if Arc::ptr_eq(existing, &link) => None,
            Some(existing) if !replaces(existing, &link) => Some(link),
            _ => current.replace(link),
        };
        drop(current);
        if let Some(loser) = loser.filter(|l| l.is_usable()) {
            debug!(
                peer = loser.peer,
                dialer = loser.dialer,
                "cluster connection superseded"
            );
            let linger = Duration::from_millis(self.superseded_linger_ms.load(Ordering::Relaxed));
            tokio::spawn(reap_when_idle(loser, linger));
        }
    }

    /// Drops `link` from its slot if it is still the peer's connection.
    async fn forget(&self, link: &Arc<Link>) {
        let slot = self.slot(link.peer);
        let mut current = slot.link.lock().await;
        if current.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            *current = None;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop serving even if shutdown was never called.
        self.core.closed.store(true, Ordering::Release);
        self.endpoint.close(CLOSE_DROPPED, b"transport dropped");
        if let Some(task) = lock(&self.accept_task).take() {
            task.abort();
        }
    }
}

impl Transport {
    /// Listens on `listen` (UDP) and answers calls with `handler`. `tls` must be node
    /// `node_id`'s identity.
    pub async fn start(
        node_id: NodeId,
        listen: SocketAddr,
        tls: ClusterTls,
        handler: Arc<dyn RpcHandler>,
    ) -> Result<Transport, TransportError> {
        Self::start_speaking(node_id, listen, tls, handler, PROTOCOL_VERSION).await
    }

    /// [`Transport::start`], speaking protocol `version` (tests of version mismatch).
    async fn start_speaking(
        node_id: NodeId,
        listen: SocketAddr,
        tls: ClusterTls,
        handler: Arc<dyn RpcHandler>,
        version: u8,
    ) -> Result<Transport, TransportError> {
        if node_id == ANY_NODE {
            return Err(TransportError::Config(
                "node id 0 is reserved; node ids start at 1".into(),
            ));
        }
        if tls.node_id() != node_id {
            return Err(TransportError::Config(format!(
                "the certificates loaded are node {}'s, but this node is node {node_id}",
                tls.node_id()
            )));
        }
        let transport_config = Arc::new(transport_config()?);
        let server_crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(tls.server.clone())
                .map_err(|e| TransportError::Config(format!("TLS server config unusable: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport_config.clone());
        let client_crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(tls.client.clone())
                .map_err(|e| TransportError::Config(format!("TLS client config unusable: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport_config);

        let endpoint_config = stateless_reset::endpoint_config(&tls.reset_key_seed());
        let bind_err = |source| TransportError::Bind {
            addr: listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(listen).map_err(bind_err)?;
        let mut endpoint = Endpoint::new(
            endpoint_config,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        endpoint.set_default_client_config(client);
        let local_addr = endpoint.local_addr().map_err(bind_err)?;

        let core = Arc::new(Core {
            node_id,
            version,
            handler,
            isolated: RwLock::new(HashSet::new()),
            peers: Mutex::new(HashMap::new()),
            any_addrs: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            superseded_linger_ms: AtomicU64::new(SUPERSEDED_LINGER.as_millis() as u64),
        });
        let accept_task = tokio::spawn(accept_loop(core.clone(), endpoint.clone()));
        info!(node = node_id, %local_addr, version, "cluster transport listening");
        Ok(Transport {
            inner: Arc::new(Inner {
                core,
                endpoint,
                local_addr,
                accept_task: Mutex::new(Some(accept_task)),
            }),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.core.node_id
    }

    /// The address the transport listens on (with the actual port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Sends `payload` to node `peer` (reachable at `addr`, `host:port`) and returns
    /// its handler's answer; the whole call, dialing included, is bounded by `timeout`.
    /// `peer` may be [`ANY_NODE`] to reach whichever cluster node listens at `addr`.
    pub async fn call(
        &self,
        peer: NodeId,
        addr: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        if payload.len() > MAX_FRAME_BYTES {
            return Err(TransportError::FrameTooLarge {
                len: payload.len(),
                max: MAX_FRAME_BYTES,
            });
        }
        if self.inner.core.is_closed() {
            return Err(TransportError::Closed);
        }
        if self.inner.core.is_isolated(peer) {
            return Err(TransportError::Isolated(peer));
        }
        let payload = Bytes::from(payload);
        match tokio::time::timeout(timeout, self.call_within(peer, addr, payload)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                peer,
                after: timeout,
            }),
        }
    }

    /// Stops (or restores, with an empty set) traffic with `peers`, both ways.
    pub fn set_isolated(&self, peers: HashSet<NodeId>) {
        if !peers.is_empty() {
            info!(
                node = self.node_id(),
                ?peers,
                "isolating peers (fault injection)"
            );
        }
        *self
            .inner
            .core
            .isolated
            .write()
            .unwrap_or_else(PoisonError::into_inner) = peers;
    }

    /// The peers currently isolated from this node.
    pub fn isolated(&self) -> HashSet<NodeId> {
        self.inner
            .core
            .isolated
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Closes every connection and stops listening; later calls fail with
    /// [`TransportError::Closed`]. The UDP port is released once every clone of this
    /// transport is dropped.
    pub async fn shutdown(&self) {
        let core = &self.inner.core;
        if core.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        info!(node = core.node_id, "cluster transport shutting down");
        self.inner
            .endpoint
            .close(CLOSE_SHUTDOWN, b"node shutting down");
        let accept_task = lock(&self.inner.accept_task).take();
        if let Some(task) = accept_task {
            task.abort();
            let _ = task.await;
        }
        lock(&core.peers).clear();
        let _ = tokio::time::timeout(SHUTDOWN_DRAIN, self.inner.endpoint.wait_idle()).await;
    }

    async fn call_within(
        &self,
        peer: NodeId,
        addr: &str,
        payload: Bytes,
    ) -> Result<Vec<u8>, TransportError> {
        // A retry happens only when the request provably did not reach a handler
        // (the connection was superseded under it); a few are plenty.
        let mut attempts_left = 3;
        loop {
            let link = self.link(peer, addr).await?;
            if link.peer != peer && self.inner.core.is_isolated(link.peer) {
                return Err(TransportError::Isolated(link.peer));
            }
            match exchange(&link, self.inner.core.version, addr, payload.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(CallError::Failed(e)) => return Err(e),
                Err(CallError::NotSent(reason)) => {
                    attempts_left -= 1;
                    debug!(peer = link.peer, %reason, "call not sent; retrying on a new connection");
                    if attempts_left == 0 {
                        return Err(TransportError::ConnectionLost {
                            peer: link.peer,
                            reason,
                        });
                    }
                    self.inner.core.forget(&link).await;
                }
            }
        }
    }

    /// The connection to use for a call to `peer`, dialing it if there is none.
    async fn link(&self, peer: NodeId, addr: &str) -> Result<Arc<Link>, TransportError> {
        let core = &self.inner.core;
        if core.is_closed() {
            return Err(TransportError::Closed);
        }
        if peer == ANY_NODE {
            let known = lock(&core.any_addrs).get(addr).copied();
            if let Some(id) = known {
                let slot = core.slot(id);
                let current = slot.link.lock().await;
                if let Some(link) = current.as_ref().filter(|l| l.is_usable()) {
                    return Ok(link.clone());
                }
            }
            let link = self.dial(ANY_NODE, addr).await?;
            lock(&core.any_addrs).insert(addr.to_string(), link.peer);
            core.adopt(link.clone()).await;
            return Ok(link);
        }
        let slot = core.slot(peer);
        let mut current = slot.link.lock().await;
        if let Some(link) = current.as_ref().filter(|l| l.is_usable()) {
            return Ok(link.clone());
        }
        let link = self.dial(peer, addr).await?;
        *current = Some(link.clone());
        drop(current);
        tokio::spawn(serve_link(core.clone(), link.clone()));
        Ok(link)
    }

    async fn dial(&self, peer: NodeId, addr: &str) -> Result<Arc<Link>, TransportError> {
        let connect_err = |reason: String| TransportError::Connect {
            peer,
            addr: addr.to_string(),
            reason,
        };
        let target = resolve(addr, self.inner.local_addr)
            .await
            .map_err(connect_err)?;
        let connecting = self
            .inner
            .endpoint
            .connect(target, &tls::server_name_for(peer))
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = connecting
            .await
            .map_err(|e| connect_err(describe_connection_error(&e)))?;
        let actual = match tls::peer_node_id(conn.peer_identity()) {
            Ok(id) if peer == ANY_NODE || id == peer => id,
            Ok(id) => {
                // Unreachable with the verifier in place; kept as a second line.
                conn.close(CLOSE_BAD_IDENTITY, b"wrong node");
                return Err(connect_err(format!("node {id} answered")));
            }
            Err(reason) => {
                conn.close(CLOSE_BAD_IDENTITY, reason.as_bytes());
                return Err(connect_err(reason));
            }
        };
        debug!(node = self.node_id(), peer = actual, %target, "cluster connection dialed");
        Ok(Link::new(conn, actual, self.inner.core.node_id))
    }
}

/// Resolves `host:port`, preferring an address of the local socket's family.
async fn resolve(addr: &str, local: SocketAddr) -> Result<SocketAddr, String> {
    let candidates: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve the address: {e}"))?
        .collect();
    candidates
        .iter()
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .or_else(|| candidates.first())
        .copied()
        .ok_or_else(|| "the address resolves to nothing".to_string())
}

fn transport_config() -> Result<TransportConfig, TransportError> {
    let mut config = TransportConfig::default();
    config
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_CALLS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::try_from(IDLE_TIMEOUT).map_err(|e| {
            TransportError::Config(format!("idle timeout {IDLE_TIMEOUT:?}: {e}"))
        })?))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW_BYTES))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW_BYTES))
        .send_window(u64::from(CONNECTION_WINDOW_BYTES))
        .datagram_receive_buffer_size(None);
    Ok(config)
}

/// Accepts connections until the endpoint closes.
async fn accept_loop(core: Arc<Core>, endpoint: Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        if core.is_closed() {
            incoming.refuse();
            continue;
        }
        let core = core.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    // Includes certificates from another CA: rustls refused them.
                    warn!(%remote, error = %describe_connection_error(&e), "incoming cluster connection refused");
                    return;
                }
            };
            let peer = match tls::peer_node_id(conn.peer_identity()) {
                Ok(id) => id,
                Err(reason) => {
                    warn!(%remote, %reason, "incoming cluster connection without a node identity");
                    conn.close(CLOSE_BAD_IDENTITY, reason.as_bytes());
                    return;
                }
            };
            debug!(node = core.node_id, peer, %remote, "cluster connection accepted");
            core.adopt(Link::new(conn, peer, peer)).await;
        });
    }
}

/// Serves the streams the peer opens on `link` until the connection closes.
async fn serve_link(core: Arc<Core>, link: Arc<Link>) {
    let reason = loop {
        let (mut send, mut recv) = match link.conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => break e,
        };
        if core.is_closed() {
            let _ = send.reset(STREAM_SHUTDOWN);
            let _ = recv.stop(STREAM_SHUTDOWN);
            continue;
        }
        if core.is_isolated(link.peer) {
            let _ = send.reset(STREAM_ISOLATED);
            let _ = recv.stop(STREAM_ISOLATED);
            continue;
        }
        let Some(busy) = link.enter() else {
            // Retired between accepting and here: the caller will retry elsewhere.
            let _ = send.reset(STREAM_SHUTDOWN);
            let _ = recv.stop(STREAM_SHUTDOWN);
            continue;
        };
        tokio::spawn(serve_stream(core.clone(), link.peer, send, recv, busy));
    };
    debug!(node = core.node_id, peer = link.peer, reason = %reason, "cluster connection closed");
    core.forget(&link).await;
}

/// Closes a superseded link once it has been idle for `linger`.
async fn reap_when_idle(link: Arc<Link>, linger: Duration) {
    let mut tick = tokio::time::interval(linger / 4);
    loop {
        tick.tick().await;
        if link.conn.close_reason().is_some() || link.retire_if_idle(linger) {
            return;
        }
    }
}

/// Reads one request, runs the handler, writes the answer.
async fn serve_stream(
    core: Arc<Core>,
    from: NodeId,
    mut send: SendStream,
    mut recv: RecvStream,
    busy: Busy,
) {
    let version = core.version;
    let answer = match read_request(&mut recv, version).await {
        Ok(Some(payload)) => run_handler(&core.handler, from, payload).await,
        // The caller gave up (or the connection broke) before the request was complete.
        Ok(None) => return,
        Err(reason) => {
            debug!(node = core.node_id, peer = from, %reason, "call rejected");
            Err(reason)
        }
    };
    let (status, body) = match answer {
        Ok(body) if body.len() <= MAX_FRAME_BYTES => (Status::Ok, body),
        Ok(body) => {
            warn!(
                peer = from,
                len = body.len(),
                "handler answer exceeds the frame limit"
            );
            (
                Status::Error,
                format!(
                    "the answer of {} bytes exceeds the {MAX_FRAME_BYTES}-byte frame limit",
                    body.len()
                )
                .into_bytes(),
            )
        }
        Err(text) => (Status::Error, text.into_bytes()),
    };
    let header = frame::response_header(version, status, body.len());
    let written: Result<(), WriteError> = async {
        send.write_all(&header).await?;
        send.write_chunk(Bytes::from(body)).await?;
        send.finish().map_err(|_| WriteError::ClosedStream)
    }
    .await;
    if written.is_ok() {
        // Stay "in flight" until the answer is acknowledged: closing a superseded
        // connection earlier could lose an answer to a call that was handled.
        let _ = tokio::time::timeout(IDLE_TIMEOUT, send.stopped()).await;
    }
    drop(busy);
}

/// Reads a request frame: `Ok(None)` if the caller went away, `Err(text)` for a
/// request to answer with an error (other version, oversized, malformed).
async fn read_request(recv: &mut RecvStream, version: u8) -> Result<Option<Vec<u8>>, String> {
    let mut theirs = [0u8; 1];
    if recv.read_exact(&mut theirs).await.is_err() {
        return Ok(None);
    }
    if theirs[0] != version {
        let _ = recv.stop(STREAM_BAD_REQUEST);
        return Err(frame::version_mismatch_text(theirs[0], version));
    }
    let mut len = [0u8; frame::REQUEST_LEN_BYTES];
    if recv.read_exact(&mut len).await.is_err() {
        return Ok(None);
    }
    let len = frame::parse_request_len(len).map_err(|reason| {
        let _ = recv.stop(STREAM_BAD_REQUEST);
        format!("request rejected: {reason}")
    })?;
    match recv.read_to_end(len).await {
        Ok(payload) if payload.len() == len => Ok(Some(payload)),
        Ok(payload) => Err(format!(
            "request truncated: {} of {len} bytes",
            payload.len()
        )),
        Err(ReadToEndError::TooLong) => {
            let _ = recv.stop(STREAM_BAD_REQUEST);
            Err(format!(
                "request longer than the {len} bytes its header says"
            ))
        }
        Err(ReadToEndError::Read(_)) => Ok(None),
    }
}

/// Runs the handler; a panic becomes an error answer instead of a lost task.
async fn run_handler(
    handler: &Arc<dyn RpcHandler>,
    from: NodeId,
    payload: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let future = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handler.handle(from, payload)
    }))
    .map_err(|_| "the handler panicked".to_string())?;
    std::panic::AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|_| "the handler panicked".to_string())
}

/// Why one attempt of a call failed.
enum CallError {
    /// The request provably reached no handler: safe to retry on another connection.
    NotSent(String),
    /// Final.
    Failed(TransportError),
}

/// One call on one stream of `link`.
async fn exchange(
    link: &Arc<Link>,
    version: u8,
    addr: &str,
    payload: Bytes,
) -> Result<Vec<u8>, CallError> {
    let peer = link.peer;
    let Some(_busy) = link.enter() else {
        return Err(CallError::NotSent("connection superseded".into()));
    };
    let (mut send, mut recv) = link
        .conn
        .open_bi()
        .await
        .map_err(|e| connection_failure(peer, addr, e))?;
    let header = frame::request_header(version, payload.len());
    let written: Result<(), WriteError> = async {
        send.write_all(&header).await?;
        send.write_chunk(payload).await?;
        send.finish().map_err(|_| WriteError::ClosedStream)
    }
    .await;
    match written {
        // Stopped: the peer answered without reading everything (e.g. other version).
        Ok(()) | Err(WriteError::Stopped(_)) => {}
        Err(WriteError::ConnectionLost(e)) => return Err(connection_failure(peer, addr, e)),
        Err(e) => {
            return Err(CallError::Failed(TransportError::ConnectionLost {
                peer,
                reason: e.to_string(),
            }))
        }
    }

    let mut theirs = [0u8; 1];
    recv.read_exact(&mut theirs)
        .await
        .map_err(|e| read_failure(peer, addr, e))?;
    if theirs[0] != version {
        return Err(CallError::Failed(TransportError::Version {
            peer,
            theirs: theirs[0],
            ours: version,
        }));
    }
    let mut rest = [0u8; frame::RESPONSE_REST_BYTES];
    recv.read_exact(&mut rest)
        .await
        .map_err(|e| read_failure(peer, addr, e))?;
    let (status, len) = frame::parse_response_rest(rest)
        .map_err(|reason| CallError::Failed(TransportError::Protocol { peer, reason }))?;
    let body = match recv.read_to_end(len).await {
        Ok(body) if body.len() == len => body,
        Ok(body) => {
            return Err(CallError::Failed(TransportError::Protocol {
                peer,
                reason: format!("answer truncated: {} of {len} bytes", body.len()),
            }))
        }
        Err(ReadToEndError::TooLong) => {
            return Err(CallError::Failed(TransportError::Protocol {
                peer,
                reason: format!("answer longer than the {len} bytes its header says"),
            }))
        }
        Err(ReadToEndError::Read(e)) => return Err(read_error(peer, addr, e)),
    };
    match status {
        Status::Ok => Ok(body),
        Status::Error => Err(CallError::Failed(TransportError::Remote {
            peer,
            message: String::from_utf8_lossy(&body).into_owned(),
        })),
    }
}

fn read_failure(peer: NodeId, addr: &str, e: ReadExactError) -> CallError {
    match e {
        ReadExactError::FinishedEarly(n) => CallError::Failed(TransportError::Protocol {
            peer,
            reason: format!("answer ended after {n} bytes of its header"),
        }),
        ReadExactError::ReadError(e) => read_error(peer, addr, e),
    }
}

fn read_error(peer: NodeId, addr: &str, e: ReadError) -> CallError {
    match e {
        ReadError::Reset(code) => CallError::Failed(TransportError::Refused {
            peer,
            reason: match code {
                STREAM_ISOLATED => "it isolates this node (fault injection)".into(),
                STREAM_SHUTDOWN => "it is shutting down".into(),
                STREAM_BAD_REQUEST => "it rejected the request".into(),
                other => format!("stream reset with code {other}"),
            },
        }),
        ReadError::ConnectionLost(e) => connection_failure(peer, addr, e),
        other => CallError::Failed(TransportError::ConnectionLost {
            peer,
            reason: other.to_string(),
        }),
    }
}

/// Classifies a connection failure seen by a call.
fn connection_failure(peer: NodeId, addr: &str, e: ConnectionError) -> CallError {
    match &e {
        // The peer closes a superseded connection only with nothing of ours in flight.
        ConnectionError::ApplicationClosed(close) if close.error_code == CLOSE_SUPERSEDED => {
            CallError::NotSent(e.to_string())
        }
        ConnectionError::LocallyClosed => CallError::Failed(TransportError::Closed),
        // A TLS alert after the handshake looked done to us: the peer refused our
        // certificate. That is a connection failure, not a lost call.
        _ if is_tls_failure(&e) => CallError::Failed(TransportError::Connect {
            peer,
            addr: addr.to_string(),
            reason: describe_connection_error(&e),
        }),
        _ => CallError::Failed(TransportError::ConnectionLost {
            peer,
            reason: describe_connection_error(&e),
        }),
    }
}

/// Whether the connection ended on a TLS alert (QUIC crypto error codes 0x100–0x1ff).
fn is_tls_failure(e: &ConnectionError) -> bool {
    let code = match e {
        ConnectionError::ConnectionClosed(close) => u64::from(close.error_code),
        ConnectionError::TransportError(err) => u64::from(err.code),
        _ => return false,
    };
    (0x100..0x200).contains(&code)
}

fn describe_connection_error(e: &ConnectionError) -> String {
    match e {
        ConnectionError::TimedOut => {
            format!("no answer from the peer for {IDLE_TIMEOUT:?} (idle timeout)")
        }
        ConnectionError::ApplicationClosed(close) if close.error_code == CLOSE_SHUTDOWN => {
            "the peer shut down".into()
        }
        other => other.to_string(),
    }
}
