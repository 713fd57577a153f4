"""test_colo_faults.py: kill, hang and corrupt COLO at every protocol point; no state is lost."""
import random
import signal
import time

import pytest

from colo_pair import Pair
from harness import ticks

PRIMARY_POINTS = ["p-before-request", "p-after-request", "p-after-reply", "p-paused",
                  "p-before-send", "p-mid-ram", "p-before-size", "p-mid-devbuf",
                  "p-after-devbuf", "p-after-received", "p-after-loaded"]
SECONDARY_POINTS = ["s-after-request", "s-after-reply", "s-mid-ram", "s-after-ram",
                    "s-after-size", "s-mid-devbuf", "s-before-received", "s-after-received",
                    "s-mid-apply", "s-after-apply", "s-after-loaded"]


def assert_secondary_took_over(p):
    ev = p.sq.wait_event("COLO_EXIT", timeout=30)
    assert ev["data"]["mode"] == "secondary"
    p.sec.wait_for(r"tick \d+ chain=", timeout=60)
    n = len(p.sec.text)
    p.sec.wait_for(r"tick \d+ chain=", start=n, timeout=60)  # and keeps going
    t = ticks(p.sec.text)
    assert t == sorted(t)
    assert "CORRUPT" not in p.sec.text
    assert p.sq.cmd("query-status")["status"] == "running"
    # Output commit on the console: the primary showed only ticks from checkpoints the
    # secondary held, so the secondary never shows one of them again.
    shown = ticks(p.pri.text)
    if shown:
        assert max(shown) < min(t), (max(shown), min(t))


def assert_primary_alone(p):
    ev = p.pq.wait_event("COLO_EXIT", timeout=30)
    assert ev["data"] == {"mode": "primary", "reason": "error"}
    n = len(p.pri.text)
    p.pri.wait_for(r"tick \d+ chain=", start=n)
    assert "CORRUPT" not in p.pri.text
    assert p.pq.cmd("query-colo-status")["mode"] == "none"


@pytest.mark.parametrize("point", PRIMARY_POINTS)
def test_kill_primary_at(vmenv, procs, point):
    p = Pair(vmenv, procs, pri_env={"TANDEM_COLO_FAULT": f"{point}:3:kill"})
    p.start(wait=False)
    assert p.pri.wait(60) == 137
    assert_secondary_took_over(p)


@pytest.mark.parametrize("point", SECONDARY_POINTS)
def test_kill_secondary_at(vmenv, procs, point):
    p = Pair(vmenv, procs, sec_env={"TANDEM_COLO_FAULT": f"{point}:3:kill"})
    p.start(wait=False)
    assert p.sec.wait(60) == 137
    assert_primary_alone(p)


@pytest.mark.parametrize("point", SECONDARY_POINTS)
def test_hang_secondary_at(vmenv, procs, point):
    p = Pair(vmenv, procs, sec_env={"TANDEM_COLO_FAULT": f"{point}:3:hang"})
    p.start(wait=False)
    assert_primary_alone(p)


@pytest.mark.parametrize("point", ["p-after-request", "p-mid-ram", "p-after-received"])
def test_hang_primary_at(vmenv, procs, point):
    p = Pair(vmenv, procs, pri_env={"TANDEM_COLO_FAULT": f"{point}:3:hang"})
    p.start(wait=False)
    assert_secondary_took_over(p)


# A rejected checkpoint (corrupt, bad message, truncated) and what the secondary does after
# it: test_colo_safety.py::test_rejected_checkpoint_disarms_the_secondary.


def test_unknown_fault_point_rejected(vmenv, procs):
    from harness import tandem_run
    t = tandem_run(vmenv, "hello", procs=procs, environ={"TANDEM_COLO_FAULT": "p-nowhere:1:kill"})
    assert t.wait(30) == 2
    assert "TANDEM_COLO_FAULT" in t.text and "p-nowhere" in t.text


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_primary_kill(vmenv, procs, seed):
    """Kill -9 the primary at a random protocol point of a random checkpoint, or at a random
    moment from outside: 40 more kill points per run."""
    rng = random.Random(seed)
    if seed % 2:
        fault = f"{rng.choice(PRIMARY_POINTS)}:{rng.randint(1, 8)}:kill"
        p = Pair(vmenv, procs, pri_env={"TANDEM_COLO_FAULT": fault},
                 delay_ms=rng.choice([20, 50, 100]))
        p.start(wait=False)
        assert p.pri.wait(60) == 137, fault
    else:
        p = Pair(vmenv, procs, delay_ms=rng.choice([20, 50, 100]))
        p.start()
        p.wait_checkpoints(rng.randint(1, 6))
        time.sleep(rng.random() * 0.3)
        p.pri.kill(signal.SIGKILL)
    assert_secondary_took_over(p)
