"""test_virtio_migration.py: virtio devices migrate with their in-flight state: blkcheck keeps
every acknowledged generation, netkv keeps serving a checking client across the move."""
import re
import signal
import time

import pytest

from colo_pair import free_port
from harness import QMP, tandem_run, tmpdir
from test_colo_net import MAC, hosts, start_client, stop_client  # noqa: F401


def acks(text):
    return [int(x) for x in re.findall(r"ack gen=(\d+)\n", text)]


def wait_completed(q, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        st = q.cmd("query-migrate").get("status")
        if st == "completed":
            return
        assert st != "failed" and time.monotonic() < deadline, q.cmd("query-migrate")
        time.sleep(0.05)


def test_blkcheck_migrates_with_writes_in_flight(vmenv, procs, tmp_path):
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    d = tmpdir()
    port = free_port()
    src = tandem_run(vmenv, "blkcheck", "--disk", f"path={img}", "--qmp", f"unix:{d}/s.sock",
                     append="flush=8", procs=procs)
    dst = tandem_run(vmenv, "blkcheck", "--disk", f"path={img}", "--qmp", f"unix:{d}/d.sock",
                     "--incoming", f"tcp:127.0.0.1:{port}", append="flush=8", procs=procs)
    sq = QMP(d / "s.sock")
    QMP(d / "d.sock")
    src.wait_for(r"ack gen=\d+\n", timeout=120)
    sq.cmd("migrate", {"uri": f"tcp:127.0.0.1:{port}"})  # the guest keeps writing meanwhile
    wait_completed(sq)
    n = len(dst.text)
    dst.wait_for(r"ack gen=\d+\n", start=n, timeout=120)
    assert "CORRUPT" not in dst.text
    acked = max(acks(src.text) + acks(dst.text))
    dst.kill(signal.SIGKILL)
    src.kill(signal.SIGKILL)
    v = tandem_run(vmenv, "blkcheck", "--disk", f"path={img}", "--no-reboot",
                   append=f"ack={acked} writes=8", procs=procs)
    assert v.wait(120) == 0, v.text
    assert re.search(r"verify ok blocks=\d+ gen=\d+", v.text)


def test_disk_image_lock_follows_the_guest(vmenv, procs, tmp_path):
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    a = tandem_run(vmenv, "blkcheck", "--disk", f"path={img}", procs=procs)
    a.wait_for(r"ack gen=\d+\n", timeout=120)
    b = tandem_run(vmenv, "blkcheck", "--disk", f"path={img}", procs=procs)
    assert b.wait(30) == 2
    assert "in use by another process" in b.text


@pytest.mark.netns
def test_netkv_migrates_mid_run_client_keeps_going(vmenv, procs, hosts):  # noqa: F811
    d = tmpdir()
    net = ("--net", f"tap=tap0,mac={MAC}")
    dst = tandem_run(vmenv, "netkv", *net, "--qmp", f"unix:{d}/d.sock", "--incoming",
                     "tcp:10.77.1.2:4444", append="ip=10.77.0.2/24", procs=procs,
                     netns=f"{hosts}-sec")
    QMP(d / "d.sock")
    src = tandem_run(vmenv, "netkv", *net, "--qmp", f"unix:{d}/s.sock",
                     append="ip=10.77.0.2/24", procs=procs, netns=f"{hosts}-pri")
    sq = QMP(d / "s.sock")
    src.wait_for(r"netkv ready")
    c = start_client(hosts)
    time.sleep(1.5)
    sq.cmd("migrate", {"uri": "tcp:10.77.1.2:4444"})
    wait_completed(sq)
    t = time.time()
    time.sleep(1.5)
    s = stop_client(c, t)
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["answers_after_kill"] > 100, s  # the destination answers after the move
    assert s["no_reply"] == 0, s
