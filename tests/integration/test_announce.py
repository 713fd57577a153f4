"""test_announce.py: announce-self on a namespaced LAN: the RARP rounds a NIC sends are counted by
content on the client's side of the bridge (a raw AF_PACKET socket), and announce-self's
arguments are checked as QEMU's AnnounceParameters."""
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import _need
from harness import netlan_up, QMP, Proc, guest_append, tandem_run, tmpdir

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETLAN = ROOT / "scripts" / "netlan.sh"
PY = "/usr/bin/python3"
MAC0 = "52:54:00:77:00:02"  # the guest's NIC, on tap0
MAC1 = "52:54:00:77:00:03"  # a second NIC, on tap1
MAC2 = "52:54:00:77:00:04"  # a third, on tap2: its single frame is the fence

# Prints "ready", then every RARP frame (ethertype 0x8035) that reaches cli0, as hex, one a line.
CAPTURE = """
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8035))
s.bind(("cli0", 0))
print("ready", flush=True)
while True:
    print(s.recv(65535).hex(), flush=True)
"""


def netlan(*args, check=True):
    return subprocess.run(["bash", str(NETLAN), *args], capture_output=True, text=True,
                          check=check, timeout=60)


@pytest.fixture
def lan(vmenv, procs):
    """scripts/netlan.sh up NAME --taps 3: tap0..tap2 on br0 with the client's veth; torn down
    at the end even when the test fails."""
    yield from netlan_up("ta", procs, "--taps", "3")


def rarp(mac: str) -> bytes:
    """The frame QEMU's announce sends (net/announce.c announce_self_create): 60 bytes."""
    m = bytes.fromhex(mac.replace(":", ""))
    f = (b"\xff" * 6 + m + b"\x80\x35"          # broadcast, from the MAC, RARP
         + b"\x00\x01\x08\x00\x06\x04\x00\x03"  # Ethernet/IPv4, hlen 6, plen 4, reverse request
         + m + b"\x00" * 4 + m + b"\x00" * 4)   # sender and target: the MAC, no IP
    return f + b"\x00" * (60 - len(f))


def frames_until(cap: Proc, fence: bytes, start: int):
    """The RARP frames cap printed after character offset start, up to the fence frame."""
    end = cap.wait_for(rf"(?m)^{fence.hex()}$", timeout=30, start=start).start()
    return [bytes.fromhex(x) for x in cap.text[start:end].split()]


@pytest.mark.netns
def test_announce_self_sends_the_rounds_asked(vmenv, procs, lan):
    cap = Proc(["ip", "netns", "exec", f"{lan}-cli", PY, "-c", CAPTURE])
    procs.append(cap)
    ready = cap.wait_for(r"ready\n").end()
    sock = tmpdir() / "qmp.sock"
    vm = Proc(["ip", "netns", "exec", f"{lan}-lan", vmenv.tandem, "run",
               "--kernel", vmenv.guest("netkv"), "--accel", vmenv.accel,
               "--append", guest_append(vmenv, "netkv", "ip=10.77.0.2/24"),
               "--net", f"tap=tap0,mac={MAC0}", "--net", f"tap=tap1,mac={MAC1}",
               "--net", f"tap=tap2,mac={MAC2}",
               "--qmp", f"unix:{sock}", "--no-reboot"],
              env={**os.environ, "TANDEM_LOG": "info"})
    procs.append(vm)
    vm.wait_for(r"netkv ready ip=10\.77\.0\.2/24")
    q = QMP(sock)

    at = len(vm.text)
    q.cmd("announce-self", {"rounds": 4, "interfaces": ["tap0"]})
    # Done by tandem's own account; then tap2's single frame marks the end of what counts.
    vm.wait_for(r"net: announce finished: 4 round\(s\)", start=at)
    q.cmd("announce-self", {"rounds": 1, "interfaces": ["tap2"], "id": "fence"})
    got = frames_until(cap, rarp(MAC2), ready)
    assert got == [rarp(MAC0)] * 4, [g.hex() for g in got]

    # QEMU's default rounds (5), on two NICs: each round announces both.
    at, mark = len(vm.text), len(cap.text)
    q.cmd("announce-self", {"interfaces": ["tap0", "tap1"], "initial": 1, "step": 1, "max": 5})
    vm.wait_for(r"net: announce finished: 5 round\(s\)", start=at)
    q.cmd("announce-self", {"rounds": 1, "interfaces": ["tap2"], "id": "fence"})
    got = frames_until(cap, rarp(MAC2), mark)
    # each NIC's frames in its own order (the two taps are separate paths into the bridge)
    assert [g for g in got if g == rarp(MAC0)] == [rarp(MAC0)] * 5, [g.hex() for g in got]
    assert [g for g in got if g != rarp(MAC0)] == [rarp(MAC1)] * 5, [g.hex() for g in got]
    assert vm.alive(), vm.text
    q.cmd("quit")
    assert vm.wait(30) == 0


def test_announce_self_arguments(vmenv, procs):
    """QEMU's AnnounceParameters and ranges; a VM without a NIC announces nothing, successfully."""
    sock = tmpdir() / "qmp.sock"
    p = tandem_run(vmenv, "counter", "--qmp", f"unix:{sock}", "--paused", procs=procs)
    q = QMP(sock)
    assert q.cmd("announce-self") == {}
    assert q.cmd("announce-self", {"initial": 50, "max": 550, "rounds": 5, "step": 100,
                                   "id": "bob"}) == {}
    assert q.cmd("announce-self", {"rounds": 0}) == {}
    bad = {
        "rounds": (1001, "Parameter 'rounds' expects a value between 0 and 1000"),
        "initial": (-1, "Parameter 'initial' expects a value between 0 and 100000"),
        "max": (100001, "Parameter 'max' expects a value between 0 and 100000"),
        "step": (10001, "Parameter 'step' expects a value between 0 and 10000"),
    }
    for k, (v, desc) in bad.items():
        r = q.execute("announce-self", {k: v})
        assert r["error"] == {"class": "GenericError", "desc": desc}, r
    r = q.execute("announce-self", {"rounds": "4"})
    assert r["error"]["desc"] == "Parameter 'rounds' expects integer", r
    r = q.execute("announce-self", {"interfaces": ["tap9"]})
    assert r["error"]["desc"] == "No NIC on an interface named 'tap9'", r
    r = q.execute("announce-self", {"interfaces": [1]})
    assert r["error"]["desc"] == "Parameter 'interfaces' expects an array of strings", r
    r = q.execute("announce-self", {"bogus": 1})
    assert r["error"]["desc"] == "Parameter 'bogus' is unexpected", r
    q.cmd("quit")
    assert p.wait(30) == 0
