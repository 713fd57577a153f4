"""test_colo_hybrid.py: hybrid COLO (x-colo-mode hybrid): the SVM runs on mirrored input, the
primary compares the two VMs' output and checkpoints on divergence; netkv over UDP and TCP on a
two-host LAN with the client in its own namespace."""
import json
import signal
import subprocess
import time

import pytest

from colo_pair import Pair
from harness import netlan_up  # noqa: F401
from test_colo_net import MAC, NETKV, ROOT, start_client, stop_client

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
def test_hybrid_udp_primary_killed(vmenv, procs, hosts):
    p = hybrid_pair(vmenv, procs, hosts)
    p.start()
    c = start_client(hosts)
    p.wait_checkpoints(3)
    time.sleep(2)
    t = time.time()
    p.pri.kill(signal.SIGKILL)
    p.sq.wait_event("COLO_EXIT", timeout=30)
    assert p.sq.cmd("query-status")["status"] == "running"
    time.sleep(3)
    s = stop_client(c, t)
    print(s)
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["answers_before_kill"] > 0 and s["answers_after_kill"] > 0, s
    assert s["no_reply"] == 0, s


@pytest.mark.netns
def test_hybrid_udp_secondary_killed(vmenv, procs, hosts):
    p = hybrid_pair(vmenv, procs, hosts)
    p.start()
    c = start_client(hosts)
    p.wait_checkpoints(3)
    p.sec.kill(signal.SIGKILL)
    ev = p.pq.wait_event("COLO_EXIT", timeout=30)
    assert ev["data"] == {"mode": "primary", "reason": "error"}
    time.sleep(3)
    s = stop_client(c)
    print(s)
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["no_reply"] == 0, s
