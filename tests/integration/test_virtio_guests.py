"""test_virtio_guests.py: blkcheck and netkv under tandem and QEMU's microvm, in a netlan.sh LAN."""
import os
import pathlib
import random
import re
import shutil
import subprocess
import uuid

import pytest

from conftest import _need
import netkv_client
from harness import Proc, guest_append, qemu_status, tandem_run

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETLAN = ROOT / "scripts" / "netlan.sh"
CLIENT = pathlib.Path(__file__).resolve().parent / "netkv_client.py"
PY = "/usr/bin/python3"
GUEST_IP = "10.77.0.2"

# QEMU's microvm: virtio-mmio transports from 0xFEB00000 (24 of them, devices in the highest);
# they are legacy (version 1) unless force-legacy is off, and the guests drive version 2 only.
MICROVM = ["qemu-system-x86_64", "-M", "microvm", "-m", "256", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
           "-global", "virtio-mmio.force-legacy=false"]


def acks(text: str):
    return [int(x) for x in re.findall(r"ack gen=(\d+)\n", text)]


def wait_ack(p: Proc, at_least: int):
    """Wait for an `ack gen=G` line with G >= at_least."""
    pos = 0
    while True:
        m = p.wait_for(r"ack gen=(\d+)\n", timeout=120, start=pos)
        if int(m.group(1)) >= at_least:
            return
        pos = m.end()


def verified_gen(p: Proc) -> int:
    return int(p.wait_for(r"verify ok blocks=\d+ gen=(\d+)\n").group(1))


@pytest.fixture
def disk(tmp_path):
    """A fresh zero-filled 1 MiB image (blkcheck's default 1024 blocks + superblock fit)."""
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(1 << 20)
    return path


def blkcheck(env, disk, append, procs):
    return tandem_run(env, "blkcheck", "--disk", f"path={disk}", "--no-reboot", append=append,
                      procs=procs)


def microvm(env, guest, append, devices, procs, netns=None):
    argv = ([] if netns is None else ["ip", "netns", "exec", netns]) + MICROVM + env.qemu_accel() + [
        "-kernel", env.guest(guest), "-append", append] + devices
    p = Proc(argv)
    procs.append(p)
    return p


# ---- blkcheck ----

def test_blkcheck_fresh_disk_then_verify(vmenv, procs, disk):
    p = blkcheck(vmenv, disk, "writes=300 flush=16", procs)
    assert p.wait(120) == 0, p.text
    assert verified_gen(p) == 0
    assert acks(p.text)[-1] == 300 and "done" in p.text, p.text

    p = blkcheck(vmenv, disk, "ack=300 writes=10", procs)
    assert p.wait(120) == 0, p.text
    assert verified_gen(p) == 300
    assert acks(p.text)[-1] == 310, p.text


def test_blkcheck_survives_kill9(vmenv, procs, disk):
    """Kill the VMM mid-run, three times: every acknowledged generation is on the disk."""
    acked = 0
    for _ in range(3):
        p = blkcheck(vmenv, disk, f"ack={acked}", procs)
        start = verified_gen(p)
        assert start >= acked, p.text
        # let it write a few hundred blocks past the restart, then kill it wherever it is
        wait_ack(p, start + 300)
        p.kill()
        acked = acks(p.text)[-1]
    p = blkcheck(vmenv, disk, f"ack={acked} writes=64", procs)
    assert p.wait(120) == 0, p.text
    assert verified_gen(p) >= acked
    assert "CORRUPT" not in p.text


def test_blkcheck_detects_damage(vmenv, procs, disk, tmp_path):
    p = blkcheck(vmenv, disk, "writes=300", procs)
    assert p.wait(120) == 0, p.text
    old = disk.read_bytes()
    p = blkcheck(vmenv, disk, "writes=300", procs)
    assert p.wait(120) == 0, p.text
    new = disk.read_bytes()

    def run_on(image: bytes, append=""):
        img = tmp_path / f"damaged-{uuid.uuid4().hex[:6]}.img"
        img.write_bytes(image)
        q = blkcheck(vmenv, img, append + " writes=1", procs)
        assert q.wait(120) == 3, q.text
        return q.text

    # one flipped byte in a written block
    sec = next(i for i in range(1, 1025) if new[i * 512:(i + 1) * 512] != bytes(512))
    flipped = bytearray(new)
    flipped[sec * 512 + 100] ^= 0x55
    assert f"CORRUPT block {sec}: bad checksum" in run_on(bytes(flipped))

    # a block that went back to an older, valid version (a lost write)
    sec = next(i for i in range(1, 1025)
               if old[i * 512:(i + 1) * 512] != new[i * 512:(i + 1) * 512]
               and old[i * 512:(i + 1) * 512] != bytes(512))
    stale = new[:sec * 512] + old[sec * 512:(sec + 1) * 512] + new[(sec + 1) * 512:]
    assert f"CORRUPT block {sec}: gen=" in run_on(stale)

    # an acknowledged generation the disk never got
    assert "CORRUPT acknowledged gen=9999 lost" in run_on(new, "ack=9999")


def test_blkcheck_qemu_microvm_then_tandem(qemu, procs, disk):
    """The same image under QEMU's microvm (killed -9 mid-run), then verified under tandem."""
    dev = ["-drive", f"if=none,id=d0,file={disk},format=raw", "-device", "virtio-blk-device,drive=d0"]
    p = microvm(qemu, "blkcheck", "writes=200 flush=8", dev, procs)
    assert p.wait(120) == qemu_status(0), p.text
    assert verified_gen(p) == 0 and acks(p.text)[-1] == 200

    p = microvm(qemu, "blkcheck", "ack=200", dev, procs)
    assert verified_gen(p) == 200, p.text
    wait_ack(p, 500)
    p.kill()
    acked = acks(p.text)[-1]

    p = blkcheck(qemu, disk, f"ack={acked} writes=64", procs)
    assert p.wait(120) == 0, p.text
    assert verified_gen(p) >= acked


# ---- netkv in a namespaced LAN ----

def root_links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return sorted(line.split(":")[1].strip() for line in out.stdout.splitlines())


def netlan(*args, check=True):
    return subprocess.run(["bash", str(NETLAN), *args], capture_output=True, text=True,
                          check=check, timeout=60)


@pytest.fixture
def lan_factory(vmenv, procs):
    """lan_factory(*up_options) builds a LAN (scripts/netlan.sh up) and returns its name; at the
    end, even on failure, the test's processes are killed and the LAN is torn down."""
    _need("root (network namespaces)", os.geteuid() == 0 and shutil.which("ip") is not None)
    names = []
    before = root_links()

    def make(*options):
        name = f"tv{os.getpid() % 100000}{len(names)}"
        names.append(name)
        netlan("down", name)
        netlan("up", name, *options)
        return name

    try:
        yield make
    finally:
        for p in procs:
            p.kill()
        for name in names:
            netlan("down", name, check=False)
        # other tests may add links of their own; none of netlan's names may appear here
        new = set(root_links()) - set(before)
        assert not [n for n in new if re.match(r"(br0|tap\d|vcli|vpri|vsec|cli0|lan0|rep0)\b", n)], \
            f"links in the root namespace: {new}"


def netkv_tandem(env, ns, procs, tap="tap0"):
    p = Proc(["ip", "netns", "exec", ns, env.tandem, "run", "--kernel", env.guest("netkv"),
              "--accel", env.accel, "--append", guest_append(env, "netkv", f"ip={GUEST_IP}/24"),
              "--net", f"tap={tap}", "--no-reboot"])
    procs.append(p)
    p.wait_for(r"netkv ready ip=10\.77\.0\.2/24 mac=\S+ port=7000")
    return p


def client(name, *args, timeout=600):
    return subprocess.run(["bash", str(NETLAN), "exec", name, "cli", PY, str(CLIENT),
                           "--server", GUEST_IP, *args],
                          capture_output=True, text=True, timeout=timeout)


def assert_load_ok(r, ops):
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"load ops={ops} " in r.stdout and "contradictions=0" in r.stdout, r.stdout


@pytest.mark.netns
def test_netkv_serves_10000_checked_ops(vmenv, lan_factory, procs):
    name = lan_factory()
    vm = netkv_tandem(vmenv, f"{name}-lan", procs)
    r = client(name, "set", "greeting", "hello world")
    assert r.returncode == 0 and r.stdout.startswith("OK "), r.stdout + r.stderr
    r = client(name, "get", "greeting")
    assert r.stdout.startswith("VALUE hello world "), r.stdout
    r = client(name, "raw", "BOGUS x")
    assert r.returncode == 1 and r.stdout.startswith("ERR badcommand "), r.stdout
    r = client(name, "load", "--ops", "10000", "--check")
    assert_load_ok(r, 10000)
    assert vm.alive(), vm.text
    # The guest printed its ready line only (irq mode adds its mode line and interrupt counts).
    own = [ln for ln in vm.text.splitlines() if "netkv" in ln
           and not re.match(r"netkv(: irq mode| irqs=\d+$)", ln)]
    assert len(own) == 1, vm.text
    if "irq=1" in guest_append(vmenv, "netkv", ""):
        assert re.search(r"netkv irqs=[1-9]", vm.text), vm.text  # it slept and was woken


# ---- the load checker itself, against an in-process fake server ----

class FakeNetKV(netkv_client.Client):
    """netkv's semantics in Python, with faults: lost requests, lost replies (so the client
    re-sends and a SET or DEL is applied twice), and optional bugs to be caught."""

    def __init__(self, seed=1, drop=0.0, forget_at=None, stale=False):
        super().__init__("fake", retries=50)
        self.rng = random.Random(seed)
        self.drop, self.forget_at, self.stale = drop, forget_at, stale
        self.table, self.old, self.seq, self.nreq = {}, {}, 0, 0

    def apply(self, line):
        cmd, key, *rest = line.split(" ", 2)
        if cmd == "SET":
            self.old[key] = self.table.get(key)
            self.table[key] = rest[0]
            self.seq += 1
            return f"OK {self.seq}\n"
        if cmd == "GET":
            v = self.old.get(key) if self.stale and self.old.get(key) else self.table.get(key)
            return f"VALUE {v} {self.seq}\n" if v else f"NONE {self.seq}\n"
        if self.table.pop(key, None) is None:
            return f"NONE {self.seq}\n"
        self.seq += 1
        return f"OK {self.seq}\n"

    def request(self, line):
        self.nreq += 1
        if self.nreq == self.forget_at:
            self.table, self.seq = {}, 0
        for attempt in range(1, self.retries + 2):
            if attempt > 1:
                self.resent += 1
            if self.rng.random() < self.drop:
                continue  # the request was lost
            reply = self.apply(line)
            if self.rng.random() < self.drop:
                continue  # applied, but the reply was lost
            return netkv_client.parse_reply(reply.encode(), attempt)
        raise netkv_client.NoReply(line)


def test_load_checker_tolerates_resent_requests():
    c = FakeNetKV(drop=0.2)
    res = netkv_client.load(c, 3000, nkeys=16, seed=5)
    assert res.contradictions == [] and res.resent > 500 and res.ops == 3000, res.summary()


def test_load_checker_catches_lost_state():
    res = netkv_client.load(FakeNetKV(forget_at=1000), 2000, nkeys=16, seed=5)
    text = "\n".join(res.contradictions)
    assert "an acknowledged SET was lost" in text and "went back" in text, text[:2000]


def test_load_checker_catches_stale_reads():
    res = netkv_client.load(FakeNetKV(stale=True), 500, nkeys=16, seed=5)
    assert any("older than the acknowledged version" in p for p in res.contradictions), \
        res.contradictions[:5]


@pytest.mark.netns
@pytest.mark.qemu
def test_netkv_qemu_microvm(qemu, lan_factory, procs):
    name = lan_factory()
    vm = microvm(qemu, "netkv", f"ip={GUEST_IP}/24",
                 ["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                  "-device", "virtio-net-device,netdev=n0,mac=52:54:00:12:34:60"],
                 procs, netns=f"{name}-lan")
    vm.wait_for(r"netkv ready ip=10\.77\.0\.2/24 mac=52:54:00:12:34:60 port=7000")
    assert_load_ok(client(name, "load", "--ops", "2000", "--check"), 2000)


@pytest.mark.netns
def test_netlan_two_hosts(vmenv, lan_factory, procs):
    """--hosts: the guest on the primary host's tap serves the client across the LAN switch; the
    replication link joins the two hosts; a second tap can be added."""
    name = lan_factory("--hosts")
    netkv_tandem(vmenv, f"{name}-pri", procs)
    assert_load_ok(client(name, "load", "--ops", "500", "--check"), 500)

    srv = Proc(["ip", "netns", "exec", f"{name}-sec", PY, "-c",
                "import socket; s = socket.create_server(('10.77.1.2', 7777)); "
                "print('listening', flush=True); c, a = s.accept(); print('peer', a[0], flush=True)"])
    procs.append(srv)
    srv.wait_for("listening")
    subprocess.run(["ip", "netns", "exec", f"{name}-pri", PY, "-c",
                    "import socket; socket.create_connection(('10.77.1.2', 7777), timeout=5)"],
                   check=True, timeout=30)
    srv.wait_for(r"peer 10\.77\.1\.1")

    netlan("addtap", name, "sec", "tap1")
    links = subprocess.run(["ip", "-n", f"{name}-sec", "-o", "link", "show", "master", "br0"],
                           capture_output=True, text=True, check=True).stdout
    assert "tap0" in links and "tap1" in links and "lan0" in links, links
    # no route out of the LAN anywhere
    for role in ("cli", "pri", "sec", "lan"):
        routes = subprocess.run(["ip", "-n", f"{name}-{role}", "route", "show", "default"],
                                capture_output=True, text=True, check=True).stdout
        assert routes == "", (role, routes)
    netlan("down", name)
    netlan("down", name)  # idempotent
    assert f"{name}-lan" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                 text=True).stdout
