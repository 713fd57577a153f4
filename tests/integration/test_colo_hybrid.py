"""test_colo_hybrid.py: hybrid COLO (x-colo-mode hybrid): the SVM runs on mirrored input, the
primary compares the two VMs' output and checkpoints on divergence; netkv over UDP and TCP on a
two-host LAN with the client in its own namespace."""
import json
import re
import shutil
import signal
import subprocess
import time

import pytest

from colo_pair import Pair
from conftest import _need
from harness import netlan_up  # noqa: F401
from test_colo_net import MAC, NETKV, ROOT, stop_client
from test_colo_safety import blkcheck_pair

HYBRID = {"x-colo-mode": "hybrid"}


@pytest.fixture
def hosts(vmenv, procs):
    yield from netlan_up("th", procs, "--hosts")


def hybrid_pair(env, procs, lan, delay_ms=1000, append=None, **kw):
    net = ("--net", f"tap=tap0,mac={MAC}")
    spec = dict(NETKV)
    if append:
        spec["append"] = spec["append"] + " " + append
    return Pair(env, procs, delay_ms=delay_ms, uri="tcp:10.77.1.2:4444", pri_netns=f"{lan}-pri",
                sec_netns=f"{lan}-sec", extra=net, params=HYBRID, **spec, **kw)


def start_client(lan, mode="--udp"):
    """scripts/demo_client.py in the client namespace: a model-checked load until stdin closes
    (--tcp: one TCP connection for its whole life; --both: UDP and that connection at random)."""
    return subprocess.Popen(["ip", "netns", "exec", f"{lan}-cli", "/usr/bin/python3",
                             str(ROOT / "scripts" / "demo_client.py"), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def load_run(p, lan, seconds=12):
    """A --both load for `seconds`; the client's summary (checked: nothing contradicted, every
    request answered, the TCP connection never lost) and the primary's status."""
    c = start_client(lan, "--both")
    time.sleep(seconds)
    s = stop_client(c)
    st, hy, by = hybrid_stats(p.pq)
    print(json.dumps(s), json.dumps(st["stats"]))
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["no_reply"] == 0 and s["tcp"]["same_connection"], s
    return s, hy, by


def hybrid_stats(q):
    st = q.cmd("query-colo-status")
    return st, st["stats"].get("hybrid", {}), st["stats"]["checkpoints-by-cause"]


@pytest.mark.netns
def test_hybrid_udp_smoke(vmenv, procs, hosts):
    p = hybrid_pair(vmenv, procs, hosts)
    p.start()
    assert p.pq.cmd("query-migrate-parameters")["x-colo-mode"] == "hybrid"
    c = start_client(hosts)
    time.sleep(8)
    s = stop_client(c)
    st, hy, by = hybrid_stats(p.pq)
    print(json.dumps(st, indent=1))
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["no_reply"] == 0, s
    assert hy["matched"] > 0, hy


@pytest.mark.netns
def test_hybrid_secondary_killed_primary_carries_on(vmenv, procs, hosts):
    p = hybrid_pair(vmenv, procs, hosts)
    p.start()
    c = start_client(hosts, "--both")
    p.wait_checkpoints(3)
    p.sec.kill(signal.SIGKILL)
    ev = p.pq.wait_event("COLO_EXIT", timeout=30)
    assert ev["data"] == {"mode": "primary", "reason": "error"}
    time.sleep(3)
    s = stop_client(c)
    print(s)
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["no_reply"] == 0, s
    assert s["tcp"]["same_connection"], s


@pytest.mark.netns
def test_hybrid_udp_and_tcp_under_load(vmenv, procs, hosts):
    """UDP and one TCP connection at random under load: nothing lost or contradicted, the
    output is released by comparison, and checkpoints are mostly the periodic ones."""
    p = hybrid_pair(vmenv, procs, hosts, delay_ms=500)
    p.start()
    s, hy, by = load_run(p, hosts)
    assert s["ops"] > 200, s
    assert hy["matched"] > s["ops"] // 2, hy
    total = sum(by.values())
    assert total >= 10 and by["periodic"] * 2 > total, by


@pytest.mark.netns
def test_hybrid_divergence_checkpoints(vmenv, procs, hosts):
    """diverge=N: one reply in N carries the guest's RDTSC; each such reply differs between
    the VMs, and each difference is a mismatch checkpoint."""
    p = hybrid_pair(vmenv, procs, hosts, delay_ms=3000, append="diverge=10")
    p.start()
    s, hy, by = load_run(p, hosts)
    n = s["nonces"]
    assert n >= 10, s
    # the client saw n diverged replies; each made a mismatch checkpoint (replies the client
    # did not wait for, e.g. to a UDP re-send, may add a few)
    assert 0.7 * n <= by["mismatch"] <= 1.3 * n + 3, (n, by)
    assert hy["mismatches"] >= by["mismatch"], hy


@pytest.mark.netns
@pytest.mark.parametrize("mode", ["--udp", "--tcp"])
def test_hybrid_primary_killed_client_carries_on(vmenv, procs, hosts, mode):
    """kill -9 of the primary under load: the secondary's VM runs on (no rollback); over TCP the
    client's one connection carries on: no reconnect, no lost or contradicted write."""
    p = hybrid_pair(vmenv, procs, hosts)
    p.start()
    c = start_client(hosts, mode)
    p.wait_checkpoints(3)
    time.sleep(1.5)  # requests flowing in the new epoch
    t = time.time()
    p.pri.kill(signal.SIGKILL)
    p.sq.wait_event("COLO_EXIT", timeout=30)
    assert p.sq.cmd("query-status")["status"] == "running"
    time.sleep(4)
    s = stop_client(c, t)
    print(s)
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["no_reply"] == 0, s
    assert s["answers_before_kill"] > 0 and s["answers_after_kill"] > 0, s
    if mode == "--tcp":
        assert s["tcp"]["same_connection"], s


def capture(lan):
    _need("tcpdump", shutil.which("tcpdump") is not None)
    return subprocess.Popen(["ip", "netns", "exec", f"{lan}-cli", "tcpdump", "-i", "cli0", "-n",
                             "-tt", "-l", "-U", "-v",
                             "src host 10.77.0.2 and (src port 7000 or src port 7001)"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


@pytest.mark.netns
def test_hybrid_every_reply_produced_by_svm_or_covered(vmenv, procs, hosts):
    """A capture in the client namespace: every frame the VM sent the client is in the
    primary's compare log either as released by the compare (the SVM produced the same) or as
    held for checkpoint N, and then it reached the wire only after checkpoint N was received."""
    pcap = capture(hosts)
    try:
        p = hybrid_pair(vmenv, procs, hosts, delay_ms=1000, append="diverge=7",
                        pri_env={"TANDEM_LOG": "debug"})
        p.start()
        time.sleep(0.5)  # tcpdump is up
        c = start_client(hosts, "--both")
        time.sleep(8)
        s = stop_client(c)
        time.sleep(0.5)
    finally:
        pcap.send_signal(signal.SIGINT)
        out = pcap.communicate(timeout=30)[0]
    assert s["ncontradictions"] == 0 and s["no_reply"] == 0, s
    received = {int(n): int(t) / 1e6 for n, t in
                re.findall(r"colo: checkpoint (\d+) received at (\d+)", p.pri.text)}
    log = {}
    for m in re.finditer(r"nic 0 out id (\d+) len (\d+): (compare released it|held for "
                         r"checkpoint (\d+))", p.pri.text):
        ck = int(m.group(4)) if m.group(4) else None
        log.setdefault((int(m.group(1)), int(m.group(2))), []).append(ck)
    # tcpdump -v: "T IP (tos 0x0, ttl 64, id N, offset 0, flags [..], proto P, length L)"
    pkts = [(float(t), int(i), int(n) + 14) for t, i, n in
            re.findall(r"^(\d+\.\d+) IP \(.*?\bid (\d+),.*?\blength (\d+)\)", out, re.M)]
    assert len(pkts) > 200, out[-2000:]
    by_compare = by_ckpt = 0
    for t, ipid, flen in pkts:
        ways = log.get((ipid, flen))
        assert ways, f"frame id {ipid} len {flen} at {t:.6f} is not in the compare log"
        ck = ways.pop(0)
        if ck is None:
            by_compare += 1
            continue
        assert ck in received, f"frame id {ipid} left for checkpoint {ck}, never received"
        assert t >= received[ck], (f"frame id {ipid} on the wire at {t:.6f}, before checkpoint "
                                   f"{ck} was received at {received[ck]:.6f}")
        by_ckpt += 1
    print(f"{len(pkts)} frames: {by_compare} released by the compare, {by_ckpt} by checkpoints")
    assert by_compare > 100 and by_ckpt >= 5, (by_compare, by_ckpt)


@pytest.mark.netns
def test_hybrid_failover_keeps_rewriting_a_connection_opened_since_the_checkpoint(
        vmenv, procs, hosts):
    """A connection opened after the last checkpoint has the SVM's own sequence numbers,
    offset from the PVM's that the client knows: after kill -9 of the primary the secondary
    goes on rewriting it (its client acks in, its sequence numbers out), and it carries on."""
    p = hybrid_pair(vmenv, procs, hosts, delay_ms=600000)  # no periodic checkpoint in the test
    p.start()
    c = start_client(hosts, "--tcp")
    deadline = time.monotonic() + 30
    while True:
        st = p.sq.cmd("query-colo-status")["stats"]["hybrid"]
        if st["rewrite-connections"] >= 1 and st["rewritten-out"] > 100:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    assert p.pq.cmd("query-colo-status")["stats"]["checkpoints"] == 0
    t = time.time()
    p.pri.kill(signal.SIGKILL)
    p.sq.wait_event("COLO_EXIT", timeout=30)
    time.sleep(4)
    s = stop_client(c, t)
    after = p.sq.cmd("query-colo-status")["stats"]["hybrid"]
    print(s, after)
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["tcp"]["same_connection"] and s["no_reply"] == 0, s
    assert s["answers_after_kill"] > 100, s
    assert after["rewritten-out"] > st["rewritten-out"] + 100, (st, after)


@pytest.mark.netns
def test_hybrid_malformed_link_record_primary_leaves_cleanly(vmenv, procs, hosts):
    """The secondary sends a frame-link record of an unknown kind (fault injection): the
    primary closes the link, says why, leaves COLO by the policy (the secondary hears it and
    disarms) and serves on; the client loses nothing."""
    p = hybrid_pair(vmenv, procs, hosts, delay_ms=300,
                    sec_env={"TANDEM_COLO_FAULT": "s-link-send:2:badmsg"})
    p.start()
    c = start_client(hosts, "--both")
    ev = p.pq.wait_event("COLO_EXIT", timeout=60)
    assert ev["data"] == {"mode": "primary", "reason": "error"}, ev
    time.sleep(2)
    s = stop_client(c)
    print(s)
    assert "malformed record" in p.pri.text and "frame link broke" in p.pri.text, p.pri.text[-3000:]
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["no_reply"] == 0 and s["tcp"]["same_connection"], s
    assert s["ops"] > 100, s
    sec = p.sq.cmd("query-colo-status")
    assert not sec["armed"], sec


def test_hybrid_parameters_and_refusals(vmenv, procs, tmp_path):
    """x-colo-mode is a string parameter ("periodic" by default); anything else is refused and
    changes nothing. A hybrid pair with a disk is refused with a clear error (the running SVM
    would write its image) and the primary runs on."""
    p, _ = blkcheck_pair(vmenv, procs, tmp_path)
    q = p.pq
    assert q.cmd("query-migrate-parameters")["x-colo-mode"] == "periodic"
    for bad in ("Hybrid", 1, "", None):
        e = q.execute("migrate-set-parameters", {"x-colo-mode": bad, "x-compare-timeout": 50})
        assert "error" in e and "x-colo-mode" in e["error"]["desc"], e
    params = q.cmd("query-migrate-parameters")
    assert params["x-colo-mode"] == "periodic" and params["x-compare-timeout"] == 200, params
    e = q.execute("migrate-set-parameters", {"x-compare-timeout": 5})
    assert "error" in e, e
    q.cmd("migrate-set-parameters", {"x-colo-mode": "hybrid", "x-compare-timeout": 300})
    assert q.cmd("query-migrate-parameters")["x-compare-timeout"] == 300
    p.start(wait=False)
    deadline = time.monotonic() + 30
    while q.cmd("query-migrate")["status"] != "failed":
        assert time.monotonic() < deadline, q.cmd("query-migrate")
        time.sleep(0.05)
    assert "does not support disks" in q.cmd("query-migrate")["error-desc"]
    assert q.cmd("query-status")["status"] == "running"
