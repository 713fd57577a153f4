"""test_netkv_tcp.py: netkv's TCP service (port 7001) and diverge=N, under tandem in a netlan LAN.

Two kinds of client, both in the LAN's client namespace:
 - kernel sockets (netkv_client.TcpClient), opened there with setns(2) on this thread;
 - a raw peer: hand-made segments from an address the client namespace does not own
   (10.77.0.99), sent and read on cli0 with an AF_PACKET socket. The guest answers to the
   frame's source MAC, so no ARP is involved, and the client's kernel ignores the answers (not
   its address): the test alone speaks for that end, so it can lose, reorder, repeat and cut
   segments at will, and retransmissions can be observed without a timing assumption.
"""
import contextlib
import ctypes
import os
import pathlib
import re
import socket
import struct
import subprocess
import time

import pytest

from conftest import _need, kvm_present
import netkv_client
from harness import Proc, guest_append, netlan_up

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETLAN = ROOT / "scripts" / "netlan.sh"
CLIENT = pathlib.Path(__file__).resolve().parent / "netkv_client.py"
PY = "/usr/bin/python3"
GUEST_IP = "10.77.0.2"
RAW_IP = "10.77.0.99"  # the raw peer's address: on the LAN, owned by no namespace
TCP_PORT = 7001
RTO_TRIES = 10  # netkv.c

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def sq(x: int) -> int:
    """x as a sequence number (mod 2^32)."""
    return x & 0xffffffff


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def netns(name: str):
    """Run the body with this thread in network namespace name (sockets made there stay)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        if _libc.setns(own, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(own)
        os.close(target)


def boot(env, lan, procs, append="") -> tuple:
    """netkv on tap0 in lan's LAN; returns (process, guest MAC)."""
    p = Proc(["ip", "netns", "exec", f"{lan}-lan", env.tandem, "run", "--kernel",
              env.guest("netkv"), "--accel", env.accel, "--append",
              guest_append(env, "netkv", f"ip={GUEST_IP}/24 {append}".strip()),
              "--net", "tap=tap0", "--no-reboot"])
    procs.append(p)
    m = p.wait_for(r"netkv ready ip=10\.77\.0\.2/24 mac=(\S+) port=7000 tcp=7001")
    return p, m.group(1)


class VM:
    def __init__(self, lan, proc, mac):
        self.lan, self.proc, self.mac = lan, proc, mac
        self.ns = f"{lan}-cli"

    def tcp(self, **kw) -> netkv_client.TcpClient:
        with netns(self.ns):
            return netkv_client.TcpClient(GUEST_IP, TCP_PORT, **kw)

    def udp_request(self, line: str) -> netkv_client.Reply:
        """One datagram, waited for long enough that a slow guest is not sent a second one."""
        with netns(self.ns):  # Client makes its socket per request
            r = netkv_client.Client(GUEST_IP, timeout=30, retries=1).request(line)
        assert r.attempts == 1, r
        return r

    def raw(self, port: int) -> "RawPeer":
        return RawPeer(self, port)

    def cli(self, *args, timeout=600):
        return subprocess.run(["bash", str(NETLAN), "exec", self.lan, "cli", PY, str(CLIENT),
                               "--server", GUEST_IP, *args],
                              capture_output=True, text=True, timeout=timeout)


def _need_engine(env):
    if env.accel == "kvm":
        _need("/dev/kvm", kvm_present())


@pytest.fixture(scope="module")
def vm(env):
    """One LAN and one netkv (the engine's default mode: irq=1 on the emulator) for the module;
    each test uses keys and ports of its own."""
    _need_engine(env)
    procs = []
    gen = netlan_up("nt", procs)
    lan = next(gen)
    try:
        p, mac = boot(env, lan, procs)
        v = VM(lan, p, mac)
        yield v
        assert p.alive(), p.text
    finally:
        gen.close()


@pytest.fixture
def fresh_lan(env, procs):
    """A LAN of its own, for a test that boots its own netkv (through procs)."""
    _need_engine(env)
    yield from netlan_up("nf", procs)


# ---- the raw peer ----

def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


class Seg:
    def __init__(self, seq, ack, flags, win, data, opts):
        self.seq, self.ack, self.flags, self.win, self.data, self.opts = \
            seq, ack, flags, win, data, opts

    def mss(self):
        o = self.opts
        i = 0
        while i < len(o) and o[i] != 0:
            if o[i] == 1:
                i += 1
                continue
            if o[i] == 2 and o[i + 1] == 4:
                return struct.unpack("!H", o[i + 2:i + 4])[0]
            i += o[i + 1]
        return None

    def __repr__(self):
        names = "".join(n for bit, n in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"),
                                         (ACK, ".")) if self.flags & bit)
        return f"Seg({names} seq={self.seq} ack={self.ack} win={self.win} data={self.data!r})"


class RawPeer:
    """One TCP peer at RAW_IP:port, speaking to the guest through hand-made frames."""

    def __init__(self, vm: VM, port: int):
        with netns(vm.ns):
            self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            self.s.bind(("cli0", 0))
        self.my_mac = self.s.getsockname()[4]
        self.guest_mac = bytes.fromhex(vm.mac.replace(":", ""))
        self.port = port
        self.src = socket.inet_aton(RAW_IP)
        self.dst = socket.inet_aton(GUEST_IP)
        self.seen = set()  # (seq, flags, data) of segments with data, SYN or FIN

    def close(self):
        self.s.close()

    def send(self, flags, seq, ack=0, data=b"", win=65535, opts=b"", dport=TCP_PORT):
        hl = 20 + len(opts)
        tcp = struct.pack("!HHIIBBHHH", self.port, dport, seq & 0xffffffff, ack & 0xffffffff,
                          hl // 4 << 4, flags, win, 0, 0) + opts + data
        pseudo = self.src + self.dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, self.src,
                         self.dst)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        self.s.send(self.guest_mac + self.my_mac + b"\x08\x00" + ip + tcp)

    def recv(self, timeout=30.0, want=None, again=False):
        """The next segment from the guest to this peer (and, with want, that want(seg)
        accepts: others are skipped); None after timeout seconds. Unless again, copies of
        segments seen before (retransmissions, which a slow guest may send at any point) are
        skipped too."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                f, addr = self.s.recvfrom(65536)
            except socket.timeout:
                return None
            if addr[2] == socket.PACKET_OUTGOING or len(f) < 54 or f[12:14] != b"\x08\x00":
                continue
            ip = f[14:]
            ihl = (ip[0] & 15) * 4
            if ip[9] != 6 or ip[12:16] != self.dst or ip[16:20] != self.src:
                continue
            tot = struct.unpack("!H", ip[2:4])[0]
            t = ip[ihl:tot]
            pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(t))
            assert _csum(pseudo + t) == 0, f"bad TCP checksum from the guest: {t!r}"
            sport, dport, seq, ack, off, flags, win = struct.unpack("!HHIIBBH", t[:16])
            if dport != self.port:
                continue
            seg = Seg(seq, ack, flags, win, bytes(t[(off >> 4) * 4:]),
                      bytes(t[20:(off >> 4) * 4]))
            key = (seq, flags, seg.data)
            if seg.data or flags & (SYN | FIN):
                if key in self.seen and not again:
                    continue
                self.seen.add(key)
            if want is None or want(seg):
                return seg

    def expect(self, what: str, timeout=30.0, want=None, again=False) -> Seg:
        seg = self.recv(timeout, want, again)
        assert seg is not None, f"no {what} from the guest within {timeout} s"
        return seg

    def quiet(self, seconds=1.0, want=None):
        """Nothing (that want accepts) arrives for seconds: only ever a pass if the guest is
        slow, never a false failure."""
        seg = self.recv(seconds, want)
        assert seg is None, f"unexpected {seg}"

    def connect(self, isn=1000):
        """Handshake; returns (our next seq, the guest's next seq)."""
        self.send(SYN, isn, opts=struct.pack("!BBH", 2, 4, 1460))
        sa = self.expect("SYN-ACK")
        assert sa.flags == SYN | ACK and sa.ack == isn + 1, sa
        self.send(ACK, isn + 1, sa.seq + 1)
        return isn + 1, sq(sa.seq + 1)


# ---- kernel sockets ----

@pytest.mark.netns
def test_tcp_requests_on_one_connection(vm):
    with vm.tcp() as c:
        assert c.set("tk.a", "hello world").kind == "OK"
        r = c.get("tk.a")
        assert (r.kind, r.value) == ("VALUE", "hello world"), r
        assert c.request("BOGUS x").raw.startswith("ERR badcommand ")
        assert c.request("GET").raw.startswith("ERR badcommand ")
        assert c.request("GET  ").raw.startswith("ERR badkey ")
        assert c.request("SET tk.a " + "v" * 257).raw.startswith("ERR badvalue ")
        d = c.delete("tk.a")
        assert d.kind == "OK" and d.seq == r.seq + 1, (r, d)
        assert c.delete("tk.a").kind == "NONE"
        res = netkv_client.load(c, 2000, nkeys=64, seed=1)
        assert res.contradictions == [] and res.ops == 2000 and res.no_reply == 0, res.summary()
        assert res.lost is None, res.lost


@pytest.mark.netns
def test_tcp_line_split_across_segments(vm):
    """TCP_NODELAY: each piece leaves as it is sent; the guest must join them into lines
    (and tolerate "\\r\\n")."""
    with vm.tcp() as c:
        for piece in (b"SE", b"T tk.split ", b"two ", b"pieces\r", b"\n", b"GET tk.sp", b"lit\n"):
            c.send_raw(piece)
            time.sleep(0.05)  # helps the pieces travel apart; the result must not depend on it
        a, b = c.read_reply(), c.read_reply()
        assert a.kind == "OK" and (b.kind, b.value, b.seq) == ("VALUE", "two pieces", a.seq), (a, b)


@pytest.mark.netns
def test_tcp_pipelined_requests(vm):
    """Many lines in one send: one reply per line, in order; 3000 lines (~40 KB) exceed the
    16 KiB window and replies the 8 KiB send buffer, so both flow controls are exercised."""
    with vm.tcp() as c:
        lines = [f"SET tk.p{i % 10} v{i}" if i % 3 else f"GET tk.p{i % 10}" for i in range(3000)]
        replies = c.request_many(lines)
        assert len(replies) == 3000
        seqs = [r.seq for r in replies]
        assert all(r.kind == "OK" for i, r in enumerate(replies) if i % 3), replies[:5]
        steps = [b - a for a, b in zip(seqs, seqs[1:])]
        assert steps == [1 if i % 3 else 0 for i in range(1, 3000)], seqs[:10]
        last = {}
        for i, r in enumerate(replies):  # a GET sees the previous SET of its key
            if i % 3:
                last[i % 10] = f"v{i}"
            else:
                assert r.value == last.get(i % 10), (i, r)


@pytest.mark.netns
def test_tcp_overlong_line(vm):
    with vm.tcp() as c:
        r = c.request("GET " + "k" * 5000)
        assert r.raw.startswith("ERR badkey "), r
        r = c.request("SET tk.long " + "v" * 3000)
        assert r.raw.startswith("ERR badvalue "), r
        assert c.request("GET tk.long").kind == "NONE"


@pytest.mark.netns
def test_tcp_many_connections_at_once(vm):
    """40 connections open together, requests interleaved across them, then each closed with
    FIN both ways; then connections until the guest refuses one (its table is full)."""
    clients = [vm.tcp() for _ in range(40)]
    try:
        for i, c in enumerate(clients):
            assert c.set(f"tk.m{i}", f"c{i}").kind == "OK"
        for i, c in reversed(list(enumerate(clients))):
            r = c.get(f"tk.m{(i + 1) % 40}")
            assert r.value == f"c{(i + 1) % 40}", r
    finally:
        closed = [c.close() for c in clients]
    assert all(closed), closed

    more = []
    try:
        with pytest.raises(ConnectionRefusedError):
            for _ in range(200):
                more.append(vm.tcp(connect_timeout=30))
                assert more[-1].get("tk.m0").value == "c0"
        assert len(more) >= 32, len(more)
    finally:
        for c in more:
            c.close()
    # the slots were freed: connections work again
    for _ in range(3):
        with vm.tcp() as c:
            assert c.get("tk.m1").value == "c1"


@pytest.mark.netns
def test_tcp_fin_and_last_line(vm):
    """A last line without "\\n" before our FIN is answered, then the guest closes."""
    with netns(vm.ns):
        s = socket.create_connection((GUEST_IP, TCP_PORT), timeout=60)
    with s:
        s.sendall(b"SET tk.fin x\nGET tk.fin")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    lines = data.decode().splitlines()
    assert len(lines) == 2 and lines[0].startswith("OK ") and lines[1].startswith("VALUE x "), data


@pytest.mark.netns
def test_tcp_cli_load(vm):
    r = vm.cli("--tcp", "load", "--ops", "2000", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "load ops=2000 " in r.stdout and "contradictions=0" in r.stdout, r.stdout
    r = vm.cli("--both", "load", "--ops", "2000", "--check", "--seed", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "load ops=2000 " in r.stdout and "contradictions=0" in r.stdout, r.stdout
    r = vm.cli("--tcp", "raw", "NOPE")
    assert r.returncode == 1 and r.stdout.startswith("ERR badcommand "), r.stdout + r.stderr
    r = vm.cli("--tcp", "--tcp-port", "7002", "get", "x", timeout=60)
    assert r.returncode == 4 and "refused" in r.stderr, r.stdout + r.stderr


# ---- the raw peer: the protocol's edges ----

@pytest.mark.netns
def test_raw_handshake_retransmitted_syn_and_data(vm):
    p = vm.raw(41001)
    try:
        p.send(SYN, 5000, opts=struct.pack("!BBH", 2, 4, 1200))
        sa = p.expect("SYN-ACK")
        assert sa.flags == SYN | ACK and sa.ack == 5001 and sa.mss() == 1460, sa
        assert sa.win == 16384 and sa.data == b"", sa
        p.send(SYN, 5000, opts=struct.pack("!BBH", 2, 4, 1200))  # as if the SYN-ACK was lost
        sa2 = p.expect("second SYN-ACK", again=True)
        assert (sa2.flags, sa2.seq, sa2.ack, sa2.mss()) == (sa.flags, sa.seq, sa.ack, 1460), sa2
        me, them = 5001, sq(sa.seq + 1)
        p.send(ACK, me, them)

        # a partial line: a pure ACK at once
        p.send(ACK | PSH, me, them, b"SET tk.raw val")
        a = p.expect("ACK of a partial line")
        assert a.flags == ACK and a.ack == me + 14 and a.data == b"" and a.seq == them, a
        me += 14
        p.send(ACK | PSH, me, them, b"ue\r\n")
        r = p.expect("reply")
        assert r.flags & ACK and r.ack == me + 4 and r.seq == them, r
        assert re.fullmatch(rb"OK \d+\n", r.data), r
        me, them = me + 4, sq(them + len(r.data))
        p.send(ACK, me, them)

        # out of order (a gap): dropped, a duplicate ACK
        p.send(ACK | PSH, me + 7, them, b"GET tk.raw\n")
        d = p.expect("duplicate ACK")
        assert d.ack == me and d.data == b"" and d.seq == them, d
        # wholly old: dropped, a duplicate ACK, no reply
        p.send(ACK | PSH, me - 4, them, b"ue\r\n")
        d = p.expect("duplicate ACK")
        assert d.ack == me and d.data == b"", d
        # partly old: the new tail is served
        p.send(ACK | PSH, me - 4, them, b"ue\r\nGET tk.raw\n")
        r = p.expect("reply to the new tail")
        assert r.ack == me + 11 and re.fullmatch(rb"VALUE value \d+\n", r.data), r
        me, them = me + 11, sq(them + len(r.data))
        p.send(ACK, me, them)

        # two lines in one segment: both replies, in order
        p.send(ACK | PSH, me, them, b"GET tk.raw\nDEL tk.raw\n")
        got = b""
        while got.count(b"\n") < 2:
            r = p.expect("replies", want=lambda s: s.data)
            assert r.seq == sq(them + len(got)), r
            got += r.data
        assert re.fullmatch(rb"VALUE value (\d+)\nOK (\d+)\n", got), got
        me, them = me + 22, sq(them + len(got))
        p.send(ACK, me, them)

        # our FIN: ACKed, then the guest's FIN; a repeated FIN is ACKed again
        p.send(FIN | ACK, me, them)
        f = p.expect("FIN", want=lambda s: s.flags & FIN)
        assert f.ack == me + 1 and f.seq == them, f
        p.send(FIN | ACK, me, them)
        d = p.expect("ACK of the repeated FIN")
        assert d.ack == me + 1, d
        p.send(ACK, me + 1, them + 1)  # the guest's FIN acknowledged: the slot is free
        p.send(ACK, me + 1, them + 1)
        r = p.expect("RST for a connection that is gone", want=lambda s: s.flags & RST)
        assert r.seq == sq(them + 1), r
    finally:
        p.close()


@pytest.mark.netns
def test_raw_resets(vm):
    p = vm.raw(41002)
    try:
        # a segment for no connection: RST (seq = its ack)
        p.send(ACK | PSH, 100, 777, b"GET x\n")
        r = p.expect("RST")
        assert r.flags & RST and r.seq == 777, r
        # a SYN to a closed port: RST+ACK
        p.send(SYN, 300, dport=7002)
        r = p.expect("RST for port 7002")
        assert r.flags == RST | ACK and r.ack == 301, r
        # never an answer to an RST
        p.send(RST, 100)
        p.send(RST | ACK, 100, 5)
        p.quiet(1.0)
        # an RST in the window ends a connection
        me, them = p.connect(9000)
        p.send(RST, me)
        p.send(ACK | PSH, me, them, b"GET x\n")
        r = p.expect("RST after the reset", want=lambda s: s.flags & RST)
        assert r.seq == them, r
    finally:
        p.close()


@pytest.mark.netns
def test_raw_client_window_honoured(vm):
    p = vm.raw(41003)
    try:
        me, them = p.connect(20000)
        p.send(ACK | PSH, me, them, b"SET tk.win " + b"w" * 100 + b"\n", win=0)
        me += 112
        # a closed window: at most one byte in flight (a probe)
        r = p.expect("probe")
        assert r.ack == me and len(r.data) <= 1, r
        got = r.data if r.seq == them else b""
        p.send(ACK, me, sq(them + len(got)), win=10)
        while not got.endswith(b"\n"):
            r = p.expect("reply bytes", want=lambda s: s.data)
            off = sq(r.seq - them)
            assert len(r.data) <= 10 and off <= len(got), (r, got)
            got = got[:off] + r.data + got[off + len(r.data):]  # retransmissions overlap
            p.send(ACK, me, sq(them + len(got)), win=10)
        assert re.fullmatch(rb"OK \d+\n", got), got
        p.send(RST, me)
    finally:
        p.close()


def retransmission(vm, port):
    """A reply left unacknowledged comes again, the same bytes at the same seq; so does our
    FIN; ACKs end both."""
    p = vm.raw(port)
    try:
        me, them = p.connect(30000)
        p.send(ACK | PSH, me, them, b"GET tk.rtx\n")
        me += 11
        first = p.expect("reply", want=lambda s: s.data)
        again = p.expect("retransmitted reply", want=lambda s: s.data, again=True)
        assert (again.seq, again.data) == (first.seq, first.data), (first, again)
        assert re.fullmatch(rb"NONE \d+\n", first.data), first
        them = sq(them + len(first.data))
        p.send(ACK, me, them)
        p.send(FIN | ACK, me, them)
        f = p.expect("FIN", want=lambda s: s.flags & FIN)
        f2 = p.expect("retransmitted FIN", want=lambda s: s.flags & FIN, again=True)
        assert f2.seq == f.seq == them and f2.ack == me + 1, (f, f2)
        p.send(ACK, me + 1, them + 1)
    finally:
        p.close()


@pytest.mark.netns
def test_raw_retransmission(vm):
    retransmission(vm, 41004)


@pytest.mark.netns
def test_raw_retransmission_polling(env, fresh_lan, procs):
    """The same in polling mode (irq=0: no timer interrupt, the loop reads the TSC)."""
    proc, mac = boot(env, fresh_lan, procs, "irq=0")
    retransmission(VM(fresh_lan, proc, mac), 41005)


@pytest.mark.netns
@pytest.mark.slow
def test_raw_gives_up_with_rst(vm):
    """A SYN-ACK never acknowledged: RTO_TRIES retransmissions (the same SYN-ACK), then RST
    (about 30 s: 0.2 s doubling to 4 s)."""
    p = vm.raw(41006)
    try:
        p.send(SYN, 7000, opts=struct.pack("!BBH", 2, 4, 1460))
        segs = [p.expect("SYN-ACK")]
        while not segs[-1].flags & RST:
            segs.append(p.expect("SYN-ACK or RST", timeout=60, again=True))
        syn_acks, rst = segs[:-1], segs[-1]
        assert len(syn_acks) == 1 + RTO_TRIES, segs
        assert {(s.flags, s.seq, s.ack) for s in syn_acks} == {(SYN | ACK, segs[0].seq, 7001)}
        assert rst.seq in (segs[0].seq, sq(segs[0].seq + 1)), rst
        p.send(ACK, 7001, sq(segs[0].seq + 1))
        r = p.expect("RST: the connection is gone")
        assert r.flags & RST, r
    finally:
        p.close()


# ---- diverge=N ----

@pytest.mark.netns
def test_diverge_every_nth_reply(env, fresh_lan, procs):
    """diverge=4: replies 4, 8, 12, ... carry "~<16 hex> ", counted over UDP and TCP together;
    the rest of each reply is the plain one."""
    proc, mac = boot(env, fresh_lan, procs, "diverge=4")
    proc.wait_for(r"netkv ready .* diverge=4\n")  # the rest of the ready line
    vm = VM(fresh_lan, proc, mac)
    replies = []
    with vm.tcp() as c, vm.tcp() as d:
        for i in range(1, 41):
            line = f"SET tk.d{i % 5} v{i}" if i % 2 else f"GET tk.d{i % 5}"
            if i % 3 == 0:
                replies.append(vm.udp_request(line))
            else:
                replies.append((c if i % 3 == 1 else d).request(line))
        replies += c.request_many(["GET tk.d1"] * 8)  # replies 41..48 in one segment
    with_nonce = [i for i, r in enumerate(replies, 1) if r.nonce is not None]
    assert with_nonce == list(range(4, 49, 4)), [r.raw for r in replies]
    for r in replies:
        assert r.raw.startswith(f"~{r.nonce} ") if r.nonce else not r.raw.startswith("~"), r
        assert re.fullmatch(r"[0-9a-f]{16}", r.nonce or "0" * 16), r
    assert len({r.nonce for r in replies if r.nonce}) == 12  # the TSC moved between them
    assert replies[0].kind == "OK" and replies[3].kind in ("VALUE", "NONE"), replies[:4]


def test_client_parses_the_nonce():
    r = netkv_client.parse_reply(b"~00000012a05f2c4e VALUE a b 7\n")
    assert (r.nonce, r.kind, r.value, r.seq) == ("00000012a05f2c4e", "VALUE", "a b", 7), r
    r = netkv_client.parse_reply(b"OK 3\n")
    assert (r.nonce, r.kind, r.seq) == (None, "OK", 3), r
    with pytest.raises(ValueError):
        netkv_client.parse_reply(b"~0012 OK 3\n")  # not a nonce: a malformed reply
