#!/usr/bin/env python3
"""Disk use under the storage attacks of Security II (items 3 and 7).

Starts a Basalt binary on a fresh data dir, then
1. change log: one ~SIZE-byte record PATCHed WRITES times from THREADS
   concurrent clients (every write a different text);
2. request log: REQUESTS GETs of 404 paths PATH_LEN bytes long, four at a
   time;
and reports the data dir's size (apparent bytes of every file, and the part
in sled's blob files) before, during (the largest seen) and after each.

    bench/storage_attack.py --bin /path/to/basalt [--writes 1000] [--size 204800]
        [--threads 3] [--requests 20000] [--path-len 8192] [--settings JSON]

Only 127.0.0.1; every loop is bounded by its count.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

EMAIL, PASSWORD = "bench@example.com", "bench-password-1"


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def mib(n):
    return f"{n / 1048576:.1f} MiB"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port, token=None):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None):
        headers = {}
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = self.token
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, (json.loads(data) if data else None)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise


def text(n, size):
    head = f"v{n:07}-"
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return head + "".join(alphabet[(i * 7 + n) % 26] for i in range(size - len(head)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--size", type=int, default=200 * 1024)
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--path-len", type=int, default=8192)
    ap.add_argument("--settings", default="")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="basalt-storage-")
    data = os.path.join(work, "data")
    port = free_port()
    subprocess.run([args.bin, "superuser", "upsert", EMAIL, PASSWORD, "--dir", data],
                   check=True, capture_output=True)
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen([args.bin, "serve", "--http", f"127.0.0.1:{port}", "--dir", data],
                              stdout=log, stderr=log)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if Client(port).call("GET", "/api/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("server did not start")
            time.sleep(0.1)
        su = Client(port)
        st, body = su.call("POST", "/api/collections/_superusers/auth-with-password",
                           {"identity": EMAIL, "password": PASSWORD})
        assert st == 200, body
        su.token = body["token"]
        if args.settings:
            st, body = su.call("PATCH", "/api/settings", json.loads(args.settings))
            assert st == 200, body
        st, body = su.call("POST", "/api/collections", {
            "name": "docs", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
            "schema": {"type": "object", "properties": {"text": {"type": "string"}}}})
        assert st == 200, body
        st, rec = Client(port).call("POST", "/api/collections/docs/records", {"text": text(0, args.size)})
        assert st == 200, rec
        print(f"binary: {args.bin}\nsettings: {args.settings or 'defaults'}\n")

        # 1. The change log.
        before = dir_bytes(data)
        highest = [before]
        counter = iter(range(1, args.writes + 1))
        lock = threading.Lock()
        errors = []

        def patcher():
            c = Client(port)
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                st, body = c.call("PATCH", f"/api/collections/docs/records/{rec['id']}", {"text": text(n, args.size)})
                if st != 200:
                    errors.append((st, body))
                    return
                if n % 20 == 0:
                    size = dir_bytes(data)
                    with lock:
                        highest[0] = max(highest[0], size)

        start = time.time()
        threads = [threading.Thread(target=patcher) for _ in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - start
        after = dir_bytes(data)
        blobs = dir_bytes(os.path.join(data, "db", "blobs"))
        written = args.writes * args.size
        print(f"change log: {args.writes} PATCHes of {args.size // 1024} KiB from {args.threads} clients "
              f"({mib(written)} written, {took:.1f} s{', errors: ' + str(errors[:1]) if errors else ''})")
        print(f"  data dir {mib(before)} -> {mib(after)} (largest seen {mib(max(highest[0], after))}; "
              f"{mib(blobs)} in blob files)")

        # 2. The request log.
        before = dir_bytes(data)
        highest = [before]
        counter = iter(range(args.requests))
        tail = "a" * args.path_len

        def spammer():
            c = Client(port)
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                c.call("GET", f"/api/nope/{n}-{tail}")
                if n % 1000 == 0:
                    size = dir_bytes(data)
                    with lock:
                        highest[0] = max(highest[0], size)

        start = time.time()
        threads = [threading.Thread(target=spammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - start
        time.sleep(1)  # the log's drain thread writes every 10 ms; give it a moment
        after = dir_bytes(data)
        blobs = dir_bytes(os.path.join(data, "db", "blobs"))
        st, logs = su.call("GET", "/api/logs?perPage=1")
        stored = len(logs["items"][0]["data"]["url"].encode()) if st == 200 and logs["items"] else "?"
        print(f"request log: {args.requests} 404s with {args.path_len}-byte paths ({took:.1f} s); "
              f"{logs.get('totalItems', '?') if st == 200 else '?'} entries kept, stored path {stored} bytes")
        print(f"  data dir {mib(before)} -> {mib(after)} (largest seen {mib(max(highest[0], after))}; "
              f"{mib(blobs)} in blob files)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
