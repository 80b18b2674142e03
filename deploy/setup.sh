#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test doppel. Idempotent.
#   libclang-dev  bindgen (RocksDB's Rust bindings) needs it even for a bundled RocksDB
#   mosquitto     the real MQTT broker and clients the device-edge tests use
#   paho-mqtt     (PyPI) a real MQTT 3.1.1/5 client for the device-edge tests
#   azure-iot-device (PyPI) Microsoft's device SDK, to show IoT Hub devices work
#                 unchanged; in its own virtualenv, because it pins paho-mqtt < 2
set -euo pipefail
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! python3 -c "import paho.mqtt" >/dev/null 2>&1; then
  echo "setup: installing paho-mqtt (pip)" >&2
  python3 -m pip install -q "paho-mqtt>=2,<3"
fi
AZURE_VENV="${DOPPEL_AZURE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/doppel/azure-sdk-venv}"
if ! "$AZURE_VENV/bin/python" -c "import azure.iot.device" >/dev/null 2>&1; then
  echo "setup: installing azure-iot-device in $AZURE_VENV (pip)" >&2
  python3 -m venv "$AZURE_VENV"
  "$AZURE_VENV/bin/python" -m pip install -q "azure-iot-device>=2.14,<3"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
