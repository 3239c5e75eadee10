#!/usr/bin/env python3
"""Before/after of Basalt binaries on the file hot paths, Basalt only.

For each round and each binary: a fresh server, a 10 s wrk phase of 100 KB
image uploads (64 connections), then 10 s of GETs of one original; prints
req/s and p99 of both. Rounds alternate the binaries so drift on a shared
machine hits both. Uses bench/files.py's server and data setup.

    python3 bench/files_ab.py OLD_BINARY NEW_BINARY [ROUNDS]
"""
import os
import shutil
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import files as F  # noqa: E402


def main():
    binaries = sys.argv[1:3]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    args = types.SimpleNamespace(connections=64, duration="10s")
    for _ in range(rounds):
        for binary in binaries:
            work = tempfile.mkdtemp(prefix="basalt-ab.")
            server = F.Server("basalt", binary, work)
            try:
                time.sleep(2)  # start-up work is not what is measured
                lua = F.upload_lua(work, F.form("bench", "photo.png", F.png(200, 170)))
                up = F.wrk(server.url + "/api/collections/photos/records", args, lua)
                status, rec = server.upload("one", F.png(200, 170))
                assert status == 200, rec
                orig = F.wrk(server.file_url(rec), args)
                print(f"{binary}: upload {up['rps']} req/s p99 {up['p99']}; "
                      f"original {orig['rps']} req/s p99 {orig['p99']}", flush=True)
            finally:
                server.stop()
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
