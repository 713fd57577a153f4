#!/usr/bin/env bash
# killsweep.sh: kill the COLO primary at N random points while netkv is under client load and
# blkcheck is writing; count acknowledged writes lost and contradictions (both must be 0).
#   scripts/killsweep.sh N [--seed S] [--only I] ...     (root; build first: ninja -C build)
#   scripts/killsweep.sh --help                           every option, what is counted
# The sweep itself is scripts/killsweep.py (run by /usr/bin/python3, like the integration tests).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/killsweep.py" "$@"
