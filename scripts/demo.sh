#!/usr/bin/env bash
# demo.sh: set up, build, and run the COLO demo: a netkv pair on a namespaced LAN, kill -9 of the
# primary, and the secondary taking over while a client keeps writing and reading.
# demo.sh --cluster: the pair in cluster mode (three corosync hosts): a partition with no split
# brain, then re-protection of the survivor.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[[ -f build/build.ninja ]] || meson setup build >/dev/null
ninja -C build >/dev/null
if [[ ! -w /dev/kvm ]]; then
  echo "demo: no /dev/kvm here: the pair runs on tandem's emulator (--accel emu)"
fi
if [[ ${1:-} == --cluster ]]; then
  exec /usr/bin/python3 scripts/demo_cluster.py
elif [[ $# -gt 0 ]]; then
  echo "usage: scripts/demo.sh [--cluster]" >&2
  exit 2
fi
exec /usr/bin/python3 scripts/demo.py
