"""colo_pair.py: start a COLO pair of tandem processes on this machine and drive it over QMP."""
import socket
import time

from harness import QMP, tandem_run, tmpdir


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Pair:
    """primary + secondary running `guest` under COLO (periodic mode; params adds migration
    parameters for the primary, e.g. {"x-colo-mode": "hybrid"})."""

    def __init__(self, env, procs, guest="counter", append="", delay_ms=100, extra=(),
                 pri_env=None, sec_env=None, sec_extra=(), pri_extra=(), hb_timeout=None,
                 uri=None, pri_netns=None, sec_netns=None, pri_ready=None, params=None):
        d = tmpdir()
        self.dir = d
        self.port = free_port()
        self.uri = uri or f"tcp:127.0.0.1:{self.port}"
        self.sec = tandem_run(env, guest, "--incoming", "defer", "--qmp", f"unix:{d}/sec.sock",
                              *extra, *sec_extra, append=append, procs=procs, environ=sec_env,
                              netns=sec_netns)
        self.sq = QMP(d / "sec.sock")
        self.sq.cmd("migrate-set-capabilities",
                    {"capabilities": [{"capability": "x-colo", "state": True},
                                      {"capability": "events", "state": True}]})
        if hb_timeout:
            self.sq.cmd("migrate-set-parameters", {"x-heartbeat-timeout": hb_timeout})
        self.sq.cmd("migrate-incoming", {"uri": self.uri})
        self.pri = tandem_run(env, guest, "--qmp", f"unix:{d}/pri.sock", *extra, *pri_extra,
                              append=append, procs=procs, environ=pri_env, netns=pri_netns)
        self.pq = QMP(d / "pri.sock")
        if pri_ready:
            self.pri.wait_for(pri_ready)
        self.pq.cmd("migrate-set-capabilities",
                    {"capabilities": [{"capability": "x-colo", "state": True},
                                      {"capability": "events", "state": True}]})
        params = {"x-checkpoint-delay": delay_ms, **(params or {})}
        if hb_timeout:
            params["x-heartbeat-timeout"] = hb_timeout
        self.pq.cmd("migrate-set-parameters", params)

    def start(self, timeout=60, wait=True):
        """Start COLO; with wait, until both sides report status colo (a test whose primary
        dies early by fault injection starts without waiting)."""
        self.pq.cmd("migrate", {"uri": self.uri})
        if wait:
            self.wait_status(self.pq, "colo", timeout)
            self.wait_status(self.sq, "colo", timeout)

    @staticmethod
    def wait_status(q, status, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            st = q.cmd("query-migrate").get("status")
            if st == status:
                return
            if st == "failed" or time.monotonic() > deadline:
                raise AssertionError(f"migration status {st}, wanted {status}: "
                                     f"{q.cmd('query-migrate')}")
            time.sleep(0.05)

    def wait_checkpoints(self, n, q=None, timeout=60):
        q = q or self.pq
        deadline = time.monotonic() + timeout
        while True:
            st = q.cmd("query-colo-status")
            if st["stats"]["checkpoints"] >= n:
                return st
            if st["mode"] == "none" or time.monotonic() > deadline:
                raise AssertionError(f"only {st} after waiting for {n} checkpoints")
            time.sleep(0.05)
