#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs, from Debian 12 packages, whatever keel's builds, tests, benchmarks and
# demo need and this machine lacks. Safe to run again: it installs nothing that is
# already there. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git  # the toolchain
  clang clang-format libclang-rt-14-dev            # clang 14 leg, sanitizers, libFuzzer, format check
  clang-tidy                                       # scripts/tidy.sh
  catch2 libfmt-dev libbenchmark-dev               # tests, formatting, benchmarks
  libhiredis-dev redis-server                      # keel::redis and its real-Redis tests
  libcpp-httplib-dev                               # the demo service
  libasio-dev libboost1.81-dev                     # keel::asio on standalone Asio and Boost.Asio; Beast
  prometheus                                       # promtool and a real server for the metrics tests
  nlohmann-json3-dev                               # the simulator's scenario files
  librsvg2-bin                                     # rsvg-convert: checks that the charts render
  procps                                           # pgrep/kill used by process tests
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "keel: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
