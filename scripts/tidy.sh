#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs clang-tidy (.clang-tidy) on every header in include/keel, through one
# translation unit that includes them all; exits non-zero on any finding.
# Needs clang-tidy, fmt and hiredis (scripts/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd include && find keel -name '*.hpp' | sort | sed 's/.*/#include <&>/') >"$work/every_header.cpp"
# shellcheck disable=SC2046 # pkg-config prints several flags
# (stderr without clang-tidy's count of the warnings it suppressed in other headers)
clang-tidy --quiet --config-file="$root/.clang-tidy" "$work/every_header.cpp" -- \
  -std=c++20 -I"$root/include" $(pkg-config --cflags hiredis) \
  2> >(grep -v '^[0-9]* warnings\? generated\.$' >&2)
echo "clang-tidy: $(grep -c '#include' "$work/every_header.cpp") headers clean"
