//! One device connection, from the first byte to the close.
//!
//! ```text
//!  accept ─► [TLS] ─► read CONNECT ──► authenticate ──refused──► CONNACK(code), close
//!            (connect timeout)              │ ok
//!                                           ▼
//!                       register (kicks an older connection of the device), CONNACK
//!                                           │
//!            ┌──────────────────────────────┴───────────────────────────┐
//!            │ loop, first ready wins:                                  │
//!            │   kill switch  ─► DISCONNECT(reason) [v5], close          │
//!            │   socket bytes ─► decode ─► PUBLISH: await handler, then │
//!            │                             PUBACK (or refusal rule)     │
//!            │                            SUBSCRIBE: authorize, SUBACK  │
//!            │                            PINGREQ, PUBACK, DISCONNECT…  │
//!            │   outbound msg ─► PUBLISH to device                      │
//!            │   1.5 × keep-alive without bytes ─► close                │
//!            └──────────────────────────────────────────────────────────┘
//!                                           ▼
//!                       unregister, handler.disconnected(reason)
//! ```
//!
//! Packets of one device are handled strictly in order: the connection reads
//! nothing more from the device while its publishes are with the handler. That
//! is what turns a slow (durable) handler into back-pressure. Publishes the
//! device sent back to back and that are already read go to the handler as one
//! batch (up to `max_publish_batch`), and their PUBACKs go out in one write: a
//! device that pipelines its QoS 1 messages gets them made durable together.
//! The kill switch is watched during that wait too, so a disabled device is cut
//! off at once even when its publish is pending (the publish then stays
//! unacknowledged).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{has_wildcards, valid_filter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

use crate::codec::{self, ConnectPacket, DecodeError, Incoming, PublishPacket};
use crate::config::MqttServerConfig;
use crate::edge::{
    ConnectInfo, ConnectRefusal, DeviceSession, DisconnectReason, EdgeHandler, InboundPublish,
    ProtocolVersion, Qos, SubscribeRefusal, V311RefusalAction,
};
use crate::registry::{ConnectionRegistry, Entry, OutboundMessage};

/// What every connection shares.
pub(crate) struct ServerContext {
    pub(crate) handler: Arc<dyn EdgeHandler>,
    pub(crate) registry: ConnectionRegistry,
    pub(crate) config: MqttServerConfig,
}

/// Serve one accepted (and, if configured, TLS-wrapped) stream to the end.
pub(crate) async fn serve<S>(
    stream: S,
    peer_addr: SocketAddr,
    client_certificate: Option<Vec<u8>>,
    deadline: Instant,
    ctx: Arc<ServerContext>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut conn = Unauthenticated {
        stream,
        buf: BytesMut::with_capacity(4096),
        ctx,
    };
    let connect = match timeout_at(deadline, conn.read_connect()).await {
        Some(Some(connect)) => connect,
        Some(None) => return,
        None => {
            tracing::debug!(%peer_addr, "no CONNECT before the connect timeout");
            return;
        }
    };
    let info = ConnectInfo {
        client_id: connect.client_id.clone(),
        username: connect.username.clone(),
        password: connect.password.clone(),
        protocol: connect.protocol,
        keep_alive_secs: connect.keep_alive_secs,
        peer_addr,
        client_certificate,
    };
    let authenticated = timeout_at(deadline, conn.ctx.handler.authenticate(&info))
        .await
        .unwrap_or(Err(ConnectRefusal::ServerUnavailable));
    let session = match authenticated {
        Ok(session) => session,
        Err(refusal) => {
            tracing::info!(%peer_addr, client_id = %info.client_id, ?refusal, "CONNECT refused");
            if let Ok(bytes) = codec::encode_connack(
                connect.protocol,
                Err(refusal),
                conn.ctx.config.max_packet_size_bytes,
            ) {
                let _ = conn.write_and_close(&bytes).await;
            }
            return;
        }
    };
    conn.run_session(connect, session).await;
}

async fn timeout_at<F: std::future::Future>(deadline: Instant, f: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, f).await.ok()
}

struct Unauthenticated<S> {
    stream: S,
    buf: BytesMut,
    ctx: Arc<ServerContext>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Unauthenticated<S> {
    /// Read until a complete CONNECT; `None` when the connection must close.
    async fn read_connect(&mut self) -> Option<ConnectPacket> {
        let max = self.ctx.config.max_packet_size_bytes;
        loop {
            match codec::decode(&mut self.buf, None, max) {
                Ok(Some(Incoming::Connect(connect))) => return Some(connect),
                Ok(Some(other)) => {
                    tracing::debug!(?other, "first packet is not CONNECT");
                    return None;
                }
                Ok(None) => {}
                Err(DecodeError::UnsupportedProtocol { name, level }) => {
                    tracing::debug!(%name, level, "unsupported protocol");
                    if let Ok(bytes) = codec::encode_unsupported_protocol_connack() {
                        let _ = self.write_and_close(&bytes).await;
                    }
                    return None;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "bad CONNECT");
                    return None;
                }
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn write_and_close(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let write_timeout = self.ctx.config.write_timeout();
        let result = timeout(write_timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await?;
            self.stream.shutdown().await
        })
        .await;
        match result {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    async fn run_session(self, connect: ConnectPacket, session: DeviceSession) {
        let ctx = self.ctx;
        let protocol = connect.protocol;
        let (outbound_tx, outbound_rx) = mpsc::channel(ctx.config.outbound_queue_len);
        let (kill_tx, kill_rx) = watch::channel(None);
        let connection_id = ctx.registry.next_connection_id();
        ctx.registry.register(
            session.key.clone(),
            Entry {
                connection_id,
                outbound: outbound_tx,
                kill: kill_tx,
                subscriptions: Vec::new(),
            },
        );
        let mut conn = Connected {
            stream: self.stream,
            buf: self.buf,
            ctx: ctx.clone(),
            protocol,
            session,
            connection_id,
            keep_alive: (connect.keep_alive_secs > 0)
                .then(|| Duration::from_millis(u64::from(connect.keep_alive_secs) * 1500)),
            client_max_packet_size: connect.max_packet_size.map_or(usize::MAX, |m| m as usize),
            outbound_rx,
            kill_rx,
            next_pkid: 0,
            inflight: HashSet::new(),
        };
        let reason = match codec::encode_connack(protocol, Ok(()), ctx.config.max_packet_size_bytes)
        {
            Ok(bytes) => match conn.write(&bytes).await {
                Ok(()) => {
                    tracing::info!(device = %conn.session.key, client_id = %conn.session.client_id, ?protocol, "device connected");
                    ctx.handler.connected(&conn.session);
                    let reason = conn.run().await;
                    conn.close(reason).await;
                    Some(reason)
                }
                Err(_) => None,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot encode CONNACK");
                None
            }
        };
        ctx.registry
            .unregister(&conn.session.key, conn.connection_id);
        if let Some(reason) = reason {
            tracing::info!(device = %conn.session.key, ?reason, "device disconnected");
            ctx.handler.disconnected(&conn.session, reason);
        }
    }
}

struct Connected<S> {
    stream: S,
    buf: BytesMut,
    ctx: Arc<ServerContext>,
    protocol: ProtocolVersion,
    session: DeviceSession,
    connection_id: u64,
    /// 1.5 × the device's keep-alive; `None` when the device asked for none.
    keep_alive: Option<Duration>,
    client_max_packet_size: usize,
    outbound_rx: mpsc::Receiver<OutboundMessage>,
    kill_rx: watch::Receiver<Option<DisconnectReason>>,
    next_pkid: u16,
    /// Packet ids of QoS 1 messages sent to the device and not yet acknowledged.
    inflight: HashSet<u16>,
}

/// After a packet: go on, or end the connection for this reason.
type Step = Result<(), DisconnectReason>;

/// The most QoS 1 messages to a device that may await its PUBACK.
const MAX_INFLIGHT_TO_DEVICE: usize = 1024;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connected<S> {
    fn kill_reason(&self) -> DisconnectReason {
        (*self.kill_rx.borrow()).unwrap_or(DisconnectReason::ServerShuttingDown)
    }

    async fn run(&mut self) -> DisconnectReason {
        let max = self.ctx.config.max_packet_size_bytes;
        let mut deadline = self.keep_alive.map(|k| Instant::now() + k);
        loop {
            // Handle every complete packet already buffered: back-to-back publishes
            // go to the handler together, anything else alone, all in order.
            let max_batch = self.ctx.config.max_publish_batch.max(1);
            loop {
                let mut batch = Vec::new();
                let mut ended = None;
                while batch.len() < max_batch {
                    match codec::decode(&mut self.buf, Some(self.protocol), max) {
                        Ok(Some(Incoming::Publish(publish))) => match self.check_publish(publish) {
                            Ok(item) => batch.push(item),
                            Err(reason) => {
                                ended = Some(Err(reason));
                                break;
                            }
                        },
                        Ok(Some(packet)) => {
                            ended = Some(Ok(packet));
                            break;
                        }
                        Ok(None) => break,
                        Err(DecodeError::TooLarge { size, max }) => {
                            tracing::warn!(device = %self.session.key, size, max, "packet too large");
                            ended = Some(Err(DisconnectReason::PacketTooLarge));
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(device = %self.session.key, error = %e, "malformed packet");
                            ended = Some(Err(DisconnectReason::MalformedPacket));
                            break;
                        }
                    }
                }
                let progressed = !batch.is_empty() || ended.is_some();
                // The publishes before a bad packet are answered first, as if each
                // had been handled on its own.
                if let Err(reason) = self.handle_publishes(batch).await {
                    return reason;
                }
                match ended {
                    Some(Ok(packet)) => {
                        if let Err(reason) = self.handle(packet).await {
                            return reason;
                        }
                    }
                    Some(Err(reason)) => return reason,
                    None => {}
                }
                if !progressed {
                    break;
                }
            }
            let keep_alive_deadline = deadline;
            tokio::select! {
                biased;
                _ = self.kill_rx.changed() => return self.kill_reason(),
                read = self.stream.read_buf(&mut self.buf) => match read {
                    Ok(0) | Err(_) => return DisconnectReason::ConnectionLost,
                    Ok(_) => deadline = self.keep_alive.map(|k| Instant::now() + k),
                },
                message = self.outbound_rx.recv() => match message {
                    Some(message) => {
                        if let Err(reason) = self.deliver(message).await {
                            return reason;
                        }
                    }
                    // The registry dropped us: we were replaced.
                    None => return self.kill_reason(),
                },
                _ = sleep_until(keep_alive_deadline.unwrap_or_else(Instant::now)), if keep_alive_deadline.is_some() => {
                    tracing::info!(device = %self.session.key, "keep-alive expired");
                    return DisconnectReason::KeepAliveTimeout;
                }
            }
        }
    }

    async fn handle(&mut self, packet: Incoming) -> Step {
        match packet {
            Incoming::Publish(publish) => {
                let item = self.check_publish(publish)?;
                self.handle_publishes(vec![item]).await
            }
            Incoming::Subscribe { pkid, filters } => self.handle_subscribe(pkid, filters).await,
            Incoming::Unsubscribe { pkid, filters } => {
                for filter in &filters {
                    self.ctx.registry.remove_subscription(
                        &self.session.key,
                        self.connection_id,
                        filter,
                    );
                }
                let bytes = codec::encode_unsuback(self.protocol, pkid, filters.len())
                    .map_err(|_| DisconnectReason::ProtocolError)?;
                self.write_or_lost(&bytes).await
            }
            Incoming::PubAck { pkid } => {
                self.inflight.remove(&pkid);
                Ok(())
            }
            Incoming::PingReq => {
                let bytes = codec::encode_pingresp(self.protocol)
                    .map_err(|_| DisconnectReason::ProtocolError)?;
                self.write_or_lost(&bytes).await
            }
            Incoming::Disconnect => Err(DisconnectReason::ClientDisconnected),
            Incoming::Connect(_) => {
                tracing::warn!(device = %self.session.key, "second CONNECT on a connection");
                Err(DisconnectReason::ProtocolError)
            }
            Incoming::Unexpected(kind) => {
                tracing::warn!(device = %self.session.key, kind, "unexpected packet");
                Err(DisconnectReason::ProtocolError)
            }
        }
    }

    /// The connection's own checks of a PUBLISH (QoS, topic); a failure ends the
    /// connection.
    fn check_publish(
        &self,
        publish: PublishPacket,
    ) -> Result<(u16, InboundPublish), DisconnectReason> {
        let qos = match publish.qos {
            0 => Qos::AtMostOnce,
            1 => Qos::AtLeastOnce,
            _ => {
                tracing::warn!(device = %self.session.key, "QoS 2 publish refused");
                return Err(DisconnectReason::ProtocolError);
            }
        };
        if publish.topic.is_empty()
            || publish.topic_alias.is_some()
            || has_wildcards(&publish.topic)
        {
            tracing::warn!(device = %self.session.key, topic = %publish.topic, "invalid publish topic");
            return Err(DisconnectReason::ProtocolError);
        }
        Ok((
            publish.pkid,
            InboundPublish {
                topic: publish.topic,
                payload: publish.payload,
                qos,
            },
        ))
    }

    /// Hands back-to-back publishes to the handler, then writes their PUBACKs (and
    /// MQTT 5 refusals) in order, in one write.
    async fn handle_publishes(&mut self, batch: Vec<(u16, InboundPublish)>) -> Step {
        if batch.is_empty() {
            return Ok(());
        }
        // The handler logs each refusal with its topic; here the packet id suffices.
        let heads: Vec<(u16, Qos)> = batch.iter().map(|(pkid, m)| (*pkid, m.qos)).collect();
        let messages = batch.into_iter().map(|(_, m)| m).collect();
        // Wait for the handler, but not past a kill: a disabled device's
        // pending publishes are abandoned, unacknowledged.
        let results = {
            let work = self.ctx.handler.publish_batch(&self.session, messages);
            tokio::select! {
                biased;
                _ = self.kill_rx.changed() => None,
                results = work => Some(results),
            }
        };
        let Some(results) = results else {
            return Err(self.kill_reason());
        };
        let mut acks = BytesMut::new();
        let mut end = None;
        for (i, (pkid, qos)) in heads.iter().enumerate() {
            let Some(result) = results.get(i) else {
                // Unprocessed: the device sends it again after reconnecting.
                tracing::error!(device = %self.session.key, pkid, "the handler answered only part of a batch without ending the connection");
                end = Some(DisconnectReason::PublishRefused);
                break;
            };
            let ack = match (result, qos) {
                (Ok(()), Qos::AtMostOnce) => None,
                (Ok(()), Qos::AtLeastOnce) => Some(None),
                (Err(refusal), Qos::AtMostOnce) => {
                    tracing::warn!(device = %self.session.key, %refusal, "QoS 0 publish refused, dropped");
                    None
                }
                (Err(refusal), Qos::AtLeastOnce) => {
                    tracing::warn!(device = %self.session.key, pkid, %refusal, "publish refused");
                    match self.protocol {
                        ProtocolVersion::V5 => {
                            Some(Some((refusal.reason_code, refusal.message.as_str())))
                        }
                        ProtocolVersion::V311 => match refusal.reason_code.v311_action() {
                            V311RefusalAction::AckAndDrop => Some(None),
                            V311RefusalAction::Disconnect => {
                                end = Some(DisconnectReason::PublishRefused);
                                break;
                            }
                        },
                    }
                }
            };
            if let Some(refusal) = ack {
                let bytes = codec::encode_puback(self.protocol, *pkid, refusal)
                    .map_err(|_| DisconnectReason::ProtocolError)?;
                acks.extend_from_slice(&bytes);
            }
        }
        if !acks.is_empty() {
            self.write_or_lost(&acks.freeze()).await?;
        }
        match end {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    async fn handle_subscribe(&mut self, pkid: u16, filters: Vec<(String, u8)>) -> Step {
        let mut results = Vec::with_capacity(filters.len());
        for (filter, requested) in filters {
            let granted = if requested == 0 {
                Qos::AtMostOnce
            } else {
                Qos::AtLeastOnce
            };
            let result = if !valid_filter(&filter) || filter.starts_with("$share/") {
                Err(SubscribeRefusal::TopicFilterInvalid)
            } else {
                self.ctx
                    .handler
                    .authorize_subscribe(&self.session, &filter)
                    .await
                    .map(|()| granted)
            };
            match result {
                Ok(q) => self.ctx.registry.set_subscription(
                    &self.session.key,
                    self.connection_id,
                    &filter,
                    q,
                ),
                Err(refusal) => {
                    tracing::warn!(device = %self.session.key, %filter, %refusal, "subscription refused")
                }
            }
            results.push(result);
        }
        let bytes = codec::encode_suback(self.protocol, pkid, &results)
            .map_err(|_| DisconnectReason::ProtocolError)?;
        self.write_or_lost(&bytes).await
    }

    async fn deliver(&mut self, message: OutboundMessage) -> Step {
        let pkid = match message.qos {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => {
                if self.inflight.len() >= MAX_INFLIGHT_TO_DEVICE {
                    tracing::warn!(device = %self.session.key, topic = %message.topic, "device does not acknowledge; message dropped");
                    return Ok(());
                }
                loop {
                    self.next_pkid = self.next_pkid.wrapping_add(1);
                    if self.next_pkid != 0 && !self.inflight.contains(&self.next_pkid) {
                        break self.next_pkid;
                    }
                }
            }
        };
        let bytes = match codec::encode_publish(
            self.protocol,
            &message.topic,
            message.payload,
            message.qos,
            pkid,
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(device = %self.session.key, error = %e, "outbound message dropped");
                return Ok(());
            }
        };
        if bytes.len() > self.client_max_packet_size {
            tracing::warn!(device = %self.session.key, size = bytes.len(), "outbound message larger than the device accepts; dropped");
            return Ok(());
        }
        if pkid != 0 {
            self.inflight.insert(pkid);
        }
        self.write_or_lost(&bytes).await
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let write_timeout = self.ctx.config.write_timeout();
        let result = timeout(write_timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await;
        match result {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    async fn write_or_lost(&mut self, bytes: &Bytes) -> Step {
        self.write(bytes)
            .await
            .map_err(|_| DisconnectReason::ConnectionLost)
    }

    /// Tell a v5 device why the server closes (3.1.1 has no server DISCONNECT), then close.
    async fn close(&mut self, reason: DisconnectReason) {
        let server_initiated = !matches!(
            reason,
            DisconnectReason::ClientDisconnected | DisconnectReason::ConnectionLost
        );
        if server_initiated {
            if let Ok(Some(bytes)) = codec::encode_disconnect(self.protocol, reason) {
                let _ = self.write(&bytes).await;
            }
        }
        let _ = timeout(self.ctx.config.write_timeout(), self.stream.shutdown()).await;
    }
}
