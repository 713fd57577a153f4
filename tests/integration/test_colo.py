"""test_colo.py: COLO periodic mode: pair start-up, checkpoints, failover both ways."""
import re
import signal

from colo_pair import Pair
from harness import ticks


def test_pair_enters_colo_and_checkpoints(vmenv, procs):
    p = Pair(vmenv, procs)
    p.pri.wait_for(r"tick \d+ chain=")
    p.start()
    st = p.wait_checkpoints(5)
    assert st["mode"] == "primary" and st["reason"] == "none"
    s = p.sq.cmd("query-colo-status")
    assert s["mode"] == "secondary"
    assert s["stats"]["checkpoints"] >= 4
    assert p.sq.cmd("query-status")["status"] == "colo"
    assert p.pq.cmd("query-status")["status"] == "running"
    # the secondary's VM never runs between checkpoints
    assert "tick" not in p.sec.text
    assert "CORRUPT" not in p.pri.text


def test_kill_primary_secondary_takes_over(vmenv, procs):
    p = Pair(vmenv, procs)
    p.start()
    p.wait_checkpoints(5)
    last_pri = max(ticks(p.pri.text) or [0])
    p.pri.kill(signal.SIGKILL)
    ev = p.sq.wait_event("COLO_EXIT", timeout=30)
    assert ev["data"]["mode"] == "secondary"
    p.sec.wait_for(r"tick \d+ chain=", timeout=60)
    n = len(p.sec.text)
    p.sec.wait_for(r"tick \d+ chain=", start=n, timeout=60)
    t = ticks(p.sec.text)
    assert t == sorted(t)
    assert "CORRUPT" not in p.sec.text
    st = p.sq.cmd("query-colo-status")
    assert st["mode"] == "none" and st["last-mode"] == "secondary"
    assert p.sq.cmd("query-status")["status"] == "running"
    # it resumed from a checkpoint at most one period behind the primary's last output
    assert min(t) >= last_pri - 4096 * 20 or not last_pri


def test_kill_secondary_primary_continues(vmenv, procs):
    p = Pair(vmenv, procs)
    p.start()
    p.wait_checkpoints(3)
    p.sec.kill(signal.SIGKILL)
    ev = p.pq.wait_event("COLO_EXIT", timeout=30)
    assert ev["data"] == {"mode": "primary", "reason": "error"}
    n = len(p.pri.text)
    p.pri.wait_for(r"tick \d+ chain=", start=n)
    assert p.pq.cmd("query-colo-status")["mode"] == "none"
    assert p.pq.cmd("query-status")["status"] == "running"
    assert "CORRUPT" not in p.pri.text


def test_lost_heartbeat_request_on_secondary(vmenv, procs):
    p = Pair(vmenv, procs)
    p.start()
    p.wait_checkpoints(3)
    p.pri.kill(signal.SIGSTOP)  # a hung primary: only the timeout can find it
    try:
        ev = p.sq.wait_event("COLO_EXIT", timeout=30)
        assert ev["data"]["mode"] == "secondary"
        p.sec.wait_for(r"tick \d+ chain=", timeout=60)
        assert "CORRUPT" not in p.sec.text
    finally:
        p.pri.kill(signal.SIGKILL)


def test_x_colo_lost_heartbeat_on_primary(vmenv, procs):
    p = Pair(vmenv, procs)
    p.start()
    p.wait_checkpoints(3)
    p.pq.cmd("x-colo-lost-heartbeat")
    ev = p.pq.wait_event("COLO_EXIT", timeout=30)
    assert ev["data"] == {"mode": "primary", "reason": "request"}
    n = len(p.pri.text)
    p.pri.wait_for(r"tick \d+ chain=", start=n)


def test_colo_refused_without_capability_on_secondary(vmenv, procs):
    from harness import QMP, tandem_run, tmpdir
    from colo_pair import free_port
    d = tmpdir()
    port = free_port()
    sec = tandem_run(vmenv, "counter", "--incoming", f"tcp:127.0.0.1:{port}", "--qmp",
                     f"unix:{d}/s.sock", procs=procs)
    QMP(d / "s.sock")
    pri = tandem_run(vmenv, "counter", "--qmp", f"unix:{d}/p.sock", procs=procs)
    pq = QMP(d / "p.sock")
    pq.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "x-colo", "state": True}]})
    pq.cmd("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    Pair.wait_status(pq, "failed")
    assert sec.wait(30) != 0
    assert re.search(r"x-colo is not set", sec.text)
    n = len(pri.text)
    pri.wait_for(r"tick \d+ chain=", start=n)


def test_initial_disk_sync_copies_only_what_differs(vmenv, procs, tmp_path):
    import hashlib
    import os
    pri_img, sec_img = tmp_path / "pri.img", tmp_path / "sec.img"
    data = bytearray(os.urandom(8 << 20))
    pri_img.write_bytes(data)
    data[0:65536] = bytes(65536)        # chunk 0 differs
    data[(5 << 20) + 7] ^= 0xFF         # and one byte deep inside chunk 80
    sec_img.write_bytes(data)
    p = Pair(vmenv, procs, pri_extra=("--disk", f"path={pri_img}"),
             sec_extra=("--disk", f"path={sec_img}"),
             pri_env={"TANDEM_LOG": "info"})
    p.start()
    p.wait_checkpoints(2)
    assert "2 of 128 chunks differ" in p.pri.text
    h = lambda f: hashlib.sha256(f.read_bytes()).hexdigest()  # noqa: E731
    assert h(pri_img) == h(sec_img)


def test_disk_size_mismatch_fails_cleanly(vmenv, procs, tmp_path):
    pri_img, sec_img = tmp_path / "pri.img", tmp_path / "sec.img"
    pri_img.write_bytes(bytes(4 << 20))
    sec_img.write_bytes(bytes(2 << 20))
    p = Pair(vmenv, procs, pri_extra=("--disk", f"path={pri_img}"),
             sec_extra=("--disk", f"path={sec_img}"))
    p.pq.cmd("migrate", {"uri": p.uri})
    Pair.wait_status(p.pq, "failed")
    assert "does not match" in p.pq.cmd("query-migrate")["error-desc"]
    n = len(p.pri.text)
    p.pri.wait_for(r"tick \d+ chain=", start=n)


def test_protocol_conformance_recorded_exchange(vmenv, procs):
    """Both sides' message logs show the seven codes in the seeds' order, checkpoint after
    checkpoint."""
    dbg = {"TANDEM_LOG": "debug"}
    p = Pair(vmenv, procs, pri_env=dbg, sec_env=dbg)
    p.start()
    p.wait_checkpoints(5)
    p.wait_checkpoints(5, q=p.sq)
    rx = re.compile(r"colo: (send|receive) '([a-z-]+)'")
    pri = [m.groups() for m in rx.finditer(p.pri.text)]
    sec = [m.groups() for m in rx.finditer(p.sec.text)]
    one_p = [("send", "checkpoint-request"), ("receive", "checkpoint-reply"),
             ("send", "vmstate-send"), ("send", "vmstate-size"),
             ("receive", "vmstate-received"), ("receive", "vmstate-loaded")]
    one_s = [("receive", "checkpoint-request"), ("send", "checkpoint-reply"),
             ("receive", "vmstate-send"), ("receive", "vmstate-size"),
             ("send", "vmstate-received"), ("send", "vmstate-loaded")]
    assert pri[0] == ("receive", "checkpoint-ready")
    assert sec[0] == ("send", "checkpoint-ready")
    for log, one in ((pri[1:], one_p), (sec[1:], one_s)):
        full = len(log) // 6
        assert full >= 4
        assert log[:full * 6] == one * full
