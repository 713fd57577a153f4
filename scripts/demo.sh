#!/usr/bin/env bash
# demo.sh: set up, build, and run the COLO demo: a netkv pair on a namespaced LAN, kill -9 of the
# primary, and the secondary taking over while a client keeps writing and reading.
# demo.sh --hybrid: the same in hybrid COLO (docs/hybrid.md): output leaves when both VMs have
# produced it, checkpoints come every 2 s or on divergence, and the client's one TCP connection
# survives the takeover.
# demo.sh --cluster: the pair in cluster mode (three corosync hosts): a partition with no split
# brain, then re-protection of the survivor.
set -euo pipefail
cd "$(dirname "$0")/.."
case "$#:${1:-}" in
  0:) run=(scripts/demo.py) ;;
  1:--hybrid) run=(scripts/demo.py --hybrid) ;;
  1:--cluster) run=(scripts/demo_cluster.py) ;;
  *)
    echo "usage: scripts/demo.sh [--hybrid | --cluster]" >&2
    exit 2
    ;;
esac
bash scripts/setup.sh
[[ -f build/build.ninja ]] || meson setup build >/dev/null
ninja -C build >/dev/null
if [[ ! -w /dev/kvm ]]; then
  echo "demo: no /dev/kvm here: the pair runs on tandem's emulator (--accel emu)"
fi
exec /usr/bin/python3 "${run[@]}"
