#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts or stops a 3-master Redis Cluster on loopback for the Cluster tests (a
# ctest fixture; a test that kills a master starts a private one the same way).
#   redis_cluster_fixture.sh start <dir> [redis-server] [redis-cli]
#       writes <dir>/ports ("p1 p2 p3") once every node reports cluster_state:ok
#   redis_cluster_fixture.sh stop <dir>
# No persistence, no replicas, cluster-require-full-coverage no (a dead master
# stops only its own slots), node timeout 1 s. Ports p and p + 10000 (the cluster
# bus) are chosen free in [20000, 50000]; state stays in <dir>.
set -euo pipefail
action=${1:?start or stop}
dir=${2:?state directory}
server=${3:-redis-server}
cli=${4:-redis-cli}

# shellcheck source=tests/support/redis_fixture_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/redis_fixture_lib.sh"

stop() {
  rm -f "$dir/ports"
  stop_servers "$dir"/node-*.pid
}

free() {
  local p
  for p in "$@"; do
    listening "$p" && return 1
    listening $((p + 10000)) && return 1
  done
  return 0
}

start_node() { # port
  local port=$1
  rm -f "$dir/nodes-$port.conf"
  "$server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
    --cluster-node-timeout 1000 --cluster-require-full-coverage no \
    --daemonize yes --pidfile "$dir/node-$port.pid" --dir "$dir" \
    --logfile "$dir/node-$port.log"
}

case "$action" in
start)
  mkdir -p "$dir"
  stop
  for _ in $(seq 1 20); do
    base=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
    ports=("$base" $((base + 1)) $((base + 2)))
    free "${ports[@]}" || continue
    ok=1
    for p in "${ports[@]}"; do start_node "$p" || ok=0; done
    for p in "${ports[@]}"; do
      for _ in $(seq 1 100); do
        "$cli" -p "$p" ping 2>/dev/null | grep -q PONG && break
        sleep 0.02
      done
      "$cli" -p "$p" ping 2>/dev/null | grep -q PONG || ok=0
    done
    if [ $ok = 1 ] && "$cli" --cluster create "${ports[@]/#/127.0.0.1:}" \
      --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1; then
      for _ in $(seq 1 250); do
        ready=1
        for p in "${ports[@]}"; do
          "$cli" -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ready=0
        done
        if [ $ready = 1 ]; then
          echo "${ports[*]}" >"$dir/ports"
          echo "redis cluster ready on 127.0.0.1:${ports[*]}"
          exit 0
        fi
        sleep 0.02
      done
    fi
    stop
  done
  echo "could not start a redis cluster; see $dir" >&2
  exit 1
  ;;
stop)
  stop
  ;;
*)
  echo "usage: $0 start|stop <dir> [redis-server] [redis-cli]" >&2
  exit 2
  ;;
esac
