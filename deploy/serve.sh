#!/usr/bin/env bash
# Starts one doppel node on embedded defaults: REST API on http://127.0.0.1:8080,
# state in ./doppel-data, admin token in ./doppel-data/admin.token.
# Extra arguments go to `doppel serve` (e.g. --http 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
cargo build --release -p doppel-cli
exec target/release/doppel serve "$@"
