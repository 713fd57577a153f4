#!/usr/bin/python3
"""demo.py: a COLO pair serving netkv on a namespaced LAN; the primary is killed; watch.

Two "hosts" (network namespaces demo-pri and demo-sec) run tandem as primary and secondary,
joined by a replication link; a client in demo-cli reads and writes netkv at 10.77.0.2:7000
over the LAN. After a few seconds of protected service the primary gets kill -9. The secondary
takes over, announces the guest's MAC, and the client carries on against the same address.
Prints the failover time and whether any acknowledged write was lost.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from harness import QMP, Proc  # noqa: E402

NAME = "demo"
MAC = "52:54:00:77:00:02"
REP = "tcp:10.77.1.2:4444"


def say(msg):
    print(f"\033[1m[demo]\033[0m {msg}", flush=True)


def netlan(*args):
    subprocess.run(["bash", str(ROOT / "scripts" / "netlan.sh"), *args], check=True,
                   stdout=subprocess.DEVNULL)


# KVM where /dev/kvm opens, else tandem's emulator; there the guest waits for interrupts
# instead of polling, so the pair and the client share the host's cores.
ACCEL = "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "emu"
APPEND = "ip=10.77.0.2/24" + (" irq=1" if ACCEL == "emu" else "")


def tandem(role, qmp, *extra):
    argv = ["ip", "netns", "exec", f"{NAME}-{role}", str(ROOT / "build" / "tandem"), "run",
            "--accel", ACCEL, "--kernel", str(ROOT / "build" / "guests" / "netkv.elf"), "--append",
            APPEND, "--net", f"tap=tap0,mac={MAC}", "--qmp", f"unix:{qmp}", *extra]
    return Proc(argv)


def main():
    delay = int(os.environ.get("DEMO_CHECKPOINT_MS", "20"))
    run_s = float(os.environ.get("DEMO_SECONDS", "5"))
    tmp = pathlib.Path(f"/tmp/tandem-demo-{os.getpid()}")
    tmp.mkdir()
    procs = []
    netlan("down", NAME)
    netlan("up", NAME, "--hosts")
    try:
        say("LAN up: client 10.77.0.10 | primary host (demo-pri) | secondary host (demo-sec)")
        sec = tandem("sec", tmp / "sec.sock", "--incoming", "defer")
        procs.append(sec)
        sq = QMP(tmp / "sec.sock")
        colo = {"capabilities": [{"capability": "x-colo", "state": True},
                                 {"capability": "events", "state": True}]}
        sq.cmd("migrate-set-capabilities", colo)
        sq.cmd("migrate-incoming", {"uri": REP})
        pri = tandem("pri", tmp / "pri.sock")
        procs.append(pri)
        pq = QMP(tmp / "pri.sock")
        pri.wait_for(r"netkv ready")
        say("primary booted netkv; starting COLO (x-checkpoint-delay %d ms)" % delay)
        pq.cmd("migrate-set-capabilities", colo)
        pq.cmd("migrate-set-parameters", {"x-checkpoint-delay": delay})
        pq.cmd("migrate", {"uri": REP})
        for q in (pq, sq):
            while q.cmd("query-migrate").get("status") != "colo":
                if q.cmd("query-migrate").get("status") == "failed":
                    raise SystemExit(f"COLO did not start: {q.cmd('query-migrate')}")
                time.sleep(0.05)
        say("pair in COLO: primary %s, secondary %s" % (
            pq.cmd("query-colo-status")["mode"], sq.cmd("query-colo-status")["mode"]))
        client = subprocess.Popen(["ip", "netns", "exec", f"{NAME}-cli", "/usr/bin/python3",
                                   str(ROOT / "scripts" / "demo_client.py")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(run_s)
        st = pq.cmd("query-colo-status")["stats"]
        say(f"protected service: {st['checkpoints']} checkpoints, primary pause mean "
            f"{st['pause-ms']['mean']:.2f} ms, p99 {st['pause-ms']['p99']:.2f} ms")
        say("kill -9 the primary")
        t_kill = time.time()
        pri.kill(signal.SIGKILL)
        client.stdin.write(f"kill {t_kill}\n")
        client.stdin.flush()
        ev = sq.wait_event("COLO_EXIT", timeout=30)
        say(f"secondary: COLO_EXIT {ev['data']} -> status "
            f"{sq.cmd('query-status')['status']}")
        time.sleep(run_s)
        client.stdin.close()
        out = client.stdout.read().strip().splitlines()
        client.wait(30)
        summary = json.loads(out[-1])
        for line in out[:-1]:
            if line.startswith("load "):
                last = line
        say("client: " + last if out[:-1] else "client: no progress lines")
        fo = sq.cmd("query-colo-status")["stats"]
        say(f"failover time: the client's first answer came {summary['first_answer_after_kill_ms']}"
            f" ms after the kill (the secondary resumed the guest {fo.get('last-failover-ms')} ms"
            f" after it noticed the loss); answers before the kill {summary['answers_before_kill']},"
            f" after {summary['answers_after_kill']}")
        lost = summary["ncontradictions"]
        say(f"client: {summary['ops']} requests, {summary['sets']} acknowledged SETs checked; "
            f"acknowledged writes lost or contradicted: {lost}")
        for c in summary["contradictions"]:
            say("  " + c)
        say("RESULT: " + ("PASS: takeover with zero lost acknowledged writes" if lost == 0
                          else "FAIL: acknowledged writes were lost"))
        return 0 if lost == 0 else 1
    finally:
        for p in procs:
            p.kill()
        netlan("down", NAME)


if __name__ == "__main__":
    sys.exit(main())
