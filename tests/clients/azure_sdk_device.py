#!/usr/bin/env python3
"""A device written for Azure IoT Hub, unchanged: Microsoft's own Python device SDK
(`azure-iot-device`) connecting to doppel with a device connection string.

Usage: azure_sdk_device.py --connection-string "HostName=localhost;DeviceId=…;SharedAccessKey=…"
                           --ca-cert PEM [--timeout S]

The SDK always uses MQTT over TLS on port 8883. Prints one JSON record per line:
  {"step": "connected"} / {"step": "telemetry"} / {"step": "reported"}
  {"step": "twin", "doc": {...}}      the device twin from get_twin()
  {"step": "ready"}                   -- the test now sets a desired property and calls a method --
  {"step": "method", "name": N, "payload": P}   a direct method it answered (200)
  {"step": "desired", "doc": {...}}   the desired-property patch it received
  {"step": "acked"}                   its Plug and Play acknowledgement was accepted
  {"step": "done"}
"""
import argparse
import json
import queue
import sys

try:
    from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse
except ImportError:
    print(json.dumps({"error": "azure-iot-device is not installed: run deploy/setup.sh (pip install azure-iot-device)"}), flush=True)
    sys.exit(3)


def say(**rec):
    print(json.dumps(rec), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connection-string", required=True)
    p.add_argument("--ca-cert", required=True)
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    with open(a.ca_cert) as f:
        ca = f.read()
    client = IoTHubDeviceClient.create_from_connection_string(
        a.connection_string, server_verification_cert=ca, connection_retry=False
    )
    desired = queue.Queue()
    methods = queue.Queue()

    def on_method(request):
        if request.name == "reboot":
            client.send_method_response(
                MethodResponse.create_from_method_request(request, 200, f"rebooting in {request.payload} s")
            )
        else:
            client.send_method_response(MethodResponse.create_from_method_request(request, 404, "unknown"))
        methods.put((request.name, request.payload))

    client.on_method_request_received = on_method
    client.on_twin_desired_properties_patch_received = desired.put

    client.connect()
    say(step="connected")
    msg = Message(json.dumps({"temp": 21.5}), content_encoding="utf-8", content_type="application/json")
    client.send_message(msg)
    say(step="telemetry")
    client.patch_twin_reported_properties({"serial": "AZ-1"})
    say(step="reported")
    say(step="twin", doc=client.get_twin())
    say(step="ready")

    name, payload = methods.get(timeout=a.timeout)
    say(step="method", name=name, payload=payload)
    patch = desired.get(timeout=a.timeout)
    say(step="desired", doc=patch)
    client.patch_twin_reported_properties(
        {"setPoint": {"value": patch["setPoint"], "ac": 200, "av": patch["$version"], "ad": "applied"}}
    )
    say(step="acked")
    client.shutdown()
    say(step="done")


if __name__ == "__main__":
    main()
