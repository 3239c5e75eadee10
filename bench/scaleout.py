#!/usr/bin/env python3
"""Scale-out (issue 17): the same workloads on three setups, one after the
other, on one machine:

  sled   one Basalt node on its embedded store (the default);
  pg-1   one Basalt node on PostgreSQL 15 (scripts/pg.sh, fsync on);
  pg-3   three Basalt nodes on that same PostgreSQL (another database),
         the load split evenly over the nodes (one wrk per node).

Workloads (wrk, the bench/*.lua scripts), 64 connections in all:

  create      POST a record (create.lua), timed
  get-by-id   GET one of 1,000 ids (get.lua), after a warm-up
  list-count  GET ?filter=views%3D42&sort=-created&perPage=30 with the
              total count (an index on views,-created), after a warm-up

Around each timed run the CPU time (utime + stime from /proc/<pid>/stat)
of the Basalt processes and of PostgreSQL (the postmaster, every backend,
and backends reaped meanwhile through the postmaster's cutime + cstime) is
read, so each request's CPU cost is split between Basalt and PostgreSQL.
From it the report states how throughput would grow with nodes on bigger
machines (the PostgreSQL machine being the limit).

Usage: bench/scaleout.py [--basalt BIN] [--records 20000] [--duration 10s]
       [--connections 64] [--port 56041] [--workers N] [--setups sled,pg-1,pg-3]
       [--out FILE.md]
BIN defaults to $CARGO_TARGET_DIR/release/basalt (build it with
`CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked`).
Needs wrk and PostgreSQL 15 (/usr/lib/postgresql/15/bin; as root it runs as
the `postgres` user). Every process it starts is stopped at the end.
"""

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.parse

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
import benchlib  # noqa: E402  (bench/benchlib.py: HTTP helpers, bulk load, ids)

EMAIL, PASSWORD = "bench@example.com", "bench-password-123"
COLLECTION = {
    "name": "posts", "type": "base",
    "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
    "indexes": [{"name": "by_views", "fields": ["views", "-created"]}],
    "schema": {"type": "object",
               "properties": {"title": {"type": "string"}, "views": {"type": "integer", "minimum": 0},
                              "body": {"type": "string"}},
               "required": ["title"], "additionalProperties": False},
}
LIST_QUERY = "?filter=views%3D42&sort=-created&perPage=30"
HZ = os.sysconf("SC_CLK_TCK")
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def log(msg):
    print(f"[scaleout {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# CPU time from /proc


def _stat(pid):
    """Fields after the command name of /proc/PID/stat (index 0 = state)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def basalt_ticks(pids):
    total = 0
    for pid in pids:
        s = _stat(pid)
        total += int(s[11]) + int(s[12])
    return total


def postgres_ticks(postmaster):
    """utime + stime of the postmaster and its live children, plus the
    children it has reaped (cutime + cstime)."""
    if postmaster is None:
        return 0
    s = _stat(postmaster)
    total = sum(int(x) for x in s[11:15])
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            c = _stat(entry)
        except OSError:
            continue  # gone meanwhile: counted in cutime once reaped
        if c[1] == str(postmaster):
            total += int(c[11]) + int(c[12])
    return total


def wait_idle(setup, max_s=30):
    """Until Basalt and PostgreSQL together use under 10 % of a core over
    0.3 s (requests a previous run left in flight are done)."""
    start = time.monotonic()
    while time.monotonic() - start < max_s:
        a = basalt_ticks(setup.pids) + postgres_ticks(setup.postmaster)
        time.sleep(0.3)
        b = basalt_ticks(setup.pids) + postgres_ticks(setup.postmaster)
        if (b - a) / HZ < 0.03:
            return
    log(f"WARNING: {setup.name} still busy after {max_s}s; measuring anyway")


# --------------------------------------------------------------------------
# Setups


class Setup:
    def __init__(self, name, bin_path, work, store, ports):
        self.name, self.bin, self.work, self.store, self.ports = name, bin_path, work, store, ports
        self.procs, self.postmaster, self.workers = [], None, 0

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    @property
    def bases(self):
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def _cmd(self, i, *args):
        cmd = [self.bin, *args, "--dir", os.path.join(self.work, f"{self.name}-node{i}")]
        if self.store:
            cmd += ["--store", self.store]
        return cmd

    def start_node(self, i):
        """Starts node i on its port; when that port is taken (the ports
        lie in the ephemeral range: an outgoing connection may hold one),
        on another (odd) one."""
        for _ in range(10):
            logf = open(os.path.join(self.work, f"{self.name}-node{i}.log"), "ab")
            extra = ["--workers", str(self.workers)] if self.workers else []
            p = subprocess.Popen(self._cmd(i, "serve", "--http", f"127.0.0.1:{self.ports[i]}", *extra),
                                 stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self.procs.append(p)
            deadline = time.monotonic() + 60
            while p.poll() is None and time.monotonic() < deadline:
                try:
                    if benchlib._request("GET", self.bases[i] + "/api/health")[0] == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.2)
            self.procs.remove(p)
            if p.poll() is None:
                p.kill()
                p.wait()
                break
            log(f"{self.name} node {i}: port {self.ports[i]} taken? trying {self.ports[i] + 20}")
            self.ports[i] += 20
        raise SystemExit(f"{self.name} node {i} did not start (log in {self.work})")

    def start(self):
        """Superuser, node 0, the collection, then the other nodes (they load
        collections at start)."""
        subprocess.run(self._cmd(0, "superuser", "upsert", EMAIL, PASSWORD), check=True,
                       stdout=subprocess.DEVNULL)
        self.start_node(0)
        token = benchlib._request("POST", self.bases[0] + "/api/collections/_superusers/auth-with-password",
                                  {"identity": EMAIL, "password": PASSWORD})
        token = json.loads(token[1])["token"]
        st, text = benchlib._request("POST", self.bases[0] + "/api/collections", COLLECTION, token)
        if st != 200:
            raise SystemExit(f"{self.name}: create collection: {st} {text[:300]}")
        for i in range(1, len(self.ports)):
            self.start_node(i)

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


# --------------------------------------------------------------------------
# wrk


def wrk(setup, workload, lua, path, connections, duration, env=None, warmup=None):
    """One timed run: one wrk per node (1 thread; the connections split over
    the nodes), the CPU time of Basalt and PostgreSQL around it. Returns the
    result row."""
    if warmup:
        _wrk_all(setup, lua, path, connections, warmup, env)
    wait_idle(setup)
    b0, p0, t0 = basalt_ticks(setup.pids), postgres_ticks(setup.postmaster), time.monotonic()
    results = _wrk_all(setup, lua, path, connections, duration, env)
    b1, p1, t1 = basalt_ticks(setup.pids), postgres_ticks(setup.postmaster), time.monotonic()
    requests = sum(r["requests"] for r in results)
    row = {
        "setup": setup.name, "workload": workload, "nodes": len(setup.ports),
        "requests": requests,
        "rps": round(sum(r["rps"] for r in results), 1),
        # Per-node percentiles: the worst node's.
        "p50_us": max(r["p50_us"] for r in results),
        "p99_us": max(r["p99_us"] for r in results),
        "non2xx": sum(r["non2xx"] for r in results),
        "errors": sum(r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"] for r in results),
        "wall_s": round(t1 - t0, 2),
        "basalt_cpu_s": round((b1 - b0) / HZ, 2),
        "postgres_cpu_s": round((p1 - p0) / HZ, 2),
    }
    if requests:
        row["basalt_us_per_req"] = round((b1 - b0) / HZ / requests * 1e6, 1)
        row["postgres_us_per_req"] = round((p1 - p0) / HZ / requests * 1e6, 1)
    log(f"{setup.name}/{workload}: {json.dumps(row)}")
    return row


def _wrk_all(setup, lua, path, connections, duration, env):
    n = len(setup.bases)
    procs = []
    for i, base in enumerate(setup.bases):
        conns = connections // n + (1 if i < connections % n else 0)
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}", "--timeout", "10s", "-s",
               os.path.join(BENCH, lua), base + path]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                      env=dict(os.environ, BENCH_LUA_DIR=BENCH, BENCH_THREADS="1",
                                               **(env or {}))))
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"wrk failed: {out}")
        line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT ")), None)
        if line is None:
            raise SystemExit(f"no BENCH_RESULT in wrk's output: {out}")
        results.append(json.loads(line[len("BENCH_RESULT "):]))
    return results


def preload(setup, records):
    base = setup.bases[0]
    have = int(_quiet(benchlib.cmd_count, base, "posts"))
    need = records - have
    if need > 0:
        t0 = time.monotonic()
        out = json.loads(_quiet(benchlib.cmd_load, base, "posts", need, 16))
        log(f"{setup.name}: preloaded {out['created']} records in {time.monotonic() - t0:.1f}s ({out})")


def _quiet(fn, *args):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn(*args)
    return buf.getvalue().strip()


def run_setup(setup, args):
    rows = []
    try:
        setup.start()
        rows.append(wrk(setup, "create", "create.lua", "/api/collections/posts/records",
                        args.connections, args.duration))
        preload(setup, args.records)
        ids = os.path.join(setup.work, f"{setup.name}-ids.txt")
        _quiet(benchlib.cmd_ids, setup.bases[0], "posts", 1000, ids)
        rows.append(wrk(setup, "get-by-id", "get.lua", "/api/collections/posts/records/",
                        args.connections, args.duration, env={"BENCH_IDS_FILE": ids}, warmup=args.warmup))
        rows.append(wrk(setup, "list-count", "list.lua", "/api/collections/posts/records" + LIST_QUERY,
                        args.connections, args.duration, warmup=args.warmup))
        count = int(_quiet(benchlib.cmd_count, setup.bases[0], "posts"))
        for r in rows:
            r["records_after"] = count
    finally:
        setup.stop()
    return rows


# --------------------------------------------------------------------------
# PostgreSQL


def pg_start(work, port):
    d = os.path.join(work, "pg")
    url = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "start", d, str(port)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    with open(os.path.join(d, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    return d, url, postmaster


def pg_database(url, name):
    subprocess.run([os.path.join(PG_BIN, "psql"), url, "-qAt", "-c", f"CREATE DATABASE {name}"], check=True,
                   stdout=subprocess.DEVNULL)
    u = urllib.parse.urlsplit(url)
    # Plain TCP, as on a private network (scripts/pg.sh's cluster offers
    # TLS, which Basalt would otherwise take: `sslmode=prefer`).
    return urllib.parse.urlunsplit(u._replace(path=f"/{name}", query="sslmode=disable"))


# --------------------------------------------------------------------------
# Report


def ms(us):
    return f"{us / 1000:.2f} ms"


def report(rows, meta):
    w = []
    w.append(f"# Scale-out: sled vs PostgreSQL, 1 and 3 nodes ({meta['date']})")
    w.append("")
    w.append(f"- Machine: {meta['machine']}")
    w.append(f"- Basalt: {meta['bin']} (commit {meta['commit']}); PostgreSQL {meta['pg_version']}")
    w.append(f"- wrk: {meta['connections']} connections in all (one wrk per node, 1 thread), "
             f"{meta['duration']} per run, {meta['warmup']} warm-up before reads; "
             f"{meta['records']:,} records preloaded before the reads; Basalt `--workers` "
             f"{meta['workers'] or 'default (one per core)'}")
    w.append(f"- Load average before the run: {meta['loadavg']}")
    w.append("")
    w.append("| setup | workload | req/s | p50 | p99 | non-2xx | Basalt CPU/req | PostgreSQL CPU/req |")
    w.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        w.append(f"| {r['setup']} | {r['workload']} | {r['rps']:,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} "
                 f"| {r['non2xx'] + r['errors']} | {r.get('basalt_us_per_req', 0):,.0f} µs "
                 f"| {r.get('postgres_us_per_req', 0):,.0f} µs |")
    w.append("")
    w.append("Estimate for bigger machines (from the CPU split of the pg-3 run): with C cores "
             "per Basalt node and P cores for PostgreSQL, reads scale as N nodes × C ÷ "
             "(Basalt CPU/req) until PostgreSQL's P ÷ (PostgreSQL CPU/req) is reached:")
    w.append("")
    w.append("| workload | req/s per Basalt core | req/s per PostgreSQL core | nodes of C cores before "
             "PostgreSQL (P = C) is the limit |")
    w.append("|---|---:|---:|---:|")
    for r in rows:
        if r["setup"] != "pg-3" or not r.get("basalt_us_per_req") or not r.get("postgres_us_per_req"):
            continue
        per_b = 1e6 / r["basalt_us_per_req"]
        per_p = 1e6 / r["postgres_us_per_req"]
        w.append(f"| {r['workload']} | {per_b:,.0f} | {per_p:,.0f} | {per_p / per_b:.1f} |")
    w.append("")
    w.append("```")
    w.append(meta["command"])
    w.append("```")
    return "\n".join(w) + "\n"


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/basalt-target")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--basalt", default=f"{target}/release/basalt")
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--warmup", default="2s")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--port", type=int, default=56041,
                    help="PostgreSQL's (odd); the Basalt nodes on the next odd ports")
    ap.add_argument("--setups", default="sled,pg-1,pg-3")
    ap.add_argument("--workers", type=int, default=0,
                    help="Basalt's --workers on every node (0: its default, one per core)")
    ap.add_argument("--out", help="Markdown report (default bench/results/<date>-scaleout.md)")
    args = ap.parse_args()
    if not os.access(args.basalt, os.X_OK):
        sys.exit(f"no Basalt binary at {args.basalt}")
    date = time.strftime("%Y-%m-%d", time.gmtime())
    out = args.out or os.path.join(BENCH, "results", f"{date}-scaleout.md")
    work = tempfile.mkdtemp(prefix="basalt-scaleout.", dir="/var/tmp")
    os.chmod(work, 0o755)
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    meta = {
        "date": date, "bin": args.basalt, "commit": git_commit(), "records": args.records,
        "duration": args.duration, "warmup": args.warmup, "workers": args.workers, "connections": args.connections, "loadavg": loadavg,
        "machine": f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
        "command": "CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked && "
                   "python3 bench/scaleout.py " + " ".join(sys.argv[1:]),
    }
    rows, pg_dir = [], None
    # Odd ports (with an odd --port): Linux gives outgoing connections even
    # ephemeral ports first, and their TIME_WAIT sockets block a bind.
    ports = lambda n: [args.port + 2 + 2 * i for i in range(n)]  # noqa: E731 (a fresh list per setup)
    try:
        wanted = args.setups.split(",")
        if "sled" in wanted:
            s = Setup("sled", args.basalt, work, None, ports(1))
            s.workers = args.workers
            rows += run_setup(s, args)
        if "pg-1" in wanted or "pg-3" in wanted:
            pg_dir, url, postmaster = pg_start(work, args.port)
            meta["pg_version"] = subprocess.run([os.path.join(PG_BIN, "postgres"), "--version"],
                                                stdout=subprocess.PIPE, text=True).stdout.strip()
            for name, n in (("pg-1", 1), ("pg-3", 3)):
                if name not in wanted:
                    continue
                s = Setup(name, args.basalt, work, pg_database(url, name.replace("-", "_")), ports(n))
                s.postmaster, s.workers = postmaster, args.workers
                rows += run_setup(s, args)
    finally:
        if pg_dir:
            subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop", pg_dir])
    meta.setdefault("pg_version", "-")
    text = report(rows, meta)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    with open(out[:-3] + ".jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    subprocess.run(["rm", "-rf", work])
    print(text)


if __name__ == "__main__":
    main()
