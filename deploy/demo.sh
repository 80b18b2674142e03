#!/usr/bin/env bash
# Starts `doppel demo`: a node with a sample factory (DTDL models, factory → lines →
# machines twins) and simulated machines sending telemetry over MQTT, then prints how
# to watch a twin change live. REST API on http://127.0.0.1:8080, MQTT on
# 127.0.0.1:1883, state in ./doppel-demo (a second run goes on with it).
# Extra arguments go to `doppel demo` (e.g. --machines 20 --interval-ms 500).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
cargo build --release -p doppel-cli
exec target/release/doppel demo "$@"
