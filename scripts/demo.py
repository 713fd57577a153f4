#!/usr/bin/python3
"""demo.py: a COLO pair serving netkv on a namespaced LAN; the primary is killed; watch.

Two "hosts" (network namespaces demo-pri and demo-sec) run tandem as primary and secondary,
joined by a replication link; a client in demo-cli reads and writes netkv at 10.77.0.2:7000
over the LAN. After a few seconds of protected service the primary gets kill -9. The secondary
takes over, announces the guest's MAC, and the client carries on against the same address.
Prints the failover time and whether any acknowledged write was lost.

demo.py --hybrid: the same in hybrid mode (docs/hybrid.md: x-colo-mode hybrid, x-checkpoint-delay
2000 ms): the secondary's VM runs on mirrored input and a reply leaves as soon as both VMs have
produced it. The client uses one TCP connection (port 7001) for its whole life, never reopened.
Before the kill the primary's compare statistics and checkpoints by cause show the output leaving
on comparison, not at checkpoints; after it, the same connection (same local port) must go on
getting answers from the secondary.

Environment: DEMO_SECONDS (protected service before and after the kill, default 5),
DEMO_CHECKPOINT_MS (x-checkpoint-delay: default 20, or 2000 with --hybrid).
"""
import argparse
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
TCP_PORT = 7001


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


def client_ports():
    """Local ports of the client namespace's established TCP connections to netkv, seen by the
    kernel (ss), independently of the client's own report."""
    r = subprocess.run(["ip", "netns", "exec", f"{NAME}-cli", "ss", "-Htn", "state",
                        "established", f"( dport = :{TCP_PORT} )"],
                       capture_output=True, text=True)
    # each line: Recv-Q Send-Q 10.77.0.10:PORT 10.77.0.2:7001 (no State column with "state")
    return [int(f.rsplit(":", 1)[1]) for line in r.stdout.splitlines()
            for f in line.split() if f.startswith("10.77.0.10:")]


def hybrid_report(st, delay):
    """The primary's stats.hybrid and checkpoints by cause, before the kill."""
    hy = st.get("hybrid", {})
    by = st.get("checkpoints-by-cause", {})
    hold = hy.get("hold-ms", {})
    say(f"hybrid compare on the primary: {hy.get('compared', 0)} frames compared, "
        f"{hy.get('matched', 0)} matched the secondary's, {hy.get('released', 0)} released; "
        f"held mean {hold.get('mean', 0):.2f} ms, p99 {hold.get('p99', 0):.2f} ms "
        f"(x-checkpoint-delay {delay} ms)")
    say(f"checkpoints: {st['checkpoints']} (by cause: "
        + ", ".join(f"{k} {v}" for k, v in by.items()) + f"); primary pause mean "
        f"{st['pause-ms']['mean']:.2f} ms, p99 {st['pause-ms']['p99']:.2f} ms")
    if hy.get("matched") and hold.get("p99", delay) < delay / 10:
        say(f"  -> replies left as soon as the secondary's VM had produced them too, not at the "
            f"{st['checkpoints']} checkpoints")


def main():
    ap = argparse.ArgumentParser(description="COLO failover demo (netkv, kill -9 of the primary)")
    ap.add_argument("--hybrid", action="store_true",
                    help="hybrid COLO (x-colo-mode hybrid) with one TCP connection as the client")
    args = ap.parse_args()
    hybrid = args.hybrid
    delay = int(os.environ.get("DEMO_CHECKPOINT_MS", "2000" if hybrid else "20"))
    run_s = float(os.environ.get("DEMO_SECONDS", "5"))
    tmp = pathlib.Path(f"/tmp/tandem-demo-{os.getpid()}")
    tmp.mkdir()
    procs = []
    client = None
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
        params = {"x-checkpoint-delay": delay}
        if hybrid:
            params["x-colo-mode"] = "hybrid"
        say("primary booted netkv; starting COLO (%sx-checkpoint-delay %d ms)" % (
            "x-colo-mode hybrid, " if hybrid else "", delay))
        pq.cmd("migrate-set-capabilities", colo)
        pq.cmd("migrate-set-parameters", params)
        pq.cmd("migrate", {"uri": REP})
        for q in (pq, sq):
            while q.cmd("query-migrate").get("status") != "colo":
                if q.cmd("query-migrate").get("status") == "failed":
                    raise SystemExit(f"COLO did not start: {q.cmd('query-migrate')}")
                time.sleep(0.05)
        say("pair in COLO: primary %s, secondary %s" % (
            pq.cmd("query-colo-status")["mode"], sq.cmd("query-colo-status")["mode"]))
        argv = ["ip", "netns", "exec", f"{NAME}-cli", "/usr/bin/python3",
                str(ROOT / "scripts" / "demo_client.py")]
        if hybrid:
            argv.append("--tcp")
            say(f"client: one TCP connection to 10.77.0.2:{TCP_PORT}, never reopened")
        client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(run_s)
        st = pq.cmd("query-colo-status")["stats"]
        ports_before = []
        if hybrid:
            hybrid_report(st, delay)
            ports_before = client_ports()
            say("client's connection before the kill (ss): local port "
                + (", ".join(map(str, ports_before)) or "none"))
        else:
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
        ports_after = client_ports() if hybrid else []
        client.stdin.close()
        out = client.stdout.read().strip().splitlines()
        client.wait(60)
        client = None
        if not out:
            say("RESULT: FAIL: the client printed nothing")
            return 1
        summary = json.loads(out[-1])
        progress = [line for line in out[:-1] if line.startswith("load ")]
        say("client: " + (progress[-1] if progress else "no progress lines"))
        fo = sq.cmd("query-colo-status")["stats"]
        resumed = ("its VM ran on, no rollback; takeover" if hybrid
                   else "the secondary resumed the guest")
        say(f"failover time: the client's first answer came {summary['first_answer_after_kill_ms']}"
            f" ms after the kill ({resumed} {fo.get('last-failover-ms')} ms"
            f" after it noticed the loss); answers before the kill {summary['answers_before_kill']},"
            f" after {summary['answers_after_kill']}")
        lost = summary["ncontradictions"]
        say(f"client: {summary['ops']} requests, {summary['sets']} acknowledged SETs checked; "
            f"acknowledged writes lost or contradicted: {lost}")
        for c in summary["contradictions"]:
            say("  " + c)
        if not hybrid:
            say("RESULT: " + ("PASS: takeover with zero lost acknowledged writes" if lost == 0
                              else "FAIL: acknowledged writes were lost"))
            return 0 if lost == 0 else 1
        tcp = summary.get("tcp") or {}
        port = tcp.get("local_port")
        say(f"client TCP: {json.dumps(tcp)}")
        say("client's connection after the kill (ss): local port "
            + (", ".join(map(str, ports_after)) or "none"))
        problems = []
        if lost:
            problems.append(f"{lost} contradictions")
        if tcp.get("lost") or not tcp.get("same_connection"):
            problems.append(f"connection lost: {tcp.get('lost')}")
        if summary["no_reply"]:
            problems.append(f"{summary['no_reply']} requests without a reply")
        if not summary["answers_after_kill"]:
            problems.append("no answer after the kill")
        if port not in ports_before:
            problems.append(f"local port {port} was not the connection ss saw before the kill "
                            f"({ports_before})")
        if problems:
            cs = sq.cmd("query-colo-status")
            say(f"secondary: mode {cs['mode']}, armed {cs['armed']}, last decision: "
                f"{cs.get('last-decision')}; its log's last lines:")
            for line in sec.text.strip().splitlines()[-12:]:
                print("    " + line, flush=True)
            say("RESULT: FAIL: " + "; ".join(problems))
            return 1
        say(f"RESULT: PASS: the same TCP connection (10.77.0.10:{port} -> 10.77.0.2:{TCP_PORT}) "
            f"carried on after the kill with {summary['answers_after_kill']} answers, "
            f"zero lost acknowledged writes")
        return 0
    finally:
        if client is not None:
            client.kill()
        for p in procs:
            p.kill()
        netlan("down", NAME)


if __name__ == "__main__":
    sys.exit(main())
