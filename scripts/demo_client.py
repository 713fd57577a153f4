#!/usr/bin/python3
"""demo_client.py: the demo's client: a model-checked netkv load until its stdin closes.

Usage: demo_client.py [--tcp | --both]  (default UDP; --tcp: every request over one TCP
connection, which must survive the failover: it is never reopened; --both: each request over
UDP or that connection, at random).

Runs inside the client namespace. Every reply is checked against a model of what each key must
hold given the replies so far, so a GET that misses an acknowledged SET (a lost write) or a seq
that goes back is a contradiction. Prints progress lines and a final JSON summary, including the
longest gap between two answered requests (the outage a failover caused).
"""
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from netkv_client import Client, MixedClient, TcpClient, load  # noqa: E402

ANSWERS = []  # wall clock of every answer (comparable with the driver's kill time)


class Timed(Client):
    """A UDP client that records when answers arrive."""

    def request(self, line):
        r = super().request(line)
        ANSWERS.append(time.time())
        return r


class TimedTcp(TcpClient):
    """The same over one TCP connection."""

    def request(self, line):
        r = super().request(line)
        ANSWERS.append(time.time())
        return r


def main():
    kill_at = []

    def stop_on_eof():
        # "kill T" tells when the primary was killed; end of input ends the load
        for line in sys.stdin:
            if line.startswith("kill "):
                kill_at.append(float(line.split()[1]))
        os.kill(os.getpid(), signal.SIGINT)  # load() ends cleanly on KeyboardInterrupt

    # Our own SIGINT handler, whatever we inherited: a parent that was started in the
    # background by a non-interactive shell passes SIGINT down ignored, and the load would
    # never end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=stop_on_eof, daemon=True).start()
    mode = sys.argv[1] if len(sys.argv) > 1 else "--udp"
    tcp = None
    if mode in ("--tcp", "--both"):
        tcp = TimedTcp(timeout=60.0)
        port = tcp.sock.getsockname()[1]
    client = Timed(timeout=0.05, retries=400)
    if mode == "--tcp":
        client = tcp
    elif mode == "--both":
        client = MixedClient(client, tcp)
    res = load(client, ops=0, nkeys=32, check=True, progress=1.0, out=sys.stdout)
    before = [t for t in ANSWERS if kill_at and t < kill_at[0]]
    after = [t for t in ANSWERS if kill_at and t >= kill_at[0]]
    extra = {}
    if tcp:
        # the connection the load began with is the one it ended on: TcpClient never reopens
        extra["tcp"] = {"local_port": port, "lost": tcp.lost, "resent": tcp.resent,
                        "requests": tcp.requests, "same_connection": tcp.lost is None}
        tcp.close()
    print(json.dumps({"done": True, "mode": mode.lstrip("-"), **extra, "nonces": res.nonces,
                      "ops": res.ops, "sets": res.sets, "gets": res.gets,
                      "no_reply": res.no_reply, "last_seq": res.last_seq,
                      "contradictions": res.contradictions[:20],
                      "ncontradictions": len(res.contradictions),
                      "answers_before_kill": len(before), "answers_after_kill": len(after),
                      "first_answer_after_kill_ms":
                          round((after[0] - kill_at[0]) * 1000) if after else None}),
          flush=True)


if __name__ == "__main__":
    main()
