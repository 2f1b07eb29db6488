#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts or stops the redis-server the real-Redis tests share (a ctest fixture).
#   redis_fixture.sh start <dir> [redis-server]   writes <dir>/port once the server answers
#   redis_fixture.sh stop <dir>                    stops it and waits until it has exited
# The server listens on 127.0.0.1 only, on a free port, without persistence, and
# keeps its pid, log and port in <dir> (inside the build tree), so parallel build
# trees and parallel ctest runs never share a server.
set -euo pipefail
action=${1:?start or stop}
dir=${2:?state directory}
server=${3:-redis-server}

# shellcheck source=tests/support/redis_fixture_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/redis_fixture_lib.sh"

stop() {
  [ -f "$dir/redis.pid" ] || return 0
  rm -f "$dir/port"
  stop_servers "$dir/redis.pid"
}

# Answers whether the server on port $1 is ours: its pid file names a live process
# whose INFO reports the same process id.
ours() {
  local port=$1 pid line
  [ -f "$dir/redis.pid" ] || return 1
  pid=$(cat "$dir/redis.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
  printf 'INFO server\r\n' >&3
  while IFS= read -r -t 1 line <&3; do
    if [[ "$line" == "process_id:$pid"* ]]; then
      exec 3<&-
      return 0
    fi
    [[ "$line" == "tcp_port:"* ]] && break
  done
  exec 3<&-
  return 1
}

case "$action" in
start)
  mkdir -p "$dir"
  stop # a server left behind by an interrupted run
  for _ in $(seq 1 30); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    listening "$port" && continue
    rm -f "$dir/redis.pid"
    "$server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" \
      --logfile "$dir/redis.log" || continue
    for _ in $(seq 1 100); do
      if ours "$port"; then
        echo "$port" >"$dir/port"
        echo "redis-server ready on 127.0.0.1:$port (pid $(cat "$dir/redis.pid"))"
        exit 0
      fi
      [ -f "$dir/redis.pid" ] && ! kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null && break
      sleep 0.05
    done
    stop
  done
  echo "could not start $server on a free loopback port; see $dir/redis.log" >&2
  exit 1
  ;;
stop)
  stop
  ;;
*)
  echo "usage: $0 start|stop <dir> [redis-server]" >&2
  exit 2
  ;;
esac
