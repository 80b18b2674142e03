#!/usr/bin/env python3
"""An MQTT device (paho-mqtt 2.x) that authenticates with an X.509 client certificate.

Usage: x509_device.py --port P --ca SERVER_CERT --cert DEVICE_CERT --key DEVICE_KEY
                      --device ID --username U [--protocol 4|5]

Connects over TLS (no password), publishes one QoS 1 telemetry message and prints one
JSON line: {"connack": N, "puback": N} (puback absent when the connection is refused).
"""
import argparse
import json
import queue
import sys

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError:
    print(json.dumps({"error": "paho-mqtt 2.x is not installed: run deploy/setup.sh"}), flush=True)
    sys.exit(3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--protocol", type=int, choices=[4, 5], default=5)
    a = p.parse_args()
    proto = mqtt.MQTTv5 if a.protocol == 5 else mqtt.MQTTv311
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=a.device, protocol=proto)
    c.username_pw_set(a.username)
    c.tls_set(ca_certs=a.ca, certfile=a.cert, keyfile=a.key)
    events = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: events.put(("connack", rc.value))
    c.on_publish = lambda _c, _u, _mid, rc, _p: events.put(("puback", rc.value))
    c.on_disconnect = lambda _c, _u, _f, rc, _p: events.put(("disconnect", rc.value))
    c.connect("127.0.0.1", a.port, keepalive=30)
    c.loop_start()
    out = {}
    kind, rc = events.get(timeout=15)
    out["connack"] = rc if kind == "connack" else -1
    if out["connack"] == 0:
        c.publish(f"devices/{a.device}/messages/events/", json.dumps({"temp": 36.6}), qos=1)
        while True:
            kind, rc = events.get(timeout=15)
            if kind == "puback":
                out["puback"] = rc
                break
        c.disconnect()
    c.loop_stop()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
