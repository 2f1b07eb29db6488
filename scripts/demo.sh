#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds keel's examples and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset demo
cmake --build --preset demo
./build/demo/examples/keel_example_flaky_dependency
