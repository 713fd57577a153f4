#!/usr/bin/env bash
# cluster.sh: a three-host Corosync lab (network namespaces only) for tandem's [cluster] mode.
#
# Usage (root):
#   scripts/cluster.sh up NAME [--flood]        # netlan.sh's two hosts + a witness + 3 corosyncs
#   scripts/cluster.sh down NAME                # stop the corosyncs, remove everything; idempotent
#   scripts/cluster.sh exec NAME HOST CMD...    # run CMD on HOST (pri, sec, wit, cli or lan)
#   scripts/cluster.sh status NAME              # each host's quorum view, one line per host
#   scripts/cluster.sh isolate|heal NAME HOST   # cut/restore HOST's ring links to both others
#   scripts/cluster.sh cut-ring|heal-ring NAME  # cut/restore pri<->sec only on the ring
#   scripts/cluster.sh cut-rep|heal-rep NAME    # cut/restore the replication link rep0, both ways
#   scripts/cluster.sh stop|start NAME HOST     # stop/start HOST's corosync (pri, sec or wit)
#
# What `up NAME` builds:
#   - everything `scripts/netlan.sh up NAME --hosts [--flood]` builds (NAME-lan switch, NAME-cli
#     client 10.77.0.10, hosts NAME-pri and NAME-sec with tap0 on the LAN, rep0 10.77.1.1 <->
#     10.77.1.2 between them): see that script. `down` removes it with netlan.sh down.
#   - NAME-wit, the witness host: no VM, no LAN, only the ring.
#   - the Corosync ring, a network of its own: NAME-ring holds a bridge br0 with one port per
#     host (rpri, rsec, rwit), each the peer of that host's ring0:
#       NAME-pri ring0 10.77.2.1/24 (nodeid 1), NAME-sec 10.77.2.2 (2), NAME-wit 10.77.2.3 (3).
#   - one corosync per host, `corosync -f` in the background inside its namespace, knet
#     transport, votequorum with expected_votes 3 (any two hosts are quorate, one is not),
#     token 1000 ms (token_coefficient 0, consensus 1200 ms), normal scheduling priority
#     (system.sched_rr: no: the lab shares its cores with the guests under test). Its files,
#     all under /tmp/tandem-cluster-NAME/HOST/:
#       corosync.conf, corosync.log (its log), corosync.pid (pid recorded by this script),
#       stderr (its stdout/stderr), state/ (system.state_dir: ringid files, blackboxes),
#       run/ (bind-mounted on /run in corosync's own mount namespace: corosync 3.1 takes a lock
#       on the fixed path /var/run/corosync.pid, so three corosyncs need three /run's).
#     `up` returns when all three answer on their IPC; all three see 3 members a few seconds
#     later (`status`).
#
# Running a process "on" a host (tandem, corosync-quorumtool, corosync-cpgtool, any libcpg,
# libquorum or libvotequorum client): `ip netns exec NAME-HOST CMD...` (what `exec` does). No
# mount setup is needed: libqb's IPC servers (cpg, quorum, votequorum, cmap, cfg) listen on
# abstract unix sockets, which belong to the network namespace, so a client reaches the
# corosync of the namespace it runs in; the shared-memory ring buffers are in the machine-wide
# /dev/shm, but named after the pids (qb-SERVERPID-CLIENTPID-..., qb-corosync-PID-blackbox-*),
# so the three corosyncs never collide. If /etc/libqb/force-filesystem-sockets existed, libqb
# would put the sockets in /var/run instead, which is per corosync here and out of its
# clients' reach: `up` refuses to run then.
#
# The cuts (both directions at once; the client LAN and, but for cut-rep, rep0 are untouched):
#   isolate HOST   ring port rHOST down in NAME-ring (HOST's ring0 loses its carrier).
#   cut-ring       rpri and rsec become isolated bridge ports (`bridge link ... isolated on`):
#                  pri and sec no longer reach each other, both still reach the witness.
#   cut-rep        rep0 down at both ends (as tests/integration/test_colo_partition.py does).
#   stop HOST      SIGTERM to HOST's corosync (SIGKILL after 10 s); start HOST runs it again.
# After isolate or heal, each host's quorum changes in about 2 s (corosync's log on this
# 2-core machine: isolate 1.7-2.5 s, heal 1.3-1.8 s).
#
# cut-ring with the witness up is a non-transitive partition, which Corosync's totem does not
# handle cleanly: the side left alone is stable (inquorate, 1 member); the witness and the
# other side stay quorate with the same 2 members, but their membership is formed again about
# every 1.2 s (each time the lone side's join reaches the witness), their synchronisation
# seldom completes, so quorum and CPG notifications there come rarely, CPG sends get
# CS_ERR_TRY_AGAIN, and an IPC request (e.g. corosync-quorumtool) may wait for a long time
# while its corosync spins. Which of pri/sec keeps the witness varies from run to run.
set -Eeuo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
NETLAN=$HERE/netlan.sh
HOSTS=(pri sec wit)
declare -A NODEID=([pri]=1 [sec]=2 [wit]=3)
declare -A RINGIP=([pri]=10.77.2.1 [sec]=10.77.2.2 [wit]=10.77.2.3)

die() {
  echo "$PROG: $*" >&2
  exit 1
}
usage() {
  sed -n '4,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
help() {
  sed -n '2,/^set -Eeuo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
}

ns() { echo "$1-$2"; }
ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
dir() { echo "/tmp/tandem-cluster-$1"; }
is_host() { [[ $1 == pri || $1 == sec || $1 == wit ]]; }
need_host() { is_host "$1" || die "HOST: pri, sec or wit (not '$1')"; }
need_lab() {
  if ! ns_exists "$(ns "$1" ring)" || [[ ! -d $(dir "$1") ]]; then
    die "no lab $1 (run: $PROG up $1)"
  fi
}

new_ns() { # the same namespace setup as netlan.sh: no IPv6, lo up
  ip netns add "$1"
  ip netns exec "$1" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 &&
    echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
  ip -n "$1" link set lo up
}

conf() { # NAME HOST: HOST's corosync.conf
  local name=$1 host=$2 d h
  d=$(dir "$name")/$host
  cat <<EOF
# written by $PROG up $name
totem {
	version: 2
	cluster_name: tandem-$name
	transport: knet
	ip_version: ipv4
	crypto_cipher: none
	crypto_hash: none
	# real token timeout = token (no per-node coefficient); consensus = 1.2 * token
	token: 1000
	token_coefficient: 0
}
nodelist {
EOF
  for h in "${HOSTS[@]}"; do
    printf '\tnode {\n\t\tnodeid: %s\n\t\tname: %s\n\t\tring0_addr: %s\n\t}\n' \
      "${NODEID[$h]}" "$h" "${RINGIP[$h]}"
  done
  cat <<EOF
}
quorum {
	provider: corosync_votequorum
	expected_votes: 3
}
logging {
	to_stderr: no
	to_syslog: no
	to_logfile: yes
	logfile: $d/corosync.log
	timestamp: hires
	debug: off
}
system {
	state_dir: $d/state
	# Normal priority, not SCHED_RR 99 (corosync's default): three corosyncs share this
	# machine's cores with the guests under test, and one that spins (see --help) must not
	# take a core from them.
	sched_rr: no
}
EOF
}

# The pid of HOST's corosync if it runs (the recorded pid, still a corosync on our config).
cs_pid() { # NAME HOST
  local f pid
  f=$(dir "$1")/$2/corosync.pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" |
    grep -qF "corosync -f -c $(dir "$1")/$2/corosync.conf" || return 1
  echo "$pid"
}

cs_launch() { # NAME HOST
  local name=$1 host=$2 d pid
  d=$(dir "$name")/$host
  if pid=$(cs_pid "$name" "$host"); then
    echo "$PROG: $host's corosync already runs (pid $pid)"
    return 0
  fi
  mkdir -p "$d/state" "$d/run"
  # setsid: its own session, so a signal to whoever ran this script does not reach it.
  # ip netns exec, unshare and sh all exec: $! is corosync's pid.
  # shellcheck disable=SC2016 # $1 and $2 are sh's arguments
  setsid ip netns exec "$(ns "$name" "$host")" unshare --mount --propagation private \
    sh -c 'mount --bind "$1" /run && exec corosync -f -c "$2"' sh "$d/run" "$d/corosync.conf" \
    </dev/null >"$d/stderr" 2>&1 &
  echo "$!" >"$d/corosync.pid"
}

cs_wait() { # NAME HOST: until its IPC answers (cmap, as corosync-quorumtool uses it)
  local name=$1 host=$2 d pid i
  d=$(dir "$name")/$host
  pid=$(<"$d/corosync.pid")
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null ||
      die "$host's corosync exited: $(tail -n 5 "$d/stderr" "$d/corosync.log" 2>/dev/null)"
    if ip netns exec "$(ns "$name" "$host")" corosync-cmapctl -g runtime.votequorum.this_node_id \
      >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "$host's corosync (pid $pid) does not answer after 15 s: see $d/corosync.log"
}

cs_start() { # NAME HOST...: launched together, then waited for
  local name=$1 h
  shift
  for h in "$@"; do cs_launch "$name" "$h"; done
  for h in "$@"; do cs_wait "$name" "$h"; done
}

cs_stop() { # NAME HOST...: all at once
  local name=$1 h pid i left
  shift
  declare -A pids=()
  for h in "$@"; do
    if pid=$(cs_pid "$name" "$h"); then
      pids[$h]=$pid
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < 150; i++)); do
    left=0
    for h in "${!pids[@]}"; do
      ! kill -0 "${pids[$h]}" 2>/dev/null || left=1
    done
    ((left)) || break
    ((i != 100)) || for h in "${!pids[@]}"; do
      if kill -0 "${pids[$h]}" 2>/dev/null; then
        echo "$PROG: $h's corosync (pid ${pids[$h]}) ignored SIGTERM for 10 s: SIGKILL" >&2
        kill -KILL "${pids[$h]}" 2>/dev/null || true
      fi
    done
    sleep 0.1
  done
  for h in "$@"; do
    # A killed corosync leaves its blackbox and its clients' IPC ring buffers in /dev/shm.
    pid=${pids[$h]:-}
    [[ -z $pid ]] || rm -rf /dev/shm/qb-"$pid"-* /dev/shm/qb-corosync-"$pid"-* 2>/dev/null || true
    rm -f "$(dir "$name")/$h/corosync.pid"
  done
}

cmd_up() {
  local name=$1 flood=() h
  shift
  while (($#)); do
    case $1 in
    --flood) flood=(--flood) ;;
    *) usage ;;
    esac
    shift
  done
  if ! command -v corosync >/dev/null || ! command -v corosync-quorumtool >/dev/null; then
    die "corosync is not installed (apt-get install corosync, or scripts/setup.sh)"
  fi
  command -v unshare >/dev/null || die "unshare (util-linux) is missing"
  [[ ! -e /etc/libqb/force-filesystem-sockets ]] ||
    die "/etc/libqb/force-filesystem-sockets exists: libqb would put corosync's IPC sockets in" \
      "/var/run, shared by the three hosts' clients; remove it to use this lab"
  for h in wit ring; do
    ! ns_exists "$(ns "$name" $h)" || die "$(ns "$name" $h) exists (run: $PROG down $name)"
  done
  [[ ! -e $(dir "$name") ]] || die "$(dir "$name") exists (run: $PROG down $name)"
  bash "$NETLAN" up "$name" --hosts "${flood[@]}"
  # From here on a failure (an error or die) takes the whole lab down again.
  trap 'cmd_down "$name" >/dev/null 2>&1' EXIT
  mkdir -p "$(dir "$name")"
  local ring
  ring=$(ns "$name" ring)
  new_ns "$(ns "$name" wit)"
  new_ns "$ring"
  ip -n "$ring" link add br0 type bridge
  ip -n "$ring" link set br0 up
  for h in "${HOSTS[@]}"; do
    ip -n "$ring" link add "r$h" type veth peer name ring0 netns "$(ns "$name" "$h")"
    ip -n "$ring" link set "r$h" master br0
    ip -n "$ring" link set "r$h" up
    ip -n "$(ns "$name" "$h")" addr add "${RINGIP[$h]}/24" dev ring0
    ip -n "$(ns "$name" "$h")" link set ring0 up
    mkdir -p "$(dir "$name")/$h"
    conf "$name" "$h" >"$(dir "$name")/$h/corosync.conf"
  done
  cs_start "$name" "${HOSTS[@]}"
  trap - EXIT
  echo "$PROG: $name up: ring $ring (pri 10.77.2.1, sec 10.77.2.2, wit 10.77.2.3)," \
    "corosync pids pri $(cs_pid "$name" pri) sec $(cs_pid "$name" sec) wit $(cs_pid "$name" wit)," \
    "files in $(dir "$name"); run a process on a host with: ip netns exec $name-HOST CMD"
}

cmd_down() {
  local name=$1 h n pids
  [[ ! -d $(dir "$name") ]] || cs_stop "$name" "${HOSTS[@]}"
  for h in wit ring; do
    n=$(ns "$name" $h)
    ns_exists "$n" || continue
    pids=$(ip netns pids "$n" 2>/dev/null | tr '\n' ' ')
    [[ -z $pids ]] ||
      echo "$PROG: still running in $n: $pids(the namespace lives on until they exit)" >&2
    ip netns del "$n"
  done
  bash "$NETLAN" down "$name"
  rm -rf "$(dir "$name")"
}

# One line per host: "pri: node 1, quorate, 3 members: 1 2 3 (expected 3, total 3 votes)".
cmd_status() {
  local name=$1 h out q members nodeid
  for h in "${HOSTS[@]}"; do
    if ! cs_pid "$name" "$h" >/dev/null; then
      echo "$h: corosync not running"
      continue
    fi
    # timeout: an IPC request may wait long in a membership that keeps re-forming (cut-ring)
    out=$(timeout 5 ip netns exec "$(ns "$name" "$h")" corosync-quorumtool -s -p 2>&1) || true
    nodeid=$(awk -F': *' '/^Node ID:/{print $2}' <<<"$out")
    q=$(awk -F': *' '/^Quorate:/{print $2}' <<<"$out")
    if [[ -z $q ]]; then
      echo "$h: no answer: $(tr '\n' ' ' <<<"$out")"
      continue
    fi
    members=$(awk '/^Membership information/{m=1;next} m && $1 ~ /^[0-9]+$/ {print $1}' <<<"$out" |
      sort -n | tr '\n' ' ')
    printf '%s: node %s, %s, %d members: %s(expected %s, total %s votes)\n' "$h" "$nodeid" \
      "$([[ $q == Yes ]] && echo quorate || echo inquorate)" "$(wc -w <<<"$members")" "$members" \
      "$(awk -F': *' '/^Expected votes:/{print $2}' <<<"$out")" \
      "$(awk -F': *' '/^Total votes:/{print $2}' <<<"$out")"
  done
}

ring_port() { # NAME HOST up|down
  ip -n "$(ns "$1" ring)" link set "r$2" "$3"
}
ring_isolated() { # NAME on|off
  local h
  for h in pri sec; do
    bridge -n "$(ns "$1" ring)" link set dev "r$h" isolated "$2"
  done
}
rep() { # NAME up|down
  local h
  for h in pri sec; do
    ip -n "$(ns "$1" $h)" link set rep0 "$2"
  done
}

case ${1:-} in
-h | --help | help) help ;;
esac
(($# >= 2)) || usage
[[ $(id -u) -eq 0 ]] || die "needs root"
sub=$1
name=$2
shift 2
[[ $name =~ ^[A-Za-z0-9_]{1,20}$ ]] || die "NAME: 1..20 of [A-Za-z0-9_]"
case $sub in
up) cmd_up "$name" "$@" ;;
down) (($# == 0)) || usage; cmd_down "$name" ;;
status) (($# == 0)) || usage; need_lab "$name"; cmd_status "$name" ;;
exec)
  (($# >= 2)) || usage
  n=$(ns "$name" "$1")
  shift
  ns_exists "$n" || die "no namespace $n"
  exec ip netns exec "$n" "$@"
  ;;
isolate | heal)
  (($# == 1)) || usage
  need_lab "$name"
  need_host "$1"
  ring_port "$name" "$1" "$([[ $sub == isolate ]] && echo down || echo up)"
  ;;
cut-ring | heal-ring)
  (($# == 0)) || usage
  need_lab "$name"
  ring_isolated "$name" "$([[ $sub == cut-ring ]] && echo on || echo off)"
  ;;
cut-rep | heal-rep)
  (($# == 0)) || usage
  need_lab "$name"
  rep "$name" "$([[ $sub == cut-rep ]] && echo down || echo up)"
  ;;
stop | start)
  (($# == 1)) || usage
  need_lab "$name"
  need_host "$1"
  if [[ $sub == stop ]]; then cs_stop "$name" "$1"; else cs_start "$name" "$1"; fi
  ;;
*) usage ;;
esac
