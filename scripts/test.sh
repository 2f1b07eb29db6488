#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds keel with g++ and runs the whole test suite
# through ctest: unit tests, examples, packaging (consumers through find_package,
# a build tree, add_subdirectory and FetchContent), benchmark smoke runs and the
# real-Redis tests.
# Usage: scripts/test.sh [preset]   (default preset: gcc)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
preset="${1:-gcc}"
cmake --preset "$preset"
cmake --build --preset "$preset"
ctest --preset "$preset"
