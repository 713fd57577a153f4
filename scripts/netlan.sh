#!/usr/bin/env bash
# netlan.sh: build (and tear down) a test LAN for tandem's guests out of network namespaces only.
#
# Usage (root):
#   scripts/netlan.sh up NAME [--taps N] [--hosts] [--flood]
#   scripts/netlan.sh addtap NAME ROLE TAP      # one more persistent tap on ROLE's bridge
#   scripts/netlan.sh exec NAME ROLE CMD...     # run CMD inside namespace NAME-ROLE
#   scripts/netlan.sh down NAME                 # remove everything; idempotent
#
# Everything lives in namespaces called NAME-<role>; every link is created inside them (veths
# with `ip -n A link add ... peer ... netns B`), so the root namespace's links are never touched.
# Addresses come from 10.77.0.0/16 only and no namespace has a default route.
#
# Plain LAN (`up NAME`):
#   NAME-lan  bridge br0, persistent taps tap0..tap<N-1> (--taps N, default 1) on it, and vcli,
#             the bridge end of the client's veth. No address. tandem runs HERE:
#               scripts/netlan.sh exec NAME lan build/tandem run ... --net tap=tap0
#             (a COLO pair on one host: primary on tap0, secondary on tap1 with --taps 2).
#   NAME-cli  cli0 = 10.77.0.10/24 (the client, e.g. tests/integration/netkv_client.py).
#   The guest is 10.77.0.2/24 (netkv ip=10.77.0.2/24); the bridge just switches frames.
#
# Two hosts (`up NAME --hosts`): a LAN switch, a client and two "hosts" for a COLO pair:
#   NAME-lan  bridge br0 (the LAN switch) with vcli, vpri and vsec: no taps, no address.
#   NAME-cli  cli0 = 10.77.0.10/24, on the LAN.
#   NAME-pri  primary host: bridge br0 with tap0 (the PVM's NIC) and lan0 (uplink to NAME-lan);
#             rep0 = 10.77.1.1/24, the replication link. tandem (primary) runs HERE:
#               scripts/netlan.sh exec NAME pri build/tandem run ... --net tap=tap0
#   NAME-sec  secondary host: the same with its own br0, tap0 and lan0; rep0 = 10.77.1.2/24.
#             tandem (secondary, --incoming tcp:10.77.1.2:PORT) runs HERE; the primary
#             migrates/replicates to 10.77.1.2.
#   rep0 is a direct veth between NAME-pri and NAME-sec (nothing else on 10.77.1.0/24).
#   Both VMs carry the guest's MAC: the LAN switch learns the port of whichever one transmits.
#   After a failover, frames for the guest keep going to the primary's port until the new VM
#   sends a frame (tandem's takeover sends RARP announcements) or the entry ages out. --flood
#   makes every bridge a hub (ageing 0), so both hosts' taps see all LAN traffic; then the
#   secondary's tap also queues what the primary was sent, and a VM that reads it late gets old
#   requests.
#
# A tap survives its VMM (persistent); `down` removes taps, bridges, veths and namespaces. Stop
# the processes running inside the namespaces first: `down` lists the ones it finds.
set -Eeuo pipefail

PROG=$(basename "$0")
die() {
  echo "$PROG: $*" >&2
  exit 1
}
usage() {
  sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

ns() { echo "$1-$2"; }
ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

# veth between two namespaces: veth NS_A IF_A NS_B IF_B
veth() {
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

new_ns() { # no IPv6: its link-local chatter (DAD, MLD, RS) would be the only other traffic
  ip netns add "$1"
  ip netns exec "$1" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 &&
    echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
  ip -n "$1" link set lo up
}

bridge() { # NS [flood]
  ip -n "$1" link add br0 type bridge
  if [[ ${2:-} == flood ]]; then
    ip -n "$1" link set br0 type bridge ageing_time 0
  fi
  ip -n "$1" link set br0 up
}

addtap() { # NS TAP
  ip -n "$1" tuntap add dev "$2" mode tap
  ip -n "$1" link set "$2" master br0
  ip -n "$1" link set "$2" up
}

cmd_up() {
  local name=$1 taps=1 hosts=0 flood=''
  shift
  while (($#)); do
    case $1 in
    --taps) taps=${2:?--taps needs a number}; shift ;;
    --hosts) hosts=1 ;;
    --flood) flood=flood ;;
    *) usage ;;
    esac
    shift
  done
  [[ $taps =~ ^[1-8]$ ]] || die "--taps: 1..8"
  for r in lan cli pri sec; do
    ! ns_exists "$(ns "$name" $r)" || die "$(ns "$name" $r) exists (run: $PROG down $name)"
  done
  local lan cli
  lan=$(ns "$name" lan)
  cli=$(ns "$name" cli)
  trap 'cmd_down "$name" >/dev/null 2>&1' ERR
  new_ns "$lan"
  new_ns "$cli"
  bridge "$lan" $flood
  veth "$lan" vcli "$cli" cli0
  ip -n "$lan" link set vcli master br0
  ip -n "$cli" addr add 10.77.0.10/24 dev cli0
  if ((hosts)); then
    local role ip=1 host
    for role in pri sec; do
      host=$(ns "$name" $role)
      new_ns "$host"
      bridge "$host" $flood
      addtap "$host" tap0
      veth "$lan" v$role "$host" lan0
      ip -n "$lan" link set v$role master br0
      ip -n "$host" link set lan0 master br0
    done
    veth "$(ns "$name" pri)" rep0 "$(ns "$name" sec)" rep0
    ip -n "$(ns "$name" pri)" addr add 10.77.1.1/24 dev rep0
    ip -n "$(ns "$name" sec)" addr add 10.77.1.2/24 dev rep0
    echo "$PROG: $name up: client $cli (10.77.0.10), primary $(ns "$name" pri) tap0" \
      "(rep0 10.77.1.1), secondary $(ns "$name" sec) tap0 (rep0 10.77.1.2), switch $lan"
  else
    local i
    for ((i = 0; i < taps; i++)); do
      addtap "$lan" tap$i
    done
    echo "$PROG: $name up: client $cli (10.77.0.10), $taps tap(s) from tap0 in $lan"
  fi
  trap - ERR
}

cmd_down() {
  local name=$1 r n pids
  for r in cli pri sec lan; do
    n=$(ns "$name" $r)
    ns_exists "$n" || continue
    pids=$(ip netns pids "$n" 2>/dev/null | tr '\n' ' ')
    [[ -z $pids ]] || echo "$PROG: still running in $n: $pids(the namespace lives on until they exit)" >&2
    # Taps first: they are the only links a process outside the namespace could still hold.
    for t in $(ip -n "$n" -o link show type tun 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip -n "$n" link del "$t" 2>/dev/null || true
    done
    ip netns del "$n"
  done
}

(($# >= 2)) || usage
[[ $(id -u) -eq 0 ]] || die "needs root"
sub=$1
name=$2
shift 2
[[ $name =~ ^[A-Za-z0-9_]{1,20}$ ]] || die "NAME: 1..20 of [A-Za-z0-9_]"
case $sub in
up) cmd_up "$name" "$@" ;;
down) cmd_down "$name" ;;
addtap)
  (($# == 2)) || usage
  ns_exists "$(ns "$name" "$1")" || die "no namespace $(ns "$name" "$1")"
  addtap "$(ns "$name" "$1")" "$2"
  ;;
exec)
  (($# >= 2)) || usage
  n=$(ns "$name" "$1")
  shift
  ns_exists "$n" || die "no namespace $n"
  exec ip netns exec "$n" "$@"
  ;;
*) usage ;;
esac
