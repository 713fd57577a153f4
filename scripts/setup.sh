#!/usr/bin/env bash
# setup.sh: install every Debian package tandem's build, tests, benchmarks and demo need.
set -euo pipefail

PKGS=(
  build-essential meson ninja-build pkg-config clang clang-format libclang-rt-14-dev
  libcmocka-dev libjson-c-dev libzstd-dev libgnutls28-dev libunicorn-dev
  python3 python3-pytest
  qemu-system-x86
  iproute2 iputils-ping tcpdump bridge-utils netcat-openbsd
  corosync libcpg-dev libvotequorum-dev libquorum-dev libcorosync-common-dev util-linux
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all packages present"
