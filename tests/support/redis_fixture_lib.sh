# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Shell functions the Redis fixture scripts (redis_fixture.sh,
# redis_cluster_fixture.sh, redis_sentinel_fixture.sh) source: stopping the
# servers they started and probing a loopback port.

# Stops the servers whose pid files are given (those that exist): removes the
# files, sends SIGTERM to all, then gives each up to 5 s to exit before SIGKILL.
stop_servers() { # pid file...
  local pids=() f pid
  for f in "$@"; do
    [ -f "$f" ] || continue
    pids+=("$(cat "$f")")
    rm -f "$f"
  done
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Answers whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
