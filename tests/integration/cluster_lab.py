"""cluster_lab.py: the three-host Corosync lab (scripts/cluster.sh) for tests of tandem's
[cluster] mode: hosts NAME-pri, NAME-sec (a COLO pair's, as scripts/netlan.sh --hosts builds
them) and NAME-wit (the witness), one corosync each (nodeids pri=1, sec=2, wit=3, votequorum,
expected_votes 3), on a ring network of their own (10.77.2.1/.2/.3).

A test takes the `lab` fixture (import it: `from cluster_lab import lab  # noqa: F401`) and runs
a process on a host with lab.exec_prefix(host) + argv; that process's libcpg/libquorum/
libvotequorum talk to that host's corosync. Quorum is read with corosync-quorumtool on the host.

Run as a script, this module is also a CPG group member written with ctypes (no compiler):
    ip netns exec NAME-HOST python3 cluster_lab.py cpg-member GROUP
joins GROUP, prints "joined nodeid=N pid=P", then one line per configuration change,
"confchg members=NODEID:PID,... left=... joined=...", until killed.
"""
import ctypes
import ctypes.util
import dataclasses
import os
import pathlib
import re
import select
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "scripts" / "cluster.sh"
HOSTS = ("pri", "sec", "wit")
NODEID = {"pri": 1, "sec": 2, "wit": 3}


def run(*argv, check=True, timeout=120):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@dataclasses.dataclass
class Quorum:
    """One host's view, from `corosync-quorumtool -s -p` run on it. ok is False when its
    corosync did not answer (not running, or its IPC stalled: see Lab.quorum)."""
    host: str
    ok: bool
    quorate: bool = False
    node_id: int = 0
    members: tuple = ()
    expected_votes: int = 0
    total_votes: int = 0
    ring_id: str = ""
    error: str = ""

    def __str__(self):
        if not self.ok:
            return f"{self.host}: no answer ({self.error})"
        return (f"{self.host}: node {self.node_id}, {'quorate' if self.quorate else 'inquorate'},"
                f" members {list(self.members)}, ring {self.ring_id}")


def parse_quorumtool(host: str, text: str) -> Quorum:
    """Parse `corosync-quorumtool -s [-p]` output."""
    def field(label):
        m = re.search(rf"^{label}:\s*(\S+)", text, re.M)
        return m.group(1) if m else None

    quorate = field("Quorate")
    if quorate is None:
        return Quorum(host, False, error=" ".join(text.split())[:300] or "no output")
    members = []
    if "Membership information" in text:
        for line in text.split("Membership information", 1)[1].splitlines():
            m = re.match(r"\s*(\d+)\s+\d+\s", line)
            if m:
                members.append(int(m.group(1)))
    return Quorum(host, True, quorate=quorate == "Yes", node_id=int(field("Node ID") or 0),
                  members=tuple(sorted(members)),
                  expected_votes=int(field("Expected votes") or 0),
                  total_votes=int(field("Total votes") or 0), ring_id=field("Ring ID") or "")


class Lab:
    """scripts/cluster.sh NAME, driven from a test. Every method but quorum() raises when the
    script fails."""

    def __init__(self, name: str):
        self.name = name
        self.dir = pathlib.Path(f"/tmp/tandem-cluster-{name}")

    def _cs(self, *args, check=True):
        r = run("bash", CLUSTER, args[0], self.name, *args[1:], check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"cluster.sh {' '.join(args)} {self.name}: exit "
                                 f"{r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def ns(self, host: str) -> str:
        return f"{self.name}-{host}"

    def exec_prefix(self, host: str) -> list:
        """The argv prefix that runs a process on host (pri, sec, wit, or cli/lan): its network
        namespace, where its corosync's IPC (abstract unix sockets) is; nothing else."""
        return ["ip", "netns", "exec", self.ns(host)]

    def up(self):
        self._cs("up")

    def down(self):
        self._cs("down", check=False)

    def isolate(self, host):
        self._cs("isolate", host)

    def heal(self, host):
        self._cs("heal", host)

    def cut_ring(self):
        self._cs("cut-ring")

    def heal_ring(self):
        self._cs("heal-ring")

    def cut_rep(self):
        self._cs("cut-rep")

    def heal_rep(self):
        self._cs("heal-rep")

    def stop(self, host):
        self._cs("stop", host)

    def start(self, host):
        self._cs("start", host)

    def status(self) -> str:
        return self._cs("status", check=False).stdout

    def log(self, host: str, lines: int = 30) -> str:
        try:
            text = (self.dir / host / "corosync.log").read_text(errors="replace")
        except OSError as e:
            return f"({e})"
        return "\n".join(text.splitlines()[-lines:])

    def quorum(self, host: str, timeout: float = 5) -> Quorum:
        """host's quorum view. Never hangs: a corosync whose membership keeps re-forming (the
        non-transitive cut, cut_ring with the witness up) may leave an IPC request unanswered
        for a long time; that, like a stopped corosync, is Quorum(ok=False)."""
        try:
            r = subprocess.run(self.exec_prefix(host) + ["corosync-quorumtool", "-s", "-p"],
                               capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Quorum(host, False, error=f"no answer in {timeout} s")
        return parse_quorumtool(host, r.stdout + r.stderr)

    def quorums(self) -> dict:
        return {h: self.quorum(h) for h in HOSTS}

    def wait_quorum(self, host: str, quorate: bool, members, timeout: float = 60) -> Quorum:
        """Wait until host's view is quorate (or not) with members: a number of members, or the
        exact set of nodeids or host names. Returns the view; fails with every host's view and
        host's log."""
        if isinstance(members, int):
            want = lambda q: len(q.members) == members  # noqa: E731
        else:
            ids = tuple(sorted(NODEID.get(m, m) for m in members))
            want = lambda q: q.members == ids  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            q = self.quorum(host)
            if q.ok and q.quorate == quorate and want(q):
                return q
            if time.monotonic() > deadline:
                views = "\n".join(str(v) for v in self.quorums().values())
                raise AssertionError(f"{host}: wanted {'quorate' if quorate else 'inquorate'} "
                                     f"with {members}, last {q}\nall views:\n{views}\n"
                                     f"{host}'s corosync.log:\n{self.log(host)}")
            time.sleep(0.2)

    def wait_all(self, expect: dict, timeout: float = 60) -> dict:
        """expect: host -> (quorate, members), each waited for in turn (the deadline is
        shared); returns host -> Quorum."""
        deadline = time.monotonic() + timeout
        return {h: self.wait_quorum(h, qu, m, max(1.0, deadline - time.monotonic()))
                for h, (qu, m) in expect.items()}


def lab_name(prefix="cl") -> str:
    return f"{prefix}{os.getpid() % 100000}"


def lab_available() -> bool:
    return (os.geteuid() == 0 and shutil.which("ip") is not None
            and shutil.which("unshare") is not None and shutil.which("corosync") is not None
            and shutil.which("corosync-quorumtool") is not None)


try:
    import pytest

    @pytest.fixture
    def lab():
        """A lab up (all three quorate with 3 members), always torn down at the end. Without
        root or corosync it skips, and fails under TANDEM_REQUIRE_GUESTS=1 (CI)."""
        from conftest import _need
        _need("root, iproute2, util-linux unshare and corosync (scripts/setup.sh)",
              lab_available())
        lb = Lab(lab_name())
        lb.down()  # a lab left behind by a killed run of this pid
        try:
            lb.up()
            lb.wait_all({h: (True, HOSTS) for h in HOSTS})
            yield lb
        finally:
            lb.down()
except ImportError:  # run as a script (cpg-member) where pytest is not installed
    pass


# --- a CPG group member through libcpg with ctypes ---------------------------------------

CS_OK, CS_ERR_TRY_AGAIN, CS_DISPATCH_ALL = 1, 6, 2


class CpgName(ctypes.Structure):
    _fields_ = [("length", ctypes.c_uint32), ("value", ctypes.c_char * 128)]


class CpgAddress(ctypes.Structure):
    _fields_ = [("nodeid", ctypes.c_uint32), ("pid", ctypes.c_uint32),
                ("reason", ctypes.c_uint32)]


DELIVER = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.POINTER(CpgName), ctypes.c_uint32,
                           ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
CONFCHG = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.POINTER(CpgName),
                           ctypes.POINTER(CpgAddress), ctypes.c_size_t,
                           ctypes.POINTER(CpgAddress), ctypes.c_size_t,
                           ctypes.POINTER(CpgAddress), ctypes.c_size_t)


class CpgCallbacks(ctypes.Structure):
    _fields_ = [("deliver", DELIVER), ("confchg", CONFCHG)]


def _retry(what, fn, *args, timeout=30):
    """libcpg answers CS_ERR_TRY_AGAIN while corosync synchronises a membership."""
    deadline = time.monotonic() + timeout
    while True:
        rc = fn(*args)
        if rc == CS_OK:
            return
        if rc != CS_ERR_TRY_AGAIN or time.monotonic() > deadline:
            raise SystemExit(f"cpg-member: {what}: cs_error {rc}")
        time.sleep(0.1)


def cpg_member(group: str):
    lib = ctypes.CDLL(ctypes.util.find_library("cpg") or "libcpg.so.4", use_errno=True)
    lib.cpg_initialize.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(CpgCallbacks)]
    lib.cpg_fd_get.argtypes = [ctypes.c_uint64, ctypes.POINTER(ctypes.c_int)]
    lib.cpg_join.argtypes = [ctypes.c_uint64, ctypes.POINTER(CpgName)]
    lib.cpg_dispatch.argtypes = [ctypes.c_uint64, ctypes.c_int]
    lib.cpg_local_get.argtypes = [ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint)]

    def addrs(p, n):
        return ",".join(f"{p[i].nodeid}:{p[i].pid}" for i in range(n))

    def confchg(_h, _g, mem, nmem, left, nleft, joined, njoined):
        print(f"confchg members={addrs(mem, nmem)} left={addrs(left, nleft)} "
              f"joined={addrs(joined, njoined)}", flush=True)

    cbs = CpgCallbacks(DELIVER(lambda *a: None), CONFCHG(confchg))
    handle = ctypes.c_uint64()
    _retry("cpg_initialize", lib.cpg_initialize, ctypes.byref(handle), ctypes.byref(cbs))
    nodeid = ctypes.c_uint()
    _retry("cpg_local_get", lib.cpg_local_get, handle, ctypes.byref(nodeid))
    name = CpgName(len(group.encode()), group.encode())
    _retry("cpg_join", lib.cpg_join, handle, ctypes.byref(name))
    print(f"joined nodeid={nodeid.value} pid={os.getpid()}", flush=True)
    fd = ctypes.c_int()
    _retry("cpg_fd_get", lib.cpg_fd_get, handle, ctypes.byref(fd))
    while True:
        select.select([fd.value], [], [], 1.0)
        rc = lib.cpg_dispatch(handle, CS_DISPATCH_ALL)
        if rc not in (CS_OK, CS_ERR_TRY_AGAIN):
            raise SystemExit(f"cpg-member: cpg_dispatch: cs_error {rc}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "cpg-member":
        cpg_member(sys.argv[2])
    else:
        sys.exit("usage: cluster_lab.py cpg-member GROUP")
