"""test_colo_reprotect.py: re-protection after a failover (docs/colo.md, "Re-protection"): the
survivor starts a new COLO session as primary toward a fresh `--incoming` on the host it lost,
which comes back with its old image; again and again, under load.

  gen 0   A primary, B secondary
  gen 1   kill -9 A; B takes over; A' (--incoming, A's old image) on A's host; B re-protects
  gen 2   kill -9 B; A' takes over; B' (B's old image) on B's host; A' re-protects
  gen 3   ... and once more, then the last primary dies too and its secondary takes over.

netkv runs on the two-host LAN with the model-checked client (0 lost acknowledged writes, 0
contradictions); blkcheck on replicated disks (every acknowledged generation verifies at the
end, and each resync copies only the disk chunks that differ, as the log says). Then the
errors of x-colo-reprotect, and the automatic mode (--colo-reprotect). Every assertion is on
content (events, status, log lines, the disk, the client's model), none on elapsed time.
"""
import re
import signal
import socket
import threading
import time

import pytest

from colo_pair import Pair, free_port
from harness import QMP, tandem_run
from test_colo_net import MAC, NETKV, hosts, start_client, stop_client  # noqa: F401

CAPS = {"capabilities": [{"capability": "x-colo", "state": True},
                         {"capability": "events", "state": True}]}
INFO = {"TANDEM_LOG": "info"}
GENERATIONS = 3
ACK = r"ack gen=(\d+)\n"
HB_MS = 2000


class Node:
    """One host's tandem process in the pair: the process, its QMP, and the host it runs on."""

    def __init__(self, proc, q, host):
        self.proc, self.q, self.host = proc, q, host


class Host:
    """Where a node runs: its replication address (uri), namespace, and what it is started
    with (its disk image stays the host's, across restarts)."""

    def __init__(self, name, uri, extra=(), netns=None):
        self.name, self.uri, self.extra, self.netns = name, uri, tuple(extra), netns
        self.starts = 0


def start_incoming(env, procs, d, host, guest, append, environ=INFO):
    """A fresh `tandem run --incoming` on host, with x-colo set, listening on host.uri."""
    host.starts += 1
    sock = d / f"{host.name}{host.starts}.sock"
    p = tandem_run(env, guest, "--incoming", "defer", "--qmp", f"unix:{sock}", *host.extra,
                   append=append, procs=procs, environ=environ, netns=host.netns)
    q = QMP(sock)
    q.cmd("migrate-set-capabilities", CAPS)
    q.cmd("migrate-incoming", {"uri": host.uri})
    return Node(p, q, host)


def start_primary(env, procs, d, host, guest, append, ready=None, delay_ms=50, extra=()):
    host.starts += 1
    sock = d / f"{host.name}{host.starts}.sock"
    p = tandem_run(env, guest, "--qmp", f"unix:{sock}", *host.extra, *extra, append=append,
                   procs=procs, environ=INFO, netns=host.netns)
    q = QMP(sock)
    if ready:
        p.wait_for(ready, timeout=120)
    q.cmd("migrate-set-capabilities", CAPS)
    # The primary's heartbeat settings are the pair's, and a survivor keeps them for the
    # sessions it starts: a generous timeout keeps a loaded machine's stalls from looking like
    # a lost peer (a kill -9 is seen at once: its connections close).
    q.cmd("migrate-set-parameters", {"x-checkpoint-delay": delay_ms, "x-heartbeat-timeout": HB_MS})
    return Node(p, q, host)


def colo_status(q):
    return q.cmd("query-colo-status")


def wait_protected(pri, sec, checkpoints=5):
    """Both sides in status colo, and the new pair checkpoints."""
    Pair.wait_status(pri.q, "colo", timeout=120)
    Pair.wait_status(sec.q, "colo", timeout=120)
    assert colo_status(pri.q)["mode"] == "primary"
    assert colo_status(sec.q)["mode"] == "secondary"
    deadline = time.monotonic() + 120
    while colo_status(sec.q)["stats"]["checkpoints"] < checkpoints:
        assert time.monotonic() < deadline, colo_status(sec.q)
        assert colo_status(pri.q)["mode"] == "primary", colo_status(pri.q)
        time.sleep(0.05)


def take_over(pri, sec):
    """kill -9 the primary; the secondary takes over and runs."""
    pri.proc.kill(signal.SIGKILL)
    ev = sec.q.wait_event("COLO_EXIT", timeout=60)
    assert ev["data"]["mode"] == "secondary", ev
    deadline = time.monotonic() + 30
    while sec.q.cmd("query-status")["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "took over" in colo_status(sec.q)["last-decision"]


def reprotect(env, procs, d, survivor, lost_host, guest, append):
    """The lost host runs a fresh --incoming (its old image); the survivor re-protects toward
    it. Returns the new secondary and where the survivor's log of this resync begins."""
    new = start_incoming(env, procs, d, lost_host, guest, append)
    mark = len(survivor.proc.text)
    assert survivor.q.cmd("x-colo-reprotect", {"uri": lost_host.uri}) == {}
    wait_protected(survivor, new)
    return new, mark


def acks(text, start=0):
    return [int(x) for x in re.findall(ACK, text[start:])]


@pytest.mark.netns
def test_netkv_three_generations_of_reprotection(vmenv, procs, hosts, tmp_path):  # noqa: F811
    """Under the client's load, the primary dies three times, each time on the host that was
    re-protected last: no acknowledged write is lost, no answer contradicts another."""
    net = ("--net", f"tap=tap0,mac={MAC}")
    ha = Host("a", "tcp:10.77.1.1:4444", net, f"{hosts}-pri")
    hb = Host("b", "tcp:10.77.1.2:4444", net, f"{hosts}-sec")
    guest, append = NETKV["guest"], NETKV["append"]
    sec = start_incoming(vmenv, procs, tmp_path, hb, guest, append)
    pri = start_primary(vmenv, procs, tmp_path, ha, guest, append, ready=NETKV["pri_ready"])
    pri.q.cmd("migrate", {"uri": hb.uri})
    wait_protected(pri, sec)
    c = start_client(hosts)
    try:
        wait_protected(pri, sec, checkpoints=40)
        first_kill = time.time()
        for gen in range(1, GENERATIONS + 1):
            take_over(pri, sec)
            survivor, lost = sec, pri.host
            new, _ = reprotect(vmenv, procs, tmp_path, survivor, lost, guest, append)
            r = survivor.q.cmd("query-migrate")
            assert r["status"] == "colo" and "colo-disk" not in r, r  # no disks here
            pri, sec = survivor, new
            wait_protected(pri, sec, checkpoints=20)
        # the last re-protection protects: its primary dies and its secondary serves on
        take_over(pri, sec)
        time.sleep(2)
    finally:
        s = stop_client(c, first_kill if "first_kill" in locals() else None)
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["no_reply"] == 0, s
    assert s["answers_before_kill"] > 0 and s["answers_after_kill"] > 0, s


BLK_APPEND = "blocks=256 flush=8"  # the blocks span chunks 0-2 of the image's 256
BLK_IMAGE = 16 << 20


def test_blkcheck_three_generations_resync_only_differing_chunks(vmenv, procs, tmp_path):
    """blkcheck writes on; the primary dies three times. Each re-protection's disk sync copies
    only the chunks that differ between the survivor's image and the lost host's old one: a
    few, never none (the guest wrote since the takeover), and the number query-migrate reports
    is the number the log names. At the end every acknowledged generation is on the disk."""
    imgs = {}
    for name in ("a", "b"):
        imgs[name] = tmp_path / f"{name}.img"
        with open(imgs[name], "wb") as f:
            f.truncate(BLK_IMAGE)
    ha = Host("a", f"tcp:127.0.0.1:{free_port()}", ("--disk", f"path={imgs['a']}"))
    hb = Host("b", f"tcp:127.0.0.1:{free_port()}", ("--disk", f"path={imgs['b']}"))
    sec = start_incoming(vmenv, procs, tmp_path, hb, "blkcheck", BLK_APPEND)
    pri = start_primary(vmenv, procs, tmp_path, ha, "blkcheck", BLK_APPEND, delay_ms=100)
    pri.q.cmd("migrate", {"uri": hb.uri})
    wait_protected(pri, sec)
    pri.proc.wait_for(ACK, timeout=300)
    acked = []
    for gen in range(1, GENERATIONS + 1):
        acked += acks(pri.proc.text)
        take_over(pri, sec)
        survivor, lost = sec, pri.host
        # the survivor writes on, unprotected: its image moves away from the lost host's
        at = len(survivor.proc.text)
        survivor.proc.wait_for(ACK, start=at, timeout=300)
        new, mark = reprotect(vmenv, procs, tmp_path, survivor, lost, "blkcheck", BLK_APPEND)
        disk = survivor.q.cmd("query-migrate")["colo-disk"]
        logged = re.findall(r"colo: disk\d+: (\d+) of (\d+) chunks differ",
                            survivor.proc.text[mark:])
        assert len(logged) == 1, survivor.proc.text[mark:]
        assert disk["chunks"] == int(logged[0][1]) == BLK_IMAGE // (64 << 10), disk
        assert disk["chunks-differ"] == int(logged[0][0]), (disk, logged)
        assert 0 < disk["chunks-differ"] < disk["chunks"] // 4, disk
        assert disk["chunks-sent"] >= disk["chunks-differ"], disk
        assert disk["bytes-sent"] >= disk["chunks-differ"] * (64 << 10), disk
        assert disk["bytes-sent"] < disk["chunks"] // 4 * (64 << 10) * 2, disk
        pri, sec = survivor, new
        wait_protected(pri, sec, checkpoints=10)
        at = len(pri.proc.text)
        pri.proc.wait_for(ACK, start=at, timeout=300)  # acknowledged under the new pair
    acked += acks(pri.proc.text)
    take_over(pri, sec)
    at = len(sec.proc.text)
    sec.proc.wait_for(ACK, start=at, timeout=300)
    acked += acks(sec.proc.text)
    sec.proc.kill(signal.SIGKILL)
    for n in procs:
        assert "CORRUPT" not in n.text and "FAIL" not in n.text, n.text[-3000:]
    img = imgs[sec.host.name]
    v = tandem_run(vmenv, "blkcheck", "--disk", f"path={img}", "--no-reboot",
                   append=f"ack={max(acked)} writes=8", procs=procs)
    assert v.wait(300) == 0, v.text
    assert re.search(r"verify ok blocks=256 gen=\d+", v.text), v.text
    assert "CORRUPT" not in v.text


class BlackHole:
    """A listener that accepts one connection and reads it to the end: a migration toward it
    stays in progress (it never answers) until it is cancelled."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(1)
        self.uri = f"tcp:127.0.0.1:{self.s.getsockname()[1]}"
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()

    def _drain(self):
        c, _ = self.s.accept()
        while c.recv(1 << 16):
            pass
        c.close()

    def close(self):
        self.s.close()


def error_of(q, uri):
    r = q.execute("x-colo-reprotect", {"uri": uri})
    assert "error" in r, r
    return r["error"]["desc"]


def test_reprotect_errors(vmenv, procs):
    """x-colo-reprotect refuses, with a reason, a VM that is in COLO, fenced, not running, in
    a migration, or given a bad URI; a refusal or a cancelled attempt changes nothing, and the
    survivor then re-protects."""
    p = Pair(vmenv, procs)
    p.start()
    p.wait_checkpoints(3)
    assert "already in COLO as primary" in error_of(p.pq, "tcp:127.0.0.1:1")
    msg = error_of(p.sq, "tcp:127.0.0.1:1")
    assert "already in COLO as secondary" in msg and "x-colo-lost-heartbeat" in msg, msg
    # a frozen primary finds, when it thaws, that its secondary took over: it is fenced
    p.pri.kill(signal.SIGSTOP)
    assert p.sq.wait_event("COLO_EXIT", timeout=60)["data"]["mode"] == "secondary"
    p.pri.kill(signal.SIGCONT)
    p.pq.wait_event("COLO_EXIT", timeout=60)
    assert colo_status(p.pq)["fenced"] is True
    assert "fenced" in error_of(p.pq, "tcp:127.0.0.1:1")
    assert p.pq.cmd("query-status")["status"] == "paused"
    p.pri.kill(signal.SIGKILL)
    # the survivor: bad URIs, a stopped VM
    q = p.sq
    assert "invalid migration URI" in error_of(q, "bogus")
    assert "tcp: or unix:" in error_of(q, "file:/tmp/tandem-reprotect-snap")
    q.cmd("stop")
    assert "not running" in error_of(q, "tcp:127.0.0.1:1")
    q.cmd("cont")
    # a migration in progress (toward a peer that never answers), then cancelled
    hole = BlackHole()
    try:
        assert q.cmd("x-colo-reprotect", {"uri": hole.uri}) == {}
        msg = error_of(q, "tcp:127.0.0.1:1")
        assert "migration is in progress" in msg, msg
        q.cmd("migrate_cancel")
        deadline = time.monotonic() + 60
        while q.cmd("query-migrate")["status"] not in ("cancelled", "failed"):
            assert time.monotonic() < deadline, q.cmd("query-migrate")
            time.sleep(0.05)
    finally:
        hole.close()
    assert q.cmd("query-status")["status"] == "running"
    assert colo_status(q)["mode"] == "none"
    # and the survivor re-protects toward a real secondary; that pair fails over cleanly
    survivor = Node(p.sec, q, None)
    h = Host("c", f"tcp:127.0.0.1:{free_port()}")
    new = start_incoming(vmenv, procs, p.dir, h, "counter", "")
    assert q.cmd("x-colo-reprotect", {"uri": h.uri}) == {}
    wait_protected(survivor, new)
    assert "already in COLO as primary" in error_of(q, h.uri)
    take_over(survivor, new)
    n = len(new.proc.text)
    new.proc.wait_for(r"tick \d+ chain=", start=n, timeout=60)


def test_automatic_reprotection(vmenv, procs, tmp_path):
    """Both hosts run with --colo-reprotect naming the other's address: after a takeover the
    survivor tries every second (and says so once), and re-protects by itself as soon as the
    lost host's fresh --incoming listens; then again the other way round."""
    pa, pb = free_port(), free_port()
    ha = Host("a", f"tcp:127.0.0.1:{pa}", ("--colo-reprotect", f"tcp:127.0.0.1:{pb}"))
    hb = Host("b", f"tcp:127.0.0.1:{pb}", ("--colo-reprotect", f"tcp:127.0.0.1:{pa}"))
    sec = start_incoming(vmenv, procs, tmp_path, hb, "counter", "")
    pri = start_primary(vmenv, procs, tmp_path, ha, "counter", "", delay_ms=100)
    pri.q.cmd("migrate", {"uri": hb.uri})
    wait_protected(pri, sec)
    waiting = r"colo: re-protect: running unprotected; connecting to (\S+) every second"
    for _ in range(2):
        at = len(sec.proc.text)  # the line may come before take_over() returns
        take_over(pri, sec)
        survivor, lost = sec, pri.host
        survivor.proc.wait_for(waiting, start=at, timeout=30)
        # nobody listens yet: it keeps trying, and logs it once
        time.sleep(3)
        assert survivor.q.cmd("query-migrate")["status"] == "completed"
        assert len(re.findall(waiting, survivor.proc.text[at:])) == 1, survivor.proc.text[at:]
        new = start_incoming(vmenv, procs, tmp_path, lost, "counter", "")
        wait_protected(survivor, new)
        text = survivor.proc.text[at:]
        assert f"colo: re-protect: {lost.uri} accepted" in text, text
        assert len(re.findall(waiting, text)) == 1, text
        pri, sec = survivor, new
    take_over(pri, sec)
    n = len(sec.proc.text)
    sec.proc.wait_for(r"tick \d+ chain=", start=n, timeout=60)
