#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts or stops a master, one replica and three sentinels on loopback for the
# Sentinel tests (a ctest fixture).
#   redis_sentinel_fixture.sh start <dir> [redis-server] [redis-cli]
#       writes <dir>/ports ("master replica s1 s2 s3") once the sentinels know the
#       replica and each other
#   redis_sentinel_fixture.sh revive <dir> <port> <master port>
#       restarts the (killed) server on <port> as a replica of <master port>
#   redis_sentinel_fixture.sh stop <dir>
# The master is "keel-master", quorum 2, down-after-milliseconds 500,
# failover-timeout 3000. No persistence; free ports in [20000, 60000].
set -euo pipefail
action=${1:?start or stop}
dir=${2:?state directory}
server=${3:-redis-server}
cli=${4:-redis-cli}

# shellcheck source=tests/support/redis_fixture_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/redis_fixture_lib.sh"

stop() {
  rm -f "$dir/ports"
  stop_servers "$dir"/*.pid
}

answers() { "$cli" -p "$1" ping 2>/dev/null | grep -q PONG; }

wait_for() { # command...
  for _ in $(seq 1 250); do
    "$@" && return 0
    sleep 0.02
  done
  return 1
}

start_all() { # base port
  local base=$1 m=$1 r=$(($1 + 1)) i
  for p in $m $r; do
    "$server" --port "$p" --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize yes --pidfile "$dir/redis-$p.pid" --dir "$dir" \
      --logfile "$dir/redis-$p.log" || return 1
  done
  wait_for answers $m && wait_for answers $r || return 1
  "$cli" -p $r replicaof 127.0.0.1 $m >/dev/null || return 1
  for i in 2 3 4; do
    local s=$((base + i))
    cat >"$dir/sentinel-$s.conf" <<CONF
port $s
bind 127.0.0.1
daemonize yes
pidfile $dir/sentinel-$s.pid
logfile $dir/sentinel-$s.log
dir $dir
sentinel monitor keel-master 127.0.0.1 $m 2
sentinel down-after-milliseconds keel-master 500
sentinel failover-timeout keel-master 3000
sentinel parallel-syncs keel-master 1
CONF
    "$server" "$dir/sentinel-$s.conf" --sentinel || return 1
  done
  for i in 2 3 4; do
    local s=$((base + i))
    wait_for answers $s || return 1
    # Each sentinel knows the replica and the two other sentinels.
    wait_for sentinel_ready $s || return 1
  done
  echo "$m $r $((base + 2)) $((base + 3)) $((base + 4))" >"$dir/ports"
}

sentinel_ready() {
  local out
  out=$("$cli" -p "$1" sentinel master keel-master 2>/dev/null | tr '\n' ' ')
  [[ "$out" == *"num-slaves 1 "* && "$out" == *"num-other-sentinels 2 "* ]]
}

case "$action" in
start)
  mkdir -p "$dir"
  stop
  for _ in $(seq 1 20); do
    base=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    busy=0
    for i in 0 1 2 3 4; do listening $((base + i)) && busy=1; done
    [ $busy = 1 ] && continue
    if start_all "$base"; then
      echo "redis sentinel setup ready on 127.0.0.1: $(cat "$dir/ports")"
      exit 0
    fi
    stop
  done
  echo "could not start the sentinel setup; see $dir" >&2
  exit 1
  ;;
revive)
  port=${3:?port}
  master=${4:?master port}
  server=${5:-redis-server}
  cli=${6:-redis-cli}
  "$server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --replicaof 127.0.0.1 "$master" --daemonize yes --pidfile "$dir/redis-$port.pid" \
    --dir "$dir" --logfile "$dir/redis-$port.log"
  wait_for answers "$port"
  ;;
stop)
  stop
  ;;
*)
  echo "usage: $0 start|revive|stop <dir> ..." >&2
  exit 2
  ;;
esac
