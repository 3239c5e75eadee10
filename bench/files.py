#!/usr/bin/env python3
"""Files: Basalt vs PocketBase, the same workloads against each, one server
at a time, on one machine (issue 15's measurements):

  upload      POST a record with one 100 KB image (multipart), wrk: req/s, p99
  original    GET that image, wrk: req/s, p99
  thumb-first the first GET of ?thumb=100x100 of fresh images, one at a time:
              median and p90 latency (the thumbnail is made on this request)
  thumb       GET one cached thumbnail, wrk: req/s, p99
  rss-64x10mb 64 concurrent uploads of 10 MB each: the server's peak RSS
              (VmHWM) before and after, and how many succeeded

Usage: bench/files.py [--basalt BIN] [--pocketbase BIN] [--duration 10s]
       [--connections 64] [--out FILE.md]
A missing --pocketbase binary falls back to the cache bench/setup.sh fills
(/var/tmp/basalt-bench/pocketbase-0.40.6/pocketbase); SKIP_POCKETBASE=1
skips it. Needs wrk on PATH.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

EMAIL, PASSWORD = "bench@example.com", "bench-password-123"
BOUNDARY = "----basaltBenchBoundary"
COLLECTION = {
    "name": "photos",
    "type": "base",
    "listRule": "",
    "viewRule": "",
    "createRule": "",
    "updateRule": "",
    "deleteRule": "",
    "fields": [
        {"name": "title", "type": "text"},
        {"name": "image", "type": "file", "maxSelect": 1, "maxSize": 20_000_000, "thumbs": ["100x100"]},
        {
            "name": "created",
            "type": "autodate",
            "onCreate": True,
        },
    ],
}


def png(width, height, seed=1):
    """A noisy RGB PNG (noise keeps it near width*height*3 bytes)."""
    rnd = random.Random(seed)
    raw = b"".join(b"\x00" + rnd.randbytes(width * 3) for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


def form(title, filename, content):
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\n{title}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{BOUNDARY}--\r\n".encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None, token=None, content_type="application/json", timeout=120):
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, kind, binary, work):
        self.kind, self.binary = kind, binary
        self.dir = os.path.join(work, kind)
        os.makedirs(self.dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = os.path.join(self.dir, "data")
        upsert = [binary, "superuser", "upsert", EMAIL, PASSWORD, "--dir", data]
        subprocess.run(upsert, check=True, capture_output=True)
        cmd = [binary, "serve", "--http", f"127.0.0.1:{self.port}", "--dir", data]
        if kind == "pocketbase":
            cmd += ["--automigrate=false", "--migrationsDir", os.path.join(data, "migrations")]
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if call("GET", self.url + "/api/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise SystemExit(f"{kind} did not start")
        status, body = call(
            "POST",
            self.url + "/api/collections/_superusers/auth-with-password",
            json.dumps({"identity": EMAIL, "password": PASSWORD}).encode(),
        )
        self.token = json.loads(body)["token"]
        call("PATCH", self.url + "/api/settings", json.dumps({"rateLimits": {"enabled": False}}).encode(), self.token)
        status, body = call("POST", self.url + "/api/collections", json.dumps(COLLECTION).encode(), self.token)
        assert status == 200, body

    def kb(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def upload(self, title, content, timeout=300):
        status, body = call(
            "POST",
            self.url + "/api/collections/photos/records",
            form(title, "photo.png", content),
            content_type=f"multipart/form-data; boundary={BOUNDARY}",
            timeout=timeout,
        )
        return status, (json.loads(body) if status == 200 else body)

    def file_url(self, rec, thumb=None):
        url = f"{self.url}/api/files/{rec['collectionId']}/{rec['id']}/{rec['image']}"
        return url + (f"?thumb={thumb}" if thumb else "")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def wrk(url, args, lua=None):
    cmd = ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}", "--latency", "--timeout", "10s"]
    if lua:
        cmd += ["-s", lua]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    p99 = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("99%"))
    non2xx = next((int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line), 0)
    errors = next((line.strip() for line in out.splitlines() if "Socket errors" in line), "")
    return {"rps": rps, "p99": p99, "non2xx": non2xx, "errors": errors}


def upload_lua(work, body):
    path = os.path.join(work, "upload.body")
    with open(path, "wb") as f:
        f.write(body)
    lua = os.path.join(work, "upload.lua")
    with open(lua, "w") as f:
        f.write(
            f'local f = io.open("{path}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n'
        )
    return lua


def bench(kind, binary, args, image, work):
    s = Server(kind, binary, work)
    out = {"server": kind}
    try:
        out["upload"] = wrk(s.url + "/api/collections/photos/records", args, upload_lua(work, form("bench", "photo.png", image)))
        status, rec = s.upload("one", image)
        assert status == 200, rec
        out["original"] = wrk(s.file_url(rec), args)
        firsts = []
        for i in range(20):
            status, fresh = s.upload(f"thumb {i}", png(400, 300, seed=100 + i))
            assert status == 200, fresh
            t = time.perf_counter()
            status, _ = call("GET", s.file_url(fresh, "100x100"))
            firsts.append((time.perf_counter() - t) * 1000)
            assert status == 200
        out["thumb_first_ms"] = {"median": statistics.median(firsts), "p90": sorted(firsts)[17], "n": len(firsts)}
        call("GET", s.file_url(rec, "100x100"))
        out["thumb"] = wrk(s.file_url(rec, "100x100"), args)
        big = os.urandom(10 * 1024 * 1024)
        before = s.kb("VmHWM")
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            results = list(pool.map(lambda i: s.upload(f"big {i}", big)[0], range(64)))
        out["rss"] = {
            "hwm_before_kb": before,
            "hwm_after_kb": s.kb("VmHWM"),
            "rss_after_kb": s.kb("VmRSS"),
            "ok": sum(1 for r in results if r == 200),
            "statuses": sorted(set(results)),
        }
    finally:
        s.stop()
    return out


def report(results, args, image):
    lines = [
        f"# Files: Basalt vs PocketBase ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}.",
        f"Command: `{' '.join(sys.argv)}`; wrk -t2 -c{args.connections} -d{args.duration}; "
        f"upload image {len(image)} bytes (noise PNG 200x170); thumbnails of 400x300 noise PNGs.",
        "",
        "| workload | " + " | ".join(r["server"] for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]

    def row(label, f):
        lines.append(f"| {label} | " + " | ".join(f(r) for r in results) + " |")

    for key, label in [("upload", "upload 100 KB image"), ("original", "serve the original"), ("thumb", "cached thumbnail")]:
        row(f"{label}: req/s", lambda r, k=key: f"{r[k]['rps']:.0f}")
        row(f"{label}: p99", lambda r, k=key: r[k]["p99"])
        row(f"{label}: non-2xx / socket errors", lambda r, k=key: f"{r[k]['non2xx']} {r[k]['errors']}".strip())
    row("first thumbnail: median ms", lambda r: f"{r['thumb_first_ms']['median']:.1f}")
    row("first thumbnail: p90 ms", lambda r: f"{r['thumb_first_ms']['p90']:.1f}")
    row("64 x 10 MB uploads: ok", lambda r: f"{r['rss']['ok']}/64 {r['rss']['statuses']}")
    row("peak RSS before (MiB)", lambda r: f"{r['rss']['hwm_before_kb'] / 1024:.0f}")
    row("peak RSS after 64 x 10 MB (MiB)", lambda r: f"{r['rss']['hwm_after_kb'] / 1024:.0f}")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/basalt-target")
    p.add_argument("--basalt", default=os.environ.get("BASALT_BIN", f"{target}/release/basalt"))
    p.add_argument(
        "--pocketbase",
        default=os.environ.get("PB_BIN", "/var/tmp/basalt-bench/pocketbase-0.40.6/pocketbase"),
    )
    p.add_argument("--duration", default="10s")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--out")
    args = p.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt install wrk)")
    image = png(200, 170)
    work = tempfile.mkdtemp(prefix="basalt-files-bench.")
    results = []
    if os.environ.get("SKIP_BASALT") != "1":
        results.append(bench("basalt", args.basalt, args, image, work))
    if os.environ.get("SKIP_POCKETBASE") != "1":
        results.append(bench("pocketbase", args.pocketbase, args, image, work))
    text = report(results, args, image)
    print(text)
    print(json.dumps(results, indent=1), file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
