//! Attaching a tenant to an external MQTT broker (e.g. Mosquitto, EMQX) as a client.
//!
//! The broker, not doppel, authenticates the devices and confines each to its own
//! topics (e.g. Mosquitto's `pattern readwrite devices/%c/#`); doppel trusts the device
//! id in the topic for the tenant this broker is attached to. Several doppel nodes can
//! share the load through one shared subscription group (`$share/<group>/…`).
//!
//! Topics (the device id is in the topic, since the connection is the broker's):
//!
//! | topic | doppel does |
//! | --- | --- |
//! | `devices/{id}/messages/events/…` | telemetry → `RecordTelemetry` |
//! | `devices/{id}/twin/reported` | reported properties (Plug and Play acks) → `ReportProperties` |
//! | `devices/{id}/twin/desired` (published by doppel) | desired values an app set, with `$version` |
//!
//! Messages are acknowledged to the broker (QoS 1 PUBACK) only after the command is
//! durable, so a crash before that makes the broker redeliver. A message that breaks
//! the model is acknowledged and dropped (logged, counted): redelivering it would only
//! fail again.

use super::device_twin;
pub use crate::config::ExternalBroker;
use crate::node::Node;
use doppel_twins::events::TWIN_UPDATE;
use doppel_twins::keys::shard_of;
use doppel_twins::{load_twin, Command};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Counters for tests and `/metrics`.
#[derive(Debug, Default)]
pub struct ExternalStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
}

/// What a message on the broker means to doppel.
#[derive(Debug, PartialEq)]
enum Inbound<'a> {
    Telemetry(&'a str),
    Reported(&'a str),
}

fn classify(topic: &str) -> Option<Inbound<'_>> {
    let rest = topic.strip_prefix("devices/")?;
    let (id, tail) = rest.split_once('/')?;
    if id.is_empty() {
        return None;
    }
    if tail.starts_with("messages/events/") || tail == "messages/events" {
        Some(Inbound::Telemetry(id))
    } else if tail == "twin/reported" {
        Some(Inbound::Reported(id))
    } else {
        None
    }
}

/// Connects to the broker and serves the tenant's devices until the process ends.
/// Reconnects with a back-off; the broker keeps QoS 1 messages meanwhile.
pub fn attach(state: Node, broker: ExternalBroker) -> Arc<ExternalStats> {
    let stats = Arc::new(ExternalStats::default());
    let (host, port) = broker
        .address
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.parse::<u16>().unwrap_or(1883)))
        .unwrap_or_else(|| (broker.address.clone(), 1883));
    let mut opts = MqttOptions::new(&broker.client_id, host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_manual_acks(true);
    opts.set_clean_session(false);
    if let Some(user) = &broker.username {
        opts.set_credentials(user, broker.password.clone().unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    tokio::spawn(push_desired(
        state.clone(),
        client.clone(),
        broker.tenant.clone(),
    ));
    let (messages, queued) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(serve_messages(
        state,
        broker.tenant.clone(),
        stats.clone(),
        client.clone(),
        queued,
    ));
    tokio::spawn(async move {
        let filters = [
            format!("$share/{}/devices/+/messages/events/#", broker.share_group),
            format!("$share/{}/devices/+/twin/reported", broker.share_group),
        ];
        let reconnect = || {
            crate::retry::Backoff::attempts(
                u32::MAX,
                Duration::from_millis(200),
                Duration::from_secs(5),
            )
        };
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

/// Most broker messages made durable together.
const MAX_BATCH: usize = 256;

/// Makes the broker's messages durable, then acknowledges them in the order they
/// came. The messages waiting when a round starts go together: telemetry is queued
/// on its shards in arrival order (one device's messages keep their order), anything
/// else is applied one message at a time, in order.
async fn serve_messages(
    state: Node,
    tenant: String,
    stats: Arc<ExternalStats>,
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
            let Some(cmd) = command_of(&tenant, &stats, &p.topic, &p.payload) else {
                continue;
            };
            if matches!(cmd, Command::RecordTelemetry { .. }) {
                run.push((i, cmd));
                continue;
            }
            commit_telemetry(&state, &tenant, &stats, &batch, std::mem::take(&mut run)).await;
            commit(&state, &stats, &p.topic, cmd).await;
        }
        commit_telemetry(&state, &tenant, &stats, &batch, run).await;
        // Acknowledged only now: the changes are durable (or were refused).
        for p in &batch {
            if let Err(e) = client.ack(p).await {
                tracing::warn!(error = %e, "cannot acknowledge to the broker");
            }
        }
    }
}

/// Commits a run of telemetry together; a message that failed for a passing reason
/// is retried on its own (its command made again from the message in `batch`).
async fn commit_telemetry(
    state: &Node,
    tenant: &str,
    stats: &ExternalStats,
    batch: &[rumqttc::Publish],
    run: Vec<(usize, Command)>,
) {
    if run.is_empty() {
        return;
    }
    let (places, cmds): (Vec<usize>, Vec<Command>) = run.into_iter().unzip();
    let results = crate::dispatch::execute_telemetry(state, cmds).await;
    for (i, r) in places.into_iter().zip(results) {
        let p = &batch[i];
        match r {
            Ok(_) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if is_final(&e) => {
                tracing::info!(topic = %p.topic, reason = %e, "device message rejected");
                stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                if let Some(cmd) = command_of(tenant, stats, &p.topic, &p.payload) {
                    commit(state, stats, &p.topic, cmd).await;
                }
            }
        }
    }
}

/// A refusal that retrying cannot change (the message breaks the model, …).
fn is_final(e: &crate::actors::ActorError) -> bool {
    e.disposition() == doppel_twins::Disposition::Rejected
}

/// The command a broker message stands for; `None` (counted, logged) when it is on an
/// unknown topic or not JSON.
fn command_of(tenant: &str, stats: &ExternalStats, topic: &str, payload: &[u8]) -> Option<Command> {
    let Some(kind) = classify(topic) else {
        tracing::info!(topic, "message on an unknown topic dropped");
        stats.rejected.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let body: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(topic, error = %e, "message is not JSON; dropped");
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    Some(match kind {
        Inbound::Telemetry(id) => Command::RecordTelemetry {
            tenant: tenant.to_owned(),
            twin_id: id.to_owned(),
            body,
            source_time: None,
        },
        Inbound::Reported(id) => Command::ReportProperties {
            tenant: tenant.to_owned(),
            twin_id: id.to_owned(),
            reported: body,
        },
    })
}

/// Applies one message's command. Transient failures (overload, storage) are retried
/// before the ack: the broker would not redeliver an acknowledged message.
async fn commit(state: &Node, stats: &ExternalStats, topic: &str, cmd: Command) {
    let ms = Duration::from_millis;
    let mut backoff = crate::retry::Backoff::attempts(5, ms(200), ms(3200));
    for attempt in 0.. {
        match crate::dispatch::execute(state, cmd.clone()).await {
            Ok(_) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if is_final(&e) => {
                tracing::info!(topic, reason = %e, "device message rejected");
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!(topic, error = %e, attempt, "device message not stored yet; retrying");
                if !backoff.wait().await {
                    break;
                }
            }
        }
    }
    stats.rejected.fetch_add(1, Ordering::Relaxed);
}

/// Publishes new desired values of the tenant's twins to `devices/{id}/twin/desired`.
async fn push_desired(state: Node, client: AsyncClient, tenant: String) {
    let mut events = state.proposer.subscribe();
    let mut pushed: HashMap<String, u64> = HashMap::new();
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        if e.tenant != tenant || e.kind != TWIN_UPDATE {
            continue;
        }
        let shard = shard_of(&tenant, &e.twin_id, state.shard_count);
        let Ok(Some(twin)) = load_twin(&state.storage, shard, &tenant, &e.twin_id) else {
            continue;
        };
        let since = pushed.get(&e.twin_id).copied().unwrap_or(0);
        let Some(body) = device_twin::desired_patch(&twin, since) else {
            continue;
        };
        let topic = format!("devices/{}/twin/desired", e.twin_id);
        let payload = serde_json::to_vec(&body).unwrap_or_default();
        match client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
        {
            Ok(()) => {
                pushed.insert(e.twin_id.clone(), twin.desired_version);
            }
            Err(err) => tracing::warn!(error = %err, "desired update not published"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_the_device_and_the_kind() {
        assert_eq!(
            classify("devices/pump-1/messages/events/"),
            Some(Inbound::Telemetry("pump-1"))
        );
        assert_eq!(
            classify("devices/pump-1/messages/events/$.ct=application%2Fjson"),
            Some(Inbound::Telemetry("pump-1"))
        );
        assert_eq!(
            classify("devices/pump-1/twin/reported"),
            Some(Inbound::Reported("pump-1"))
        );
        assert_eq!(classify("devices//twin/reported"), None);
        assert_eq!(classify("devices/pump-1/twin/desired"), None);
        assert_eq!(classify("other/pump-1"), None);
    }

    #[test]
    fn config_entries_are_checked_by_field() {
        let ok = ExternalBroker {
            tenant: "default".into(),
            address: "127.0.0.1:1883".into(),
            client_id: "doppel".into(),
            username: None,
            password: None,
            share_group: "doppel".into(),
        };
        assert!(ok.validate().is_ok());
        let bad = ExternalBroker {
            address: "nowhere".into(),
            ..ok.clone()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("address"));
        let bad = ExternalBroker {
            tenant: "Bad Tenant".into(),
            ..ok
        };
        assert!(bad.validate().unwrap_err().to_string().contains("tenant"));
    }
}
