#!/usr/bin/python3
"""demo_cluster.py: `demo.sh --cluster`: a COLO pair in cluster mode survives a partition with
no split brain, then protects itself again.

Three network-namespace hosts with one corosync each (scripts/cluster.sh: democl-pri,
democl-sec and the witness democl-wit) and a client. The pair serves netkv under a
model-checked client load. Then the primary's host is cut off (corosync ring and replication
link): the primary, without quorum, pauses; the secondary, quorate with the witness, takes
over; the client never sees two VMs. Then the link heals, the old primary's host restarts
tandem as --incoming with its old disk image, and the survivor re-protects itself
(x-colo-reprotect): only what changed is copied. Prints what each side did and the client's
verdict.
"""
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from harness import QMP, Proc  # noqa: E402

NAME = "democl"
MAC = "52:54:00:77:00:02"
ACCEL = "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "emu"
APPEND = "ip=10.77.0.2/24" + (" irq=1" if ACCEL == "emu" else "")
COLO = {"capabilities": [{"capability": "x-colo", "state": True},
                         {"capability": "events", "state": True}]}


def say(msg):
    print(f"\033[1m[demo --cluster]\033[0m {msg}", flush=True)


def cluster(cmd, *rest, check=True):
    return subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), cmd, NAME, *rest],
                          check=check, capture_output=True, text=True)


def tandem(host, qmp, *extra):
    argv = ["ip", "netns", "exec", f"{NAME}-{host}", str(ROOT / "build" / "tandem"), "run",
            "--accel", ACCEL, "--kernel", str(ROOT / "build" / "guests" / "netkv.elf"),
            "--append", APPEND, "--net", f"tap=tap0,mac={MAC}", "--qmp", f"unix:{qmp}",
            "--cluster", "corosync,group=demo-vm", *extra]
    return Proc(argv)


def wait(what, cond, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what}: not after {timeout} s")
        time.sleep(0.1)


def status(q):
    return q.cmd("query-status")["status"]


def incoming(host, qmp, uri):
    p = tandem(host, qmp, "--incoming", "defer")
    q = QMP(qmp)
    q.cmd("migrate-set-capabilities", COLO)
    q.cmd("migrate-incoming", {"uri": uri})
    return p, q


def in_colo(*qs):
    return all(q.cmd("query-migrate").get("status") == "colo" for q in qs)


def main():
    tmp = pathlib.Path(f"/tmp/tandem-demo-cluster-{os.getpid()}")
    tmp.mkdir()
    procs = []
    cluster("down", check=False)
    say("bringing up three hosts with one corosync each (primary, secondary, witness)")
    cluster("up")
    try:
        wait("all three hosts quorate", lambda: cluster("status").stdout.count("quorate, 3") == 3,
             120)
        say(cluster("status").stdout.strip().replace("\n", " | "))
        sec, sq = incoming("sec", tmp / "sec.sock", "tcp:10.77.1.2:4444")
        pri = tandem("pri", tmp / "pri.sock")
        procs += [sec, pri]
        pq = QMP(tmp / "pri.sock")
        pri.wait_for(r"netkv ready")
        pq.cmd("migrate-set-capabilities", COLO)
        pq.cmd("migrate-set-parameters", {"x-checkpoint-delay": 50})
        pq.cmd("migrate", {"uri": "tcp:10.77.1.2:4444"})
        wait("COLO on both sides", lambda: in_colo(pq, sq))
        say("pair in COLO, cluster view: %s" % pq.cmd("query-colo-status")["cluster"])
        client = subprocess.Popen(["ip", "netns", "exec", f"{NAME}-cli", "/usr/bin/python3",
                                   str(ROOT / "scripts" / "demo_client.py")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        say("partition: the primary's host loses the corosync ring and the replication link")
        client.stdin.write(f"kill {time.time()}\n")
        client.stdin.flush()
        cluster("cut-rep")
        cluster("isolate", "pri")
        wait("the secondary serving and the primary paused",
             lambda: status(sq) == "running" and status(pq) == "paused", 90)
        say("primary: %s, %s" % (status(pq), pq.cmd("query-colo-status")["last-decision"]))
        say("secondary: %s, %s" % (status(sq), sq.cmd("query-colo-status")["last-decision"]))
        say("exactly one VM serves: the quorate side")
        time.sleep(3)
        say("healing the network; the old primary's host restarts tandem as --incoming")
        cluster("heal", "pri")
        cluster("heal-rep")
        wait("all three hosts quorate", lambda: cluster("status").stdout.count("quorate, 3") == 3,
             120)
        pri.kill()
        a2, aq2 = incoming("pri", tmp / "pri2.sock", "tcp:10.77.1.1:4444")
        procs.append(a2)
        t0 = time.monotonic()
        sq.cmd("x-colo-reprotect", {"uri": "tcp:10.77.1.1:4444"})
        wait("protected again", lambda: in_colo(sq, aq2), 180)
        mig = sq.cmd("query-migrate")
        say("re-protected in %.1f s: the survivor is the primary now, %s" % (
            time.monotonic() - t0, mig.get("colo-disk", "no disk")))
        time.sleep(3)
        client.stdin.close()
        out = client.stdout.read().strip().splitlines()
        client.wait(60)
        summary = json.loads(out[-1])
        bad = summary["ncontradictions"]
        say(f"client: {summary['ops']} requests, {summary['sets']} acknowledged SETs checked; "
            f"contradictions or lost acknowledged writes: {bad}")
        say("RESULT: " + ("PASS: no split brain, protected again" if bad == 0 else
                          "FAIL: the client saw contradictions"))
        return 0 if bad == 0 else 1
    finally:
        for p in procs:
            p.kill()
        cluster("down", check=False)


if __name__ == "__main__":
    sys.exit(main())
