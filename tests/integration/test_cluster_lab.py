"""test_cluster_lab.py: the three-host Corosync lab (scripts/cluster.sh, cluster_lab.py) does what
tandem's [cluster] tests will rely on: each host's corosync is that host's, quorum follows the
cuts, and a CPG client on a host sees that host's partition.

Hosts: pri (nodeid 1), sec (2), wit (3, the witness); votequorum, expected_votes 3: two hosts
together are quorate, one alone is not. Every assertion is on the quorum states each host
reports (corosync-quorumtool on the host); waits are by content, never by elapsed time.
"""
import re
import subprocess
import sys
import time

import pytest

import cluster_lab

# The lab runs no tandem: one pass is enough (the sanitizer pass skips what is marked slow).
pytestmark = pytest.mark.slow
from cluster_lab import HOSTS, NODEID, lab  # noqa: F401
from harness import Proc

ALL = {h: (True, HOSTS) for h in HOSTS}


def ping(lab, host, ip):
    return subprocess.run(lab.exec_prefix(host) + ["ping", "-c", "1", "-W", "1", ip],
                          capture_output=True, timeout=30).returncode == 0


@pytest.mark.netns
def test_each_host_has_its_own_corosync(lab):
    for h in HOSTS:
        q = lab.wait_quorum(h, True, HOSTS)
        assert q.node_id == NODEID[h], q
        assert q.expected_votes == 3 and q.total_votes == 3, q
    # The client LAN and the replication link are netlan.sh's, untouched by the ring.
    assert ping(lab, "pri", "10.77.1.2") and ping(lab, "sec", "10.77.1.1")
    assert ping(lab, "pri", "10.77.2.3") and ping(lab, "sec", "10.77.2.1")


@pytest.mark.netns
def test_isolate_and_heal(lab):
    lab.isolate("pri")
    lab.wait_all({"pri": (False, ["pri"]), "sec": (True, ["sec", "wit"]),
                  "wit": (True, ["sec", "wit"])})
    assert ping(lab, "pri", "10.77.1.2"), "isolate cut the replication link too"
    lab.heal("pri")
    lab.wait_all(ALL)
    lab.isolate("wit")
    lab.wait_all({"wit": (False, ["wit"]), "pri": (True, ["pri", "sec"]),
                  "sec": (True, ["pri", "sec"])})
    lab.heal("wit")
    lab.wait_all(ALL)


def wait_ring_cut(lab, timeout=90):
    """After cut_ring: exactly one of pri/sec is with the witness, quorate; the other alone,
    inquorate. Returns the one with the witness."""
    deadline = time.monotonic() + timeout
    while True:
        v = lab.quorums()
        for winner, loser in (("pri", "sec"), ("sec", "pri")):
            pair = (NODEID[winner], NODEID["wit"])
            if (v["wit"].ok and v["wit"].quorate and v["wit"].members == pair
                    and v[winner].ok and v[winner].quorate and v[winner].members == pair
                    and v[loser].ok and not v[loser].quorate
                    and v[loser].members == (NODEID[loser],)):
                return winner
        if time.monotonic() > deadline:
            raise AssertionError("no side won the ring cut:\n"
                                 + "\n".join(str(q) for q in v.values())
                                 + f"\nwit's log:\n{lab.log('wit')}")
        time.sleep(0.2)


@pytest.mark.netns
def test_cut_ring_one_side_keeps_the_witness(lab, record_property):
    lab.cut_ring()
    winner = wait_ring_cut(lab)
    record_property("ring_cut_winner", winner)
    print(f"ring cut: {winner} kept the witness")
    # Still only the ring: the replication link is up.
    assert ping(lab, "pri", "10.77.1.2")
    lab.heal_ring()
    lab.wait_all(ALL)


@pytest.mark.netns
def test_witness_down_then_ring_cut_leaves_nobody_quorate(lab):
    lab.stop("wit")
    assert not lab.quorum("wit").ok
    lab.wait_all({"pri": (True, ["pri", "sec"]), "sec": (True, ["pri", "sec"])})
    lab.cut_ring()
    lab.wait_all({"pri": (False, ["pri"]), "sec": (False, ["sec"])})
    lab.heal_ring()
    lab.wait_all({"pri": (True, ["pri", "sec"]), "sec": (True, ["pri", "sec"])})
    lab.start("wit")
    lab.wait_all(ALL)


@pytest.mark.netns
def test_cut_rep_leaves_the_ring(lab):
    lab.cut_rep()
    assert not ping(lab, "pri", "10.77.1.2") and not ping(lab, "sec", "10.77.1.1")
    for h in HOSTS:
        assert lab.wait_quorum(h, True, HOSTS).ok
    lab.heal_rep()
    assert ping(lab, "pri", "10.77.1.2") and ping(lab, "sec", "10.77.1.1")


def cpg_view(member: Proc, nodeids, timeout=60):
    """Wait until member's latest configuration change lists exactly nodeids."""
    want = sorted(nodeids)
    deadline = time.monotonic() + timeout
    while True:
        changes = re.findall(r"^confchg members=(\S*)", member.text, re.M)
        if changes and sorted(int(a.split(":")[0]) for a in changes[-1].split(",")) == want:
            return
        if not member.alive() or time.monotonic() > deadline:
            raise AssertionError(f"cpg member: wanted nodes {want}, got:\n{member.text[-2000:]}")
        time.sleep(0.1)


def cpgtool_nodes(lab, host, group):
    out = subprocess.run(lab.exec_prefix(host) + ["corosync-cpgtool"], capture_output=True,
                         text=True, timeout=30).stdout
    nodes, seen = [], False
    for line in out.splitlines():
        if line == group:
            seen = True
        elif seen and re.match(r"\s+\d+\s+\d+", line):
            nodes.append(int(line.split()[1]))
        elif seen:
            break
    assert seen, f"no group {group} in corosync-cpgtool on {host}:\n{out}"
    return sorted(nodes)


@pytest.mark.netns
def test_cpg_client_sees_its_hosts_partition(lab, procs):
    group = "tandem-lab"
    members = {}
    for h in HOSTS:
        members[h] = Proc(lab.exec_prefix(h) + [sys.executable, cluster_lab.__file__,
                                                 "cpg-member", group])
        procs.append(members[h])
        members[h].wait_for(rf"joined nodeid={NODEID[h]} ")
    for h in HOSTS:
        cpg_view(members[h], [1, 2, 3])
        assert cpgtool_nodes(lab, h, group) == [1, 2, 3]
    lab.isolate("pri")
    cpg_view(members["pri"], [1])
    cpg_view(members["sec"], [2, 3])
    cpg_view(members["wit"], [2, 3])
    assert cpgtool_nodes(lab, "pri", group) == [1]
    assert cpgtool_nodes(lab, "sec", group) == [2, 3]
    lab.heal("pri")
    for h in HOSTS:
        cpg_view(members[h], [1, 2, 3])
