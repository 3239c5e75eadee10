#!/usr/bin/env python3
"""Instructions per request, counted by valgrind's callgrind.

Wall-clock benchmarks (bench/run.sh) need a quiet machine; instruction
counts do not: callgrind counts the same instructions for the same binary
and requests whatever else the machine is doing. This measures what a
change on a hot path costs per request, before/after, by running each
binary given on the same data set and the same request sequence:

    python3 bench/callgrind.py OLD_BINARY NEW_BINARY [...]

Per binary: a temp data dir with a superuser, the `posts` collection of
bench/run.sh (with its `by_views` index) and CG_RECORDS records (created by
the binary itself, outside valgrind), then the server under callgrind and,
per workload, CG_WARMUP uncounted requests, counters zeroed, CG_REQUESTS
counted requests on one keep-alive connection, a dump. The figure is the
dump's total instructions (every thread: workers, writer, flusher) divided
by the requests. CG_KEEP=DIR keeps the dumps (for callgrind_annotate).
Workloads (CG_WORKLOADS): get-by-id, list, query-count
(the counted filter of bench/run.sh), create.
"""
import glob
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

RECORDS = int(os.environ.get("CG_RECORDS", "5000"))
REQUESTS = int(os.environ.get("CG_REQUESTS", "400"))
WARMUP = int(os.environ.get("CG_WARMUP", "50"))
WORKLOADS = os.environ.get("CG_WORKLOADS", "get-by-id list query-count create").split()
EMAIL, PASSWORD = "bench@example.com", "bench-password-1"

COLLECTION = {
    "name": "posts", "type": "base", "listRule": "", "viewRule": "", "createRule": "",
    "updateRule": "", "deleteRule": "",
    "indexes": [{"name": "by_views", "fields": ["views", "-created"]}],
    "schema": {
        "type": "object",
        "properties": {"title": {"type": "string"}, "views": {"type": "integer", "minimum": 0},
                       "body": {"type": "string"}},
        "required": ["title"], "additionalProperties": False,
    },
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port, token=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.token = token

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = self.token
        data = json.dumps(body) if body is not None else None
        self.conn.request(method, path, body=data, headers=headers)
        res = self.conn.getresponse()
        raw = res.read()
        if res.status >= 300:
            raise RuntimeError(f"{method} {path} -> {res.status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None


def wait_healthy(port, proc, limit=300):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start")
        try:
            Client(port).call("GET", "/api/health")
            return
        except (OSError, RuntimeError, http.client.HTTPException):
            time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)


def prepare(binary, data):
    """Data dir with the collection and RECORDS records; returns their ids."""
    subprocess.run([binary, "superuser", "upsert", EMAIL, PASSWORD, "--dir", data],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--http", f"127.0.0.1:{port}", "--dir", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc)
        token = Client(port).call("POST", "/api/collections/_superusers/auth-with-password",
                                  {"identity": EMAIL, "password": PASSWORD})["token"]
        admin = Client(port, token)
        admin.call("POST", "/api/collections", COLLECTION)
        rng = random.Random(7)
        ids = [admin.call("POST", "/api/collections/posts/records",
                          {"title": f"post {i}", "views": rng.randrange(100), "body": "x" * 200})["id"]
               for i in range(RECORDS)]
        while any(b.get("state") != "ready"
                  for b in admin.call("GET", "/api/collections/posts").get("indexStatus", {}).values()):
            time.sleep(0.1)
        return ids
    finally:
        stop(proc)


def requests_for(workload, ids, n):
    rng = random.Random(11)
    base = "/api/collections/posts/records"
    if workload == "get-by-id":
        return [("GET", f"{base}/{rng.choice(ids)}", None) for _ in range(n)]
    if workload == "list":
        return [("GET", f"{base}?page=1&perPage=30", None)] * n
    if workload == "query-count":
        return [("GET", f"{base}?filter=views%3D42&sort=-created&perPage=30", None)] * n
    if workload == "create":
        return [("POST", base, {"title": f"new {i}", "views": i % 100, "body": "y" * 200}) for i in range(n)]
    raise SystemExit(f"unknown workload {workload}")


def dump_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def measure(binary):
    work = tempfile.mkdtemp(prefix="basalt-cg-")
    data = os.path.join(work, "data")
    try:
        ids = prepare(binary, data)
        port = free_port()
        out = os.path.join(work, "cg.out")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve",
             "--http", f"127.0.0.1:{port}", "--dir", data, "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        figures = {}
        try:
            wait_healthy(port, proc)
            client = Client(port)
            for workload in WORKLOADS:
                for m, p, b in requests_for(workload, ids, WARMUP):
                    client.call(m, p, b)
                subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
                for m, p, b in requests_for(workload, ids, REQUESTS):
                    client.call(m, p, b)
                before = set(glob.glob(out + "*"))
                subprocess.run(["callgrind_control", "-d", workload, str(proc.pid)], check=True,
                               capture_output=True)
                new = sorted(set(glob.glob(out + "*")) - before, key=os.path.getmtime)
                figures[workload] = dump_total(new[-1]) / REQUESTS
        finally:
            stop(proc)
        return figures
    finally:
        keep = os.environ.get("CG_KEEP")
        if keep:  # the dumps, for callgrind_annotate, one dir per binary
            dest = os.path.join(keep, os.path.basename(binary))
            os.makedirs(dest, exist_ok=True)
            for f in glob.glob(os.path.join(work, "cg.out*")):
                shutil.copy(f, dest)
        shutil.rmtree(work, ignore_errors=True)


def main():
    bins = sys.argv[1:]
    if not bins:
        raise SystemExit(__doc__)
    results = {b: measure(b) for b in bins}
    print(f"instructions per request (callgrind; {RECORDS} records, {REQUESTS} requests after {WARMUP} warm-up)")
    print("workload".ljust(14) + "".join(os.path.basename(os.path.dirname(os.path.dirname(b)))[:24].rjust(26)
                                        for b in bins) + ("   change" if len(bins) == 2 else ""))
    for w in WORKLOADS:
        row = w.ljust(14) + "".join(f"{results[b][w]:>26,.0f}" for b in bins)
        if len(bins) == 2:
            a, c = results[bins[0]][w], results[bins[1]][w]
            row += f"   {100 * (c - a) / a:+.1f}%"
        print(row)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
