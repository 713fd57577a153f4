"""test_colo_safety.py: the failover policy at COLO's edges (docs/colo.md, "Failover policy"):
a secondary that was left behind never takes over by itself, the heartbeat is authenticated,
settled by the primary and read before it is judged, a frozen primary releases nothing after a
takeover, a standby refuses what would make it diverge, and the heartbeat ends with its session.

Every test asserts on content (events, status, console ticks, log lines), never on elapsed time.
"""
import os
import signal
import socket
import time

import pytest

from colo_pair import Pair
from harness import ticks

HB_FAULTS = ["p-before-send:4:corrupt", "p-before-size:4:corrupt", "p-before-request:4:badmsg",
             "p-mid-devbuf:4:truncate"]


def colo_status(q):
    return q.cmd("query-colo-status")


def assert_never_takes_over(p, settle=1.0):
    """The secondary holds still: no guest output, not running. Absence needs a little time."""
    time.sleep(settle)
    assert "tick" not in p.sec.text
    assert p.sq.cmd("query-status")["status"] != "running"


def assert_runs_on(proc, q):
    n = len(proc.text)
    proc.wait_for(r"tick \d+ chain=", start=n, timeout=60)
    assert q.cmd("query-status")["status"] == "running"
    t = ticks(proc.text)
    assert t == sorted(t) and "CORRUPT" not in proc.text


def wait_disarmed(p):
    p.sec.wait_for(r"disarmed", timeout=30)
    st = colo_status(p.sq)
    assert st["armed"] is False and st["unusable"] is False, st
    return st


@pytest.mark.parametrize("fault", HB_FAULTS)
def test_rejected_checkpoint_disarms_the_secondary(vmenv, procs, fault):
    """Defect 1: checkpoint 4 is rejected; the primary runs on unprotected. Its later death
    must not roll the VM back to checkpoint 3: the secondary is disarmed and only an operator's
    forced request takes over from that old state."""
    p = Pair(vmenv, procs, pri_env={"TANDEM_COLO_FAULT": fault})
    p.start(wait=False)
    pe = p.pq.wait_event("COLO_EXIT", timeout=30)
    assert pe["data"] == {"mode": "primary", "reason": "error"}
    se = p.sq.wait_event("COLO_EXIT", timeout=30)
    assert se["data"] == {"mode": "secondary", "reason": "error"}
    st = wait_disarmed(p)
    assert st["stats"]["checkpoints"] == 3 and st["last-good-checkpoint"] == 3, st
    assert "left COLO" in st["last-decision"]
    pst = colo_status(p.pq)
    assert "acknowledged" in pst["last-decision"], pst  # so its held output was released
    assert_runs_on(p.pri, p.pq)
    # The primary dies an hour later (here: now). The secondary does not resume old state.
    p.pri.kill(signal.SIGKILL)
    assert_never_takes_over(p)
    r = p.sq.execute("x-colo-lost-heartbeat")
    assert "error" in r and "disarmed" in r["error"]["desc"], r
    assert "tick" not in p.sec.text
    # An operator may still force it, knowingly.
    p.sq.cmd("x-colo-lost-heartbeat", {"force": True})
    assert_runs_on(p.sec, p.sq)
    assert "forced" in colo_status(p.sq)["last-decision"]


def test_lost_heartbeat_request_on_primary_disarms_the_secondary(vmenv, procs):
    """Defect 1: x-colo-lost-heartbeat on the primary leaves COLO; the secondary is told."""
    p = Pair(vmenv, procs)
    p.start()
    p.wait_checkpoints(3)
    p.pq.cmd("x-colo-lost-heartbeat")
    assert p.pq.wait_event("COLO_EXIT")["data"] == {"mode": "primary", "reason": "request"}
    wait_disarmed(p)
    p.pri.kill(signal.SIGKILL)
    assert_never_takes_over(p)


def test_heartbeat_thread_stall_is_not_a_dead_primary(vmenv, procs):
    """Defect 4 (read first): the secondary's heartbeat thread alone stalls past the timeout
    while the primary beats on. The beats queued meanwhile prove the primary alive: the
    secondary must not take over (the old loop judged the timeout first and split the brain).
    Its own stall means the primary gave up on it: it stands by, disarmed."""
    p = Pair(vmenv, procs, sec_env={"TANDEM_COLO_FAULT": "hb-beat:30:sleep1500"})
    p.start()
    p.sec.wait_for(r"woke at hb-beat", timeout=60)
    wait_disarmed(p)
    assert_runs_on(p.pri, p.pq)
    assert_never_takes_over(p)


def test_primary_heartbeat_stall_leaves_one_vm_running(vmenv, procs):
    """Defect 4: the primary's heartbeat thread stalls: the secondary takes over (it cannot
    tell), and the primary, seeing its own stall and the TAKEOVER, pauses: one VM runs."""
    p = Pair(vmenv, procs, pri_env={"TANDEM_COLO_FAULT": "hb-beat:30:sleep1500"})
    p.start()
    assert p.sq.wait_event("COLO_EXIT", timeout=60)["data"]["mode"] == "secondary"
    assert_runs_on(p.sec, p.sq)
    p.pq.wait_event("COLO_EXIT", timeout=60)
    st = colo_status(p.pq)
    assert st["fenced"] is True, st
    assert p.pq.cmd("query-status")["status"] == "paused"


def test_heartbeat_settings_are_the_primarys(vmenv, procs):
    """Defect 4: the interval and timeout travel in the stream; the secondary adopts them."""
    p = Pair(vmenv, procs)
    p.sq.cmd("migrate-set-parameters", {"x-heartbeat-interval": 400, "x-heartbeat-timeout": 9000})
    p.pq.cmd("migrate-set-parameters", {"x-heartbeat-interval": 40, "x-heartbeat-timeout": 350})
    p.start()
    par = p.sq.cmd("query-migrate-parameters")
    assert par["x-heartbeat-interval"] == 40 and par["x-heartbeat-timeout"] == 350, par
    # and they are what the secondary acts on: a frozen primary is found by 350 ms, not 9 s
    p.pri.kill(signal.SIGSTOP)
    try:
        assert p.sq.wait_event("COLO_EXIT", timeout=8)["data"]["mode"] == "secondary"
    finally:
        p.pri.kill(signal.SIGKILL)


def test_heartbeat_refuses_a_stranger(vmenv, procs):
    """Defect 4: anyone can connect to the secondary's port. A connection that cannot prove the
    session's token is refused, and the real primary's heartbeat is still accepted."""
    p = Pair(vmenv, procs, pri_env={"TANDEM_COLO_FAULT": "p-handover:0:sleep1500"})
    p.pq.cmd("migrate", {"uri": p.uri})
    p.pri.wait_for(r"fault injection: sleep at p-handover", timeout=60)
    host, port = p.uri.split(":")[1:]
    s = socket.create_connection((host, int(port)))
    s.sendall(b"HBHL" + b"\0\0\0\1" + os.urandom(32) + b"not the primary" * 8)
    p.sec.wait_for(r"refused a heartbeat connection", timeout=30)
    s.close()
    p.pri.wait_for(r"fault injection: woke at p-handover", timeout=60)
    deadline = time.monotonic() + 30
    while colo_status(p.pq)["mode"] != "primary" and time.monotonic() < deadline:
        time.sleep(0.05)
    p.wait_checkpoints(3)
    p.wait_checkpoints(3, q=p.sq)
    assert colo_status(p.sq)["mode"] == "secondary"


def test_frozen_primary_releases_nothing_after_a_takeover(vmenv, procs):
    """Defect 4: SIGSTOP the primary; the secondary takes over. When the primary thaws, the
    output it held (the secondary never had that state) must never appear, and it must not
    serve on: it reads TAKEOVER and pauses."""
    p = Pair(vmenv, procs)
    p.start()
    p.wait_checkpoints(3)
    p.pri.kill(signal.SIGSTOP)
    assert p.sq.wait_event("COLO_EXIT", timeout=60)["data"]["mode"] == "secondary"
    assert_runs_on(p.sec, p.sq)
    p.pri.kill(signal.SIGCONT)
    p.pq.wait_event("COLO_EXIT", timeout=60)
    st = colo_status(p.pq)
    assert st["fenced"] is True and "took over" in st["last-decision"], st
    assert p.pq.cmd("query-status")["status"] == "paused"
    shown, theirs = ticks(p.pri.text), ticks(p.sec.text)
    if shown:
        assert max(shown) < min(theirs), (max(shown), min(theirs))


def hb_threads(pid):
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                n += f.read().strip() == "colo/hb"
        except FileNotFoundError:
            pass
    return n


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_heartbeat_ends_with_its_session_and_a_second_session_starts(vmenv, procs):
    """Defect 9: leaving COLO stops the heartbeat (thread joined, fds closed); a second
    `migrate` to a new secondary starts a fresh one, with no spurious failover."""
    p = Pair(vmenv, procs)
    pid = p.pri.p.pid
    base = nfds(pid)
    p.start()
    p.wait_checkpoints(2)
    assert hb_threads(pid) == 1
    p.pq.cmd("x-colo-lost-heartbeat")
    p.pq.wait_event("COLO_EXIT")
    wait_disarmed(p)
    deadline = time.monotonic() + 30
    while (hb_threads(pid) or nfds(pid) > base) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hb_threads(pid) == 0 and nfds(pid) <= base, (hb_threads(pid), nfds(pid), base)
    # The secondary's heartbeat ended too.
    deadline = time.monotonic() + 30
    while hb_threads(p.sec.p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hb_threads(p.sec.p.pid) == 0
    # Re-protect by hand: a new secondary, the same primary.
    p.sec.kill(signal.SIGKILL)
    from colo_pair import free_port
    from harness import QMP, tandem_run
    port = free_port()
    sec2 = tandem_run(vmenv, "counter", "--incoming", "defer", "--qmp",
                      f"unix:{p.dir}/sec2.sock", procs=procs)
    sq2 = QMP(p.dir / "sec2.sock")
    sq2.cmd("migrate-set-capabilities",
            {"capabilities": [{"capability": "x-colo", "state": True},
                              {"capability": "events", "state": True}]})
    sq2.cmd("migrate-incoming", {"uri": f"tcp:127.0.0.1:{port}"})
    p.pq.cmd("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    Pair.wait_status(p.pq, "colo")
    n0 = colo_status(p.pq)["stats"]["checkpoints"]
    p.wait_checkpoints(n0 + 5)
    assert hb_threads(pid) == 1
    assert colo_status(sq2)["mode"] == "secondary" and colo_status(p.pq)["mode"] == "primary"
    # and the new pair works: kill the primary, the new secondary takes over
    p.pri.kill(signal.SIGKILL)
    assert sq2.wait_event("COLO_EXIT", timeout=60)["data"]["mode"] == "secondary"
    assert_runs_on(sec2, sq2)


def test_standby_refuses_cont_and_system_reset(vmenv, procs):
    """Defect 7: a standby secondary runs only by taking over."""
    p = Pair(vmenv, procs)
    p.start()
    p.wait_checkpoints(2, q=p.sq)
    for cmd in ("cont", "system_reset"):
        r = p.sq.execute(cmd)
        assert "error" in r and "COLO secondary" in r["error"]["desc"], (cmd, r)
    p.wait_checkpoints(colo_status(p.sq)["stats"]["checkpoints"] + 2, q=p.sq)
    assert "tick" not in p.sec.text
    p.pri.kill(signal.SIGKILL)
    assert_runs_on(p.sec, p.sq)


def test_system_reset_waits_for_the_checkpoint(vmenv, procs):
    """Defect 7: a reset requested while checkpoint 4 is being captured (the capture is held
    for a while by fault injection) happens after it, never inside it; the pair goes on and
    the secondary takes over from a consistent state."""
    p = Pair(vmenv, procs, pri_env={"TANDEM_COLO_FAULT": "p-paused:4:sleep1000",
                                    "TANDEM_LOG": "info"})
    p.start()
    p.pri.wait_for(r"fault injection: sleep at p-paused of checkpoint 4", timeout=60)
    p.pq.cmd("system_reset")
    slept = p.pri.wait_for(r"fault injection: sleep at p-paused of checkpoint 4").start()
    woke = p.pri.wait_for(r"fault injection: woke at p-paused of checkpoint 4").start()
    reset = p.pri.wait_for(r"vm: system reset", start=slept).start()
    assert reset > woke, p.pri.text[slept:reset + 40]
    n = colo_status(p.pq)["stats"]["checkpoints"]
    p.wait_checkpoints(n + 3)
    p.pri.kill(signal.SIGKILL)
    assert_runs_on(p.sec, p.sq)


def test_secondary_counts_dirty_pages_and_primary_status_stays_completed(vmenv, procs):
    """Defect 12: the secondary's last-dirty-pages is the checkpoint's, not 0; after COLO the
    primary's migration status is completed and stays so."""
    p = Pair(vmenv, procs)
    p.start()
    p.wait_checkpoints(4, q=p.sq)
    assert colo_status(p.sq)["stats"]["last-dirty-pages"] > 0
    p.sec.kill(signal.SIGKILL)
    p.pq.wait_event("COLO_EXIT", timeout=60)
    p.pri.wait_for(r"primary left COLO", timeout=30)
    for _ in range(10):
        assert p.pq.cmd("query-migrate")["status"] == "completed"
        time.sleep(0.1)
    assert_runs_on(p.pri, p.pq)


def test_failed_fence_stands_by_and_an_operator_can_retry(vmenv, procs, tmp_path):
    """Defect 12: a failed fence leaves a clean, disarmed standby; once the fence can succeed,
    an operator's forced request runs it again and takes over."""
    ok = tmp_path / "fence-ok"
    p = Pair(vmenv, procs, sec_extra=("--colo-fence", f"test -e {ok}"))
    p.start()
    p.wait_checkpoints(3, q=p.sq)
    p.pri.kill(signal.SIGKILL)
    p.sec.wait_for(r"fence command failed", timeout=60)
    deadline = time.monotonic() + 30
    st = colo_status(p.sq)
    while "fence command failed" not in (st["last-decision"] or "") and \
            time.monotonic() < deadline:
        time.sleep(0.05)
        st = colo_status(p.sq)
    assert st["mode"] == "secondary" and "fence command failed" in st["last-decision"], st
    assert_never_takes_over(p)
    assert st["armed"] is False
    ok.touch()
    p.sq.cmd("x-colo-lost-heartbeat", {"force": True})
    assert_runs_on(p.sec, p.sq)


def test_slow_apply_within_the_io_timeout(vmenv, procs):
    """Defect 11: the timeouts are parameters: an apply that takes 6 s is waited for when
    x-colo-io-timeout allows it (the old fixed 5 s broke the pair)."""
    p = Pair(vmenv, procs, sec_env={"TANDEM_COLO_FAULT": "s-mid-apply:3:sleep6000"})
    p.pq.cmd("migrate-set-parameters", {"x-colo-io-timeout": 20000})
    p.start()
    p.sec.wait_for(r"woke at s-mid-apply", timeout=60)
    p.wait_checkpoints(6)
    assert colo_status(p.pq)["mode"] == "primary" and colo_status(p.sq)["mode"] == "secondary"


def test_checkpoint_over_the_buffer_limit_is_sent_from_guest_ram(vmenv, procs):
    """Defect 11: with x-colo-buffer-max below a checkpoint's dirty set, the checkpoint goes
    straight from guest RAM (guest paused) instead of growing the buffer; nothing is lost."""
    p = Pair(vmenv, procs, pri_env={"TANDEM_LOG": "info"})
    p.pq.cmd("migrate-set-parameters", {"x-colo-buffer-max": 4096})
    p.start()
    p.wait_checkpoints(4)
    assert "sent straight from guest RAM" in p.pri.text
    p.pri.kill(signal.SIGKILL)
    assert_runs_on(p.sec, p.sq)
    shown, theirs = ticks(p.pri.text), ticks(p.sec.text)
    if shown:
        assert max(shown) < min(theirs)


def blkcheck_pair(vmenv, procs, tmp_path, **kw):
    imgs = []
    for name in ("pri.img", "sec.img"):
        img = tmp_path / name
        with open(img, "wb") as f:
            f.truncate(1 << 20)
        imgs.append(img)
    p = Pair(vmenv, procs, guest="blkcheck", append="blocks=64 flush=8",
             pri_extra=("--disk", f"path={imgs[0]}"), sec_extra=("--disk", f"path={imgs[1]}"),
             **kw)
    return p, imgs


def test_torn_disk_apply_marks_the_standby_unusable(vmenv, procs, tmp_path):
    """Defect 5: the disk apply fails half-way (EIO on the secondary's second staged write),
    after the RAM of that checkpoint was applied. The standby is torn: it says so, and it never
    takes over from it, not even when forced (the old code took over from the torn state)."""
    p, _ = blkcheck_pair(vmenv, procs, tmp_path,
                         sec_env={"TANDEM_COLO_FAULT": "s-disk-apply:0:eio"})
    p.start(wait=False)
    p.sec.wait_for(r"applied only in part", timeout=60)
    st = colo_status(p.sq)
    assert st["unusable"] is True and st["armed"] is False, st
    assert p.pq.wait_event("COLO_EXIT", timeout=60)["data"]["mode"] == "primary"
    p.pri.kill(signal.SIGKILL)
    assert_never_takes_over_guest(p)
    r = p.sq.execute("x-colo-lost-heartbeat", {"force": True})
    assert "error" in r and "unusable" in r["error"]["desc"], r
    assert_never_takes_over_guest(p, settle=0.5)


def assert_never_takes_over_guest(p, settle=1.0):
    time.sleep(settle)
    assert "ack gen=" not in p.sec.text and "tick" not in p.sec.text
    assert p.sq.cmd("query-status")["status"] != "running"


def test_bad_device_state_is_rejected_with_no_device_changed(vmenv, procs):
    """Defect 5: checkpoint 4's device buffer passes its checksum but its last section cannot
    be loaded. The devices loaded before it are put back: the checkpoint is rejected whole and
    the standby keeps checkpoint 3, from which a forced takeover runs cleanly."""
    p = Pair(vmenv, procs, pri_env={"TANDEM_COLO_FAULT": "p-before-size:4:baddev"})
    p.start(wait=False)
    p.sec.wait_for(r"devices restored to the last checkpoint", timeout=60)
    st = wait_disarmed(p)
    assert st["last-good-checkpoint"] == 3 and st["unusable"] is False, st
    p.pri.kill(signal.SIGKILL)
    p.sq.cmd("x-colo-lost-heartbeat", {"force": True})
    assert_runs_on(p.sec, p.sq)


def test_foreign_section_in_the_ram_segment_never_reaches_the_disk(vmenv, procs, tmp_path):
    """Defect 6: checkpoint 4's RAM segment carries a disk-sync write (a marker at sector 0)
    and then fails its checksum. Only RAM and disk-log records are accepted there, and nothing
    before the checksum verifies: the secondary's image never sees the marker (the old loader
    wrote it at once)."""
    p, (_, sec_img) = blkcheck_pair(vmenv, procs, tmp_path,
                                    pri_env={"TANDEM_COLO_FAULT": "p-before-send:4:inject"})
    p.start(wait=False)
    p.sq.wait_event("COLO_EXIT", timeout=60)
    assert "disk-sync" in p.sec.text
    wait_disarmed(p)
    with open(sec_img, "rb") as f:
        assert b"TANDEM-INJECTED" not in f.read()
    assert colo_status(p.sq)["last-good-checkpoint"] == 3
