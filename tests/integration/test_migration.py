"""test_migration.py: live migration between tandem processes: tcp, unix, defer, snapshots,
convergence, cancel, and the failure paths (kill -9 on either side, corrupt streams, bad URIs).

Every wait is on content (a status, a line of output), never on elapsed time: a slow stream is
made slow with max-bandwidth, not with sleeps.
"""
import random
import re
import socket
import struct
import threading
import time

import pytest

from harness import QMP, tandem_run, ticks, tmpdir

MiB = 1 << 20
EVENTS_ON = {"capabilities": [{"capability": "events", "state": True}]}
ENDED = ("completed", "failed", "cancelled")
TICK_LINE = re.compile(r"^tick (\d+) chain=([0-9a-f]{16})$", re.M)
ROUND = re.compile(r"^round (\d+)$", re.M)
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:",
             "ThreadSanitizer")
# A slow stream: the counter's 16 MiB region takes several seconds to go at this rate.
SLOW_BW = 2 * MiB


# ---- helpers ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_uri() -> str:
    return f"tcp:127.0.0.1:{free_port()}"


def unix_uri() -> str:
    return f"unix:{tmpdir() / 'mig.sock'}"


def start_source(vmenv, procs, guest="counter", append="", *extra):
    sock = tmpdir() / "src.sock"
    p = tandem_run(vmenv, guest, "--qmp", f"unix:{sock}", *extra, append=append, procs=procs)
    return p, QMP(sock)


def start_dest(vmenv, procs, uri, guest="counter", *extra):
    """A destination waiting on uri. Its QMP greeting arrives only once the main loop runs, i.e.
    after the incoming channel is listening, so the source may connect as soon as this returns."""
    sock = tmpdir() / "dst.sock"
    p = tandem_run(vmenv, guest, "--incoming", uri, "--qmp", f"unix:{sock}", *extra, procs=procs)
    return p, QMP(sock)


def wait_status(q, want, timeout=120, cond=None):
    """Poll query-migrate until its status is in want (and cond holds); fail at once if the
    migration ends any other way."""
    want = (want,) if isinstance(want, str) else tuple(want)
    deadline = time.monotonic() + timeout
    while True:
        r = q.cmd("query-migrate")
        st = r.get("status")
        if st in want and (cond is None or cond(r)):
            return r
        if st in ENDED and st not in want:
            raise AssertionError(f"migration ended '{st}' while waiting for {want}: {r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout waiting for migration status {want}; last: {r}")
        time.sleep(0.05)


def migration_events(q, until, timeout=60):
    """The statuses of MIGRATION events, in order, up to and including the status until."""
    seen = []
    while until not in seen:
        seen.append(q.wait_event("MIGRATION", timeout)["data"]["status"])
    return seen


def more_lines(p, rx, n=3, timeout=60):
    """Wait for n more complete lines matching rx (a full-line pattern) after what is there now."""
    start = len(p.text)
    out = []
    for _ in range(n):
        m = p.wait_for(rx, timeout, start=start)
        out.append(m)
        start = m.end()
    return out


def more_ticks(p, n=3, timeout=60):
    return [int(m.group(1)) for m in more_lines(p, r"tick (\d+) chain=[0-9a-f]{16}\n", n, timeout)]


def more_rounds(p, n=2, timeout=60):
    return [int(m.group(1)) for m in more_lines(p, r"(?m)^round (\d+)\n", n, timeout)]


def full_ticks(text):
    """Complete `tick N chain=X` lines only (a migration may stop the guest mid-line)."""
    return [(int(n), c) for n, c in TICK_LINE.findall(text)]


def wait_full_ticks(p, n, timeout=120):
    """Wait until p printed n complete tick lines (from the start of its output)."""
    start = 0
    for _ in range(n):
        start = p.wait_for(r"(?m)^tick \d+ chain=[0-9a-f]{16}\n", timeout, start=start).end()


def assert_seamless(before, after, every=4096, rx=TICK_LINE):
    """The destination's output continues the source's exactly (a migration may stop the guest
    mid-line: the destination prints the rest): every line, none lost, none repeated."""
    seq = [int(m.group(1)) for m in rx.finditer(before + after)]
    assert seq and seq == [every * (i + 1) for i in range(len(seq))], \
        f"not one seamless run of numbered lines: {seq}\n--- source ends:\n{before[-300:]}\n" \
        f"--- destination starts:\n{after[:300]}"


def assert_clean(p):
    t = p.text
    assert "CORRUPT" not in t, t[-3000:]
    for s in SANITIZER:
        assert s not in t, t[-3000:]


def assert_never_ran(p, rc):
    """A destination whose load failed: exit status 1 (not a signal, not a crash), a migration
    error on stderr, and no guest output at all."""
    t = p.text
    assert rc == 1, f"exit status {rc}, expected 1; output:\n{t[-3000:]}"
    for s in SANITIZER:
        assert s not in t, t[-3000:]
    assert "tick" not in t and "chain=" not in t and "round" not in t, \
        f"the destination ran the guest after a failed load:\n{t[-3000:]}"
    assert re.search(r"error: migration: ", t), f"no migration error reported:\n{t[-3000:]}"


def assert_keeps_ticking(p, q):
    assert q.cmd("query-status")["status"] == "running"
    before = max(ticks(p.text), default=0)
    got = more_ticks(p, 2)
    assert min(got) > before
    assert_clean(p)


def reference_chain(vmenv, procs, n, append=""):
    """The chain a fresh, never-migrated counter has after tick n (it depends only on mem and n)."""
    ref = tandem_run(vmenv, "counter", append=f"{append} ticks={n}".strip(), procs=procs)
    assert ref.wait(300) == 0, ref.text[-2000:]
    m = re.search(rf"^tick {n} chain=([0-9a-f]{{16}})$", ref.text, re.M)
    assert m, ref.text[-2000:]
    return m.group(1)


# ---- successful migrations -------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_counter_migrates_and_continues(vmenv, procs, transport):
    uri = tcp_uri() if transport == "tcp" else unix_uri()
    src, qs = start_source(vmenv, procs)
    dst, qd = start_dest(vmenv, procs, uri)
    st = qd.cmd("query-status")
    assert st["status"] == "inmigrate" and st["running"] is False
    src.wait_for(r"tick 8192 chain=")
    qs.cmd("migrate-set-capabilities", EVENTS_ON)
    caps = {c["capability"]: c["state"] for c in qs.cmd("query-migrate-capabilities")}
    assert caps["events"] is True
    qs.cmd("migrate", {"uri": uri})

    r = wait_status(qs, "completed")
    assert isinstance(r["downtime"], int) and r["downtime"] >= 0, r
    assert isinstance(r["total-time"], int) and r["total-time"] >= 0, r
    assert r["ram"]["total"] == 256 * MiB, r
    assert r["ram"]["transferred"] > 16 * MiB, r  # at least the counter's region went
    assert r["ram"]["normal"] >= 16 * MiB // 4096, r
    assert qs.cmd("query-status")["status"] == "postmigrate"
    assert qs.cmd("query-status")["running"] is False
    seen = migration_events(qs, "completed")
    assert seen[0] == "setup" and "active" in seen and seen[-1] == "completed", seen
    assert "failed" not in seen and "cancelled" not in seen, seen

    last_src = max(ticks(src.text))
    got = more_ticks(dst, 3)
    st = qd.cmd("query-status")
    assert st["status"] == "running" and st["running"] is True
    assert qd.cmd("query-migrate")["status"] == "completed"
    dticks = ticks(dst.text)
    assert dticks == sorted(dticks) and min(dticks) > last_src, (last_src, dticks)
    assert got[-1] > got[0]
    assert_seamless(src.text, dst.text)
    assert_clean(dst)
    assert_clean(src)

    # The migrated guest computes what a never-migrated one does.
    n, chain = full_ticks(dst.text)[1]
    assert reference_chain(vmenv, procs, n) == chain

    # The source stays paused: nothing more is printed, however long we look.
    frozen = len(src.text)
    time.sleep(0.5)
    assert len(src.text) == frozen
    assert src.alive()
    qs.cmd("quit")
    assert src.wait(30) == 0


def test_no_migration_events_without_the_capability(vmenv, procs):
    uri = unix_uri()
    src, qs = start_source(vmenv, procs)
    dst, qd = start_dest(vmenv, procs, uri)
    src.wait_for(r"tick 4096 chain=")
    qs.cmd("migrate", {"uri": uri})
    wait_status(qs, "completed")
    more_ticks(dst, 1)
    qs.cmd("query-status")
    assert not [e for e in qs.events if e["event"] == "MIGRATION"], qs.events
    assert_clean(dst)


def test_migrated_guest_migrates_again(vmenv, procs):
    """A -> B -> C: the guest that arrived on B moves on to C and still computes the right chain."""
    a, qa = start_source(vmenv, procs)
    a.wait_for(r"tick 4096 chain=")
    uri_b, uri_c = tcp_uri(), unix_uri()
    b, qb = start_dest(vmenv, procs, uri_b)
    qa.cmd("migrate", {"uri": uri_b})
    wait_status(qa, "completed")
    more_ticks(b, 2)
    c, qc = start_dest(vmenv, procs, uri_c)
    r = qb.execute("migrate-set-capabilities", EVENTS_ON)
    assert "return" in r, r  # B's incoming migration is over: it is a source like any other
    qb.cmd("migrate", {"uri": uri_c})
    wait_status(qb, "completed")
    assert qb.cmd("query-status")["status"] == "postmigrate"
    assert "completed" in migration_events(qb, "completed")
    more_ticks(c, 3)
    assert qc.cmd("query-status")["status"] == "running"
    assert_seamless(a.text, b.text + c.text)
    for p in (a, b, c):
        assert_clean(p)
    n, chain = full_ticks(c.text)[1]
    assert reference_chain(vmenv, procs, n) == chain


def test_destination_accepts_capabilities_while_waiting(vmenv, procs):
    """QEMU 7.2 lets a destination started with -incoming tcp:... take migrate-set-capabilities
    (docs/COLO-FT.txt sets x-colo on the secondary that way); the outgoing side is idle there."""
    uri = tcp_uri()
    dst, qd = start_dest(vmenv, procs, uri)
    r = qd.execute("migrate-set-capabilities", EVENTS_ON)
    assert "return" in r, f"an -incoming destination refuses migrate-set-capabilities: {r}"
    src, qs = start_source(vmenv, procs)
    src.wait_for(r"tick 4096 chain=")
    qs.cmd("migrate", {"uri": uri})
    wait_status(qs, "completed")
    assert migration_events(qd, "completed")[-1] == "completed"
    more_ticks(dst, 1)


def test_destination_emits_migration_events(vmenv, procs):
    dst, qd = start_dest(vmenv, procs, "defer")
    qd.cmd("migrate-set-capabilities", EVENTS_ON)
    uri = tcp_uri()
    qd.cmd("migrate-incoming", {"uri": uri})
    src, qs = start_source(vmenv, procs)
    src.wait_for(r"tick 4096 chain=")
    qs.cmd("migrate", {"uri": uri})
    wait_status(qs, "completed")
    seen = migration_events(qd, "completed")
    assert "failed" not in seen, seen
    more_ticks(dst, 1)
    assert qd.cmd("query-migrate")["status"] == "completed"
    qd.wait_event("RESUME")


def test_migrate_from_a_waiting_destination_is_an_error(vmenv, procs):
    uri = tcp_uri()
    dst, qd = start_dest(vmenv, procs, uri)
    r = qd.execute("migrate", {"uri": tcp_uri()})
    assert r.get("error", {}).get("class") == "GenericError", r
    assert qd.cmd("query-status")["status"] == "inmigrate"
    # ... and it still takes the migration it waits for.
    src, qs = start_source(vmenv, procs)
    src.wait_for(r"tick 4096 chain=")
    qs.cmd("migrate", {"uri": uri})
    wait_status(qs, "completed")
    more_ticks(dst, 1)


def test_incoming_defer_then_migrate_incoming(vmenv, procs):
    dst, qd = start_dest(vmenv, procs, "defer")
    assert qd.cmd("query-status")["status"] == "inmigrate"
    src, qs = start_source(vmenv, procs)
    src.wait_for(r"tick 4096 chain=")
    uri = tcp_uri()
    qd.cmd("migrate-incoming", {"uri": uri})
    r = qd.execute("migrate-incoming", {"uri": tcp_uri()})
    assert r.get("error", {}).get("class") == "GenericError", r  # only once
    qs.cmd("migrate", {"uri": uri})
    wait_status(qs, "completed")
    last_src = max(ticks(src.text))
    got = more_ticks(dst, 3)
    assert min(got) > last_src
    assert qd.cmd("query-status")["status"] == "running"
    assert_clean(dst)


def test_migrate_incoming_without_defer_is_an_error(vmenv, procs):
    # Waiting on a channel already: a second one is refused, and the first one still works.
    uri = tcp_uri()
    dst, qd = start_dest(vmenv, procs, uri)
    r = qd.execute("migrate-incoming", {"uri": tcp_uri()})
    assert r.get("error", {}).get("class") == "GenericError", r
    assert qd.cmd("query-status")["status"] == "inmigrate"
    # A running VM never started for an incoming migration refuses it too.
    src, qs = start_source(vmenv, procs)
    src.wait_for(r"tick 4096 chain=")
    r = qs.execute("migrate-incoming", {"uri": tcp_uri()})
    assert r.get("error", {}).get("class") == "GenericError", r
    assert_keeps_ticking(src, qs)
    qs.cmd("migrate", {"uri": uri})
    wait_status(qs, "completed")
    more_ticks(dst, 2)
    assert_clean(dst)


def test_parameters_roundtrip_and_validation(vmenv, procs):
    src, qs = start_source(vmenv, procs)
    p = qs.cmd("query-migrate-parameters")
    assert p["downtime-limit"] == 300 and p["max-bandwidth"] == 0
    qs.cmd("migrate-set-parameters", {"downtime-limit": 7, "max-bandwidth": 12345,
                                      "x-max-iterations": 4})
    p = qs.cmd("query-migrate-parameters")
    assert (p["downtime-limit"], p["max-bandwidth"], p["x-max-iterations"]) == (7, 12345, 4)
    for bad in ({"downtime-limit": -1}, {"no-such-parameter": 1}, {"max-bandwidth": "fast"},
                {"x-max-iterations": 0}):
        r = qs.execute("migrate-set-parameters", bad)
        assert r.get("error", {}).get("class") == "GenericError", (bad, r)
    p = qs.cmd("query-migrate-parameters")  # a rejected call changes nothing
    assert (p["downtime-limit"], p["max-bandwidth"], p["x-max-iterations"]) == (7, 12345, 4)
    assert qs.cmd("query-migrate") == {}  # QEMU's answer before any migration


# ---- convergence ------------------------------------------------------------------------------

# The dirty guest rewriting its whole 4 MiB region (1024 pages) every round, as fast as it can.
DIRTY_ALL = "mem=4M pages=1024 every=1000"


def test_dirty_guest_cannot_converge_when_the_link_is_too_slow(vmenv, procs):
    """max-bandwidth 4 MiB/s: each iteration takes ~1 s to send the 4 MiB region, and the guest
    redirties all of it meanwhile; the 4 MiB left would need ~1 s of downtime, far over 1 ms.
    After x-max-iterations the migration must fail and leave the source running."""
    uri = tcp_uri()
    src, qs = start_source(vmenv, procs, "dirty", DIRTY_ALL, "--memory", "64M")
    dst, qd = start_dest(vmenv, procs, uri, "dirty", "--memory", "64M")
    src.wait_for(r"round 1000\n")
    qs.cmd("migrate-set-capabilities", EVENTS_ON)
    qs.cmd("migrate-set-parameters", {"downtime-limit": 1, "x-max-iterations": 3,
                                      "max-bandwidth": 4 * MiB})
    qs.cmd("migrate", {"uri": uri})
    r = wait_status(qs, "failed")
    assert "did not converge" in r.get("error-desc", ""), r
    assert r["ram"]["dirty-sync-count"] == 3, r
    assert "device" not in migration_events(qs, "failed")  # never stopped the guest
    assert qs.cmd("query-status")["status"] == "running"
    before = max(int(x) for x in ROUND.findall(src.text))
    assert min(more_rounds(src, 2)) > before
    assert_clean(src)
    # The destination got a stream that simply ended: it never ran.
    assert_never_ran(dst, dst.wait(60))


def test_dirty_guest_converges_with_a_generous_downtime_limit(vmenv, procs):
    uri = tcp_uri()
    src, qs = start_source(vmenv, procs, "dirty", DIRTY_ALL, "--memory", "64M")
    dst, qd = start_dest(vmenv, procs, uri, "dirty", "--memory", "64M")
    src.wait_for(r"round 1000\n")
    qs.cmd("migrate-set-parameters", {"downtime-limit": 60000, "x-max-iterations": 3})
    qs.cmd("migrate", {"uri": uri})
    r = wait_status(qs, "completed")
    assert r["ram"]["dirty-sync-count"] >= 1, r
    assert qs.cmd("query-status")["status"] == "postmigrate"
    last_src = max((int(x) for x in ROUND.findall(src.text)), default=0)
    got = more_rounds(dst, 3)
    assert min(got) > last_src, (last_src, got)
    assert_seamless(src.text, dst.text, every=1000, rx=ROUND)
    assert qd.cmd("query-status")["status"] == "running"
    assert_clean(dst)  # the guest re-checks every page's stamp: no torn page arrived


def test_dirty_guest_heavy_load_tiny_downtime_converges_or_fails_cleanly(vmenv, procs):
    """Unlimited bandwidth, 1 ms, 3 iterations, 64 MiB rewritten per round: the outcome depends
    on the machine, but it must be one of the two clean ones."""
    uri = tcp_uri()
    src, qs = start_source(vmenv, procs, "dirty", "mem=64M pages=16384 every=20")
    dst, qd = start_dest(vmenv, procs, uri, "dirty")
    src.wait_for(r"round 20\n")
    qs.cmd("migrate-set-parameters", {"downtime-limit": 1, "x-max-iterations": 3})
    qs.cmd("migrate", {"uri": uri})
    r = wait_status(qs, ("completed", "failed"))
    if r["status"] == "failed":
        assert "did not converge" in r.get("error-desc", ""), r
        assert qs.cmd("query-status")["status"] == "running"
        more_rounds(src, 2)
        assert_clean(src)
        assert_never_ran(dst, dst.wait(60))
    else:
        assert qs.cmd("query-status")["status"] == "postmigrate"
        more_rounds(dst, 2)
        assert qd.cmd("query-status")["status"] == "running"
        assert_clean(dst)


# ---- snapshots --------------------------------------------------------------------------------

def take_snapshot(vmenv, procs, path, mem="256M", min_tick=8192):
    src, qs = start_source(vmenv, procs, "counter", "", "--memory", mem)
    src.wait_for(rf"tick {min_tick} chain=")
    qs.cmd("migrate", {"uri": f"file:{path}"})
    r = wait_status(qs, "completed")
    assert qs.cmd("query-status")["status"] == "postmigrate"
    assert path.stat().st_size > 16 * MiB
    assert_clean(src)
    return src, qs, r


def restore(vmenv, procs, path, mem="256M"):
    return tandem_run(vmenv, "counter", "--memory", mem, "--incoming", f"file:{path}", procs=procs)


def test_snapshot_restores_twice_identically(vmenv, procs):
    snap = tmpdir() / "snap.bin"
    src, qs, r = take_snapshot(vmenv, procs, snap)
    assert isinstance(r["downtime"], int) and r["downtime"] >= 0, r
    last_src = max(ticks(src.text))
    a = restore(vmenv, procs, snap)
    b = restore(vmenv, procs, snap)
    for p in (a, b):
        wait_full_ticks(p, 4)
    ta, tb = full_ticks(a.text)[:4], full_ticks(b.text)[:4]
    assert ta == tb, (ta, tb)  # same start, same ticks, same chains
    assert ta[0][0] > last_src, (last_src, ta)
    # Both picked up the very same instant, even mid-line, and continue the source's output.
    assert a.text.split("tick", 1)[0] == b.text.split("tick", 1)[0]
    assert_seamless(src.text, a.text)
    assert_clean(a)
    assert_clean(b)
    assert reference_chain(vmenv, procs, ta[1][0]) == ta[1][1]
    # The source is still there, paused, and `cont` resumes it where it stopped.
    frozen = len(src.text)
    qs.cmd("cont")
    more_ticks(src, 1)
    assert max(ticks(src.text[frozen:])) > last_src
    assert_clean(src)


def test_restore_of_a_missing_snapshot_is_a_usage_error(vmenv, procs):
    missing = tmpdir() / "no-such.bin"
    p = restore(vmenv, procs, missing)
    assert p.wait(60) == 2, p.text
    assert "cannot open snapshot" in p.text and str(missing) in p.text, p.text
    assert "tick" not in p.text


def test_snapshot_to_an_unwritable_path_fails_and_source_runs(vmenv, procs):
    src, qs = start_source(vmenv, procs)
    src.wait_for(r"tick 4096 chain=")
    qs.cmd("migrate", {"uri": f"file:{tmpdir() / 'no-such-dir' / 'snap.bin'}"})
    r = wait_status(qs, "failed")
    assert "cannot create" in r.get("error-desc", ""), r
    assert_keeps_ticking(src, qs)


def mutate(data: bytes, rng: random.Random, i: int):
    """Variant i of data: even i flips one bit, odd i truncates (never to the full length)."""
    if i % 2 == 0:
        b = bytearray(data)
        off = rng.randrange(len(b))
        bit = rng.randrange(8)
        b[off] ^= 1 << bit
        return bytes(b), f"bit {bit} flipped at offset {off}"
    n = rng.randrange(len(data))
    return data[:n], f"truncated to {n} bytes"


def check_rejected(p, rc, what):
    t = p.text
    assert rc == 1, f"{what}: exit status {rc}, expected 1:\n{t[-3000:]}"
    for s in SANITIZER:
        assert s not in t, f"{what}:\n{t[-3000:]}"
    assert "tick" not in t and "chain=" not in t, f"{what}: the guest ran:\n{t[-3000:]}"
    # A positioned stream error: "migration: offset N: <why>".
    m = re.search(r"error: migration: offset \d+: (.+)", t)
    assert m, f"{what}: no clear stream error on stderr:\n{t[-3000:]}"
    if what.startswith("truncated"):
        assert re.search(r"stream ended|truncated|short read", m.group(1)), f"{what}: {m.group(0)}"
    return m.group(1)


SNAP_VARIANTS = 20


def test_corrupt_snapshots_are_rejected(vmenv, procs):
    snap = tmpdir() / "snap.bin"
    take_snapshot(vmenv, procs, snap, mem="64M")
    data = snap.read_bytes()
    # The pristine file restores (else the test below proves nothing).
    ok = restore(vmenv, procs, snap, mem="64M")
    ok.wait_for(r"tick \d+ chain=[0-9a-f]{16}\n", 120)
    ok.kill()
    rng = random.Random(20240601)
    reasons = []
    for i in range(SNAP_VARIANTS):
        bad, what = mutate(data, rng, i)
        path = snap.with_name(f"bad{i}.bin")
        path.write_bytes(bad)
        p = restore(vmenv, procs, path, mem="64M")
        reasons.append(check_rejected(p, p.wait(120), what))
        path.unlink()
    # Most flips land in page data, which only the checksum can catch.
    assert any("checksum" in r for r in reasons), reasons


class Recorder:
    """A TCP relay between a source and a destination that records the source's stream."""

    def __init__(self, dst_port):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        self.dst_port = dst_port
        self.data = bytearray()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _pipe(self, a, b, record):
        while True:
            try:
                chunk = a.recv(1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if record:
                self.data += chunk
            try:
                b.sendall(chunk)
            except OSError:
                return

    def _run(self):
        c, _ = self.ls.accept()
        d = socket.create_connection(("127.0.0.1", self.dst_port))
        back = threading.Thread(target=self._pipe, args=(d, c, False), daemon=True)
        back.start()
        self._pipe(c, d, True)
        back.join(60)
        c.close()
        d.close()

    def join(self):
        self.t.join(120)
        self.ls.close()
        return bytes(self.data)


def send_stream(port, data, read_reply=True):
    """Connect to an incoming port, send data, half-close and drain whatever comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while read_reply and s.recv(4096):
                pass
        except OSError:
            pass  # the destination may give up and close before we are done


def test_corrupt_recorded_stream_over_tcp_is_rejected(vmenv, procs):
    """The same damage as above, to a live stream recorded off the wire and replayed into
    `--incoming tcp:` destinations."""
    port = free_port()
    dst, qd = start_dest(vmenv, procs, f"tcp:127.0.0.1:{port}", "counter", "--memory", "64M")
    src, qs = start_source(vmenv, procs, "counter", "", "--memory", "64M")
    src.wait_for(r"tick 4096 chain=")
    rec = Recorder(port)
    qs.cmd("migrate", {"uri": f"tcp:127.0.0.1:{rec.port}"})
    wait_status(qs, "completed")
    data = rec.join()
    assert data[:4] == b"TNDM" and len(data) > 16 * MiB
    more_ticks(dst, 1)
    # The recording replays.
    port = free_port()
    ok, _ = start_dest(vmenv, procs, f"tcp:127.0.0.1:{port}", "counter", "--memory", "64M")
    send_stream(port, data)
    more_ticks(ok, 2)
    assert_clean(ok)
    ok.kill()
    rng = random.Random(7)
    for i in range(10):
        bad, what = mutate(data, rng, i)
        port = free_port()
        p, _ = start_dest(vmenv, procs, f"tcp:127.0.0.1:{port}", "counter", "--memory", "64M")
        send_stream(port, bad)
        check_rejected(p, p.wait(120), what)


# ---- failure paths ----------------------------------------------------------------------------

def start_slow_migration(vmenv, procs, uri):
    """A counter migrating at SLOW_BW, observed active with bytes on the wire."""
    src, qs = start_source(vmenv, procs)
    dst, qd = start_dest(vmenv, procs, uri)
    src.wait_for(r"tick 4096 chain=")
    qs.cmd("migrate-set-capabilities", EVENTS_ON)
    qs.cmd("migrate-set-parameters", {"max-bandwidth": SLOW_BW})
    qs.cmd("migrate", {"uri": uri})
    wait_status(qs, "active", cond=lambda r: r["ram"]["transferred"] > 0)
    return src, qs, dst, qd


def test_source_killed_mid_stream(vmenv, procs):
    src, qs, dst, qd = start_slow_migration(vmenv, procs, tcp_uri())
    src.kill()
    assert_never_ran(dst, dst.wait(120))


def test_destination_killed_mid_stream(vmenv, procs):
    src, qs, dst, qd = start_slow_migration(vmenv, procs, tcp_uri())
    dst.kill()
    r = wait_status(qs, "failed")
    assert r.get("error-desc"), r
    assert "failed" in migration_events(qs, "failed")
    assert_keeps_ticking(src, qs)
    # The source can try again, and this time it works.
    uri = tcp_uri()
    dst2, qd2 = start_dest(vmenv, procs, uri)
    qs.cmd("migrate-set-parameters", {"max-bandwidth": 0})
    qs.cmd("migrate", {"uri": uri})
    wait_status(qs, "completed")
    last_src = max(ticks(src.text))
    assert min(more_ticks(dst2, 2)) > last_src
    assert_clean(dst2)


def test_cancel_during_slow_migration(vmenv, procs):
    src, qs, dst, qd = start_slow_migration(vmenv, procs, tcp_uri())
    r = qs.execute("migrate", {"uri": tcp_uri()})
    assert r.get("error", {}).get("class") == "GenericError", r  # one at a time
    r = qs.execute("migrate-set-capabilities", EVENTS_ON)
    assert r.get("error", {}).get("class") == "GenericError", r
    qs.cmd("migrate_cancel")
    wait_status(qs, "cancelled")
    seen = migration_events(qs, "cancelled")
    assert "failed" not in seen, seen
    assert_keeps_ticking(src, qs)
    assert_never_ran(dst, dst.wait(120))
    qs.cmd("migrate_cancel")  # nothing to cancel: not an error
    assert qs.cmd("query-migrate")["status"] == "cancelled"


@pytest.mark.parametrize("uri", ["bogus:x", "tcp:127.0.0.1", "tcp:127.0.0.1:notaport", "unix:",
                                 "file:", ""])
def test_bad_uri_is_a_qmp_error(vmenv, procs, uri):
    src, qs = start_source(vmenv, procs)
    src.wait_for(r"tick 4096 chain=")
    r = qs.execute("migrate", {"uri": uri})
    assert r.get("error", {}).get("class") == "GenericError", r
    assert qs.cmd("query-migrate") == {}  # nothing started
    assert_keeps_ticking(src, qs)


def test_missing_uri_is_a_qmp_error(vmenv, procs):
    src, qs = start_source(vmenv, procs)
    r = qs.execute("migrate", {})
    assert r.get("error", {}).get("class") == "GenericError", r
    r = qs.execute("migrate", {"uri": 5})
    assert r.get("error", {}).get("class") == "GenericError", r


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_nobody_listening_fails_and_source_runs(vmenv, procs, kind):
    uri = tcp_uri() if kind == "tcp" else unix_uri()  # nothing bound there
    src, qs = start_source(vmenv, procs)
    src.wait_for(r"tick 4096 chain=")
    qs.cmd("migrate", {"uri": uri})
    r = wait_status(qs, "failed")
    assert "connect" in r.get("error-desc", ""), r
    assert qs.cmd("query-status")["status"] == "running"
    assert_keeps_ticking(src, qs)


def garbage(kind):
    rng = random.Random(99)
    if kind == "random":
        return bytes(rng.randrange(256) for _ in range(64 * 1024))
    if kind == "empty":
        return b""
    if kind == "header+garbage":
        return b"TNDM" + struct.pack(">I", 1) + bytes(rng.randrange(256) for _ in range(64 * 1024))
    if kind == "header+command+garbage":  # OPEN_RETURN_PATH, then noise
        return (b"TNDM" + struct.pack(">I", 1) + b"\x08" + struct.pack(">HH", 1, 0)
                + bytes(rng.randrange(256) for _ in range(64 * 1024)))
    if kind == "bad-version":
        return b"TNDM" + struct.pack(">I", 0xFFFF) + b"\0" * 64
    if kind == "zeros":
        return b"\0" * (1 << 20)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["random", "empty", "header+garbage", "header+command+garbage",
                                  "bad-version", "zeros"])
def test_garbage_on_incoming_port_is_rejected(vmenv, procs, kind):
    port = free_port()
    dst, qd = start_dest(vmenv, procs, f"tcp:127.0.0.1:{port}")
    send_stream(port, garbage(kind))
    assert_never_ran(dst, dst.wait(120))
