//! `doppel bench ingest`: device telemetry into durable twin state, beside Mosquitto.
//!
//! ```text
//!  N MQTT clients (rumqttc, IoT Hub user names + SAS tokens) ──QoS 1──▶ doppel edge
//!      paced by a few driver tasks                                      ─▶ RecordTelemetry ─▶ fsync ─▶ PUBACK
//!  N MQTT clients (anonymous) ──QoS 1──▶ mosquitto (no persistence) ──▶ 1 subscriber
//! ```
//!
//! Both runs offer the same load: `--rate` messages/s in total, spread evenly over the
//! devices, for `--seconds`, payload `{"temp": <µs since the run began>}` on
//! `devices/{id}/messages/events/`. A message counts when its PUBACK arrives;
//! publish→PUBACK latency is from the publish call to the PUBACK with the same packet
//! id on the same client. Throughput is acknowledged messages over the time from the
//! first offer to the last acknowledgement (a node that falls behind keeps draining
//! after the offer stops, and is measured at the pace it drains).

use super::measure::figures;
use clap::Args;
use doppel_node::{Node, NodeConfig};
use doppel_twins::{Command, Condition, DeviceSpec, Outcome};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    /// Simulated devices (one MQTT connection each).
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Offered telemetry rate, messages/s in total over all devices. The default
    /// offers more than the 50,000 msgs/s target, so that the figure is what the node
    /// can take rather than what it was given.
    #[arg(long, default_value_t = 60_000)]
    pub rate: u64,
    /// How long the load is offered.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// MQTT QoS of the telemetry (1: counted by PUBACK; 0: counted by the receiver).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Where to put the temporary data [default: the system temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const HUB: &str = "default.doppel";
/// The ingest target: durable, acknowledged telemetry messages/s on one node.
const TARGET_RATE: u64 = 50_000;
const MODEL: &str = "dtmi:doppel:bench:Meter;1";
/// Tasks that pace the publishes (each drives its share of the devices).
const DRIVERS: usize = 8;
/// How often a driver catches up with its schedule.
const TICK: Duration = Duration::from_millis(2);
/// Unacknowledged QoS 1 publishes a client may have out.
const INFLIGHT: u16 = 64;
/// Requests a client may have queued before the driver skips it (counted).
const CLIENT_QUEUE: usize = 1024;
/// How long to wait for outstanding acknowledgements after the offer stops.
const DRAIN: Duration = Duration::from_secs(20);

/// Messages due after `elapsed` at `rate` per second (the pacing schedule).
pub fn due(rate: f64, elapsed: Duration) -> u64 {
    (rate * elapsed.as_secs_f64()).floor() as u64
}

/// The devices driver `w` of `k` drives, out of `n`.
fn share(n: usize, k: usize, w: usize) -> Vec<usize> {
    (w..n).step_by(k.max(1)).collect()
}

/// Counters shared by one run's clients, drivers and subscriber.
#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    refused: AtomicU64,
    /// Connections that failed after connecting.
    dropped: AtomicU64,
    offered: AtomicU64,
    /// Publishes not offered because the client's request queue was full.
    skipped: AtomicU64,
    /// QoS 1: PUBACKs; QoS 0: publishes written to the socket.
    acked: AtomicU64,
    /// Publishes outstanding on a connection that failed.
    lost: AtomicU64,
    /// µs since the run's t0 of the last acknowledgement.
    last_ack_us: AtomicU64,
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
}

/// What one run measured.
struct RunOut {
    ack_lat: Vec<Duration>,
    delivery_lat: Vec<Duration>,
    offered: u64,
    skipped: u64,
    acked: u64,
    lost: u64,
    refused: u64,
    dropped: u64,
    delivered: u64,
    ack_wall: Duration,
    delivery_wall: Duration,
}

pub async fn bench_ingest(a: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.devices > 0 && a.rate > 0 && a.seconds > 0,
        "--devices, --rate and --seconds must be positive"
    );
    let mosquitto = find_mosquitto().ok_or_else(|| {
        anyhow::anyhow!(
            "the baseline needs Debian's `mosquitto` broker, which is not installed: run deploy/setup.sh (it installs it)"
        )
    })?;
    let base = super::measure::scratch_dir(a.dir.as_deref())?;
    let qos = if a.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    eprintln!(
        "bench ingest: {} devices, {} msgs/s offered for {} s, QoS {}, data in {}",
        a.devices,
        a.rate,
        a.seconds,
        a.qos,
        base.path().display()
    );
    let ids: Vec<String> = (0..a.devices).map(|i| format!("meter-{i}")).collect();

    // --- doppel: a real node, REST + MQTT edge on loopback, fsync on -------------
    let config = NodeConfig {
        data_dir: base.path().join("node"),
        http: "127.0.0.1:0".into(),
        mqtt: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let node = Node::start(config).await?;
    let st = node.node.clone();
    let edge_addr = node
        .mqtt_addr()
        .ok_or_else(|| anyhow::anyhow!("the edge has no plain listener"))?;
    let edge_stats = node
        .edge
        .as_ref()
        .map(|e| e.stats.clone())
        .ok_or_else(|| anyhow::anyhow!("the node started no device edge"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node.serve_until(async {
        let _ = stop_rx.await;
    }));
    st.proposer
        .propose(Command::UploadModels {
            tenant: "default".into(),
            documents: vec![serde_json::json!({
                "@context": "dtmi:dtdl:context;3", "@id": MODEL, "@type": "Interface",
                "contents": [{"@type": "Telemetry", "name": "temp", "schema": "double"}]
            })],
        })
        .await
        .map_err(|e| anyhow::anyhow!("model upload: {e}"))?;
    eprintln!("creating {} twins and devices…", a.devices);
    let started = Instant::now();
    let mut keys: HashMap<String, String> = HashMap::with_capacity(a.devices);
    let mut pending = tokio::task::JoinSet::new();
    for id in &ids {
        let (p, id) = (st.proposer.clone(), id.clone());
        pending.spawn(async move {
            p.propose(Command::PutTwin {
                tenant: "default".into(),
                twin_id: id.clone(),
                body: serde_json::json!({"$metadata": {"$model": MODEL}}),
                condition: Condition::Always,
            })
            .await
            .map_err(|e| anyhow::anyhow!("twin {id}: {e}"))?;
            let out = p
                .propose(Command::PutDevice {
                    tenant: "default".into(),
                    device_id: id.clone(),
                    spec: DeviceSpec {
                        status: None,
                        status_reason: None,
                        primary_key: None,
                        secondary_key: None,
                        x509_thumbprint: None,
                        fresh_keys: (fresh_key(), fresh_key()),
                    },
                    condition: Condition::Always,
                })
                .await
                .map_err(|e| anyhow::anyhow!("device {id}: {e}"))?;
            match out {
                Outcome::Device { device, .. } => Ok((id, device.primary_key)),
                _ => Err(anyhow::anyhow!("device {id}: unexpected outcome")),
            }
        });
        if pending.len() >= 256 {
            if let Some(r) = pending.join_next().await {
                let (id, key) = r??;
                keys.insert(id, key);
            }
        }
    }
    while let Some(r) = pending.join_next().await {
        let (id, key) = r??;
        keys.insert(id, key);
    }
    eprintln!(
        "created {} twins and devices in {:.1} s",
        a.devices,
        started.elapsed().as_secs_f64()
    );
    let expiry = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    let creds = ids
        .iter()
        .map(|id| crate::commands::mqtt_credentials(HUB, id, &keys[id], expiry))
        .collect::<Result<Vec<_>, _>>()?;
    let (acc0, rej0) = (
        edge_stats.accepted.load(Relaxed),
        edge_stats.rejected.load(Relaxed),
    );
    let (groups0, cmds0) = (
        st.proposer.stats.groups.load(Relaxed),
        st.proposer.stats.commands.load(Relaxed),
    );
    eprintln!("measuring doppel…");
    let doppel = run_load("doppel", edge_addr, &ids, Some(&creds), &a, qos, false).await?;
    let edge_accepted = edge_stats.accepted.load(Relaxed) - acc0;
    let edge_rejected = edge_stats.rejected.load(Relaxed) - rej0;
    let groups = st.proposer.stats.groups.load(Relaxed) - groups0;
    let cmds = st.proposer.stats.commands.load(Relaxed) - cmds0;
    let _ = stop_tx.send(());
    server.await??;
    st.twins.stop();

    // --- baseline: mosquitto routing the same load to one subscriber --------------
    let broker = Mosquitto::start(&mosquitto, base.path())?;
    eprintln!("measuring mosquitto on {}…", broker.addr);
    let mosq = run_load("mosquitto", broker.addr, &ids, None, &a, qos, true).await?;
    drop(broker);

    // --- report -----------------------------------------------------------------
    // QoS 0 has no PUBACK: count what the receiver took.
    let (doppel_count, doppel_wall) = if a.qos == 0 {
        (edge_accepted, doppel.ack_wall)
    } else {
        (doppel.acked, doppel.ack_wall)
    };
    let rate = |n: u64, wall: Duration| n as f64 / wall.as_secs_f64().max(1e-9);
    let d = figures(doppel.ack_lat.clone(), doppel_wall);
    let m = figures(mosq.ack_lat.clone(), mosq.ack_wall);
    let md = figures(mosq.delivery_lat.clone(), mosq.delivery_wall);
    let doppel_rate = rate(doppel_count, doppel_wall);
    let mosq_ack_rate = if a.qos == 0 {
        rate(mosq.delivered, mosq.delivery_wall)
    } else {
        rate(mosq.acked, mosq.ack_wall)
    };
    let lat = |lat: &[Duration], v: f64| {
        if lat.is_empty() {
            format!("{:>9}", "-")
        } else {
            format!("{v:>9.2}")
        }
    };
    println!(
        "telemetry ingest, 1 node, fsync on, QoS {}, {} devices, offered {} msgs/s for {} s",
        a.qos, a.devices, a.rate, a.seconds
    );
    println!(
        "  {:<52} {:>10} {:>9} {:>9}",
        "", "msgs/s", "p50 ms", "p99 ms"
    );
    println!(
        "  {:<52} {:>10.0} {} {}",
        "doppel: publish→PUBACK, durable in twin state",
        doppel_rate,
        lat(&doppel.ack_lat, d.p50_ms),
        lat(&doppel.ack_lat, d.p99_ms)
    );
    println!(
        "  {:<52} {:>10.0} {} {}",
        "baseline: mosquitto publish→PUBACK (no persistence)",
        mosq_ack_rate,
        lat(&mosq.ack_lat, m.p50_ms),
        lat(&mosq.ack_lat, m.p99_ms)
    );
    println!(
        "  {:<52} {:>10.0} {} {}",
        "baseline: mosquitto publish→1 subscriber delivery",
        rate(mosq.delivered, mosq.delivery_wall),
        lat(&mosq.delivery_lat, md.p50_ms),
        lat(&mosq.delivery_lat, md.p99_ms)
    );
    let p99_ratio = if doppel.ack_lat.is_empty() || mosq.ack_lat.is_empty() {
        "-".to_string()
    } else {
        format!("{:.2}x", d.p99_ms / m.p99_ms.max(1e-9))
    };
    println!(
        "  ratio doppel/mosquitto: throughput {:.2}x, p99 latency {p99_ratio}; {:.1} commands per Raft entry",
        doppel_rate / mosq_ack_rate.max(1e-9),
        cmds as f64 / groups.max(1) as f64
    );
    for (name, r) in [("doppel", &doppel), ("mosquitto", &mosq)] {
        println!(
            "  {name}: offered {}, acknowledged {}, skipped (client queue full) {}, lost on failed connections {}, connects refused {}, connections dropped {}",
            r.offered, r.acked, r.skipped, r.lost, r.refused, r.dropped
        );
    }
    println!(
        "  doppel edge: accepted {edge_accepted}, rejected {edge_rejected}; mosquitto subscriber: delivered {}",
        mosq.delivered
    );
    // A node cannot acknowledge faster than it is offered: the target is judged as
    // capacity, from a run that offers more than it.
    let comparable = a.qos == 1 && a.devices >= 1000 && a.rate > TARGET_RATE;
    let verdict = match (comparable, doppel_rate >= TARGET_RATE as f64) {
        (false, _) => "not judged (run with QoS 1, >= 1000 devices and --rate above 50000)",
        (true, true) => "met",
        (true, false) => "NOT met",
    };
    println!(
        "  target: >= 50000 msgs/s accepted, QoS 1, 1000 devices, fsync on: {verdict} ({doppel_rate:.0} msgs/s)"
    );
    Ok(())
}

fn fresh_key() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One client's publish instants, in call order (its event loop writes publishes in
/// the order they were called, so the front one is the next `Outgoing::Publish`).
type Calls = Arc<Mutex<VecDeque<Instant>>>;

/// Connects one client per id, offers the load, drains, disconnects.
async fn run_load(
    name: &str,
    addr: SocketAddr,
    ids: &[String],
    creds: Option<&[(String, String)]>,
    a: &IngestArgs,
    qos: QoS,
    subscriber: bool,
) -> anyhow::Result<RunOut> {
    let c = Arc::new(Counters::default());
    let t0 = Instant::now();
    let n = ids.len() as u64;

    let mut sub = None;
    if subscriber {
        let mut opts = MqttOptions::new("bench-subscriber", addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        opts.set_max_packet_size(64 * 1024, 64 * 1024);
        let (client, eventloop) = AsyncClient::new(opts, 16);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(subscribe_loop(eventloop, c.clone(), t0, ready_tx));
        client
            .subscribe("devices/+/messages/events/", QoS::AtLeastOnce)
            .await?;
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| anyhow::anyhow!("{name}: the subscriber got no SUBACK"))??;
        sub = Some((client, task));
    }

    eprintln!("{name}: connecting {} devices…", ids.len());
    let mut clients = Vec::with_capacity(ids.len());
    let mut loops = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        if let Some(creds) = creds {
            opts.set_credentials(creds[i].0.clone(), creds[i].1.clone());
        }
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        opts.set_inflight(INFLIGHT);
        let (client, eventloop) = AsyncClient::new(opts, CLIENT_QUEUE);
        let calls: Calls = Arc::default();
        loops.push(tokio::spawn(client_loop(
            eventloop,
            calls.clone(),
            c.clone(),
            t0,
            qos,
        )));
        clients.push((client, calls, topic(id)));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.connected.load(Relaxed) + c.refused.load(Relaxed) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name}: only {} of {n} devices connected in 60 s",
            c.connected.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = c.refused.load(Relaxed);
    anyhow::ensure!(
        refused < n,
        "{name}: every device was refused its connection"
    );
    eprintln!(
        "{name}: {} devices connected ({refused} refused) in {:.1} s; offering {} msgs/s for {} s…",
        c.connected.load(Relaxed),
        t0.elapsed().as_secs_f64(),
        a.rate,
        a.seconds
    );
    // Wait a moment so the node's connection bookkeeping is not in the measurement.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Publishing starts now; the throughput window is measured from here.
    let start = Instant::now();
    let offer_for = Duration::from_secs(a.seconds);
    let k = DRIVERS.min(clients.len());
    let clients = Arc::new(clients);
    let mut drivers = Vec::with_capacity(k);
    for w in 0..k {
        let mine = share(clients.len(), k, w);
        let rate = a.rate as f64 * mine.len() as f64 / clients.len() as f64;
        let (clients, c) = (clients.clone(), c.clone());
        drivers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let (mut sent, mut next) = (0u64, 0usize);
            loop {
                tick.tick().await;
                let elapsed = start.elapsed();
                let target = due(rate, elapsed.min(offer_for));
                while sent < target {
                    let (client, calls, topic) = &clients[mine[next % mine.len()]];
                    next += 1;
                    sent += 1;
                    let payload = format!("{{\"temp\":{}}}", t0.elapsed().as_micros());
                    // The instant goes in before the request can reach the event loop.
                    let mut q = calls.lock().unwrap_or_else(|e| e.into_inner());
                    q.push_back(Instant::now());
                    match client.try_publish(topic.as_str(), qos, false, payload) {
                        Ok(()) => c.offered.fetch_add(1, Relaxed),
                        Err(_) => {
                            q.pop_back();
                            c.skipped.fetch_add(1, Relaxed)
                        }
                    };
                }
                if elapsed >= offer_for {
                    return;
                }
            }
        }));
    }
    let mut last = (0u64, 0u64);
    let mut report = Instant::now();
    while drivers.iter().any(|d| !d.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if report.elapsed() >= Duration::from_secs(1) {
            report = Instant::now();
            let now = (c.offered.load(Relaxed), c.acked.load(Relaxed));
            eprintln!(
                "{name}: t={:>4.1}s offered {:>8} (+{:>6}/s) acknowledged {:>8} (+{:>6}/s)",
                start.elapsed().as_secs_f64(),
                now.0,
                now.0 - last.0,
                now.1,
                now.1 - last.1
            );
            last = now;
        }
    }
    for d in drivers {
        d.await?;
    }
    let offered = c.offered.load(Relaxed);
    let drain_until = Instant::now() + DRAIN;
    loop {
        let acked_all =
            qos == QoS::AtMostOnce || c.acked.load(Relaxed) + c.lost.load(Relaxed) >= offered;
        let delivered_all = !subscriber || c.delivered.load(Relaxed) >= offered;
        if (acked_all && delivered_all) || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if qos == QoS::AtMostOnce && subscriber {
        // Nothing acknowledges QoS 0: give the subscriber its moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "{name}: offered {offered}, acknowledged {} after {:.1} s; disconnecting…",
        c.acked.load(Relaxed),
        start.elapsed().as_secs_f64()
    );
    for (client, _, _) in clients.iter() {
        let _ = client.try_disconnect();
    }
    let mut ack_lat = Vec::with_capacity(offered as usize);
    for l in loops {
        let abort = l.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), l).await {
            Ok(r) => ack_lat.extend(r?),
            Err(_) => abort.abort(),
        }
    }
    let mut delivery_lat = Vec::new();
    if let Some((client, task)) = sub {
        let _ = client.try_disconnect();
        let abort = task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(r) => delivery_lat = r?,
            Err(_) => abort.abort(),
        }
    }
    // Both windows are measured from the first offer.
    let since_start = |us: u64| {
        (t0 + Duration::from_micros(us))
            .saturating_duration_since(start)
            .max(Duration::from_millis(1))
    };
    Ok(RunOut {
        ack_lat,
        delivery_lat,
        offered,
        skipped: c.skipped.load(Relaxed),
        acked: c.acked.load(Relaxed),
        lost: c.lost.load(Relaxed),
        refused,
        dropped: c.dropped.load(Relaxed),
        delivered: c.delivered.load(Relaxed),
        ack_wall: since_start(c.last_ack_us.load(Relaxed)),
        delivery_wall: since_start(c.last_delivery_us.load(Relaxed)),
    })
}

fn topic(id: &str) -> String {
    doppel_protocols::iothub::telemetry_topic(id, &[])
}

/// One device's MQTT event loop: matches PUBACKs to publish instants by packet id.
/// Returns the publish→PUBACK latencies.
async fn client_loop(
    mut eventloop: EventLoop,
    calls: Calls,
    c: Arc<Counters>,
    t0: Instant,
    qos: QoS,
) -> Vec<Duration> {
    let mut sent: HashMap<u16, Instant> = HashMap::new();
    let mut lat = Vec::new();
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if !connected {
                    connected = true;
                    c.connected.fetch_add(1, Relaxed);
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let at = calls.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                if qos == QoS::AtMostOnce {
                    c.acked.fetch_add(1, Relaxed);
                    c.last_ack_us
                        .fetch_max(t0.elapsed().as_micros() as u64, Relaxed);
                } else if let Some(at) = at {
                    sent.insert(pkid, at);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(at) = sent.remove(&ack.pkid) {
                    lat.push(at.elapsed());
                    c.acked.fetch_add(1, Relaxed);
                    c.last_ack_us
                        .fetch_max(t0.elapsed().as_micros() as u64, Relaxed);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return lat,
            Ok(_) => {}
            Err(e) => {
                if connected {
                    let queued = calls.lock().unwrap_or_else(|e| e.into_inner()).len();
                    c.dropped.fetch_add(1, Relaxed);
                    c.lost.fetch_add((sent.len() + queued) as u64, Relaxed);
                    tracing::warn!(error = %e, "bench device connection failed");
                } else {
                    c.refused.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "bench device could not connect");
                }
                return lat;
            }
        }
    }
}

/// The subscriber's event loop: counts deliveries and their latency (the payload
/// carries the publish instant, µs since `t0`).
async fn subscribe_loop(
    mut eventloop: EventLoop,
    c: Arc<Counters>,
    t0: Instant,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Vec<Duration> {
    let mut ready = Some(ready);
    let mut lat = Vec::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let now = t0.elapsed().as_micros() as u64;
                c.delivered.fetch_add(1, Relaxed);
                c.last_delivery_us.fetch_max(now, Relaxed);
                let sent = serde_json::from_slice::<serde_json::Value>(&p.payload)
                    .ok()
                    .and_then(|v| v["temp"].as_u64());
                if let Some(sent) = sent {
                    lat.push(Duration::from_micros(now.saturating_sub(sent)));
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return lat,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "bench subscriber connection failed");
                return lat;
            }
        }
    }
}

fn find_mosquitto() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

/// A mosquitto broker on a free loopback port, killed on drop.
struct Mosquitto {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Mosquitto {
    fn start(bin: &Path, dir: &Path) -> anyhow::Result<Mosquitto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 1000000\nmax_inflight_messages 1000\n"
            ),
        )?;
        let log = std::fs::File::create(dir.join("mosquitto.log"))?;
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", bin.display()))?;
        let mut broker = Mosquitto {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(broker.addr).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default();
                anyhow::bail!("mosquitto exited ({status}): {log}");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "mosquitto did not listen on {} within 5 s",
                broker.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(broker)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_offers_the_rate_and_never_more() {
        assert_eq!(due(50_000.0, Duration::ZERO), 0);
        assert_eq!(due(50_000.0, Duration::from_millis(2)), 100);
        assert_eq!(due(50_000.0, Duration::from_secs(10)), 500_000);
        // 7 msgs/s: 3 due after 0.5 s (floor), never rounding up.
        assert_eq!(due(7.0, Duration::from_millis(500)), 3);
        let mut last = 0;
        for ms in 0..2000 {
            let d = due(1234.5, Duration::from_millis(ms));
            assert!(d >= last);
            last = d;
        }
    }

    #[test]
    fn shares_cover_every_device_once() {
        let mut all: Vec<usize> = (0..8).flat_map(|w| share(1000, 8, w)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(share(3, 8, 5), Vec::<usize>::new());
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let lat: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let f = figures(lat, Duration::from_secs(2));
        assert_eq!(f.p50_ms, 50.0);
        assert_eq!(f.p99_ms, 99.0);
        assert_eq!(f.ops_per_s, 50.0);
        let empty = figures(Vec::new(), Duration::from_secs(1));
        assert_eq!(empty.p99_ms, 0.0);
    }
}
