#!/usr/bin/env bash
# demo.sh: set up, build, and run the COLO demo: a netkv pair on a namespaced LAN, kill -9 of the
# primary, and the secondary taking over while a client keeps writing and reading.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[[ -f build/build.ninja ]] || meson setup build >/dev/null
ninja -C build >/dev/null
if [[ ! -w /dev/kvm ]]; then
  echo "demo: no /dev/kvm here: the pair runs on tandem's emulator (--accel emu)"
fi
exec /usr/bin/python3 scripts/demo.py
