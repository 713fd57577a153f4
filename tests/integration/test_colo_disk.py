"""test_colo_disk.py: COLO disk replication with blkcheck: a 5 MiB guest write (more than one
log record) under COLO succeeds, is replicated and survives a failover; a write the primary
cannot log (over x-colo-disk-log-max, or an injected EIO) never fails in the guest: the primary
leaves COLO instead. Every assertion is on content (console lines, events, the disk), none on
elapsed time."""
import re
import signal

import pytest

from colo_pair import Pair
from harness import tandem_run

IMAGE = 6 << 20  # 64 blocks + the 5 MiB big area of blkcheck's big=K
BIG = r"big ok tag=(\d+)\n"


def images(tmp_path):
    pri, sec = tmp_path / "pri.img", tmp_path / "sec.img"
    for img in (pri, sec):
        with open(img, "wb") as f:
            f.truncate(IMAGE)
    return pri, sec


def blkcheck_pair(vmenv, procs, pri_img, sec_img, append, pri_env=None):
    return Pair(vmenv, procs, guest="blkcheck", append=f"blocks=64 flush=8 {append}",
                pri_extra=("--disk", f"path={pri_img}"), sec_extra=("--disk", f"path={sec_img}"),
                pri_env=pri_env)


def tags(text, start=0):
    return [int(x) for x in re.findall(BIG, text[start:])]


@pytest.mark.netns
def test_big_write_under_colo_is_replicated_and_survives_failover(vmenv, procs, tmp_path):
    pri_img, sec_img = images(tmp_path)
    p = blkcheck_pair(vmenv, procs, pri_img, sec_img, "big=32")
    p.start()
    p.wait_checkpoints(2)
    # Big writes acknowledged under COLO: three that the primary showed only after COLO ran
    # (its console is held until the checkpoint holding a line was received); a big write
    # before COLO cannot account for all of them.
    at = len(p.pri.text)
    for _ in range(3):
        at = p.pri.wait_for(BIG, start=at, timeout=300).end()
    assert "FAIL" not in p.pri.text, p.pri.text[-2000:]
    acked_big = max(tags(p.pri.text))
    acked = max([int(x) for x in re.findall(r"ack gen=(\d+)\n", p.pri.text)], default=0)
    assert p.pq.cmd("query-colo-status")["mode"] == "primary"
    p.pri.kill(signal.SIGKILL)
    p.sq.wait_event("COLO_EXIT", timeout=60)
    # the secondary's guest runs on from the last checkpoint, then its disk is checked alone
    n = len(p.sec.text)
    p.sec.wait_for(r"ack gen=(\d+)\n", start=n, timeout=300)
    assert "FAIL" not in p.sec.text[n:], p.sec.text[-2000:]
    acked = max([acked] + [int(x) for x in re.findall(r"ack gen=(\d+)\n", p.sec.text[n:])])
    acked_big = max([acked_big] + tags(p.sec.text, n))
    p.sec.kill(signal.SIGKILL)
    v = tandem_run(vmenv, "blkcheck", "--disk", f"path={sec_img}", "--no-reboot",
                   append=f"ack={acked} bigack={acked_big} writes=8", procs=procs)
    assert v.wait(300) == 0, v.text
    assert re.search(r"verify ok blocks=64 gen=\d+", v.text), v.text
    m = re.search(r"verify big ok tag=(\d+)", v.text)
    assert m and int(m.group(1)) >= acked_big, v.text
    assert "CORRUPT" not in v.text


@pytest.mark.netns
@pytest.mark.parametrize("how", ["log-max", "fault"])
def test_unloggable_write_primary_leaves_colo_guest_sees_no_ioerr(vmenv, procs, tmp_path, how):
    pri_img, sec_img = images(tmp_path)
    if how == "log-max":
        # every 5 MiB write passes a 1 MiB log, whenever it comes
        p = blkcheck_pair(vmenv, procs, pri_img, sec_img, "big=32")
        p.pq.cmd("migrate-set-parameters", {"x-colo-disk-log-max": 1 << 20})
    else:
        # the 100th write logged under COLO cannot be logged
        p = blkcheck_pair(vmenv, procs, pri_img, sec_img, "",
                          pri_env={"TANDEM_COLO_FAULT": "p-disk-log:100:eio"})
    p.start(wait=False)
    ev = p.pq.wait_event("COLO_EXIT", timeout=300)
    assert ev["data"]["mode"] == "primary", ev
    assert p.pq.cmd("query-colo-status")["mode"] == "none"
    p.pri.wait_for(r"disk replication stopped", timeout=60)
    # the guest goes on, unprotected, and never saw an I/O error
    n = len(p.pri.text)
    p.pri.wait_for(r"ack gen=(\d+)\n", start=n, timeout=300)
    if how == "log-max":
        p.pri.wait_for(BIG, start=n, timeout=300)
    assert p.pri.alive()
    assert "FAIL" not in p.pri.text and "CORRUPT" not in p.pri.text, p.pri.text[-3000:]
