#!/usr/bin/env python3
"""First-thumbnail latency in three machine states, for one server binary.

bench/files.py measures the first thumbnail right after its wrk phases
(~20,000 uploads at 64 connections); this script separates what the
thumbnail costs from the state those phases leave behind: 15 uploads each
followed at once by the first GET of `?thumb=100x100` (median and the 13th
of 15 in ms), on a fresh server, right after one 10 s wrk upload phase, and
again after 20 s idle. Uses bench/files.py's server and data setup.

    python3 bench/thumb_first.py BINARY   # Basalt or PocketBase (by name)
"""
import os
import statistics
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import files as F  # noqa: E402


def firsts(server, tag, seed):
    took = []
    for i in range(15):
        status, rec = server.upload(f"t{i}", F.png(400, 300, seed=seed + i))
        assert status == 200, rec
        t = time.perf_counter()
        status, _ = F.call("GET", server.file_url(rec, "100x100"))
        took.append((time.perf_counter() - t) * 1000)
        assert status == 200
    took.sort()
    print(f"{tag:28} median {statistics.median(took):6.2f} ms   13th of 15 {took[12]:6.2f} ms", flush=True)


def main():
    binary = sys.argv[1]
    kind = "pocketbase" if "pocketbase" in os.path.basename(binary) else "basalt"
    work = tempfile.mkdtemp(prefix="basalt-thumb-first.")
    server = F.Server(kind, binary, work)
    try:
        time.sleep(5)  # let start-up work (sweeps, log setup) finish: not what is measured
        firsts(server, f"{kind}: fresh server", 1000)
        args = types.SimpleNamespace(connections=64, duration="10s")
        lua = F.upload_lua(work, F.form("bench", "photo.png", F.png(200, 170)))
        print(f"{kind}: wrk uploads", F.wrk(server.url + "/api/collections/photos/records", args, lua), flush=True)
        firsts(server, f"{kind}: right after wrk", 2000)
        time.sleep(20)
        firsts(server, f"{kind}: after 20 s idle", 3000)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
