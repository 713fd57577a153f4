#!/usr/bin/env bash
# fuzz.sh: run every libFuzzer target for a bounded time on a copy of its seed corpus.
# Usage: scripts/fuzz.sh [SECONDS] (default 60); expects build-fuzz (CC=clang, -Dfuzz=true).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r fuzz/corpus/stream "$work/stream"
build-fuzz/fuzz/stream_fuzz -max_total_time="$secs" -print_final_stats=1 "$work/stream" 2>&1 |
  tail -15
