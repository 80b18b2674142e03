#!/usr/bin/env bash
# Runs doppel's whole test suite on a fresh machine: installs what is missing, then
# unit tests, DTDL v3 conformance, and the integration tests in tests/ (real
# processes, real RocksDB, kill -9 fault injection).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
