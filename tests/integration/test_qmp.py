"""test_qmp.py: QMP sessions against a running counter guest: stop/cont, status, events, garbage."""
import json
import time

from harness import QMP, tandem_run, ticks, tmpdir


def start_counter(vmenv, procs, *extra):
    sock = tmpdir() / "qmp.sock"
    p = tandem_run(vmenv, "counter", "--qmp", f"unix:{sock}", *extra, append="every=1",
                   procs=procs)
    q = QMP(sock)
    return p, q, sock


def test_stop_freezes_and_cont_resumes(vmenv, procs):
    p, q, _ = start_counter(vmenv, procs)
    p.wait_for(r"tick \d+ chain=")
    assert q.cmd("query-status")["status"] == "running"
    assert q.cmd("query-status")["running"] is True
    q.cmd("stop")
    q.wait_event("STOP")
    st = q.cmd("query-status")
    assert st["status"] == "paused" and st["running"] is False
    frozen = len(p.text)
    time.sleep(1.0)  # a stopped guest prints nothing, however long we wait
    assert len(p.text) == frozen
    last = max(ticks(p.text))
    q.cmd("cont")
    q.wait_event("RESUME")
    assert q.cmd("query-status")["status"] == "running"
    # The pause may have stopped the guest in the middle of printing a line: look from the
    # start of that line.
    p.wait_for(rf"tick {last + 1} chain=", start=p.text.rfind("\n", 0, frozen) + 1)
    assert "CORRUPT" not in p.text
    q.cmd("quit")
    assert p.wait(30) == 0


def test_garbage_gets_error_and_vm_keeps_running(vmenv, procs):
    p, q, _ = start_counter(vmenv, procs)
    p.wait_for(r"tick \d+ chain=")
    q.send_raw(b"this is not json {{{\n")
    r = q.read_reply()
    assert r["error"]["class"] == "GenericError"
    assert q.cmd("query-status")["status"] == "running"
    r = q.execute("no-such-command")
    assert r["error"]["class"] == "CommandNotFound"
    r = q.execute("stop", {"bogus": 1})
    assert r["error"]["class"] == "GenericError"
    r = q.execute("query-status", id="abc")
    assert r["id"] == "abc" and r["return"]["status"] == "running"
    n = len(p.text)
    p.wait_for(r"tick \d+ chain=", start=n)
    q.cmd("quit")
    p.wait(30)


def test_negotiation_and_multiple_clients(vmenv, procs):
    p, q1, sock = start_counter(vmenv, procs)
    assert "QMP" in q1.greeting
    q2 = QMP(sock, negotiate=False)
    r = q2.execute("query-status")
    assert r["error"]["class"] == "CommandNotFound"
    q2.cmd("qmp_capabilities")
    names = {c["name"] for c in q2.cmd("query-commands")}
    assert {"qmp_capabilities", "query-status", "stop", "cont", "system_reset", "quit",
            "query-version", "query-commands"} <= names
    assert "qemu" in q2.cmd("query-version")
    q1.cmd("stop")
    q2.wait_event("STOP")  # events reach every negotiated client
    q2.cmd("cont")
    q1.wait_event("RESUME")
    q1.cmd("quit")
    q2.wait_event("SHUTDOWN")
    assert p.wait(30) == 0


def test_system_reset_restarts_guest(vmenv, procs):
    p, q, _ = start_counter(vmenv, procs)
    p.wait_for(r"tick 3 chain=")
    n = len(p.text)
    q.cmd("system_reset")
    q.wait_event("RESET")
    p.wait_for(r"counter start", start=n)
    p.wait_for(r"tick 1 chain=", start=n)
    q.cmd("quit")
    p.wait(30)


def test_start_paused_then_cont(vmenv, procs):
    p, q, _ = start_counter(vmenv, procs, "--paused")
    assert q.cmd("query-status")["status"] == "prelaunch"
    time.sleep(0.5)
    assert "tick" not in p.text
    q.cmd("cont")
    p.wait_for(r"tick 1 chain=")
    q.cmd("quit")
    p.wait(30)


def test_split_and_batched_requests(vmenv, procs):
    p, q, _ = start_counter(vmenv, procs)
    req = json.dumps({"execute": "query-status", "id": 1}).encode()
    q.send_raw(req[:7])
    time.sleep(0.1)
    q.send_raw(req[7:] + json.dumps({"execute": "query-status", "id": 2}).encode())
    assert q.read_reply()["id"] == 1
    assert q.read_reply()["id"] == 2
    q.cmd("quit")
    p.wait(30)
