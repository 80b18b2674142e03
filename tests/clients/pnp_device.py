#!/usr/bin/env python3
"""A real IoT Plug and Play device (paho-mqtt 2.x) for doppel's device-edge tests.

Usage: pnp_device.py --port P --protocol 4|5 --device ID --username U --password SAS [--timeout S]

It speaks Azure IoT Hub's MQTT conventions against doppel and prints, one per line,
JSON progress records the Rust test reads as they come:
  {"step": "ready"}                     connected and subscribed
  {"step": "telemetry", "rc": N}        PUBACK reason of a valid telemetry message
  {"step": "bad_telemetry", "rc": N}    PUBACK reason of one that breaks the model
  {"step": "reported", "status": S}     twin response status of a reported-property patch
  {"step": "twin", "doc": {...}}        the device twin from $iothub/twin/GET
  -- then it waits for a desired-property update (the test sets one over REST) --
  {"step": "desired", "doc": {...}}     the desired update received
  {"step": "acked", "status": S}        status of the acknowledgement it sent back
  -- then it waits to be disconnected (the test disables the device) --
  {"step": "disconnected", "rc": N, "after_s": T}
"""
import argparse
import json
import queue
import sys
import time

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError:
    print(json.dumps({"error": "paho-mqtt 2.x is not installed: run `pip install paho-mqtt`"}), flush=True)
    sys.exit(3)


def say(**rec):
    print(json.dumps(rec), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--protocol", type=int, choices=[4, 5], default=5)
    p.add_argument("--device", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--burst", type=int, default=0,
                   help="after bad_telemetry, publish this many telemetry messages without "
                        "waiting for their PUBACKs ({'temp': i}; the 8th is invalid) and report "
                        "every reason code, in order (step 'burst')")
    a = p.parse_args()

    proto = mqtt.MQTTv5 if a.protocol == 5 else mqtt.MQTTv311
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=a.device, protocol=proto)
    c.username_pw_set(a.username, a.password)
    events = queue.Queue()

    c.on_connect = lambda _c, _u, _f, rc, _p: events.put(("connack", rc.value))
    c.on_subscribe = lambda _c, _u, mid, rcs, _p: events.put(("suback", [r.value for r in rcs]))
    c.on_publish = lambda _c, _u, mid, rc, _p: events.put(("puback", (mid, rc.value)))
    def on_message(client, _u, msg):
        # Direct methods are answered at once, whatever the main flow is doing:
        # "reboot" answers "rebooting in N s"; "hang" is never answered.
        if msg.topic.startswith("$iothub/methods/POST/"):
            name = msg.topic.split("/")[3]
            rid = msg.topic.split("$rid=")[1]
            if name == "reboot":
                delay = json.loads(msg.payload)
                client.publish(f"$iothub/methods/res/200/?$rid={rid}", json.dumps(f"rebooting in {delay} s"), qos=0)
            return
        events.put(("message", (msg.topic, msg.payload)))

    c.on_message = on_message
    c.on_disconnect = lambda _c, _u, _f, rc, _p: events.put(("disconnect", rc.value))

    def wait(kind, pred=lambda v: True):
        deadline = time.monotonic() + a.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                say(error=f"timed out waiting for {kind}")
                sys.exit(2)
            try:
                k, v = events.get(timeout=left)
            except queue.Empty:
                continue
            if k == kind and pred(v):
                return v
            if k == "disconnect" and kind != "disconnect":
                say(error=f"disconnected ({v}) while waiting for {kind}")
                sys.exit(2)

    if a.burst:
        c.max_inflight_messages_set(a.burst)
    c.connect("127.0.0.1", a.port, keepalive=30)
    c.loop_start()
    rc = wait("connack")
    if rc != 0:
        say(step="refused", rc=rc)
        return
    c.subscribe([("$iothub/twin/res/#", 1), ("$iothub/twin/PATCH/properties/desired/#", 1), ("$iothub/methods/POST/#", 1)])
    wait("suback")
    say(step="ready")

    telemetry = f"devices/{a.device}/messages/events/"
    info = c.publish(telemetry, json.dumps({"temp": 21.5}), qos=1)
    say(step="telemetry", rc=wait("puback", lambda v: v[0] == info.mid)[1])
    info = c.publish(telemetry, json.dumps({"nope": 1}), qos=1)
    say(step="bad_telemetry", rc=wait("puback", lambda v: v[0] == info.mid)[1])

    if a.burst:
        mids = []
        for i in range(a.burst):
            body = {"nope": i} if i == 7 else {"temp": i}
            mids.append(c.publish(telemetry, json.dumps(body), qos=1).mid)
        acked = {}
        while len(acked) < len(mids):
            mid, rc = wait("puback", lambda v: v[0] in mids and v[0] not in acked)
            acked[mid] = rc
        say(step="burst", rcs=[acked[m] for m in mids])

    def twin_request(topic, body, rid):
        c.publish(topic, body, qos=1)
        t, payload = wait("message", lambda v: v[0].startswith("$iothub/twin/res/") and f"$rid={rid}" in v[0])
        status = int(t.split("/")[3])
        return status, payload

    status, _ = twin_request("$iothub/twin/PATCH/properties/reported/?$rid=1", json.dumps({"serial": "S-9"}), 1)
    say(step="reported", status=status)
    status, payload = twin_request("$iothub/twin/GET/?$rid=2", b"", 2)
    say(step="twin", status=status, doc=json.loads(payload))

    t, payload = wait("message", lambda v: v[0].startswith("$iothub/twin/PATCH/properties/desired/"))
    desired = json.loads(payload)
    say(step="desired", doc=desired, topic=t)
    ack = {"setPoint": {"value": desired["setPoint"], "ac": 200, "av": desired["$version"], "ad": "applied"}}
    status, _ = twin_request("$iothub/twin/PATCH/properties/reported/?$rid=3", json.dumps(ack), 3)
    say(step="acked", status=status)

    started = time.monotonic()
    rc = wait("disconnect")
    say(step="disconnected", rc=rc, after_s=round(time.monotonic() - started, 3))
    c.loop_stop()


if __name__ == "__main__":
    main()
