//! Attaching a tenant to an external MQTT broker (e.g. Mosquitto, EMQX) as a client.
//!
//! The broker, not doppel, authenticates the devices and confines each to its own
//! topics (e.g. Mosquitto's `pattern readwrite devices/%c/#`); doppel trusts the device
//! id in the topic for the tenant this broker is attached to. Several doppel nodes can
//! share the load through one shared subscription group (`$share/<group>/…`).
//!
//! ```text
//!  broker ──Publish──▶ event loop ──queue──▶ serve_messages ──parse_broker_topic + inbound──▶ CommandSink
//!    ▲                                            │ (durable or refused)
//!    └───────────── PUBACK (in arrival order) ◀───┘
//!    └───────────── devices/{id}/twin/desired ◀── desired::follow_changes (BrokerLink)
//! ```
//!
//! Topics are those of [`super::topics::parse_broker_topic`]; a message means what it
//! means on the embedded broker ([`super::inbound`]: telemetry → `RecordTelemetry`,
//! reported properties → `ReportProperties`, with the same refusals), and desired state
//! is pushed by the same pusher ([`super::desired`]).
//!
//! Messages are acknowledged to the broker (QoS 1 PUBACK) only after the command is
//! durable, so a crash before that makes the broker redeliver. A message that is
//! refused for good (not JSON, breaks the model, unknown topic) is acknowledged and
//! dropped: redelivering it would only fail again, and the broker has no way to tell
//! the device. So the drop is counted ([`ExternalStats::rejected`]) and logged as a
//! warning with the device, the topic and the same reason text the embedded broker
//! sends in its MQTT 5 PUBACK. A refusal that may pass (overload, no leader) is retried
//! before the acknowledgement.

use super::desired::{self, DesiredLink, Undelivered};
use super::inbound;
use super::topics::{self, BrokerTopic};
use crate::config::ExternalBroker;
use crate::edge::{BoxFuture, DeviceKey, DisconnectReason, PublishRefusal};
use crate::retry::Backoff;
use crate::sink::CommandSink;
use doppel_twins::Command;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters for tests and `/metrics`.
#[derive(Debug, Default)]
pub struct ExternalStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
}

/// Connects to the broker and serves the tenant's devices until the process ends.
/// Reconnects with a back-off; the broker keeps QoS 1 messages meanwhile.
pub fn attach(sink: Arc<dyn CommandSink>, broker: ExternalBroker) -> Arc<ExternalStats> {
    let stats = Arc::new(ExternalStats::default());
    let (host, port) = broker
        .host_port()
        .map(|(h, p)| (h.to_owned(), p))
        .unwrap_or_else(|| (broker.address.clone(), 1883));
    let mut opts = MqttOptions::new(&broker.client_id, host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_manual_acks(true);
    opts.set_clean_session(false);
    if let Some(user) = &broker.username {
        opts.set_credentials(user, broker.password.clone().unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let link = Arc::new(BrokerLink {
        client: client.clone(),
        tenant: broker.tenant.clone(),
    });
    tokio::spawn(desired::follow_changes(sink.clone(), link));
    let (messages, queued) = tokio::sync::mpsc::unbounded_channel();
    let server = Messages {
        sink,
        tenant: broker.tenant.clone(),
        stats: stats.clone(),
    };
    tokio::spawn(server.serve(client.clone(), queued));
    tokio::spawn(async move {
        let filters = topics::broker_subscriptions(&broker.share_group);
        let reconnect =
            || Backoff::attempts(u32::MAX, Duration::from_millis(200), Duration::from_secs(5));
        let mut backoff = reconnect();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = reconnect();
                    tracing::info!(broker = %broker.address, tenant = %broker.tenant, "attached to external broker");
                    for f in &filters {
                        if let Err(e) = client.subscribe(f, QoS::AtLeastOnce).await {
                            tracing::warn!(error = %e, filter = %f, "subscribe failed");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    // The loop keeps polling (it carries the acks) while the messages
                    // are made durable; the broker's in-flight window bounds the queue.
                    if messages.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(broker = %broker.address, error = %e, "external broker connection failed; retrying");
                    backoff.wait().await;
                }
            }
        }
    });
    stats
}

/// The pusher's way to the tenant's devices: publish on `devices/{id}/twin/desired`.
/// The broker holds the devices' connections and subscriptions, so every device of
/// the tenant is reachable and none can be cut from here.
struct BrokerLink {
    client: AsyncClient,
    tenant: String,
}

impl DesiredLink for BrokerLink {
    fn reaches(&self, device: &DeviceKey) -> bool {
        device.tenant == self.tenant
    }

    fn send<'a>(
        &'a self,
        device: &'a DeviceKey,
        _version: u64,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<(), Undelivered>> {
        Box::pin(async move {
            let payload = serde_json::to_vec(body).unwrap_or_default();
            self.client
                .publish(
                    topics::broker_desired_topic(&device.device_id),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .map_err(|e| Undelivered::Failed(e.to_string()))
        })
    }

    fn holds_connection(&self, _device: &DeviceKey) -> bool {
        false
    }

    fn cut(&self, device: &DeviceKey, _reason: DisconnectReason) -> bool {
        if self.reaches(device) {
            tracing::info!(%device, "the external broker authenticates its devices: doppel cannot cut this one off");
        }
        false
    }
}

/// Most broker messages made durable together.
const MAX_BATCH: usize = 256;

/// Turns the broker's messages into commands for the tenant.
struct Messages {
    sink: Arc<dyn CommandSink>,
    tenant: String,
    stats: Arc<ExternalStats>,
}

impl Messages {
    /// Makes the broker's messages durable, then acknowledges them in the order they
    /// came. The messages waiting when a round starts go together: telemetry is queued
    /// on its shards in arrival order (one device's messages keep their order),
    /// anything else is applied one message at a time, in order.
    async fn serve(
        self,
        client: AsyncClient,
        mut queued: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    ) {
        while let Some(first) = queued.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queued.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            // Telemetry of consecutive messages, by their place in the batch.
            let mut run: Vec<(usize, Command)> = Vec::new();
            for (i, p) in batch.iter().enumerate() {
                let cmd = match self.command_of(&p.topic, &p.payload) {
                    Ok(cmd) => cmd,
                    Err(refusal) => {
                        self.dropped(&p.topic, &refusal);
                        continue;
                    }
                };
                if matches!(cmd, Command::RecordTelemetry { .. }) {
                    run.push((i, cmd));
                    continue;
                }
                self.commit_telemetry(&batch, std::mem::take(&mut run))
                    .await;
                self.commit(&p.topic, cmd).await;
            }
            self.commit_telemetry(&batch, run).await;
            // Acknowledged only now: the changes are durable (or were refused).
            for p in &batch {
                if let Err(e) = client.ack(p).await {
                    tracing::warn!(error = %e, "cannot acknowledge to the broker");
                }
            }
        }
    }

    /// The command a broker message stands for, or why it has none.
    fn command_of(&self, topic: &str, payload: &[u8]) -> Result<Command, PublishRefusal> {
        match topics::parse_broker_topic(topic).map_err(|e| inbound::topic_refusal(&e))? {
            BrokerTopic::Telemetry {
                device_id,
                properties,
            } => inbound::telemetry(&self.tenant, &device_id, &properties, payload),
            BrokerTopic::Reported { device_id } => {
                inbound::reported(&self.tenant, &device_id, payload)
            }
        }
    }

    /// A message refused for good: acknowledged (so never redelivered), counted, logged.
    fn dropped(&self, topic: &str, refusal: &PublishRefusal) {
        tracing::warn!(tenant = %self.tenant, topic, reason = %refusal.message, "device message rejected and dropped");
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Commits a run of telemetry together; a message that failed for a passing
    /// reason is retried on its own (its command made again from the message in
    /// `batch`).
    async fn commit_telemetry(&self, batch: &[rumqttc::Publish], run: Vec<(usize, Command)>) {
        if run.is_empty() {
            return;
        }
        let (places, cmds): (Vec<usize>, Vec<Command>) = run.into_iter().unzip();
        let results = self.sink.submit_telemetry(cmds).await;
        for (i, r) in places.into_iter().zip(results) {
            let p = &batch[i];
            match r {
                Ok(_) => {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.is_final() => self.dropped(&p.topic, &inbound::refusal(&e)),
                Err(_) => match self.command_of(&p.topic, &p.payload) {
                    Ok(cmd) => self.commit(&p.topic, cmd).await,
                    Err(refusal) => self.dropped(&p.topic, &refusal),
                },
            }
        }
    }

    /// Applies one message's command. Transient failures (overload, storage) are
    /// retried before the ack: the broker would not redeliver an acknowledged message.
    async fn commit(&self, topic: &str, cmd: Command) {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::attempts(5, ms(200), ms(3200));
        let mut attempt = 0;
        let last = loop {
            match self.sink.submit(cmd.clone()).await {
                Ok(_) => {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if e.is_final() => break e,
                Err(e) => {
                    tracing::warn!(topic, error = %e, attempt, "device message not stored yet; retrying");
                    attempt += 1;
                    if !backoff.wait().await {
                        break e;
                    }
                }
            }
        };
        self.dropped(topic, &inbound::refusal(&last));
    }
}
