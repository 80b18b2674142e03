//! A real external broker for the tests that attach a tenant to one: Debian's
//! Mosquitto on a free loopback port, with anonymous access and no persistence,
//! killed when dropped; and a node attached to it.

use crate::{EventStream, Node};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `mosquitto` process (deploy/setup.sh installs it).
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// With extra lines of mosquitto.conf.
    pub fn start_with(extra: &str) -> Mosquitto {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("mosquitto is not installed: run deploy/setup.sh");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}"),
        )
        .expect("mosquitto.conf written");
        let child = Command::new(bin)
            .args(["-c", conf.to_str().expect("a UTF-8 path")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }

    /// `mosquitto_pub` of `payload` on `topic` at QoS 1 as client `pump-1`.
    pub fn publish(&self, topic: &str, payload: &str) {
        self.publish_as("pump-1", topic, payload)
    }

    /// `mosquitto_pub` of `payload` on `topic` at QoS 1 as `client_id`.
    pub fn publish_as(&self, client_id: &str, topic: &str, payload: &str) {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(["-i", client_id, "-t", topic, "-m", payload])
            .output()
            .expect("mosquitto_pub runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A node whose tenant `default` is attached to this broker as `client_id`, and
    /// the temporary directory of its config.
    pub fn attached_node(&self, client_id: &str) -> (Node, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("doppel.toml");
        std::fs::write(
            &config,
            format!(
                "[[external_brokers]]\ntenant = \"default\"\naddress = \"127.0.0.1:{}\"\nclient_id = \"{client_id}\"\n",
                self.port
            ),
        )
        .expect("doppel.toml written");
        let node =
            Node::start_with(&["--config", config.to_str().expect("a UTF-8 path")]).expect("node");
        (node, dir)
    }

    /// Publishes `payload` as `device`'s telemetry until its event comes through on
    /// `events` (doppel subscribes once connected), and returns that event.
    pub async fn first_through(
        &self,
        events: &mut EventStream,
        device: &str,
        payload: &str,
    ) -> (String, Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let topic = format!("devices/{device}/messages/events/");
        loop {
            assert!(
                Instant::now() < deadline,
                "no telemetry came through the broker"
            );
            self.publish_as(device, &topic, payload);
            let got = tokio::time::timeout(
                Duration::from_millis(700),
                events.next(Duration::from_secs(60)),
            )
            .await;
            if let Ok(event) = got {
                return event;
            }
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
