"""test_cluster.py: cluster mode (--cluster corosync): quorum from a real three-node Corosync
(the two VM hosts and a witness, scripts/cluster.sh) decides which side of a COLO pair serves.

A partition isolates one VM host from the corosync ring (both its links: corosync does not
settle a cut between two nodes that both still see the third, see cluster_lab.py) and cuts the
replication link, so the pair loses each other entirely; the client still reaches both hosts'
taps. The majority side is the witness plus one VM host. Exactly one side serves: the client
(model-checked netkv load from the client namespace) never sees a contradiction and never loses
an acknowledged write. With the witness down as well nobody has quorum: the secondary does not
take over and the primary, inquorate, pauses. Assertions are on content (status, events,
decisions, the client's model), never on elapsed time.
"""
import signal
import time

import pytest

from cluster_lab import lab  # noqa: F401  (fixture)
from test_colo_partition import LoadClient, both, netkv_pair, status, wait_until

CLUSTER = ("--cluster", "corosync,group=vm1")


def start(vmenv, procs, lab):  # noqa: F811
    p = netkv_pair(vmenv, procs, lab.name, extra=CLUSTER)
    p.start()
    p.wait_checkpoints(5)
    for q in (p.pq, p.sq):
        cl = q.cmd("query-colo-status")["cluster"]
        assert cl["quorate"] and cl["members"] == 2, cl
    c = LoadClient(lab.name)
    c.wait_answers(20)
    return p, c


def finish(c):
    res = c.stop()
    assert res["ncontradictions"] == 0, res["contradictions"]
    return res


def serving(q):
    return status(q) == "running"


@pytest.mark.netns
def test_cluster_primary_isolated_secondary_serves(vmenv, procs, lab):  # noqa: F811
    p, c = start(vmenv, procs, lab)
    try:
        c.mark(time.time())
        lab.cut_rep()
        lab.isolate("pri")
        seen = wait_until("the secondary serving and the primary paused",
                          lambda: (serving(p.sq) and status(p.pq) == "paused", both(p)),
                          timeout=60)
        assert seen["primary"]["colo"]["fenced"] is True, seen
        assert "quorum" in p.pri.text, p.pri.text[-3000:]
        assert "is out of it" in p.sec.text
        c.wait_answers(40)
    finally:
        res = finish(c)
    assert res["answers_after_kill"] > 0
    assert status(p.pq) == "paused"  # still: it never came back on its own


@pytest.mark.netns
def test_cluster_secondary_isolated_primary_serves(vmenv, procs, lab):  # noqa: F811
    p, c = start(vmenv, procs, lab)
    try:
        c.mark(time.time())
        lab.cut_rep()
        lab.isolate("sec")
        wait_until("the primary out of COLO and serving",
                   lambda: (p.pq.cmd("query-colo-status")["mode"] == "none"
                            and serving(p.pq), both(p)), timeout=60)
        st = wait_until("the secondary disarmed",
                        lambda: (p.sq.cmd("query-colo-status")["armed"] is False, both(p)),
                        timeout=60)
        assert st["secondary"]["status"] != "running", st
        assert "no quorum" in st["secondary"]["colo"]["last-decision"], st
        n = len(c.lines)
        c.wait_answers(40)
        assert len(c.lines) >= n
    finally:
        res = finish(c)
    assert status(p.sq) != "running"


@pytest.mark.netns
def test_cluster_no_witness_nobody_takes_over(vmenv, procs, lab):  # noqa: F811
    lab.stop("wit")
    lab.wait_quorum("pri", True, 2)
    lab.wait_quorum("sec", True, 2)
    p, c = start(vmenv, procs, lab)
    try:
        lab.cut_rep()
        lab.isolate("pri")
        st = wait_until("the primary paused and the secondary disarmed",
                        lambda: (status(p.pq) == "paused"
                                 and p.sq.cmd("query-colo-status")["armed"] is False,
                                 both(p)), timeout=90)
        assert st["primary"]["colo"]["fenced"] is True, st
        assert st["secondary"]["status"] != "running", st
    finally:
        finish(c)
    assert status(p.sq) != "running" and status(p.pq) == "paused"


@pytest.mark.netns
def test_cluster_kill_primary_with_quorum_takes_over(vmenv, procs, lab):  # noqa: F811
    p, c = start(vmenv, procs, lab)
    try:
        c.mark(time.time())
        p.pri.kill(signal.SIGKILL)
        ev = p.sq.wait_event("COLO_EXIT", timeout=60)
        assert ev["data"]["mode"] == "secondary"
        wait_until("the secondary serving", lambda: (serving(p.sq), status(p.sq)), timeout=60)
        assert "is out of it" in p.sec.text
        c.wait_answers(40)
    finally:
        res = finish(c)
    assert res["answers_after_kill"] > 0
