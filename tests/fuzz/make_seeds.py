#!/usr/bin/env python3
"""Regenerates seeds/: a few small inputs per fuzz target (see README.md)."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    os.makedirs(os.path.join(HERE, "seeds", target), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(HERE, "seeds", target, name), mode) as f:
        f.write(data)


# ---- mqtt_decode: byte 0 picks the protocol, byte 1 the cut, then the stream ----


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return len(x).to_bytes(2, "big") + x


def pkt(byte1, body):
    return bytes([byte1]) + varint(len(body)) + body


def connect(level, client, user, password, props=b""):
    body = s("MQTT") + bytes([level, 0xC2]) + (60).to_bytes(2, "big")
    if level == 5:
        body += varint(len(props)) + props
    return pkt(0x10, body + s(client) + s(user) + s(password))


def publish(level, topic, payload, qos=1, pkid=7, props=b"", retain=False):
    body = s(topic) + (pkid.to_bytes(2, "big") if qos else b"")
    if level == 5:
        body += varint(len(props)) + props
    return pkt(0x30 | (qos << 1) | (1 if retain else 0), body + payload)


def subscribe(level, topic_filter, opts=1, pkid=9):
    props = b"\x00" if level == 5 else b""
    return pkt(0x82, pkid.to_bytes(2, "big") + props + s(topic_filter) + bytes([opts]))


def unsubscribe(level, topic_filter, pkid=10):
    props = b"\x00" if level == 5 else b""
    return pkt(0xA2, pkid.to_bytes(2, "big") + props + s(topic_filter))


PUBACK = pkt(0x40, (7).to_bytes(2, "big"))
PINGREQ = pkt(0xC0, b"")
DISCONNECT = pkt(0xE0, b"")
USER = "doppel.test/dev-1/?api-version=2021-04-12"
EVENTS = "devices/dev-1/messages/events/"
MQTT = {
    "v311_session": bytes([0, 0])
    + connect(4, "dev-1", USER, "SharedAccessSignature sr=x&sig=y&se=1")
    + publish(4, EVENTS, b'{"temp":21.5}')
    + subscribe(4, "devices/dev-1/messages/devicebound/#")
    + PUBACK
    + unsubscribe(4, "$iothub/twin/res/#")
    + PINGREQ
    + DISCONNECT,
    "v5_session": bytes([0, 7])
    + connect(5, "dev-1", USER, "pw", props=b"\x27" + (4096).to_bytes(4, "big"))
    + publish(5, EVENTS, b"hello", props=b"\x23\x00\x01")
    + publish(5, "$iothub/twin/GET/?$rid=1", b"", qos=0)
    + subscribe(5, "$iothub/twin/res/#", opts=0x01)
    + PUBACK
    + unsubscribe(5, "x")
    + PINGREQ
    + DISCONNECT,
    "v311_after_connect": bytes([1, 3])
    + publish(4, EVENTS, b"x" * 40, qos=0, retain=True)
    + publish(4, "a/b", b"", qos=1, pkid=65535)
    + PINGREQ,
    "v5_after_connect": bytes([2, 5])
    + publish(5, EVENTS, b'{"a":1}', props=b"\x01\x01\x03\x00\x10application/json")
    + pkt(0xE0, b"\x00\x00")
    + pkt(0xF0, b"\x00"),
    "mqtt31_connect": bytes([0, 0]) + pkt(0x10, s("MQIsdp") + bytes([3, 2, 0, 60]) + s("x")),
}
for name, data in MQTT.items():
    write("mqtt_decode", name, data)


# ---- dtdl_parse: JSON, a top-level array being a batch ----


def iface(id, contents, **extra):
    doc = {"@context": "dtmi:dtdl:context;3", "@id": id, "@type": "Interface", "contents": contents}
    doc.update(extra)
    return doc


MOTOR = iface("dtmi:test:Motor;1", [
    {"@type": "Property", "name": "rpm", "schema": "integer"},
    {"@type": "Property", "name": "limit", "schema": "integer", "writable": True},
    {"@type": "Telemetry", "name": "vibration", "schema": "double"},
])
LINE = iface("dtmi:test:Line;1", [{"@type": "Property", "name": "title", "schema": "string"}])
ASSEMBLY_LINE = iface(
    "dtmi:test:AssemblyLine;1",
    [{"@type": "Property", "name": "stations", "schema": "integer"}],
    extends="dtmi:test:Line;1",
)
DEVICE = iface("dtmi:test:Device;1", [
    {"@type": "Property", "name": "serial", "schema": "string"},
    {"@type": "Property", "name": "setPoint", "schema": "double", "writable": True},
    {"@type": "Property", "name": "mode", "schema": {
        "@type": "Enum", "valueSchema": "string", "enumValues": [
            {"name": "auto", "enumValue": "auto"}, {"name": "manual", "enumValue": "manual"}]}},
    {"@type": "Telemetry", "name": "temp", "schema": "double"},
    {"@type": "Command", "name": "reboot", "request": {"name": "delay", "schema": "integer"},
     "response": {"name": "ok", "schema": "boolean"}},
    {"@type": "Relationship", "name": "feeds", "target": "dtmi:test:Line;1", "maxMultiplicity": 2,
     "properties": [{"@type": "Property", "name": "since", "schema": "dateTime"}]},
    {"@type": "Relationship", "name": "near"},
    {"@type": "Component", "name": "motor", "schema": "dtmi:test:Motor;1"},
])
COMPLEX = iface(
    "dtmi:ex:Complex;1",
    [
        {"@type": "Property", "name": "pos", "schema": {"@type": "Object", "fields": [
            {"name": "x", "schema": "double"}, {"name": "y", "schema": "double"}]}},
        {"@type": "Property", "name": "tags", "schema": {
            "@type": "Map", "mapKey": {"name": "k", "schema": "string"},
            "mapValue": {"name": "v", "schema": "integer"}}},
        {"@type": "Telemetry", "name": "samples", "schema": {"@type": "Array", "elementSchema": "float"}},
        {"@type": ["Telemetry", "Temperature"], "name": "t", "schema": "double", "unit": "degreeCelsius"},
    ],
    **{
        "@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"],
        "schemas": [{"@id": "dtmi:ex:Pt;1", "@type": "Object", "fields": [{"name": "a", "schema": "string"}]}],
    },
)
DTDL = {
    "plant": [MOTOR, LINE, ASSEMBLY_LINE, DEVICE],
    "complex_with_values": [COMPLEX, {"x": {"pos": {"x": 1.5, "y": 2}, "tags": {"a": 1}, "samples": [1.0, 2.5]}}],
    "dtdl_v2": iface("dtmi:ex:Old;1", [{"@type": "Property", "name": "p", "schema": "long"}],
                     **{"@context": "dtmi:dtdl:context;2"}),
    "device_alone": DEVICE,
}
for name, doc in DTDL.items():
    write("dtdl_parse", f"{name}.json", json.dumps(doc, indent=1))


# ---- json_patch: a JSON Patch body ----

PATCHES = {
    "add_replace": [{"op": "add", "path": "/mode", "value": "manual"},
                    {"op": "replace", "path": "/serial", "value": "S-2"},
                    {"op": "add", "path": "/setPoint", "value": 20.0}],
    "remove": [{"op": "remove", "path": "/serial"}],
    "component": [{"op": "add", "path": "/motor/limit", "value": 5},
                  {"op": "replace", "path": "/motor/rpm", "value": 100}],
    "map_entry": [{"op": "add", "path": "/tags/b", "value": 2}, {"op": "remove", "path": "/tags/a"}],
    "move_copy_test": [{"op": "test", "path": "/serial", "value": "S-1"},
                       {"op": "copy", "from": "/serial", "path": "/motor/x"},
                       {"op": "move", "from": "/tags", "path": "/tags/a"}],
    "system": [{"op": "replace", "path": "/$metadata/$model", "value": "dtmi:x;1"}],
}
for name, patch in PATCHES.items():
    write("json_patch", f"{name}.json", json.dumps(patch))
