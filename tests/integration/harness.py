"""harness.py: run tandem and QEMU processes, read their serial output, and talk QMP to them."""
import dataclasses
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time


@dataclasses.dataclass
class Env:
    root: pathlib.Path
    tandem: pathlib.Path
    guests: pathlib.Path
    accel: str = "auto"  # tandem's --accel for every guest run

    def qemu_accel(self) -> list:
        """QEMU's engine on the same host: KVM with tandem on KVM, else TCG."""
        if self.accel == "kvm":
            return ["-enable-kvm", "-cpu", "host,-arch-capabilities"]
        return ["-accel", "tcg", "-cpu", "max"]

    def guest(self, name: str) -> pathlib.Path:
        p = self.guests / f"{name}.elf"
        assert p.exists(), f"guest {p} not built"
        return p


class Proc:
    """A child process whose stdout+stderr are collected by a thread; waits are by content."""

    def __init__(self, argv, **kw):
        self.argv = [str(a) for a in argv]
        self.p = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, **kw)
        self.buf = b""
        self.lock = threading.Condition()
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()

    def _reader(self):
        while True:
            chunk = self.p.stdout.read1(65536)
            with self.lock:
                if not chunk:
                    self.lock.notify_all()
                    return
                self.buf += chunk
                self.lock.notify_all()

    @property
    def text(self) -> str:
        with self.lock:
            return self.buf.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60, start: int = 0) -> re.Match:
        """Wait until pattern appears in the output (after character offset start)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                m = rx.search(self.buf.decode(errors="replace"), start)
                if m:
                    return m
                if self.p.poll() is not None and not self.t.is_alive():
                    raise AssertionError(f"process exited ({self.p.returncode}) before "
                                         f"/{pattern}/; output:\n{self.text[-4000:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timeout waiting for /{pattern}/; output:\n"
                                         f"{self.text[-4000:]}")
                self.lock.wait(min(left, 0.5))

    def wait(self, timeout: float = 60) -> int:
        rc = self.p.wait(timeout=timeout)
        self.t.join(timeout=5)
        return rc

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def ticks(text: str):
    return [int(x) for x in re.findall(r"tick (\d+) chain=", text)]


class QMP:
    """A minimal QMP client (QEMU wire protocol) used by the tests."""

    def __init__(self, path, timeout: float = 30, negotiate: bool = True):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.s.settimeout(timeout)
        self.f = self.s.makefile("rb")
        self.events = []
        self.greeting = self._read()
        if negotiate:
            self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("QMP connection closed")
        return json.loads(line)

    def send_raw(self, data: bytes):
        self.s.sendall(data)

    def read_reply(self):
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def execute(self, name, args=None, **kw):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        req.update(kw)
        self.send_raw(json.dumps(req).encode() + b"\n")
        return self.read_reply()

    def cmd(self, name, args=None):
        r = self.execute(name, args)
        if "error" in r:
            raise RuntimeError(f"{name}: {r['error']}")
        return r["return"]

    def wait_event(self, name, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            self.s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                msg = self._read()
            except socket.timeout:
                raise AssertionError(f"no {name} event; got {self.events}")
            if "event" in msg:
                self.events.append(msg)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {name} event; got {self.events}")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def tmpdir() -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix="tandem-test-"))


IRQ_GUESTS = ("netkv", "blkcheck")


def guest_append(env: Env, guest: str, append: str) -> str:
    """On the emulator the virtio guests wait for interrupts (irq=1) instead of polling: a
    polling guest would keep a host core busy, and pairs share two cores. On KVM they poll.
    counter re-hashes 2 pages per tick instead of 64 there (chunk=2): the same chain and the
    same checks, at a tick rate an interpreter reaches (the tests wait for tick numbers)."""
    if env.accel == "emu" and guest in IRQ_GUESTS and "irq=" not in append:
        return (append + " irq=1").strip()
    if env.accel == "emu" and guest == "counter" and "chunk=" not in append:
        return (append + " chunk=2").strip()
    return append


def tandem_run(env: Env, guest: str, *extra, append: str = "", procs=None, environ=None,
               netns=None, accel=None, **kw) -> Proc:
    """Start `tandem run` on a guest; environ adds variables to the child's environment; netns
    runs it inside that network namespace; accel overrides env.accel (e.g. "emu,icount=on")."""
    argv = [env.tandem, "run", "--kernel", env.guest(guest), "--accel", accel or env.accel]
    append = guest_append(env, guest, append)
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    if append:
        argv += ["--append", append]
    argv += list(extra)
    if environ:
        kw["env"] = {**os.environ, **environ}
    p = Proc(argv, **kw)
    if procs is not None:
        procs.append(p)
    return p


def qemu_run(env: Env, guest: str, append: str = "", mem: str = "256", procs=None) -> Proc:
    argv = ["qemu-system-x86_64"] + env.qemu_accel() + ["-m", mem, "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-kernel", env.guest(guest), "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
    if append:
        argv += ["-append", append]
    p = Proc(argv)
    if procs is not None:
        procs.append(p)
    return p


def qemu_status(v: int) -> int:
    """The exit status QEMU's isa-debug-exit gives for guest value v."""
    return ((v << 1) | 1) & 0xFF


def netlan_up(prefix: str, procs, *args):
    """Generator for a fixture: scripts/netlan.sh up NAME ARGS (NAME from prefix and our pid),
    yields NAME; at the end kills procs and tears the LAN down, even when the test failed.
    Needs root and iproute2 (conftest's _need: a skip, a failure in CI)."""
    import shutil
    from conftest import _need
    _need("root and iproute2", os.geteuid() == 0 and shutil.which("ip") is not None)
    netlan = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "netlan.sh"

    def run(*a, check=True):
        subprocess.run(["bash", str(netlan), *a], capture_output=True, text=True, check=check,
                       timeout=60)

    name = f"{prefix}{os.getpid() % 100000}"
    run("down", name)
    run("up", name, *args)
    try:
        yield name
    finally:
        for p in procs:
            p.kill()
        run("down", name, check=False)
