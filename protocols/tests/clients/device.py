#!/usr/bin/env python3
"""A real MQTT device (paho-mqtt 2.x) driven by doppel-protocols' integration tests.

Usage: device.py ACTION --port P --protocol 4|5 --client-id ID [--username U --password P]
                 [--topic T --payload S | --payload-size N] [--qos Q] [--timeout S]

ACTION is one of
  connect              connect, report the CONNACK code
  publish              connect, publish once, report the PUBACK code and how long it took
  subscribe-and-wait   connect, subscribe, print SUBSCRIBED, then report messages and the
                       disconnect code once the server disconnects (or the timeout passes)

Prints one JSON object as its last line. Codes are numeric MQTT 5 reason codes as paho
reports them (paho maps 3.1.1 CONNACK return codes to their MQTT 5 equivalents).
"""
import argparse
import json
import os
import sys
import threading
import time

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError:
    print(json.dumps({"error": "paho-mqtt 2.x is not installed: run `pip install paho-mqtt`"}))
    sys.exit(3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("action", choices=["connect", "publish", "subscribe-and-wait"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--protocol", type=int, choices=[4, 5], default=4)
    p.add_argument("--client-id", required=True)
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--topic")
    p.add_argument("--payload", default="")
    p.add_argument("--payload-size", type=int, default=0)
    p.add_argument("--qos", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()

    proto = mqtt.MQTTv5 if a.protocol == 5 else mqtt.MQTTv311
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=a.client_id, protocol=proto)
    if a.username is not None:
        c.username_pw_set(a.username, a.password)
    res = {}
    connack = threading.Event()
    puback = threading.Event()
    suback = threading.Event()
    gone = threading.Event()
    started = [time.monotonic()]

    def on_connect(_c, _u, _flags, rc, _props):
        if "connack" not in res:
            res["connack"] = rc.value
        connack.set()

    def on_publish(_c, _u, _mid, rc, _props):
        res["puback"] = rc.value
        res["puback_after_s"] = time.monotonic() - started[0]
        puback.set()

    def on_subscribe(_c, _u, _mid, rcs, _props):
        res["suback"] = [r.value for r in rcs]
        suback.set()

    def on_message(_c, _u, msg):
        res.setdefault("messages", []).append([msg.topic, msg.payload.decode(errors="replace")])

    def on_disconnect(_c, _u, _flags, rc, _props):
        if "disconnect" not in res:
            res["disconnect"] = rc.value
            res["disconnect_after_s"] = time.monotonic() - started[0]
        gone.set()
        connack.set()

    c.on_connect = on_connect
    c.on_publish = on_publish
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.on_disconnect = on_disconnect
    c.connect("127.0.0.1", a.port, keepalive=60)
    c.loop_start()
    connack.wait(a.timeout)
    if res.get("connack") == 0:
        if a.action == "publish":
            payload = a.payload if a.payload_size == 0 else "x" * a.payload_size
            started[0] = time.monotonic()
            c.publish(a.topic, payload, qos=a.qos)
            deadline = time.monotonic() + a.timeout
            while time.monotonic() < deadline and not puback.is_set() and not gone.is_set():
                time.sleep(0.01)
        elif a.action == "subscribe-and-wait":
            c.subscribe(a.topic, qos=a.qos)
            suback.wait(a.timeout)
            print("SUBSCRIBED", flush=True)
            started[0] = time.monotonic()
            gone.wait(a.timeout)
    print(json.dumps(res), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
