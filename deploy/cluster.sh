#!/usr/bin/env bash
# Starts a local three-node doppel cluster for development, in one command:
#   deploy/cluster.sh            # build (release), make certificates, start nodes 1-3
#   deploy/cluster.sh status     # `doppel cluster status` through node 1
#   deploy/cluster.sh stop       # stop the three nodes (their data stays)
#   deploy/cluster.sh clean      # stop and delete ./doppel-cluster
#
# Node N: REST http://127.0.0.1:808N, MQTT 127.0.0.1:188N, QUIC 127.0.0.1:700N,
# data ./doppel-cluster/nN, log ./doppel-cluster/nN.log. Node 1 forms the cluster and
# writes the admin token to ./doppel-cluster/n1/admin.token; nodes 2 and 3 join it.
# Any node answers any request (it is forwarded to the shard's leader).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DOPPEL_CLUSTER_DIR:-./doppel-cluster}
BIN=${DOPPEL_BIN:-target/release/doppel}

stop() {
  for n in 1 2 3; do
    if [[ -f "$DIR/n$n.pid" ]] && kill -0 "$(cat "$DIR/n$n.pid")" 2>/dev/null; then
      pid=$(cat "$DIR/n$n.pid")
      kill "$pid"
      # A clean stop flushes storage; wait for it (up to 20 s) so a restart finds
      # the ports free.
      for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "stopped node $n"
    fi
    rm -f "$DIR/n$n.pid"
  done
}

case "${1:-start}" in
  stop) stop; exit 0 ;;
  clean) stop; rm -rf "$DIR"; echo "removed $DIR"; exit 0 ;;
  status)
    exec "$BIN" cluster status --url http://127.0.0.1:8081 --token "$(cat "$DIR/n1/admin.token")" "${@:2}" ;;
  start) ;;
  *) echo "usage: $0 [start|status|stop|clean]" >&2; exit 2 ;;
esac

if [[ -z ${DOPPEL_BIN:-} ]]; then
  deploy/setup.sh
  cargo build --release -p doppel-cli
fi
mkdir -p "$DIR"
if [[ ! -f "$DIR/certs/ca.pem" ]]; then
  "$BIN" cluster init --dir "$DIR/certs" --nodes 3
fi
for n in 1 2 3; do
  if [[ -f "$DIR/n$n.pid" ]] && kill -0 "$(cat "$DIR/n$n.pid")" 2>/dev/null; then
    echo "node $n already runs (pid $(cat "$DIR/n$n.pid"))"; continue
  fi
  join=()
  [[ $n -gt 1 ]] && join=(--join 127.0.0.1:7001)
  nohup "$BIN" serve --node-id "$n" --data-dir "$DIR/n$n" \
    --http "127.0.0.1:808$n" --mqtt "127.0.0.1:188$n" \
    --cluster-addr "127.0.0.1:700$n" --cluster-certs "$DIR/certs" "${join[@]}" \
    >"$DIR/n$n.log" 2>&1 &
  echo $! >"$DIR/n$n.pid"
  # Wait for the node to serve (a joining node serves once it replicates every group).
  for _ in $(seq 1 600); do
    grep -q " serving " "$DIR/n$n.log" 2>/dev/null && break
    if ! kill -0 "$(cat "$DIR/n$n.pid")" 2>/dev/null; then
      echo "node $n exited; its log:" >&2; cat "$DIR/n$n.log" >&2; exit 1
    fi
    sleep 0.1
  done
  grep " serving " "$DIR/n$n.log" || { echo "node $n did not start in 60 s; see $DIR/n$n.log" >&2; exit 1; }
done
echo
"$BIN" cluster status --url http://127.0.0.1:8081 --token "$(cat "$DIR/n1/admin.token")" || true
echo
echo "token: export DOPPEL_TOKEN=\$(cat $DIR/n1/admin.token)"
echo "try:   curl -H \"Authorization: Bearer \$DOPPEL_TOKEN\" http://127.0.0.1:8083/models   (any node)"
echo "stop:  $0 stop"
