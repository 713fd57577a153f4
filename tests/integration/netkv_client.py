#!/usr/bin/python3
"""netkv_client.py: UDP and TCP client for the netkv guest (library, CLI); a model-checked load.

Protocol (docs/guests.md, netkv): `SET k v`, `GET k`, `DEL k`; every reply's last token is seq,
the number of mutations the store has applied: `OK <seq>`, `VALUE <v> <seq>`, `NONE <seq>`,
`ERR <reason> <seq>`. UDP (port 7000): one request per datagram. TCP (port 7001): one request
per "\n"-terminated line, replies in order, one line each. With the guest's diverge=N, every
Nth reply starts with a nonce token "~<16 hex digits> " (Reply.nonce; the rest parses as usual).

CLI (run it where the server is reachable, e.g. `scripts/netlan.sh exec NAME cli ...`):
    netkv_client.py [--server 10.77.0.2] [--port 7000] [--tcp | --both] [--tcp-port 7001]
                    [--timeout S] [--retries N] CMD
    CMD: set KEY VALUE | get KEY | del KEY | raw LINE
       | load --ops N [--keys K] [--dels F] [--prefix P] [--check] [--progress S]
--tcp sends every request over one TCP connection; --both alternates at random between UDP and
that connection (one sequence of requests, one model). --timeout is per attempt over UDP and
per reply over TCP (default 60 s there).
Exit status: 0 ok; 1 a contradiction (load --check) or an ERR reply; 3 a request got no reply
after all its retries; 4 the TCP connection was lost (reset, closed, or a reply timed out).

UDP: each request uses a fresh UDP socket and is re-sent on the same socket until a reply
arrives (`retries` times, `timeout` seconds each); a late reply to an earlier request therefore
never reaches a later one. A re-sent SET or DEL may be applied twice: `load` writes a value
unique to (run, key, version), so a SET applied twice stores the same value, and it accepts NONE
from a re-sent DEL.

TCP: one connection for the client's life, never re-opened: a COLO failover must carry the
same connection on. Anything that ends it (RST, FIN, no reply within the timeout) raises
ConnectionLost, and the client is unusable after that (a later reply could not be matched).
"""
import argparse
import dataclasses
import os
import random
import re
import socket
import struct
import sys
import time

DEFAULT_SERVER = "10.77.0.2"
DEFAULT_PORT = 7000
DEFAULT_TCP_PORT = 7001
NONCE_RE = re.compile(r"~([0-9a-f]{16}) ")


class NoReply(Exception):
    """A request got no reply after all its retries."""


class ConnectionLost(Exception):
    """The TCP connection ended (reset, closed by the server, or a reply timed out)."""


@dataclasses.dataclass
class Reply:
    kind: str  # OK, VALUE, NONE or ERR
    value: str | None  # the value (VALUE) or the reason (ERR)
    seq: int
    attempts: int  # datagrams sent for the request (1 over TCP)
    raw: str  # the reply as received, nonce included
    nonce: str | None = None  # the diverge nonce's hex digits, if the reply carried one


def parse_reply(data: bytes, attempts: int = 1) -> Reply:
    """Parse one reply (datagram or line); raises ValueError if it is not one of the four
    forms, optionally behind a diverge nonce token."""
    text = data.decode("ascii")
    line = text[:-1] if text.endswith("\n") else text
    nonce = None
    m = NONCE_RE.match(line)
    if m:
        nonce, line = m.group(1), line[m.end():]
    head, _, rest = line.partition(" ")
    body, _, seq = rest.rpartition(" ")
    if not seq.isdigit():
        raise ValueError(f"reply without a seq: {text!r}")
    if head in ("OK", "NONE") and rest == seq:
        return Reply(head, None, int(seq), attempts, text, nonce)
    if head in ("VALUE", "ERR") and body:
        return Reply(head, body, int(seq), attempts, text, nonce)
    raise ValueError(f"malformed reply: {text!r}")


class Requests:
    """The protocol's requests on top of a request(line) -> Reply."""

    def request(self, line: str) -> Reply:
        raise NotImplementedError

    def set(self, key: str, value: str) -> Reply:
        return self.request(f"SET {key} {value}")

    def get(self, key: str) -> Reply:
        return self.request(f"GET {key}")

    def delete(self, key: str) -> Reply:
        return self.request(f"DEL {key}")


class Client(Requests):
    """Requests to one netkv server; counts the datagrams it had to re-send."""

    def __init__(self, server: str = DEFAULT_SERVER, port: int = DEFAULT_PORT,
                 timeout: float = 0.3, retries: int = 30):
        self.addr = (server, port)
        self.timeout = timeout
        self.retries = retries
        self.resent = 0

    def request(self, line: str) -> Reply:
        data = line.encode("ascii")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(self.timeout)
            for attempt in range(1, self.retries + 2):
                if attempt > 1:
                    self.resent += 1
                s.sendto(data, self.addr)
                try:
                    reply, _ = s.recvfrom(65536)
                except socket.timeout:
                    continue
                return parse_reply(reply, attempt)
        raise NoReply(f"{line!r}: no reply from {self.addr[0]}:{self.addr[1]} after "
                      f"{self.retries + 1} attempts")


class TcpClient(Requests):
    """Requests over one TCP connection, opened here and kept for the client's life.

    The same API as Client (request, set, get, delete return Reply); also request_many
    (pipelined: all lines in one send, then the replies in order) and close (FIN). resent is
    the kernel's count of retransmitted segments on the connection (TCP_INFO), the analogue of
    Client.resent. After ConnectionLost every call raises it again."""

    def __init__(self, server: str = DEFAULT_SERVER, port: int = DEFAULT_TCP_PORT,
                 timeout: float = 60.0, connect_timeout: float = 60.0, sock=None):
        self.addr = (server, port)
        self.timeout = timeout
        self.lost = None
        self.requests = 0
        self.buf = b""
        if sock is None:
            sock = socket.create_connection(self.addr, timeout=connect_timeout)
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def resent(self) -> int:
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            return struct.unpack_from("I", info, 100)[0]  # tcpi_total_retrans
        except (OSError, struct.error):
            return 0

    def _lose(self, why: str):
        self.lost = (f"TCP connection to {self.addr[0]}:{self.addr[1]} lost after "
                     f"{self.requests} requests: {why}")
        try:
            self.sock.close()
        except OSError:
            pass
        raise ConnectionLost(self.lost)

    def _line(self) -> bytes:
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                self._lose(f"no reply within {self.timeout} s")
            except OSError as e:
                self._lose(f"{e.__class__.__name__}: {e}")
            if not chunk:
                self._lose("closed by the server" + (f" (unparsed {self.buf!r})" if self.buf
                                                     else ""))
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def send_raw(self, data: bytes):
        """Bytes as they are (tests cut lines into pieces with this)."""
        if self.lost:
            raise ConnectionLost(self.lost)
        try:
            self.sock.sendall(data)
        except OSError as e:
            self._lose(f"{e.__class__.__name__}: {e}")

    def read_reply(self) -> Reply:
        if self.lost:
            raise ConnectionLost(self.lost)
        line = self._line()
        try:
            return parse_reply(line)
        except (ValueError, UnicodeDecodeError) as e:
            self._lose(f"unparseable reply: {e}")

    def request_many(self, lines) -> list:
        lines = list(lines)
        self.send_raw(b"".join(ln.encode("ascii") + b"\n" for ln in lines))
        replies = [self.read_reply() for _ in lines]
        self.requests += len(lines)
        return replies

    def request(self, line: str) -> Reply:
        return self.request_many([line])[0]

    def close(self):
        """Half-close (our FIN), read to the server's FIN, close. True if the server closed
        cleanly with nothing unread."""
        if self.lost:
            return False
        clean = False
        try:
            self.sock.shutdown(socket.SHUT_WR)
            clean = self.sock.recv(65536) == b"" and not self.buf
        except OSError:
            pass
        finally:
            self.sock.close()
            self.lost = "closed"
        return clean


class MixedClient(Requests):
    """One sequence of requests, each sent over UDP or TCP at random (seeded): both paths to
    the same store, checked as one (load's model). Raises what either client raises."""

    def __init__(self, udp: Client, tcp: TcpClient, seed: int | None = None):
        self.udp, self.tcp = udp, tcp
        self.rng = random.Random(seed)

    @property
    def resent(self) -> int:
        return self.udp.resent + self.tcp.resent

    def request(self, line: str) -> Reply:
        return (self.tcp if self.rng.random() < 0.5 else self.udp).request(line)

    def close(self):
        return self.tcp.close()


@dataclasses.dataclass
class LoadResult:
    ops: int = 0
    sets: int = 0
    gets: int = 0
    dels: int = 0
    resent: int = 0
    no_reply: int = 0
    nonces: int = 0  # replies that carried a diverge nonce
    first_seq: int | None = None
    last_seq: int = 0
    seconds: float = 0.0
    contradictions: list = dataclasses.field(default_factory=list)
    lost: str | None = None  # why the TCP connection ended (the load stopped there)

    def summary(self) -> str:
        return (f"load ops={self.ops} set={self.sets} get={self.gets} del={self.dels} "
                f"resent={self.resent} no_reply={self.no_reply} nonces={self.nonces} "
                f"first_seq={self.first_seq} last_seq={self.last_seq} "
                f"contradictions={len(self.contradictions)} seconds={self.seconds:.2f}"
                + (f" lost={self.lost!r}" if self.lost else ""))


class Model:
    """What each key may hold, given the replies so far (one client, requests in sequence).

    A key's state is the set of values it may hold (None: absent); it has one member except
    after a request that got no reply (then it may or may not have been applied).
    """

    def __init__(self, keys):
        self.may_hold = {k: {None} for k in keys}
        self.acked_version = {k: 0 for k in keys}  # version of the last acknowledged SET
        self.max_seq = None

    def check_seq(self, what: str, r: Reply, mutation: bool, problems: list):
        if self.max_seq is not None:
            low = self.max_seq + 1 if mutation else self.max_seq
            if r.seq < low:
                problems.append(f"{what}: seq {r.seq} after seq {self.max_seq} "
                                f"({'a mutation must move it forward' if mutation else 'it went back'})")
        self.max_seq = r.seq if self.max_seq is None else max(self.max_seq, r.seq)


def version_of(value: str) -> int | None:
    try:
        return int(value.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def load(client: Client, ops: int, nkeys: int = 256, dels: float = 0.05, prefix: str | None = None,
         check: bool = True, seed: int | None = None, progress: float = 0,
         out=sys.stdout) -> LoadResult:
    """Run ops mixed requests (0: until KeyboardInterrupt): SET, GET and a fraction dels of DEL,
    on nkeys keys named <prefix>.<i>. With check, every reply is checked against the model;
    contradictions are collected in the result (the load goes on). client: Client, TcpClient
    or MixedClient; a lost TCP connection ends the load (res.lost says why; that last request
    counts as one without a reply)."""
    rng = random.Random(seed)
    run = prefix or os.urandom(4).hex()
    keys = [f"{run}.{i}" for i in range(nkeys)]
    model = Model(keys)
    version = {k: 0 for k in keys}
    res = LoadResult()
    start = last_report = time.monotonic()
    problems = res.contradictions
    try:
        while not ops or res.ops < ops:
            k = rng.choice(keys)
            x = rng.random()
            res.ops += 1
            try:
                if x < dels:
                    res.dels += 1
                    r = client.delete(k)
                    what = f"op {res.ops} DEL {k}"
                    if r.kind == "OK":
                        if check and model.may_hold[k] == {None}:
                            problems.append(f"{what}: removed a key that was absent")
                        model.check_seq(what, r, True, problems)
                    elif r.kind == "NONE":
                        # a re-sent DEL finds the key gone if an earlier copy removed it
                        if check and None not in model.may_hold[k] and r.attempts == 1:
                            problems.append(f"{what}: NONE, but the key holds "
                                            f"{sorted(model.may_hold[k])}")
                        model.check_seq(what, r, False, problems)
                    else:
                        problems.append(f"{what}: {r.raw!r}")
                    model.may_hold[k] = {None}
                elif x < dels + (1 - dels) / 2:
                    res.sets += 1
                    version[k] += 1
                    v = f"{run}:{k}:{version[k]}"
                    r = client.set(k, v)
                    what = f"op {res.ops} SET {k} {v}"
                    if r.kind != "OK":
                        problems.append(f"{what}: {r.raw!r}")
                    else:
                        model.check_seq(what, r, True, problems)
                        model.may_hold[k] = {v}
                        model.acked_version[k] = version[k]
                else:
                    res.gets += 1
                    r = client.get(k)
                    what = f"op {res.ops} GET {k}"
                    if r.kind in ("VALUE", "NONE"):
                        got = r.value if r.kind == "VALUE" else None
                        if check and got not in model.may_hold[k]:
                            problems.append(f"{what}: {got!r}, expected one of "
                                            f"{sorted(map(str, model.may_hold[k]))}"
                                            f"{describe(got, k, run, model.acked_version[k])}")
                        model.check_seq(what, r, False, problems)
                        model.may_hold[k] = {got}
                    else:
                        problems.append(f"{what}: {r.raw!r}")
            except (NoReply, ConnectionLost) as e:
                res.no_reply += 1
                if x < dels:
                    model.may_hold[k].add(None)
                elif x < dels + (1 - dels) / 2:
                    model.may_hold[k].add(f"{run}:{k}:{version[k]}")
                if isinstance(e, ConnectionLost):
                    res.lost = str(e)
                    break
            else:
                res.nonces += r.nonce is not None
            if model.max_seq is not None:
                if res.first_seq is None:
                    res.first_seq = model.max_seq
                res.last_seq = model.max_seq
            if progress and time.monotonic() - last_report >= progress:
                last_report = time.monotonic()
                res.resent, res.seconds = client.resent, last_report - start
                print(res.summary(), file=out, flush=True)
    except KeyboardInterrupt:
        pass
    res.resent = client.resent
    res.seconds = time.monotonic() - start
    return res


def describe(got, key, run, acked) -> str:
    """Why a GET's value is wrong, when the value says so."""
    if got is None:
        return " (an acknowledged SET was lost)" if acked else ""
    if not got.startswith(f"{run}:{key}:"):
        return " (not a value this run wrote to this key)"
    v = version_of(got)
    if v is not None and v < acked:
        return f" (version {v} is older than the acknowledged version {acked})"
    if v is not None and v > acked:
        return f" (version {v} was never acknowledged)"
    return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default=DEFAULT_SERVER)
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--tcp-port", type=int, default=DEFAULT_TCP_PORT)
    proto = ap.add_mutually_exclusive_group()
    proto.add_argument("--tcp", action="store_true", help="every request over one TCP connection")
    proto.add_argument("--both", action="store_true",
                       help="each request over UDP or the TCP connection, at random")
    ap.add_argument("--timeout", type=float,
                    help="seconds per attempt (UDP, default 0.3) or per reply (TCP, default 60)")
    ap.add_argument("--retries", type=int, default=30, help="UDP re-sends before giving up")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("set")
    p.add_argument("key")
    p.add_argument("value")
    p = sub.add_parser("get")
    p.add_argument("key")
    p = sub.add_parser("del")
    p.add_argument("key")
    p = sub.add_parser("raw")
    p.add_argument("line")
    p = sub.add_parser("load")
    p.add_argument("--ops", type=int, default=1000, help="requests (0: until interrupted)")
    p.add_argument("--keys", type=int, default=256)
    p.add_argument("--dels", type=float, default=0.05, help="fraction of DEL requests")
    p.add_argument("--prefix", help="key prefix (default: random, so keys start absent)")
    p.add_argument("--seed", type=int)
    p.add_argument("--check", action="store_true", help="check every reply against a model")
    p.add_argument("--progress", type=float, default=0, help="print a line every S seconds")
    a = ap.parse_args(argv)

    c = Client(a.server, a.port, a.timeout or 0.3, a.retries)
    if a.tcp or a.both:
        try:
            t = TcpClient(a.server, a.tcp_port, a.timeout or 60.0)
        except OSError as e:
            print(f"TCP connection to {a.server}:{a.tcp_port} failed: {e}", file=sys.stderr)
            return 4
        c = t if a.tcp else MixedClient(c, t, a.seed)
    if a.cmd == "load":
        res = load(c, a.ops, a.keys, a.dels, a.prefix, a.check, a.seed, a.progress)
        if a.tcp or a.both:
            c.close()
        print(res.summary())
        for p in res.contradictions[:100]:
            print("CONTRADICTION", p)
        if len(res.contradictions) > 100:
            print(f"... and {len(res.contradictions) - 100} more")
        return 1 if res.contradictions else 4 if res.lost else 3 if res.no_reply else 0
    try:
        if a.cmd == "set":
            r = c.set(a.key, a.value)
        elif a.cmd == "get":
            r = c.get(a.key)
        elif a.cmd == "del":
            r = c.delete(a.key)
        else:
            r = c.request(a.line)
    except NoReply as e:
        print(e, file=sys.stderr)
        return 3
    except ConnectionLost as e:
        print(e, file=sys.stderr)
        return 4
    if a.tcp or a.both:
        c.close()
    print(r.raw, end="" if r.raw.endswith("\n") else "\n")
    return 1 if r.kind == "ERR" else 0


if __name__ == "__main__":
    sys.exit(main())
