//! Shared by the device-edge integration tests: a test [`EdgeHandler`] with an
//! in-memory device table (IoT Hub style: SAS token from the device key,
//! `{hub}/{device}/?api-version=…` user name), a server on 127.0.0.1:0, and
//! launchers for real clients (Debian's mosquitto clients, Python paho-mqtt).
//! A missing client fails the test with what to install; nothing is skipped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use doppel_protocols::edge::publish_one_by_one;
use doppel_protocols::iothub::{self, DeviceTopic, IotHubUsername, TopicError};
use doppel_protocols::{
    sas, BoxFuture, ConnectInfo, ConnectRefusal, DeviceKey, DeviceSession, DisconnectReason,
    EdgeHandler, InboundPublish, MqttServer, MqttServerConfig, PublishReason, PublishRefusal, Qos,
    SubscribeRefusal,
};
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};

pub const HUB: &str = "doppel.test";
pub const TENANT: &str = "t1";

pub fn key_of(device: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("key of {device}"))
}

pub fn username(device: &str) -> String {
    IotHubUsername::format(HUB, device, "2021-04-12")
}

pub fn token(device: &str) -> String {
    let now = unix_now();
    sas::make_sas_token(
        &format!("{HUB}/devices/{device}"),
        &key_of(device),
        now + 3600,
        None,
    )
    .expect("token")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct Received {
    pub device: String,
    pub topic: String,
    pub payload: Bytes,
    pub completed_at: Instant,
}

/// Devices `dev-1`…`dev-3` exist; `disabled` ones are refused (NotAuthorized).
#[derive(Default)]
pub struct TestHandler {
    pub disabled: Mutex<Vec<String>>,
    pub publish_delay: Mutex<Duration>,
    pub received: Mutex<Vec<Received>>,
    pub events: Mutex<Vec<(String, String)>>,
    /// The size of every batch `publish_batch` was given.
    pub batches: Mutex<Vec<usize>>,
}

impl TestHandler {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
    pub fn set_delay(&self, d: Duration) {
        *self.publish_delay.lock().expect("lock") = d;
    }
}

impl EdgeHandler for TestHandler {
    fn authenticate<'a>(
        &'a self,
        info: &'a ConnectInfo,
    ) -> BoxFuture<'a, Result<DeviceSession, ConnectRefusal>> {
        Box::pin(async move {
            let known = ["dev-1", "dev-2", "dev-3"];
            if !known.contains(&info.client_id.as_str()) {
                return Err(ConnectRefusal::BadCredentials);
            }
            let user = info
                .username
                .as_deref()
                .and_then(IotHubUsername::parse)
                .ok_or(ConnectRefusal::BadCredentials)?;
            if user.device_id != info.client_id || user.hub != HUB {
                return Err(ConnectRefusal::BadCredentials);
            }
            let password = info.password.as_deref().unwrap_or_default();
            sas::verify_device_token(
                password,
                &info.client_id,
                &key_of(&info.client_id),
                unix_now(),
            )
            .map_err(|_| ConnectRefusal::BadCredentials)?;
            if self
                .disabled
                .lock()
                .expect("lock")
                .contains(&info.client_id)
            {
                return Err(ConnectRefusal::NotAuthorized);
            }
            Ok(DeviceSession {
                key: DeviceKey::new(TENANT, info.client_id.clone()),
                twin_id: info.client_id.clone(),
                client_id: info.client_id.clone(),
                protocol: info.protocol,
            })
        })
    }

    fn publish<'a>(
        &'a self,
        session: &'a DeviceSession,
        topic: &'a str,
        payload: Bytes,
        _qos: Qos,
    ) -> BoxFuture<'a, Result<(), PublishRefusal>> {
        Box::pin(async move {
            match iothub::parse_device_topic(&session.key.device_id, topic) {
                Ok(DeviceTopic::Telemetry { .. }) => {}
                Ok(_) => {}
                Err(TopicError::OtherDevice { owner, .. }) => {
                    return Err(PublishRefusal::new(
                        PublishReason::NotAuthorized,
                        format!("topic of device {owner}"),
                    ))
                }
                Err(e) => {
                    return Err(PublishRefusal::new(
                        PublishReason::TopicNameInvalid,
                        e.to_string(),
                    ))
                }
            }
            if payload.as_ref() == b"invalid" {
                return Err(PublishRefusal::new(
                    PublishReason::PayloadFormatInvalid,
                    "payload violates the model",
                ));
            }
            let delay = *self.publish_delay.lock().expect("lock");
            tokio::time::sleep(delay).await;
            self.received.lock().expect("lock").push(Received {
                device: session.key.device_id.clone(),
                topic: topic.to_string(),
                payload,
                completed_at: Instant::now(),
            });
            Ok(())
        })
    }

    fn publish_batch<'a>(
        &'a self,
        session: &'a DeviceSession,
        messages: Vec<InboundPublish>,
    ) -> BoxFuture<'a, Vec<Result<(), PublishRefusal>>> {
        self.batches.lock().expect("lock").push(messages.len());
        Box::pin(publish_one_by_one(self, session, messages))
    }

    fn authorize_subscribe<'a>(
        &'a self,
        session: &'a DeviceSession,
        filter: &'a str,
    ) -> BoxFuture<'a, Result<(), SubscribeRefusal>> {
        Box::pin(async move {
            if iothub::subscription_allowed(&session.key.device_id, filter) {
                Ok(())
            } else {
                Err(SubscribeRefusal::NotAuthorized)
            }
        })
    }

    fn connected(&self, session: &DeviceSession) {
        self.events
            .lock()
            .expect("lock")
            .push((session.key.device_id.clone(), "connected".into()));
    }

    fn disconnected(&self, session: &DeviceSession, reason: DisconnectReason) {
        self.events
            .lock()
            .expect("lock")
            .push((session.key.device_id.clone(), format!("{reason:?}")));
    }
}

pub async fn start_with(config: MqttServerConfig) -> (MqttServer, Arc<TestHandler>) {
    let handler = Arc::new(TestHandler::default());
    let config = MqttServerConfig {
        bind_addr: "127.0.0.1:0".parse().expect("addr"),
        ..config
    };
    let server = MqttServer::bind(config, None, handler.clone())
        .await
        .expect("server starts");
    (server, handler)
}

pub async fn start() -> (MqttServer, Arc<TestHandler>) {
    start_with(MqttServerConfig::default()).await
}

/// Fail (not skip) when a client the tests need is missing.
pub fn require_tool(tool: &str, install: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "`{tool}` is missing: install it with `{install}`");
}

pub fn require_paho() {
    require_tool("python3", "apt-get install -y python3");
    let ok = std::process::Command::new("python3")
        .args(["-c", "import paho.mqtt.enums"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "Python paho-mqtt 2.x is missing: install it with `pip install paho-mqtt`"
    );
}

pub fn require_mosquitto_clients() {
    require_tool("mosquitto_pub", "apt-get install -y mosquitto-clients");
    require_tool("mosquitto_sub", "apt-get install -y mosquitto-clients");
}

pub fn device_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/device.py")
}

/// Arguments of the paho device for `device` with valid credentials.
pub fn paho_args(action: &str, port: u16, protocol: u8, device: &str) -> Vec<String> {
    vec![
        device_script().display().to_string(),
        action.into(),
        "--port".into(),
        port.to_string(),
        "--protocol".into(),
        protocol.to_string(),
        "--client-id".into(),
        device.into(),
        "--username".into(),
        username(device),
        "--password".into(),
        token(device),
    ]
}

/// Run the paho device to completion and parse its JSON result.
pub async fn run_paho(args: Vec<String>) -> serde_json::Value {
    require_paho();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("python3").args(&args).output(),
    )
    .await
    .expect("paho device finished within 30 s")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "paho device printed no JSON ({e}): stdout={stdout} stderr={}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// mosquitto_pub with valid credentials for `device`; returns (success, stderr+stdout).
pub async fn mosquitto_pub(
    port: u16,
    version: &str,
    device: &str,
    password: &str,
    topic: &str,
    message: &str,
) -> (bool, String) {
    require_mosquitto_clients();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
            .args(["-i", device, "-u", &username(device), "-P", password])
            .args(["-t", topic, "-m", message, "-q", "1"])
            .output(),
    )
    .await
    .expect("mosquitto_pub finished within 30 s")
    .expect("mosquitto_pub runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Wait for a condition with a deadline (no fixed sleeps).
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- a raw MQTT client, for exact bytes the real clients hide -------------

fn remaining_len(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn mqtt_str(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    remaining_len(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// CONNECT for protocol level 4 (3.1.1) or 5, clean session, with credentials.
pub fn connect_packet(level: u8, client: &str, user: &str, pass: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(b"MQTT", &mut body);
    body.push(level);
    body.push(0xC2);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(0); // no properties
    }
    mqtt_str(client.as_bytes(), &mut body);
    mqtt_str(user.as_bytes(), &mut body);
    mqtt_str(pass.as_bytes(), &mut body);
    packet(0x10, &body)
}

/// QoS 1 PUBLISH.
pub fn publish_packet(level: u8, topic: &str, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(topic.as_bytes(), &mut body);
    body.extend_from_slice(&pkid.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x32, &body)
}

pub struct RawClient {
    pub stream: tokio::net::TcpStream,
}

impl RawClient {
    pub async fn connect(port: u16) -> RawClient {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("tcp connect");
        RawClient { stream }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        // The server may already have closed; the read that follows tells.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Read one whole packet; `None` on EOF / reset. Panics after `timeout`.
    pub async fn read_packet(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let fut = async {
            let mut first = [0u8; 1];
            if self.stream.read_exact(&mut first).await.is_err() {
                return None;
            }
            let mut out = vec![first[0]];
            let mut len = 0usize;
            for i in 0..4 {
                let mut b = [0u8; 1];
                if self.stream.read_exact(&mut b).await.is_err() {
                    return None;
                }
                out.push(b[0]);
                len |= ((b[0] & 0x7f) as usize) << (7 * i);
                if b[0] & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            if self.stream.read_exact(&mut body).await.is_err() {
                return None;
            }
            out.extend_from_slice(&body);
            Some(out)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .expect("server answered or closed in time")
    }
}

/// Proptest's settings for `cases` cases from the seed `DOPPEL_SEED` names (printed): a
/// fixed one by default, so CI is deterministic; `DOPPEL_SEED=<n>` replays a run and
/// `DOPPEL_SEED=random` explores. Nothing is persisted: the seed replays a run, and a
/// failure prints its shrunk input (shrinking is capped at a minute).
pub fn proptest_config(cases: u32, default_seed: u64) -> ProptestConfig {
    let seed = match std::env::var("DOPPEL_SEED").ok().as_deref() {
        Some("random") => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        Some(s) => s.parse().expect("DOPPEL_SEED is a number or \"random\""),
        None => default_seed,
    };
    println!("seed {seed} (replay with DOPPEL_SEED={seed})");
    ProptestConfig {
        rng_seed: RngSeed::Fixed(seed),
        rng_algorithm: RngAlgorithm::XorShift,
        failure_persistence: None,
        max_shrink_iters: 100_000,
        max_shrink_time: 60_000,
        ..ProptestConfig::with_cases(cases)
    }
}
