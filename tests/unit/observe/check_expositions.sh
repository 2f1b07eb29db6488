#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Lints every exposition the observe tests render, and the golden files, with
# `promtool check metrics`.
#   check_expositions.sh <promtool> <work dir> <golden dir> <test program>...
# Prometheus text (*.prom) must pass with no finding at all. promtool 2.42 reads
# only that format, so an OpenMetrics page (*.om) is read as if it were one: it
# must parse (no error), and the only findings allowed are the ones that reading
# causes by design: OpenMetrics names a counter family without `_total` in
# `# TYPE`/`# HELP`, so promtool sees its `_total` and `_created` samples as
# families without help. (The e2e test has a real Prometheus scrape OpenMetrics.)
set -uo pipefail
promtool=${1:?promtool}
work=${2:?work dir}
golden=${3:?golden dir}
shift 3
rm -rf "$work"
mkdir -p "$work"
for program in "$@"; do
  KEEL_EXPOSITION_DIR="$work" "$program" >"$work/.log" 2>&1 || {
    cat "$work/.log"
    echo "FAILED: $program"
    exit 1
  }
done
failed=0
checked=0
for page in "$work"/*.prom "$work"/*.om "$golden"/*.prom "$golden"/*.om; do
  [ -e "$page" ] || continue
  checked=$((checked + 1))
  findings=$("$promtool" check metrics <"$page" 2>&1)
  rc=$?
  case "$page" in
  *.prom)
    if [ $rc -ne 0 ] || [ -n "$findings" ]; then
      echo "FAILED: $page (exit $rc)"
      echo "$findings"
      failed=1
    fi
    ;;
  *.om)
    if grep -q "error while linting\|parsing error" <<<"$findings"; then
      echo "FAILED: $page does not parse"
      echo "$findings"
      failed=1
    elif [ -n "$findings" ] && grep -v -E '^[a-zA-Z_:][a-zA-Z0-9_:]*_(total|created) no help text$' <<<"$findings" | grep -q .; then
      echo "FAILED: $page"
      echo "$findings"
      failed=1
    fi
    if [ "$(tail -n 1 "$page")" != "# EOF" ]; then
      echo "FAILED: $page does not end with # EOF"
      failed=1
    fi
    ;;
  esac
done
if [ "$checked" -lt 2 ]; then
  echo "FAILED: no exposition was rendered"
  exit 1
fi
echo "promtool check metrics: $checked pages checked"
exit $failed
