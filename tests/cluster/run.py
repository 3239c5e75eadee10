#!/usr/bin/env python3
"""Cluster tests (issue 17): Basalt nodes on an HA PostgreSQL cluster.

scripts/cluster.sh starts etcd x3 + Patroni x3 (PostgreSQL 15,
synchronous_mode) + 3 Basalt nodes on loopback; this file drives them over
HTTP and WebSocket and checks, in order:

  unique    concurrent creates of the same unique value through two nodes:
            exactly one wins, 20 times;
  failover  kill -9 the PostgreSQL leader (Patroni and PostgreSQL: the
            machine dies) during concurrent writes through all three nodes:
            every acknowledged (2xx) write is there after the failover, and
            writes resume by themselves. How long they failed is reported,
            not asserted (the machine is shared);
  realtime  kill -9 a Basalt node: its WebSocket client reconnects to
            another node with `since` and gets every event of writes made
            through the other nodes, with no gap and no duplicate.

Usage: tests/cluster/run.py [--bin BASALT] [--keep DIR] [TEST...]
The cluster is always stopped at the end (scripts/cluster.sh stop), also
when a test fails or the run is interrupted. Exit status 0 when every test
that ran passed. Standard library only.
"""

import argparse
import base64
import http.client
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(ROOT, "scripts", "cluster.sh")
SU_EMAIL, SU_PASSWORD = "admin@cluster.test", "cluster-password-123"
TIMEOUT = 30


def log(msg):
    print(f"[cluster-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Failed(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


# --------------------------------------------------------------------------
# HTTP


class Http:
    """One keep-alive connection to a node; a new one after any error."""

    def __init__(self, base, timeout=TIMEOUT):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn = None

    def call(self, method, path, body=None, token=None):
        """(status, parsed JSON or None). status 0: no answer (connection
        refused or reset, timeout), the request's outcome is unknown."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = token
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.request(method, path, data, headers)
            resp = self.conn.getresponse()
            text = resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, None
        try:
            return resp.status, json.loads(text) if text else None
        except ValueError:
            return resp.status, {"raw": text[:300]}

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def login(base):
    st, body = Http(base).call("POST", "/api/collections/_superusers/auth-with-password",
                               {"identity": SU_EMAIL, "password": SU_PASSWORD})
    check(st == 200, f"superuser login on {base}: {st} {body}")
    return body["token"]


def all_ids(base, collection):
    """Every record id of a collection (keyset pages through nextCursor, or
    page numbers when the answer has no cursor)."""
    h, ids, page = Http(base), [], 1
    while True:
        st, body = h.call("GET", f"/api/collections/{collection}/records?perPage=500&page={page}&sort=id")
        check(st == 200, f"list {collection}: {st} {body}")
        ids.extend(r["id"] for r in body["items"])
        if page >= int(body.get("totalPages") or 1):
            return ids
        page += 1


# --------------------------------------------------------------------------
# A minimal WebSocket client (RFC 6455: handshake, masked text frames out,
# unfragmented or fragmented frames in, ping answered), enough for Basalt's
# JSON protocol.


class Ws:
    def __init__(self, base, path="/api/realtime/ws", timeout=TIMEOUT):
        u = urllib.parse.urlsplit(base)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise OSError("closed during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise OSError(f"handshake refused: {status!r}")

    def _frame(self):
        """(fin, opcode, payload) of the first complete frame in the buffer,
        consumed; None while it is incomplete."""
        if len(self.buf) < 2:
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n, at = b1 & 0x7F, 2
        if n == 126:
            if len(self.buf) < 4:
                return None
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            if len(self.buf) < 10:
                return None
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        if len(self.buf) < at + n:
            return None
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return b0 & 0x80, b0 & 0x0F, payload

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send(self, obj):
        self._send(0x1, json.dumps(obj).encode())

    def recv(self, timeout=TIMEOUT):
        """The next JSON message, or None when none came within `timeout`
        seconds; raises OSError when the connection ends."""
        deadline = time.monotonic() + timeout
        message = b""
        while True:
            frame = self._frame()
            if frame is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return None
                if not chunk:
                    raise OSError("connection closed")
                self.buf += chunk
                continue
            fin, opcode, payload = frame
            if opcode == 0x8:
                raise OSError("closed by the server")
            if opcode == 0x9:
                self._send(0xA, payload)
            elif opcode in (0x0, 0x1, 0x2):
                message += payload
                if fin:
                    return json.loads(message)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# The cluster


class Cluster:
    def __init__(self, directory, bin_path):
        self.dir = directory
        self.env = dict(os.environ, BASALT_BIN=bin_path,
                        CLUSTER_SU_EMAIL=SU_EMAIL, CLUSTER_SU_PASSWORD=SU_PASSWORD)
        self.nodes = []

    def sh(self, *args, check_rc=True):
        r = subprocess.run([CLUSTER, args[0], self.dir, *args[1:]], env=self.env,
                           stdout=subprocess.PIPE, text=True)
        if check_rc and r.returncode != 0:
            raise Failed(f"scripts/cluster.sh {' '.join(args)} failed ({r.returncode}); logs in {self.dir}")
        return r.stdout.strip()

    def start(self):
        """Starts the cluster; once more on ports 50 higher when the first
        start fails: the ports lie in the ephemeral range, so an outgoing
        connection of another program can hold one of them."""
        base = int(self.env.get("CLUSTER_PORT", "56000"))
        for attempt, port in enumerate((base, base + 50)):
            self.env["CLUSTER_PORT"] = str(port)
            try:
                self.nodes = self.sh("start").split()
                break
            except Failed as e:
                self.stop()
                if attempt == 1:
                    raise
                log(f"{e}; again on ports from {port + 50}")
                for entry in os.listdir(self.dir):
                    subprocess.run(["rm", "-rf", os.path.join(self.dir, entry)])
        check(len(self.nodes) == 3, f"three nodes: {self.nodes}")

    def stop(self):
        self.sh("stop", check_rc=False)

    def restart_node(self, i):
        self.sh("node-kill", str(i))
        self.sh("node-start", str(i))

    def leader(self):
        name, port = self.sh("leader").split()
        return int(name[2:]), int(port)

    def wait_ready(self, seconds=180):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if subprocess.run([CLUSTER, "ready", self.dir], env=self.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return
            time.sleep(0.5)
        raise Failed(f"the PostgreSQL cluster did not get back three members and a sync standby in {seconds}s")


def create_collections(cluster):
    token = login(cluster.nodes[0])
    h = Http(cluster.nodes[0])
    open_rules = {"listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": ""}
    bodies = [
        {"name": "tickets", **open_rules,
         "indexes": [{"name": "by_code", "fields": ["code"], "unique": True}],
         "schema": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}},
        {"name": "writes", **open_rules,
         "indexes": [{"name": "by_key", "fields": ["key"], "unique": True}],
         "schema": {"type": "object", "properties": {"key": {"type": "string"}, "node": {"type": "integer"}},
                    "required": ["key"]}},
        {"name": "feed", **open_rules,
         "schema": {"type": "object", "properties": {"n": {"type": "integer"}, "node": {"type": "integer"}}}},
    ]
    for body in bodies:
        st, answer = h.call("POST", "/api/collections", body, token)
        check(st == 200, f"create collection {body['name']}: {st} {answer}")
    # Collection changes reach the other nodes' caches by themselves
    # (within 1 s, SPEC §12): wait until each serves them.
    for node in cluster.nodes[1:]:
        other = Http(node)
        deadline = time.monotonic() + 30
        for body in bodies:
            path = f"/api/collections/{body['name']}/records?perPage=1"
            while other.call("GET", path)[0] != 200:
                check(time.monotonic() < deadline, f"{node} never saw collection {body['name']}")
                time.sleep(0.05)


# --------------------------------------------------------------------------
# Tests


def test_unique(cluster):
    """Same unique value through nodes 1 and 2 at once: exactly one 200 and
    one 400 validation_not_unique, 20 times; both nodes count 20."""
    a, b = cluster.nodes[0], cluster.nodes[1]
    for round_ in range(20):
        code = f"code-{round_}-{random.randrange(1 << 30)}"
        results = [None, None]
        barrier = threading.Barrier(2)

        def post(slot, base):
            h = Http(base)
            h.call("GET", "/api/health")  # connect first, so the POSTs leave together
            barrier.wait()
            results[slot] = h.call("POST", "/api/collections/tickets/records", {"code": code})

        threads = [threading.Thread(target=post, args=(i, base)) for i, base in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = [r[0] for r in results]
        check(statuses.count(200) == 1, f"round {round_}: one winner expected, got {results}")
        loser = results[statuses.index(200) ^ 1]
        check(loser[0] == 400, f"round {round_}: the loser is a 400, got {loser}")
        field = ((loser[1] or {}).get("data") or {}).get("code") or {}
        check(field.get("code") == "validation_not_unique", f"round {round_}: {loser}")
    for base in (a, b):
        st, body = Http(base).call("GET", "/api/collections/tickets/records?perPage=1")
        check(st == 200 and body["totalItems"] == 20, f"{base} counts {body}")
    log("unique: 20 rounds, one winner each, both nodes count 20")


class Writers:
    """Threads creating records through every node until stopped; each
    remembers what was acknowledged (2xx) and when writes failed."""

    def __init__(self, nodes, per_node, collection, make_body):
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}  # id -> body
        self.events = []  # (monotonic time of the answer, node index, status)
        self.spans = []  # (monotonic time sent, time of the answer, node index, status)
        self.threads = []
        for ni, base in enumerate(nodes):
            for t in range(per_node):
                self.threads.append(threading.Thread(
                    target=self._run, args=(ni, t, base, collection, make_body), daemon=True))

    def _run(self, ni, t, base, collection, make_body):
        h = Http(base, timeout=20)
        i = 0
        while not self.stop_flag.is_set():
            body = make_body(ni, t, i)
            i += 1
            sent = time.monotonic()
            st, answer = h.call("POST", f"/api/collections/{collection}/records", body)
            now = time.monotonic()
            with self.lock:
                self.events.append((now, ni, st))
                self.spans.append((sent, now, ni, st))
                if 200 <= st < 300:
                    self.acked[answer["id"]] = body
            if not 200 <= st < 300:
                time.sleep(0.05)  # as a client honouring a short back-off

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=TIMEOUT + 5)
            check(not t.is_alive(), "a writer did not stop: a request hangs")

    def ok_since(self, t0, nodes):
        """Nodes that have had a 2xx write answered after t0."""
        with self.lock:
            return {ni for (t, ni, st) in self.events if t > t0 and 200 <= st < 300 and ni in nodes}


class Readers:
    """One thread per node reading a record acknowledged earlier, and one
    asking node 1's /api/health, until stopped: what reads and health
    checks answer during the failover (reported, not asserted)."""

    def __init__(self, nodes, writers):
        self.stop_flag = threading.Event()
        self.reads, self.health = {}, {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(b, writers), daemon=True) for b in nodes]
        self.threads.append(threading.Thread(target=self._health, args=(nodes[0],), daemon=True))

    def _count(self, into, st):
        with self.lock:
            into[st] = into.get(st, 0) + 1

    def _read(self, base, writers):
        h = Http(base, timeout=20)
        while not self.stop_flag.is_set():
            with writers.lock:
                some = next(iter(writers.acked), None)
            if some is None:
                time.sleep(0.05)
                continue
            st, _ = h.call("GET", f"/api/collections/writes/records/{some}")
            self._count(self.reads, st)
            time.sleep(0.02)

    def _health(self, base):
        h = Http(base, timeout=20)
        while not self.stop_flag.is_set():
            st, _ = h.call("GET", "/api/health")
            self._count(self.health, st)
            time.sleep(0.1)

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=TIMEOUT + 5)


def test_failover(cluster, report):
    nodes = cluster.nodes
    writers = Writers(nodes, 3, "writes",
                      lambda ni, t, i: {"key": f"n{ni}-t{t}-{i}-{random.randrange(1 << 40)}", "node": ni})
    writers.start()
    try:
        failover_with(cluster, writers, report)
    finally:
        writers.stop_flag.set()


def failover_with(cluster, writers, report):
    nodes = cluster.nodes
    # Writes going through all nodes before the kill.
    deadline = time.monotonic() + 60
    while len(writers.ok_since(0, {0, 1, 2})) < 3 or len(writers.acked) < 60:
        check(time.monotonic() < deadline, "writes did not start through all three nodes")
        time.sleep(0.1)
    readers = Readers(nodes, writers)
    readers.start()
    member, port = cluster.leader()
    log(f"failover: {len(writers.acked)} writes acknowledged; kill -9 the leader pg{member} (:{port}) and its Patroni")
    t_kill = time.monotonic()
    cluster.sh("pg-kill", str(member))
    # Writes resume by themselves: a 2xx through every node after the kill.
    deadline = t_kill + 180
    resumed_at = {}
    while len(resumed_at) < 3:
        check(time.monotonic() < deadline,
              f"writes did not resume on nodes {sorted({0, 1, 2} - set(resumed_at))} within 180 s of the kill")
        with writers.lock:
            # A node's first failure after the kill; it has resumed with the
            # first 2xx of a request sent after that (an answer to a request
            # committed before the kill can arrive just after it).
            first_fail = {}
            for (_, t, ni, st) in writers.spans:
                if t > t_kill and not 200 <= st < 300 and t < first_fail.get(ni, float("inf")):
                    first_fail[ni] = t
            # A node may also never fail: its writes wait out the failover
            # (a COMMIT whose answer was lost is looked up, not refused);
            # it has resumed with the first 2xx of a request sent after
            # the kill.
            for (sent, t, ni, st) in writers.spans:
                since = first_fail.get(ni, t_kill)
                if sent > since and 200 <= st < 300:
                    resumed_at[ni] = min(t, resumed_at.get(ni, t))
        time.sleep(0.2)
    # A little more writing on the new leader, then stop.
    t_more = time.monotonic()
    while len(writers.ok_since(t_more, {0, 1, 2})) < 3:
        check(time.monotonic() < deadline, "writes stopped again after the failover")
        time.sleep(0.1)
    writers.stop()
    readers.stop()
    new_member, _ = cluster.leader()

    with writers.lock:
        after = [(t, ni, st) for (t, ni, st) in writers.events if t > t_kill]
        failed = [(t, ni, st) for (t, ni, st) in after if not 200 <= st < 300]
        statuses = {}
        for (_, _, st) in writers.events:
            statuses[st] = statuses.get(st, 0) + 1
    bad = {st: n for st, n in statuses.items() if st not in (0, 200, 503)}
    check(not bad, f"only 200, 503 or no answer expected during a failover, got {statuses}")
    window = (max(t for t, _, _ in failed) - min(t for t, _, _ in failed)) if failed else 0.0
    resume = max(resumed_at.values()) - t_kill if resumed_at else 0.0

    # Every acknowledged write is there, read through every node.
    acked = writers.acked
    log(f"failover: checking {len(acked)} acknowledged writes on the new leader pg{new_member}")
    for base in nodes:
        present = set(all_ids(base, "writes"))
        missing = [i for i in acked if i not in present]
        check(not missing, f"{len(missing)} acknowledged writes missing on {base}: {missing[:5]}")
    h = Http(nodes[2])
    for rid, body in random.sample(sorted(acked.items()), min(50, len(acked))):
        st, rec = h.call("GET", f"/api/collections/writes/records/{rid}")
        check(st == 200 and rec["key"] == body["key"], f"record {rid}: {st} {rec}")

    figures = {
        "acknowledged": len(acked),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "failed_after_kill": len(failed),
        "first_to_last_failure_s": round(window, 2),
        "kill_to_all_nodes_writing_s": round(resume, 2),
        "kill_to_resume_per_node_s": {f"node{ni + 1}": round(t - t_kill, 2) for ni, t in sorted(resumed_at.items())},
        "reads_during": {str(k): v for k, v in sorted(readers.reads.items())},
        "health_during": {str(k): v for k, v in sorted(readers.health.items())},
        "old_leader": f"pg{member}",
        "new_leader": f"pg{new_member}",
    }
    report["failover"] = figures
    log(f"failover: {json.dumps(figures)}")

    # Bring the dead member back (pg_rewind, as a replica) for what follows.
    cluster.sh("pg-start", str(member))
    t0 = time.monotonic()
    cluster.wait_ready()
    log(f"failover: pg{member} rejoined as a replica in {time.monotonic() - t0:.1f}s")


def test_realtime(cluster, report):
    """A client on node 3 follows `feed/*` while nodes 1 and 2 write; node 3
    is killed; the client reconnects to node 1 with `since` = the last seq
    it saw. In the end it has seen every record of `feed` exactly once, in
    increasing seq order."""
    nodes = cluster.nodes
    seen = []  # (seq, record id)
    ws = Ws(nodes[2])
    welcome = ws.recv()
    check(welcome.get("type") == "welcome", f"welcome: {welcome}")
    ws.send({"type": "subscribe", "id": "f", "topic": "feed/*", "since": welcome["seq"]})

    def follow(conn, until, idle=TIMEOUT):
        """Read events until until() holds (True), the connection ends or no
        event came for `idle` seconds (False)."""
        while not until():
            try:
                msg = conn.recv(idle)
            except (OSError, ValueError):
                return False
            if msg is None:
                return False
            if msg.get("type") == "event":
                seen.append((msg["seq"], msg["record"]["id"]))
            elif msg.get("type") in ("resync", "error"):
                raise Failed(f"unexpected {msg}")
        return True

    writers = Writers(nodes[:2], 2, "feed", lambda ni, t, i: {"n": i, "node": ni})
    writers.start()
    try:
        realtime_with(cluster, writers, ws, welcome, seen, follow, report)
    finally:
        writers.stop_flag.set()


def realtime_with(cluster, writers, ws, welcome, seen, follow, report):
    nodes = cluster.nodes
    follow(ws, lambda: len(seen) >= 100)
    check(len(seen) >= 100, f"node 3 delivered {len(seen)} events of writes made through nodes 1 and 2 "
                            f"(none for {TIMEOUT} s): are events of other nodes' commits published?")
    log(f"realtime: {len(seen)} events on node 3 from writes through nodes 1 and 2; kill -9 node 3")
    cluster.sh("node-kill", "3")
    follow(ws, lambda: False)  # drains what arrived, ends with the connection
    ws.close()
    last = seen[-1][0] if seen else welcome["seq"]
    ws = Ws(nodes[0])
    ws.recv()
    ws.send({"type": "subscribe", "id": "f", "topic": "feed/*", "since": last})
    n_before = len(seen)
    follow(ws, lambda: len(seen) >= n_before + 100)
    writers.stop()
    want = set(all_ids(nodes[0], "feed"))
    follow(ws, lambda: {rid for _, rid in seen} >= want)
    ws.close()
    seqs = [s for s, _ in seen]
    ids = [rid for _, rid in seen]
    check(seqs == sorted(set(seqs)), "events in increasing seq order without duplicates")
    check(len(ids) == len(set(ids)), "no record twice")
    check(set(ids) == want, f"every record of feed once: {len(want - set(ids))} missing")
    report["realtime"] = {"events": len(seen), "before_reconnect": n_before, "records": len(want),
                          "seqs_consecutive": seqs == list(range(seqs[0], seqs[0] + len(seqs)))}
    log(f"realtime: {len(seen)} events, none missing, none twice, across the node's death")
    cluster.sh("node-start", "3")


TESTS = ["unique", "failover", "realtime"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/basalt-target")
    ap.add_argument("--bin", default=os.environ.get("BASALT_BIN", f"{target}/debug/basalt"))
    ap.add_argument("--keep", help="cluster dir to keep (logs) instead of a temp dir removed at the end")
    ap.add_argument("--report", help="write the measured figures (JSON) here")
    ap.add_argument("tests", nargs="*", default=TESTS)
    args = ap.parse_args()
    unknown = set(args.tests) - set(TESTS)
    if unknown:
        sys.exit(f"unknown tests {sorted(unknown)}; known: {TESTS}")
    directory = args.keep or tempfile.mkdtemp(prefix="basalt-cluster.")
    os.makedirs(directory, exist_ok=True)
    cluster = Cluster(directory, args.bin)
    # A TERM (CI cancelling) unwinds through the `finally` that stops the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report, failures, finished = {}, [], False
    try:
        log(f"starting the cluster in {directory}")
        cluster.start()
        log(f"nodes: {cluster.nodes}")
        create_collections(cluster)
        for name in TESTS:
            if name not in args.tests:
                continue
            log(f"{name}: running")
            try:
                if name == "unique":
                    test_unique(cluster)
                else:
                    globals()[f"test_{name}"](cluster, report)
                log(f"{name}: PASSED")
            except Exception as e:  # noqa: BLE001 — every failure is reported, the run goes on
                failures.append(name)
                traceback.print_exc()
                log(f"{name}: FAILED: {e}")
        finished = True
    finally:
        cluster.stop()
        if args.keep or failures or not finished:
            log(f"logs kept in {directory}")
        else:
            subprocess.run(["rm", "-rf", directory])
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
    log(f"figures: {json.dumps(report)}")
    if failures:
        log(f"FAILED: {failures}")
        return 1
    log("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
