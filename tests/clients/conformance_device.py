#!/usr/bin/env python3
"""One device script (paho-mqtt 2.x, MQTT 5) run against both ways a device reaches doppel.

Usage: conformance_device.py --transport embedded|broker --port P --device ID
                             [--username U --password SAS] [--timeout S]

  embedded  doppel's own MQTT server: IoT Hub user name and SAS token, IoT Hub topics
            ($iothub/twin/PATCH/properties/reported/?$rid=, desired on
            $iothub/twin/PATCH/properties/desired/?$version=N)
  broker    an external broker doppel is attached to: devices/{id}/twin/reported,
            desired on devices/{id}/twin/desired

The script is the same for both; a small transport object says which topics to use and
what each transport can tell the device. One JSON record per line, in this order:
  {"step": "ready"}                          connected and subscribed to desired state
  {"step": "telemetry", ...outcome}          {"temp": 21.5}
  {"step": "not_json", ...outcome}           a payload that is not JSON
  {"step": "breaks_model", ...outcome}       {"nope": 1}: no such telemetry in the model
  {"step": "telemetry_after", ...outcome}    {"temp": 22.5}: the connection survived
  {"step": "reported", ...outcome}           {"serial": "S-9"}
  -- it waits for a desired update (the test sets one over REST) --
  {"step": "desired", "doc": {...}, "topic": T}
  {"step": "acked", ...outcome}              the Plug and Play ack of that update
An outcome is {"rc": PUBACK reason code, "reason": PUBACK reason string or null} and, on
the embedded transport for reported properties, "status" (the twin response status).
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


class Embedded:
    """doppel's own MQTT server, with IoT Hub's topics."""

    def __init__(self, device):
        self.device = device
        self.rid = 0

    def subscriptions(self):
        return [("$iothub/twin/res/#", 1), ("$iothub/twin/PATCH/properties/desired/#", 1)]

    def telemetry_topic(self):
        return f"devices/{self.device}/messages/events/"

    def reported_topic(self):
        self.rid += 1
        return f"$iothub/twin/PATCH/properties/reported/?$rid={self.rid}"

    def is_desired(self, topic):
        return topic.startswith("$iothub/twin/PATCH/properties/desired/")

    def reported_answer(self, device):
        """IoT Hub answers a reported patch on the twin response topic."""
        t, _ = device.wait("message", lambda v: v[0].startswith("$iothub/twin/res/") and f"$rid={self.rid}" in v[0])
        return {"status": int(t.split("/")[3])}


class Broker:
    """An external broker: the device id is in every topic."""

    def __init__(self, device):
        self.device = device

    def subscriptions(self):
        return [(f"devices/{self.device}/twin/desired", 1)]

    def telemetry_topic(self):
        return f"devices/{self.device}/messages/events/"

    def reported_topic(self):
        return f"devices/{self.device}/twin/reported"

    def is_desired(self, topic):
        return topic == f"devices/{self.device}/twin/desired"

    def reported_answer(self, _device):
        return {}


class Device:
    def __init__(self, a):
        self.timeout = a.timeout
        self.events = queue.Queue()
        self.backlog = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=a.device, protocol=mqtt.MQTTv5)
        if a.username:
            self.c.username_pw_set(a.username, a.password)
        ev = self.events
        self.c.on_connect = lambda _c, _u, _f, rc, _p: ev.put(("connack", rc.value))
        self.c.on_subscribe = lambda _c, _u, mid, rcs, _p: ev.put(("suback", [r.value for r in rcs]))
        self.c.on_publish = lambda _c, _u, mid, rc, p: ev.put(
            ("puback", (mid, rc.value, getattr(p, "ReasonString", None) if p else None)))
        self.c.on_message = lambda _c, _u, msg: ev.put(("message", (msg.topic, msg.payload)))
        self.c.on_disconnect = lambda _c, _u, _f, rc, _p: ev.put(("disconnect", rc.value))

    def wait(self, kind, pred=lambda v: True):
        """The first event of `kind` that `pred` accepts; others are kept for later
        waits (a twin response may come before its PUBACK)."""
        for i, (k, v) in enumerate(self.backlog):
            if k == kind and pred(v):
                del self.backlog[i]
                return v
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                say(error=f"timed out waiting for {kind}")
                sys.exit(2)
            try:
                k, v = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if k == kind and pred(v):
                return v
            if k == "disconnect" and kind != "disconnect":
                say(error=f"disconnected ({v}) while waiting for {kind}")
                sys.exit(2)
            self.backlog.append((k, v))

    def publish(self, topic, payload):
        """Publishes at QoS 1 and waits for the PUBACK: its reason code and string."""
        info = self.c.publish(topic, payload, qos=1)
        _, rc, reason = self.wait("puback", lambda v: v[0] == info.mid)
        return {"rc": rc, "reason": reason}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--transport", choices=["embedded", "broker"], required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--timeout", type=float, default=20.0)
    a = p.parse_args()
    transport = (Embedded if a.transport == "embedded" else Broker)(a.device)

    d = Device(a)
    d.c.connect("127.0.0.1", a.port, keepalive=30)
    d.c.loop_start()
    rc = d.wait("connack")
    if rc != 0:
        say(step="refused", rc=rc)
        return
    d.c.subscribe(transport.subscriptions())
    d.wait("suback")
    say(step="ready")

    telemetry = transport.telemetry_topic()
    say(step="telemetry", **d.publish(telemetry, json.dumps({"temp": 21.5})))
    say(step="not_json", **d.publish(telemetry, b"{temp: 22"))
    say(step="breaks_model", **d.publish(telemetry, json.dumps({"nope": 1})))
    say(step="telemetry_after", **d.publish(telemetry, json.dumps({"temp": 22.5})))

    def report(body):
        outcome = d.publish(transport.reported_topic(), json.dumps(body))
        outcome.update(transport.reported_answer(d))
        return outcome

    say(step="reported", **report({"serial": "S-9"}))

    t, payload = d.wait("message", lambda v: transport.is_desired(v[0]))
    desired = json.loads(payload)
    say(step="desired", doc=desired, topic=t)
    ack = {"setPoint": {"value": desired["setPoint"], "ac": 200, "av": desired["$version"], "ad": "applied"}}
    say(step="acked", **report(ack))
    d.c.disconnect()
    d.c.loop_stop()


if __name__ == "__main__":
    main()
