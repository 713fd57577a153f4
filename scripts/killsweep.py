#!/usr/bin/python3
"""killsweep.py: kill the COLO primary at N random points under load; count what was lost.

Usage (root; run through scripts/killsweep.sh):
    killsweep.sh N [--seed S] [--only I[,I...]] [--lan NAME] [--logs DIR] [--accel kvm|emu]
                   [--stop-on-failure]

Each iteration runs two COLO pairs at once, both with the primary killed at a random point:

  netkv     a netkv pair in a two-host netns LAN (scripts/netlan.sh up NAME --hosts, one LAN for
            the whole sweep; the pair replicates over the hosts' own link, tcp:10.77.1.2:PORT),
            under a model-checked client load from the client namespace (netkv_client's load);
  blkcheck  a blkcheck pair (flush=8) on a replicated disk (two 1 MiB images).

Each pair's primary dies by one of (chosen at random, about half each):
  fault     TANDEM_COLO_FAULT=POINT:CP:kill in the primary's environment: POINT one of the 11
            primary protocol points (p-before-request ... p-after-loaded), CP = 1..8;
  kill -9   from outside, after 1..6 checkpoints plus a random part of one checkpoint period.
The checkpoint period (x-checkpoint-delay) is 20, 50 or 100 ms, also at random.

After the kill the secondary must take over: COLO_EXIT with mode "secondary" within 30 s,
query-status "running" within 10 s after it, and it must serve:
  netkv     the client gets answers from it, then reads every key once more; every reply is
            checked against the model of what each key may hold given the replies so far;
  blkcheck  it prints a new `ack gen=`; then it is stopped and blkcheck, booted alone on its
            disk with ack=<the newest generation either side acknowledged>, must verify it.

Counted (progress line per iteration, summary at the end):
  lost            acknowledged writes lost: a GET that misses an acknowledged SET or returns an
                  older version of it; a blkcheck verify that reports an acknowledged
                  generation lost. Must be 0.
  contradictions  every other reply the model rules out (a seq that goes back, a value that was
                  never acknowledged, ...) and every other CORRUPT line of blkcheck. Must be 0.
  takeovers       pairs whose secondary took over and ran (2 per iteration when all is well).
  failures        iterations with anything wrong (also a missing takeover, a client request
                  that got no answer for 20 s, a primary that did not die...). Each is printed
                  with the seed and the faults, and how to replay it:
                      killsweep.sh --seed S --only I
                  (the same faults and checkpoint periods; a kill -9's exact instant differs),
                  and the outputs of its processes are kept under --logs.

Options:
  N                  iterations (not needed with --only)
  --seed S           the sweep's seed (default: random, printed); iteration I's choices depend
                     only on (S, I)
  --only I[,I...]    run only these iterations (1-based) of the sweep with --seed S
  --lan NAME         the netns LAN's name (default ksweep; namespaces NAME-lan/-cli/-pri/-sec);
                     an existing LAN of that name is torn down first
  --logs DIR         where failing iterations' outputs go (default /tmp/killsweep-logs-S)
  --accel E          the engine (default: $TANDEM_ACCEL, else kvm where /dev/kvm opens, else emu)
  --stop-on-failure  stop after the first failing iteration
Environment: TANDEM_BUILD (default build/), TANDEM_GUESTS (default $TANDEM_BUILD/guests),
TANDEM_ACCEL, as for the integration tests. The sweep copies tandem and the two guests at its
start and runs those copies throughout (a rebuild meanwhile does not affect it).

Exit status: 0 all iterations passed; 1 some failed (or lost/contradictions > 0); 2 usage or
setup error; 130 interrupted. Ctrl-C (or SIGTERM/SIGHUP) stops every process the sweep started
and removes the LAN and the temporary files.
"""
import argparse
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

PRIMARY_POINTS = ["p-before-request", "p-after-request", "p-after-reply", "p-paused",
                  "p-before-send", "p-mid-ram", "p-before-size", "p-mid-devbuf",
                  "p-after-devbuf", "p-after-received", "p-after-loaded"]
DELAYS_MS = (20, 50, 100)
MAC = "52:54:00:77:00:02"
GUEST_IP = "10.77.0.2"
NETLAN = ROOT / "scripts" / "netlan.sh"
NKEYS = 24           # netkv keys per iteration: small, so the reads after a takeover cover them
AFTER_ANSWERS = 40   # answers the client must get from the new VM before the final reads
PROG = "killsweep"


# ---------------------------------------------------------------------------------------------
# The client (runs inside the LAN's client namespace: killsweep.py --netkv-client)

def client_main(argv):
    """A model-checked netkv load until stdin closes, then one checked GET of every key.

    stdin: `kill T` (wall clock) when the primary died; EOF ends the load. stdout: `first`
    after the first answer, `after` once AFTER answers came after T, then one JSON line."""
    ap = argparse.ArgumentParser(prog="killsweep.py --netkv-client")
    ap.add_argument("--after", type=int, default=AFTER_ANSWERS)
    ap.add_argument("--keys", type=int, default=NKEYS)
    ap.add_argument("--seed", type=int)
    a = ap.parse_args(argv)
    import netkv_client as nk

    stop = threading.Event()
    kill_at = []
    models = []

    class KeepModel(nk.Model):
        """load() builds its model internally; keep it for the final reads."""

        def __init__(self, keys):
            super().__init__(keys)
            models.append(self)

    nk.Model = KeepModel

    class Client(nk.Client):
        def __init__(self):
            super().__init__(GUEST_IP, 7000, timeout=0.05, retries=400)  # 20 s per request
            self.answers = self.after = 0
            self.final = False

        def request(self, line):
            # Stop between requests, never inside one: an abandoned SET could be applied
            # without the model knowing, and the final reads would call that a contradiction.
            if stop.is_set() and not self.final:
                raise KeyboardInterrupt
            r = super().request(line)
            self.answers += 1
            if self.answers == 1:
                print("first", flush=True)
            if kill_at and time.time() >= kill_at[0]:
                self.after += 1
                if self.after == a.after:
                    print("after", flush=True)
            return r

    def control():
        for line in sys.stdin:
            if line.startswith("kill "):
                kill_at.append(float(line.split()[1]))
        stop.set()

    threading.Thread(target=control, daemon=True).start()
    c = Client()
    res = nk.load(c, ops=0, nkeys=a.keys, check=True, seed=a.seed)
    problems = list(res.contradictions)
    final_reads = 0
    if models:
        m = models[0]
        c.final = True
        for k in sorted(m.may_hold):
            what = f"final GET {k}"
            try:
                r = c.get(k)
            except nk.NoReply:
                res.no_reply += 1
                continue
            final_reads += 1
            if r.kind not in ("VALUE", "NONE"):
                problems.append(f"{what}: {r.raw!r}")
                continue
            got = r.value if r.kind == "VALUE" else None
            if got not in m.may_hold[k]:
                run = k.rsplit(".", 1)[0]
                problems.append(f"{what}: {got!r}, expected one of "
                                f"{sorted(map(str, m.may_hold[k]))}"
                                f"{nk.describe(got, k, run, m.acked_version[k])}")
            m.check_seq(what, r, False, problems)
    lost = [p for p in problems if "acknowledged SET was lost" in p
            or "older than the acknowledged version" in p]
    print(json.dumps({"ops": res.ops, "sets": res.sets, "gets": res.gets, "dels": res.dels,
                      "no_reply": res.no_reply, "resent": c.resent, "answers": c.answers,
                      "answers_after": c.after, "final_reads": final_reads,
                      "lost": len(lost), "contradictions": len(problems) - len(lost),
                      "problems": problems[:50]}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The sweep

class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


class Registry:
    """Every process the sweep started, so that any exit path can stop them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.procs = []  # harness.Proc or subprocess.Popen
        self.closed = False

    def add(self, p):
        with self.lock:
            closed = self.closed
            if not closed:
                self.procs.append(p)
        if closed:  # started by a part still running after the sweep was stopped
            kill_proc(p)
        return p

    def kill(self, only=None):
        """Kill these processes (all, and refuse new ones, when only is None)."""
        with self.lock:
            if only is None:
                self.closed = True
            victims = [p for p in self.procs if only is None or p in only]
            self.procs = [p for p in self.procs if p not in victims]
        for p in victims:
            kill_proc(p)


def kill_proc(p):
    popen = getattr(p, "p", p)  # harness.Proc wraps a Popen
    if popen.poll() is None:
        try:
            popen.kill()
        except ProcessLookupError:
            pass
    try:
        popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class Tracked(list):
    """The `procs` list given to Pair/tandem_run: also registers each process globally."""

    def __init__(self, reg):
        super().__init__()
        self.reg = reg

    def append(self, p):
        super().append(p)
        self.reg.add(p)


def netlan(*args, check_rc=True):
    return subprocess.run(["bash", str(NETLAN), *args], capture_output=True, text=True,
                          check=check_rc, timeout=60)


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def choose(rng):
    """One pair's kill: the checkpoint period and how the primary dies."""
    delay = rng.choice(DELAYS_MS)
    if rng.random() < 0.5:
        point, cp = rng.choice(PRIMARY_POINTS), rng.randint(1, 8)
        return {"how": "fault", "fault": f"{point}:{cp}:kill", "delay": delay}
    return {"how": "kill", "after": rng.randint(1, 6), "frac": rng.random(), "delay": delay}


def describe(k):
    if k["how"] == "fault":
        return f"TANDEM_COLO_FAULT={k['fault']}, delay {k['delay']} ms"
    return (f"kill -9 after {k['after']} checkpoints +{k['frac'] * k['delay']:.0f} ms, "
            f"delay {k['delay']} ms")


def plan(seed, i):
    rng = random.Random(f"killsweep:{seed}:{i}")
    return {"netkv": choose(rng), "blkcheck": choose(rng), "client_seed": rng.randrange(1 << 30)}


class Sweep:
    def __init__(self, a, env):
        self.a = a
        self.env = env
        self.reg = Registry()
        self.work = pathlib.Path(tempfile.mkdtemp(prefix="killsweep-"))
        # harness.tmpdir() (the pairs' QMP sockets) goes under our work dir, removed at the end
        tempfile.tempdir = str(self.work)
        self.lan = a.lan
        self.lan_up = False
        self.totals = {"iterations": 0, "takeovers": 0, "lost": 0, "contradictions": 0,
                       "failures": 0}
        self.failed = []
        self.times = []
        self.threads = []

    # -- the LAN -------------------------------------------------------------------------------

    def lan_setup(self):
        netlan("down", self.lan, check_rc=False)
        self.lan_up = True
        netlan("up", self.lan, "--hosts")

    def lan_reset(self):
        """One LAN serves the whole sweep. The bridges learned where the guest's MAC was in the
        last iteration (the old secondary announced it, which also taught the primary host's
        bridge that the MAC is behind its uplink). A new primary only speaks when spoken to, so
        forget all that and point the LAN switch at the primary's host (not flooding: the
        standby's tap would queue the client's requests and the new VM would read them late);
        the new secondary's announce moves the entry at the takeover, as on a fresh LAN."""
        for role in ("lan", "pri", "sec"):
            sh("ip", "-n", f"{self.lan}-{role}", "link", "set", "br0", "type", "bridge",
               "fdb_flush")
        # (a host bridge without an entry floods the LAN's frames to its only other port, tap0;
        # a dynamic entry cannot be put on a tap no process holds: its port is disabled)
        sh("bridge", "-n", f"{self.lan}-lan", "fdb", "replace", MAC, "dev", "vpri", "master",
           "dynamic")

    # -- the two parts of an iteration ---------------------------------------------------------

    def wait_death(self, p, k):
        """The primary dies: by its fault, or by our kill -9. Returns the wall-clock time."""
        if k["how"] == "fault":
            p.start(wait=False)
            deadline = time.monotonic() + 60
            while True:
                try:
                    rc = p.pri.wait(0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                check(time.monotonic() < deadline,
                      f"the primary did not die at {k['fault']} within 60 s")
                try:
                    st = p.pq.cmd("query-colo-status")
                except (OSError, ConnectionError, RuntimeError, ValueError):
                    continue  # it is dying
                # COLO ended another way before the fault's checkpoint: that fault never fires
                check(not (st.get("mode") == "none" and st.get("last-mode") == "primary"),
                      f"the primary left COLO before {k['fault']} fired: reason "
                      f"{st.get('reason')}, last decision: {st.get('last-decision')}")
            check(rc == 137, f"the primary exited with {rc}, not 137 (fault {k['fault']})")
        else:
            p.start()
            try:
                p.wait_checkpoints(k["after"])
            except AssertionError:
                st = p.pq.cmd("query-colo-status")
                raise Failed(f"COLO ended before checkpoint {k['after']}: primary mode "
                             f"{st.get('mode')}, reason {st.get('reason')}, last decision: "
                             f"{st.get('last-decision')}")
            time.sleep(k["frac"] * k["delay"] / 1000)
            p.pri.kill(signal.SIGKILL)
        return time.time()

    @staticmethod
    def took_over(p):
        try:
            ev = p.sq.wait_event("COLO_EXIT", timeout=30)
        except AssertionError:
            st = p.sq.cmd("query-colo-status")
            raise Failed(f"no COLO_EXIT on the secondary in 30 s: mode {st.get('mode')}, "
                         f"armed {st.get('armed')}, last decision: {st.get('last-decision')}")
        check(ev["data"].get("mode") == "secondary", f"secondary COLO_EXIT {ev['data']}")
        # COLO_EXIT may come first (e.g. "stream ended", reported before the heartbeat tells
        # a dead primary from a live one) and the takeover a moment later: give it 10 s
        deadline = time.monotonic() + 10
        while (st := p.sq.cmd("query-status")["status"]) != "running":
            if time.monotonic() > deadline:
                cs = p.sq.cmd("query-colo-status")
                raise Failed(f"the secondary's status is still {st} 10 s after COLO_EXIT "
                             f"{ev['data']}: armed {cs.get('armed')}, last decision: "
                             f"{cs.get('last-decision')}")
            time.sleep(0.02)

    def part_netkv(self, it, k, r, procs):
        from colo_pair import Pair
        port = 20000 + it % 20000
        p = Pair(self.env, procs, guest="netkv", append=f"ip={GUEST_IP}/24",
                 pri_ready=r"netkv ready", delay_ms=k["delay"], uri=f"tcp:10.77.1.2:{port}",
                 pri_netns=f"{self.lan}-pri", sec_netns=f"{self.lan}-sec",
                 extra=("--net", f"tap=tap0,mac={MAC}"),
                 pri_env={"TANDEM_COLO_FAULT": k["fault"]} if k["how"] == "fault" else None)
        r["pair"] = p
        d = self.work / f"it{it}"
        d.mkdir(exist_ok=True)
        r["client_err"] = d / "client.stderr"
        with open(r["client_err"], "w") as err:
            c = subprocess.Popen(["ip", "netns", "exec", f"{self.lan}-cli", "/usr/bin/python3",
                                  str(pathlib.Path(__file__).resolve()), "--netkv-client",
                                  "--seed", str(r["client_seed"])],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                 text=True)
        self.reg.add(c)
        r["client"] = c
        out = r["client_out"] = []
        lines = threading.Condition()

        def reader():
            for line in c.stdout:
                with lines:
                    out.append(line.rstrip("\n"))
                    lines.notify_all()
            with lines:
                out.append(None)
                lines.notify_all()

        threading.Thread(target=reader, daemon=True).start()

        def wait_line(word, timeout):
            deadline = time.monotonic() + timeout
            with lines:
                while word not in out:
                    check(None not in out, f"the client exited before `{word}`: {out[-5:]}")
                    left = deadline - time.monotonic()
                    check(left > 0, f"the client did not say `{word}` in {timeout} s")
                    lines.wait(left)

        wait_line("first", 20)  # the load runs before COLO starts: it is there at every kill
        t = self.wait_death(p, k)
        check(c.poll() is None, f"the client exited ({c.poll()}) before the kill")
        c.stdin.write(f"kill {t}\n")
        c.stdin.flush()
        self.took_over(p)
        r["takeovers"] += 1
        wait_line("after", 30)  # the new VM answers
        c.stdin.close()
        try:
            c.wait(60)
        except subprocess.TimeoutExpired:
            raise Failed("the client did not finish its final reads in 60 s")
        with lines:
            wait_line_end = time.monotonic() + 5
            while None not in out and time.monotonic() < wait_line_end:
                lines.wait(0.5)
            js = [x for x in out if x and x.startswith("{")]
        check(js, f"no summary from the client: {out[-5:]}")
        s = json.loads(js[-1])
        r["netkv"] = s
        r["lost"] += s["lost"]
        r["contradictions"] += s["contradictions"]
        check(s["lost"] == 0 and s["contradictions"] == 0,
              f"{s['lost']} lost, {s['contradictions']} contradictions: {s['problems'][:5]}")
        check(s["no_reply"] == 0, f"{s['no_reply']} requests got no reply in 20 s")
        check(s["final_reads"] == NKEYS, f"only {s['final_reads']} of {NKEYS} final reads")

    def part_blkcheck(self, it, k, r, procs):
        from colo_pair import Pair
        from harness import tandem_run
        d = self.work / f"it{it}"
        d.mkdir(exist_ok=True)
        imgs = d / "pri.img", d / "sec.img"
        for img in imgs:
            with open(img, "wb") as f:
                f.truncate(1 << 20)
        p = Pair(self.env, procs, guest="blkcheck", append="flush=8", delay_ms=k["delay"],
                 pri_extra=("--disk", f"path={imgs[0]}"), sec_extra=("--disk", f"path={imgs[1]}"),
                 pri_env={"TANDEM_COLO_FAULT": k["fault"]} if k["how"] == "fault" else None)
        r["pair"] = p
        self.wait_death(p, k)
        # the console is output too (held until its checkpoint is received): what the primary
        # showed, the secondary has
        shown = [int(x) for x in re.findall(r"ack gen=(\d+)\n", p.pri.text)]
        self.took_over(p)
        r["takeovers"] += 1
        p.sec.wait_for(r"ack gen=(\d+)\n", timeout=60)  # it writes on
        after = [int(x) for x in re.findall(r"ack gen=(\d+)\n", p.sec.text)]
        p.sec.kill(signal.SIGKILL)
        acked = max(shown + after)
        r["acked"] = acked
        v = tandem_run(self.env, "blkcheck", "--disk", f"path={imgs[1]}", "--no-reboot",
                       append=f"ack={acked} writes=8", procs=procs)
        r["verify"] = v
        rc = v.wait(120)
        text = v.text
        if re.search(r"CORRUPT acknowledged gen=\d+ lost", text):
            r["lost"] += 1
        elif "CORRUPT" in text:
            r["contradictions"] += 1
        m = re.search(r"verify ok blocks=\d+ gen=(\d+)", text)
        check(rc == 0 and m and "CORRUPT" not in text,
              f"verify of the secondary's disk with ack={acked}: exit {rc}: "
              f"{[ln for ln in text.splitlines() if 'CORRUPT' in ln or 'verify' in ln][:3]}")
        r["disk_gen"] = int(m.group(1))

    def run_part(self, name, it, k, r):
        procs = Tracked(self.reg)
        try:
            getattr(self, f"part_{name}")(it, k, r, procs)
        except Failed as e:
            r["error"] = str(e)
        except Exception as e:  # an assertion of the harness, a QMP error, a timeout...
            r["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
        finally:
            self.reg.kill(list(procs) + ([r["client"]] if "client" in r else []))

    # -- one iteration -------------------------------------------------------------------------

    def iteration(self, it, total, index):
        pl = plan(self.a.seed, it)
        t0 = time.monotonic()
        self.lan_reset()
        res = {}
        threads = self.threads = []
        for name in ("netkv", "blkcheck"):
            res[name] = {"lost": 0, "contradictions": 0, "takeovers": 0,
                         "client_seed": pl["client_seed"]}
            th = threading.Thread(target=self.run_part, args=(name, it, pl[name], res[name]),
                                  daemon=True)
            th.start()
            threads.append(th)
        for th in threads:
            while th.is_alive():
                th.join(0.2)
        dt = time.monotonic() - t0
        self.times.append(dt)
        tot = self.totals
        tot["iterations"] += 1
        errors = []
        for name in ("netkv", "blkcheck"):
            r = res[name]
            tot["takeovers"] += r["takeovers"]
            tot["lost"] += r["lost"]
            tot["contradictions"] += r["contradictions"]
            if "error" in r:
                errors.append((name, r["error"]))
        if errors:
            tot["failures"] += 1
        parts = []
        for name in ("netkv", "blkcheck"):
            r, k = res[name], pl[name]
            if "error" in r:
                what = "FAILED"
            elif name == "netkv":
                s = r["netkv"]
                what = f"took over, {s['answers']} answers ({s['answers_after']} after), " \
                       f"{s['final_reads']} keys re-read"
            else:
                what = f"took over, gen {r['acked']} acked, disk gen {r['disk_gen']} verified"
            parts.append(f"{name}: {describe(k)}: {what}")
        print(f"{PROG}: [{index}/{total}] iteration {it} {'FAIL' if errors else 'ok'} "
              f"{dt:.1f}s | {' | '.join(parts)} | lost {tot['lost']}, contradictions "
              f"{tot['contradictions']}, takeovers {tot['takeovers']}, iterations "
              f"{tot['iterations']}, failures {tot['failures']}", flush=True)
        if errors:
            logdir = self.save_logs(it, res)
            for name, err in errors:
                msg = (f"{PROG}: FAIL iteration {it} (seed {self.a.seed}) {name}: "
                       f"{describe(pl[name])}: {err}")
                print(msg, flush=True)
                self.failed.append(msg)
            print(f"{PROG}:   replay: scripts/killsweep.sh --seed {self.a.seed} --only {it}"
                  f"   (outputs: {logdir})", flush=True)
        return not errors

    def save_logs(self, it, res):
        d = pathlib.Path(self.a.logs) / f"it{it}"
        d.mkdir(parents=True, exist_ok=True)
        for name, r in res.items():
            p = r.get("pair")
            if p is not None:
                (d / f"{name}-primary.log").write_text(" ".join(p.pri.argv) + "\n" + p.pri.text)
                (d / f"{name}-secondary.log").write_text(" ".join(p.sec.argv) + "\n" + p.sec.text)
            if r.get("verify") is not None:
                (d / f"{name}-verify.log").write_text(r["verify"].text)
            if r.get("client_out") is not None:
                c = r["client"]
                err = r["client_err"].read_text() if r["client_err"].exists() else ""
                (d / f"{name}-client.log").write_text(
                    f"exit status {c.poll()}\n"
                    + "\n".join(x for x in r["client_out"] if x is not None) + "\n"
                    + (f"stderr:\n{err}" if err else ""))
            (d / f"{name}-result.json").write_text(json.dumps(
                {k: v for k, v in r.items() if k not in ("pair", "verify", "client",
                                                          "client_out", "client_err")},
                indent=1) + "\n")
        return d

    def cleanup(self):
        self.reg.kill()
        for th in self.threads:  # the parts end quickly once their processes are gone
            th.join(5)
        if self.lan_up:
            netlan("down", self.lan, check_rc=False)
        shutil.rmtree(self.work, ignore_errors=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="killsweep.sh", add_help=False, usage=argparse.SUPPRESS)
    ap.add_argument("-h", "--help", action="store_true")
    ap.add_argument("n", nargs="?", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--only")
    ap.add_argument("--lan", default="ksweep")
    ap.add_argument("--logs")
    ap.add_argument("--accel")
    ap.add_argument("--stop-on-failure", action="store_true")
    a = ap.parse_args(argv)
    if a.help:
        print(__doc__.split("\n", 2)[2].replace("(root; run through scripts/killsweep.sh)",
                                                "(root)").rstrip())
        sys.exit(0)
    if a.only:
        try:
            a.only = [int(x) for x in a.only.split(",") if x]
        except ValueError:
            ap.error("--only: iteration numbers, e.g. --only 3 or --only 3,17")
        if a.seed is None:
            ap.error("--only needs the sweep's --seed")
        if not a.only or min(a.only) < 1:
            ap.error("--only: iterations are numbered from 1")
    elif a.n is None or a.n < 1:
        ap.error("N (the number of iterations, >= 1) is required; --help explains")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,14}", a.lan):
        ap.error("--lan: 1..14 of [A-Za-z0-9_]")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 10 ** 9)
    if a.logs is None:
        a.logs = f"/tmp/killsweep-logs-{a.seed}"
    return a


def main(argv):
    if argv[:1] == ["--netkv-client"]:
        return client_main(argv[1:])
    a = parse_args(argv)
    from harness import Env
    build = pathlib.Path(os.environ.get("TANDEM_BUILD", ROOT / "build"))
    guests = pathlib.Path(os.environ.get("TANDEM_GUESTS", build / "guests"))
    accel = a.accel or os.environ.get("TANDEM_ACCEL") or (
        "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "emu")
    env = Env(root=ROOT, tandem=build / "tandem", guests=guests, accel=accel)
    if os.geteuid() != 0:
        print(f"{PROG}: needs root (network namespaces)", file=sys.stderr)
        return 2
    for f in (env.tandem, guests / "netkv.elf", guests / "blkcheck.elf"):
        if not f.exists():
            print(f"{PROG}: {f} is missing: build first (ninja -C {build})", file=sys.stderr)
            return 2
    its = a.only or list(range(1, a.n + 1))

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)  # even when started with SIGINT ignored (&)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    sw = Sweep(a, env)
    interrupted = False
    print(f"{PROG}: seed {a.seed}, {len(its)} iteration(s), engine {accel}, LAN {a.lan}",
          flush=True)
    try:
        # One binary for the whole sweep: a copy, so a rebuild meanwhile neither breaks a run
        # nor mixes two versions in one sweep.
        snap = sw.work / "bin"
        (snap / "guests").mkdir(parents=True)
        shutil.copy2(env.tandem, snap / "tandem")
        for g in ("netkv", "blkcheck"):
            shutil.copy2(guests / f"{g}.elf", snap / "guests" / f"{g}.elf")
        sw.env = Env(root=ROOT, tandem=snap / "tandem", guests=snap / "guests", accel=accel)
        sw.lan_setup()
        for idx, it in enumerate(its, 1):
            ok = sw.iteration(it, len(its), idx)
            if not ok and a.stop_on_failure:
                break
    except KeyboardInterrupt:
        interrupted = True
        print(f"\n{PROG}: interrupted: stopping every process and removing the LAN", flush=True)
    except subprocess.CalledProcessError as e:
        print(f"{PROG}: setup failed: {' '.join(map(str, e.cmd))}: {e.stderr or e.stdout}",
              file=sys.stderr, flush=True)
        interrupted = None
    except OSError as e:
        print(f"{PROG}: setup failed: {e}", file=sys.stderr, flush=True)
        interrupted = None
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)  # let the cleanup finish
        sw.cleanup()
    t = sw.totals
    mean = sum(sw.times) / len(sw.times) if sw.times else 0
    for msg in sw.failed:
        print(msg)
    print(f"{PROG}: {'interrupted: ' if interrupted else ''}{t['iterations']} iterations, "
          f"{t['takeovers']} takeovers, {t['lost']} acknowledged writes lost, "
          f"{t['contradictions']} contradictions, {t['failures']} failures "
          f"(seed {a.seed}, {mean:.1f} s per iteration)", flush=True)
    if interrupted:
        return 130
    if interrupted is None:
        return 2
    return 0 if t["failures"] == 0 and t["lost"] == 0 and t["contradictions"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
