//! CONNECT is where a device proves who it is: good IoT Hub credentials (SAS
//! token from the device key) are accepted on MQTT 3.1.1 and 5, bad ones are
//! refused with the code each protocol version defines, and the connection is
//! closed.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_credentials_are_accepted_on_311_and_5() {
    let (server, handler) = start().await;
    let port = server.local_addr().port();
    for version in ["mqttv311", "mqttv5"] {
        let (ok, out) = mosquitto_pub(
            port,
            version,
            "dev-1",
            &token("dev-1"),
            "devices/dev-1/messages/events/",
            &format!("{{\"from\":\"{version}\"}}"),
        )
        .await;
        assert!(ok, "mosquitto_pub {version} failed: {out}");
    }
    for protocol in [4, 5] {
        let res = run_paho(paho_args("connect", port, protocol, "dev-2")).await;
        assert_eq!(res["connack"], 0, "paho v{protocol}: {res}");
    }
    let got: Vec<String> = handler
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    assert_eq!(got, ["{\"from\":\"mqttv311\"}", "{\"from\":\"mqttv5\"}"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_with_the_311_return_code_and_closed() {
    let (server, handler) = start().await;
    handler.disabled.lock().expect("lock").push("dev-3".into());
    let port = server.local_addr().port();
    let wrong_key_token = doppel_protocols::sas::make_sas_token(
        &format!("{HUB}/devices/dev-1"),
        &key_of("someone else"),
        unix_now() + 60,
        None,
    )
    .expect("token");
    // (client, token, expected 3.1.1 return code)
    let cases = [
        ("dev-1", wrong_key_token.clone(), 4u8), // bad user name or password
        ("dev-1", token("dev-2"), 4),            // a token for another device
        ("nobody", token("nobody"), 4),          // unknown device
        ("dev-3", token("dev-3"), 5),            // disabled: not authorized
    ];
    for (client, password, code) in cases {
        let mut raw = RawClient::connect(port).await;
        raw.send(&connect_packet(4, client, &username(client), &password, 30))
            .await;
        let connack = raw.read_packet(Duration::from_secs(5)).await;
        assert_eq!(connack, Some(vec![0x20, 0x02, 0x00, code]), "{client}");
        assert_eq!(
            raw.read_packet(Duration::from_secs(5)).await,
            None,
            "closed"
        );
    }
    let (ok, out) = mosquitto_pub(
        port,
        "mqttv311",
        "dev-1",
        &wrong_key_token,
        "devices/dev-1/messages/events/",
        "x",
    )
    .await;
    assert!(!ok, "mosquitto_pub must fail");
    assert!(
        out.to_lowercase().contains("bad user name or password"),
        "mosquitto_pub said: {out}"
    );
    assert!(handler.received().is_empty(), "nothing stored");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_with_the_v5_reason_code() {
    let (server, handler) = start().await;
    handler.disabled.lock().expect("lock").push("dev-3".into());
    let port = server.local_addr().port();

    let mut args = paho_args("connect", port, 5, "dev-1");
    let last = args.len() - 1;
    args[last] = token("dev-2");
    let res = run_paho(args).await;
    assert_eq!(res["connack"], 0x86, "bad user name or password: {res}");

    let res = run_paho(paho_args("connect", port, 5, "dev-3")).await;
    assert_eq!(
        res["connack"], 0x87,
        "disabled device, not authorized: {res}"
    );

    // Exact bytes: CONNACK, session present 0, reason 0x86, no properties.
    let mut raw = RawClient::connect(port).await;
    raw.send(&connect_packet(5, "dev-1", &username("dev-1"), "nope", 30))
        .await;
    assert_eq!(
        raw.read_packet(Duration::from_secs(5)).await,
        Some(vec![0x20, 0x03, 0x00, 0x86, 0x00])
    );
    assert_eq!(
        raw.read_packet(Duration::from_secs(5)).await,
        None,
        "closed"
    );

    let (ok, out) = mosquitto_pub(
        port,
        "mqttv5",
        "dev-3",
        &token("dev-3"),
        "devices/dev-3/messages/events/",
        "x",
    )
    .await;
    assert!(!ok, "mosquitto_pub must fail");
    assert!(
        out.to_lowercase().contains("not authori"),
        "mosquitto_pub said: {out}"
    );
    server.shutdown().await;
}
