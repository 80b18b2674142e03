//! The PUBACK of a QoS 1 publish is written only after the handler's publish
//! future completed (in doppel: after the change is durable), on 3.1.1 and 5.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puback_is_sent_only_after_the_slow_handler_completes() {
    let (server, handler) = start().await;
    let port = server.local_addr().port();
    let delay = Duration::from_millis(800);
    handler.set_delay(delay);
    for protocol in [4u8, 5] {
        let before = handler.received().len();
        let mut args = paho_args("publish", port, protocol, "dev-1");
        args.extend([
            "--topic".into(),
            "devices/dev-1/messages/events/".into(),
            "--payload".into(),
            format!("slow v{protocol}"),
        ]);
        let res = run_paho(args).await;
        assert_eq!(res["puback"], 0, "v{protocol}: {res}");
        let waited = res["puback_after_s"].as_f64().expect("timing");
        assert!(
            waited >= delay.as_secs_f64() * 0.95,
            "v{protocol}: PUBACK after {waited:.3}s, before the {delay:?} handler finished"
        );
        // The handler had recorded the message by the time the device saw the ack.
        assert_eq!(handler.received().len(), before + 1, "v{protocol}");
    }
    server.shutdown().await;
}
