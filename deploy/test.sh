#!/usr/bin/env bash
# Runs doppel's whole test suite on a fresh machine: installs what is missing, then
# unit tests, DTDL v3 conformance, and the integration tests in tests/ (real
# processes, real RocksDB, kill -9 fault injection, crashes at failpoints).
#
# The binary and the tests are built with the same features, so nothing compiles
# twice: the failpoints (the `fail` crate) are compiled in for the tests only; the
# start commands (deploy/serve.sh, `cargo build` without features) ship none.
# DOPPEL_REQUIRE_FAILPOINTS makes a failpoint test fail, not skip, on a binary
# without them.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
features=doppel-cluster/failpoints,doppel-node/failpoints
cargo build --workspace --bins --features "$features"
DOPPEL_REQUIRE_FAILPOINTS=1 cargo test --workspace --no-fail-fast --features "$features" "$@"
