"""test_colo_net.py: COLO with real devices: netkv under client load, blkcheck on a replicated
disk, and output commit checked by packet capture in the client namespace."""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import pytest

from colo_pair import Pair
from conftest import _need
from harness import netlan_up, ticks  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETLAN = ROOT / "scripts" / "netlan.sh"
MAC = "52:54:00:77:00:02"
NETKV = dict(guest="netkv", append="ip=10.77.0.2/24", pri_ready=r"netkv ready")


def netlan(*args, check=True):
    return subprocess.run(["bash", str(NETLAN), *args], capture_output=True, text=True,
                          check=check, timeout=60)


@pytest.fixture
def hosts(vmenv, procs):
    """Two hosts and a client on a LAN (scripts/netlan.sh up NAME --hosts), torn down at the
    end even when the test fails."""
    yield from netlan_up("tc", procs, "--hosts")


def netkv_pair(env, procs, lan, delay_ms=50, **kw):
    net = ("--net", f"tap=tap0,mac={MAC}")
    return Pair(env, procs, delay_ms=delay_ms, uri="tcp:10.77.1.2:4444", pri_netns=f"{lan}-pri",
                sec_netns=f"{lan}-sec", extra=net, **NETKV, **kw)


def start_client(lan):
    return subprocess.Popen(["ip", "netns", "exec", f"{lan}-cli", "/usr/bin/python3",
                             str(ROOT / "scripts" / "demo_client.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def stop_client(c, kill_at=None):
    if kill_at:
        c.stdin.write(f"kill {kill_at}\n")
    c.stdin.close()
    out = c.stdout.read().strip().splitlines()
    c.wait(60)
    return json.loads(out[-1])


@pytest.mark.netns
def test_netkv_failover_loses_no_acknowledged_write(vmenv, procs, hosts):
    p = netkv_pair(vmenv, procs, hosts)
    p.start()
    c = start_client(hosts)
    p.wait_checkpoints(40)
    t = time.time()
    p.pri.kill(signal.SIGKILL)
    p.sq.wait_event("COLO_EXIT", timeout=30)
    assert p.sq.cmd("query-status")["status"] == "running"
    time.sleep(2)
    s = stop_client(c, t)
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["answers_before_kill"] > 0 and s["answers_after_kill"] > 0, s
    assert s["no_reply"] == 0, s


@pytest.mark.netns
def test_netkv_secondary_lost_primary_releases_and_serves(vmenv, procs, hosts):
    p = netkv_pair(vmenv, procs, hosts)
    p.start()
    c = start_client(hosts)
    p.wait_checkpoints(20)
    p.sec.kill(signal.SIGKILL)
    ev = p.pq.wait_event("COLO_EXIT", timeout=30)
    assert ev["data"] == {"mode": "primary", "reason": "error"}
    time.sleep(2)
    s = stop_client(c)
    assert s["ncontradictions"] == 0, s["contradictions"]
    assert s["no_reply"] == 0, s


@pytest.mark.netns
def test_output_commit_by_packet_capture(vmenv, procs, hosts):
    """No reply leaves the pair before the checkpoint that produced it reached the secondary."""
    _need("tcpdump", shutil.which("tcpdump") is not None)
    pcap = subprocess.Popen(["ip", "netns", "exec", f"{hosts}-cli", "tcpdump", "-i", "cli0",
                             "-n", "-tt", "-l", "-U", "udp port 7000"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        p = netkv_pair(vmenv, procs, hosts, delay_ms=200, pri_env={"TANDEM_LOG": "debug"})
        p.start()
        time.sleep(0.5)  # tcpdump is up
        # one datagram per request (no re-sends), so requests and replies strictly alternate
        r = subprocess.run(["ip", "netns", "exec", f"{hosts}-cli", "/usr/bin/python3",
                            str(ROOT / "tests" / "integration" / "netkv_client.py"),
                            "--timeout", "5", "--retries", "0", "load", "--ops", "40", "--check"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "contradictions=0" in r.stdout, r.stdout + r.stderr
    finally:
        pcap.send_signal(signal.SIGINT)
        lines = pcap.communicate(timeout=30)[0].splitlines()
    paused = {int(n): int(t) / 1e6 for n, t in
              re.findall(r"colo: checkpoint (\d+) paused at (\d+)", p.pri.text)}
    received = {int(n): int(t) / 1e6 for n, t in
                re.findall(r"colo: checkpoint (\d+) received at (\d+)", p.pri.text)}
    assert len(received) >= 20
    # The client waits for each answer: its reply was produced after its request arrived.
    pkts = []
    for line in lines:
        m = re.match(r"(\d+\.\d+) IP (\S+) > (\S+):", line)
        if m:
            pkts.append((float(m.group(1)), m.group(2).endswith(".7000")))
    checked = 0
    last_req = None
    for t, is_reply in pkts:
        if not is_reply:
            last_req = t
            continue
        if last_req is None:
            continue
        # the reply was produced after its request arrived, so by a checkpoint paused later
        later = [n for n, tp in paused.items() if tp > last_req]
        if not later:
            continue  # produced after the last logged checkpoint
        n = min(later)
        assert n in received, f"reply at {t} before checkpoint {n} was received"
        ctx = "\n".join(f"{x:.6f} {'reply' if r else 'req'}" for x, r in pkts
                        if abs(x - t) < 0.4)
        cps = "\n".join(f"cp {k} paused {paused[k]:.6f} received {received.get(k, 0):.6f}"
                        for k in sorted(paused) if abs(paused[k] - t) < 0.7)
        assert t >= received[n], (f"reply left at {t:.6f}, but checkpoint {n} (paused "
                                  f"{paused[n]:.6f}) was received only at {received[n]:.6f}\n"
                                  f"{ctx}\n{cps}")
        checked += 1
        last_req = None
    assert checked >= 20, f"only {checked} request/reply pairs checked"


@pytest.mark.netns
def test_blkcheck_failover_every_acknowledged_generation_verifies(vmenv, procs, tmp_path):
    pri_img, sec_img = tmp_path / "pri.img", tmp_path / "sec.img"
    for img in (pri_img, sec_img):
        with open(img, "wb") as f:
            f.truncate(1 << 20)
    p = Pair(vmenv, procs, guest="blkcheck", append="flush=8",
             pri_extra=("--disk", f"path={pri_img}"), sec_extra=("--disk", f"path={sec_img}"))
    p.start()
    # wait until the (held, so replicated) console shows acknowledged generations
    p.pri.wait_for(r"ack gen=(\d+)\n", timeout=120)
    p.wait_checkpoints(10)
    shown = [int(x) for x in re.findall(r"ack gen=(\d+)\n", p.pri.text)]
    p.pri.kill(signal.SIGKILL)
    p.sq.wait_event("COLO_EXIT", timeout=30)
    # the secondary runs on; then stop it and check its disk on its own
    n = len(p.sec.text)
    p.sec.wait_for(r"ack gen=(\d+)\n", start=n, timeout=120)
    after = [int(x) for x in re.findall(r"ack gen=(\d+)\n", p.sec.text)]
    p.sec.kill(signal.SIGKILL)
    acked = max(shown + after)
    from harness import tandem_run
    v = tandem_run(vmenv, "blkcheck", "--disk", f"path={sec_img}", "--no-reboot",
                   append=f"ack={acked} writes=8", procs=procs)
    assert v.wait(120) == 0, v.text
    assert re.search(r"verify ok blocks=\d+ gen=\d+", v.text)
    assert "CORRUPT" not in v.text
