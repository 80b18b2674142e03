//! The application reaches connected devices through the ConnectionRegistry:
//! `send` delivers to a subscribed device, `disconnect` cuts it off at once, and
//! a second connection of the same device takes over the first.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use doppel_protocols::{DeviceKey, DisconnectReason, Qos, SendError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reaches_a_subscribed_mosquitto_sub() {
    require_mosquitto_clients();
    let (server, _handler) = start().await;
    let port = server.local_addr().port();
    let registry = server.registry();
    let dev = DeviceKey::new(TENANT, "dev-1");
    let topic = "devices/dev-1/messages/devicebound/%24.to=x";
    for version in ["mqttv311", "mqttv5"] {
        let sub = tokio::process::Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
            .args([
                "-i",
                "dev-1",
                "-u",
                &username("dev-1"),
                "-P",
                &token("dev-1"),
            ])
            .args([
                "-t",
                "devices/dev-1/messages/devicebound/#",
                "-q",
                "1",
                "-C",
                "1",
                "-v",
            ])
            .args(["-W", "20"])
            .kill_on_drop(true)
            .output();
        let sub = tokio::spawn(sub);
        // Subscribed once send stops answering NotConnected / NotSubscribed.
        let payload = format!("hello {version}");
        eventually(
            "mosquitto_sub subscribed",
            Duration::from_secs(10),
            || match registry.send(&dev, topic, Bytes::from(payload.clone()), Qos::AtLeastOnce) {
                Ok(()) => true,
                Err(SendError::NotConnected(_) | SendError::NotSubscribed { .. }) => false,
                Err(e) => panic!("{e}"),
            },
        )
        .await;
        let out = sub.await.expect("join").expect("mosquitto_sub runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            format!("{topic} {payload}"),
            "{version}: {out:?}"
        );
        // mosquitto_sub leaves after one message; wait until the server has
        // unregistered it, or the next round's send could reach the old connection.
        eventually("mosquitto_sub gone", Duration::from_secs(5), || {
            !registry.is_connected(&dev)
        })
        .await;
    }
    assert_eq!(
        registry.send(
            &dev,
            "devices/dev-1/messages/events/",
            Bytes::new(),
            Qos::AtMostOnce
        ),
        Err(SendError::NotConnected(dev.clone())),
        "offline device: a clear error"
    );
    server.shutdown().await;
}

/// Start a paho device that subscribes and waits; return once it is subscribed.
async fn subscribed_device(
    port: u16,
    protocol: u8,
    registry: &doppel_protocols::ConnectionRegistry,
) -> tokio::task::JoinHandle<serde_json::Value> {
    let mut args = paho_args("subscribe-and-wait", port, protocol, "dev-1");
    args.extend(["--topic".into(), "$iothub/methods/POST/#".into()]);
    let device = tokio::spawn(run_paho(args));
    let dev = DeviceKey::new(TENANT, "dev-1");
    eventually("device subscribed", Duration::from_secs(10), || {
        !matches!(
            registry.send(&dev, "$iothub/nothing", Bytes::new(), Qos::AtMostOnce),
            Err(SendError::NotConnected(_))
        ) && registry
            .send(
                &dev,
                "$iothub/methods/POST/ping/?$rid=1",
                Bytes::new(),
                Qos::AtMostOnce,
            )
            .is_ok()
    })
    .await;
    device
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_drops_the_device_at_once() {
    let (server, handler) = start().await;
    let port = server.local_addr().port();
    let registry = server.registry();
    let dev = DeviceKey::new(TENANT, "dev-1");
    for protocol in [5u8, 4] {
        let device = subscribed_device(port, protocol, &registry).await;
        assert!(registry.disconnect(&dev, DisconnectReason::AdministrativeAction));
        let res = device.await.expect("join");
        let after = res["disconnect_after_s"].as_f64().expect("disconnected");
        assert!(
            after < 1.0,
            "v{protocol}: disconnected after {after}s: {res}"
        );
        if protocol == 5 {
            assert_eq!(res["disconnect"], 0x98, "administrative action: {res}");
        }
        eventually("unregistered", Duration::from_secs(5), || {
            !registry.is_connected(&dev)
        })
        .await;
    }
    let events = handler.events.lock().expect("lock").clone();
    assert_eq!(
        events
            .iter()
            .filter(|(_, e)| e == "AdministrativeAction")
            .count(),
        2,
        "{events:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connect_of_the_same_client_takes_over() {
    let (server, _handler) = start().await;
    let port = server.local_addr().port();
    let registry = server.registry();
    let first = subscribed_device(port, 5, &registry).await;
    let second = run_paho(paho_args("connect", port, 5, "dev-1")).await;
    assert_eq!(second["connack"], 0, "{second}");
    let first = first.await.expect("join");
    assert_eq!(first["disconnect"], 0x8E, "session taken over: {first}");
    server.shutdown().await;
}
