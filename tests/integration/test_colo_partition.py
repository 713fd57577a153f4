"""test_colo_partition.py: a network partition between the two hosts of a COLO pair: the
replication link is cut both ways and nobody dies.

Topology (scripts/netlan.sh up NAME --hosts): the client reaches each host's VM through the LAN
switch (NAME-cli -> NAME-lan -> lan0 -> the host's br0 -> tap0); the pair replicates over rep0,
a veth of their own between NAME-pri (10.77.1.1) and NAME-sec (10.77.1.2). Cutting rep0 (both
ends down) cuts the checkpoint stream and the heartbeat and leaves the client's path to both
taps intact.

Policy (docs/colo.md):
- default (no --colo-fence): both sides lose the heartbeat. The secondary cannot tell a dead
  primary from a cut link: it takes over from its last checkpoint. The primary discards the
  output the secondary never acknowledged and runs on alone. Both serve: the documented split
  brain.
- --colo-fence CMD on both: each side runs CMD (with TANDEM_COLO_ROLE=primary|secondary) and
  goes on only if it exits 0. With a CMD only one side can win, exactly one VM runs: a losing
  secondary stays a paused, disarmed standby; a losing primary pauses its guest and releases
  nothing. The client never sees two VMs: no contradiction, no acknowledged write lost.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import threading
import time

import pytest

from colo_pair import Pair
from conftest import _need
from harness import netlan_up, tandem_run

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETLAN = ROOT / "scripts" / "netlan.sh"
CLIENT = ROOT / "tests" / "integration" / "netkv_client.py"
MAC = "52:54:00:77:00:02"
NETKV = dict(guest="netkv", append="ip=10.77.0.2/24", pri_ready=r"netkv ready")
PROBE_IP = {"pri": "10.77.0.21", "sec": "10.77.0.22"}

# Wins if it takes the lock, or if the lock already names the caller's role; logs every call.
FENCE_SH = """#!/bin/sh
d=$1
echo "$TANDEM_COLO_ROLE run" >>"$d/fence.log"
if mkdir "$d/fence.lock" 2>/dev/null; then
  echo "$TANDEM_COLO_ROLE" >"$d/fence.lock/owner"
  r=0
elif [ "$(cat "$d/fence.lock/owner" 2>/dev/null)" = "$TANDEM_COLO_ROLE" ]; then
  r=0
else
  r=1
fi
echo "$TANDEM_COLO_ROLE exit $r" >>"$d/fence.log"
exit $r
"""


def run(*argv, check=True):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check,
                          timeout=60)


def netlan(*args, check=True):
    return run("bash", NETLAN, *args, check=check)


@pytest.fixture
def lan(vmenv, procs):
    """Two hosts and a client (scripts/netlan.sh up NAME --hosts), torn down at the end."""
    yield from netlan_up("tp", procs, "--hosts")


def cut(lan):
    """The partition: the replication link down at both ends (veth: each end also loses its
    carrier when the other goes down). Nothing else changes."""
    for role in ("pri", "sec"):
        run("ip", "-n", f"{lan}-{role}", "link", "set", "rep0", "down")


def heal(lan):
    for role in ("pri", "sec"):
        run("ip", "-n", f"{lan}-{role}", "link", "set", "rep0", "up")


def reachable(lan, frm, to_ip):
    return run("ip", "netns", "exec", f"{lan}-{frm}", "ping", "-c", "1", "-W", "1", to_ip,
               check=False).returncode == 0


def netkv_pair(env, procs, lan, delay_ms=50, extra=(), **kw):
    return Pair(env, procs, delay_ms=delay_ms, uri="tcp:10.77.1.2:4444",
                pri_netns=f"{lan}-pri", sec_netns=f"{lan}-sec",
                extra=("--net", f"tap=tap0,mac={MAC}", *extra), **NETKV, **kw)


class LoadClient:
    """scripts/demo_client.py in the client namespace: a model-checked netkv load until its
    stdin closes; `kill T` marks the cut (answers before/after it are counted apart)."""

    def __init__(self, lan):
        self.p = subprocess.Popen(["ip", "netns", "exec", f"{lan}-cli", "/usr/bin/python3",
                                   str(ROOT / "scripts" / "demo_client.py")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = []
        self.cv = threading.Condition()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append(line.strip())
                self.cv.notify_all()
        with self.cv:
            self.lines.append(None)
            self.cv.notify_all()

    def wait_answers(self, n=5, timeout=30):
        """Until a progress line shows n answered requests (one line a second)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for line in self.lines:
                    m = line and re.match(r"load ops=(\d+) .*no_reply=(\d+)", line)
                    if m and int(m.group(1)) - int(m.group(2)) >= n:
                        return
                assert None not in self.lines, f"the client ended: {self.lines[-5:]}"
                left = deadline - time.monotonic()
                assert left > 0, f"the client got no {n} answers in {timeout} s: {self.lines}"
                self.cv.wait(left)

    def mark(self, t):
        self.p.stdin.write(f"kill {t}\n")
        self.p.stdin.flush()

    def stop(self):
        self.p.stdin.close()
        self.p.wait(60)
        self.t.join(10)
        return json.loads([x for x in self.lines if x and x.startswith("{")][-1])

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def probe(lan, role, *cmd):
    """A netkv request from inside host `role`'s namespace to the VM behind its own tap0, not
    through the LAN: an address on the host's bridge, the guest's MAC pinned to tap0 (sticky,
    so the other VM's frames from the uplink cannot move it), a permanent neighbour entry. Lets
    the test ask each host's VM separately."""
    ns = f"{lan}-{role}"
    run("ip", "-n", ns, "addr", "replace", f"{PROBE_IP[role]}/24", "dev", "br0")
    run("bridge", "-n", ns, "fdb", "replace", MAC, "dev", "tap0", "master", "static", "sticky")
    run("ip", "-n", ns, "neigh", "replace", "10.77.0.2", "lladdr", MAC, "dev", "br0", "nud",
        "permanent")
    return run("ip", "netns", "exec", ns, "/usr/bin/python3", CLIENT, "--timeout", "0.2",
               "--retries", "25", *cmd, check=False)


def status(q):
    return q.cmd("query-status")["status"]


def wait_until(what, cond, timeout=15):
    """Poll cond() (returning a truthy value, or a falsy one and a description) until true."""
    deadline = time.monotonic() + timeout
    while True:
        ok, seen = cond()
        if ok:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: after {timeout} s still {seen}")
        time.sleep(0.05)


def both(p):
    """Each side's query-status and the policy fields of its query-colo-status."""
    out = {}
    for role, q in (("primary", p.pq), ("secondary", p.sq)):
        c = q.cmd("query-colo-status")
        out[role] = {"status": status(q), "colo": {
            k: c.get(k) for k in ("mode", "last-mode", "reason", "armed", "fenced",
                                  "last-decision")}}
    return out


@pytest.mark.netns
def test_partition_cuts_only_the_replication_link(vmenv, procs, lan):
    """The harness itself: cutting rep0 separates the hosts both ways, and the client still
    reaches a VM on either host's tap (no COLO here: one netkv per run, plain)."""
    assert reachable(lan, "pri", "10.77.1.2") and reachable(lan, "sec", "10.77.1.1")
    cut(lan)
    assert not reachable(lan, "pri", "10.77.1.2")
    assert not reachable(lan, "sec", "10.77.1.1")
    for role in ("pri", "sec"):
        # the switches forget where the guest's MAC was (the same MAC on the other host)
        for ns in ("lan", "pri", "sec"):
            run("ip", "-n", f"{lan}-{ns}", "link", "set", "br0", "type", "bridge", "fdb_flush")
        vm = tandem_run(vmenv, "netkv", "--net", f"tap=tap0,mac={MAC}", append="ip=10.77.0.2/24",
                        procs=procs, netns=f"{lan}-{role}")
        vm.wait_for(r"netkv ready")
        r = run("ip", "netns", "exec", f"{lan}-cli", "/usr/bin/python3", CLIENT, "--timeout",
                "0.2", "--retries", "25", "load", "--ops", "30", "--check", check=False)
        assert r.returncode == 0 and "contradictions=0" in r.stdout, (role, r.stdout + r.stderr)
        # and from inside the host, to its own VM (what the split-brain test uses)
        r = probe(lan, role, "get", "k")
        assert r.returncode == 0 and r.stdout.startswith("NONE "), (role, r.stdout + r.stderr)
        vm.kill()
    heal(lan)
    assert reachable(lan, "pri", "10.77.1.2")


@pytest.mark.netns
def test_partition_default_policy_split_brain(vmenv, procs, lan):
    """No fence: both sides lose the heartbeat and both go on. The secondary takes over from
    its last checkpoint, the primary runs on alone: two VMs serve (documented split brain)."""
    p = netkv_pair(vmenv, procs, lan)
    p.start()
    c = LoadClient(lan)
    try:
        c.wait_answers()
        p.wait_checkpoints(10)
        t = time.time()
        cut(lan)
        c.mark(t)
        pe = p.pq.wait_event("COLO_EXIT", timeout=30)
        se = p.sq.wait_event("COLO_EXIT", timeout=30)
        assert pe["data"] == {"mode": "primary", "reason": "error"}, pe
        assert se["data"] == {"mode": "secondary", "reason": "error"}, se
        st = wait_until("both VMs running", lambda: (
            (s := both(p))["primary"]["status"] == "running"
            and s["secondary"]["status"] == "running", s))
        assert st["primary"]["colo"]["mode"] == "none", st
        assert st["secondary"]["colo"]["mode"] == "none", st
        time.sleep(1)
        s = c.stop()
    finally:
        c.kill()
    # the client went on against whichever VM the switch sent it to (no assertion on its
    # model: answers from two diverging VMs may contradict each other; that is the point)
    assert s["answers_after_kill"] > 0, s
    # Both serve, each its own store: ask each host's VM directly.
    for role in ("pri", "sec"):
        r = probe(lan, role, "set", "brain", role)
        assert r.returncode == 0 and r.stdout.startswith("OK "), (role, r.stdout + r.stderr)
    for role in ("pri", "sec"):
        r = probe(lan, role, "get", "brain")
        assert r.returncode == 0 and r.stdout.startswith(f"VALUE {role} "), \
            (role, r.stdout + r.stderr)
    assert status(p.pq) == "running" and status(p.sq) == "running"


def fence_for(tmp_path, winner):
    """A fence only one side can win, with its lock already taken in the winner's name."""
    d = tmp_path / "fence"
    d.mkdir()
    (d / "fence.sh").write_text(FENCE_SH)
    (d / "fence.lock").mkdir()
    (d / "fence.lock" / "owner").write_text(winner + "\n")
    return d, f"sh {d}/fence.sh {d}"


@pytest.mark.netns
@pytest.mark.parametrize("winner", ["primary", "secondary"])
def test_partition_fenced_exactly_one_serves(vmenv, procs, lan, tmp_path, winner):
    """--colo-fence on both sides: the fence's winner runs, the loser does not (a losing
    secondary stays a paused, disarmed standby; a losing primary pauses its guest and releases
    nothing), and the client never gets replies from two VMs."""
    d, fence = fence_for(tmp_path, winner)
    loser = "secondary" if winner == "primary" else "primary"
    p = netkv_pair(vmenv, procs, lan, extra=("--colo-fence", fence))
    p.start()
    c = LoadClient(lan)
    try:
        c.wait_answers()
        p.wait_checkpoints(10)
        t = time.time()
        cut(lan)
        c.mark(t)
        q = {"primary": p.pq, "secondary": p.sq}
        ev = q[winner].wait_event("COLO_EXIT", timeout=30)
        assert ev["data"]["mode"] == winner, ev

        def settled():
            s = both(p)
            ok = s[winner]["status"] == "running"
            if loser == "secondary":
                ok = ok and s["secondary"]["status"] != "running" and \
                    s["secondary"]["colo"].get("armed") is False
            else:
                ok = ok and s["primary"]["status"] == "paused"
            return ok, s

        st = wait_until(f"{winner} running, {loser} fenced off", settled)
        # and it stays so while the client goes on
        time.sleep(2)
        ok, st = settled()
        assert ok, st
        running = [role for role in ("primary", "secondary") if st[role]["status"] == "running"]
        assert running == [winner], st
        s = c.stop()
    finally:
        c.kill()
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["no_reply"] == 0, s
    assert s["answers_before_kill"] > 0 and s["answers_after_kill"] > 0, s
    # both sides asked the fence, each as itself; only the winner got it
    log = (d / "fence.log").read_text().split("\n")
    assert f"{winner} exit 0" in log, log
    assert f"{loser} exit 1" in log, log
    assert f"{winner} exit 1" not in log and f"{loser} exit 0" not in log, log
    # healing the link changes nothing: the loser stays out
    heal(lan)
    time.sleep(1)
    st = both(p)
    assert [role for role in ("primary", "secondary")
            if st[role]["status"] == "running"] == [winner], st
