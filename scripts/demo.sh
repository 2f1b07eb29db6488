#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds keel's examples and runs the demo: the demo
# service and its downstream as real processes, driven through a scripted
# scenario (about 25 s; see docs/demo.md).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset demo
# Only the demo and the two servers it starts: the other examples are not needed here.
cmake --build --preset demo --target keel_demo
./build/demo/examples/service/keel_demo
