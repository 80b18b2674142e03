//! `doppel demo`: a node like `doppel serve`, with a small sample factory and
//! simulated machines that are real MQTT devices, so a first run shows live twins.
//!
//! ```text
//!  doppel demo ─▶ start_node (REST + device edge) ─▶ setup over loopback REST (admin token)
//!                                                     models, twins, relationships, devices
//!              ─▶ N simulated devices ──MQTT (IoT Hub user names, SAS tokens)──▶ device edge
//!                   telemetry every interval, reported serialNumber/status,
//!                   `reboot` direct method, Plug and Play acks of targetSpeed
//! ```
//!
//! Setup goes through the node's own REST API, so the sample gets exactly the
//! validation users get, and it is idempotent: on a data directory that already holds
//! the sample only what is missing is created. Ctrl-C / SIGTERM stops the devices
//! (MQTT DISCONNECT), then the node, as `doppel serve` stops.

use crate::{serve_until, serving_line, shutdown_signal, start_node};
use anyhow::Context;
use doppel_client::{ApiClient, ClientConfig, ClientError, Preconditions, RequestBody};
use doppel_node::NodeConfig;
use doppel_protocols::iothub::{self, CloudTopic};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

pub const FACTORY: &str = "dtmi:doppel:demo:Factory;1";
pub const LINE: &str = "dtmi:doppel:demo:ProductionLine;1";
pub const MACHINE: &str = "dtmi:doppel:demo:Machine;1";
const MODELS: [&str; 3] = [
    include_str!("demo/factory.json"),
    include_str!("demo/production_line.json"),
    include_str!("demo/machine.json"),
];
/// The IoT Hub host name of tenant `default`.
const HUB: &str = "default.doppel";
/// Lifetime of the SAS tokens the devices sign (a fresh one on every reconnect).
const SAS_TTL_SECS: u64 = 24 * 3600;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Data directory (reused by later runs)
    #[arg(long, default_value = "./doppel-demo")]
    data_dir: PathBuf,
    /// REST API address
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// Embedded MQTT broker address the simulated devices connect to
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Number of simulated machines, split over two production lines
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000))]
    machines: u32,
    /// Telemetry interval of each machine, in milliseconds
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    interval_ms: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    crate::init_logging("warn");
    let config = NodeConfig {
        data_dir: args.data_dir.clone(),
        http: args.http.clone(),
        mqtt: Some(args.mqtt.clone()),
        ..NodeConfig::default()
    };
    let started = start_node(config).await?;
    let http = loopback(started.http_addr);
    let mqtt = loopback(
        started
            .mqtt_addr()
            .context("the demo needs the MQTT listener")?,
    );
    let url = started.url.clone();
    let token_path = started.admin_token_path.clone();
    let data_dir = started.node.config.data_dir.clone();

    // Serve the API in the background; setup talks to it like any client.
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let serving = serving_line(&started);
    let server = tokio::spawn(serve_until(started, async {
        let _ = server_stopped.await;
    }));
    let (stop_devices, stop_rx) = watch::channel(false);

    let mut signal = Box::pin(shutdown_signal());
    let setup = async {
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| {
                format!(
                    "reading the admin token {} (delete {} to start the demo afresh)",
                    token_path.display(),
                    data_dir.display()
                )
            })?
            .trim()
            .to_owned();
        let rest = Rest::new(format!("http://{http}"), token)?;
        let machines = create_sample(&rest, args.machines).await?;
        let interval = Duration::from_millis(args.interval_ms);
        let devices: Vec<_> = machines
            .into_iter()
            .enumerate()
            .map(|(i, m)| tokio::spawn(run_device(m, mqtt, interval, i as u64, stop_rx.clone())))
            .collect();
        anyhow::Ok(devices)
    };
    let outcome = tokio::select! {
        r = setup => Some(r),
        _ = &mut signal => None,
    };
    let mut devices = Vec::new();
    let mut result = Ok(());
    match outcome {
        Some(Ok(d)) => {
            devices = d;
            println!("{serving}");
            print_guide(&url, &token_path, args.machines, args.interval_ms);
            signal.await;
        }
        Some(Err(e)) => result = Err(e.context("setting up the demo factory")),
        None => {}
    }
    let _ = stop_devices.send(true);
    for d in devices {
        // A device that does not finish its DISCONNECT in time is cut off.
        let abort = d.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), d)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    let _ = stop_server.send(());
    server.await.context("the server task failed")??;
    result
}

/// `addr`, with an unspecified IP (`0.0.0.0`, `::`) replaced by loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

fn print_guide(url: &str, token_path: &std::path::Path, machines: u32, interval_ms: u64) {
    let token = token_path.display();
    let auth = format!("-H \"Authorization: Bearer $(cat {token})\"");
    println!(
        r#"
doppel demo: factory-1 → line-1, line-2 → machine-1 … machine-{machines}.
Each machine is a simulated device on MQTT: telemetry every {interval_ms} ms, reported
status and serialNumber, `reboot` answered, targetSpeed acknowledged.

The admin token is in {token}. In another terminal:

  # watch machine-1 live (telemetry, property changes, connects), Ctrl-C to stop watching
  curl -N {auth} {url}/digitaltwins/machine-1/events

  # set its target speed; the device acknowledges it (see $metadata.targetSpeed)
  curl -X PATCH {auth} {url}/digitaltwins/machine-1 \
    -d '[{{"op":"add","path":"/targetSpeed","value":2.5}}]'
  curl {auth} {url}/digitaltwins/machine-1

  # call its reboot command (an IoT Hub direct method to the device)
  curl -X POST {auth} {url}/digitaltwins/machine-1/commands/reboot

  # walk the graph
  curl {auth} {url}/digitaltwins/factory-1/relationships
  curl {auth} {url}/digitaltwins/line-1/relationships

Stop with Ctrl-C; the data stays in its directory and the next `doppel demo` goes on with it."#
    );
}

/// The node's REST API over loopback, with the admin token (through `doppel_client`).
struct Rest {
    client: ApiClient,
}

impl Rest {
    fn new(base: String, token: String) -> anyhow::Result<Rest> {
        let client = ApiClient::new(&ClientConfig {
            url: base,
            token: Some(token),
            ..ClientConfig::default()
        })?;
        Ok(Rest { client })
    }

    /// `GET` the resource at `path` (segments): `Some(body)`, or `None` when it does not
    /// exist.
    async fn get(&self, path: &[&str]) -> anyhow::Result<Option<Value>> {
        match self.client.get_json(self.client.url(path, &[])?).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `method path body`, which must succeed.
    async fn send(&self, method: Method, path: &[&str], body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .client
            .call(
                method,
                self.client.url(path, &[])?,
                Some(RequestBody::Json(body)),
                &Preconditions::default(),
            )
            .await?;
        Ok(resp.body.unwrap_or(Value::Null))
    }

    /// Creates `path` with `body` unless it exists; returns what is there.
    async fn ensure(&self, path: &[&str], body: &Value) -> anyhow::Result<Value> {
        match self.get(path).await? {
            Some(v) => Ok(v),
            None => self.send(Method::PUT, path, body).await,
        }
    }
}

/// One simulated machine: its twin and device id, device key and serial number.
struct Machine {
    id: String,
    key: String,
    serial: String,
}

/// Uploads the sample models (unless present) and creates whatever of the sample is
/// missing: twins, relationships, one device per machine. Returns the machines.
async fn create_sample(rest: &Rest, machines: u32) -> anyhow::Result<Vec<Machine>> {
    if rest.get(&["models", MACHINE]).await?.is_none() {
        let models = MODELS
            .iter()
            .map(|m| serde_json::from_str(m))
            .collect::<Result<Vec<Value>, _>>()
            .context("the built-in sample models")?;
        rest.send(Method::POST, &["models"], &Value::Array(models))
            .await?;
    }
    rest.ensure(
        &["digitaltwins", "factory-1"],
        &json!({"$metadata": {"$model": FACTORY}, "name": "Demo factory", "location": "Lyon"}),
    )
    .await?;
    let lines = ["line-1", "line-2"];
    for (i, line) in lines.iter().enumerate() {
        rest.ensure(
            &["digitaltwins", line],
            &json!({"$metadata": {"$model": LINE}, "name": format!("Line {}", i + 1)}),
        )
        .await?;
        relate(rest, "factory-1", line).await?;
    }
    let first_half = machines.div_ceil(2);
    let mut out = Vec::new();
    for n in 1..=machines {
        let id = format!("machine-{n}");
        rest.ensure(
            &["digitaltwins", &id],
            &json!({"$metadata": {"$model": MACHINE}, "targetSpeed": 1.0}),
        )
        .await?;
        let line = if n <= first_half { lines[0] } else { lines[1] };
        relate(rest, line, &id).await?;
        let device = rest.ensure(&["devices", &id], &json!({})).await?;
        let key = device["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .with_context(|| format!("device {id} has no primary key: {device}"))?
            .to_owned();
        out.push(Machine {
            serial: format!("DM-{:05}", 10_000 + n),
            id,
            key,
        });
    }
    Ok(out)
}

/// `source --contains--> target`, with relationship id `contains-<target>`.
async fn relate(rest: &Rest, source: &str, target: &str) -> anyhow::Result<()> {
    rest.ensure(
        &[
            "digitaltwins",
            source,
            "relationships",
            &format!("contains-{target}"),
        ],
        &json!({"$targetId": target, "$relationshipName": "contains"}),
    )
    .await
    .map(|_| ())
}

/// What the MQTT event loop hands the device's logic.
enum FromNetwork {
    Connected,
    Publish(rumqttc::Publish),
    Lost,
}

/// The MQTT user name and a fresh SAS token of `device` (as `doppel devices sas`
/// makes them).
fn mqtt_credentials(device: &str, key: &str) -> anyhow::Result<(String, String)> {
    Ok(crate::commands::mqtt_credentials(
        HUB,
        device,
        key,
        now_secs() + SAS_TTL_SECS,
    )?)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One machine as an IoT Plug and Play device, until `stop` turns true.
async fn run_device(
    m: Machine,
    broker: SocketAddr,
    interval: Duration,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let (user, pass) = match mqtt_credentials(&m.id, &m.key) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(device = %m.id, error = %e, "cannot sign a SAS token");
            return;
        }
    };
    let mut opts = MqttOptions::new(&m.id, broker.ip().to_string(), broker.port());
    opts.set_credentials(user, pass);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);

    // The event loop runs alone in its task (its poll is never cancelled mid-write);
    // it ends after our DISCONNECT goes out, or on an error once stopping.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let net_stop = stop.clone();
    let id = m.id.clone();
    let key = m.key.clone();
    let network = tokio::spawn(async move {
        let mut failing = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failing = false;
                    let _ = tx.send(FromNetwork::Connected);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(FromNetwork::Publish(p));
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    if *net_stop.borrow() {
                        return;
                    }
                    if !failing {
                        tracing::warn!(device = %id, error = %e, "demo device lost its connection; retrying");
                        failing = true;
                    }
                    let _ = tx.send(FromNetwork::Lost);
                    let user_pass = mqtt_credentials(&id, &key);
                    if let Ok((u, p)) = user_pass {
                        eventloop.mqtt_options.set_credentials(u, p);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });

    let mut sim = Sim::new(seed);
    let mut connected = false;
    let mut rid = 0u64;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reboot = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(reboot);
    let mut rebooting = false;
    let telemetry_topic = iothub::telemetry_topic(&m.id, &[]);

    loop {
        tokio::select! {
            // The only change is to `true` (or the sender is gone): stop.
            _ = stop.changed() => break,
            _ = tick.tick(), if connected => {
                let payload = sim.step(!rebooting);
                let _ = client
                    .publish(&telemetry_topic, QoS::AtLeastOnce, false, payload.to_string())
                    .await;
            }
            () = &mut reboot, if rebooting => {
                rebooting = false;
                report(&client, &mut rid, json!({"status": "running"})).await;
            }
            msg = rx.recv() => match msg {
                None => break,
                Some(FromNetwork::Lost) => connected = false,
                Some(FromNetwork::Connected) => {
                    connected = true;
                    // A clean session: subscribe again on every connect.
                    for filter in [
                        "$iothub/methods/POST/#",
                        "$iothub/twin/PATCH/properties/desired/#",
                        "$iothub/twin/res/#",
                    ] {
                        let _ = client.subscribe(filter, QoS::AtLeastOnce).await;
                    }
                    let status = if rebooting { "idle" } else { "running" };
                    report(&client, &mut rid, json!({"serialNumber": m.serial, "status": status})).await;
                }
                Some(FromNetwork::Publish(p)) => {
                    let body: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    match iothub::parse_cloud_topic(&p.topic) {
                        Ok(CloudTopic::MethodRequest { method, rid: call }) => {
                            let (status, answer) = if method == "reboot" {
                                rebooting = true;
                                reboot.as_mut().reset(
                                    tokio::time::Instant::now() + (interval * 2).max(Duration::from_secs(1)),
                                );
                                report(&client, &mut rid, json!({"status": "idle"})).await;
                                (200, json!("rebooting"))
                            } else {
                                (404, json!(format!("no method '{method}'")))
                            };
                            let _ = client
                                .publish(
                                    iothub::method_response_topic(status, &call),
                                    QoS::AtLeastOnce,
                                    false,
                                    answer.to_string(),
                                )
                                .await;
                        }
                        Ok(CloudTopic::DesiredUpdate { version }) => {
                            let version = body["$version"].as_u64().unwrap_or(version);
                            let Some(v) = body.get("targetSpeed") else { continue };
                            let ack = match v.as_f64() {
                                Some(speed) if speed >= 0.0 => {
                                    sim.speed = speed;
                                    json!({"value": v, "ac": 200, "av": version, "ad": "ok"})
                                }
                                _ => json!({"value": v, "ac": 400, "av": version,
                                            "ad": "targetSpeed must be a number ≥ 0"}),
                            };
                            report(&client, &mut rid, json!({"targetSpeed": ack})).await;
                        }
                        Ok(CloudTopic::TwinResponse { status, .. }) if status >= 300 => {
                            tracing::warn!(device = %m.id, status, body = %body, "doppel refused a reported-properties update");
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let _ = client.disconnect().await;
    let _ = network.await;
}

/// Sends a reported-properties patch.
async fn report(client: &AsyncClient, rid: &mut u64, patch: Value) {
    *rid += 1;
    let _ = client
        .publish(
            iothub::twin_patch_reported_topic(&rid.to_string()),
            QoS::AtLeastOnce,
            false,
            patch.to_string(),
        )
        .await;
}

/// A machine's physics, loosely: temperature follows speed with inertia and noise;
/// vibration grows with speed.
struct Sim {
    rng: StdRng,
    temperature: f64,
    speed: f64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed ^ now_secs());
        Sim {
            temperature: 30.0 + rng.random_range(0.0..10.0),
            speed: 1.0,
            rng,
        }
    }

    /// The next telemetry message.
    fn step(&mut self, running: bool) -> Value {
        let (target, vibration) = if running {
            (38.0 + 12.0 * self.speed, 0.4 + 1.1 * self.speed)
        } else {
            (24.0, 0.05)
        };
        self.temperature += 0.15 * (target - self.temperature) + self.rng.random_range(-0.5..0.5);
        let vibration = (vibration * self.rng.random_range(0.85..1.15)).max(0.0);
        let round = |x: f64| (x * 100.0).round() / 100.0;
        json!({"temperature": round(self.temperature), "vibration": round(vibration)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_models_are_valid_json_with_the_expected_ids() {
        let ids: Vec<String> = MODELS
            .iter()
            .map(|m| serde_json::from_str::<Value>(m).unwrap()["@id"].to_string())
            .collect();
        assert_eq!(
            ids,
            [FACTORY, LINE, MACHINE]
                .map(|s| format!("\"{s}\""))
                .to_vec()
        );
    }

    #[test]
    fn the_simulation_stays_plausible() {
        let mut sim = Sim::new(7);
        for _ in 0..1000 {
            let t = sim.step(true);
            let temp = t["temperature"].as_f64().unwrap();
            assert!((10.0..90.0).contains(&temp), "{t}");
            assert!(t["vibration"].as_f64().unwrap() >= 0.0);
        }
    }
}
